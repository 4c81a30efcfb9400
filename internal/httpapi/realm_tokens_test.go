package httpapi_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/auth"
)

// realmToken mints a token of realm's issuer, as Keycloak would for the
// tenant's tenancy-app client.
func (h *harness) realmToken(t *testing.T, realm string, req auth.TokenRequest) string {
	t.Helper()
	if req.AZP == "" {
		req.AZP = "tenancy-app"
	}
	tok, err := h.realms.issuer(realm).Mint(req, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestRealmTokens: a token of a tenant's own realm acts on that tenant
// alone, with its tenant roles only; a realm that is no active tenant's, a
// token that names another tenant, or one signed with another realm's key
// is refused.
func TestRealmTokens(t *testing.T) {
	h := newHarness(t, options{provisioner: true, realms: true, projections: true})
	a, b := h.directoryOf(t, "realm-a"), h.directoryOf(t, "realm-b")
	for _, id := range []string{a.tenant, b.tenant} {
		h.do(t, req{method: "POST", path: "/v1/tenants/" + id + "/activate", token: h.admin})
		h.waitFor(t, id, 10*time.Second, func(m map[string]any) bool { return m["state"] == "active" })
	}
	draft := h.create(t, tenantBody("realm-draft"))["id"].(string)

	// A realm administrator maps platform-admin too: it does not count.
	admin := h.realmToken(t, "realm-a", auth.TokenRequest{Subject: "kc-1", Username: "realm-a-admin", Roles: []string{"tenant-admin", "platform-admin"},
		Memberships: []auth.OUMembership{{OU: a.ou, Roles: []string{"admin"}}}, TenantID: a.tenant})
	me := h.status(t, "GET", "/v1/me", admin, nil).json(t)
	if me["tenant_id"] != a.tenant || strings.Contains(strings.Join(toStrings(me["roles"]), ","), "platform-admin") {
		t.Fatalf("me: %v", me)
	}
	if r := h.status(t, "POST", "/v1/tenants/me/users", admin, map[string]any{"username": "from-realm"}); r.Status != http.StatusCreated {
		t.Fatalf("create as the realm's tenant-admin: %d %s", r.Status, r.Body)
	}
	for _, path := range []string{"/v1/tenants/" + b.tenant + "/users", "/v1/tenants/" + b.tenant} {
		if r := h.status(t, "GET", path, admin, nil); r.Status != http.StatusNotFound && r.Status != http.StatusForbidden {
			t.Fatalf("%s with realm A's token: %d", path, r.Status)
		}
	}
	if r := h.status(t, "POST", "/v1/tenants", admin, tenantBody("escalate")); r.Status != http.StatusForbidden {
		t.Fatalf("a realm token created a tenant: %d", r.Status)
	}
	// A viewer without a tenant_id claim: the realm says which tenant.
	viewer := h.realmToken(t, "realm-a", auth.TokenRequest{Subject: "kc-2", Roles: []string{"tenant-viewer"}})
	h.listed(t, "/v1/tenants/me/users", viewer)

	// A non-browser client's token (client credentials): issued to the
	// client itself, for the tenancy-app audience its mapper adds; its
	// service account's roles are the client's.
	bot := h.realmToken(t, "realm-a", auth.TokenRequest{Subject: "kc-sa-1", Username: "service-account-realm-a-bot", AZP: "realm-a-bot",
		Audience: []string{"tenancy-app"}, TenantID: a.tenant, Roles: []string{"tenant-viewer", "default-roles-realm-a"}})
	h.listed(t, "/v1/tenants/me/users", bot)
	if r := h.status(t, "POST", "/v1/tenants/me/users", bot, map[string]any{"username": "by-a-viewer-bot"}); r.Status != http.StatusForbidden {
		t.Fatalf("a viewer client wrote: %d %s", r.Status, r.Body)
	}
	if r := h.status(t, "GET", "/v1/tenants/"+b.tenant+"/users", bot, nil); r.Status != http.StatusNotFound {
		t.Fatalf("a client token read another tenant: %d %s", r.Status, r.Body)
	}

	// Realm A's issuer name, a key realm A does not have.
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	forged, _ := auth.NewDevIssuer(h.realms.issuer("realm-a").Issuer(), "account", otherKey).Mint(
		auth.TokenRequest{Subject: "x", Roles: []string{"tenant-admin"}, AZP: "tenancy-app"}, time.Now())
	for name, tok := range map[string]string{
		"another tenant named":   h.realmToken(t, "realm-a", auth.TokenRequest{Subject: "kc-3", Roles: []string{"tenant-admin"}, TenantID: b.tenant}),
		"a draft's realm":        h.realmToken(t, "realm-draft", auth.TokenRequest{Subject: "kc-4", Roles: []string{"tenant-admin"}}),
		"no tenant's realm":      h.realmToken(t, "nobody", auth.TokenRequest{Subject: "kc-5", Roles: []string{"tenant-admin"}}),
		"a key the realm lacks":  forged,
		"another client's token": h.realmToken(t, "realm-a", auth.TokenRequest{Subject: "kc-6", Roles: []string{"tenant-admin"}, AZP: "account-console"}),
		"a client token for another audience": h.realmToken(t, "realm-a", auth.TokenRequest{Subject: "kc-7", Roles: []string{"tenant-admin"}, AZP: "realm-a-bot",
			Audience: []string{"account", "billing-service"}}),
	} {
		if r := h.status(t, "GET", "/v1/tenants/me/users", tok, nil); r.Status != http.StatusUnauthorized {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	_ = draft
}

func toStrings(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}
