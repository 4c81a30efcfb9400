package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/idempotency"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/internal/verify"
	"github.com/tenancyhq/tenancy/pkg/events"
)

const exampleBody = `{"slug":"acme","display_name":"Acme Corp","plan":"standard","regions":{"allowed":["eu-west-1","eu-central-1"],"preferred":"eu-west-1"},"isolation":"shared","contacts":[{"role":"billing","name":"A. Person","email":"billing@acme.test"}],"external_ids":{"billing":"cus_123"},"labels":{"env":"prod"}}`

func tenantBody(slug string) map[string]any {
	return map[string]any{
		"slug": slug, "display_name": "Tenant " + slug, "plan": "standard", "isolation": "shared",
		"regions":  map[string]any{"allowed": []string{"eu-west-1"}, "preferred": "eu-west-1"},
		"contacts": []map[string]string{{"role": "technical", "name": "Tech", "email": "tech@" + slug + ".test"}},
	}
}

func (h *harness) create(t testing.TB, body any) map[string]any {
	t.Helper()
	return h.created(t, "/v1/tenants", body)
}

// created POSTs body to path as the admin and returns the 201's resource.
func (h *harness) created(t testing.TB, path string, body any) map[string]any {
	t.Helper()
	r := h.do(t, req{method: "POST", path: path, token: h.admin, body: body})
	if r.Status != http.StatusCreated {
		t.Fatalf("POST %s: %d %s", path, r.Status, r.Body)
	}
	return r.json(t)
}

func (h *harness) verifyLog(t testing.TB) verify.Report {
	t.Helper()
	ctx := context.Background()
	keys, err := h.core.SigningKeys.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := verify.Log(ctx, h.core.Store, keys, events.AllSubjects)
	if err != nil {
		t.Fatalf("the log does not verify: %v", err)
	}
	return rep
}

