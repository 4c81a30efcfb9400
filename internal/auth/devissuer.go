package auth

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

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
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: d.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", d.kid))
	if err != nil {
		return "", err
	}
	std := jwt.Claims{
		Issuer:   d.issuer,
		Subject:  req.Subject,
		Audience: jwt.Audience{d.audience},
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(req.TTL)),
	}
	extra := map[string]any{"roles": req.Roles, "realm_access": map[string]any{"roles": req.Roles}}
	if req.TenantID != "" {
		extra["tenant_id"] = req.TenantID
	}
	return jwt.Signed(signer).Claims(std).Claims(extra).Serialize()
}

// Handler serves the discovery document and the JWKS under DevIssuerPath.
func (d *DevIssuer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+DevIssuerPath+"/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{
			"issuer":                                d.issuer,
			"jwks_uri":                              d.issuer + "/jwks",
			"id_token_signing_alg_values_supported": []string{"EdDSA"},
			"response_types_supported":              []string{"token"},
			"subject_types_supported":               []string{"public"},
			"authorization_endpoint":                d.issuer + "/authorize",
		})
	})
	mux.HandleFunc("GET "+DevIssuerPath+"/jwks", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
			Key: d.key.Public(), KeyID: d.kid, Algorithm: string(jose.EdDSA), Use: "sig",
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
