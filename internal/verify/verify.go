// Package verify walks the event log and checks every event's signature and
// every aggregate's version sequence and hash chain.
package verify

import (
	"context"
	"fmt"

	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Report summarizes a verification that passed.
type Report struct {
	Events     int
	Aggregates int
	LastSeq    uint64
	Keys       int
}

// Log verifies every event matching filter (events.AllSubjects for the
// whole log, events.TenantSubjects(id) for one tenant). The first break is
// returned as an *events.VerifyError naming the event.
func Log(ctx context.Context, store *eventstore.Store, keys *events.KeySet, filter string) (Report, error) {
	v := events.NewChainVerifier(keys)
	var rep Report
	rep.Keys = len(keys.Keys())
	from := uint64(1)
	for {
		msgs, more, err := store.Read(ctx, filter, from, 1000)
		if err != nil {
			return rep, fmt.Errorf("reading the log at seq %d: %w", from, err)
		}
		for _, m := range msgs {
			if err := v.Next(m.Seq, m.Subject, m.Data); err != nil {
				return rep, err
			}
			rep.LastSeq = m.Seq
		}
		rep.Events, rep.Aggregates = v.Count(), v.Aggregates()
		if !more || len(msgs) == 0 {
			return rep, nil
		}
		from = msgs[len(msgs)-1].Seq + 1
	}
}
