package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// A GSTIN whose state code is 27, whose PAN is AAACA1234C and whose check
// character follows the official mod-36 algorithm.
const (
	testPAN   = "AAACA1234C"
	testGSTIN = "27AAACA1234C1Z"
)

func gstin(t testing.TB) string {
	t.Helper()
	c, ok := domain.GSTINCheck(testGSTIN)
	if !ok {
		t.Fatal("no check character for the test GSTIN")
	}
	return testGSTIN + string(c)
}

func businessCustomer(t testing.TB, name string) map[string]any {
	return map[string]any{
		"kind": "business", "legal_name": name + " Private Limited", "display_name": name,
		"email": "accounts@" + strings.ToLower(name) + ".test", "phone": "+912212345678",
		"address":    map[string]any{"line1": "1 Marine Drive", "city": "Mumbai", "state": "MH", "postal_code": "400020", "country": "IN"},
		"fiscal_ids": map[string]any{"pan": testPAN, "tan": "MUMA12345B", "gstin": gstin(t)},
	}
}

func (h *harness) createCustomer(t testing.TB, body any) map[string]any {
	t.Helper()
	return h.created(t, "/v1/customers", body)
}

func (h *harness) verifyCustomer(t testing.TB, id, status string) map[string]any {
	t.Helper()
	r := h.do(t, req{method: "POST", path: "/v1/customers/" + id + "/verification", token: h.admin,
		body: map[string]any{"status": status, "evidence": []map[string]string{{"kind": "certificate-of-incorporation", "reference": "dms://kyb/" + id}}}})
	if r.Status != http.StatusOK {
		t.Fatalf("verification %s: %d %s", status, r.Status, r.Body)
	}
	return r.json(t)
}

func problemType(t testing.TB, r response) string {
	t.Helper()
	m := r.json(t)
	s, _ := m["type"].(string)
	return strings.TrimPrefix(s, "/problems/")
}

