package delivery

import (
	"context"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/consume"
	"github.com/tenancyhq/tenancy/internal/delivery/deadletter"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// replay is a replay request narrowed to what the endpoint may receive.
type replay struct {
	rg     *events.WebhookReplayRequested
	cfg    domain.Webhook
	tenant string // subject token: a tenant id or "*"
	last   uint64 // the last stream sequence in range
	types  []string
}

// wants reports whether the replay includes an event.
func (p replay) wants(env *events.Envelope) bool {
	return p.cfg.Matches(env.Type, env.TenantID) && slices.ContainsFunc(p.types, func(t string) bool { return domain.MatchesType(t, env.Type) })
}

// expandReplay turns a replay request into one redelivery per matching
// event, in log order, behind the request in the endpoint's queue.
func (w *Webhooker) expandReplay(ctx context.Context, ep *endpoint, m *consume.Message, r deadletter.Redelivery) error {
	p, ok, err := w.narrow(ctx, ep, r.Range)
	if err != nil || !ok {
		return err
	}
	st, err := w.o.JS.Stream(ctx, w.o.Store.Stream())
	if err != nil {
		return err
	}
	cc := jetstream.OrderedConsumerConfig{FilterSubjects: []string{"tenancy.evt." + p.tenant + ".>"}}
	if p.rg.FromSeq != 0 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, p.rg.FromSeq
	} else {
		start := p.rg.FromTime
		cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	cons, err := st.OrderedConsumer(ctx, cc)
	if err != nil {
		return err
	}
	queued := 0
	for {
		n, done, err := w.queueBatch(ctx, ep, cons, p, r.RequestID)
		if err != nil {
			return err
		}
		queued += n
		m.InProgress()
		if done {
			w.o.Log.Info("replay queued", "webhook_id", ep.id, "events", queued)
			return nil
		}
	}
}

// narrow applies the endpoint's own scope to a replay range; false when
// nothing in it can be delivered.
func (w *Webhooker) narrow(ctx context.Context, ep *endpoint, rg *events.WebhookReplayRequested) (replay, bool, error) {
	if rg == nil {
		return replay{}, false, nil
	}
	p := replay{rg: rg, cfg: ep.config(), tenant: "*", types: rg.Types}
	switch {
	case p.cfg.TenantID != "" && rg.TenantID != "" && rg.TenantID != p.cfg.TenantID:
		// A tenant-scoped endpoint never receives another tenant's events.
		return p, false, nil
	case p.cfg.TenantID != "":
		p.tenant = p.cfg.TenantID
	case rg.TenantID != "":
		p.tenant = rg.TenantID
	}
	if len(p.types) == 0 {
		p.types = p.cfg.EventTypes
	}
	head, err := w.o.Store.LastSeq(ctx)
	if err != nil {
		return p, false, err
	}
	p.last = head
	if rg.ToSeq != 0 {
		p.last = min(rg.ToSeq, head)
	}
	return p, rg.FromSeq <= p.last, nil
}

// queueBatch queues the wanted events of the next batch of the range and
// waits until they are stored; done once the range is exhausted.
func (w *Webhooker) queueBatch(ctx context.Context, ep *endpoint, cons jetstream.Consumer, p replay, requestID string) (int, bool, error) {
	batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		return 0, false, err
	}
	n, done := 0, false
	var futures []jetstream.PubAckFuture
	for em := range batch.Messages() {
		n++
		md, err := em.Metadata()
		if err != nil {
			return 0, false, err
		}
		seq := md.Sequence.Stream
		if seq > p.last || (!p.rg.ToTime.IsZero() && md.Timestamp.After(p.rg.ToTime)) {
			done = true
			break
		}
		if env, _, err := events.Decode(em.Data()); err == nil && p.wants(env) {
			f, err := w.o.Queues.QueueReplayed(ctx, ep.id, requestID, seq)
			if err != nil {
				return 0, false, err
			}
			futures = append(futures, f)
		}
		if seq >= p.last {
			done = true
			break
		}
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return 0, false, err
		case <-ctx.Done():
			return 0, false, ctx.Err()
		}
	}
	return len(futures), done || n == 0, nil
}
