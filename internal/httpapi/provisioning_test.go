package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/keycloak"
	"github.com/tenancyhq/tenancy/internal/keycloak/keycloakfake"
	"github.com/tenancyhq/tenancy/internal/saga"
)

// newKeycloak starts a Keycloak fake for the test and returns it with a
// client logged in as the provisioner, whose requests give up after
// timeout.
func newKeycloak(t *testing.T, timeout time.Duration) (*keycloakfake.Server, *keycloak.Client) {
	t.Helper()
	kf := keycloakfake.New(keycloakfake.Options{ClientID: "prov", ClientSecret: "secret"})
	t.Cleanup(kf.Close)
	kc, err := keycloak.New(keycloak.Config{URL: kf.URL(), ClientID: "prov", ClientSecret: "secret", HTTPClient: &http.Client{Timeout: timeout}})
	if err != nil {
		t.Fatal(err)
	}
	return kf, kc
}

func TestAdminPasswordAndRetry(t *testing.T) {
	kf, kc := newKeycloak(t, 2*time.Second)
	h := newHarness(t, options{provisioner: true, integrations: saga.Integrations{Keycloak: kc}})
	id := h.create(t, tenantBody("pwd"))["id"].(string)

	// Nothing to retry yet.
	if r := h.do(t, req{method: "POST", path: "/v1/tenants/" + id + "/provisioning/retry", token: h.admin}); r.Status != 409 {
		t.Fatalf("retry with nothing failed: %d %s", r.Status, r.Body)
	}
	h.do(t, req{method: "POST", path: "/v1/tenants/" + id + "/activate", token: h.admin})
	h.waitFor(t, id, 10*time.Second, func(m map[string]any) bool { return m["state"] == "active" })

	r := h.do(t, req{method: "POST", path: "/v1/tenants/" + id + "/admin-password", token: h.admin})
	if r.Status != 200 || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("admin password: %d %v %s", r.Status, r.Header, r.Body)
	}
	body := r.json(t)
	users := kf.Users("pwd")
	var adminID string
	for _, u := range users {
		if u.Username == body["username"] {
			adminID = u.ID
		}
	}
	value, temporary, ok := kf.Password("pwd", adminID)
	if !ok || !temporary || value != body["temporary_password"] || len(value) < 16 {
		t.Fatalf("password in Keycloak: %q temporary=%v ok=%v; response %v", value, temporary, ok, body)
	}
	// The event records the issue, never the password.
	ev := h.do(t, req{method: "GET", path: "/v1/tenants/" + id + "/events?page_size=100", token: h.admin})
	if !strings.Contains(string(ev.Body), "admin_password_issued") || strings.Contains(string(ev.Body), value) {
		t.Fatal("the issue is not recorded, or the password leaked into the log")
	}
	viewer := h.token(t, tokenFor("tenant-admin", id))
	if r := h.do(t, req{method: "POST", path: "/v1/tenants/" + id + "/admin-password", token: viewer}); r.Status != 403 {
		t.Fatalf("a tenant admin issued a password: %d", r.Status)
	}
}

func TestAdminPasswordWithoutIdentityProvider(t *testing.T) {
	h := newHarness(t, options{})
	id := h.create(t, tenantBody("nokc"))["id"].(string)
	r := h.do(t, req{method: "POST", path: "/v1/tenants/" + id + "/admin-password", token: h.admin})
	if r.Status != 409 || !strings.Contains(string(r.Body), "KEYCLOAK_URL") {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
}
