// Package auth authenticates API callers by their OIDC bearer tokens
// (issuer, audience, expiry and signature checked against the issuer's JWKS)
// and says what a caller may do.
package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
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
	// RealmIssuerBase, when set, makes the API accept tokens of tenants'
	// own realms too: an issuer <RealmIssuerBase>/realms/<realm> whose
	// realm Realms names as an active tenant's. RealmDiscoveryBase is where
	// their discovery documents are fetched when Keycloak is reachable
	// under another name inside the network (default RealmIssuerBase).
	RealmIssuerBase    string
	RealmDiscoveryBase string
	Realms             RealmTenants
	// RealmClientID is the tenant realms' client whose tokens the API
	// accepts (azp) when they do not name Audience.
	RealmClientID string
}

// RealmTenants says which tenant a realm belongs to.
type RealmTenants interface {
	// TenantOfRealm returns the id of the active tenant whose own realm
	// is realm (an error wrapping domain.ErrNotFound when none).
	TenantOfRealm(ctx context.Context, realm string) (string, error)
	// OrganizationOf checks that tenantID is an active tenant placed in
	// realm as an organization (an error wrapping domain.ErrNotFound when
	// not): the shared realm's tokens act on such tenants only.
	OrganizationOf(ctx context.Context, realm, tenantID string) error
}

// Authenticator verifies bearer tokens. Discovery happens on first use and
// is retried on later calls until it succeeds, so the API can start before
// its issuer (in `tenancy dev` the issuer is the API itself).
type Authenticator struct {
	cfg      Config
	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	cache    *lru.Cache[[32]byte, Principal]
	// realms holds a verifier per tenant realm issuer, made on first use.
	realms *lru.Cache[string, *oidc.IDTokenVerifier]
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
	realms, _ := lru.New[string, *oidc.IDTokenVerifier](10000)
	return &Authenticator{cfg: cfg, cache: c, realms: realms}, nil
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
	v, err := a.discover(ctx, a.cfg.IssuerURL, a.cfg.DiscoveryURL, &oidc.Config{ClientID: a.cfg.Audience})
	if err != nil {
		return nil, err
	}
	a.verifier = v
	return v, nil
}

// discover reads issuer's discovery document (at discovery, when set),
// fetches its keys once and returns a verifier of its tokens; the keys
// refresh on their own afterwards.
func (a *Authenticator) discover(ctx context.Context, issuer, discovery string, vc *oidc.Config) (*oidc.IDTokenVerifier, error) {
	ctx = oidc.ClientContext(context.WithoutCancel(ctx), a.cfg.HTTPClient)
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if discovery == "" {
		discovery = issuer
	} else {
		dctx = oidc.InsecureIssuerURLContext(dctx, issuer)
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
	if a.cfg.RealmDiscoveryBase != "" && issuer != a.cfg.IssuerURL {
		// Keys come from where discovery came from, not from the public
		// name the document gives.
		meta.JWKS = strings.Replace(meta.JWKS, strings.TrimRight(a.cfg.RealmIssuerBase, "/"), strings.TrimRight(a.cfg.RealmDiscoveryBase, "/"), 1)
	}
	keys := &issuerKeys{url: meta.JWKS, client: a.cfg.HTTPClient, log: a.cfg.Log, now: a.cfg.Now}
	if _, err := keys.refresh(dctx, true); err != nil {
		return nil, ErrIssuerUnreachable
	}
	vc.SupportedSigningAlgs = []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512, oidc.PS256, oidc.EdDSA}
	vc.Now = a.cfg.Now
	return oidc.NewVerifier(issuer, keys, vc), nil
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
	// Grants, Organization and TenantIDs are the shared realm's (see
	// sharedRealmPrincipal).
	Grants       []domain.Grant  `json:"tenancy"`
	Organization json.RawMessage `json:"organization"`
	TenantIDs    []string        `json:"tenant_ids"`
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
	var p Principal
	var err error
	if realm, iss, ok := a.realmIssuer(token); ok {
		p, err = a.authenticateRealm(ctx, token, iss, realm)
	} else {
		p, err = a.authenticatePlatform(ctx, token)
	}
	if err != nil {
		return Principal{}, err
	}
	a.cache.Add(key, p)
	return p, nil
}

