package delivery_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/delivery"
	"github.com/tenancyhq/tenancy/internal/delivery/attempts"
	"github.com/tenancyhq/tenancy/internal/delivery/deadletter"
	"github.com/tenancyhq/tenancy/internal/delivery/secrets"
	"github.com/tenancyhq/tenancy/internal/run/boot"
	"github.com/tenancyhq/tenancy/internal/run/webhooker"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/internal/testrig"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

type rig struct {
	core *boot.Core
	rs   *boot.ReadSide
	svc  *app.Webhooks
	keys *events.KeySet
}

var admin = command.Meta{Actor: "test-admin"}

func loopbackConfig() config.Webhooks {
	return config.Webhooks{AllowCIDRs: []string{"127.0.0.0/8"}, AllowHTTP: true, Timeout: 2 * time.Second, MaxBody: 256 << 10,
		Schedule: []time.Duration{0, 20 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond}}
}

func newRig(t *testing.T, cfg config.Webhooks) *rig {
	t.Helper()
	tr := testrig.New(t, testrig.Options{Database: true})
	core, rs, ctx := tr.Core, tr.ReadSide, tr.Ctx
	hooks, err := boot.OpenWebhooks(ctx, core, cfg, &attempts.Reader{Pool: rs.Pool})
	if err != nil {
		t.Fatal(err)
	}
	svc := hooks.App
	keys, err := core.SigningKeys.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{core: core, rs: rs, svc: svc, keys: keys}
}

// webhooker runs a delivery instance until the returned stop is called or
// the test ends.
func (r *rig) webhooker(t *testing.T, cfg config.Webhooks) (stop func()) {
	t.Helper()
	w, err := webhooker.New(context.Background(), r.core, cfg, r.rs)
	if err != nil {
		t.Fatal(err)
	}
	return testrig.Run(t, w.Run)
}

func (r *rig) subscribe(t *testing.T, url string, types ...string) (domain.Webhook, string) {
	t.Helper()
	res, secret, err := r.svc.Create(context.Background(), domain.CreateWebhook{URL: url, EventTypes: types}, admin)
	if err != nil {
		t.Fatal(err)
	}
	return res.State, secret
}

