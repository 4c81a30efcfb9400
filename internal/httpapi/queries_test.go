package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/auth"
)

type listPage struct {
	Items []struct {
		ID          string            `json:"id"`
		Slug        string            `json:"slug"`
		DisplayName string            `json:"display_name"`
		State       string            `json:"state"`
		Labels      map[string]string `json:"labels"`
	} `json:"items"`
	NextPageToken string `json:"next_page_token"`
}

func (h *harness) list(t *testing.T, token, query string) (listPage, response) {
	t.Helper()
	r := h.do(t, req{method: "GET", path: "/v1/tenants?" + query, token: token})
	var p listPage
	if r.Status == 200 {
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatal(err)
		}
	}
	return p, r
}

func slugs(p listPage) []string {
	var out []string
	for _, it := range p.Items {
		out = append(out, it.Slug)
	}
	slices.Sort(out)
	return out
}

// directory creates a varied set of tenants and returns the last write's
// sequence.
func (h *harness) directory(t *testing.T) (ids map[string]string, seq string) {
	t.Helper()
	ids = map[string]string{}
	mk := func(slug, name, plan, isolation string, regions []string, labels, extIDs map[string]string) {
		body := map[string]any{"slug": slug, "display_name": name, "plan": plan, "isolation": isolation,
			"regions": map[string]any{"allowed": regions, "preferred": regions[0]}, "labels": labels, "external_ids": extIDs}
		r := h.do(t, req{method: "POST", path: "/v1/tenants", token: h.admin, body: body})
		if r.Status != 201 {
			t.Fatalf("create %s: %d %s", slug, r.Status, r.Body)
		}
		ids[slug] = r.json(t)["id"].(string)
		seq = r.Header.Get("Tenancy-Sequence")
	}
	mk("acme", "Acme Corporation", "standard", "shared", []string{"eu-west-1"}, map[string]string{"tier": "gold"}, map[string]string{"billing": "cus/1 2"})
	mk("acme-labs", "Acme Labs", "enterprise", "dedicated", []string{"us-east-1"}, map[string]string{"tier": "gold"}, nil)
	mk("acme-eu", "ACME Europe", "standard", "hybrid", []string{"eu-central-1", "eu-west-1"}, nil, map[string]string{"crm": "0012"})
	mk("globex", "Globex", "enterprise", "dedicated", []string{"us-east-1"}, map[string]string{"tier": "silver"}, nil)
	for i := range 20 {
		mk(fmt.Sprintf("filler-%02d", i), fmt.Sprintf("Filler %02d", i), "starter", "shared", []string{"ap-south-1"}, nil, nil)
	}
	return ids, seq
}

