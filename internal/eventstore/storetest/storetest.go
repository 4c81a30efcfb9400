// Package storetest is the contract suite of the event log: Run checks an
// eventstore.Log implementation against what the write path and the
// readers rely on (see eventstore.Log). The JetStream store runs it; any
// future implementation must pass it too.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// Open returns an empty log for one subtest.
type Open func(t *testing.T) eventstore.Log

// Run runs every contract check, each on a fresh log.
func Run(t *testing.T, open Open) {
	for _, c := range []struct {
		name string
		test func(t *testing.T, ctx context.Context, l eventstore.Log)
	}{
		{"append assigns increasing sequences", appendSequences},
		{"expected sequence guards concurrency", expectedSequence},
		{"a retried append is stored once", retriedAppend},
		{"a batch lands whole or not at all", atomicBatch},
		{"reads filter, order and page", reads},
		{"get and last", getAndLast},
		{"claims read back", claims},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c.test(t, ctx, open(t))
		})
	}
}

func msg(subject, id string, expect ...uint64) eventstore.Outgoing {
	o := eventstore.Outgoing{Subject: subject, Data: []byte(fmt.Sprintf(`{"id":%q}`, id)), MsgID: id}
	if len(expect) > 0 {
		o.CheckSeq, o.ExpectSeq = true, expect[0]
	}
	return o
}

func mustAppend(t *testing.T, ctx context.Context, l eventstore.Log, msgs ...eventstore.Outgoing) uint64 {
	t.Helper()
	seq, err := l.Append(ctx, msgs)
	if err != nil {
		t.Fatalf("append %s: %v", msgs[0].MsgID, err)
	}
	return seq
}

func appendSequences(t *testing.T, ctx context.Context, l eventstore.Log) {
	var last uint64
	for i := range 5 {
		seq := mustAppend(t, ctx, l, msg("tenancy.evt.t.tenant.a", fmt.Sprint("m", i)))
		if seq <= last {
			t.Fatalf("sequence %d after %d", seq, last)
		}
		last = seq
	}
	if head, err := l.LastSeq(ctx); err != nil || head != last {
		t.Fatalf("LastSeq %d %v, want %d", head, err, last)
	}
}

func expectedSequence(t *testing.T, ctx context.Context, l eventstore.Log) {
	subj := "tenancy.evt.t.tenant.a"
	first := mustAppend(t, ctx, l, msg(subj, "m1", 0))
	// A second writer that read the empty subject loses, and stores nothing.
	if _, err := l.Append(ctx, []eventstore.Outgoing{msg(subj, "m2", 0)}); !errors.Is(err, eventstore.ErrWrongSequence) {
		t.Fatalf("stale append: %v", err)
	}
	if head, _ := l.LastSeq(ctx); head != first {
		t.Fatalf("a refused append moved the log to %d", head)
	}
	// Writers on other subjects are not held up.
	mustAppend(t, ctx, l, msg("tenancy.evt.t.tenant.b", "b1", 0))
	if seq := mustAppend(t, ctx, l, msg(subj, "m3", first)); seq <= first {
		t.Fatalf("append after %d got %d", first, seq)
	}
}

func retriedAppend(t *testing.T, ctx context.Context, l eventstore.Log) {
	subj := "tenancy.evt.t.tenant.a"
	seq := mustAppend(t, ctx, l, msg(subj, "m1", 0))
	if again := mustAppend(t, ctx, l, msg(subj, "m1")); again != seq {
		t.Fatalf("a retried message got sequence %d, first %d", again, seq)
	}
	all, err := l.ReadAll(ctx, subj, 1)
	if err != nil || len(all) != 1 {
		t.Fatalf("a retried message is stored %d times (%v)", len(all), err)
	}
}

func atomicBatch(t *testing.T, ctx context.Context, l eventstore.Log) {
	subj := "tenancy.evt.t.tenant.a"
	first := mustAppend(t, ctx, l, msg(subj, "m1", 0))
	batch := []eventstore.Outgoing{msg("tenancy.claim.slug.x", "c1", 0), msg(subj, "m2", first), msg(subj, "m3")}
	last := mustAppend(t, ctx, l, batch...)
	failing := []eventstore.Outgoing{msg("tenancy.claim.slug.y", "c2", 0), msg(subj, "m4", first)} // the second is stale
	if _, err := l.Append(ctx, failing); !errors.Is(err, eventstore.ErrWrongSequence) {
		t.Fatalf("stale batch: %v", err)
	}
	if head, _ := l.LastSeq(ctx); head != last {
		t.Fatalf("a failed batch stored something: last seq %d, want %d", head, last)
	}
	if got, _ := l.ReadAll(ctx, "tenancy.claim.slug.y", 1); len(got) != 0 {
		t.Fatal("the failed batch's first message was stored")
	}
	// A batch retried after a lost acknowledgement is not stored twice.
	if again := mustAppend(t, ctx, l, batch...); again != last {
		t.Fatalf("retried batch: %d, want %d", again, last)
	}
	if got, _ := l.ReadAll(ctx, subj, 1); len(got) != 3 {
		t.Fatalf("%d messages on the subject after a retried batch, want 3", len(got))
	}
}

