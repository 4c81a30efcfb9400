package consume_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/consume"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/integrity"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/pkg/events"
)

const stream = "CONSUME_TEST"

// keys are the keys the test events are signed with.
var keys = events.NewKeySet()

// reader returns an integrity reader on the test stream trusting keys.
func reader(nt *testenv.NATS) *integrity.Reader {
	store := eventstore.New(nt.JS, stream)
	return integrity.NewReader(integrity.NewChecker(store, func(context.Context) (*events.KeySet, error) { return keys, nil }), store, 0)
}

// setup starts a server with a stream and publishes n messages to it: valid
// signed events, one aggregate's chain, except at the sequences listed in
// poison (not events at all).
func setup(t *testing.T, n int, poison ...int) (*testenv.NATS, context.Context) {
	t.Helper()
	nt := testenv.StartNATS(t)
	ctx := testenv.Context(t, time.Minute)
	if _, err := nt.JS.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{"tenancy.evt.>"}, AllowDirect: true}); err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := events.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	keys.Add(events.PublicKey{Key: signer.PublicKey()})
	var prev events.Hash
	version := int64(0)
	for i := 1; i <= n; i++ {
		data := []byte(fmt.Sprintf(`{"not":"an event %d"}`, i))
		if !slices.Contains(poison, i) {
			version++
			env := &events.Envelope{SpecVersion: events.SpecVersion, ID: fmt.Sprintf("0194f5d2-6a4e-7c3b-9f00-%012d", i), Source: events.Source,
				Type: events.TypeTenantResumed, Subject: tenant, Time: time.Now().UTC().Truncate(time.Microsecond), DataContentType: events.ContentType,
				TenantID: tenant, Actor: "test", AggVersion: version, PrevHash: events.PrevHash(prev), Data: []byte("{}")}
			if data, prev, err = signer.Sign(env); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := nt.JS.Publish(ctx, "tenancy.evt."+tenant+".tenant."+tenant, data); err != nil {
			t.Fatal(err)
		}
	}
	return nt, ctx
}

const tenant = "0194f5d2-6a4e-7c3b-9f00-000000000000"

func ordered() consume.Source {
	return consume.Source{Stream: stream, Ordered: &jetstream.OrderedConsumerConfig{FilterSubjects: []string{"tenancy.evt.>"}}}
}

var errDone = errors.New("done")

