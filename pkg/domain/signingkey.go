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
	// RetiredSeq is the stream sequence of the retirement, when known.
	RetiredSeq uint64
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

// SigningKeyDecider decides signing key commands.
type SigningKeyDecider struct{}

// Kind implements Decider.
func (SigningKeyDecider) Kind() string { return events.AggregateSigningKey }

// Evolve implements Decider.
func (SigningKeyDecider) Evolve(k SigningKey, r Recorded) SigningKey { return EvolveSigningKey(k, r) }

// AggregateVersion implements Aggregate.
func (k SigningKey) AggregateVersion() int64 { return k.Version }

// Decide implements Decider.
func (SigningKeyDecider) Decide(k SigningKey, cmd SigningKeyCommand) ([]events.Payload, error) {
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
		k.RetiredAt, k.RetiredSeq = r.Time, r.Seq
	}
	return k
}

// ProjectionOps is the state of one projection's operator history.
type ProjectionOps struct {
	Version int64
	Skipped []uint64
}

// SkipEvent records an operator's skip of a poison event.
type SkipEvent struct {
	Projection string
	Seq        uint64
	Reason     string
	Error      string
}

// Action implements a command.
func (SkipEvent) Action() string { return "skip" }

// ProjectionOpsDecider decides operator actions on a projection.
type ProjectionOpsDecider struct{}

// Kind implements Decider.
func (ProjectionOpsDecider) Kind() string { return events.AggregateProjection }

// Evolve implements Decider.
func (ProjectionOpsDecider) Evolve(s ProjectionOps, r Recorded) ProjectionOps {
	return EvolveProjectionOps(s, r)
}

// AggregateVersion implements Aggregate.
func (s ProjectionOps) AggregateVersion() int64 { return s.Version }

// Decide implements Decider.
func (ProjectionOpsDecider) Decide(s ProjectionOps, c SkipEvent) ([]events.Payload, error) {
	if c.Reason == "" {
		return nil, &ValidationError{Fields: []FieldError{{Field: "reason", Message: "is required: say why the event may be skipped"}}}
	}
	for _, seq := range s.Skipped {
		if seq == c.Seq {
			return nil, nil
		}
	}
	return []events.Payload{&events.ProjectionEventSkipped{Projection: c.Projection, Seq: c.Seq, Reason: c.Reason, Error: c.Error}}, nil
}

// EvolveProjectionOps folds one event.
func EvolveProjectionOps(s ProjectionOps, r Recorded) ProjectionOps {
	s.Version = r.Version
	if p, ok := r.Payload.(*events.ProjectionEventSkipped); ok {
		s.Skipped = append(s.Skipped, p.Seq)
	}
	return s
}
