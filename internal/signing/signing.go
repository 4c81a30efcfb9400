// Package signing loads the event signing key, publishes its public half in
// the log, and assembles the set of verification keys from the log.
package signing

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// ParseKey reads an Ed25519 private key given as the unpadded or padded
// base64 (standard or URL alphabet) of its 32-byte seed or 64-byte private
// key, or as "file:<path>" to a file holding that text.
func ParseKey(spec string) (ed25519.PrivateKey, error) {
	if path, ok := strings.CutPrefix(spec, "file:"); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		spec = string(b)
	}
	spec = strings.TrimSpace(spec)
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.StdEncoding} {
		if raw, err = enc.DecodeString(spec); err == nil {
			break
		}
	}
	if err != nil {
		return nil, errors.New("signing key: not base64")
	}
	switch len(raw) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(raw), nil
	case ed25519.PrivateKeySize:
		return ed25519.PrivateKey(raw), nil
	}
	return nil, fmt.Errorf("signing key: %d bytes is neither a 32-byte seed nor a 64-byte private key", len(raw))
}

// EncodeKey returns the text form ParseKey reads.
func EncodeKey(k ed25519.PrivateKey) string {
	return base64.RawURLEncoding.EncodeToString(k.Seed())
}

// LoadOrCreateKeyFile reads the key in path, creating a new random key there
// (mode 0600) if the file does not exist. For development data directories.
func LoadOrCreateKeyFile(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return ParseKey(string(b))
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte(EncodeKey(priv)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return priv, nil
}

// Registry publishes and reads signing keys through the log.
type Registry struct {
	store   *eventstore.Store
	handler *command.Handler[domain.SigningKey, domain.SigningKeyCommand]
}

// NewRegistry returns a registry appending with deps (whose signer signs
// the registration events).
func NewRegistry(deps command.Deps) *Registry {
	return &Registry{store: deps.Store, handler: command.NewHandler[domain.SigningKey, domain.SigningKeyCommand](domain.SigningKeyDecider{}, deps)}
}

// Register publishes the public half of signer's key, once.
func (r *Registry) Register(ctx context.Context, signer *events.Signer) error {
	k, _, err := r.handler.Load(ctx, events.PlatformTenantID, signer.KeyID())
	if err != nil {
		return err
	}
	if !k.RetiredAt.IsZero() {
		return fmt.Errorf("signing key %s was retired on %s; configure a new key", k.ID, k.RetiredAt.Format("2006-01-02"))
	}
	_, err = r.handler.Execute(ctx, events.PlatformTenantID, signer.KeyID(),
		domain.RegisterKey{PublicKey: base64.RawURLEncoding.EncodeToString(signer.PublicKey())},
		command.Meta{Actor: "system:signing"})
	return err
}

// Retire marks a key as no longer signing.
func (r *Registry) Retire(ctx context.Context, kid, reason, actor string) error {
	_, err := r.handler.Execute(ctx, events.PlatformTenantID, kid, domain.RetireKey{Reason: reason}, command.Meta{Actor: actor})
	return err
}

// Keys reads every registered key from the log.
func Keys(ctx context.Context, store *eventstore.Store) (*events.KeySet, error) {
	msgs, err := store.ReadAll(ctx, events.Subject(events.PlatformTenantID, events.AggregateSigningKey, "*"), 1)
	if err != nil {
		return nil, err
	}
	states := map[string]domain.SigningKey{}
	for _, m := range msgs {
		e, p, err := events.Decode(m.Data)
		if err != nil {
			return nil, fmt.Errorf("signing key event at seq %d: %w", m.Seq, err)
		}
		states[e.Subject] = domain.EvolveSigningKey(states[e.Subject], domain.Recorded{AggregateID: e.Subject, ID: e.ID, Time: e.Time, Version: e.AggVersion, Payload: p})
	}
	ks := events.NewKeySet()
	for kid, s := range states {
		pub, err := base64.RawURLEncoding.DecodeString(s.PublicKey)
		if err != nil || len(pub) != ed25519.PublicKeySize || events.KeyID(pub) != kid {
			return nil, fmt.Errorf("signing key %s: registered public key does not match its id", kid)
		}
		ks.Add(events.PublicKey{ID: kid, Key: pub, CreatedAt: s.RegisteredAt, RetiredAt: s.RetiredAt})
	}
	return ks, nil
}
