// Package auth authenticates API callers by their OIDC bearer tokens
// (issuer, audience, expiry and signature checked against the issuer's JWKS)
// and says what a caller may do.
package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/tenancyhq/tenancy/internal/metrics"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// Roles.
const (
	// RolePlatformAdmin manages every tenant and the platform.
	RolePlatformAdmin = "platform-admin"
	// RoleTenantAdmin administers the one tenant named by the token's
	// tenant_id claim.
	RoleTenantAdmin = "tenant-admin"
	// RoleTenantViewer reads the one tenant named by the token's tenant_id
	// claim.
	RoleTenantViewer = "tenant-viewer"
	// RoleBilling is the billing system's service account: it reads
	// customers and tenants, suspends for payment and lifts the payment
	// holds it placed, and nothing else.
	RoleBilling = "billing"
)

// Principal is an authenticated caller.
type Principal struct {
	// Issuer is the token's issuer; with Subject it names the caller.
	Issuer string
	// Subject is the token subject: the actor recorded on events.
	Subject string
	Roles   []string
	// TenantID scopes tenant roles to one tenant; empty for platform roles.
	TenantID string
	// Username is the token's preferred_username, when it has one.
	Username string
	// Memberships are the caller's org-unit roles in its tenant (the
	// memberships claim its realm's tokens carry).
	Memberships []OUMembership
	ExpiresAt   time.Time
}

// OUMembership is one org-unit membership as a token carries it.
type OUMembership struct {
	OU    string   `json:"ou"`
	Roles []string `json:"roles"`
}

// OURoles returns the roles p holds on org unit ou (directly, not
// through a parent).
func (p Principal) OURoles(ou string) []string {
	for _, m := range p.Memberships {
		if m.OU == ou {
			return m.Roles
		}
	}
	return nil
}

// Relates reports whether p has anything to do with tenant tenantID: a
// platform administrator, or a caller of that tenant. Everyone else is
// told that the tenant's resources do not exist.
func (p Principal) Relates(tenantID string) bool {
	return p.IsPlatformAdmin() || (p.TenantID != "" && p.TenantID == tenantID)
}

// CanManage reports whether p may manage tenant tenantID's directory:
// platform administrators, and that tenant's administrators.
func (p Principal) CanManage(tenantID string) bool {
	return p.IsPlatformAdmin() || (p.TenantID != "" && p.TenantID == tenantID && p.HasRole(RoleTenantAdmin))
}

// HasRole reports whether p holds role.
func (p Principal) HasRole(role string) bool { return slices.Contains(p.Roles, role) }

// IsPlatformAdmin reports whether p may act on every tenant.
func (p Principal) IsPlatformAdmin() bool { return p.HasRole(RolePlatformAdmin) }

// CanRead reports whether p may read tenant tenantID's data.
func (p Principal) CanRead(tenantID string) bool {
	if p.IsPlatformAdmin() {
		return true
	}
	return p.TenantID != "" && p.TenantID == tenantID && (p.HasRole(RoleTenantAdmin) || p.HasRole(RoleTenantViewer))
}

// ReadsDirectory reports whether p may read every tenant's and customer's
// record (not their events or audit trail): platform administrators and
// billing.
func (p Principal) ReadsDirectory() bool { return p.IsPlatformAdmin() || p.HasRole(RoleBilling) }

// CanReadTenant reports whether p may read tenant tenantID's record.
func (p Principal) CanReadTenant(tenantID string) bool {
	return p.HasRole(RoleBilling) || p.CanRead(tenantID)
}

// IsBillingOnly reports whether p acts as billing and not as a platform
// administrator: its lifecycle actions are narrowed to payment.
func (p Principal) IsBillingOnly() bool { return p.HasRole(RoleBilling) && !p.IsPlatformAdmin() }

