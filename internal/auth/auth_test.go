package auth

import (
	"github.com/prometheus/client_golang/prometheus/testutil"

	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/metrics"
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
	const t1, t2 = "0190c4f2-7d1e-7b3a-9c2d-5e6f7a8b9c0d", "0190c4f2-7d1e-7b3a-9c2d-5e6f7a8b9c0e"
	scoped, err := a.Authenticate(ctx, mint(iss, TokenRequest{Subject: "bob", Roles: []string{RoleTenantViewer}, TenantID: strings.ToUpper(t1)}))
	if err != nil {
		t.Fatal(err)
	}
	if scoped.IsPlatformAdmin() || !scoped.CanRead(t1) || scoped.CanRead(t2) {
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
		"garbage":              {"not.a.jwt", "not a JWT"},
		"tenant_id not a UUID": {mint(iss, TokenRequest{Subject: "bob", Roles: []string{RoleTenantAdmin}, TenantID: "t1' OR '1'='1"}), "tenant_id"},
		"tenant_id in braces":  {mint(iss, TokenRequest{Subject: "bob", Roles: []string{RoleTenantAdmin}, TenantID: "{" + t1 + "}"}), "tenant_id"},
		"empty":                {"", "Authorization: Bearer"},
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
	if !errors.Is(err, domain.ErrUnavailable) || strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("error = %v, want unavailable, naming no address", err)
	}
	if err := a.Ready(context.Background()); err == nil {
		t.Fatal("ready before the issuer's keys were ever fetched")
	}
}

// TestIssuerOutageAfterKeysFetched checks that once the issuer's keys were
// fetched, an issuer outage neither makes the API unready nor refuses
// tokens signed with the keys it has; a token signed with a key it cannot
// fetch is refused, and the failed fetch is counted.
func TestIssuerOutageAfterKeysFetched(t *testing.T) {
	key := newKey(t)
	srv := httptest.NewServer(nil)
	iss := NewDevIssuer(srv.URL+DevIssuerPath, "tenancy", key)
	srv.Config.Handler = iss.Handler()
	now := time.Now()
	clock := now
	a, _ := New(Config{IssuerURL: iss.Issuer(), Audience: "tenancy", Now: func() time.Time { return clock }})
	if err := a.Ready(context.Background()); err != nil {
		t.Fatalf("not ready with the issuer up: %v", err)
	}
	srv.Close()
	clock = now.Add(10 * time.Minute)
	tok, _ := iss.Mint(TokenRequest{Subject: "alice", Roles: []string{RolePlatformAdmin}}, now)
	if _, err := a.Authenticate(context.Background(), tok); err != nil {
		t.Fatalf("a token signed with a fetched key, during the outage: %v", err)
	}
	if err := a.Ready(context.Background()); err != nil {
		t.Fatalf("not ready during an issuer outage: %v", err)
	}
	before := testutil.ToFloat64(metrics.IssuerFailures.WithLabelValues("keys"))
	rotated := NewDevIssuer(iss.Issuer(), "tenancy", newKey(t))
	tok2, _ := rotated.Mint(TokenRequest{Subject: "alice"}, now)
	if _, err := a.Authenticate(context.Background(), tok2); !errors.Is(err, domain.ErrUnauthenticated) {
		t.Fatalf("a token signed with a key never fetched: %v", err)
	}
	if got := testutil.ToFloat64(metrics.IssuerFailures.WithLabelValues("keys")); got != before+1 {
		t.Fatalf("failed key fetches counted %v, want %v", got, before+1)
	}
}

func TestBearerToken(t *testing.T) {
	for in, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "Basic abc": "", "abc": "", "": ""} {
		if got := BearerToken(in); got != want {
			t.Errorf("BearerToken(%q) = %q, want %q", in, got, want)
		}
	}
}
