package verify_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/internal/verify"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// logFixture is a log in a stream that, unlike Tenancy's, allows deletes:
// what a damaged store looks like, made on purpose.
type logFixture struct {
	t      *testing.T
	ctx    context.Context
	js     jetstream.JetStream
	stream jetstream.Stream
	store  *eventstore.Store
	signer *events.Signer
	keys   *events.KeySet
	heads  map[string]events.Head
}

func newLog(t *testing.T) *logFixture {
	t.Helper()
	n := testenv.StartNATS(t)
	ctx := testenv.Context(t, time.Minute)
	st, err := n.JS.CreateStream(ctx, jetstream.StreamConfig{Name: eventstore.DefaultStream, Subjects: []string{events.AllSubjects, eventstore.ClaimSubjects},
		AllowDirect: true})
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := events.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return &logFixture{t: t, ctx: ctx, js: n.JS, stream: st, store: eventstore.New(n.JS, ""), signer: s,
		keys: events.NewKeySet(events.PublicKey{ID: s.KeyID(), Key: s.PublicKey()}), heads: map[string]events.Head{}}
}

// event appends the next event of tenant id's aggregate and returns its
// sequence and event id.
func (l *logFixture) event(id string, p events.Payload) (uint64, string) {
	l.t.Helper()
	subject := events.Subject(id, events.AggregateTenant, id)
	return l.append(subject, id, p)
}

func (l *logFixture) append(subject, tenant string, p events.Payload) (uint64, string) {
	l.t.Helper()
	_, _, aggID, _ := events.ParseSubject(subject)
	h := l.heads[subject]
	data, _ := json.Marshal(p)
	e := &events.Envelope{SpecVersion: "1.0", ID: subject + "/" + strconv.FormatInt(h.Version+1, 10), Source: "/test", Type: p.EventType(),
		Subject: aggID, Time: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), DataContentType: "application/json", TenantID: tenant, Actor: "test",
		AggVersion: h.Version + 1, PrevHash: events.PrevHash(h.Hash), Data: data}
	raw, hash, err := l.signer.Sign(e)
	if err != nil {
		l.t.Fatal(err)
	}
	ack, err := l.js.Publish(l.ctx, subject, raw)
	if err != nil {
		l.t.Fatal(err)
	}
	l.heads[subject] = events.Head{Version: e.AggVersion, Hash: hash, ID: e.ID}
	return ack.Sequence, e.ID
}

// claim appends a uniqueness claim naming eventID.
func (l *logFixture) claim(value, eventID string) uint64 {
	l.t.Helper()
	b, _ := json.Marshal(eventstore.ClaimRecord{Kind: "slug", Value: value, Owner: "o", Held: true, EventID: eventID})
	ack, err := l.js.Publish(l.ctx, "tenancy.claim.slug."+value, b)
	if err != nil {
		l.t.Fatal(err)
	}
	return ack.Sequence
}

func (l *logFixture) run(checkpoint string) (verify.Report, error) {
	return verify.Run(l.ctx, l.store, verify.Options{Filter: events.AllSubjects, Keys: l.keys, Checkpoint: checkpoint})
}