// Config configures OIDC verification.
type Config struct {
	// IssuerURL is the OIDC issuer; its discovery document names the JWKS.
	IssuerURL string
	// DiscoveryURL, when set, is where the discovery document is fetched
	// instead of IssuerURL (an issuer reachable under another name inside a
	// private network, e.g. http://keycloak:8080 in docker compose). Tokens
	// must still name IssuerURL.
	DiscoveryURL string
	// Audience must appear in the token's aud claim.
	Audience string
	// HTTPClient fetches discovery and keys (default: 10 s timeout).
	HTTPClient *http.Client
	// Now is the clock expiry is checked against (default time.Now).
	Now func() time.Time
	// Log hears of an unreachable issuer (default: discarded).
	Log *slog.Logger
}

// Authenticator verifies bearer tokens. Discovery happens on first use and
// is retried on later calls until it succeeds, so the API can start before
// its issuer (in `tenancy dev` the issuer is the API itself).
type Authenticator struct {
	cfg      Config
	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	cache    *lru.Cache[[32]byte, Principal]
}

// New returns an authenticator for cfg.
func New(cfg Config) (*Authenticator, error) {
	if cfg.IssuerURL == "" {
		return nil, errors.New("auth: an OIDC issuer URL is required")
	}
	if cfg.Audience == "" {
		return nil, errors.New("auth: an audience is required")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	c, _ := lru.New[[32]byte, Principal](20000)
	return &Authenticator{cfg: cfg, cache: c}, nil
}

// Issuer returns the configured issuer URL.
func (a *Authenticator) Issuer() string { return a.cfg.IssuerURL }

// ErrIssuerUnreachable reports that the issuer's discovery document or
// keys have never been fetched: no token can be checked yet. The message
// names no address (the log line does).
var ErrIssuerUnreachable = fmt.Errorf("%w: the OIDC issuer cannot be reached yet, so no token can be checked; try again shortly", domain.ErrUnavailable)

// getVerifier returns the verifier, made on first success: the discovery
// document read and the issuer's keys fetched once. After that it never
// fails; the keys refresh on their own.
func (a *Authenticator) getVerifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.verifier != nil {
		return a.verifier, nil
	}
	ctx = oidc.ClientContext(context.WithoutCancel(ctx), a.cfg.HTTPClient)
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	discovery := a.cfg.IssuerURL
	if a.cfg.DiscoveryURL != "" {
		discovery = a.cfg.DiscoveryURL
		dctx = oidc.InsecureIssuerURLContext(dctx, a.cfg.IssuerURL)
	}
	p, err := oidc.NewProvider(dctx, discovery)
	if err != nil {
		metrics.IssuerFailures.WithLabelValues("discovery").Inc()
		a.cfg.Log.WarnContext(ctx, "cannot read the OIDC issuer's discovery document", "url", discovery, "error", err)
		return nil, ErrIssuerUnreachable
	}
	var meta struct {
		JWKS string `json:"jwks_uri"`
	}
	if err := p.Claims(&meta); err != nil || meta.JWKS == "" {
		metrics.IssuerFailures.WithLabelValues("discovery").Inc()
		a.cfg.Log.WarnContext(ctx, "the OIDC issuer's discovery document names no jwks_uri", "url", discovery)
		return nil, ErrIssuerUnreachable
	}
	keys := &issuerKeys{url: meta.JWKS, client: a.cfg.HTTPClient, log: a.cfg.Log, now: a.cfg.Now}
	if _, err := keys.refresh(dctx, true); err != nil {
		return nil, ErrIssuerUnreachable
	}
	a.verifier = oidc.NewVerifier(a.cfg.IssuerURL, keys, &oidc.Config{
		ClientID:             a.cfg.Audience,
		SupportedSigningAlgs: []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512, oidc.PS256, oidc.EdDSA},
		Now:                  a.cfg.Now,
	})
	return a.verifier, nil
}