func TestSearchAndLookups(t *testing.T) {
	h := newHarness(t, options{projections: true})
	ids, seq := h.directory(t)

	all, r := h.list(t, h.admin, "page_size=500&min_seq="+seq)
	if r.Status != 200 || len(all.Items) != 24 {
		t.Fatalf("list with min_seq right after the writes: %d, %d items", r.Status, len(all.Items))
	}
	if got, _ := strconv.ParseUint(r.Header.Get("Tenancy-Read-Sequence"), 10, 64); got < mustUint(seq) {
		t.Fatalf("read sequence %d is behind min_seq %s", got, seq)
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"plan=enterprise", []string{"acme-labs", "globex"}},
		{"plan=enterprise&plan=standard&isolation=shared", []string{"acme"}},
		{"isolation=dedicated&region=us-east-1", []string{"acme-labs", "globex"}},
		{"region=eu-west-1", []string{"acme", "acme-eu"}},
		{"label=tier:gold", []string{"acme", "acme-labs"}},
		{"label=tier:gold&label=tier:silver", nil},
		{"external_id=crm:0012", []string{"acme-eu"}},
		{"external_id=" + url.QueryEscape("billing:cus/1 2"), []string{"acme"}},
		{"q=acme", []string{"acme", "acme-eu", "acme-labs"}},
		{"q=Globx", []string{"globex"}},
		{"state=deleted", nil},
	} {
		p, r := h.list(t, h.admin, tc.query)
		if r.Status != 200 {
			t.Fatalf("%s: %d %s", tc.query, r.Status, r.Body)
		}
		if got := slugs(p); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.query, got, tc.want)
		}
	}
	// The closest match comes first.
	if p, _ := h.list(t, h.admin, "q=acme"); p.Items[0].Slug != "acme" {
		t.Errorf("q=acme ranks %s first", p.Items[0].Slug)
	}
	if p, _ := h.list(t, h.admin, "state=draft&q=filler-07"); len(p.Items) == 0 || p.Items[0].Slug != "filler-07" {
		t.Errorf("q=filler-07 ranks %v", slugs(p))
	}

	// Paging: every tenant exactly once, in a stable order, with and
	// without a query.
	for _, base := range []string{"page_size=7", "page_size=2&q=filler"} {
		var seen []string
		tok := ""
		for pages := 0; ; pages++ {
			q := base
			if tok != "" {
				q += "&page_token=" + tok
			}
			p, r := h.list(t, h.admin, q)
			if r.Status != 200 {
				t.Fatalf("%s: %d %s", q, r.Status, r.Body)
			}
			for _, it := range p.Items {
				if slices.Contains(seen, it.ID) {
					t.Fatalf("%s: %s listed twice", base, it.Slug)
				}
				seen = append(seen, it.ID)
			}
			if p.NextPageToken == "" {
				break
			}
			tok = p.NextPageToken
			if pages > 50 {
				t.Fatal("paging does not end")
			}
		}
		want := 24
		if strings.Contains(base, "q=") {
			want = 20
		}
		if len(seen) != want {
			t.Fatalf("%s: paged through %d tenants, want %d", base, len(seen), want)
		}
	}

	for path, want := range map[string]string{
		"/v1/tenants/by-slug/acme-eu":                                     "acme-eu",
		"/v1/tenants/by-external-id/crm/0012":                             "acme-eu",
		"/v1/tenants/by-external-id/billing/" + url.PathEscape("cus/1 2"): "acme",
		"/v1/tenants/by-slug/acme?min_seq=" + seq:                         "acme",
	} {
		r := h.do(t, req{method: "GET", path: path, token: h.admin})
		if r.Status != 200 || r.json(t)["slug"] != want || r.Header.Get("ETag") == "" {
			t.Fatalf("%s: %d %s", path, r.Status, r.Body)
		}
	}
	for _, path := range []string{"/v1/tenants/by-slug/nope", "/v1/tenants/by-external-id/crm/nope"} {
		if r := h.do(t, req{method: "GET", path: path, token: h.admin}); r.Status != 404 {
			t.Fatalf("%s: %d", path, r.Status)
		}
	}

	// Read your writes: a change is visible at once to a read that passes
	// the write's sequence.
	w := h.do(t, req{method: "PATCH", path: "/v1/tenants/" + ids["globex"], token: h.admin, body: `{"labels":{"tier":"gold"}}`})
	if w.Status != 200 {
		t.Fatal(w.Status)
	}
	p, _ := h.list(t, h.admin, "label=tier:gold&min_seq="+w.Header.Get("Tenancy-Sequence"))
	if !slices.Contains(slugs(p), "globex") {
		t.Fatalf("the write is not visible with its min_seq: %v", slugs(p))
	}

	for _, tc := range []struct{ query, field string }{
		{"state=sleeping", "state"}, {"isolation=solo", "isolation"}, {"label=tier", "label"}, {"external_id=crm", "external_id"},
		{"page_token=garbage", "page_token"}, {"page_size=0", "page_size"}, {"min_seq=-1", "min_seq"}, {"staet=active", "staet"},
		{"min_seq=999999999", "min_seq"},
	} {
		_, r := h.list(t, h.admin, tc.query)
		if r.Status != 422 || !strings.Contains(string(r.Body), `"field":"`+tc.field+`"`) {
			t.Errorf("%s: %d %s", tc.query, r.Status, r.Body)
		}
	}
}

func mustUint(s string) uint64 {
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}