// TestTenantLifecycle walks one tenant through its whole life with the
// provisioner running, as the README's quick start does with curl.
func TestTenantLifecycle(t *testing.T) {
	h := newHarness(t, options{provisioner: true})
	r := h.do(t, req{method: "POST", path: "/v1/tenants", token: h.admin, body: exampleBody, header: map[string]string{"X-Request-Id": "req-create-1"}})
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	tenant := r.json(t)
	id := tenant["id"].(string)
	if r.Header.Get("Location") != "/v1/tenants/"+id || r.Header.Get("ETag") != `"1"` || r.Header.Get("Tenancy-Sequence") == "" || r.Header.Get("X-Request-Id") != "req-create-1" {
		t.Fatalf("headers: %v", r.Header)
	}
	for _, k := range []string{"id", "slug", "display_name", "state", "version", "plan", "regions", "isolation", "contacts", "external_ids", "labels", "created_at", "updated_at"} {
		if _, ok := tenant[k]; !ok {
			t.Errorf("response lacks %q", k)
		}
	}
	if tenant["state"] != "draft" || tenant["slug"] != "acme" {
		t.Fatalf("created: %v", tenant)
	}

	get := h.do(t, req{method: "GET", path: "/v1/tenants/" + id, token: h.admin})
	if get.Status != 200 || get.Header.Get("ETag") != `"1"` {
		t.Fatalf("get: %d %v", get.Status, get.Header)
	}

	patch := h.do(t, req{method: "PATCH", path: "/v1/tenants/" + id, token: h.admin, contentType: "application/merge-patch+json",
		header: map[string]string{"If-Match": `"1"`},
		body:   `{"display_name":"Acme GmbH","labels":{"tier":"gold","env":null},"contacts":[{"role":"technical","name":"T. Person","email":"tech@acme.test"}]}`})
	if patch.Status != 200 {
		t.Fatalf("patch: %d %s", patch.Status, patch.Body)
	}
	pm := patch.json(t)
	if pm["display_name"] != "Acme GmbH" || pm["version"] != float64(2) || fmt.Sprint(pm["labels"]) != "map[tier:gold]" {
		t.Fatalf("patched: %v", pm)
	}

	act := h.do(t, req{method: "POST", path: "/v1/tenants/" + id + "/activate", token: h.admin, body: `{"admin":{"email":"root@acme.test","name":"Root"}}`})
	if act.Status != 200 || act.json(t)["state"] != "provisioning" {
		t.Fatalf("activate: %d %s", act.Status, act.Body)
	}
	active := h.waitFor(t, id, 10*time.Second, func(m map[string]any) bool { return m["state"] == "active" })
	prov := active["provisioning"].(map[string]any)
	if prov["status"] != "completed" || len(prov["steps"].([]any)) != 8 {
		t.Fatalf("provisioning: %v", prov)
	}
	for _, s := range prov["steps"].([]any) {
		step := s.(map[string]any)
		if step["name"] == "policy" || step["name"] == "directory" {
			// The policy and the directory are the log's own; the directory
			// step says it skipped the realm sync.
			if step["outcome"] != "completed" || step["name"] == "directory" && !strings.Contains(step["detail"].(string), "realm sync skipped") {
				t.Fatalf("the %s step: %v", step["name"], step)
			}
			continue
		}
		if step["outcome"] != "skipped" || !strings.Contains(step["detail"].(string), "configured") {
			t.Fatalf("without Keycloak or billing every step is skipped with a reason: %v", step)
		}
	}
	if adm := active["activation"].(map[string]any)["admin"].(map[string]any); adm["email"] != "root@acme.test" {
		t.Fatalf("admin: %v", adm)
	}

	step := func(action string, body any, want string) {
		t.Helper()
		r := h.do(t, req{method: "POST", path: "/v1/tenants/" + id + "/" + action, token: h.admin, body: body})
		if r.Status != 200 || r.json(t)["state"] != want {
			t.Fatalf("%s: %d %s", action, r.Status, r.Body)
		}
	}
	step("suspend", map[string]string{"reason": "payment", "note": "invoice 42"}, "suspended")
	step("suspend", map[string]string{"reason": "payment"}, "suspended") // a repeat appends nothing (counted below)
	step("resume", nil, "active")
	step("suspend", map[string]string{"reason": "operator"}, "suspended")
	step("archive", nil, "archived")
	step("restore", nil, "suspended")
	step("archive", nil, "archived")

	if r := h.do(t, req{method: "DELETE", path: "/v1/tenants/" + id + "?confirm=wrong", token: h.admin}); r.Status != 422 {
		t.Fatalf("delete without confirmation: %d", r.Status)
	}
	del := h.do(t, req{method: "DELETE", path: "/v1/tenants/" + id + "?confirm=acme", token: h.admin})
	if del.Status != 200 || del.json(t)["state"] != "deleted" {
		t.Fatalf("delete: %d %s", del.Status, del.Body)
	}
	gone := h.waitFor(t, id, 10*time.Second, func(m map[string]any) bool {
		p := m["provisioning"].(map[string]any)
		return p["saga"] == "delete" && p["status"] == "completed"
	})
	if gone["personal_data_erased"] != true || len(gone["contacts"].([]any)) != 0 {
		t.Fatalf("deleted tenant still shows personal data: %v", gone)
	}
	// The slug is free again.
	h.create(t, exampleBody)

	// The events endpoint pages through the tenant's whole history, in
	// order, without gaps or duplicates, each event verifiable.
	var all []json.RawMessage
	token := ""
	for page := 0; ; page++ {
		path := "/v1/tenants/" + id + "/events?page_size=4"
		if token != "" {
			path += "&page_token=" + token
		}
		r := h.do(t, req{method: "GET", path: path, token: h.admin})
		if r.Status != 200 {
			t.Fatalf("events: %d %s", r.Status, r.Body)
		}
		var p struct {
			Items         []json.RawMessage `json:"items"`
			NextPageToken string            `json:"next_page_token"`
		}
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatal(err)
		}
		all = append(all, p.Items...)
		if p.NextPageToken == "" {
			break
		}
		token = p.NextPageToken
		if page > 100 {
			t.Fatal("paging does not end")
		}
	}
	keys, _ := h.core.SigningKeys.Keys(context.Background())
	var types []string
	// The tenant's history holds its own aggregate's events and its
	// directory's (the activation adopted its administrators): each
	// aggregate's versions run without a gap.
	versions := map[string]int64{}
	for i, raw := range all {
		e, _, err := keys.Verify(raw)
		if err != nil {
			t.Fatalf("event %d does not verify: %v", i, err)
		}
		agg := e.Aggregate()
		if versions[agg]++; e.AggVersion != versions[agg] {
			t.Fatalf("event %d of %s has version %d: gap or duplicate", i, agg, e.AggVersion)
		}
		types = append(types, strings.TrimSuffix(strings.TrimPrefix(e.Type, "tenancy.tenant."), ".v1"))
	}
	for _, want := range []string{"created", "updated", "activation_requested", "activated", "suspended", "resumed", "archived", "restored", "deleted"} {
		if !slices.Contains(types, want) {
			t.Errorf("history lacks %s: %v", want, types)
		}
	}
	if n := len(slices.DeleteFunc(slices.Clone(types), func(s string) bool { return s != "suspended" })); n != 2 {
		t.Errorf("%d suspended events; the repeated suspend must append nothing", n)
	}
	first, _ := events.Parse(all[0])
	if first.Actor != "admin-1" || first.CorrelationID != "req-create-1" {
		t.Fatalf("the first event does not record who and which request: %+v", first)
	}
	h.verifyLog(t)
}

