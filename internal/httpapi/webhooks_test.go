package httpapi_test

import (
	"strings"
	"testing"

	"github.com/tenancyhq/tenancy/internal/auth"
)

func TestWebhookSubscriptions(t *testing.T) {
	h := newHarness(t, options{projections: true})
	tenant := h.create(t, tenantBody("hooked"))["id"].(string)

	r := h.do(t, req{method: "POST", path: "/v1/webhooks", token: h.admin, body: map[string]any{
		"url": "https://billing.example.com/hooks", "event_types": []string{"tenancy.tenant.*"}, "description": "billing"}})
	if r.Status != 201 || r.Header.Get("Location") == "" || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("create: %d %v %s", r.Status, r.Header, r.Body)
	}
	created := r.json(t)
	id, secret := created["id"].(string), created["secret"].(string)
	if !strings.HasPrefix(secret, "whsec_") || len(secret) != len("whsec_")+44 {
		t.Fatalf("secret %q is not whsec_ + base64 of 32 bytes", secret)
	}
	seq := r.Header.Get("Tenancy-Sequence")

	// The secret is never shown again: not on reads, lists or in the log.
	for _, path := range []string{"/v1/webhooks/" + id, "/v1/webhooks", "/v1/events/" + seq, "/v1/audit?min_seq=" + seq} {
		r := h.do(t, req{method: "GET", path: path, token: h.admin})
		if r.Status != 200 {
			t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
		}
		if strings.Contains(string(r.Body), secret[len("whsec_"):]) {
			t.Fatalf("GET %s shows the secret", path)
		}
	}

	// Scoped to one tenant; a tenant that does not exist is refused.
	if r := h.do(t, req{method: "PATCH", path: "/v1/webhooks/" + id, token: h.admin, contentType: "application/merge-patch+json",
		body: `{"tenant_id":"` + tenant + `","enabled":false}`}); r.Status != 200 || r.json(t)["tenant_id"] != tenant || r.json(t)["enabled"] != false {
		t.Fatalf("patch: %d %s", r.Status, r.Body)
	}
	for _, tc := range []struct{ name, body, field string }{
		{"internal address", `{"url":"https://169.254.169.254/latest"}`, "url"},
		{"plain http", `{"url":"http://billing.example.com/hooks"}`, "url"},
		{"unknown tenant", `{"tenant_id":"0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b44"}`, "tenant_id"},
		{"unknown type", `{"event_types":["tenancy.tenant.exploded.v1"]}`, "event_types[0]"},
		{"read-only member", `{"secret_version":7}`, "secret_version"},
		{"wrong type", `{"enabled":"yes"}`, "enabled"},
	} {
		before := h.lastSeq(t)
		r := h.do(t, req{method: "PATCH", path: "/v1/webhooks/" + id, token: h.admin, contentType: "application/merge-patch+json", body: tc.body})
		if r.Status != 422 || !strings.Contains(string(r.Body), `"`+tc.field+`"`) {
			t.Errorf("%s: %d %s, want a 422 naming %s", tc.name, r.Status, r.Body, tc.field)
		}
		if h.lastSeq(t) != before {
			t.Errorf("%s: a refused command appended events", tc.name)
		}
	}
	if r := h.do(t, req{method: "POST", path: "/v1/webhooks", token: h.admin, body: `{"url":"https://10.0.0.1/x","event_types":["tenancy.*"]}`}); r.Status != 422 ||
		!strings.Contains(string(r.Body), "WEBHOOK_ALLOW_CIDRS") {
		t.Fatalf("create to a private address: %d %s", r.Status, r.Body)
	}

	// Rotation answers a new secret; the old one keeps signing for grace.
	r = h.do(t, req{method: "POST", path: "/v1/webhooks/" + id + "/rotate-secret", token: h.admin, body: `{"grace":"2h"}`})
	if r.Status != 200 || r.json(t)["secret"] == secret || r.json(t)["secret_version"].(float64) != 2 || r.json(t)["previous_secret_valid_until"] == nil {
		t.Fatalf("rotate: %d %s", r.Status, r.Body)
	}
	if r := h.do(t, req{method: "POST", path: "/v1/webhooks/" + id + "/rotate-secret", token: h.admin, body: `{"grace":"-1h"}`}); r.Status != 422 {
		t.Fatalf("negative grace: %d", r.Status)
	}

	// Operator tools on an endpoint with nothing failed yet.
	if r := h.do(t, req{method: "GET", path: "/v1/webhooks/" + id + "/attempts", token: h.admin}); r.Status != 200 || len(r.json(t)["items"].([]any)) != 0 {
		t.Fatalf("attempts: %d %s", r.Status, r.Body)
	}
	if r := h.do(t, req{method: "GET", path: "/v1/dead-letters?webhook_id=" + id, token: h.admin}); r.Status != 200 || len(r.json(t)["items"].([]any)) != 0 {
		t.Fatalf("dead letters: %d %s", r.Status, r.Body)
	}
	if r := h.do(t, req{method: "GET", path: "/v1/dead-letters/42", token: h.admin}); r.Status != 404 {
		t.Fatalf("missing dead letter: %d", r.Status)
	}
	if r := h.do(t, req{method: "POST", path: "/v1/dead-letters/42/discard", token: h.admin, body: `{"reason":"x"}`}); r.Status != 404 {
		t.Fatalf("discard missing dead letter: %d", r.Status)
	}
	if r := h.do(t, req{method: "POST", path: "/v1/webhooks/" + id + "/dead-letters/requeue", token: h.admin}); r.Status != 202 {
		t.Fatalf("requeue all: %d %s", r.Status, r.Body)
	}
	if r := h.do(t, req{method: "POST", path: "/v1/webhooks/" + id + "/replay", token: h.admin, body: `{"from_seq":1,"to_seq":` + seq + `}`}); r.Status != 202 {
		t.Fatalf("replay: %d %s", r.Status, r.Body)
	}
	if r := h.do(t, req{method: "POST", path: "/v1/webhooks/" + id + "/replay", token: h.admin, body: `{}`}); r.Status != 422 {
		t.Fatalf("replay without a range: %d %s", r.Status, r.Body)
	}

	// Platform-admin only.
	tenantAdmin := h.token(t, auth.TokenRequest{Subject: "ta", Roles: []string{auth.RoleTenantAdmin}, TenantID: tenant})
	for _, rq := range []req{
		{method: "GET", path: "/v1/webhooks"}, {method: "GET", path: "/v1/webhooks/" + id}, {method: "GET", path: "/v1/dead-letters"},
		{method: "POST", path: "/v1/webhooks", body: `{"url":"https://x.example.com","event_types":["tenancy.*"]}`},
	} {
		rq.token = tenantAdmin
		if r := h.do(t, rq); r.Status != 403 {
			t.Errorf("tenant admin %s %s: %d", rq.method, rq.path, r.Status)
		}
	}

	if r := h.do(t, req{method: "DELETE", path: "/v1/webhooks/" + id, token: h.admin}); r.Status != 200 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	for _, path := range []string{"/v1/webhooks/" + id, "/v1/webhooks/not-a-uuid"} {
		if r := h.do(t, req{method: "GET", path: path, token: h.admin}); r.Status != 404 {
			t.Fatalf("GET %s: %d", path, r.Status)
		}
	}
	if r := h.do(t, req{method: "GET", path: "/v1/webhooks", token: h.admin}); len(r.json(t)["items"].([]any)) != 0 {
		t.Fatalf("a deleted webhook is listed: %s", r.Body)
	}
}