func TestAuditTrail(t *testing.T) {
	h := newHarness(t, options{projections: true})
	other := h.token(t, auth.TokenRequest{Subject: "bob", Roles: []string{auth.RolePlatformAdmin}})
	a := h.create(t, tenantBody("audited"))["id"].(string)
	if r := h.do(t, req{method: "PATCH", path: "/v1/tenants/" + a, token: other, body: `{"display_name":"Audited Inc"}`, header: map[string]string{"X-Request-Id": "req-bob-1"}}); r.Status != 200 {
		t.Fatal(r.Status)
	}
	r := h.do(t, req{method: "POST", path: "/v1/tenants/" + a + "/activate", token: h.admin})
	seq := r.Header.Get("Tenancy-Sequence")
	h.create(t, tenantBody("unrelated"))

	get := func(query string) []map[string]any {
		t.Helper()
		r := h.do(t, req{method: "GET", path: "/v1/audit?min_seq=" + seq + "&" + query, token: h.admin})
		if r.Status != 200 {
			t.Fatalf("%s: %d %s", query, r.Status, r.Body)
		}
		var p struct {
			Items []map[string]any `json:"items"`
		}
		_ = json.Unmarshal(r.Body, &p)
		return p.Items
	}
	entries := get("tenant_id=" + a)
	if len(entries) != 3 {
		t.Fatalf("%d entries for the tenant: %v", len(entries), entries)
	}
	if entries[0]["type"] != "tenancy.tenant.activation_requested.v1" || entries[2]["type"] != "tenancy.tenant.created.v1" {
		t.Fatalf("not newest first: %v", entries)
	}
	if entries[1]["actor"] != "bob" || entries[1]["correlation_id"] != "req-bob-1" || !strings.Contains(entries[1]["summary"].(string), "display_name") {
		t.Fatalf("the change's entry: %v", entries[1])
	}
	if got := get("actor=bob"); len(got) != 1 {
		t.Fatalf("actor filter: %v", got)
	}
	if got := get("tenant_id=" + a + "&type=tenancy.tenant.created.v1"); len(got) != 1 {
		t.Fatalf("type filter: %v", got)
	}
	if got := get("type=" + url.QueryEscape("tenancy.signingkey.*")); len(got) != 1 {
		t.Fatalf("type prefix filter: %v", got)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if got := get("from=" + future); len(got) != 0 {
		t.Fatalf("from filter: %v", got)
	}
	if got := get("to=" + future + "&tenant_id=" + a); len(got) != 3 {
		t.Fatalf("to filter: %v", got)
	}
	// Each entry links to the signed event it summarizes.
	keys, _ := h.core.SigningKeys.Keys(context.Background())
	for _, e := range entries {
		r := h.do(t, req{method: "GET", path: e["event_url"].(string), token: h.admin})
		if r.Status != 200 {
			t.Fatalf("%s: %d", e["event_url"], r.Status)
		}
		env, _, err := keys.Verify(r.Body)
		if err != nil || env.ID != e["event_id"] {
			t.Fatalf("%s does not verify as event %s: %v", e["event_url"], e["event_id"], err)
		}
	}
	// Paging newest first without gaps.
	var all []float64
	tok := ""
	for {
		path := "/v1/audit?page_size=2"
		if tok != "" {
			path += "&page_token=" + tok
		}
		r := h.do(t, req{method: "GET", path: path, token: h.admin})
		var p struct {
			Items         []map[string]any `json:"items"`
			NextPageToken string           `json:"next_page_token"`
		}
		_ = json.Unmarshal(r.Body, &p)
		for _, it := range p.Items {
			all = append(all, it["seq"].(float64))
		}
		if p.NextPageToken == "" {
			break
		}
		tok = p.NextPageToken
	}
	if len(all) != 5 || !slices.IsSortedFunc(all, func(a, b float64) int { return int(b - a) }) {
		t.Fatalf("paged audit: %v", all)
	}
}

// TestReadYourWritesTimesOut: with no projection running, a read that needs
// a sequence the read model has not reached answers 503 with Retry-After.
func TestReadYourWritesTimesOut(t *testing.T) {
	h := newHarness(t, options{readWait: 200 * time.Millisecond})
	r := h.do(t, req{method: "POST", path: "/v1/tenants", token: h.admin, body: tenantBody("pending")})
	seq := r.Header.Get("Tenancy-Sequence")
	for _, path := range []string{"/v1/tenants?min_seq=" + seq, "/v1/tenants/by-slug/pending?min_seq=" + seq, "/v1/audit?min_seq=" + seq} {
		r := h.do(t, req{method: "GET", path: path, token: h.admin})
		if r.Status != 503 || r.Header.Get("Retry-After") == "" || !strings.Contains(string(r.Body), "min_seq") {
			t.Fatalf("%s: %d %v %s", path, r.Status, r.Header, r.Body)
		}
	}
}

func TestProjectionStatusRoute(t *testing.T) {
	h := newHarness(t, options{projections: true})
	r := h.do(t, req{method: "POST", path: "/v1/tenants", token: h.admin, body: tenantBody("status")})
	seq := r.Header.Get("Tenancy-Sequence")
	h.list(t, h.admin, "min_seq="+seq)
	r = h.do(t, req{method: "GET", path: "/v1/admin/projections", token: h.admin})
	if r.Status != 200 || !strings.Contains(string(r.Body), `"name":"tenants"`) || !strings.Contains(string(r.Body), `"name":"audit_log"`) {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	viewer := h.token(t, auth.TokenRequest{Subject: "v", Roles: []string{auth.RoleTenantViewer}, TenantID: "0190c4f2-7d1e-7b3a-9c2d-5e6f7a8b9c0d"})
	if r := h.do(t, req{method: "GET", path: "/v1/admin/projections", token: viewer}); r.Status != 403 {
		t.Fatalf("viewer: %d", r.Status)
	}
}

// TestReadIsolation checks every read route with a token scoped to one
// tenant: it sees that tenant and nothing of any other.
func TestReadIsolation(t *testing.T) {
	h := newHarness(t, options{projections: true})
	ids, seq := h.directory(t)
	a, b := ids["acme"], ids["globex"]
	bEvents := h.do(t, req{method: "GET", path: "/v1/tenants/" + b + "/events", token: h.admin})
	var be struct {
		Items []json.RawMessage `json:"items"`
	}
	_ = json.Unmarshal(bEvents.Body, &be)
	bSeq := ""
	{
		r := h.do(t, req{method: "GET", path: "/v1/audit?tenant_id=" + b + "&min_seq=" + seq, token: h.admin})
		var p struct {
			Items []map[string]any `json:"items"`
		}
		_ = json.Unmarshal(r.Body, &p)
		bSeq = fmt.Sprint(int(p.Items[0]["seq"].(float64)))
	}
	for _, role := range []string{auth.RoleTenantViewer, auth.RoleTenantAdmin} {
		tok := h.token(t, auth.TokenRequest{Subject: "user-a", Roles: []string{role}, TenantID: a})
		p, r := h.list(t, tok, "page_size=500&min_seq="+seq)
		if r.Status != 200 || len(p.Items) != 1 || p.Items[0].ID != a {
			t.Fatalf("%s lists %d tenants: %v", role, len(p.Items), slugs(p))
		}
		if p, _ := h.list(t, tok, "q=globex"); len(p.Items) != 0 {
			t.Fatalf("%s finds another tenant by search", role)
		}
		ar := h.do(t, req{method: "GET", path: "/v1/audit?page_size=500", token: tok})
		var audit struct {
			Items []map[string]any `json:"items"`
		}
		_ = json.Unmarshal(ar.Body, &audit)
		if ar.Status != 200 || len(audit.Items) == 0 {
			t.Fatalf("%s audit: %d %s", role, ar.Status, ar.Body)
		}
		for _, e := range audit.Items {
			if e["tenant_id"] != a {
				t.Fatalf("%s sees another tenant's audit entry: %v", role, e)
			}
		}
		for _, path := range []string{
			"/v1/tenants/by-slug/globex", "/v1/tenants/by-external-id/crm/0012", "/v1/audit?tenant_id=" + b,
			"/v1/tenants/" + b + "/events/" + bSeq, "/v1/tenants/" + a + "/events/" + bSeq,
		} {
			r := h.do(t, req{method: "GET", path: path, token: tok})
			if r.Status != 404 || strings.Contains(string(r.Body), "Globex") || strings.Contains(string(r.Body), "silver") {
				t.Fatalf("%s %s: %d %s", role, path, r.Status, r.Body)
			}
		}
		if r := h.do(t, req{method: "GET", path: "/v1/events/" + bSeq, token: tok}); r.Status != 403 {
			t.Fatalf("%s reads any event: %d", role, r.Status)
		}
		if r := h.do(t, req{method: "GET", path: "/v1/tenants/by-slug/acme", token: tok}); r.Status != 200 {
			t.Fatalf("%s reads its own tenant by slug: %d", role, r.Status)
		}
	}
}
