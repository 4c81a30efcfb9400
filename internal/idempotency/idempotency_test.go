package idempotency_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/idempotency"
	"github.com/tenancyhq/tenancy/internal/keyring"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

type fixture struct {
	store *idempotency.Store
	ring  *keyring.Keyring
	kv    jetstream.KeyValue
	now   func(d time.Duration)
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	n := testenv.StartNATS(t)
	ctx := testenv.Context(t, time.Minute)
	var mu sync.Mutex
	now := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	master := make([]byte, keyring.MasterKeySize)
	_, _ = rand.Read(master)
	ring, err := keyring.Open(ctx, n.JS, master, 1)
	if err != nil {
		t.Fatal(err)
	}
	var ids atomic.Int64
	s, err := idempotency.Open(ctx, n.JS, 1, clock, ring, func() string { return "id-" + strconv.FormatInt(ids.Add(1), 10) })
	if err != nil {
		t.Fatal(err)
	}
	kv, err := n.JS.KeyValue(ctx, idempotency.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	return fixture{store: s, ring: ring, kv: kv, now: func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }}
}

func TestBeginCompleteReplay(t *testing.T) {
	f := newFixture(t)
	s, ctx := f.store, t.Context()
	key := idempotency.Key("https://issuer.example", "alice", "", "k1")
	fp := idempotency.Fingerprint("POST", "/v1/webhooks", []byte(`{"a":1}`))
	first, err := s.Begin(ctx, key, fp)
	if err != nil || first.Done || first.ID == "" {
		t.Fatalf("first begin: %+v %v", first, err)
	}
	// While the first request runs, a second one waits its turn.
	if _, err := s.Begin(ctx, key, fp); !errors.Is(err, idempotency.ErrInProgress) || !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("concurrent begin: %v", err)
	}
	first.Status, first.Body = 201, []byte(`{"secret":"whsec_very-secret"}`)
	if err := s.Complete(ctx, key, first); err != nil {
		t.Fatal(err)
	}
	// Stored sealed: the secret is nowhere in the bucket.
	if e, err := f.kv.Get(ctx, key); err != nil || bytes.Contains(e.Value(), []byte("whsec_")) || bytes.Contains(e.Value(), []byte("very-secret")) {
		t.Fatalf("the stored record holds the response in the clear: %s %v", e.Value(), err)
	}
	rec, err := s.Begin(ctx, key, fp)
	if err != nil || !rec.Done || rec.Status != 201 || string(rec.Body) != `{"secret":"whsec_very-secret"}` {
		t.Fatalf("replay: %+v %v", rec, err)
	}
	other := idempotency.Fingerprint("POST", "/v1/webhooks", []byte(`{"a":2}`))
	if _, err := s.Begin(ctx, key, other); !errors.Is(err, idempotency.ErrReused) || !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("reuse: %v", err)
	}
	// A request that crashed holding a key is taken over after the timeout,
	// with the id it used.
	crashed := idempotency.Key("https://issuer.example", "alice", "", "k2")
	held, err := s.Begin(ctx, crashed, fp)
	if err != nil {
		t.Fatal(err)
	}
	f.now(idempotency.PendingTimeout + time.Second)
	taken, err := s.Begin(ctx, crashed, fp)
	if err != nil || taken.Done || taken.ID != held.ID {
		t.Fatalf("takeover: %+v %v (the crashed request used id %s)", taken, err, held.ID)
	}
	// An abandoned key can be used again at once.
	if err := s.Abandon(ctx, crashed); err != nil {
		t.Fatal(err)
	}
	if rec, err := s.Begin(ctx, crashed, other); err != nil || rec.Done {
		t.Fatalf("after abandon: %+v %v", rec, err)
	}
	for _, k := range []string{idempotency.Key("https://issuer.example", "bob", "", "k1"), idempotency.Key("https://other.example", "alice", "", "k1"),
		idempotency.Key("https://issuer.example", "alice", "0195f1c2-7d4e-7a10-8c3b-00000000000b", "k1")} {
		if k == key {
			t.Fatal("keys must be scoped to the caller: issuer and subject")
		}
	}
}

// TestTenantResponsesGoWithTheTenant checks that a response about a tenant
// is sealed under the tenant's key: once the key is destroyed (the tenant
// deleted), the replay is erased, not returned.
func TestTenantResponsesGoWithTheTenant(t *testing.T) {
	f := newFixture(t)
	s, ctx := f.store, t.Context()
	key := idempotency.Key("https://issuer.example", "alice", "", "k1")
	fp := idempotency.Fingerprint("POST", "/v1/tenants", []byte(`{"slug":"acme"}`))
	rec, err := s.Begin(ctx, key, fp)
	if err != nil {
		t.Fatal(err)
	}
	rec.Status, rec.TenantID, rec.Body = 201, "t1", []byte(`{"contacts":[{"email":"jane@acme.test"}]}`)
	if err := s.Complete(ctx, key, rec); err != nil {
		t.Fatal(err)
	}
	if e, err := f.kv.Get(ctx, key); err != nil || bytes.Contains(e.Value(), []byte("jane@acme.test")) {
		t.Fatalf("the stored record holds personal data in the clear: %s %v", e.Value(), err)
	}
	if rec, err := s.Begin(ctx, key, fp); err != nil || !bytes.Contains(rec.Body, []byte("jane@acme.test")) {
		t.Fatalf("replay before the deletion: %+v %v", rec, err)
	}
	if err := f.ring.Destroy(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if rec, err := s.Begin(ctx, key, fp); !errors.Is(err, idempotency.ErrErased) || rec.Body != nil {
		t.Fatalf("replay after the tenant's key was destroyed: %+v %v", rec, err)
	}
}
