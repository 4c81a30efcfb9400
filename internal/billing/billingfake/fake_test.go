package billingfake_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/billing"
	"github.com/tenancyhq/tenancy/internal/billing/billingfake"
	"github.com/tenancyhq/tenancy/internal/faultinject"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return now }

// req is one plain HTTP request to the fake.
type req struct {
	method, path, key, body string
	contentType             string // empty: application/json when there is a body
	auth                    string // empty: the right bearer token; "-": none
}

// reply is what came back.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

func start(t *testing.T, o billingfake.Options) *billingfake.Server {
	t.Helper()
	if o.Now == nil {
		o.Now = clock
	}
	srv := billingfake.New(o)
	t.Cleanup(srv.Close)
	return srv
}

func send(t *testing.T, srv *billingfake.Server, q req) reply {
	t.Helper()
	resp, err := try(srv, q)
	if err != nil {
		t.Fatalf("%s %s: %v", q.method, q.path, err)
	}
	return resp
}

func try(srv *billingfake.Server, q req) (reply, error) {
	var body io.Reader
	if q.body != "" {
		body = strings.NewReader(q.body)
	}
	r, err := http.NewRequest(q.method, srv.URL()+q.path, body)
	if err != nil {
		return reply{}, err
	}
	switch q.auth {
	case "":
		r.Header.Set("Authorization", "Bearer "+billingfake.DefaultToken)
	case "-":
	default:
		r.Header.Set("Authorization", q.auth)
	}
	if q.key != "" {
		r.Header.Set("Idempotency-Key", q.key)
	}
	switch {
	case q.contentType != "":
		r.Header.Set("Content-Type", q.contentType)
	case q.body != "":
		r.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(r)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}, err
}

const acme = `{"tenant_id":"t-1","slug":"acme","display_name":"Acme Corp","plan":"standard","customer_ref":"cus_1"}`

func seed(t *testing.T, srv *billingfake.Server) {
	t.Helper()
	if r := send(t, srv, req{method: "POST", path: "/v1/accounts", key: "seed", body: acme}); r.status != 201 {
		t.Fatalf("seed: %d %s", r.status, r.body)
	}
}

