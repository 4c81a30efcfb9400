package natsconn_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/delivery"
	"github.com/tenancyhq/tenancy/internal/delivery/deadletter"
	"github.com/tenancyhq/tenancy/internal/delivery/secrets"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/idempotency"
	"github.com/tenancyhq/tenancy/internal/integrity"
	"github.com/tenancyhq/tenancy/internal/keyring"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/natsconn"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/internal/timer"
)

// TestEnsureStream: a missing stream is created; ensuring it again as it
// is sends the server no update (no update advisory); a changed setting
// is applied.
func TestEnsureStream(t *testing.T) {
	nt := testenv.StartNATS(t)
	ctx := context.Background()
	updates := make(chan *nats.Msg, 8)
	sub, err := nt.Conn.ChanSubscribe("$JS.EVENT.ADVISORY.STREAM.UPDATED.S", updates)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	cfg := jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.FileStorage, MaxMsgs: -1,
		Duplicates: 30 * time.Second, DenyDelete: true, AllowDirect: true}
	for _, step := range []struct {
		name    string
		change  func()
		updated bool
	}{
		{"create", func() {}, false},
		{"again, unchanged", func() {}, false},
		{"a setting changed", func() { cfg.Description = "changed" }, true},
		{"again, as changed", func() {}, false},
	} {
		step.change()
		s, err := natsconn.EnsureStream(ctx, nt.JS, cfg)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if s.CachedInfo().Config.Description != cfg.Description {
			t.Fatalf("%s: stream config %+v", step.name, s.CachedInfo().Config)
		}
		select {
		case <-updates:
			if !step.updated {
				t.Fatalf("%s: the stream was updated", step.name)
			}
		case <-time.After(300 * time.Millisecond):
			if step.updated {
				t.Fatalf("%s: no update", step.name)
			}
		}
	}
}

// TestTenancyStreamsAreNotRewrittenAtStart: every stream and bucket
// Tenancy ensures at start is left alone when it is already as
// configured, so instances starting beside running ones send no stream
// updates.
func TestTenancyStreamsAreNotRewrittenAtStart(t *testing.T) {
	nt := testenv.StartNATS(t)
	ctx := context.Background()
	key := make([]byte, 32)
	ensure := func() {
		t.Helper()
		if _, err := eventstore.EnsureStream(ctx, nt.JS, eventstore.StreamConfig{}); err != nil {
			t.Fatal(err)
		}
		if _, err := deadletter.Ensure(ctx, nt.JS, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := timer.Open(ctx, nt.JS, 1); err != nil {
			t.Fatal(err)
		}
		kr, err := keyring.Open(ctx, nt.JS, key, 1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := secrets.Open(ctx, nt.JS, kr, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := idempotency.Open(ctx, nt.JS, 1, time.Now, kr, func() string { return "id" }); err != nil {
			t.Fatal(err)
		}
		if _, err := integrity.OpenQuarantine(ctx, nt.JS, 1, logging.Discard(), time.Now); err != nil {
			t.Fatal(err)
		}
		if _, err := delivery.EnsureState(ctx, nt.JS, 1); err != nil {
			t.Fatal(err)
		}
	}
	ensure()
	updates := make(chan *nats.Msg, 16)
	sub, err := nt.Conn.ChanSubscribe("$JS.EVENT.ADVISORY.STREAM.UPDATED.>", updates)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	ensure()
	select {
	case m := <-updates:
		t.Fatalf("a second start updated a stream: %s", m.Subject)
	case <-time.After(300 * time.Millisecond):
	}
}
