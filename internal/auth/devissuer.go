package auth

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// DevIssuer is a minimal OIDC issuer for `tenancy dev`: it serves a discovery
// document and a JWKS, and mints tokens. The API verifies its tokens through
// the same OIDC code path as any other issuer's.
type DevIssuer struct {
	issuer   string
	key      ed25519.PrivateKey
	kid      string
	audience string
}

// DevIssuerPath is where the dev issuer is served on the API's address.
const DevIssuerPath = "/dev/oidc"

// NewDevIssuer returns an issuer with URL issuer signing with key.
func NewDevIssuer(issuer, audience string, key ed25519.PrivateKey) *DevIssuer {
	return &DevIssuer{issuer: strings.TrimRight(issuer, "/"), key: key, kid: events.KeyID(key.Public().(ed25519.PublicKey)), audience: audience}
}

// Issuer returns the issuer URL.
func (d *DevIssuer) Issuer() string { return d.issuer }

// TokenRequest says what a minted token grants.
type TokenRequest struct {
	Subject  string
	Roles    []string
	TenantID string
	// Memberships are the org-unit roles a tenant user's token carries.
	Memberships []OUMembership
	// Username is the preferred_username claim.
	Username string
	// Grants and Organizations are what a shared-realm token carries: the
	// tenancy claim and Keycloak's organization claim (aliases).
	Grants        []domain.Grant
	Organizations []string
	// TenantIDs is the shared realm's tenant_ids claim (the account's
	// tenancy.tenant_id attribute).
	TenantIDs []string
	// AZP is the authorized party: the client the token was issued to.
	AZP string
	// Audience, when set, replaces the issuer's audience (an audience
	// mapper's doing, in Keycloak).
	Audience []string
	TTL      time.Duration
}

// Mint returns a signed access token.
func (d *DevIssuer) Mint(req TokenRequest, now time.Time) (string, error) {
	if req.Subject == "" {
		return "", errors.New("a token needs a subject")
	}
	if req.TTL <= 0 {
		req.TTL = time.Hour
	}
	claims := map[string]any{
		"iss": d.issuer, "sub": req.Subject, "aud": d.audience, "iat": now.Unix(), "exp": now.Add(req.TTL).Unix(),
		"roles": req.Roles, "realm_access": map[string]any{"roles": req.Roles},
	}
	if req.TenantID != "" {
		claims["tenant_id"] = req.TenantID
	}
	if len(req.Memberships) > 0 {
		claims["memberships"] = req.Memberships
	}
	if req.Username != "" {
		claims["preferred_username"] = req.Username
	}
	if len(req.Grants) > 0 {
		claims["tenancy"] = req.Grants
	}
	if len(req.Organizations) > 0 {
		claims["organization"] = req.Organizations
	}
	if len(req.TenantIDs) > 0 {
		claims["tenant_ids"] = req.TenantIDs
	}
	if req.AZP != "" {
		claims["azp"] = req.AZP
	}
	if len(req.Audience) > 0 {
		claims["aud"] = req.Audience
	}
	return d.sign(claims)
}

// sign returns claims as a compact JWS (RFC 7515) signed with EdDSA (RFC
// 8037): the one algorithm this issuer needs, written out rather than
// pulling a JOSE library into the module. The API verifies these tokens
// with go-oidc, like any other issuer's, which checks this encoding.
func (d *DevIssuer) sign(claims map[string]any) (string, error) {
	header, err := json.Marshal(map[string]string{"alg": "EdDSA", "kid": d.kid, "typ": "JWT"})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(d.key, []byte(input))), nil
}

// Handler serves the discovery document and the JWKS under the issuer
// URL's path (DevIssuerPath for the API's own).
func (d *DevIssuer) Handler() http.Handler {
	base := DevIssuerPath
	if u, err := url.Parse(d.issuer); err == nil && u.Path != "" {
		base = u.Path
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+base+"/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{
			"issuer":                                d.issuer,
			"jwks_uri":                              d.issuer + "/jwks",
			"id_token_signing_alg_values_supported": []string{"EdDSA"},
			"response_types_supported":              []string{"token"},
			"subject_types_supported":               []string{"public"},
			"authorization_endpoint":                d.issuer + "/authorize",
		})
	})
	mux.HandleFunc("GET "+base+"/jwks", func(w http.ResponseWriter, r *http.Request) {
		pub := d.key.Public().(ed25519.PublicKey)
		writeJSON(w, map[string]any{"keys": []map[string]string{{
			"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(pub), "kid": d.kid, "alg": "EdDSA", "use": "sig",
		}}})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=300")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		http.Error(w, fmt.Sprint(err), http.StatusInternalServerError)
	}
}