// verify checks token with v and reads its claims.
func verify(ctx context.Context, v *oidc.IDTokenVerifier, token string) (*oidc.IDToken, claims, error) {
	var c claims
	tok, err := v.Verify(ctx, token)
	if err != nil {
		var expired *oidc.TokenExpiredError
		if errors.As(err, &expired) {
			return nil, c, fmt.Errorf("%w: the token expired at %s; get a new one", domain.ErrUnauthenticated, expired.Expiry.UTC().Format(time.RFC3339))
		}
		return nil, c, fmt.Errorf("%w: %s", domain.ErrUnauthenticated, describe(err))
	}
	if err := tok.Claims(&c); err != nil {
		return nil, c, fmt.Errorf("%w: unreadable claims: %v", domain.ErrUnauthenticated, err)
	}
	if c.TenantID != "" {
		if _, err := uuid.Parse(c.TenantID); err != nil || len(c.TenantID) != 36 {
			return nil, c, fmt.Errorf("%w: the token's tenant_id claim is not a tenant id (a UUID like 0190c4f2-7d1e-7b3a-9c2d-5e6f7a8b9c0d)", domain.ErrUnauthenticated)
		}
	}
	return tok, c, nil
}

// principalOf is the principal of a verified token; roles filters the
// token's roles (nil keeps them all).
func principalOf(tok *oidc.IDToken, c claims, tenantID string, roles func(string) bool) (Principal, error) {
	p := Principal{Issuer: tok.Issuer, Subject: c.Subject, TenantID: tenantID, Username: c.Username,
		Memberships: c.Memberships, ExpiresAt: tok.Expiry}
	if p.Subject == "" && c.AZP != "" {
		p.Subject = "client:" + c.AZP
	}
	if p.Subject == "" {
		return Principal{}, fmt.Errorf("%w: the token has no subject", domain.ErrUnauthenticated)
	}
	for _, r := range append(c.Roles, c.RealmAccess.Roles...) {
		if !slices.Contains(p.Roles, r) && (roles == nil || roles(r)) {
			p.Roles = append(p.Roles, r)
		}
	}
	return p, nil
}

// authenticatePlatform verifies a token of the platform's own issuer.
func (a *Authenticator) authenticatePlatform(ctx context.Context, token string) (Principal, error) {
	v, err := a.getVerifier(ctx)
	if err != nil {
		return Principal{}, err
	}
	tok, c, err := verify(ctx, v, token)
	if err != nil {
		return Principal{}, err
	}
	if c.TenantID == "" && len(c.Memberships) > 0 {
		return Principal{}, fmt.Errorf("%w: the token carries org-unit memberships but no tenant_id claim", domain.ErrUnauthenticated)
	}
	return principalOf(tok, c, strings.ToLower(c.TenantID), nil)
}

// realmIssuer reads, unverified, the issuer of token and reports whether it
// is a tenant realm's (the token is verified against that realm's keys
// next; the claim only chooses which).
func (a *Authenticator) realmIssuer(token string) (realm, iss string, ok bool) {
	if a.cfg.RealmIssuerBase == "" || a.cfg.Realms == nil {
		return "", "", false
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", "", false
	}
	var c struct {
		Issuer string `json:"iss"`
	}
	if json.Unmarshal(raw, &c) != nil || c.Issuer == a.cfg.IssuerURL {
		return "", "", false
	}
	realm, ok = strings.CutPrefix(c.Issuer, strings.TrimRight(a.cfg.RealmIssuerBase, "/")+"/realms/")
	if !ok || realm == "" || strings.ContainsAny(realm, "/?#") {
		return "", "", false
	}
	return realm, c.Issuer, true
}

// tenantRoles are the roles a tenant realm's token may carry into the
// API: never a platform role, whatever the realm's administrators map.
func tenantRoles(r string) bool { return r == RoleTenantAdmin || r == RoleTenantViewer }