// TestCustomers walks a customer from creation to verification, with the
// default catalog's policy: a standard-plan tenant is activated only once
// its customer is verified.
func TestCustomers(t *testing.T) {
	h := newHarness(t, options{projections: true, provisioner: true, customerPolicy: true, bootstrap: true})

	// Bootstrap made the root customer: a fresh system lists it.
	r := h.do(t, req{method: "GET", path: fmt.Sprintf("/v1/customers?min_seq=%d", h.lastSeq(t)), token: h.admin})
	if r.Status != http.StatusOK || !bytes.Contains(r.Body, []byte(domain.RootCustomerID)) {
		t.Fatalf("a fresh system's customers do not list the root customer: %d %s", r.Status, r.Body)
	}

	// Every failing field in one 422.
	bad := businessCustomer(t, "Bad")
	bad["fiscal_ids"] = map[string]any{"pan": "AAAXA1234C", "tan": "MUM12345B", "gstin": "27AAACA1234C1ZX"}
	bad["address"] = map[string]any{"line1": "x", "city": "y", "country": "India"}
	r = h.do(t, req{method: "POST", path: "/v1/customers", token: h.admin, body: bad})
	if r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("bad customer: %d %s", r.Status, r.Body)
	}
	for _, field := range []string{"fiscal_ids.pan", "fiscal_ids.tan", "fiscal_ids.gstin", "address.country"} {
		if !bytes.Contains(r.Body, []byte(`"field":"`+field+`"`)) {
			t.Errorf("the 422 does not list %s: %s", field, r.Body)
		}
	}

	c := h.createCustomer(t, businessCustomer(t, "Acme"))
	id := c["id"].(string)
	if v := c["verification"].(map[string]any); v["type"] != "kyb" || v["status"] != "pending" {
		t.Fatalf("a new business's verification = %v, want kyb pending", v)
	}
	if f := c["fiscal_ids"].(map[string]any); f["pan"] != testPAN {
		t.Fatalf("fiscal ids = %v", f)
	}

	// Lookup by a fiscal id, typed in another case, in the body.
	r = h.do(t, req{method: "POST", path: "/v1/customers/lookup", token: h.admin, body: map[string]string{"kind": "gstin", "value": strings.ToLower(gstin(t))}})
	if r.Status != http.StatusOK || r.json(t)["id"] != id {
		t.Fatalf("lookup by GSTIN: %d %s", r.Status, r.Body)
	}
	r = h.do(t, req{method: "POST", path: "/v1/customers/lookup", token: h.admin, body: map[string]string{"kind": "pan", "value": "ZZZPZ9999Z"}})
	if r.Status != http.StatusNotFound {
		t.Fatalf("lookup of an unknown PAN: %d %s", r.Status, r.Body)
	}

	// Tenants belong to customers that exist.
	tb := tenantBody("acme")
	tb["customer_id"] = "01900000-0000-7000-8000-0000000000ff"
	r = h.do(t, req{method: "POST", path: "/v1/tenants", token: h.admin, body: tb})
	if r.Status != http.StatusUnprocessableEntity || !bytes.Contains(r.Body, []byte("customer_id")) {
		t.Fatalf("a tenant of an unknown customer: %d %s", r.Status, r.Body)
	}
	tn := h.create(t, tenantBody("acme"))
	tid := tn["id"].(string)
	if tn["customer"] != nil {
		t.Fatalf("a tenant created without a customer shows %v", tn["customer"])
	}

	// Policy before action: no customer, then an unverified one.
	r = h.do(t, req{method: "POST", path: "/v1/tenants/" + tid + "/activate", token: h.admin})
	if r.Status != http.StatusConflict || problemType(t, r) != "customer-required" {
		t.Fatalf("activation without a customer: %d %s", r.Status, r.Body)
	}
	r = h.do(t, req{method: "PATCH", path: "/v1/tenants/" + tid, token: h.admin, body: map[string]any{"customer_id": id}, contentType: "application/merge-patch+json"})
	if r.Status != http.StatusOK {
		t.Fatalf("attach: %d %s", r.Status, r.Body)
	}
	if cu := r.json(t)["customer"].(map[string]any); cu["id"] != id {
		t.Fatalf("the PATCH answer's customer block = %v", cu)
	}
	got := h.do(t, req{method: "GET", path: "/v1/tenants/" + tid, token: h.admin}).json(t)
	if cu := got["customer"].(map[string]any); cu["id"] != id || cu["verification_status"] != "pending" || cu["display_name"] != "Acme" {
		t.Fatalf("the tenant's customer block = %v", cu)
	}
	r = h.do(t, req{method: "POST", path: "/v1/tenants/" + tid + "/activate", token: h.admin})
	if r.Status != http.StatusConflict || problemType(t, r) != "customer-not-verified" || !bytes.Contains(r.Body, []byte("verification is pending")) {
		t.Fatalf("activation for an unverified customer: %d %s", r.Status, r.Body)
	}
	h.verifyCustomer(t, id, "partial")
	r = h.do(t, req{method: "POST", path: "/v1/tenants/" + tid + "/activate", token: h.admin})
	if r.Status != http.StatusConflict || problemType(t, r) != "customer-not-verified" {
		t.Fatalf("standard does not accept partial: %d %s", r.Status, r.Body)
	}
	v := h.verifyCustomer(t, id, "completed")["verification"].(map[string]any)
	if v["status"] != "completed" || v["updated_by"] != "admin-1" {
		t.Fatalf("verification = %v", v)
	}
	r = h.do(t, req{method: "POST", path: "/v1/tenants/" + tid + "/activate", token: h.admin})
	if r.Status != http.StatusOK {
		t.Fatalf("activation for a verified customer: %d %s", r.Status, r.Body)
	}
	h.waitFor(t, tid, 10*time.Second, func(m map[string]any) bool { return m["state"] == "active" })

	// The customer's tenants, and the tenants filter.
	seq := h.lastSeq(t)
	for _, path := range []string{"/v1/customers/" + id + "/tenants", "/v1/tenants?customer_id=" + id} {
		r = h.do(t, req{method: "GET", path: fmt.Sprintf("%s%smin_seq=%d", path, sep(path), seq), token: h.admin})
		items, _ := r.json(t)["items"].([]any)
		if r.Status != http.StatusOK || len(items) != 1 || items[0].(map[string]any)["id"] != tid {
			t.Fatalf("%s: %d %s", path, r.Status, r.Body)
		}
	}
	// Search by name, and the filters.
	r = h.do(t, req{method: "GET", path: fmt.Sprintf("/v1/customers?q=acme&kind=business&verification_status=completed&min_seq=%d", seq), token: h.admin})
	if items, _ := r.json(t)["items"].([]any); r.Status != http.StatusOK || len(items) != 1 || bytes.Contains(r.Body, []byte(testPAN)) {
		t.Fatalf("search: %d %s (lists carry no fiscal ids)", r.Status, r.Body)
	}

	// A customer with open tenants cannot be deleted.
	r = h.do(t, req{method: "DELETE", path: "/v1/customers/" + id + "?confirm=" + id, token: h.admin})
	if r.Status != http.StatusConflict || !bytes.Contains(r.Body, []byte("1 tenant")) {
		t.Fatalf("deleting a customer with a tenant: %d %s", r.Status, r.Body)
	}
}