func created(slug string) events.Payload {
	return &events.TenantCreated{Slug: slug, DisplayName: slug, Plan: "standard", Isolation: "shared",
		Regions: events.Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"}}
}

func renamed(name string) events.Payload {
	return &events.TenantUpdated{Changed: []string{"display_name"}, DisplayName: &name}
}

func TestCleanLogCounts(t *testing.T) {
	l := newLog(t)
	l.claim("acme", "tenancy.evt.a.tenant.a/1")
	l.event("a", created("acme"))
	l.event("a", renamed("Acme 2"))
	l.event("b", created("beta"))
	rep, err := l.run("")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != 3 || rep.Aggregates != 2 || rep.Claims != 1 || rep.LastSeq != 4 || rep.Keys != 1 {
		t.Fatalf("report %+v", rep)
	}
}

// TestFailuresCountWhatCameBefore: whatever fails, the report counts the
// events and claims verified before it, and names where it stopped.
func TestFailuresCountWhatCameBefore(t *testing.T) {
	cases := map[string]struct {
		damage func(l *logFixture)
		want   error
		events int
		claims int
		last   uint64
	}{
		"a record removed": {func(l *logFixture) {
			if err := l.stream.DeleteMsg(l.ctx, 3); err != nil {
				l.t.Fatal(err)
			}
		}, verify.ErrGap, 1, 1, 2},
		"the last record removed": {func(l *logFixture) {
			if err := l.stream.DeleteMsg(l.ctx, 4); err != nil {
				l.t.Fatal(err)
			}
			l.event("c", created("gamma")) // the stream goes on past the hole
		}, verify.ErrGap, 2, 1, 3},
		"a claim with no event": {func(l *logFixture) {
			l.claim("ghost", "never-appended")
		}, verify.ErrClaim, 3, 2, 5},
		"a forged event": {func(l *logFixture) {
			other, _ := events.NewSigner(func() ed25519.PrivateKey { _, k, _ := ed25519.GenerateKey(rand.Reader); return k }())
			l.signer = other
			l.event("a", renamed("forged"))
		}, events.ErrUnknownKey, 3, 1, 4},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			l := newLog(t)
			l.claim("acme", "tenancy.evt.a.tenant.a/1")
			l.event("a", created("acme"))
			l.event("a", renamed("Acme 2"))
			l.event("b", created("beta"))
			tc.damage(l)
			rep, err := l.run("")
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if rep.Events != tc.events || rep.Claims != tc.claims || rep.LastSeq != tc.last {
				t.Fatalf("report %+v, want %d events, %d claims, up to %d", rep, tc.events, tc.claims, tc.last)
			}
		})
	}
}

// TestCheckpoint: a run records where it ended; a later run fails when the
// log no longer holds that record, and passes (moving the checkpoint) when
// it does.
func TestCheckpoint(t *testing.T) {
	l := newLog(t)
	cp := filepath.Join(t.TempDir(), "verify.checkpoint")
	l.event("a", created("acme"))
	last, _ := l.event("a", renamed("Acme 2"))
	if _, err := l.run(cp); err != nil {
		t.Fatal(err)
	}
	l.event("b", created("beta"))
	if rep, err := l.run(cp); err != nil || rep.LastSeq != last+1 {
		t.Fatalf("a longer log: %+v %v", rep, err)
	}
	// The tail is lost: the last record goes (and no gap shows, since
	// nothing follows it).
	if err := l.stream.DeleteMsg(l.ctx, last+1); err != nil {
		t.Fatal(err)
	}
	if _, err := l.run(cp); !errors.Is(err, verify.ErrCheckpoint) && !errors.Is(err, verify.ErrGap) {
		t.Fatalf("a log shorter than the checkpoint: %v", err)
	}
}

// TestResolvedMessagesArePassedOver: a message resolved by a signed
// resolution is counted as ignored, and the chain goes on after it.
func TestResolvedMessagesArePassedOver(t *testing.T) {
	l := newLog(t)
	l.event("a", created("acme"))
	bad, err := l.js.Publish(l.ctx, events.Subject("a", events.AggregateTenant, "a"), []byte("garbage"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.run(""); err == nil {
		t.Fatal("verify passed a garbage message")
	}
	seq := strconv.FormatUint(bad.Sequence, 10)
	l.append(events.Subject(events.PlatformTenantID, events.AggregateQuarantine, seq), events.PlatformTenantID,
		&events.QuarantineResolved{Seq: bad.Sequence, Subject: events.Subject("a", events.AggregateTenant, "a"), Violation: "not-an-event", Reason: "test"})
	l.event("a", renamed("after"))
	rep, err := l.run("")
	if err != nil || rep.Ignored != 1 || rep.Events != 3 {
		t.Fatalf("report %+v %v", rep, err)
	}
}
