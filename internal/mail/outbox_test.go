package mail_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/keyring"
	"github.com/tenancyhq/tenancy/internal/mail"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// recorder is a Sender that records what it sent and fails as told.
type recorder struct {
	mu   sync.Mutex
	sent map[string]int
	// fail returns the error of an attempt at id (nil sends it).
	fail     func(id string, attempt int) error
	attempts map[string]int
}

func (r *recorder) Send(_ context.Context, m mail.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts[m.ID]++
	if r.fail != nil {
		if err := r.fail(m.ID, r.attempts[m.ID]); err != nil {
			return err
		}
	}
	r.sent[m.ID]++
	return nil
}

func (r *recorder) count(id string) (sent, attempts int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent[id], r.attempts[id]
}

// outbox opens an outbox on a fresh server; start runs a mailer with rec.
func outbox(t *testing.T, rec *recorder) (o *mail.Outbox, ring *keyring.Keyring, n *testenv.NATS, ctx context.Context, start func()) {
	t.Helper()
	n = testenv.StartNATS(t)
	ctx = testenv.Context(t, time.Minute)
	master := make([]byte, keyring.MasterKeySize)
	_, _ = rand.Read(master)
	ring, err := keyring.Open(ctx, n.JS, master, 1)
	if err != nil {
		t.Fatal(err)
	}
	if o, err = mail.Ensure(ctx, n.JS, 1, ring); err != nil {
		t.Fatal(err)
	}
	start = func() {
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- o.Run(runCtx, rec, nil) }()
		t.Cleanup(func() { stop(); <-done })
	}
	return o, ring, n, ctx, start
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !testenv.Eventually(20*time.Second, 10*time.Millisecond, cond) {
		t.Fatalf("%s: timed out", what)
	}
}

// TestOutbox: a queued message is sent once, however often it is queued
// and whether or not the relay fails first; one the relay refuses for good
// is tried once; one of an erased tenant is dropped unsent; the queue holds
// nothing readable.
func TestOutbox(t *testing.T) {
	const tenant = "0195f1c2-7d4e-7a10-8c3b-00000000000a"
	saved := mail.Retry
	mail.Retry.Base, mail.Retry.Max = 20*time.Millisecond, 50*time.Millisecond
	t.Cleanup(func() { mail.Retry = saved })
	rec := &recorder{sent: map[string]int{}, attempts: map[string]int{}, fail: func(id string, attempt int) error {
		switch {
		case id == "flaky" && attempt < 3:
			return &smtp.SMTPError{Code: 451, Message: "try later"}
		case id == "refused":
			return &smtp.SMTPError{Code: 550, Message: "no such user"}
		}
		return nil
	}}
	o, ring, n, ctx, start := outbox(t, rec)
	start()

	secret := message("twice")
	secret.TenantID, secret.Text = tenant, "your one-time code is 918273"
	for range 2 {
		if err := o.Enqueue(ctx, secret); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"flaky", "refused"} {
		if err := o.Enqueue(ctx, message(id)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the messages sent", func() bool {
		a, _ := rec.count("twice")
		f, _ := rec.count("flaky")
		_, r := rec.count("refused")
		return a == 1 && f == 1 && r == 1
	})
	// The queue is a work queue: what was settled is gone, and it never
	// held the code in the clear.
	waitFor(t, "the queue drained", func() bool {
		info, err := n.JS.Stream(ctx, mail.Stream)
		return err == nil && info.CachedInfo().State.Msgs == 0
	})

	// A tenant erased: its mail can no longer be queued.
	if err := ring.Destroy(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	late := message("late")
	late.TenantID = tenant
	if err := o.Enqueue(ctx, late); !errors.Is(err, events.ErrErased) {
		t.Fatalf("enqueue for an erased tenant: %v", err)
	}
	if a, _ := rec.count("twice"); a != 1 {
		t.Fatalf("sent %d times", a)
	}
	if _, attempts := rec.count("refused"); attempts != 1 {
		t.Fatalf("a refused message was tried %d times", attempts)
	}
}

// TestOutboxSealedRedeliveredErased: the queue holds nothing readable; a
// queue entry delivered again after its message was sent (the mailer died
// between sending and acknowledging) is not sent again; and mail queued for
// a tenant erased before it went out is dropped unsent.
func TestOutboxSealedRedeliveredErased(t *testing.T) {
	const tenant = "0195f1c2-7d4e-7a10-8c3b-00000000000a"
	rec := &recorder{sent: map[string]int{}, attempts: map[string]int{}}
	o, ring, n, ctx, start := outbox(t, rec)
	m := message("once")
	m.Text = "your one-time code is 918273"
	gone := message("gone")
	gone.TenantID = tenant
	for _, msg := range []mail.Message{m, gone} {
		if err := o.Enqueue(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	s, err := n.JS.Stream(ctx, mail.Stream)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, clear := range []string{"918273", "ann@example.com", "Tenancy"} {
		if bytes.Contains(raw.Data, []byte(clear)) {
			t.Errorf("the queue holds %q in the clear: %s", clear, raw.Data)
		}
	}
	if err := ring.Destroy(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	start()
	drained := func() bool {
		info, err := n.JS.Stream(ctx, mail.Stream)
		return err == nil && info.CachedInfo().State.Msgs == 0
	}
	waitFor(t, "the queue drained", drained)
	// The same entry once more, as a redelivery brings it after the
	// send.
	if _, err := n.JS.Publish(ctx, raw.Subject, raw.Data, jetstream.WithMsgID("redelivered")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the queue drained again", drained)
	if sent, attempts := rec.count("once"); sent != 1 || attempts != 1 {
		t.Fatalf("sent %d times in %d attempts", sent, attempts)
	}
	if _, attempts := rec.count("gone"); attempts != 0 {
		t.Fatal("mail of an erased tenant was sent")
	}
}
