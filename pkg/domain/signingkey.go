package domain

import (
	"fmt"
	"time"

	"github.com/tenancyhq/tenancy/pkg/events"
)

// SigningKey is the state of one event signing key.
type SigningKey struct {
	ID           string
	PublicKey    string
	Version      int64
	RegisteredAt time.Time
	RetiredAt    time.Time
}

// SigningKeyCommand is a command the SigningKey aggregate decides.
type SigningKeyCommand interface{ Action() string }

// RegisterKey publishes a public key. Registering the same key again is a
// no-op.
type RegisterKey struct{ PublicKey string }

// RetireKey stops a key from signing new events.
type RetireKey struct{ Reason string }

// Action implements SigningKeyCommand.
func (RegisterKey) Action() string { return "register" }

// Action implements SigningKeyCommand.
func (RetireKey) Action() string { return "retire" }

// DecideSigningKey decides a signing key command.
func DecideSigningKey(k SigningKey, cmd SigningKeyCommand) ([]events.Payload, error) {
	switch c := cmd.(type) {
	case RegisterKey:
		if k.Version > 0 {
			if k.PublicKey != c.PublicKey {
				return nil, &ConflictError{Field: "public_key", Message: fmt.Sprintf("key id %s is registered with another public key", k.ID)}
			}
			return nil, nil
		}
		return []events.Payload{&events.SigningKeyRegistered{PublicKey: c.PublicKey, Algorithm: "Ed25519"}}, nil
	case RetireKey:
		if k.Version == 0 {
			return nil, fmt.Errorf("signing key %w", ErrNotFound)
		}
		if !k.RetiredAt.IsZero() {
			return nil, nil
		}
		return []events.Payload{&events.SigningKeyRetired{Reason: c.Reason}}, nil
	}
	return nil, fmt.Errorf("%w: unknown command %T", ErrInvalid, cmd)
}

// EvolveSigningKey folds one event into a signing key's state.
func EvolveSigningKey(k SigningKey, r Recorded) SigningKey {
	k.Version = r.Version
	switch p := r.Payload.(type) {
	case *events.SigningKeyRegistered:
		k.ID = r.AggregateID
		k.PublicKey = p.PublicKey
		k.RegisteredAt = r.Time
	case *events.SigningKeyRetired:
		k.RetiredAt = r.Time
	}
	return k
}