// Ready reports whether tokens can be checked: the issuer's discovery
// document read and its keys fetched, at least once (fetching them if
// not). Once they have been, it stays ready through an issuer outage.
func (a *Authenticator) Ready(ctx context.Context) error {
	_, err := a.getVerifier(ctx)
	return err
}

type claims struct {
	Subject     string         `json:"sub"`
	AZP         string         `json:"azp"`
	Roles       []string       `json:"roles"`
	TenantID    string         `json:"tenant_id"`
	Username    string         `json:"preferred_username"`
	Memberships []OUMembership `json:"memberships"`
	RealmAccess struct {
		Roles []string `json:"roles"`
	} `json:"realm_access"`
}

// Authenticate verifies a bearer token and returns its principal. A token
// that does not verify is an error wrapping domain.ErrUnauthenticated whose
// message says why.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (Principal, error) {
	if token == "" {
		return Principal{}, fmt.Errorf("%w: send an Authorization: Bearer <token> header", domain.ErrUnauthenticated)
	}
	key := sha256.Sum256([]byte(token))
	if p, ok := a.cache.Get(key); ok {
		if a.cfg.Now().Before(p.ExpiresAt) {
			return p, nil
		}
		a.cache.Remove(key)
	}
	v, err := a.getVerifier(ctx)
	if err != nil {
		return Principal{}, err
	}
	tok, err := v.Verify(ctx, token)
	if err != nil {
		var expired *oidc.TokenExpiredError
		if errors.As(err, &expired) {
			return Principal{}, fmt.Errorf("%w: the token expired at %s; get a new one", domain.ErrUnauthenticated, expired.Expiry.UTC().Format(time.RFC3339))
		}
		return Principal{}, fmt.Errorf("%w: %s", domain.ErrUnauthenticated, describe(err))
	}
	var c claims
	if err := tok.Claims(&c); err != nil {
		return Principal{}, fmt.Errorf("%w: unreadable claims: %v", domain.ErrUnauthenticated, err)
	}
	if c.TenantID != "" {
		if _, err := uuid.Parse(c.TenantID); err != nil || len(c.TenantID) != 36 {
			return Principal{}, fmt.Errorf("%w: the token's tenant_id claim is not a tenant id (a UUID like 0190c4f2-7d1e-7b3a-9c2d-5e6f7a8b9c0d)", domain.ErrUnauthenticated)
		}
	}
	if c.TenantID == "" && len(c.Memberships) > 0 {
		return Principal{}, fmt.Errorf("%w: the token carries org-unit memberships but no tenant_id claim", domain.ErrUnauthenticated)
	}
	p := Principal{Issuer: tok.Issuer, Subject: c.Subject, TenantID: strings.ToLower(c.TenantID), Username: c.Username,
		Memberships: c.Memberships, ExpiresAt: tok.Expiry}
	if p.Subject == "" && c.AZP != "" {
		p.Subject = "client:" + c.AZP
	}
	if p.Subject == "" {
		return Principal{}, fmt.Errorf("%w: the token has no subject", domain.ErrUnauthenticated)
	}
	for _, r := range append(c.Roles, c.RealmAccess.Roles...) {
		if !slices.Contains(p.Roles, r) {
			p.Roles = append(p.Roles, r)
		}
	}
	a.cache.Add(key, p)
	return p, nil
}

// describe turns go-oidc's errors into one actionable line without echoing
// the token.
func describe(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "malformed jwt"):
		return "the bearer token is not a JWT"
	case strings.Contains(msg, "id token issued by a different provider"):
		return "the token was issued by another issuer; this API trusts only its configured OIDC issuer"
	case strings.Contains(msg, "expected audience"):
		return "the token is not meant for this API (audience mismatch)"
	case strings.Contains(msg, "failed to verify signature"):
		return "the token's signature does not verify against the issuer's keys"
	}
	return "the token did not verify: " + msg
}

// BearerToken extracts the token of an Authorization header.
func BearerToken(header string) string {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}