// TestErrors sends every kind of bad request and checks each gets the right
// problem and appends nothing.
func TestErrors(t *testing.T) {
	h := newHarness(t, options{})
	existing := h.create(t, exampleBody)
	id := existing["id"].(string)
	viewer := h.token(t, auth.TokenRequest{Subject: "v", Roles: []string{auth.RoleTenantViewer}, TenantID: id})
	expired, _ := h.issuer.Mint(auth.TokenRequest{Subject: "late", Roles: []string{auth.RolePlatformAdmin}, TTL: time.Minute}, time.Now().Add(-time.Hour))
	big := `{"slug":"big","display_name":"` + strings.Repeat("x", 70<<10) + `"}`

	cases := []struct {
		name   string
		r      req
		status int
		typ    string
		detail string
	}{
		{"duplicate slug", req{method: "POST", path: "/v1/tenants", body: exampleBody}, 409, "conflict", `slug "acme" is taken`},
		{"duplicate external id", req{method: "POST", path: "/v1/tenants", body: strings.Replace(exampleBody, `"acme"`, `"acme-two"`, 1)}, 409, "conflict", "billing:cus_123 already belongs"},
		{"bad slug", req{method: "POST", path: "/v1/tenants", body: strings.Replace(exampleBody, `"acme"`, `"-Acme"`, 1)}, 422, "validation-failed", "slug"},
		{"unknown plan", req{method: "POST", path: "/v1/tenants", body: strings.Replace(exampleBody, `"standard"`, `"gold"`, 1)}, 422, "validation-failed", `unknown plan "gold"`},
		{"bad region", req{method: "POST", path: "/v1/tenants", body: strings.Replace(exampleBody, `"eu-central-1"`, `"mars-1"`, 1)}, 422, "validation-failed", "mars-1"},
		{"missing fields", req{method: "POST", path: "/v1/tenants", body: `{}`}, 422, "validation-failed", ""},
		{"malformed JSON", req{method: "POST", path: "/v1/tenants", body: `{"slug":`}, 400, "malformed-request", "ends too early"},
		{"not JSON", req{method: "POST", path: "/v1/tenants", body: `slug=acme`}, 400, "malformed-request", "invalid JSON"},
		{"JSON array", req{method: "POST", path: "/v1/tenants", body: `[]`}, 400, "malformed-request", "must be a JSON object"},
		{"trailing data", req{method: "POST", path: "/v1/tenants", body: `{"slug":"a"} {}`}, 400, "malformed-request", "after the JSON object"},
		{"wrong type", req{method: "POST", path: "/v1/tenants", body: `{"slug":7}`}, 422, "validation-failed", "slug: must be a string"},
		{"unknown field", req{method: "POST", path: "/v1/tenants", body: `{"slugg":"x"}`}, 422, "validation-failed", "slugg: unknown field"},
		{"empty body", req{method: "POST", path: "/v1/tenants", body: ``}, 400, "malformed-request", "empty"},
		{"wrong content type", req{method: "POST", path: "/v1/tenants", body: exampleBody, contentType: "text/plain"}, 415, "unsupported-media-type", "application/json"},
		{"too large", req{method: "POST", path: "/v1/tenants", body: big}, 413, "too-large", "exceeds"},
		{"wrong transition", req{method: "POST", path: "/v1/tenants/" + id + "/suspend", body: `{"reason":"payment"}`}, 409, "invalid-state", "allowed actions in draft: update, activate, delete"},
		{"suspend without reason", req{method: "POST", path: "/v1/tenants/" + id + "/suspend"}, 422, "validation-failed", "reason"},
		{"stale If-Match", req{method: "PATCH", path: "/v1/tenants/" + id, body: `{"display_name":"X"}`, header: map[string]string{"If-Match": `"9"`}}, 412, "version-mismatch", "version 1, not 9"},
		{"garbage If-Match", req{method: "PATCH", path: "/v1/tenants/" + id, body: `{"display_name":"X"}`, header: map[string]string{"If-Match": `yesterday`}}, 400, "malformed-request", "If-Match"},
		{"patch slug", req{method: "PATCH", path: "/v1/tenants/" + id, body: `{"slug":"new"}`}, 422, "validation-failed", "slug: is immutable"},
		{"patch state", req{method: "PATCH", path: "/v1/tenants/" + id, body: `{"state":"active"}`}, 422, "validation-failed", "lifecycle actions"},
		{"patch remove plan", req{method: "PATCH", path: "/v1/tenants/" + id, body: `{"plan":null}`}, 422, "validation-failed", "plan: cannot be removed"},
		{"patch bad labels", req{method: "PATCH", path: "/v1/tenants/" + id, body: `{"labels":["a"]}`}, 422, "validation-failed", "labels"},
		{"unknown tenant", req{method: "GET", path: "/v1/tenants/01a2047e-0000-7000-8000-000000000000"}, 404, "not-found", "no tenant"},
		{"malformed id", req{method: "GET", path: "/v1/tenants/not-an-id"}, 404, "not-found", "no tenant"},
		{"command on unknown tenant", req{method: "POST", path: "/v1/tenants/01a2047e-0000-7000-8000-000000000000/resume"}, 404, "not-found", "no tenant"},
		{"bad page token", req{method: "GET", path: "/v1/tenants/" + id + "/events?page_token=zzz"}, 422, "validation-failed", "page_token"},
		{"bad page size", req{method: "GET", path: "/v1/tenants/" + id + "/events?page_size=100000"}, 422, "validation-failed", "page_size"},
		{"missing token", req{method: "GET", path: "/v1/tenants/" + id, token: "-"}, 401, "unauthenticated", "Bearer"},
		{"garbage token", req{method: "GET", path: "/v1/tenants/" + id, token: "abc.def.ghi"}, 401, "unauthenticated", ""},
		{"expired token", req{method: "GET", path: "/v1/tenants/" + id, token: expired}, 401, "unauthenticated", "expired"},
		{"wrong role", req{method: "POST", path: "/v1/tenants", token: viewer, body: exampleBody}, 403, "forbidden", "platform-admin"},
		{"unknown route", req{method: "GET", path: "/v1/nope"}, 404, "not-found", ""},
		{"wrong method", req{method: "PUT", path: "/v1/tenants/" + id, body: `{}`}, 405, "method-not-allowed", ""},
		{"bad idempotency key", req{method: "POST", path: "/v1/tenants", body: exampleBody, header: map[string]string{"Idempotency-Key": "has space"}}, 400, "malformed-request", "Idempotency-Key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := h.lastSeq(t)
			switch tc.r.token {
			case "":
				tc.r.token = h.admin
			case "-":
				tc.r.token = ""
			}
			r := h.do(t, tc.r)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			p := r.json(t)
			if p["type"] != "/problems/"+tc.typ || p["status"] != float64(tc.status) || p["title"] == "" || p["request_id"] == "" {
				t.Fatalf("problem: %s", r.Body)
			}
			var text strings.Builder
			text.WriteString(fmt.Sprint(p["detail"]))
			if errs, ok := p["errors"].([]any); ok {
				for _, e := range errs {
					text.WriteString(" " + fmt.Sprint(e.(map[string]any)["field"]) + ": " + fmt.Sprint(e.(map[string]any)["message"]))
				}
			}
			if !strings.Contains(text.String(), tc.detail) {
				t.Fatalf("problem does not mention %q: %s", tc.detail, r.Body)
			}
			if tc.status == 401 && r.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
			if after := h.lastSeq(t); after != before {
				t.Fatalf("a failed request appended %d events", after-before)
			}
			if doc := h.do(t, req{method: "GET", path: p["type"].(string)}); doc.Status != 200 || len(doc.Body) < 20 {
				t.Fatalf("problem type %s is not explained: %d", p["type"], doc.Status)
			}
		})
	}
}

