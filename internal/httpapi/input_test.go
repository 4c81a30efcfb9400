package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// badValue is one kind of input no route may answer with a 5xx, and that
// every route must refuse naming the parameter.
type badValue struct {
	name string
	// raw is the value as it goes into the URL, already escaped (or
	// deliberately mis-escaped).
	raw string
	// applies says which parameters it is tried on.
	applies func(p *openapi3.Parameter) bool
}

func anyParam(*openapi3.Parameter) bool { return true }

func integerParam(p *openapi3.Parameter) bool {
	return p.Schema != nil && p.Schema.Value != nil && p.Schema.Value.Type.Is("integer")
}

var badValues = []badValue{
	{"NUL", "a%00b", anyParam},
	{"invalid UTF-8", "a%FF%FEb", anyParam},
	{"a control character", "a%1Bb", anyParam},
	{"bad percent-encoding", "a%zzb", func(p *openapi3.Parameter) bool { return p.In == "query" }},
	{"a lone percent", "50%", func(p *openapi3.Parameter) bool { return p.In == "query" }},
	{"an unescaped semicolon", "a;b", func(p *openapi3.Parameter) bool { return p.In == "query" }},
	{"beyond 2^53", "9007199254740993", integerParam},
	{"beyond 2^64", "99999999999999999999999", integerParam},
	{"negative", "-1", integerParam},
	{"forged page token", "eyJpIjoibm90LWEtdXVpZCJ9", func(p *openapi3.Parameter) bool { return p.Name == "page_token" }},
	{"page token beyond int64", "czoxODQ0Njc0NDA3MzcwOTU1MTYxNQ", func(p *openapi3.Parameter) bool { return p.Name == "page_token" }},
	{"garbage page token", "%F0%9F%92%A9", func(p *openapi3.Parameter) bool { return p.Name == "page_token" }},
}

// TestBadInputNeverFails sends every route every kind of bad value in each
// of its parameters (path and query, as openapi.yaml lists them): no
// answer is a 5xx, and every refusal is a problem naming the parameter.
func TestBadInputNeverFails(t *testing.T) {
	h := newHarness(t, options{projections: true})
	tenant := h.create(t, tenantBody("edge"))["id"].(string)
	hook := h.do(t, req{method: "POST", path: "/v1/webhooks", token: h.admin, body: map[string]any{
		"url": "https://crm.example.com/hooks", "event_types": []string{"tenancy.tenant.*"}}}).json(t)["id"].(string)
	ou := h.created(t, "/v1/tenants/"+tenant+"/org-units", map[string]any{"name": "Edge"})["id"].(string)
	good := map[string]string{"id": tenant, "seq": "1", "slug": "edge", "system": "billing", "ou": ou}
	doc, _ := spec(t)
	paths := doc.Paths.Map()
	keys := make([]string, 0, len(paths))
	for k := range paths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tried := 0
	for _, path := range keys {
		item := paths[path]
		for method, op := range item.Operations() {
			params := slices.Concat(item.Parameters, op.Parameters)
			for _, pr := range params {
				p := pr.Value
				if p == nil || (p.In != "path" && p.In != "query") {
					continue
				}
				for _, bad := range badValues {
					if !bad.applies(p) {
						continue
					}
					target := fill(path, good, hook)
					if p.In == "path" {
						target = strings.Replace(fill(path, map[string]string{}, hook), "{"+p.Name+"}", bad.raw, 1)
						target = fill(target, good, hook)
					} else {
						target += "?" + p.Name + "=" + bad.raw
					}
					tried++
					r := h.do(t, req{method: method, path: target, token: h.admin, body: bodyFor(op)})
					if r.Status >= 500 {
						continue // h.do already reported it
					}
					if r.Status < 400 {
						if p.Name == "page_token" || bad.name == "NUL" || bad.name == "invalid UTF-8" || strings.Contains(bad.name, "percent") {
							t.Errorf("%s %s: %s in %s accepted (%d)", method, target, bad.name, p.Name, r.Status)
						}
						continue
					}
					if r.Status == http.StatusNotFound && p.In == "path" {
						continue // no such resource: names what was sought
					}
					if !namesField(r.Body, p.Name) {
						t.Errorf("%s %s: %s in %s answered %d without naming %s: %s", method, target, bad.name, p.Name, r.Status, p.Name, r.Body)
					}
				}
			}
		}
	}
	t.Logf("%d requests with bad parameters, none failed", tried)
}

// fill puts the good value of each path parameter into path.
func fill(path string, good map[string]string, hook string) string {
	for name, v := range good {
		if name == "id" && strings.HasPrefix(path, "/v1/webhooks/") {
			v = hook
		}
		path = strings.ReplaceAll(path, "{"+name+"}", v)
	}
	return path
}