func reads(t *testing.T, ctx context.Context, l eventstore.Log) {
	for i := range 50 {
		subj := "tenancy.evt.t.tenant.a"
		if i%3 == 0 {
			subj = "tenancy.evt.u.tenant.b"
		}
		mustAppend(t, ctx, l, msg(subj, fmt.Sprint("m", i)))
	}
	all, err := l.ReadAll(ctx, "tenancy.evt.t.>", 1)
	if err != nil || len(all) != 33 {
		t.Fatalf("read %d of tenant t's 33 events (%v)", len(all), err)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq <= all[i-1].Seq || all[i].Subject != "tenancy.evt.t.tenant.a" {
			t.Fatalf("out of order or off the filter at %d: %+v", i, all[i])
		}
	}
	from := all[10].Seq
	rest, err := l.ReadAll(ctx, "tenancy.evt.t.>", from)
	if err != nil || len(rest) != 23 || rest[0].Seq != from {
		t.Fatalf("read from %d: %d messages starting at %v (%v)", from, len(rest), rest, err)
	}
	page, more, err := l.Read(ctx, "tenancy.evt.>", 1, 10)
	if err != nil || len(page) != 10 || !more {
		t.Fatalf("first page: %d more=%v %v", len(page), more, err)
	}
	page, more, err = l.Read(ctx, "tenancy.evt.>", 45, 10)
	if err != nil || len(page) != 6 || more {
		t.Fatalf("last page: %d more=%v %v", len(page), more, err)
	}
}

func getAndLast(t *testing.T, ctx context.Context, l eventstore.Log) {
	a := mustAppend(t, ctx, l, msg("tenancy.evt.t.tenant.a", "a1"))
	b := mustAppend(t, ctx, l, msg("tenancy.evt.t.tenant.b", "b1"))
	a2 := mustAppend(t, ctx, l, msg("tenancy.evt.t.tenant.a", "a2"))
	m, err := l.Get(ctx, b)
	if err != nil || m.Seq != b || m.Subject != "tenancy.evt.t.tenant.b" || string(m.Data) != `{"id":"b1"}` {
		t.Fatalf("Get(%d) = %+v %v", b, m, err)
	}
	if _, err := l.Get(ctx, a2+100); !errors.Is(err, eventstore.ErrNotFound) {
		t.Fatalf("Get beyond the log: %v", err)
	}
	last, err := l.LastFor(ctx, []string{"tenancy.evt.t.tenant.a", "tenancy.evt.t.tenant.b", "tenancy.evt.t.tenant.none"})
	if err != nil || len(last) != 2 || last["tenancy.evt.t.tenant.a"].Seq != a2 || last["tenancy.evt.t.tenant.b"].Seq != b {
		t.Fatalf("LastFor: %+v %v (a %d, a2 %d)", last, err, a, a2)
	}
	other := mustAppend(t, ctx, l, msg("tenancy.evt.u.tenant.c", "c1"))
	if lm, head, err := l.LastMatching(ctx, "tenancy.evt.t.tenant.*"); err != nil || lm != a2 || head < other {
		t.Fatalf("LastMatching(t's tenants) = %d head %d %v, want %d and a head at least %d", lm, head, err, a2, other)
	}
	if lm, head, err := l.LastMatching(ctx, "tenancy.evt.none.>"); err != nil || lm != 0 || head < other {
		t.Fatalf("LastMatching(nothing) = %d head %d %v, want 0 and a head at least %d", lm, head, err, other)
	}
}

func claims(t *testing.T, ctx context.Context, l eventstore.Log) {
	slug := domain.Claim{Kind: domain.ClaimSlug, Value: "acme"}
	ext := domain.Claim{Kind: domain.ClaimExternalID, System: "billing", Value: "cus_1"}
	state, err := l.ReadClaims(ctx, []domain.Claim{slug, ext})
	if err != nil || len(state) != 0 {
		t.Fatalf("claims of an empty log: %+v %v", state, err)
	}
	out, err := eventstore.ClaimChanges("owner-1", "e1", nil, []domain.Claim{slug, ext}, state)
	if err != nil || len(out) != 2 {
		t.Fatalf("claim changes: %v %v", out, err)
	}
	mustAppend(t, ctx, l, out...)
	state, err = l.ReadClaims(ctx, []domain.Claim{slug, ext})
	if err != nil || len(state) != 2 {
		t.Fatalf("claims read back: %+v %v", state, err)
	}
	for _, c := range []domain.Claim{slug, ext} {
		if st := state[eventstore.ClaimSubject(c)]; !st.Record.Held || st.Record.Owner != "owner-1" {
			t.Errorf("claim %v: %+v", c, st)
		}
	}
	// Another owner cannot take a held value.
	if _, err := eventstore.ClaimChanges("owner-2", "e2", nil, []domain.Claim{slug}, state); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("another owner's claim: %v", err)
	}
}
