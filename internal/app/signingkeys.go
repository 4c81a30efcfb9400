package app

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/integrity"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// SigningKeys publishes the event signing keys' public halves in the log
// and reads the set of verification keys back from it.
type SigningKeys struct {
	store   *eventstore.Store
	handler *command.Handler[domain.SigningKey, domain.SigningKeyCommand]
}

// NewSigningKeys returns the signing key use cases, appending with deps
// (whose signer signs the registration events).
func NewSigningKeys(deps command.Deps) *SigningKeys {
	return &SigningKeys{store: deps.Store, handler: command.NewHandler[domain.SigningKey, domain.SigningKeyCommand](domain.SigningKeyDecider{}, deps)}
}

// Register publishes the public half of signer's key, once. A key that was
// retired may not sign again.
func (r *SigningKeys) Register(ctx context.Context, signer *events.Signer) error {
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

// Retire marks a key as no longer signing; it still verifies what it signed.
func (r *SigningKeys) Retire(ctx context.Context, kid, reason, actor string) error {
	_, err := r.handler.Execute(ctx, events.PlatformTenantID, kid, domain.RetireKey{Reason: reason}, command.Meta{Actor: actor})
	return err
}

// Keys reads every registered key from the log.
func (r *SigningKeys) Keys(ctx context.Context) (*events.KeySet, error) {
	return integrity.LoadKeys(ctx, r.store)
}
