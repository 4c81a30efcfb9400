package events

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
)

// JWK is one Ed25519 public key in JSON Web Key form (RFC 8037), with
// Tenancy's life-cycle members alongside the standard ones.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	// Status is "active" for keys signing new events, "retired" otherwise.
	Status    string     `json:"status"`
	CreatedAt time.Time  `json:"created_at"`
	RetiredAt *time.Time `json:"retired_at,omitempty"`
}

// JWKSet is a JSON Web Key Set.
type JWKSet struct {
	Keys []JWK `json:"keys"`
}

// JWKS returns the key set as a JSON Web Key Set, oldest key first.
func (ks *KeySet) JWKS() JWKSet {
	set := JWKSet{Keys: []JWK{}}
	for _, k := range ks.Keys() {
		j := JWK{
			Kty: "OKP", Crv: "Ed25519", Use: "sig", Alg: "EdDSA",
			X:         base64.RawURLEncoding.EncodeToString(k.Key),
			Kid:       k.ID,
			Status:    "active",
			CreatedAt: k.CreatedAt.UTC(),
		}
		if !k.RetiredAt.IsZero() {
			r := k.RetiredAt.UTC()
			j.RetiredAt = &r
			j.Status = "retired"
		}
		set.Keys = append(set.Keys, j)
	}
	return set
}

// ParseJWKS reads a JSON Web Key Set of Ed25519 keys. Keys of other types
// are ignored; a malformed Ed25519 key or a kid that is not the key's
// thumbprint is an error.
func ParseJWKS(raw []byte) (*KeySet, error) {
	var set JWKSet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("parse JWKS: %w", err)
	}
	ks := NewKeySet()
	for i, j := range set.Keys {
		if j.Kty != "OKP" || j.Crv != "Ed25519" {
			continue
		}
		x, err := base64.RawURLEncoding.DecodeString(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("parse JWKS: key %d: x is not a base64url Ed25519 public key", i)
		}
		pub := ed25519.PublicKey(x)
		if j.Kid != "" && j.Kid != KeyID(pub) {
			return nil, fmt.Errorf("parse JWKS: key %d: kid %q is not the key's thumbprint", i, j.Kid)
		}
		k := PublicKey{ID: KeyID(pub), Key: pub, CreatedAt: j.CreatedAt}
		if j.RetiredAt != nil {
			k.RetiredAt = *j.RetiredAt
		}
		ks.Add(k)
	}
	return ks, nil
}