// TestContract sends plain HTTP requests, each to a fake holding the
// account of t-1, and checks status, headers and body.
func TestContract(t *testing.T) {
	tests := []struct {
		name        string
		req         req
		status      int
		header      map[string]string // exact values; "" means absent
		problem     string            // substring of the problem's detail; "" when not a problem
		check       func(t *testing.T, r reply)
		wantCreates int // after the request; the seed is one
		wantWrites  int
	}{
		{name: "no token", req: req{method: "GET", path: "/v1/accounts/t-1", auth: "-"}, status: 401,
			header: map[string]string{"WWW-Authenticate": `Bearer realm="billing"`}, problem: "Bearer", wantCreates: 1, wantWrites: 1},
		{name: "wrong token", req: req{method: "GET", path: "/v1/accounts/t-1", auth: "Bearer nope"}, status: 401, problem: "Bearer", wantCreates: 1, wantWrites: 1},
		{name: "basic auth", req: req{method: "GET", path: "/v1/accounts/t-1", auth: "Basic " + billingfake.DefaultToken}, status: 401, problem: "Bearer", wantCreates: 1, wantWrites: 1},
		{name: "scheme is case-insensitive", req: req{method: "GET", path: "/v1/accounts/t-1", auth: "bearer " + billingfake.DefaultToken}, status: 200, wantCreates: 1, wantWrites: 1},
		{name: "unauthenticated write does not act", req: req{method: "DELETE", path: "/v1/accounts/t-1", key: "k", auth: "-"}, status: 401, problem: "Bearer", wantCreates: 1, wantWrites: 1},

		{name: "create", req: req{method: "POST", path: "/v1/accounts", key: "k",
			body: `{"tenant_id":"t/2","slug":"beta","display_name":"Beta","plan":"starter"}`}, status: 201,
			header: map[string]string{"Location": "/v1/accounts/t%2F2", "Content-Type": "application/json", "Idempotent-Replayed": ""},
			check: func(t *testing.T, r reply) {
				m := r.json(t)
				keys := make([]string, 0, len(m))
				for k := range m {
					keys = append(keys, k)
				}
				slices.Sort(keys)
				want := []string{"account_id", "created_at", "customer_ref", "display_name", "plan", "slug", "status", "tenant_id", "updated_at"}
				if !slices.Equal(keys, want) {
					t.Errorf("members %v; want %v", keys, want)
				}
				if m["tenant_id"] != "t/2" || m["status"] != "active" || m["customer_ref"] != "" || m["created_at"] != "2026-03-01T12:00:00Z" ||
					!strings.HasPrefix(m["account_id"].(string), "acct_") {
					t.Errorf("account %v", m)
				}
			}, wantCreates: 2, wantWrites: 2},
		{name: "create without key", req: req{method: "POST", path: "/v1/accounts", body: acme}, status: 400, problem: "Idempotency-Key", wantCreates: 1, wantWrites: 1},
		{name: "create with a long key", req: req{method: "POST", path: "/v1/accounts", key: strings.Repeat("k", 256), body: acme}, status: 400, problem: "Idempotency-Key", wantCreates: 1, wantWrites: 1},
		{name: "create as text", req: req{method: "POST", path: "/v1/accounts", key: "k", body: acme, contentType: "text/plain"}, status: 415, problem: "application/json", wantCreates: 1, wantWrites: 1},
		{name: "create with charset", req: req{method: "POST", path: "/v1/accounts", key: "k", contentType: "application/json; charset=utf-8",
			body: `{"tenant_id":"t-2","slug":"beta","display_name":"Beta","plan":"starter"}`}, status: 201, wantCreates: 2, wantWrites: 2},
		{name: "create malformed", req: req{method: "POST", path: "/v1/accounts", key: "k", body: `{"tenant_id":`}, status: 400, problem: "JSON", wantCreates: 1, wantWrites: 1},
		{name: "create with trailing data", req: req{method: "POST", path: "/v1/accounts", key: "k", body: acme + `{}`}, status: 400, problem: "JSON", wantCreates: 1, wantWrites: 1},
		{name: "create empty", req: req{method: "POST", path: "/v1/accounts", key: "k", body: `{}`}, status: 422,
			problem: "tenant_id: required; slug: required; display_name: required; plan: required", wantCreates: 1, wantWrites: 1},
		{name: "create wrong type", req: req{method: "POST", path: "/v1/accounts", key: "k", body: `{"tenant_id":"t-2","slug":7}`}, status: 422,
			problem: "slug: must be a string", wantCreates: 1, wantWrites: 1},
		{name: "create unknown plan", req: req{method: "POST", path: "/v1/accounts", key: "k",
			body: `{"tenant_id":"t-2","slug":"beta","display_name":"Beta","plan":"gold"}`}, status: 422,
			problem: `plan: "gold" is not a known plan (starter, standard, enterprise)`, wantCreates: 1, wantWrites: 1},
		{name: "create existing", req: req{method: "POST", path: "/v1/accounts", key: "k", body: acme}, status: 409, problem: `tenant "t-1" already has account acct_`, wantCreates: 1, wantWrites: 1},
		{name: "create too large", req: req{method: "POST", path: "/v1/accounts", key: "k", body: `{"slug":"` + strings.Repeat("x", 1<<20) + `"}`}, status: 413, problem: "exceeds", wantCreates: 1, wantWrites: 1},

		{name: "get", req: req{method: "GET", path: "/v1/accounts/t-1"}, status: 200, header: map[string]string{"Content-Type": "application/json"},
			check: func(t *testing.T, r reply) {
				var a billing.Account
				if err := json.Unmarshal(r.body, &a); err != nil || a.TenantID != "t-1" || a.Slug != "acme" || a.Plan != "standard" || a.CustomerRef != "cus_1" || !a.CreatedAt.Equal(now) {
					t.Errorf("account %+v, %v", a, err)
				}
			}, wantCreates: 1, wantWrites: 1},
		{name: "get missing", req: req{method: "GET", path: "/v1/accounts/t-2"}, status: 404, problem: `tenant "t-2" has no account`, wantCreates: 1, wantWrites: 1},
		{name: "unknown route", req: req{method: "GET", path: "/v1/tenants"}, status: 404, problem: "no such route", wantCreates: 1, wantWrites: 1},
		{name: "trailing slash", req: req{method: "GET", path: "/v1/accounts/t-1/"}, status: 404, problem: "no such route", wantCreates: 1, wantWrites: 1},
		{name: "wrong method", req: req{method: "PATCH", path: "/v1/accounts/t-1", key: "k", body: `{}`}, status: 405,
			header: map[string]string{"Allow": "DELETE, GET"}, problem: "PATCH", wantCreates: 1, wantWrites: 1},

		{name: "set plan", req: req{method: "PUT", path: "/v1/accounts/t-1/plan", key: "k", body: `{"plan":"enterprise"}`}, status: 200,
			check: func(t *testing.T, r reply) {
				if m := r.json(t); m["plan"] != "enterprise" {
					t.Errorf("account %v", m)
				}
			}, wantCreates: 1, wantWrites: 2},
		{name: "set plan unknown", req: req{method: "PUT", path: "/v1/accounts/t-1/plan", key: "k", body: `{"plan":"gold"}`}, status: 422, problem: `"gold"`, wantCreates: 1, wantWrites: 1},
		{name: "set plan empty", req: req{method: "PUT", path: "/v1/accounts/t-1/plan", key: "k", body: `{}`}, status: 422, problem: "plan: required", wantCreates: 1, wantWrites: 1},
		{name: "set plan missing", req: req{method: "PUT", path: "/v1/accounts/t-2/plan", key: "k", body: `{"plan":"starter"}`}, status: 404, problem: "t-2", wantCreates: 1, wantWrites: 1},
		{name: "set plan without key", req: req{method: "PUT", path: "/v1/accounts/t-1/plan", body: `{"plan":"starter"}`}, status: 400, problem: "Idempotency-Key", wantCreates: 1, wantWrites: 1},

		{name: "set status", req: req{method: "PUT", path: "/v1/accounts/t-1/status", key: "k", body: `{"status":"closed","reason":"archived"}`}, status: 200,
			check: func(t *testing.T, r reply) {
				if m := r.json(t); m["status"] != "closed" {
					t.Errorf("account %v", m)
				}
			}, wantCreates: 1, wantWrites: 2},
		{name: "set status unknown", req: req{method: "PUT", path: "/v1/accounts/t-1/status", key: "k", body: `{"status":"frozen"}`}, status: 422,
			problem: `status: "frozen" is not one of active, paused, closed`, wantCreates: 1, wantWrites: 1},
		{name: "set status with a numeric reason", req: req{method: "PUT", path: "/v1/accounts/t-1/status", key: "k", body: `{"status":"paused","reason":3}`}, status: 422,
			problem: "reason: must be a string", wantCreates: 1, wantWrites: 1},
		{name: "set status missing", req: req{method: "PUT", path: "/v1/accounts/t-2/status", key: "k", body: `{"status":"paused"}`}, status: 404, problem: "t-2", wantCreates: 1, wantWrites: 1},

		{name: "delete", req: req{method: "DELETE", path: "/v1/accounts/t-1", key: "k"}, status: 204,
			check: func(t *testing.T, r reply) {
				if len(r.body) != 0 {
					t.Errorf("body %q", r.body)
				}
			}, wantCreates: 1, wantWrites: 2},
		{name: "delete missing", req: req{method: "DELETE", path: "/v1/accounts/t-2", key: "k"}, status: 404, problem: "t-2", wantCreates: 1, wantWrites: 1},
		{name: "delete without key", req: req{method: "DELETE", path: "/v1/accounts/t-1"}, status: 400, problem: "Idempotency-Key", wantCreates: 1, wantWrites: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := start(t, billingfake.Options{})
			seed(t, srv)
			r := send(t, srv, tt.req)
			if r.status != tt.status {
				t.Fatalf("status %d; want %d (body %s)", r.status, tt.status, r.body)
			}
			for k, v := range tt.header {
				if got := r.header.Get(k); got != v {
					t.Errorf("%s: %q; want %q", k, got, v)
				}
			}
			if tt.problem != "" {
				checkProblem(t, r, tt.status, tt.problem)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
			if srv.Creates() != tt.wantCreates || srv.Writes() != tt.wantWrites {
				t.Errorf("creates %d, writes %d; want %d, %d", srv.Creates(), srv.Writes(), tt.wantCreates, tt.wantWrites)
			}
		})
	}
}

