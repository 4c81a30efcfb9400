package eventstore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/testenv"
)

func TestParsePubAck(t *testing.T) {
	for in, want := range map[string]uint64{
		`{"stream":"TENANCY","seq":42}`:                 42,
		`{"stream":"TENANCY","seq":7,"duplicate":true}`: 7,
		`{"stream":"TENANCY","domain":"hub","seq":9}`:   9,
	} {
		got, err := eventstore.ParsePubAck([]byte(in))
		if err != nil || got != want {
			t.Errorf("%s: %d %v", in, got, err)
		}
	}
	_, err := eventstore.ParsePubAck([]byte(`{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"},"stream":"TENANCY","seq":0}`))
	if !errors.Is(err, eventstore.ErrWrongSequence) {
		t.Errorf("wrong-sequence error: %v", err)
	}
	if _, err := eventstore.ParsePubAck([]byte(`garbage`)); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("garbage: %v", err)
	}
}

func TestStreamConfigAndAppend(t *testing.T) {
	n := testenv.StartNATS(t)
	ctx := testenv.Context(t, time.Minute)
	st, err := eventstore.EnsureStream(ctx, n.JS, eventstore.StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if !cfg.DenyDelete || !cfg.DenyPurge || !cfg.AllowDirect || !cfg.AllowAtomicPublish || cfg.MaxAge != 0 {
		t.Fatalf("stream config %+v", cfg)
	}
	if err := st.DeleteMsg(ctx, 1); err == nil {
		t.Fatal("the log must refuse deletes")
	}
	s := eventstore.New(n.JS, "")
	subj := "tenancy.evt.t.tenant.a"
	seq, err := s.Append(ctx, []eventstore.Outgoing{{Subject: subj, Data: []byte(`{"n":1}`), MsgID: "m1", CheckSeq: true, ExpectSeq: 0}})
	if err != nil || seq != 1 {
		t.Fatalf("first append: %d %v", seq, err)
	}
	// A second writer that read the empty subject loses.
	if _, err := s.Append(ctx, []eventstore.Outgoing{{Subject: subj, Data: []byte(`{"n":2}`), MsgID: "m2", CheckSeq: true, ExpectSeq: 0}}); !errors.Is(err, eventstore.ErrWrongSequence) {
		t.Fatalf("stale append: %v", err)
	}
	// A retried publish (same msg id) is stored once.
	again, err := s.Append(ctx, []eventstore.Outgoing{{Subject: subj, Data: []byte(`{"n":1}`), MsgID: "m1"}})
	if err != nil || again != 1 {
		t.Fatalf("retried publish: %d %v", again, err)
	}
	// An atomic batch lands whole, or not at all.
	batch := []eventstore.Outgoing{
		{Subject: "tenancy.claim.slug.x", Data: []byte(`{}`), MsgID: "c1", CheckSeq: true},
		{Subject: subj, Data: []byte(`{"n":2}`), MsgID: "m3", CheckSeq: true, ExpectSeq: 1},
	}
	last, err := s.Append(ctx, batch)
	if err != nil || last != 3 {
		t.Fatalf("batch: %d %v", last, err)
	}
	failing := []eventstore.Outgoing{
		{Subject: "tenancy.claim.slug.y", Data: []byte(`{}`), MsgID: "c2", CheckSeq: true},
		{Subject: subj, Data: []byte(`{"n":3}`), MsgID: "m4", CheckSeq: true, ExpectSeq: 1}, // stale
	}
	if _, err := s.Append(ctx, failing); !errors.Is(err, eventstore.ErrWrongSequence) {
		t.Fatalf("stale batch: %v", err)
	}
	if got, _ := s.LastSeq(ctx); got != 3 {
		t.Fatalf("a failed batch stored something: last seq %d", got)
	}
	// A batch retried after a lost acknowledgement is not stored twice.
	if again, err := s.Append(ctx, batch); err != nil || again != 3 {
		t.Fatalf("retried batch: %d %v", again, err)
	}
	msgs, err := s.ReadAll(ctx, subj, 1)
	if err != nil || len(msgs) != 2 || msgs[1].Seq != 3 {
		t.Fatalf("read back: %v %+v", err, msgs)
	}
	last2, err := s.LastFor(ctx, []string{subj, "tenancy.claim.slug.x", "tenancy.claim.slug.none"})
	if err != nil || len(last2) != 2 || last2[subj].Seq != 3 {
		t.Fatalf("last for: %v %+v", err, last2)
	}
}

func TestReadPages(t *testing.T) {
	n := testenv.StartNATS(t)
	ctx := testenv.Context(t, time.Minute)
	if _, err := eventstore.EnsureStream(ctx, n.JS, eventstore.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	s := eventstore.New(n.JS, "")
	s.BatchSize = 7
	for i := range 50 {
		subj := "tenancy.evt.t.tenant.a"
		if i%3 == 0 {
			subj = "tenancy.evt.u.tenant.b"
		}
		if _, err := s.Append(ctx, []eventstore.Outgoing{{Subject: subj, Data: []byte(`{}`)}}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.ReadAll(ctx, "tenancy.evt.t.>", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 33 {
		t.Fatalf("read %d of tenant t's 33 events", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq <= all[i-1].Seq {
			t.Fatal("out of order")
		}
	}
	page, more, err := s.Read(ctx, "tenancy.evt.>", 45, 10)
	if err != nil || len(page) != 6 || more {
		t.Fatalf("last page: %d more=%v %v", len(page), more, err)
	}
}
