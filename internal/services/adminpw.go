package services

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/tenancyhq/tenancy/internal/keycloak"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// passwordAlphabet avoids characters people misread.
const passwordAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_!@#%"

// NewPassword returns a random password of n characters.
func NewPassword(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = passwordAlphabet[int(b[i])%len(passwordAlphabet)]
	}
	return string(b)
}

// AdminPassword returns the API's way to issue a tenant administrator a
// temporary password through Keycloak.
func AdminPassword(kc *keycloak.Client) func(ctx context.Context, t domain.Tenant) (string, string, error) {
	return func(ctx context.Context, t domain.Tenant) (string, string, error) {
		if t.Activation == nil || t.Activation.Admin == nil {
			return "", "", fmt.Errorf("%w: the tenant has no administrator (it was never activated, or its personal data is erased)", domain.ErrPrecondition)
		}
		username := strings.ToLower(t.Activation.Admin.Email)
		u, ok, err := kc.FindUser(ctx, t.Slug, username)
		if err == nil && !ok {
			err = keycloak.ErrNotFound
		}
		if errors.Is(err, keycloak.ErrNotFound) {
			return "", "", fmt.Errorf("%w: the administrator does not exist in Keycloak yet (provisioning step %q); retry once it completed", domain.ErrPrecondition, "admin")
		}
		if err != nil {
			return "", "", keycloakUnavailable(err)
		}
		password := NewPassword(20)
		if err := kc.ResetPassword(ctx, t.Slug, u.ID, password, true); err != nil {
			return "", "", keycloakUnavailable(err)
		}
		return u.Username, password, nil
	}
}

func keycloakUnavailable(err error) error {
	var kc *keycloak.Error
	if errors.As(err, &kc) && !kc.Temporary() {
		return fmt.Errorf("identity provider refused: %w", err)
	}
	return fmt.Errorf("%w: identity provider: %v", domain.ErrUnavailable, err)
}