// checkProblem checks an RFC 9457 problem with all four members.
func checkProblem(t *testing.T, r reply, status int, detail string) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q", ct)
	}
	var p struct {
		Type, Title, Detail *string
		Status              *int
	}
	if err := json.Unmarshal(r.body, &p); err != nil || p.Type == nil || p.Title == nil || p.Status == nil || p.Detail == nil {
		t.Fatalf("not a complete problem: %s (%v)", r.body, err)
	}
	if *p.Status != status || *p.Title == "" || !strings.HasPrefix(*p.Type, "/problems/") || !strings.Contains(*p.Detail, detail) {
		t.Errorf("problem %s; want status %d and a detail containing %q", r.body, status, detail)
	}
}

func TestIdempotencyKeys(t *testing.T) {
	srv := start(t, billingfake.Options{})
	create := req{method: "POST", path: "/v1/accounts", key: "k1", body: acme}
	first := send(t, srv, create)
	again := send(t, srv, create)
	if first.status != 201 || again.status != 201 || string(again.body) != string(first.body) ||
		again.header.Get("Location") != first.header.Get("Location") || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay %d %s %v; want the first response %d %s, marked replayed", again.status, again.body, again.header, first.status, first.body)
	}
	if srv.Creates() != 1 || srv.Writes() != 1 {
		t.Errorf("creates %d, writes %d; want 1, 1", srv.Creates(), srv.Writes())
	}

	for _, q := range []req{
		{method: "POST", path: "/v1/accounts", key: "k1", body: strings.Replace(acme, "Acme Corp", "Acme Inc", 1)},
		{method: "POST", path: "/v1/accounts", key: "k1", body: acme + " "},
		{method: "PUT", path: "/v1/accounts/t-1/plan", key: "k1", body: `{"plan":"starter"}`},
		{method: "DELETE", path: "/v1/accounts/t-1", key: "k1"},
	} {
		r := send(t, srv, q)
		if r.status != 422 {
			t.Fatalf("%s %s %s with a used key: %d; want 422", q.method, q.path, q.body, r.status)
		}
		checkProblem(t, r, 422, "different request")
	}
	if _, ok := srv.Account("t-1"); !ok || srv.Writes() != 1 {
		t.Errorf("a refused reuse acted: account present %v, writes %d", ok, srv.Writes())
	}

	// A refused write is not remembered: once its cause is gone, the same
	// request with the same key acts.
	pause := req{method: "PUT", path: "/v1/accounts/t-2/status", key: "pause-t-2", body: `{"status":"paused"}`}
	if r := send(t, srv, pause); r.status != 404 {
		t.Fatalf("pause of a missing account: %d", r.status)
	}
	send(t, srv, req{method: "POST", path: "/v1/accounts", key: "k2", body: strings.Replace(acme, "t-1", "t-2", 1)})
	if r := send(t, srv, pause); r.status != 200 || r.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("retried pause: %d %s replayed %q; want a fresh 200", r.status, r.body, r.header.Get("Idempotent-Replayed"))
	}
	if a, _ := srv.Account("t-2"); a.Status != billing.StatusPaused {
		t.Errorf("status %q", a.Status)
	}

	// GET ignores keys.
	for range 2 {
		if r := send(t, srv, req{method: "GET", path: "/v1/accounts/t-1", key: "k1"}); r.status != 200 {
			t.Errorf("GET with a used key: %d", r.status)
		}
	}
}

