package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/idempotency"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// TestReplaysGoWithTheTenant deletes a tenant and shows that the replay of
// its idempotent create, which repeated its contacts, no longer does.
func TestReplaysGoWithTheTenant(t *testing.T) {
	h := newHarness(t, options{})
	send := func() response {
		return h.do(t, req{method: "POST", path: "/v1/tenants", token: h.admin, body: exampleBody, header: map[string]string{"Idempotency-Key": "erase-1"}})
	}
	first := send()
	id := first.json(t)["id"].(string)
	again := send()
	if again.Status != 201 || !strings.Contains(string(again.Body), "billing@acme.test") || again.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("replay before the deletion: %d %v %s", again.Status, again.Header, again.Body)
	}
	if r := h.do(t, req{method: "DELETE", path: "/v1/tenants/" + id + "?confirm=acme", token: h.admin}); r.Status != 200 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	seq := h.lastSeq(t)
	gone := send()
	if gone.Status != http.StatusGone || strings.Contains(string(gone.Body), "billing@acme.test") || !strings.HasSuffix(gone.json(t)["type"].(string), "response-erased") {
		t.Fatalf("replay after the deletion: %d %s", gone.Status, gone.Body)
	}
	if h.lastSeq(t) != seq {
		t.Fatal("a replay of an erased response ran the request again")
	}
}

// TestCreateRetriedAfterACrash: an instance took the key, appended the
// create and died before answering (or storing the answer). The client's
// retry with the same key, once the key is taken over, gets the tenant
// that was created, not a slug conflict, and creates nothing more.
func TestCreateRetriedAfterACrash(t *testing.T) {
	h := newHarness(t, options{})
	ctx := t.Context()
	key := idempotency.Key(h.issuer.Issuer(), "admin-1", "", "crash-1")
	fp := idempotency.Fingerprint("POST", "/v1/tenants", []byte(exampleBody))
	// The dead instance's pending record, started long enough ago.
	const usedID = "01a231e0-0000-7000-8000-00000000c0de"
	pending, _ := json.Marshal(idempotency.Record{Fingerprint: fp, StartedAt: time.Now().Add(-2 * idempotency.PendingTimeout), ID: usedID})
	kv, err := h.core.JS.KeyValue(ctx, idempotency.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, key, pending); err != nil {
		t.Fatal(err)
	}
	// ...and what it appended before dying.
	var body map[string]any
	_ = json.Unmarshal([]byte(exampleBody), &body)
	if _, err := h.core.Tenants.Create(ctx, domain.CreateTenant{ID: usedID, Slug: "acme", DisplayName: "Acme Corp", Plan: "standard", Isolation: "shared",
		Regions: domain.Regions{Allowed: []string{"eu-west-1", "eu-central-1"}, Preferred: "eu-west-1"}}, command.Meta{Actor: "admin-1"}); err != nil {
		t.Fatal(err)
	}
	seq := h.lastSeq(t)

	r := h.do(t, req{method: "POST", path: "/v1/tenants", token: h.admin, body: exampleBody, header: map[string]string{"Idempotency-Key": "crash-1"}})
	if r.Status != http.StatusCreated || r.json(t)["id"] != usedID || r.Header.Get("Location") != "/v1/tenants/"+usedID {
		t.Fatalf("the retry: %d %v %s", r.Status, r.Header, r.Body)
	}
	if h.lastSeq(t) != seq {
		t.Fatal("the retry appended again")
	}
	// From now on it replays like any other.
	again := h.do(t, req{method: "POST", path: "/v1/tenants", token: h.admin, body: exampleBody, header: map[string]string{"Idempotency-Key": "crash-1"}})
	if again.Header.Get("Idempotent-Replayed") != "true" || again.json(t)["id"] != usedID {
		t.Fatalf("replay after the retry: %d %v %s", again.Status, again.Header, again.Body)
	}
	// Another key still conflicts on the slug, as it must.
	if r := h.do(t, req{method: "POST", path: "/v1/tenants", token: h.admin, body: exampleBody, header: map[string]string{"Idempotency-Key": "crash-2"}}); r.Status != http.StatusConflict {
		t.Fatalf("another key, same slug: %d %s", r.Status, r.Body)
	}
}

// TestEveryPostHonoursIdempotencyKey sends the webhook operations twice
// with one key: the second answer is the first, replayed, and the log
// moves once.
func TestEveryPostHonoursIdempotencyKey(t *testing.T) {
	h := newHarness(t, options{})
	create := func(key string) response {
		return h.do(t, req{method: "POST", path: "/v1/webhooks", token: h.admin, header: map[string]string{"Idempotency-Key": key},
			body: map[string]any{"url": "https://crm.example.com/hooks", "event_types": []string{"tenancy.tenant.*"}}})
	}
	w := create("hook-1")
	if again := create("hook-1"); again.Header.Get("Idempotent-Replayed") != "true" || string(again.Body) != string(w.Body) || again.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("webhook create replay: %d %v", again.Status, again.Header)
	}
	id := w.json(t)["id"].(string)
	for _, op := range []struct{ path, body string }{
		{"/v1/webhooks/" + id + "/rotate-secret", `{"grace":"2h"}`},
		{"/v1/webhooks/" + id + "/dead-letters/requeue", ""},
		{"/v1/webhooks/" + id + "/replay", `{"from_seq":1,"to_seq":1}`},
	} {
		send := func() response {
			r := req{method: "POST", path: op.path, token: h.admin, header: map[string]string{"Idempotency-Key": "op-" + op.path}}
			if op.body != "" {
				r.body = op.body
			}
			return h.do(t, r)
		}
		first := send()
		seq := h.lastSeq(t)
		again := send()
		if first.Status >= 300 || again.Status != first.Status || string(again.Body) != string(first.Body) || again.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("POST %s: %d then %d (replayed %q)\n%s\n%s", op.path, first.Status, again.Status, again.Header.Get("Idempotent-Replayed"), first.Body, again.Body)
		}
		if h.lastSeq(t) != seq {
			t.Errorf("POST %s: the replay appended", op.path)
		}
	}
}
