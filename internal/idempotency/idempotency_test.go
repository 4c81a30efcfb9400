package idempotency_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/idempotency"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

func TestBeginCompleteReplay(t *testing.T) {
	n := testenv.StartNATS(t)
	ctx := testenv.Context(t, time.Minute)
	var mu sync.Mutex
	now := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s, err := idempotency.Open(ctx, n.JS, 1, clock)
	if err != nil {
		t.Fatal(err)
	}
	key := idempotency.Key("alice", "k1")
	fp := idempotency.Fingerprint("POST", "/v1/tenants", []byte(`{"a":1}`))
	if rec, err := s.Begin(ctx, key, fp); err != nil || rec != nil {
		t.Fatalf("first begin: %v %v", rec, err)
	}
	// While the first request runs, a second one waits its turn.
	if _, err := s.Begin(ctx, key, fp); !errors.Is(err, idempotency.ErrInProgress) || !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("concurrent begin: %v", err)
	}
	if err := s.Complete(ctx, key, idempotency.Record{Fingerprint: fp, Status: 201, Body: []byte("ok")}); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Begin(ctx, key, fp)
	if err != nil || rec == nil || rec.Status != 201 || string(rec.Body) != "ok" {
		t.Fatalf("replay: %+v %v", rec, err)
	}
	other := idempotency.Fingerprint("POST", "/v1/tenants", []byte(`{"a":2}`))
	if _, err := s.Begin(ctx, key, other); !errors.Is(err, idempotency.ErrReused) || !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("reuse: %v", err)
	}
	// A request that crashed holding a key is taken over after the timeout.
	crashed := idempotency.Key("alice", "k2")
	if _, err := s.Begin(ctx, crashed, fp); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(idempotency.PendingTimeout + time.Second)
	mu.Unlock()
	if rec, err := s.Begin(ctx, crashed, fp); err != nil || rec != nil {
		t.Fatalf("takeover: %v %v", rec, err)
	}
	// An abandoned key can be used again at once.
	if err := s.Abandon(ctx, crashed); err != nil {
		t.Fatal(err)
	}
	if rec, err := s.Begin(ctx, crashed, other); err != nil || rec != nil {
		t.Fatalf("after abandon: %v %v", rec, err)
	}
	if idempotency.Key("alice", "k1") == idempotency.Key("bob", "k1") {
		t.Fatal("keys must be scoped to the caller")
	}
}
