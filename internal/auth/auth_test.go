package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/pkg/domain"
)

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestAuthenticate(t *testing.T) {
	key := newKey(t)
	var iss *DevIssuer
	srv := httptest.NewServer(nil)
	defer srv.Close()
	iss = NewDevIssuer(srv.URL+DevIssuerPath, "tenancy", key)
	srv.Config.Handler = iss.Handler()

	now := time.Now()
	a, err := New(Config{IssuerURL: iss.Issuer(), Audience: "tenancy"})
	if err != nil {
		t.Fatal(err)
	}
	mint := func(d *DevIssuer, req TokenRequest) string {
		tok, err := d.Mint(req, now)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	ctx := context.Background()

	admin := mint(iss, TokenRequest{Subject: "alice", Roles: []string{RolePlatformAdmin}})
	p, err := a.Authenticate(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "alice" || !p.IsPlatformAdmin() || !p.CanRead("any") {
		t.Fatalf("principal %+v", p)
	}
	scoped, err := a.Authenticate(ctx, mint(iss, TokenRequest{Subject: "bob", Roles: []string{RoleTenantViewer}, TenantID: "t1"}))
	if err != nil {
		t.Fatal(err)
	}
	if scoped.IsPlatformAdmin() || !scoped.CanRead("t1") || scoped.CanRead("t2") {
		t.Fatalf("tenant-scoped principal %+v", scoped)
	}

	// A token from another key at the same issuer URL, one for another
	// audience, an expired one, and garbage are all refused with a reason.
	forger := NewDevIssuer(iss.Issuer(), "tenancy", newKey(t))
	otherAud := NewDevIssuer(iss.Issuer(), "billing", key)
	otherIss := NewDevIssuer("https://evil.test", "tenancy", key)
	cases := map[string]struct {
		token string
		msg   string
	}{
		"forged":         {mint(forger, TokenRequest{Subject: "mallory", Roles: []string{RolePlatformAdmin}}), "signature"},
		"wrong audience": {mint(otherAud, TokenRequest{Subject: "alice"}), "audience"},
		"wrong issuer":   {mint(otherIss, TokenRequest{Subject: "alice"}), "another issuer"},
		"expired": {func() string {
			tok, _ := iss.Mint(TokenRequest{Subject: "alice", TTL: time.Minute}, now.Add(-time.Hour))
			return tok
		}(), "expired"},
		"garbage": {"not.a.jwt", "not a JWT"},
		"empty":   {"", "Authorization: Bearer"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := a.Authenticate(ctx, tc.token)
			if !errors.Is(err, domain.ErrUnauthenticated) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error = %v, want unauthenticated mentioning %q", err, tc.msg)
			}
		})
	}
}

// TestKeycloakShapedToken checks roles from realm_access (Keycloak's shape)
// and a token whose only identity is the authorized party.
func TestKeycloakShapedToken(t *testing.T) {
	key := newKey(t)
	srv := httptest.NewServer(nil)
	defer srv.Close()
	iss := NewDevIssuer(srv.URL+DevIssuerPath, "tenancy", key)
	srv.Config.Handler = iss.Handler()
	tok, err := iss.sign(map[string]any{
		"iss": iss.Issuer(), "aud": []string{"account", "tenancy"}, "azp": "ops-cli",
		"exp": time.Now().Add(time.Hour).Unix(), "realm_access": map[string]any{"roles": []string{"offline_access", RolePlatformAdmin}},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := New(Config{IssuerURL: iss.Issuer(), Audience: "tenancy"})
	p, err := a.Authenticate(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "client:ops-cli" || !p.IsPlatformAdmin() {
		t.Fatalf("principal %+v", p)
	}
}

func TestIssuerDownIsUnavailableNotUnauthenticated(t *testing.T) {
	a, _ := New(Config{IssuerURL: "http://127.0.0.1:1/nowhere", Audience: "tenancy"})
	_, err := a.Authenticate(context.Background(), "x.y.z")
	if !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("error = %v, want unavailable", err)
	}
}

func TestBearerToken(t *testing.T) {
	for in, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "Basic abc": "", "abc": "", "": ""} {
		if got := BearerToken(in); got != want {
			t.Errorf("BearerToken(%q) = %q, want %q", in, got, want)
		}
	}
}