func TestOptions(t *testing.T) {
	srv := start(t, billingfake.Options{Token: "custom", Plans: []string{"gold"}})
	create := func(plan string) reply {
		return send(t, srv, req{method: "POST", path: "/v1/accounts", key: "k-" + plan, auth: "Bearer custom",
			body: `{"tenant_id":"t-` + plan + `","slug":"s","display_name":"S","plan":"` + plan + `"}`})
	}
	if r := create("gold"); r.status != 201 {
		t.Errorf("configured plan: %d %s", r.status, r.body)
	}
	if r := create("starter"); r.status != 422 || !strings.Contains(string(r.body), "(gold)") {
		t.Errorf("default plan with custom plans: %d %s", r.status, r.body)
	}
	if r := send(t, srv, req{method: "GET", path: "/v1/accounts/t-gold"}); r.status != 401 {
		t.Errorf("default token with a custom one: %d", r.status)
	}
	a, ok := srv.Account("t-gold")
	if !ok || a.CreatedAt.IsZero() || a.CreatedAt.Location() != time.UTC {
		t.Errorf("account %+v with the real clock", a)
	}
}

func TestInspection(t *testing.T) {
	tick := now
	var mu sync.Mutex
	srv := start(t, billingfake.Options{Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		tick = tick.Add(time.Minute)
		return tick
	}})
	for _, id := range []string{"t-c", "t-a", "t-b"} {
		send(t, srv, req{method: "POST", path: "/v1/accounts", key: id, body: strings.Replace(acme, "t-1", id, 1)})
	}
	var ids []string
	for _, a := range srv.Accounts() {
		ids = append(ids, a.TenantID)
	}
	if !slices.Equal(ids, []string{"t-a", "t-b", "t-c"}) {
		t.Errorf("Accounts() in order %v", ids)
	}
	if _, ok := srv.Account("t-z"); ok {
		t.Error("Account of a tenant without one reports one")
	}

	before, _ := srv.Account("t-a")
	srv.SetStatus("t-a", "frozen")
	after, _ := srv.Account("t-a")
	if after.Status != "frozen" || !after.UpdatedAt.After(before.UpdatedAt) || srv.Writes() != 3 {
		t.Errorf("after SetStatus: %+v, writes %d; want frozen, a later updated_at, 3 writes", after, srv.Writes())
	}
	r := send(t, srv, req{method: "GET", path: "/v1/accounts/t-a"})
	if m := r.json(t); m["status"] != "frozen" {
		t.Errorf("GET after SetStatus: %v", m)
	}
	// Setting what is already there still counts as a write, but changes
	// nothing.
	r = send(t, srv, req{method: "PUT", path: "/v1/accounts/t-b/plan", key: "same-plan", body: `{"plan":"standard"}`})
	if got, _ := srv.Account("t-b"); r.status != 200 || srv.Writes() != 4 || got.UpdatedAt != got.CreatedAt {
		t.Errorf("same plan: %d, writes %d, account %+v", r.status, srv.Writes(), got)
	}

	defer func() {
		if recover() == nil {
			t.Error("SetStatus of a missing account did not panic")
		}
	}()
	srv.SetStatus("t-z", "active")
}