// bodyFor returns a body an operation accepts, or nil: the parameters
// are what is under test.
func bodyFor(op *openapi3.Operation) any {
	if op.RequestBody == nil || op.RequestBody.Value == nil || !op.RequestBody.Value.Required {
		return nil
	}
	switch op.OperationID {
	case "createTenant":
		return tenantBody("edge-body")
	case "createWebhook":
		return map[string]any{"url": "https://crm.example.com/hooks", "event_types": []string{"tenancy.tenant.*"}}
	case "suspendTenant":
		return map[string]any{"reason": "operator"}
	case "resolveQuarantine", "discardDeadLetter":
		return map[string]any{"reason": "test"}
	case "replayWebhook":
		return map[string]any{"from_seq": 1, "to_seq": 1}
	case "createUser":
		return map[string]any{"username": "edge-user"}
	case "importUsers":
		return map[string]any{"users": []map[string]any{{"username": "edge-import"}}}
	case "createClient":
		return map[string]any{"client_id": "edge-client"}
	case "createOrgUnit":
		return map[string]any{"name": "Edge"}
	case "setOrgUnitMember":
		return map[string]any{"roles": []string{"default"}}
	}
	return map[string]any{}
}

// namesField reports whether a problem names field (in errors[] or its
// detail).
func namesField(body []byte, field string) bool {
	var p struct {
		Detail string `json:"detail"`
		Errors []struct {
			Field string `json:"field"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &p) != nil {
		return false
	}
	for _, e := range p.Errors {
		if e.Field == field || strings.Contains(e.Field, field) {
			return true
		}
	}
	return strings.Contains(p.Detail, field)
}

// TestBadBodyStrings sends every operation with a JSON body a string member
// holding NUL, invalid UTF-8, a duplicate member, a member in the wrong
// case and a number beyond 2^53: each is refused with a problem naming the
// member, never a 5xx.
func TestBadBodyStrings(t *testing.T) {
	h := newHarness(t, options{})
	tenant := h.create(t, tenantBody("bodies"))["id"].(string)
	cases := []struct {
		name, path, body, field string
	}{
		{"NUL in a string", "/v1/tenants", `{"slug":"a\u0000b","display_name":"x","plan":"standard","isolation":"shared","regions":{"allowed":["eu-west-1"],"preferred":"eu-west-1"}}`, "slug"},
		{"NUL in a nested string", "/v1/tenants", `{"slug":"nested","display_name":"x","plan":"standard","isolation":"shared","regions":{"allowed":["eu-west-1"],"preferred":"eu-west-1"},"contacts":[{"role":"billing","name":"a\u0000","email":"a@b.test"}]}`, "contacts[0].name"},
		{"invalid UTF-8", "/v1/tenants", "{\"slug\":\"utf\",\"display_name\":\"\xff\xfe\",\"plan\":\"standard\"}", "display_name"},
		{"duplicate member", "/v1/tenants", `{"slug":"dup","slug":"dup2","display_name":"x"}`, "slug"},
		{"member in the wrong case", "/v1/tenants", `{"Slug":"case","display_name":"x"}`, "Slug"},
		{"number beyond 2^53", "/v1/webhooks/none/replay", `{"from_seq":1,"to_seq":9007199254740993}`, "to_seq"},
		{"label value NUL", "/v1/tenants/" + tenant + "/suspend", `{"reason":"operator","note":"x\u0000"}`, "note"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(t, req{method: "POST", path: tc.path, token: h.admin, body: tc.body})
			if r.Status < 400 || r.Status >= 500 || !namesField(r.Body, tc.field) {
				t.Fatalf("%d %s, want a 4xx naming %s", r.Status, r.Body, tc.field)
			}
		})
	}
	// A bad escape in the query is refused, not silently dropped: a
	// misspelt filter must not widen a listing.
	r := h.do(t, req{method: "GET", path: "/v1/tenants?state=" + url.PathEscape("active") + "%2", token: h.admin})
	if r.Status != http.StatusUnprocessableEntity || !namesField(r.Body, "state") {
		t.Fatalf("a bad escape in a filter: %d %s", r.Status, r.Body)
	}
}

// FuzzQueryString sends the listing routes arbitrary query strings: no
// answer is a 5xx, and every error is a problem (the harness checks both,
// and every answer against openapi.yaml).
func FuzzQueryString(f *testing.F) {
	for _, seed := range []string{
		"state=active&plan=standard", "q=acme&page_size=5", "page_token=czox", "min_seq=18446744073709551616",
		"state=%zz", "q=%00", "type=tenancy.tenant.*&actor=a%FF", "page_size=-1", "a;b=c", "tenant_id=x&tenant_id=y",
		"from=2026-13-40T00:00:00Z", "event_seq=0", "%=%", "&&&=", "page_token=eyJpIjoiIiwicyI6MX0",
	} {
		f.Add(uint8(0), seed)
	}
	h := newHarness(f, options{projections: true})
	hook := h.do(f, req{method: "POST", path: "/v1/webhooks", token: h.admin, body: map[string]any{
		"url": "https://crm.example.com/hooks", "event_types": []string{"tenancy.tenant.*"}}}).json(f)["id"].(string)
	tenant := h.create(f, tenantBody("fuzzed"))["id"].(string)
	routes := []string{"/v1/tenants", "/v1/audit", "/v1/dead-letters", "/v1/webhooks/" + hook + "/attempts", "/v1/tenants/" + tenant + "/events"}
	f.Fuzz(func(t *testing.T, route uint8, query string) {
		target := routes[int(route)%len(routes)] + "?" + query
		if _, err := http.NewRequest(http.MethodGet, h.srv.URL+target, nil); err != nil || strings.IndexFunc(query, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
			// Not a request line: the HTTP server refuses it before any
			// route is found (a space ends the request target).
			t.Skip("not a request line an HTTP client can send")
		}
		h.do(t, req{method: http.MethodGet, path: target, token: h.admin})
	})
}