func sep(path string) string {
	if strings.Contains(path, "?") {
		return "&"
	}
	return "?"
}

// TestHoldsAndBilling: suspensions are holds, one per reason; billing may
// only suspend for payment and lift the payment holds it placed.
func TestHoldsAndBilling(t *testing.T) {
	h := newHarness(t, options{projections: true, provisioner: true})
	billing := h.token(t, auth.TokenRequest{Subject: "svc-billing", Roles: []string{auth.RoleBilling}})
	tid := h.create(t, tenantBody("holdco"))["id"].(string)
	if r := h.do(t, req{method: "POST", path: "/v1/tenants/" + tid + "/activate", token: h.admin}); r.Status != http.StatusOK {
		t.Fatalf("activate: %d %s", r.Status, r.Body)
	}
	h.waitFor(t, tid, 10*time.Second, func(m map[string]any) bool { return m["state"] == "active" })

	call := func(token, action, body string) response {
		t.Helper()
		var b any
		if body != "" {
			b = body
		}
		return h.do(t, req{method: "POST", path: "/v1/tenants/" + tid + "/" + action, token: token, body: b})
	}
	if r := call(billing, "suspend", `{"reason":"compliance"}`); r.Status != http.StatusForbidden {
		t.Fatalf("billing suspending for compliance: %d %s", r.Status, r.Body)
	}
	if r := call(billing, "suspend", `{"reason":"payment","note":"invoice 42 overdue"}`); r.Status != http.StatusOK || r.json(t)["state"] != "suspended" {
		t.Fatalf("billing suspending for payment: %d %s", r.Status, r.Body)
	}
	r := call(h.admin, "suspend", `{"reason":"compliance"}`)
	holds, _ := r.json(t)["holds"].([]any)
	if r.Status != http.StatusOK || len(holds) != 2 {
		t.Fatalf("a second hold: %d %s", r.Status, r.Body)
	}
	if hd := holds[0].(map[string]any); hd["reason"] != "payment" || hd["placed_by"] != "svc-billing" {
		t.Fatalf("first hold = %v", hd)
	}
	if r := call(h.admin, "resume", ""); r.Status != http.StatusUnprocessableEntity || !bytes.Contains(r.Body, []byte("payment and compliance")) {
		t.Fatalf("resume without a reason while two holds remain: %d %s", r.Status, r.Body)
	}
	if r := call(billing, "resume", `{"reason":"compliance"}`); r.Status != http.StatusForbidden {
		t.Fatalf("billing lifting a compliance hold: %d %s", r.Status, r.Body)
	}
	if r := call(billing, "resume", ""); r.Status != http.StatusOK || r.json(t)["state"] != "suspended" {
		t.Fatalf("billing lifting its payment hold while compliance remains: %d %s", r.Status, r.Body)
	}
	if r := call(h.admin, "resume", `{"reason":"compliance"}`); r.Status != http.StatusOK || r.json(t)["state"] != "active" {
		t.Fatalf("lifting the last hold: %d %s", r.Status, r.Body)
	}
	h.waitFor(t, tid, 10*time.Second, func(m map[string]any) bool {
		p, _ := m["provisioning"].(map[string]any)
		return p != nil && p["status"] == "completed"
	})

	// A payment hold placed by someone else is not billing's to lift.
	evSeq := call(h.admin, "suspend", `{"reason":"payment"}`).Header.Get("Tenancy-Sequence")
	if r := h.do(t, req{method: "GET", path: "/v1/tenants/" + tid + "/events/" + evSeq, token: h.admin}); r.Status != http.StatusOK {
		t.Fatalf("the admin reading the tenant's event %s: %d %s", evSeq, r.Status, r.Body)
	}
	if r := call(billing, "resume", `{"reason":"payment"}`); r.Status != http.StatusForbidden || !bytes.Contains(r.Body, []byte("placed by admin-1")) {
		t.Fatalf("billing lifting an operator's payment hold: %d %s", r.Status, r.Body)
	}

	// Billing reads tenants and customers, and nothing else.
	for _, c := range []struct {
		method, path string
		body         any
		want         int
	}{
		{"GET", "/v1/tenants/" + tid, nil, http.StatusOK},
		{"GET", fmt.Sprintf("/v1/tenants?min_seq=%d", h.lastSeq(t)), nil, http.StatusOK},
		{"GET", fmt.Sprintf("/v1/customers?min_seq=%d", h.lastSeq(t)), nil, http.StatusOK},
		{"PATCH", "/v1/tenants/" + tid, `{"labels":{"a":"b"}}`, http.StatusForbidden},
		{"POST", "/v1/tenants/" + tid + "/archive", nil, http.StatusForbidden},
		{"POST", "/v1/customers", businessCustomer(t, "Nope"), http.StatusForbidden},
		{"GET", "/v1/webhooks", nil, http.StatusForbidden},
		{"POST", "/v1/webhooks", `{"url":"https://example.com/hook","event_types":["*"]}`, http.StatusForbidden},
		{"GET", "/v1/audit", nil, http.StatusForbidden},
		{"GET", "/v1/tenants/" + tid + "/events", nil, http.StatusNotFound},
		{"GET", "/v1/tenants/" + tid + "/events/" + evSeq, nil, http.StatusNotFound},
		{"GET", "/v1/admin/quarantine", nil, http.StatusForbidden},
	} {
		r := h.do(t, req{method: c.method, path: c.path, token: billing, body: c.body, contentType: ct(c.method)})
		if r.Status != c.want {
			t.Errorf("billing %s %s: %d, want %d: %s", c.method, c.path, r.Status, c.want, r.Body)
		}
	}
	// Every webhook and dead-letter route, as the router lists them.
	n := 0
	for _, route := range h.api.Server.Routes() {
		method, path, _ := strings.Cut(route, " ")
		if !strings.HasPrefix(path, "/v1/webhooks") && !strings.HasPrefix(path, "/v1/dead-letters") {
			continue
		}
		path = strings.NewReplacer("{id}", tid, "{seq}", "1").Replace(path)
		var body any
		if method == "POST" || method == "PATCH" {
			body = `{}`
		}
		if r := h.do(t, req{method: method, path: path, token: billing, body: body, contentType: ct(method)}); r.Status != http.StatusForbidden {
			t.Errorf("billing %s %s: %d, want 403: %s", method, path, r.Status, r.Body)
		}
		n++
	}
	if n < 12 {
		t.Fatalf("only %d webhook routes found", n)
	}
}