func TestValidationListsAllowedValues(t *testing.T) {
	h := newHarness(t, options{})
	r := h.do(t, req{method: "POST", path: "/v1/tenants", token: h.admin, body: strings.Replace(exampleBody, `"shared"`, `"dedicated"`, 1)})
	var p struct {
		Errors []struct {
			Field   string   `json:"field"`
			Allowed []string `json:"allowed"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(r.Body, &p); err != nil || len(p.Errors) != 1 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	if p.Errors[0].Field != "isolation" || !slices.Equal(p.Errors[0].Allowed, []string{"shared", "hybrid"}) {
		t.Fatalf("errors: %+v", p.Errors)
	}
}

func TestIdempotencyKey(t *testing.T) {
	h := newHarness(t, options{})
	send := func(key, body string) response {
		return h.do(t, req{method: "POST", path: "/v1/tenants", token: h.admin, body: body, header: map[string]string{"Idempotency-Key": key}})
	}
	first := send("k-1", exampleBody)
	seq := h.lastSeq(t)
	again := send("k-1", exampleBody)
	if first.Status != 201 || again.Status != 201 || string(first.Body) != string(again.Body) {
		t.Fatalf("replay: %d %d\n%s\n%s", first.Status, again.Status, first.Body, again.Body)
	}
	if again.Header.Get("Idempotent-Replayed") != "true" || again.Header.Get("Location") != first.Header.Get("Location") || again.Header.Get("ETag") != `"1"` {
		t.Fatalf("replay headers: %v", again.Header)
	}
	if h.lastSeq(t) != seq {
		t.Fatal("a replayed request appended events")
	}
	other := send("k-1", strings.Replace(exampleBody, "acme", "other", 1))
	if other.Status != 422 || !strings.Contains(string(other.Body), "different request") {
		t.Fatalf("reuse with another body: %d %s", other.Status, other.Body)
	}
	// A failed request is replayed as it failed.
	bad := send("k-2", `{"slug":"x"}`)
	badAgain := send("k-2", `{"slug":"x"}`)
	if bad.Status != 422 || badAgain.Status != 422 || badAgain.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("failed request replay: %d %d", bad.Status, badAgain.Status)
	}
	// Keys are scoped to the caller.
	other2 := h.token(t, auth.TokenRequest{Subject: "admin-2", Roles: []string{auth.RolePlatformAdmin}})
	r := h.do(t, req{method: "POST", path: "/v1/tenants", token: other2, body: exampleBody, header: map[string]string{"Idempotency-Key": "k-1"}})
	if r.Status != 409 || r.Header.Get("Idempotent-Replayed") != "" || r.Header.Get("Retry-After") != "" {
		t.Fatalf("another caller's key must not replay, and a slug conflict is no reason to retry: %d %v", r.Status, r.Header)
	}
	// A key whose first request is still running (here: an instance that
	// took it and died) answers 409 with Retry-After, and appends nothing.
	store, err := idempotency.Open(context.Background(), h.core.JS, 1, time.Now, h.core.Keyring, app.NewID)
	if err != nil {
		t.Fatal(err)
	}
	held := strings.Replace(exampleBody, "acme", "held", 1)
	if _, err := store.Begin(context.Background(), idempotency.Key(h.issuer.Issuer(), "admin-1", "", "k-3"), idempotency.Fingerprint("POST", "/v1/tenants", []byte(held))); err != nil {
		t.Fatal(err)
	}
	seq = h.lastSeq(t)
	busy := send("k-3", held)
	if busy.Status != 409 || busy.Header.Get("Retry-After") == "" || !strings.Contains(string(busy.Body), "still being processed") {
		t.Fatalf("a key in use: %d %v %s", busy.Status, busy.Header, busy.Body)
	}
	if h.lastSeq(t) != seq {
		t.Fatal("a request refused for its key in use appended events")
	}
}

// TestTenantIsolation checks every route a tenant-scoped token can reach:
// its own tenant is readable, every other tenant looks absent, and nothing
// can be changed.
func TestTenantIsolation(t *testing.T) {
	h := newHarness(t, options{})
	a := h.create(t, tenantBody("tenant-a"))["id"].(string)
	b := h.create(t, tenantBody("tenant-b"))["id"].(string)
	for _, role := range []string{auth.RoleTenantViewer, auth.RoleTenantAdmin} {
		tok := h.token(t, auth.TokenRequest{Subject: "user-of-a", Roles: []string{role}, TenantID: a})
		for _, path := range []string{"/v1/tenants/" + a, "/v1/tenants/" + a + "/events"} {
			if r := h.do(t, req{method: "GET", path: path, token: tok}); r.Status != 200 {
				t.Fatalf("%s reading its own %s: %d", role, path, r.Status)
			}
		}
		for _, path := range []string{"/v1/tenants/" + b, "/v1/tenants/" + b + "/events"} {
			r := h.do(t, req{method: "GET", path: path, token: tok})
			if r.Status != 404 || strings.Contains(string(r.Body), "tenant-b") {
				t.Fatalf("%s reading another tenant's %s: %d %s", role, path, r.Status, r.Body)
			}
		}
		before := h.lastSeq(t)
		for _, r := range []req{
			{method: "PATCH", path: "/v1/tenants/" + a, body: `{"display_name":"x"}`},
			{method: "PATCH", path: "/v1/tenants/" + b, body: `{"display_name":"x"}`},
			{method: "POST", path: "/v1/tenants/" + b + "/activate"},
			{method: "DELETE", path: "/v1/tenants/" + b + "?confirm=tenant-b"},
			{method: "POST", path: "/v1/tenants", body: tenantBody("tenant-c")},
		} {
			r.token = tok
			if resp := h.do(t, r); resp.Status != 403 {
				t.Fatalf("%s %s %s: %d, want 403", role, r.method, r.path, resp.Status)
			}
		}
		if h.lastSeq(t) != before {
			t.Fatal("a tenant-scoped token changed something")
		}
	}
	// A token with no role at all sees nothing.
	none := h.token(t, auth.TokenRequest{Subject: "nobody", TenantID: a})
	if r := h.do(t, req{method: "GET", path: "/v1/tenants/" + a, token: none}); r.Status != 404 {
		t.Fatalf("roleless token: %d", r.Status)
	}
}

// TestConcurrentCommands: 50 concurrent patches of one tenant all land with
// a gap-free version sequence; concurrent creates of one slug give one 201.
func TestConcurrentCommands(t *testing.T) {
	h := newHarness(t, options{})
	id := h.create(t, tenantBody("hot"))["id"].(string)
	const n = 50
	statuses := testenv.Parallel(n, func(i int) int {
		return h.do(t, req{method: "PATCH", path: "/v1/tenants/" + id, token: h.admin, body: fmt.Sprintf(`{"labels":{"k%02d":"v"}}`, i)}).Status
	})
	for _, s := range statuses {
		if s != 200 {
			t.Fatalf("a concurrent patch answered %d", s)
		}
	}
	final := h.do(t, req{method: "GET", path: "/v1/tenants/" + id, token: h.admin}).json(t)
	if final["version"] != float64(n+1) || len(final["labels"].(map[string]any)) != n {
		t.Fatalf("version %v with %d labels, want %d and %d", final["version"], len(final["labels"].(map[string]any)), n+1, n)
	}

	created := testenv.Parallel(10, func(int) int {
		return h.do(t, req{method: "POST", path: "/v1/tenants", token: h.admin, body: tenantBody("race")}).Status
	})
	count := map[int]int{}
	for _, s := range created {
		count[s]++
	}
	if count[201] != 1 || count[409] != 9 {
		t.Fatalf("concurrent creates of one slug: %v", count)
	}
	h.verifyLog(t)
}

func TestEventKeysAndCatalog(t *testing.T) {
	h := newHarness(t, options{})
	for _, path := range []string{"/v1/event-keys", "/.well-known/tenancy/event-keys.json"} {
		tok := h.admin
		if strings.HasPrefix(path, "/.well-known") {
			tok = ""
		}
		r := h.do(t, req{method: "GET", path: path, token: tok})
		if r.Status != 200 {
			t.Fatalf("%s: %d", path, r.Status)
		}
		ks, err := events.ParseJWKS(r.Body)
		if err != nil || len(ks.Keys()) != 1 || ks.Keys()[0].ID != h.core.Signer.KeyID() {
			t.Fatalf("%s: %v %s", path, err, r.Body)
		}
	}
	r := h.do(t, req{method: "GET", path: "/v1/catalog", token: h.admin})
	if r.Status != 200 || !strings.Contains(string(r.Body), `"standard"`) || !strings.Contains(string(r.Body), `"eu-central-1"`) {
		t.Fatalf("catalog: %d %s", r.Status, r.Body)
	}
	if r := h.do(t, req{method: "GET", path: "/healthz"}); r.Status != 200 {
		t.Fatalf("healthz: %d", r.Status)
	}
	if r := h.do(t, req{method: "GET", path: "/readyz"}); r.Status != 200 || r.json(t)["ready"] != true {
		t.Fatalf("readyz: %d %s", r.Status, r.Body)
	}
	h.nats.Stop()
	if r := h.do(t, req{method: "GET", path: "/readyz"}); r.Status != 503 {
		t.Fatalf("readyz with NATS down: %d %s", r.Status, r.Body)
	}
}

// TestRoutesMatchSpec fails when the router and openapi.yaml disagree.
func TestRoutesMatchSpec(t *testing.T) {
	h := newHarness(t, options{})
	doc, _ := spec(t)
	var inSpec []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			inSpec = append(inSpec, method+" "+path)
		}
	}
	var inRouter []string
	for _, r := range h.api.Server.Routes() {
		if strings.Contains(r, auth.DevIssuerPath) || strings.HasSuffix(r, " /realms") || strings.Contains(r, " /realms/") {
			continue // dev-only issuer, not part of the API
		}
		inRouter = append(inRouter, r)
	}
	slices.Sort(inSpec)
	slices.Sort(inRouter)
	if !slices.Equal(inSpec, inRouter) {
		t.Fatalf("router and openapi.yaml disagree\nonly in router: %v\nonly in spec: %v", minus(inRouter, inSpec), minus(inSpec, inRouter))
	}
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
