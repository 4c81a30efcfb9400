package eventstore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/eventstore/storetest"
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
}

// TestContract runs the event log's contract suite against JetStream, also
// with direct-get batches small enough that every read takes several round
// trips.
func TestContract(t *testing.T) {
	for name, batch := range map[string]int{"default batches": 0, "batches of 7": 7} {
		t.Run(name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) eventstore.Log {
				n := testenv.StartNATS(t)
				if _, err := eventstore.EnsureStream(testenv.Context(t, time.Minute), n.JS, eventstore.StreamConfig{}); err != nil {
					t.Fatal(err)
				}
				s := eventstore.New(n.JS, "")
				if batch > 0 {
					s.BatchSize = batch
				}
				return s
			})
		})
	}
}