func ct(method string) string {
	if method == "PATCH" {
		return "application/merge-patch+json"
	}
	return ""
}

// TestPlatformTenants: bootstrap makes the root and shared tenants, owned
// by the root customer; they refuse suspend, archive and delete, and the
// API refuses their reserved slugs to everyone else.
func TestPlatformTenants(t *testing.T) {
	h := newHarness(t, options{projections: true, provisioner: true, customerPolicy: true, bootstrap: true})
	for _, id := range []string{domain.RootTenantID, domain.SharedTenantID} {
		m := h.waitFor(t, id, 10*time.Second, func(m map[string]any) bool { return m["state"] == "active" })
		if cu := m["customer"].(map[string]any); cu["id"] != domain.RootCustomerID {
			t.Fatalf("platform tenant %s's customer = %v", id, cu)
		}
	}
	root := h.do(t, req{method: "GET", path: "/v1/tenants/" + domain.RootTenantID, token: h.admin}).json(t)
	if root["slug"] != "root" || root["platform_role"] != "root" {
		t.Fatalf("root tenant = %v", root)
	}
	if a := root["activation"].(map[string]any)["admin"].(map[string]any); a["email"] != "root-admin@platform.test" {
		t.Fatalf("root tenant's admin = %v", a)
	}
	for _, action := range []string{"suspend", "archive"} {
		r := h.do(t, req{method: "POST", path: "/v1/tenants/" + domain.RootTenantID + "/" + action, token: h.admin, body: `{"reason":"operator"}`})
		if action == "archive" {
			r = h.do(t, req{method: "POST", path: "/v1/tenants/" + domain.RootTenantID + "/" + action, token: h.admin})
		}
		if r.Status != http.StatusConflict || problemType(t, r) != "platform-tenant" {
			t.Errorf("%s the root tenant: %d %s", action, r.Status, r.Body)
		}
	}
	r := h.do(t, req{method: "DELETE", path: "/v1/tenants/" + domain.RootTenantID + "?confirm=root", token: h.admin})
	if r.Status != http.StatusConflict || problemType(t, r) != "platform-tenant" {
		t.Errorf("delete the root tenant: %d %s", r.Status, r.Body)
	}
	for _, slug := range []string{"root", "system", "shared"} {
		r := h.do(t, req{method: "POST", path: "/v1/tenants", token: h.admin, body: tenantBody(slug)})
		if r.Status != http.StatusUnprocessableEntity || !bytes.Contains(r.Body, []byte("is reserved")) {
			t.Errorf("slug %s: %d %s", slug, r.Status, r.Body)
		}
	}
	// The root customer cannot be deleted.
	r = h.do(t, req{method: "DELETE", path: "/v1/customers/" + domain.RootCustomerID + "?confirm=" + domain.RootCustomerID, token: h.admin})
	if r.Status != http.StatusConflict {
		t.Errorf("delete the root customer: %d %s", r.Status, r.Body)
	}
}

