package integrity_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/integrity"
	"github.com/tenancyhq/tenancy/internal/integrity/forge"
	"github.com/tenancyhq/tenancy/internal/testrig"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// tenant creates a tenant and updates it once: two genuine events.
func tenant(t testing.TB, r *testrig.Rig, slug string) string {
	t.Helper()
	res, err := r.Core.Tenants.Create(r.Ctx, domain.CreateTenant{Slug: slug, DisplayName: "Acme", Plan: "standard", Isolation: "shared",
		Regions: domain.Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"}}, command.Meta{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	name := "Acme Two"
	if _, err := r.Core.Tenants.Do(r.Ctx, res.State.ID, domain.UpdateTenant{DisplayName: &name}, command.Meta{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	return res.State.ID
}

func fixture(r *testrig.Rig) forge.Fixture {
	return forge.Fixture{Log: r.Core.Store, Signer: r.Core.Signer, NewTenant: func(t testing.TB, slug string) string {
		return tenant(t, r, slug)
	}}
}

func subjectEvents(t testing.TB, r *testrig.Rig, id string) []eventstore.Message {
	t.Helper()
	return forge.Events(t, r.Ctx, r.Core.Store, id)
}

// TestReaderRefusesAndResolutionPassesOver publishes each attack after a
// tenant's genuine events, reads the subject as a consumer would, and
// checks: the genuine events pass, the attack is a violation with its
// reason, the aggregate's commands are refused naming the sequence; after
// an operator resolves it, readers pass over it and the next command
// chains to the last genuine event.
func TestReaderRefusesAndResolutionPassesOver(t *testing.T) {
	r := testrig.New(t, testrig.Options{})
	for i, a := range forge.Attacks() {
		t.Run(a.Name, func(t *testing.T) {
			id := tenant(t, r, fmt.Sprintf("attacked-%d", i))
			subject, data := a.Forge(t, r.Ctx, fixture(r), id)
			ack, err := r.NATS.JS.Publish(r.Ctx, subject, data)
			if err != nil {
				t.Fatal(err)
			}
			bad := ack.Sequence

			reader := r.Core.Reader()
			var got *integrity.Violation
			for _, m := range subjectEvents(t, r, id) {
				_, err := reader.Read(r.Ctx, m)
				switch {
				case m.Seq == bad && !errors.As(err, &got):
					t.Fatalf("the attack at %d passed: %v", bad, err)
				case m.Seq != bad && err != nil:
					t.Fatalf("genuine event %d refused: %v", m.Seq, err)
				}
			}
			if got.Reason != a.Reason || got.Seq != bad || got.Subject != subject {
				t.Fatalf("violation %+v, want reason %s at %d", got, a.Reason, bad)
			}

			// The command side refuses to sign on top of it.
			name := "After"
			_, err = r.Core.Tenants.Do(r.Ctx, id, domain.UpdateTenant{DisplayName: &name}, command.Meta{Actor: "test"})
			var ie *domain.IntegrityError
			if !errors.As(err, &ie) || ie.Seq != bad || !errors.Is(err, domain.ErrIntegrityBroken) {
				t.Fatalf("command on the broken aggregate: %v, want an integrity error naming %d", err, bad)
			}
			rec, err := r.Core.Integrity.Quarantine(r.Ctx, bad)
			if err != nil || rec.Violation != a.Reason || rec.DetectedBy != "command" {
				t.Fatalf("quarantine record: %+v %v", rec, err)
			}

			// Resolved: passed over, and the chain goes on from the last
			// genuine event.
			if _, _, err := r.Core.Integrity.Resolve(r.Ctx, bad, "forged by the test", command.Meta{Actor: "op"}); err != nil {
				t.Fatal(err)
			}
			res, err := r.Core.Tenants.Do(r.Ctx, id, domain.UpdateTenant{DisplayName: &name}, command.Meta{Actor: "test"})
			if err != nil {
				t.Fatalf("command after the resolution: %v", err)
			}
			if res.State.DisplayName != "After" || res.State.Version != 3 {
				t.Fatalf("state after the resolution: %+v", res.State)
			}
			fresh := r.Core.Reader()
			for _, m := range subjectEvents(t, r, id) {
				c, err := fresh.Read(r.Ctx, m)
				if err != nil || (m.Seq == bad) != c.Ignored {
					t.Fatalf("after the resolution, seq %d: ignored=%v %v", m.Seq, c.Ignored, err)
				}
			}
		})
	}
}

// TestRetiredKey checks that a retired key verifies the events appended
// before its retirement and none after, whichever reader reads them and
// however soon after the retirement.
func TestRetiredKey(t *testing.T) {
	r := testrig.New(t, testrig.Options{})
	old := forge.NewSigner(t)
	if err := r.Core.SigningKeys.Register(r.Ctx, old); err != nil {
		t.Fatal(err)
	}
	id := tenant(t, r, "retiring")
	before := forge.Sign(t, old, forge.Next(t, r.Ctx, r.Core.Store, id))
	ack, err := r.NATS.JS.Publish(r.Ctx, forge.TenantSubject(id), before)
	if err != nil {
		t.Fatal(err)
	}
	reader := r.Core.Reader()
	for _, m := range subjectEvents(t, r, id) {
		if _, err := reader.Read(r.Ctx, m); err != nil {
			t.Fatalf("event %d signed before the retirement: %v", m.Seq, err)
		}
	}
	if err := r.Core.SigningKeys.Retire(r.Ctx, old.KeyID(), "rotation", "op"); err != nil {
		t.Fatal(err)
	}
	e := forge.Next(t, r.Ctx, r.Core.Store, id)
	e.ID = "after-retirement"
	after, err := r.NATS.JS.Publish(r.Ctx, forge.TenantSubject(id), forge.Sign(t, old, e))
	if err != nil {
		t.Fatal(err)
	}
	// The reader loaded its keys before the retirement; it must still not
	// take the later event.
	msgs := subjectEvents(t, r, id)
	_, err = reader.Read(r.Ctx, msgs[len(msgs)-1])
	var v *integrity.Violation
	if !errors.As(err, &v) || v.Reason != "retired-key" || v.Seq != after.Sequence {
		t.Fatalf("event signed after the retirement: %v", err)
	}
	// The one before it still reads, from scratch.
	fresh := r.Core.Reader()
	for _, m := range msgs[:len(msgs)-1] {
		if _, err := fresh.Read(r.Ctx, m); err != nil {
			t.Fatalf("event %d (the retired key's last at %d): %v", m.Seq, ack.Sequence, err)
		}
	}
}

// TestReaderJoiningLate checks readers that start in the middle of the log
// (a restarted consumer, one sharing a work queue, a page of a listing):
// reading only the bad message, with no head for its aggregate, each
// attack is still refused for its reason; a genuine first event published
// again is not taken for the aggregate's first.
func TestReaderJoiningLate(t *testing.T) {
	r := testrig.New(t, testrig.Options{})
	for i, a := range forge.Attacks() {
		t.Run(a.Name, func(t *testing.T) {
			id := tenant(t, r, fmt.Sprintf("late-%d", i))
			msgs := subjectEvents(t, r, id)
			if _, err := r.Core.Reader().Read(r.Ctx, msgs[len(msgs)-1]); err != nil {
				t.Fatalf("the last genuine event, read alone: %v", err)
			}
			subject, data := a.Forge(t, r.Ctx, fixture(r), id)
			ack, err := r.NATS.JS.Publish(r.Ctx, subject, data)
			if err != nil {
				t.Fatal(err)
			}
			m, err := r.Core.Store.Get(r.Ctx, ack.Sequence)
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Core.Reader().Read(r.Ctx, *m)
			var v *integrity.Violation
			if !errors.As(err, &v) || v.Reason != a.Reason {
				t.Fatalf("the attack, read alone: %v, want %s", err, a.Reason)
			}
		})
	}
}

// TestQuarantineRecordsOnce checks that a message met by several readers
// is recorded once, with the first reader's name, and listed in sequence
// order.
func TestQuarantineRecordsOnce(t *testing.T) {
	r := testrig.New(t, testrig.Options{})
	ctx := context.Background()
	for _, seq := range []uint64{12, 3} {
		for _, reader := range []string{"projection tenants", "provisioner"} {
			v := &integrity.Violation{Seq: seq, Subject: "tenancy.evt.x.tenant.x", Reason: "bad-signature", Err: events.ErrBadSignature}
			if err := r.Core.Quarantine.Record(ctx, v, reader); err != nil {
				t.Fatal(err)
			}
		}
	}
	list, err := r.Core.Integrity.Quarantined(ctx)
	if err != nil || len(list) != 2 || list[0].Seq != 3 || list[1].Seq != 12 || list[0].DetectedBy != "projection tenants" {
		t.Fatalf("quarantine list: %+v %v", list, err)
	}
	if _, err := r.Core.Integrity.Quarantine(ctx, 4); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("a sequence never quarantined: %v", err)
	}
	if _, _, err := r.Core.Integrity.Resolve(ctx, 4, "x", command.Meta{Actor: "op"}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("resolving a sequence never quarantined: %v", err)
	}
}

// TestReplayCannotClaimToBeFirst: a reader takes a first event as first
// without asking the log when it was stored with an expected last subject
// sequence of 0; a genuine first event published again with that header
// is refused by the server, so the proof cannot be forged.
func TestReplayCannotClaimToBeFirst(t *testing.T) {
	r := testrig.New(t, testrig.Options{})
	id := tenant(t, r, "proof")
	first := subjectEvents(t, r, id)[0]
	if _, err := r.NATS.JS.Publish(r.Ctx, forge.TenantSubject(id), first.Data, jetstream.WithExpectLastSequencePerSubject(0)); err == nil {
		t.Fatal("the server stored a replay claiming its subject was empty")
	}
}

// staleLog answers reads as a replica that is behind would: the first
// stale reads leave out every message from hideFrom on.
type staleLog struct {
	eventstore.Log
	hideFrom uint64
	stale    int
	reads    int
}

func (s *staleLog) ReadAll(ctx context.Context, filter string, from uint64) ([]eventstore.Message, error) {
	msgs, err := s.Log.ReadAll(ctx, filter, from)
	s.reads++
	if err != nil || s.reads > s.stale {
		return msgs, err
	}
	var out []eventstore.Message
	for _, m := range msgs {
		if m.Seq < s.hideFrom {
			out = append(out, m)
		}
	}
	return out, nil
}

// TestReaderWaitsForALaggingReplica: a reader that missed an aggregate's
// event (another instance handled it) asks the log for the chain; a
// replica that is behind answers without that event, and must not make
// the next, genuine event a violation. A replica that stays behind is the
// log being unavailable, not a violation either.
func TestReaderWaitsForALaggingReplica(t *testing.T) {
	r := testrig.New(t, testrig.Options{})
	id := tenant(t, r, "lagging")
	name := "Acme Three"
	if _, err := r.Core.Tenants.Do(r.Ctx, id, domain.UpdateTenant{DisplayName: &name}, command.Meta{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	msgs := subjectEvents(t, r, id) // versions 1, 2, 3
	for _, c := range []struct {
		name  string
		stale int
		want  func(error) bool
	}{
		{"catches up", 2, func(err error) bool { return err == nil }},
		{"stays behind", 100, func(err error) bool {
			var v *integrity.Violation
			return errors.Is(err, eventstore.ErrUnavailable) && !errors.As(err, &v)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			log := &staleLog{Log: r.Core.Store, hideFrom: msgs[1].Seq, stale: c.stale}
			rd := integrity.NewReader(integrity.NewLogChecker(r.Core.Store), log, 0)
			if _, err := rd.Read(r.Ctx, msgs[0]); err != nil {
				t.Fatal(err)
			}
			// Version 2 went to another instance; version 3 comes here.
			_, err := rd.Read(r.Ctx, msgs[2])
			if !c.want(err) {
				t.Fatalf("reading version 3 after a stale answer: %v", err)
			}
		})
	}
}
