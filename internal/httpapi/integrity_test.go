package httpapi_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/integrity/forge"
	"github.com/tenancyhq/tenancy/internal/run/webhooker"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/internal/testrig"
	"github.com/tenancyhq/tenancy/internal/verify"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// receiver records every webhook delivery's body.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies []string
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.bodies = append(rc.bodies, string(b))
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) all() string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return strings.Join(rc.bodies, "\n")
}

// TestForgedMessagesAreQuarantined publishes, with a connection that has
// publish rights on the stream, each kind of bad message onto a tenant's
// subject while the projections, the provisioner and the webhooker run.
// The read side goes on for everyone else; nothing forged reaches a read
// model or a subscriber; the quarantine lists each message with its
// reason; the victims' commands are refused naming the message; verify
// fails; resolving puts everything right.
func TestForgedMessagesAreQuarantined(t *testing.T) {
	h := newHarness(t, options{provisioner: true, projections: true})
	ctx := t.Context()
	rc := newReceiver(t)
	hooks, err := webhooker.New(ctx, h.core, config.Webhooks{AllowCIDRs: []string{"127.0.0.0/8"}, AllowHTTP: true, Timeout: 2 * time.Second,
		MaxBody: 256 << 10, Schedule: []time.Duration{0, 20 * time.Millisecond}}, h.rs)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := hooks.Webhooks.Create(ctx, domain.CreateWebhook{URL: rc.srv.URL, EventTypes: []string{"tenancy.tenant.*"}}, command.Meta{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	defer testrig.Run(t, hooks.Run)()

	fx := forge.Fixture{Log: h.core.Store, Signer: h.core.Signer, NewTenant: func(t testing.TB, slug string) string {
		return h.create(t, tenantBody(slug))["id"].(string)
	}}
	bystander := fx.NewTenant(t, "bystander")
	type victim struct {
		attack forge.Attack
		id     string
		seq    uint64
	}
	var victims []victim
	for i, a := range forge.Attacks() {
		id := fx.NewTenant(t, fmt.Sprintf("victim-%d", i))
		h.do(t, req{method: "PATCH", path: "/v1/tenants/" + id, token: h.admin, contentType: "application/merge-patch+json", body: `{"display_name":"Genuine"}`})
		subject, data := a.Forge(t, ctx, fx, id)
		ack, err := h.nats.JS.Publish(ctx, subject, data)
		if err != nil {
			t.Fatal(err)
		}
		victims = append(victims, victim{a, id, ack.Sequence})
	}

	// After the bad messages, the bystander changes and is activated: the
	// projections, the provisioner and the webhooker must all get there.
	h.do(t, req{method: "PATCH", path: "/v1/tenants/" + bystander, token: h.admin, contentType: "application/merge-patch+json", body: `{"display_name":"Still Served"}`})
	h.do(t, req{method: "POST", path: "/v1/tenants/" + bystander + "/activate", token: h.admin})
	h.waitFor(t, bystander, 20*time.Second, func(m map[string]any) bool { return m["state"] == "active" })
	waitUntil(t, 20*time.Second, "the bystander's update in search", func() bool {
		r := h.do(t, req{method: "GET", path: "/v1/tenants?q=Still", token: h.admin})
		return strings.Contains(string(r.Body), bystander)
	})
	waitUntil(t, 20*time.Second, "the bystander's activation delivered", func() bool {
		return strings.Contains(rc.all(), `"type":"tenancy.tenant.activated.v1"`) && strings.Contains(rc.all(), "Still Served")
	})
	waitUntil(t, 20*time.Second, "the bystander's activation in its audit trail", func() bool {
		audit := h.do(t, req{method: "GET", path: "/v1/audit?tenant_id=" + bystander, token: h.admin})
		return strings.Contains(string(audit.Body), "tenancy.tenant.activated.v1")
	})

	// The quarantine lists every bad message with its reason, found by
	// each kind of reader.
	var list []any
	waitUntil(t, 20*time.Second, "every bad message quarantined", func() bool {
		list = h.do(t, req{method: "GET", path: "/v1/admin/quarantine", token: h.admin}).json(t)["items"].([]any)
		return len(list) >= len(victims)
	})
	listed := map[uint64]map[string]any{}
	for _, it := range list {
		rec := it.(map[string]any)
		listed[uint64(rec["seq"].(float64))] = rec
	}
	for _, v := range victims {
		rec := listed[v.seq]
		if rec == nil || rec["violation"] != v.attack.Reason || rec["subject"] != forge.TenantSubject(v.id) {
			t.Errorf("%s: quarantine record %v, want violation %s at %d", v.attack.Name, rec, v.attack.Reason, v.seq)
		}
	}

	// Nothing forged anywhere: not in search, audit, lookups, deliveries.
	if r := h.do(t, req{method: "GET", path: "/v1/tenants?q=" + forge.ForgedName, token: h.admin}); strings.Contains(string(r.Body), forge.ForgedName) {
		t.Errorf("search finds forged data: %s", r.Body)
	}
	if r := h.do(t, req{method: "GET", path: "/v1/audit?page_size=500", token: h.admin}); strings.Contains(string(r.Body), "forged-") || strings.Contains(string(r.Body), "attacker") {
		t.Errorf("audit holds a forged event: %s", r.Body)
	}
	if strings.Contains(rc.all(), forge.ForgedName) || strings.Contains(rc.all(), "attacker") {
		t.Errorf("a forged event was delivered to a subscriber")
	}

	for _, v := range victims {
		// The aggregate answers as of its last valid event, marked broken,
		// and refuses commands naming the message.
		got := h.do(t, req{method: "GET", path: "/v1/tenants/" + v.id, token: h.admin}).json(t)
		integ := got["integrity"].(map[string]any)
		if got["display_name"] != "Genuine" || integ["status"] != "broken" || uint64(integ["stream_seq"].(float64)) != v.seq {
			t.Errorf("%s: GET shows %v, integrity %v", v.attack.Name, got["display_name"], integ)
		}
		// Its event listing answers, without the bad message.
		evs := h.do(t, req{method: "GET", path: "/v1/tenants/" + v.id + "/events?page_size=100", token: h.admin})
		if evs.Status != http.StatusOK || strings.Contains(string(evs.Body), forge.ForgedName) || len(evs.json(t)["items"].([]any)) != 2 {
			t.Errorf("%s: the tenant's events: %d %s", v.attack.Name, evs.Status, evs.Body)
		}
		if r := h.do(t, req{method: "GET", path: "/v1/events/" + strconv.FormatUint(v.seq, 10), token: h.admin}); r.Status != http.StatusNotFound {
			t.Errorf("%s: GET of the bad message: %d %s", v.attack.Name, r.Status, r.Body)
		}
		r := h.do(t, req{method: "PATCH", path: "/v1/tenants/" + v.id, token: h.admin, contentType: "application/merge-patch+json", body: `{"display_name":"Refused"}`})
		p := r.json(t)
		if r.Status != http.StatusConflict || !strings.HasSuffix(p["type"].(string), "integrity-broken") || uint64(p["stream_seq"].(float64)) != v.seq {
			t.Errorf("%s: a command on the broken aggregate: %d %s", v.attack.Name, r.Status, r.Body)
		}
	}
	waitUntil(t, 20*time.Second, "the read model marks the victims broken", func() bool {
		var broken int
		if err := h.rs.Pool.QueryRow(ctx, "SELECT count(*) FROM tenants WHERE integrity_broken_seq IS NOT NULL").Scan(&broken); err != nil {
			t.Fatal(err)
		}
		return broken == len(victims)
	})

	// verify fails, naming the first bad message and its reason.
	keys, err := h.core.SigningKeys.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = verify.Log(ctx, h.core.Store, keys, events.AllSubjects)
	var ve *events.VerifyError
	if !errors.As(err, &ve) || ve.Seq != victims[0].seq || !errors.Is(err, events.ErrBadSignature) {
		t.Fatalf("verify: %v, want a bad signature at %d", err, victims[0].seq)
	}

	// Resolved: every reader passes over them, the victims take commands
	// again (chained to their last valid event), and the log verifies.
	for _, v := range victims {
		r := h.do(t, req{method: "POST", path: "/v1/admin/quarantine/" + strconv.FormatUint(v.seq, 10) + "/resolve", token: h.admin,
			body: map[string]string{"reason": "forged in a test"}})
		if r.Status != http.StatusOK || r.json(t)["resolved"] != true {
			t.Fatalf("resolve %d: %d %s", v.seq, r.Status, r.Body)
		}
		r = h.do(t, req{method: "PATCH", path: "/v1/tenants/" + v.id, token: h.admin, contentType: "application/merge-patch+json", body: `{"display_name":"Mended"}`})
		if r.Status != http.StatusOK || r.json(t)["integrity"].(map[string]any)["status"] != "ok" {
			t.Errorf("%s: a command after the resolution: %d %s", v.attack.Name, r.Status, r.Body)
		}
	}
	waitUntil(t, 20*time.Second, "the read model mended", func() bool {
		var broken, mended int
		if err := h.rs.Pool.QueryRow(ctx, "SELECT count(*) FILTER (WHERE integrity_broken_seq IS NOT NULL), count(*) FILTER (WHERE display_name = 'Mended') FROM tenants").Scan(&broken, &mended); err != nil {
			t.Fatal(err)
		}
		return broken == 0 && mended == len(victims)
	})
	rep := h.verifyLog(t)
	if rep.Ignored != len(victims) {
		t.Fatalf("verify passed over %d messages, want %d", rep.Ignored, len(victims))
	}
}

// waitUntil polls cond until it holds, failing after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if _, ok := testenv.Poll(d, 20*time.Millisecond, cond, func(b bool) bool { return b }); !ok {
		t.Fatalf("timed out waiting for %s", what)
	}
}