// authenticateRealm verifies a token of a tenant's own realm: the realm
// names the tenant, the token can act on that tenant alone, and only its
// tenant roles count.
func (a *Authenticator) authenticateRealm(ctx context.Context, token, iss, realm string) (Principal, error) {
	tenantID, err := a.cfg.Realms.TenantOfRealm(ctx, realm)
	if errors.Is(err, domain.ErrNotFound) {
		return Principal{}, fmt.Errorf("%w: the token's realm belongs to no active tenant", domain.ErrUnauthenticated)
	}
	if err != nil {
		return Principal{}, err
	}
	v, ok := a.realms.Get(iss)
	if !ok {
		discovery := ""
		if a.cfg.RealmDiscoveryBase != "" {
			discovery = strings.TrimRight(a.cfg.RealmDiscoveryBase, "/") + "/realms/" + realm
		}
		if v, err = a.discover(ctx, iss, discovery, &oidc.Config{SkipClientIDCheck: true}); err != nil {
			return Principal{}, err
		}
		a.realms.Add(iss, v)
	}
	tok, c, err := verify(ctx, v, token)
	if err != nil {
		return Principal{}, err
	}
	// Meant for this API: a token of the realm's tenancy-app client (its
	// users), or one with the tenancy-app audience (a non-browser client,
	// whose realm client Tenancy gives an audience mapper).
	forAPI := slices.Contains(tok.Audience, a.cfg.Audience) ||
		(a.cfg.RealmClientID != "" && (c.AZP == a.cfg.RealmClientID || slices.Contains(tok.Audience, a.cfg.RealmClientID)))
	if !forAPI {
		return Principal{}, fmt.Errorf("%w: the token is not meant for this API (audience mismatch)", domain.ErrUnauthenticated)
	}
	if len(c.Grants) > 0 {
		return a.sharedRealmPrincipal(ctx, tok, c, realm)
	}
	if tenantID == domain.SharedTenantID && !slices.Contains(c.TenantIDs, domain.SharedTenantID) {
		// An account of the shared realm without a grant is the shared
		// tenant's only when marked so: an organization's administrator
		// awaiting its grant, or an account Tenancy never made, is not.
		return Principal{}, fmt.Errorf("%w: this account of the shared realm belongs to no tenant yet", domain.ErrUnauthenticated)
	}
	if c.TenantID != "" && !strings.EqualFold(c.TenantID, tenantID) {
		return Principal{}, fmt.Errorf("%w: the token's tenant_id claim names another tenant than its realm's", domain.ErrUnauthenticated)
	}
	return principalOf(tok, c, tenantID, tenantRoles)
}

// sharedRealmPrincipal is the principal of a token of the shared realm's
// organization user or client: it acts on the one tenant of its grant
// (of the organization it was asked for, when the account belongs to
// several), with that grant's roles and memberships and never the realm's
// roles, which are the shared tenant's.
func (a *Authenticator) sharedRealmPrincipal(ctx context.Context, tok *oidc.IDToken, c claims, realm string) (Principal, error) {
	g, err := pickGrant(c)
	if err != nil {
		return Principal{}, err
	}
	if !g.Enabled {
		return Principal{}, fmt.Errorf("%w: the user is disabled in the tenant of organization %s", domain.ErrUnauthenticated, g.Organization)
	}
	if _, err := uuid.Parse(g.TenantID); err != nil || len(g.TenantID) != 36 {
		return Principal{}, fmt.Errorf("%w: the token's grant does not name a tenant id", domain.ErrUnauthenticated)
	}
	if c.TenantID != "" && !strings.EqualFold(c.TenantID, g.TenantID) {
		return Principal{}, fmt.Errorf("%w: the token's tenant_id claim names another tenant than its grant", domain.ErrUnauthenticated)
	}
	if err := a.cfg.Realms.OrganizationOf(ctx, realm, strings.ToLower(g.TenantID)); errors.Is(err, domain.ErrNotFound) {
		return Principal{}, fmt.Errorf("%w: the token's grant names no active tenant of this realm", domain.ErrUnauthenticated)
	} else if err != nil {
		return Principal{}, err
	}
	c.Roles, c.RealmAccess.Roles, c.Memberships = g.Roles, nil, nil
	for _, m := range g.Memberships {
		c.Memberships = append(c.Memberships, OUMembership{OU: m.OU, Roles: m.Roles})
	}
	return principalOf(tok, c, strings.ToLower(g.TenantID), tenantRoles)
}

// pickGrant returns the grant a shared-realm token acts with: its only
// one, or the one of the single organization its organization claim
// names (Keycloak's organization scope, asked for as
// scope=organization:<alias>; the claim is a list of aliases, or an
// object keyed by them when the organizations' attributes are added).
func pickGrant(c claims) (domain.Grant, error) {
	if len(c.Grants) == 1 {
		return c.Grants[0], nil
	}
	var orgs []string
	var byAlias map[string]json.RawMessage
	if json.Unmarshal(c.Organization, &orgs) != nil && json.Unmarshal(c.Organization, &byAlias) == nil {
		for alias := range byAlias {
			orgs = append(orgs, alias)
		}
	}
	var picked []domain.Grant
	for _, g := range c.Grants {
		if slices.Contains(orgs, g.Organization) {
			picked = append(picked, g)
		}
	}
	if len(picked) != 1 {
		return domain.Grant{}, fmt.Errorf("%w: the account belongs to %d tenants of the shared realm and the token does not pick one; ask Keycloak for a token with scope organization:<alias> (the tenant's organization)",
			domain.ErrUnauthenticated, len(c.Grants))
	}
	return picked[0], nil
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