// tenantEvents appends n tenant events (creates and renames) and returns
// their ids in log order.
func (r *rig) tenantEvents(t *testing.T, n int) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	var tenantID string
	for i := 0; i < n; i++ {
		var res command.Result[domain.Tenant]
		var err error
		if i%3 == 0 {
			res, err = r.core.Tenants.Create(ctx, domain.CreateTenant{Slug: fmt.Sprintf("acme-%d-%d", time.Now().UnixNano()%1e9, i), DisplayName: "Acme", Plan: "standard",
				Regions: domain.Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"}, Isolation: "shared"}, admin)
			if err == nil {
				tenantID = res.State.ID
			}
		} else {
			name := fmt.Sprintf("Acme %d", i)
			res, err = r.core.Tenants.Do(ctx, tenantID, domain.UpdateTenant{DisplayName: &name}, admin)
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range res.Events {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

// received is a request a receiver accepted.
type received struct {
	id      string
	seq     uint64
	typ     string
	attempt int
	replay  bool
	header  http.Header
	body    []byte
}

// receiver verifies every request with the official Standard Webhooks
// library against each of its secrets, parses it with the CloudEvents SDK,
// checks the event's Ed25519 signature, and answers with what respond says.
type receiver struct {
	t       *testing.T
	rig     *rig
	srv     *httptest.Server
	mu      sync.Mutex
	secrets []string
	calls   int
	got     []received
	// respond decides the status of call n (from 1); nil means 204.
	respond func(n int, w http.ResponseWriter) int
}

func newReceiver(t *testing.T, r *rig) *receiver {
	rc := &receiver{t: t, rig: r}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

// subscribeAll subscribes rc to every tenant event and gives it the
// endpoint's secret.
func (r *rig) subscribeAll(t *testing.T, rc *receiver) domain.Webhook {
	t.Helper()
	w, secret := r.subscribe(t, rc.srv.URL, "tenancy.tenant.*")
	rc.setSecrets(secret)
	return w
}

// failUntilFixed makes rc answer every call with status until fix is
// called, and with 200 after.
func (rc *receiver) failUntilFixed(status int) (fix func()) {
	var mu sync.Mutex
	broken := true
	rc.respond = func(int, http.ResponseWriter) int {
		mu.Lock()
		defer mu.Unlock()
		if broken {
			return status
		}
		return http.StatusOK
	}
	return func() {
		mu.Lock()
		defer mu.Unlock()
		broken = false
	}
}

func (rc *receiver) setSecrets(s ...string) {
	rc.mu.Lock()
	rc.secrets = s
	rc.mu.Unlock()
}

func (rc *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	rc.mu.Lock()
	rc.calls++
	n := rc.calls
	secrets := slices.Clone(rc.secrets)
	respond := rc.respond
	rc.mu.Unlock()
	for _, s := range secrets {
		wh, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			rc.t.Errorf("standard webhooks library refused our secret: %v", err)
			return
		}
		if err := wh.Verify(body, req.Header); err != nil {
			rc.t.Errorf("signature did not verify with secret %.12s...: %v (header %q)", s, err, req.Header.Get("webhook-signature"))
		}
	}
	parse, _ := http.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	parse.Header = req.Header.Clone()
	ev, err := cehttp.NewEventFromHTTPRequest(parse)
	if err != nil {
		rc.t.Errorf("CloudEvents SDK cannot parse the delivery: %v", err)
		return
	}
	if ev.ID() != req.Header.Get("webhook-id") {
		rc.t.Errorf("webhook-id %q is not the event id %q", req.Header.Get("webhook-id"), ev.ID())
	}
	if _, _, err := rc.rig.keys.Verify(body); err != nil {
		rc.t.Errorf("the delivered event's Ed25519 signature does not verify: %v", err)
	}
	status := http.StatusNoContent
	if respond != nil {
		status = respond(n, w)
	}
	if status >= 200 && status < 300 {
		seq, _ := strconv.ParseUint(req.Header.Get(delivery.HeaderSequence), 10, 64)
		attempt, _ := strconv.Atoi(req.Header.Get(delivery.HeaderAttempt))
		rc.mu.Lock()
		rc.got = append(rc.got, received{id: ev.ID(), seq: seq, typ: ev.Type(), attempt: attempt, replay: req.Header.Get(delivery.HeaderReplay) == "true", header: req.Header.Clone(), body: body})
		rc.mu.Unlock()
	}
	w.WriteHeader(status)
}

func (rc *receiver) deliveries() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

// waitFor waits until cond holds over the deliveries.
func (rc *receiver) waitFor(t *testing.T, what string, timeout time.Duration, cond func([]received) bool) []received {
	t.Helper()
	got, ok := testenv.Poll(timeout, 20*time.Millisecond, rc.deliveries, cond)
	if !ok {
		t.Fatalf("timed out waiting for %s; got %d deliveries", what, len(got))
	}
	return got
}

// firstSeen returns the event ids in the order they were first accepted;
// duplicates (allowed after a crash) are folded.
func firstSeen(ds []received) []string {
	var out []string
	seen := map[string]bool{}
	for _, d := range ds {
		if d.replay || seen[d.id] {
			continue
		}
		seen[d.id] = true
		out = append(out, d.id)
	}
	return out
}

func hasAll(ids []string) func([]received) bool {
	return func(ds []received) bool { return len(firstSeen(ds)) >= len(ids) }
}

func TestDeliversEveryEventInOrderWithValidSignatures(t *testing.T) {
	cfg := loopbackConfig()
	r := newRig(t, cfg)
	rc := newReceiver(t, r)
	other := newReceiver(t, r)
	w, secret := r.subscribe(t, rc.srv.URL+"/hooks", "tenancy.tenant.*")
	_, otherSecret := r.subscribe(t, other.srv.URL, "tenancy.tenant.created.v1")
	rc.setSecrets(secret)
	other.setSecrets(otherSecret)
	// Two instances share the work without breaking per-endpoint order.
	r.webhooker(t, cfg)
	r.webhooker(t, cfg)

	want := r.tenantEvents(t, 30)
	got := rc.waitFor(t, "every tenant event", 30*time.Second, hasAll(want))
	if diff := slices.Compare(firstSeen(got), want); diff != 0 {
		t.Fatalf("deliveries out of order or wrong:\n got %v\nwant %v", firstSeen(got), want)
	}
	for i := 1; i < len(got); i++ {
		if got[i].seq <= got[i-1].seq && got[i].id != got[i-1].id {
			t.Fatalf("tenancy-sequence went backwards: %d after %d", got[i].seq, got[i-1].seq)
		}
	}
	if ct := got[0].header.Get("content-type"); ct != delivery.ContentType {
		t.Fatalf("content-type = %q, want %q", ct, delivery.ContentType)
	}
	// The other endpoint only gets what it asked for.
	created := other.waitFor(t, "tenant creations", 30*time.Second, func(ds []received) bool { return len(firstSeen(ds)) >= 10 })
	for _, d := range created {
		if d.typ != events.TypeTenantCreated {
			t.Fatalf("endpoint subscribed to creations got %s", d.typ)
		}
	}

	// Rotation: during the grace period every delivery verifies with the
	// old secret and with the new one.
	res, newSecret, err := r.svc.Rotate(context.Background(), w.ID, time.Hour, admin)
	if err != nil {
		t.Fatal(err)
	}
	if res.State.SecretVersion != 2 || newSecret == secret {
		t.Fatalf("rotation: version %d, new secret equal to old: %v", res.State.SecretVersion, newSecret == secret)
	}
	rc.setSecrets(secret, newSecret)
	more := append(want, r.tenantEvents(t, 3)...)
	got = rc.waitFor(t, "deliveries after the rotation", 30*time.Second, hasAll(more))
	last := got[len(got)-1]
	if sigs := bytes.Count([]byte(last.header.Get("webhook-signature")), []byte("v1,")); sigs != 2 {
		t.Fatalf("during the grace period a delivery carries %d signatures, want 2", sigs)
	}
	if slices.Compare(firstSeen(got), more) != 0 {
		t.Fatal("deliveries after the rotation out of order")
	}
}

func TestFailingReceiverGetsEverythingInOrderOnceItRecovers(t *testing.T) {
	cfg := loopbackConfig()
	cfg.Timeout = 300 * time.Millisecond
	// Enough attempts that nothing is dead-lettered while the receiver
	// misbehaves.
	cfg.Schedule = []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond,
		100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond,
		200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond}
	r := newRig(t, cfg)

	// The endpoint starts with nothing listening: connection refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	w, secret := r.subscribe(t, "http://"+addr+"/hooks", "tenancy.tenant.*")
	healthy := newReceiver(t, r)
	_, healthySecret := r.subscribe(t, healthy.srv.URL, "tenancy.tenant.*")
	healthy.setSecrets(healthySecret)
	r.webhooker(t, cfg)
	r.webhooker(t, cfg)
	want := r.tenantEvents(t, 12)

	// Other endpoints are not held up by the failing one.
	healthy.waitFor(t, "the healthy endpoint's deliveries", 20*time.Second, hasAll(want))

	// Now it listens, but fails: 500s, a 429 with Retry-After, a timeout,
	// a 503, a redirect; then it works.
	var retryAfterAt time.Time
	rc := &receiver{t: t, rig: r, secrets: []string{secret}}
	rc.respond = func(n int, w http.ResponseWriter) int {
		switch n {
		case 1, 2:
			return http.StatusInternalServerError
		case 3:
			retryAfterAt = time.Now()
			w.Header().Set("Retry-After", "1")
			return http.StatusTooManyRequests
		case 4:
			if since := time.Since(retryAfterAt); since < 900*time.Millisecond {
				t.Errorf("the retry after a 429 with Retry-After: 1 came after %s", since)
			}
			time.Sleep(cfg.Timeout + 200*time.Millisecond)
			return http.StatusOK
		case 5:
			return http.StatusServiceUnavailable
		case 6:
			w.Header().Set("Location", "https://elsewhere.example/")
			return http.StatusTemporaryRedirect
		}
		return http.StatusOK
	}
	time.Sleep(300 * time.Millisecond) // let some connection-refused attempts happen
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(rc.serve)}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	got := rc.waitFor(t, "every event after recovery", 60*time.Second, hasAll(want))
	if slices.Compare(firstSeen(got), want) != 0 {
		t.Fatalf("after recovery the events are out of order:\n got %v\nwant %v", firstSeen(got), want)
	}
	if got[0].attempt < 6 {
		t.Fatalf("the first event was accepted at attempt %d; the failures should have taken several", got[0].attempt)
	}
	dls, _, err := r.svc.DeadLetters(context.Background(), deadletter.Filter{WebhookID: w.ID, Limit: 10})
	if err != nil || len(dls) != 0 {
		t.Fatalf("dead letters = %v, %v; want none", dls, err)
	}
	// Every attempt was recorded, failures with their reason.
	attempts := waitAttempts(t, r, w.ID, 8)
	var outcomes []string
	for _, a := range attempts {
		outcomes = append(outcomes, string(a.Outcome)+":"+strconv.Itoa(a.Status))
	}
	for _, want := range []string{"failed:0", "failed:500", "failed:429", "failed:503", "failed:307", "delivered:200"} {
		if !slices.Contains(outcomes, want) {
			t.Errorf("attempt outcomes %v lack %s", outcomes, want)
		}
	}
}

func waitAttempts(t *testing.T, r *rig, webhookID string, atLeast int) []attempts.Attempt {
	t.Helper()
	got, ok := testenv.Poll(20*time.Second, 50*time.Millisecond, func() []attempts.Attempt {
		got, _, err := attempts.Reader{Pool: r.rs.Pool}.List(context.Background(), attempts.Filter{WebhookID: webhookID, Limit: 500})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}, func(got []attempts.Attempt) bool { return len(got) >= atLeast })
	if !ok {
		t.Fatalf("only %d attempts recorded, want at least %d", len(got), atLeast)
	}
	return got
}

// failingEndpoint runs a webhooker with cfg and one endpoint, subscribed
// to every tenant event, whose receiver answers status until fix is
// called; then it appends n tenant events and returns their ids as want.
func failingEndpoint(t *testing.T, cfg config.Webhooks, status, n int) (r *rig, rc *receiver, w domain.Webhook, fix func(), want []string) {
	t.Helper()
	r = newRig(t, cfg)
	rc = newReceiver(t, r)
	fix = rc.failUntilFixed(status)
	w = r.subscribeAll(t, rc)
	r.webhooker(t, cfg)
	return r, rc, w, fix, r.tenantEvents(t, n)
}

func TestDeadLettersRequeueDiscardAndReplay(t *testing.T) {
	cfg := loopbackConfig()
	r, rc, w, recovered, want := failingEndpoint(t, cfg, http.StatusInternalServerError, 6)
	ctx := context.Background()

	// Every event exhausts the schedule and lands in the dead-letter stream,
	// in order, with the reason; the endpoint moves on to the next.
	dls, ok := testenv.Poll(30*time.Second, 50*time.Millisecond, func() []deadletter.DeadLetter {
		dls, _, err := r.svc.DeadLetters(ctx, deadletter.Filter{WebhookID: w.ID, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		return dls
	}, func(dls []deadletter.DeadLetter) bool { return len(dls) >= len(want) })
	if !ok {
		t.Fatalf("%d dead letters, want %d", len(dls), len(want))
	}
	for i, d := range dls {
		if d.EventID != want[i] || d.Attempts != len(cfg.Schedule) || d.LastStatus != 500 || d.Reason == "" {
			t.Fatalf("dead letter %d = %+v; want event %s after %d attempts with status 500", i, d, want[i], len(cfg.Schedule))
		}
	}
	// Filters and paging.
	page, more, err := r.svc.DeadLetters(ctx, deadletter.Filter{Limit: 2})
	if err != nil || len(page) != 2 || !more {
		t.Fatalf("first page = %d items, more=%v, %v", len(page), more, err)
	}
	page2, _, _ := r.svc.DeadLetters(ctx, deadletter.Filter{After: page[1].Seq, Limit: 2})
	if len(page2) != 2 || page2[0].Seq <= page[1].Seq {
		t.Fatalf("second page %v does not follow the first %v", page2, page)
	}
	if none, _, _ := r.svc.DeadLetters(ctx, deadletter.Filter{Type: "tenancy.webhook.*", Limit: 10}); len(none) != 0 {
		t.Fatalf("type filter let %d through", len(none))
	}

	// Discard the first with a reason: an event records it and it is gone.
	res, err := r.svc.Discard(ctx, dls[0].Seq, "customer asked us to skip it", admin)
	if err != nil {
		t.Fatal(err)
	}
	if res.Events[0].Type != events.TypeWebhookDeadLetterDiscard {
		t.Fatalf("discard recorded %s", res.Events[0].Type)
	}
	if _, err := r.svc.DeadLetter(ctx, dls[0].Seq); err == nil {
		t.Fatal("a discarded dead letter is still there")
	}
	if _, err := r.svc.Discard(ctx, dls[1].Seq, "", admin); err == nil {
		t.Fatal("a discard without a reason was accepted")
	}

	// The receiver recovers; requeue all: the rest arrive, in order.
	recovered()
	res, requeued, err := r.svc.Requeue(ctx, w.ID, nil, admin)
	if err != nil {
		t.Fatal(err)
	}
	if len(requeued) != len(want)-1 || res.Events[0].Type != events.TypeWebhookDeadLetterRequeue {
		t.Fatalf("requeued %v (%s)", requeued, res.Events[0].Type)
	}
	got := rc.waitFor(t, "the requeued deliveries", 30*time.Second, hasAll(want[1:]))
	if slices.Compare(firstSeen(got), want[1:]) != 0 {
		t.Fatalf("requeued deliveries out of order:\n got %v\nwant %v", firstSeen(got), want[1:])
	}
	if left, _, _ := r.svc.DeadLetters(ctx, deadletter.Filter{WebhookID: w.ID, Limit: 100}); len(left) != 0 {
		t.Fatalf("%d dead letters left after requeue", len(left))
	}

	// Replay the first three events by sequence: marked as replays, same
	// webhook-id, in order.
	first, _ := r.core.Store.Get(ctx, dls[0].EventSeq)
	third := dls[2].EventSeq
	if _, err := r.svc.Replay(ctx, w.ID, domain.RequestReplay{FromSeq: first.Seq, ToSeq: third}, admin); err != nil {
		t.Fatal(err)
	}
	got = rc.waitFor(t, "the replay", 30*time.Second, func(ds []received) bool {
		return len(slices.DeleteFunc(slices.Clone(ds), func(d received) bool { return !d.replay })) >= 3
	})
	var replayed []string
	for _, d := range got {
		if d.replay {
			replayed = append(replayed, d.id)
		}
	}
	if slices.Compare(replayed, want[:3]) != 0 {
		t.Fatalf("replayed %v, want %v", replayed, want[:3])
	}
	if _, err := r.svc.Replay(ctx, w.ID, domain.RequestReplay{FromSeq: 5, ToSeq: 1}, admin); err == nil {
		t.Fatal("a backwards replay range was accepted")
	}
}

func TestGoneDisablesAndEnablingResumes(t *testing.T) {
	r, rc, w, back, want := failingEndpoint(t, loopbackConfig(), http.StatusGone, 3)
	ctx := context.Background()
	if cur := waitDisabled(t, r, w.ID, "a 410"); !strings.Contains(cur.DisabledReason, "410 Gone") {
		t.Fatalf("disabled reason %q does not name the 410", cur.DisabledReason)
	}
	back()
	if _, err := r.svc.Update(ctx, w.ID, domain.UpdateWebhook{Enabled: new(true)}, admin); err != nil {
		t.Fatal(err)
	}
	got := rc.waitFor(t, "deliveries after re-enabling", 90*time.Second, hasAll(want))
	if slices.Compare(firstSeen(got), want) != 0 {
		t.Fatalf("after re-enabling: got %v, want %v", firstSeen(got), want)
	}
}

func TestContinuousFailureDisables(t *testing.T) {
	cfg := loopbackConfig()
	cfg.DisableAfter = 200 * time.Millisecond
	r := newRig(t, cfg)
	rc := newReceiver(t, r)
	rc.respond = func(int, http.ResponseWriter) int { return http.StatusBadGateway }
	w := r.subscribeAll(t, rc)
	r.webhooker(t, cfg)
	r.tenantEvents(t, 9)
	if cur := waitDisabled(t, r, w.ID, "failing past WEBHOOK_DISABLE_AFTER"); !strings.Contains(cur.DisabledReason, "no successful delivery since") {
		t.Fatalf("disabled reason %q", cur.DisabledReason)
	}
}

// waitDisabled waits until the webhook is disabled and returns it.
func waitDisabled(t *testing.T, r *rig, id, cause string) domain.Webhook {
	t.Helper()
	cur, ok := testenv.Poll(20*time.Second, 20*time.Millisecond, func() domain.Webhook {
		cur, _, err := r.svc.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return cur
	}, func(cur domain.Webhook) bool { return !cur.Enabled })
	if !ok {
		t.Fatalf("%s did not disable the endpoint", cause)
	}
	return cur
}

func TestSubscriptionRefusesInternalDestinations(t *testing.T) {
	r := newRig(t, config.Webhooks{Timeout: time.Second, MaxBody: 256 << 10, Schedule: []time.Duration{0}})
	for _, u := range []string{"https://127.0.0.1/hook", "https://10.0.0.1/hook", "https://169.254.169.254/latest/meta-data", "https://[::ffff:10.0.0.1]/x",
		"https://localhost/hook", "http://hooks.example.com/plain-http", "https://user:pw@hooks.example.com/x"} {
		_, _, err := r.svc.Create(context.Background(), domain.CreateWebhook{URL: u, EventTypes: []string{"tenancy.*"}}, admin)
		if err == nil {
			t.Errorf("subscription to %s accepted", u)
			continue
		}
		if !errorsIsInvalid(err) {
			t.Errorf("subscription to %s: %v, want a validation error", u, err)
		}
	}
	if _, _, err := r.svc.Create(context.Background(), domain.CreateWebhook{URL: "https://hooks.example.com/x", EventTypes: []string{"tenancy.*"}}, admin); err != nil {
		t.Fatalf("a public https URL was refused: %v", err)
	}
	if _, _, err := r.svc.Create(context.Background(), domain.CreateWebhook{URL: "https://hooks.example.com/x", EventTypes: []string{"tenancy.*"},
		TenantID: "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b44"}, admin); !errorsIsInvalid(err) {
		t.Fatalf("a subscription to a tenant that does not exist: %v", err)
	}
}

// A hostname is accepted at subscription time (what it resolves to can
// change) and refused at connect time when it resolves to an internal
// address; the refusal is recorded and the delivery dead-lettered.
func TestDeliveryRefusedAtConnectTime(t *testing.T) {
	cfg := loopbackConfig()
	r := newRig(t, cfg)
	rc := newReceiver(t, r)
	// The subscription was made while loopback was allowed; the delivery
	// side runs without that allowance.
	_, port, _ := net.SplitHostPort(rc.srv.Listener.Addr().String())
	w, secret := r.subscribe(t, "http://127.0.0.1:"+port+"/x", "tenancy.tenant.*")
	rc.setSecrets(secret)
	strict := cfg
	strict.AllowCIDRs = nil
	r.webhooker(t, strict)
	r.tenantEvents(t, 1)
	tried := waitAttempts(t, r, w.ID, len(cfg.Schedule))
	for _, a := range tried {
		if a.Outcome != attempts.Refused || !bytes.Contains([]byte(a.Error), []byte("WEBHOOK_ALLOW_CIDRS")) {
			t.Fatalf("attempt %+v, want refused naming WEBHOOK_ALLOW_CIDRS", a)
		}
	}
	rc.mu.Lock()
	calls := rc.calls
	rc.mu.Unlock()
	if len(rc.deliveries()) != 0 || calls != 0 {
		t.Fatal("a refused destination was contacted")
	}
}

func TestSecretsAreStoredEncryptedAndErasedOnDelete(t *testing.T) {
	cfg := loopbackConfig()
	r := newRig(t, cfg)
	ctx := context.Background()
	w, secret := r.subscribe(t, "https://hooks.example.com/x", "tenancy.*")
	kv, err := r.core.JS.KeyValue(ctx, secrets.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, w.ID+".v1")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(e.Value(), []byte(secret)) || bytes.Contains(e.Value(), []byte(secret[len(secrets.Prefix):])) {
		t.Fatal("the secret is stored in plaintext")
	}
	// No event carries the secret.
	msgs, err := r.core.Store.ReadAll(ctx, "tenancy.evt.>", 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if bytes.Contains(m.Data, []byte(secret[len(secrets.Prefix):])) {
			t.Fatalf("event %d contains the secret", m.Seq)
		}
	}
	r.webhooker(t, cfg)
	if _, err := r.svc.Delete(ctx, w.ID, admin); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := kv.Get(ctx, w.ID+".v1"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a deleted webhook's secret was not erased")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, _, err := r.svc.Get(ctx, w.ID); err == nil {
		t.Fatal("a deleted webhook is still readable")
	}
}

func errorsIsInvalid(err error) bool { return errors.Is(err, domain.ErrInvalid) }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
