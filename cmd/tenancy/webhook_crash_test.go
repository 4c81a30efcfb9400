package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/testenv"
)

// TestWebhookerKillLosesNothing kills `tenancy dev` with SIGKILL while it is
// delivering to a subscriber, restarts it, and checks that the subscriber
// ends up with every tenant event of the log, in log order, with valid
// signatures: duplicates of a webhook-id are allowed, gaps are not.
func TestWebhookerKillLosesNothing(t *testing.T) {
	dir, p, token, client := startDevTest(t)

	var mu sync.Mutex
	var seqs []uint64 // in the order accepted
	var verifier *standardwebhooks.Webhook
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		v := verifier
		mu.Unlock()
		if v == nil || v.Verify(body, r.Header) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		time.Sleep(2 * time.Millisecond) // a receiver with some work to do
		seq, _ := strconv.ParseUint(r.Header.Get("tenancy-sequence"), 10, 64)
		mu.Lock()
		seqs = append(seqs, seq)
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer recv.Close()

	status, hh, body, err := call(client, p.api, token, "POST", "/v1/webhooks", `{"url":"`+recv.URL+`/hook","event_types":["tenancy.tenant.*"]}`)
	if err != nil || status != 201 {
		t.Fatalf("create webhook: %d %v %s", status, err, body)
	}
	// Deliveries start after the subscription: the platform tenants'
	// events that bootstrap appended before it are not its.
	created, err := strconv.ParseUint(hh.Get("Tenancy-Sequence"), 10, 64)
	if err != nil {
		t.Fatalf("the webhook's Tenancy-Sequence: %v", err)
	}
	var hook struct {
		Secret string `json:"secret"`
	}
	_ = json.Unmarshal(body, &hook)
	v, err := standardwebhooks.NewWebhook(hook.Secret)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	verifier = v
	mu.Unlock()

	create := func(api, slug string) string {
		status, h, body, err := call(client, api, token, "POST", "/v1/tenants",
			`{"slug":"`+slug+`","display_name":"Hook","plan":"standard","regions":{"allowed":["eu-west-1"],"preferred":"eu-west-1"},"isolation":"shared"}`)
		if err != nil || status != 201 {
			return ""
		}
		_ = body
		return h.Get("Tenancy-Sequence")
	}
	stop := testenv.Load(t, 4, func(w, i int) { create(p.api, fmt.Sprintf("hook-%d-%d", w, i)) })
	delivered := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seqs)
	}
	// Kill while deliveries are under way.
	if n, ok := testenv.Poll(30*time.Second, 10*time.Millisecond, delivered, func(n int) bool { return n >= 30 }); !ok {
		t.Fatalf("only %d deliveries before the kill", n)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	stop()
	before := delivered()

	p2 := startDev(t, dir)
	token = readToken(t, dir)
	head := create(p2.api, "hook-after-the-crash")
	if head == "" {
		t.Fatal("cannot create a tenant after the restart")
	}
	last, _ := strconv.ParseUint(head, 10, 64)
	if !testenv.Eventually(90*time.Second, 20*time.Millisecond, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(seqs, last)
	}) {
		t.Fatalf("the event at seq %d was not delivered after the restart (%d deliveries)\n%s", last, delivered(), p2.stderr)
	}
	stopDev(t, p2)

	// The log, read offline, is the ground truth.
	n := testenv.StartNATSIn(t, filepath.Join(dir, "nats"))
	msgs, err := eventstore.New(n.JS, "TENANCY").ReadAll(t.Context(), "tenancy.evt.*.tenant.>", created+1)
	if err != nil {
		t.Fatal(err)
	}
	var want []uint64
	for _, m := range msgs {
		want = append(want, m.Seq)
	}
	mu.Lock()
	defer mu.Unlock()
	var first []uint64
	seen := map[uint64]bool{}
	for _, s := range seqs {
		if !seen[s] {
			seen[s] = true
			first = append(first, s)
		}
	}
	if !slices.Equal(first, want) {
		missing := 0
		for _, s := range want {
			if !seen[s] {
				missing++
			}
		}
		t.Fatalf("the subscriber's events differ from the log: %d delivered (%d distinct), %d in the log, %d missing", len(seqs), len(first), len(want), missing)
	}
	t.Logf("killed after %d deliveries; every one of the %d tenant events arrived in order (%d duplicates)", before, len(want), len(seqs)-len(first))
}
