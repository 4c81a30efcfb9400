package httpapi_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/pkg/domain"
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

// activeTenant makes an active tenant of customer, placed as the customer's
// realm mode says.
func (h *harness) activeTenant(t *testing.T, customer, slug string) string {
	t.Helper()
	tb := tenantBody(slug)
	tb["customer_id"] = customer
	id := h.create(t, tb)["id"].(string)
	h.do(t, req{method: "POST", path: "/v1/tenants/" + id + "/activate", token: h.admin})
	h.waitFor(t, id, 10*time.Second, func(m map[string]any) bool { return m["state"] == "active" })
	return id
}

// TestSharedRealmTokens: a token of the shared realm acts on the one
// tenant of its grant (picked by the organization claim when the account
// belongs to several), with the grant's roles and never the realm's,
// which are the shared tenant's; a grant naming a tenant outside the
// shared realm, a disabled grant, a suspended tenant or a grant in a
// tenant's own realm is refused.
func TestSharedRealmTokens(t *testing.T) {
	h := newHarness(t, options{provisioner: true, realms: true, projections: true, customerPolicy: true, bootstrap: true})
	body := businessCustomer(t, "Smallco")
	body["realm_mode"] = "shared"
	customer := h.createCustomer(t, body)["id"].(string)
	h.verifyCustomer(t, customer, "completed")
	small, tiny := h.activeTenant(t, customer, "smallco"), h.activeTenant(t, customer, "tinyco")
	ownCustomer := h.createCustomer(t, businessCustomer(t, "Bigco"))["id"].(string)
	h.verifyCustomer(t, ownCustomer, "completed")
	own := h.activeTenant(t, ownCustomer, "own-realm") // placed in a realm of its own: its customer's mode

	grant := func(tenant, org string, enabled bool, roles ...string) domain.Grant {
		return domain.Grant{TenantID: tenant, Organization: org, UserID: "u-" + org, Enabled: enabled, Roles: roles}
	}
	shared := func(req auth.TokenRequest) string { return h.realmToken(t, "shared", req) }

	// One tenant's admin: acts on it alone; the realm's roles (the shared
	// tenant's) do not count.
	admin := shared(auth.TokenRequest{Subject: "kc-1", Username: "ann", Roles: []string{"platform-admin", "tenant-admin"},
		Grants: []domain.Grant{grant(small, "smallco", true, "tenant-admin")}})
	if me := h.status(t, "GET", "/v1/me", admin, nil).json(t); me["tenant_id"] != small || slices.Contains(toStrings(me["roles"]), "platform-admin") {
		t.Fatalf("me: %v", me)
	}
	if r := h.status(t, "POST", "/v1/tenants/me/users", admin, map[string]any{"username": "from-shared"}); r.Status != http.StatusCreated {
		t.Fatalf("create as the organization's tenant-admin: %d %s", r.Status, r.Body)
	}
	for _, id := range []string{tiny, own, domain.SharedTenantID} {
		if r := h.status(t, "GET", "/v1/tenants/"+id+"/users", admin, nil); r.Status != http.StatusNotFound {
			t.Errorf("tenant %s with smallco's token: %d %s", id, r.Status, r.Body)
		}
	}
	viewer := shared(auth.TokenRequest{Subject: "kc-2", Roles: []string{"tenant-admin"}, Grants: []domain.Grant{grant(small, "smallco", true, "tenant-viewer")}})
	if r := h.status(t, "POST", "/v1/tenants/me/users", viewer, map[string]any{"username": "by-realm-role"}); r.Status != http.StatusForbidden {
		t.Fatalf("a realm role counted: %d %s", r.Status, r.Body)
	}

	// The shared tenant's own user: no grant, marked as the shared tenant's.
	operator := shared(auth.TokenRequest{Subject: "kc-12", Roles: []string{"tenant-viewer"}, TenantIDs: []string{domain.SharedTenantID}})
	if me := h.status(t, "GET", "/v1/me", operator, nil).json(t); me["tenant_id"] != domain.SharedTenantID {
		t.Fatalf("me as the shared tenant's user: %v", me)
	}

	// An account of both: the organization claim picks the tenant.
	both := []domain.Grant{grant(small, "smallco", true, "tenant-admin"), grant(tiny, "tinyco", true, "tenant-viewer")}
	picked := shared(auth.TokenRequest{Subject: "kc-3", Grants: both, Organizations: []string{"tinyco"}})
	if me := h.status(t, "GET", "/v1/me", picked, nil).json(t); me["tenant_id"] != tiny || !slices.Equal(toStrings(me["roles"]), []string{"tenant-viewer"}) {
		t.Fatalf("me with organization tinyco: %v", me)
	}
	if r := h.status(t, "GET", "/v1/tenants/"+small+"/users", picked, nil); r.Status != http.StatusNotFound {
		t.Fatalf("the other organization's tenant: %d", r.Status)
	}

	if r := h.do(t, req{method: "POST", path: "/v1/tenants/" + tiny + "/suspend", token: h.admin, body: `{"reason":"payment"}`}); r.Status != http.StatusOK {
		t.Fatalf("suspend: %d %s", r.Status, r.Body)
	}
	for name, tok := range map[string]string{
		"several grants, none picked": shared(auth.TokenRequest{Subject: "kc-4", Grants: both}),
		"a disabled grant":            shared(auth.TokenRequest{Subject: "kc-5", Grants: []domain.Grant{grant(small, "smallco", false, "tenant-admin")}}),
		"a suspended tenant":          shared(auth.TokenRequest{Subject: "kc-6", Grants: []domain.Grant{grant(tiny, "tinyco", true, "tenant-admin")}}),
		"a tenant of its own realm":   shared(auth.TokenRequest{Subject: "kc-7", Grants: []domain.Grant{grant(own, "own-realm", true, "tenant-admin")}}),
		"the shared tenant":           shared(auth.TokenRequest{Subject: "kc-8", Grants: []domain.Grant{grant(domain.SharedTenantID, "shared", true, "tenant-admin")}}),
		"another tenant_id claim": shared(auth.TokenRequest{Subject: "kc-9", TenantID: tiny,
			Grants: []domain.Grant{grant(small, "smallco", true, "tenant-admin")}}),
		"a grant in a tenant's own realm": h.realmToken(t, "own-realm", auth.TokenRequest{Subject: "kc-10",
			Grants: []domain.Grant{grant(small, "smallco", true, "tenant-admin")}}),
		"an account of no tenant yet": shared(auth.TokenRequest{Subject: "kc-11", Roles: []string{"tenant-viewer"}, TenantIDs: []string{small}}),
	} {
		if r := h.status(t, "GET", "/v1/tenants/me/users", tok, nil); r.Status != http.StatusUnauthorized {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
}