func TestHook(t *testing.T) {
	srv := start(t, billingfake.Options{})
	rec := faultinject.Record(srv.SetHook, func(r *http.Request) string {
		b, _ := io.ReadAll(r.Body)
		return r.Method + " " + r.URL.Path + " " + string(b)
	})
	srv.Inject(billingfake.Fault{Method: "GET", Status: 503, Times: 1})
	send(t, srv, req{method: "GET", path: "/v1/accounts/t-1"})
	send(t, srv, req{method: "GET", path: "/v1/accounts/t-1", auth: "-"})
	if r := send(t, srv, req{method: "POST", path: "/v1/accounts", key: "k", body: acme}); r.status != 201 {
		t.Errorf("create after the hook read the body: %d %s", r.status, r.body)
	}
	srv.SetHook(nil)
	send(t, srv, req{method: "GET", path: "/v1/accounts/t-1"})
	want := []string{"GET /v1/accounts/t-1 ", "GET /v1/accounts/t-1 ", "POST /v1/accounts " + acme}
	if seen := rec.Seen(); !slices.Equal(seen, want) {
		t.Errorf("hook saw %q; want %q", seen, want)
	}
}

// TestHookHoldsRequests: a blocking hook holds a request, here to show
// that concurrent creates with one key act once.
func TestHookHoldsRequests(t *testing.T) {
	srv := start(t, billingfake.Options{})
	release := make(chan struct{})
	var arrived sync.WaitGroup
	arrived.Add(2)
	srv.SetHook(func(*http.Request) { arrived.Done(); <-release })
	replies := make([]reply, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range replies {
		wg.Go(func() {
			replies[i], errs[i] = try(srv, req{method: "POST", path: "/v1/accounts", key: "k", body: acme})
		})
	}
	arrived.Wait()
	if srv.Creates() != 0 {
		t.Errorf("%d creates while both requests are held", srv.Creates())
	}
	close(release)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if srv.Creates() != 1 || replies[0].status != 201 || string(replies[0].body) != string(replies[1].body) {
		t.Errorf("creates %d, replies %d %s / %d %s", srv.Creates(), replies[0].status, replies[0].body, replies[1].status, replies[1].body)
	}
}

func TestFaultResponses(t *testing.T) {
	tests := []struct {
		name  string
		fault billingfake.Fault
		// status 0: the connection is dropped.
		status     int
		retryAfter string
		acted      bool
	}{
		{"status", billingfake.Fault{Status: 503}, 503, "", false},
		{"retry-after in whole seconds", billingfake.Fault{Status: 429, RetryAfter: 1100 * time.Millisecond}, 429, "2", false},
		{"drop", billingfake.Fault{Drop: true}, 0, "", false},
		{"latency, then status", billingfake.Fault{Status: 500, Latency: 50 * time.Millisecond}, 500, "", false},
		{"status after acting", billingfake.Fault{Status: 500, AfterHandling: true}, 500, "", true},
		{"drop after acting", billingfake.Fault{Drop: true, AfterHandling: true}, 0, "", true},
		{"latency only", billingfake.Fault{Latency: 50 * time.Millisecond}, 201, "", true},
		{"other path", billingfake.Fault{Path: "/v1/accounts/*", Status: 500}, 201, "", true},
		{"other method", billingfake.Fault{Method: "put", Status: 500}, 201, "", true},
		{"method case-insensitive", billingfake.Fault{Method: "post", Status: 500}, 500, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := start(t, billingfake.Options{})
			srv.Inject(tt.fault)
			r, err := try(srv, req{method: "POST", path: "/v1/accounts", key: "k", body: acme})
			switch {
			case tt.status == 0:
				if err == nil {
					t.Fatalf("got %d %s; want a dropped connection", r.status, r.body)
				}
			case err != nil:
				t.Fatal(err)
			case r.status != tt.status || r.header.Get("Retry-After") != tt.retryAfter:
				t.Errorf("got %d, Retry-After %q; want %d, %q", r.status, r.header.Get("Retry-After"), tt.status, tt.retryAfter)
			case tt.status >= 400:
				checkProblem(t, r, tt.status, "injected")
			}
			if _, ok := srv.Account("t-1"); ok != tt.acted || srv.Creates() != map[bool]int{true: 1}[tt.acted] {
				t.Errorf("account present %v, creates %d; want present %v", ok, srv.Creates(), tt.acted)
			}
		})
	}
}

func TestCloseCutsLatencyShort(t *testing.T) {
	srv := billingfake.New(billingfake.Options{})
	arrived := make(chan struct{}, 1)
	srv.SetHook(func(*http.Request) { arrived <- struct{}{} })
	srv.Inject(billingfake.Fault{Latency: time.Minute})
	errc := make(chan error, 1)
	go func() {
		_, err := try(srv, req{method: "GET", path: "/v1/accounts/t-1"})
		errc <- err
	}()
	<-arrived
	began := time.Now()
	srv.Close()
	// The client gives up after 5 s, which would also end the request.
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	if err := <-errc; err == nil {
		t.Error("the delayed request succeeded after Close")
	}
}

func TestDropIsAnError(t *testing.T) {
	srv := start(t, billingfake.Options{})
	srv.Inject(billingfake.Fault{Drop: true, Times: 1})
	if r, err := try(srv, req{method: "GET", path: "/v1/accounts/t-1"}); err == nil {
		t.Fatalf("got %d %s; want a connection error", r.status, r.body)
	}
	if r := send(t, srv, req{method: "GET", path: "/v1/accounts/t-1"}); r.status != 404 {
		t.Errorf("after the single drop: %d", r.status)
	}
}