func TestRunDeliversInOrderAndPoisonApart(t *testing.T) {
	nt, ctx := setup(t, 20, 7, 13)
	var got, poisoned []uint64
	o := consume.Options{Prefetch: 4, Reader: reader(nt), Poison: func(_ context.Context, m *consume.Message, err error) error {
		if err == nil || m.Envelope != nil {
			t.Errorf("poison %d came with no error or an envelope", m.Seq)
		}
		poisoned = append(poisoned, m.Seq)
		return nil
	}}
	err := consume.RunBatches(ctx, nt.JS, ordered(), o, func(_ context.Context, ms []*consume.Message) error {
		for _, m := range ms {
			if m.Envelope == nil || m.Envelope.AggVersion == 0 || m.Payload == nil {
				t.Errorf("message %d was not decoded: %+v", m.Seq, m.Envelope)
			}
			got = append(got, m.Seq)
		}
		if len(got)+len(poisoned) == 20 {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatalf("the loop ended with %v, not the handler's error", err)
	}
	want := []uint64{1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18, 19, 20}
	if !slices.Equal(got, want) || !slices.Equal(poisoned, []uint64{7, 13}) {
		t.Fatalf("handled %v, poisoned %v", got, poisoned)
	}
}

func TestRunBatchesBoundsBatchesAndTicks(t *testing.T) {
	nt, ctx := setup(t, 50)
	var sizes []int
	var ticks atomic.Int32
	total := 0
	o := consume.Options{Prefetch: 64, Batch: 8, Reader: reader(nt), TickEvery: 10 * time.Millisecond, Tick: func(context.Context) error { ticks.Add(1); return nil }}
	err := consume.RunBatches(ctx, nt.JS, ordered(), o, func(_ context.Context, ms []*consume.Message) error {
		sizes = append(sizes, len(ms))
		for i, m := range ms {
			if m.Seq != uint64(total+i+1) {
				return fmt.Errorf("batch out of order at %d: seq %d", total+i+1, m.Seq)
			}
		}
		total += len(ms)
		if total == 50 {
			time.Sleep(50 * time.Millisecond) // let the ticker fire
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatal(err)
	}
	if slices.Max(sizes) > 8 {
		t.Fatalf("a batch was larger than 8: %v", sizes)
	}
	if len(sizes) >= 50 {
		t.Fatalf("%d batches for 50 messages read ahead: no batching", len(sizes))
	}
	// A tick also ends the loop when it fails.
	o.Tick = func(context.Context) error { return errDone }
	err = consume.RunBatches(ctx, nt.JS, ordered(), o, func(context.Context, []*consume.Message) error { return nil })
	if !errors.Is(err, errDone) {
		t.Fatalf("a failing tick did not end the loop: %v", err)
	}
}

func TestRunPoisonCanStopTheLoop(t *testing.T) {
	nt, ctx := setup(t, 5, 3)
	var got []uint64
	stop := errors.New("stopped on poison")
	err := consume.RunBatches(ctx, nt.JS, ordered(), consume.Options{Batch: 10, Prefetch: 10, Reader: reader(nt),
		Poison: func(context.Context, *consume.Message, error) error { return stop }},
		func(_ context.Context, ms []*consume.Message) error {
			for _, m := range ms {
				got = append(got, m.Seq)
			}
			return nil
		})
	if !errors.Is(err, stop) || !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("err %v after %v: the messages before the poison are handled, then the loop stops", err, got)
	}
}

func TestDurableWorkQueue(t *testing.T) {
	nt, ctx := setup(t, 30)
	src := consume.Source{Stream: stream, Durable: &jetstream.ConsumerConfig{Durable: "workers", AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 5 * time.Second, MaxDeliver: -1, MaxAckPending: 16}}
	var mu sync.Mutex
	seen := map[uint64]int{}
	var inFlight, most atomic.Int32
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- consume.Run(runCtx, nt.JS, src, consume.Options{Prefetch: 8, Concurrency: 4, Reader: reader(nt)}, func(_ context.Context, m *consume.Message) {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for cur := most.Load(); n > cur && !most.CompareAndSwap(cur, n); cur = most.Load() {
			}
			time.Sleep(5 * time.Millisecond)
			mu.Lock()
			seen[m.Seq]++
			first := seen[m.Seq] == 1
			mu.Unlock()
			if first && m.Seq%10 == 0 {
				// The first delivery of every tenth message asks to be
				// retried: it comes back, counted as a second delivery.
				m.Retry(0)
				return
			}
			if !first && m.Delivered < 2 {
				t.Errorf("redelivery of %d counts %d deliveries", m.Seq, m.Delivered)
			}
			m.Ack()
		})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		retried := seen[10] == 2 && seen[20] == 2 && seen[30] == 2
		mu.Unlock()
		if n == 30 && retried {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("saw %d messages; retried: %v", n, retried)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	if m := most.Load(); m < 2 || m > 4 {
		t.Fatalf("at most %d handlers ran at once; want between 2 and 4", m)
	}
	info, err := nt.JS.Consumer(ctx, stream, "workers")
	if err != nil {
		t.Fatal(err)
	}
	ci, _ := info.Info(ctx)
	if ci.NumPending != 0 || ci.NumAckPending != 0 {
		t.Fatalf("left %d pending, %d unacknowledged", ci.NumPending, ci.NumAckPending)
	}
}

func TestBoundConsumerDeletedEndsTheLoop(t *testing.T) {
	nt, ctx := setup(t, 3)
	if _, err := nt.JS.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: "bound", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	handled := make(chan uint64, 10)
	done := make(chan error, 1)
	go func() {
		done <- consume.Run(ctx, nt.JS, consume.Source{Stream: stream, Name: "bound"}, consume.Options{Reader: reader(nt)}, func(_ context.Context, m *consume.Message) {
			m.Ack()
			handled <- m.Seq
		})
	}()
	for range 3 {
		<-handled
	}
	if err := nt.JS.DeleteConsumer(ctx, stream, "bound"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Fatalf("the loop ended with %v, want consumer not found", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the loop kept running on a deleted consumer")
	}
}

func TestRawHandsOverUndecoded(t *testing.T) {
	nt, ctx := setup(t, 2, 1, 2)
	var got [][]byte
	err := consume.RunBatches(ctx, nt.JS, ordered(), consume.Options{Raw: true, Poison: func(context.Context, *consume.Message, error) error {
		t.Error("a raw source has no poison")
		return nil
	}}, func(_ context.Context, ms []*consume.Message) error {
		for _, m := range ms {
			got = append(got, m.Data)
		}
		if len(got) == 2 {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) || string(got[1]) != `{"not":"an event 2"}` {
		t.Fatalf("%v %q", err, got)
	}
}

func TestRunReturnsNilWhenTheContextEnds(t *testing.T) {
	nt, ctx := setup(t, 1)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- consume.Run(runCtx, nt.JS, ordered(), consume.Options{Reader: reader(nt)}, func(context.Context, *consume.Message) { cancel() })
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