// TestSharedRealmPlacement: a shared customer's tenant is placed as an
// organization in the shared tenant's realm, and the placement is an event.
func TestSharedRealmPlacement(t *testing.T) {
	h := newHarness(t, options{projections: true, customerPolicy: true, bootstrap: true})
	body := businessCustomer(t, "Smallco")
	body["realm_mode"] = "shared"
	id := h.createCustomer(t, body)["id"].(string)
	h.verifyCustomer(t, id, "completed")
	tb := tenantBody("smallco")
	tb["customer_id"] = id
	tid := h.create(t, tb)["id"].(string)
	r := h.do(t, req{method: "POST", path: "/v1/tenants/" + tid + "/activate", token: h.admin})
	if r.Status != http.StatusOK {
		t.Fatalf("activate: %d %s", r.Status, r.Body)
	}
	realm, _ := r.json(t)["realm"].(map[string]any)
	if realm["mode"] != "shared" || realm["realm"] != "shared" || realm["organization"] != "smallco" {
		t.Fatalf("realm placement = %v", realm)
	}
	ev := h.do(t, req{method: "GET", path: "/v1/tenants/" + tid + "/events", token: h.admin})
	if !bytes.Contains(ev.Body, []byte("tenancy.tenant.realm_placed.v1")) {
		t.Fatalf("no placement event: %s", ev.Body)
	}
}

// TestCustomerErasure: deleting a customer destroys its personal-data key:
// what the log holds sealed can no longer be read.
func TestCustomerErasure(t *testing.T) {
	h := newHarness(t, options{projections: true})
	body := businessCustomer(t, "Gone")
	body["kind"] = "individual"
	body["fiscal_ids"] = map[string]any{"pan": "ABCPD1234E"}
	r := h.do(t, req{method: "POST", path: "/v1/customers", token: h.admin, body: body, header: map[string]string{"Idempotency-Key": "erase-me-1"}})
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	id := r.json(t)["id"].(string)
	sealed := sealedPII(t, h, id)
	if _, err := h.core.Keyring.Open("customer-"+id, sealed); err != nil {
		t.Fatalf("the customer's sealed personal data does not open before erasure: %v", err)
	}
	r = h.do(t, req{method: "DELETE", path: fmt.Sprintf("/v1/customers/%s?confirm=%s", id, id), token: h.admin})
	if r.Status != http.StatusOK || r.json(t)["personal_data_erased"] != true {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	// A repeat succeeds (and destroys the key again, had it failed).
	if r := h.do(t, req{method: "DELETE", path: fmt.Sprintf("/v1/customers/%s?confirm=%s", id, id), token: h.admin}); r.Status != http.StatusOK {
		t.Fatalf("delete again: %d %s", r.Status, r.Body)
	}
	// The stored response of its create held the personal data: erased too.
	r = h.do(t, req{method: "POST", path: "/v1/customers", token: h.admin, body: body, header: map[string]string{"Idempotency-Key": "erase-me-1"}})
	if r.Status != http.StatusGone || bytes.Contains(r.Body, []byte("ABCPD1234E")) {
		t.Fatalf("replaying the create after erasure: %d %s", r.Status, r.Body)
	}
	if r := h.do(t, req{method: "GET", path: "/v1/customers/" + id, token: h.admin}); r.Status != http.StatusNotFound {
		t.Fatalf("a deleted customer: %d %s", r.Status, r.Body)
	}
	// The sealed personal data in the log cannot be opened any more.
	if plain, err := h.core.Keyring.Open("customer-"+id, sealed); err == nil {
		t.Fatalf("the erased customer's personal data still opens: %s", plain)
	}
}

// sealedPII returns the sealed personal data of the customer's creation
// event, as the log stores it.
func sealedPII(t testing.TB, h *harness, id string) string {
	t.Helper()
	msgs, _, err := h.core.Store.Read(context.Background(), "tenancy.evt.*.customer."+id, 1, 100)
	if err != nil || len(msgs) == 0 {
		t.Fatalf("reading the customer's events: %v (%d)", err, len(msgs))
	}
	_, p, err := events.Decode(msgs[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	created, ok := p.(*events.CustomerCreated)
	if !ok || created.PII == "" {
		t.Fatalf("the first event is %T without sealed personal data", p)
	}
	return created.PII
}

// TestRekyc: a customer due for re-KYC keeps its tenants through the grace
// period; when it ends, the provisioner suspends them for compliance, and a
// completed verification resumes them, all as events. A payment hold
// placed meanwhile outlives the compliance one.
func TestRekyc(t *testing.T) {
	h := newHarness(t, options{projections: true, provisioner: true, customerPolicy: true, compliance: 2 * time.Second})
	id := h.createCustomer(t, businessCustomer(t, "Rekyc"))["id"].(string)
	h.verifyCustomer(t, id, "completed")
	var tids []string
	for _, slug := range []string{"rekyc-a", "rekyc-b"} {
		tb := tenantBody(slug)
		tb["customer_id"] = id
		tid := h.create(t, tb)["id"].(string)
		if r := h.do(t, req{method: "POST", path: "/v1/tenants/" + tid + "/activate", token: h.admin}); r.Status != http.StatusOK {
			t.Fatalf("activate: %d %s", r.Status, r.Body)
		}
		h.waitFor(t, tid, 10*time.Second, func(m map[string]any) bool { return m["state"] == "active" })
		tids = append(tids, tid)
	}

	v := h.verifyCustomer(t, id, "due_for_rekyc")["verification"].(map[string]any)
	until, err := time.Parse(time.RFC3339, v["grace_until"].(string))
	if err != nil {
		t.Fatalf("grace_until: %v", v)
	}
	if m := h.do(t, req{method: "GET", path: "/v1/tenants/" + tids[0], token: h.admin}).json(t); m["state"] != "active" {
		t.Fatalf("a tenant was suspended during the grace period: %v", m["state"])
	}
	// Billing suspends one tenant for payment in the meantime.
	if r := h.do(t, req{method: "POST", path: "/v1/tenants/" + tids[1] + "/suspend", token: h.admin, body: `{"reason":"payment"}`}); r.Status != http.StatusOK {
		t.Fatalf("payment suspension: %d %s", r.Status, r.Body)
	}

	for _, tid := range tids {
		m := h.waitFor(t, tid, 20*time.Second, func(m map[string]any) bool {
			holds, _ := m["holds"].([]any)
			for _, hd := range holds {
				if hd.(map[string]any)["reason"] == "compliance" {
					return true
				}
			}
			return false
		})
		if m["state"] != "suspended" {
			t.Fatalf("tenant %s after the grace period: %v", tid, m["state"])
		}
		for _, hd := range m["holds"].([]any) {
			if hm := hd.(map[string]any); hm["reason"] == "compliance" {
				since, _ := time.Parse(time.RFC3339Nano, hm["since"].(string))
				if since.Before(until) {
					t.Fatalf("suspended for compliance at %s, before the grace period ended at %s", since, until)
				}
				if hm["placed_by"] != "system:compliance" {
					t.Fatalf("compliance hold placed by %v", hm["placed_by"])
				}
			}
		}
	}
	c := h.do(t, req{method: "GET", path: "/v1/customers/" + id, token: h.admin}).json(t)
	if c["verification"].(map[string]any)["grace_expired"] != true {
		t.Fatalf("the customer does not show the grace period expired: %v", c["verification"])
	}

	h.verifyCustomer(t, id, "completed")
	h.waitFor(t, tids[0], 20*time.Second, func(m map[string]any) bool { return m["state"] == "active" })
	// The other keeps its payment hold.
	m := h.waitFor(t, tids[1], 20*time.Second, func(m map[string]any) bool { return len(m["holds"].([]any)) == 1 })
	if m["state"] != "suspended" || m["holds"].([]any)[0].(map[string]any)["reason"] != "payment" {
		t.Fatalf("the payment-held tenant after re-verification: %s %v", m["state"], m["holds"])
	}

	// Each step is an event.
	ev := h.do(t, req{method: "GET", path: "/v1/tenants/" + tids[1] + "/events", token: h.admin})
	for _, typ := range []string{"tenancy.tenant.suspended.v1", "tenancy.tenant.hold_added.v1", "tenancy.tenant.hold_lifted.v1"} {
		if !bytes.Contains(ev.Body, []byte(typ)) {
			t.Errorf("tenant events lack %s", typ)
		}
	}
	if !bytes.Contains(h.customerEvents(t, id), []byte("tenancy.customer.rekyc_grace_expired.v1")) {
		t.Error("the customer's events lack rekyc_grace_expired")
	}
}

// customerEvents returns the customer's stored events, concatenated.
func (h *harness) customerEvents(t testing.TB, id string) []byte {
	t.Helper()
	msgs, _, err := h.core.Store.Read(context.Background(), "tenancy.evt.*.customer."+id, 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for _, m := range msgs {
		out = append(out, m.Data...)
	}
	return out
}

// TestRekycSweep: a tenant that was archived when its customer's re-KYC
// grace ended (so it could not be held then) gets its compliance hold once
// it is restored: an operator's resume does not make it active.
func TestRekycSweep(t *testing.T) {
	h := newHarness(t, options{projections: true, provisioner: true, customerPolicy: true, compliance: time.Second})
	id := h.createCustomer(t, businessCustomer(t, "Sweep"))["id"].(string)
	h.verifyCustomer(t, id, "completed")
	tb := tenantBody("swept")
	tb["customer_id"] = id
	tid := h.create(t, tb)["id"].(string)
	act := func(action, body string) {
		t.Helper()
		var b any
		if body != "" {
			b = body
		}
		if r := h.do(t, req{method: "POST", path: "/v1/tenants/" + tid + "/" + action, token: h.admin, body: b}); r.Status != http.StatusOK {
			t.Fatalf("%s: %d %s", action, r.Status, r.Body)
		}
	}
	act("activate", "")
	h.waitFor(t, tid, 10*time.Second, func(m map[string]any) bool { return m["state"] == "active" })
	act("suspend", `{"reason":"operator"}`)
	act("archive", "")
	h.verifyCustomer(t, id, "due_for_rekyc")
	if !testenv.Eventually(20*time.Second, 50*time.Millisecond, func() bool {
		return bytes.Contains(h.customerEvents(t, id), []byte(events.TypeCustomerRekycGraceExpired))
	}) {
		t.Fatal("the grace period did not end")
	}
	act("restore", "")
	h.waitFor(t, tid, 20*time.Second, func(m map[string]any) bool {
		for _, hd := range m["holds"].([]any) {
			if hd.(map[string]any)["reason"] == "compliance" {
				return true
			}
		}
		return false
	})
	act("resume", `{"reason":"operator"}`)
	if m := h.do(t, req{method: "GET", path: "/v1/tenants/" + tid, token: h.admin}).json(t); m["state"] != "suspended" {
		t.Fatalf("after the operator's resume the tenant is %v with holds %v; the compliance hold must keep it suspended", m["state"], m["holds"])
	}
}

// noTenants is a directory that knows of no customer's tenants.
type noTenants struct{}

func (noTenants) OpenTenantsOfCustomer(context.Context, string) ([]string, error) { return nil, nil }
func (noTenants) CustomerByFiscalIndex(context.Context, string, string) (domain.Customer, error) {
	return domain.Customer{}, domain.ErrNotFound
}

// TestErasureIsRetriedByTheProvisioner: a customer deleted without its key
// destroyed (the API's destroy failed) has the key destroyed by the
// provisioner's compliance reactor on the deletion event.
func TestErasureIsRetriedByTheProvisioner(t *testing.T) {
	h := newHarness(t, options{projections: true, provisioner: true, compliance: time.Second})
	id := h.createCustomer(t, businessCustomer(t, "Erased"))["id"].(string)
	sealed := sealedPII(t, h, id)
	// The same use cases without a key destroyer: the deletion is recorded,
	// the key is not destroyed.
	noKeys := app.NewCustomers(app.CustomersOptions{Deps: h.core.CommandDeps(), Catalog: h.core.Catalog, Index: h.core.Keyring}).WithDirectory(noTenants{})
	if _, err := noKeys.Do(context.Background(), id, domain.DeleteCustomer{Confirm: id}, command.Meta{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if !testenv.Eventually(20*time.Second, 50*time.Millisecond, func() bool {
		_, err := h.core.Keyring.Open("customer-"+id, sealed)
		return err != nil
	}) {
		t.Fatal("the deleted customer's personal data still opens: the provisioner did not erase it")
	}
}
