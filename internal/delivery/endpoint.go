package delivery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/consume"
	"github.com/tenancyhq/tenancy/internal/delivery/deadletter"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

func liveConsumer(id string) string { return "webhook-" + id }

// ownSubject is the subject of a subscription's own events.
func ownSubject(id string) string {
	return events.Subject(events.PlatformTenantID, events.AggregateWebhook, id)
}

// liveFilters are the live consumer's subjects: the events the subscription
// can want, plus its own events. Reading its own events in log order means
// a configuration change (a rotated secret, a disable) is in force for every
// event after it in the log, however far behind the watcher is; events
// before it may already see it when the watcher got there first.
func liveFilters(w domain.Webhook) []string {
	filters := filterSubjects(w)
	own := ownSubject(w.ID)
	for _, f := range filters {
		if subjectMatches(f, own) {
			return filters
		}
	}
	// JetStream refuses overlapping filters, hence the check above.
	return append(filters, own)
}

// subjectMatches reports whether a NATS filter (with * and >) matches a
// literal subject.
func subjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(f) == len(s)
}
func redeliveryConsumer(id string) string { return "webhook-redeliver-" + id }

// filterSubjects narrows an endpoint's consumer to the aggregates its event
// types can come from, and to its tenant; Matches still decides per event.
func filterSubjects(w domain.Webhook) []string {
	tenant := "*"
	if w.TenantID != "" {
		tenant = w.TenantID
	}
	var kinds []string
	for _, p := range w.EventTypes {
		kind := ""
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			// Only a prefix that spells out the aggregate ("tenancy.tenant.")
			// narrows the subjects.
			if rest, ok := strings.CutPrefix(prefix, "tenancy."); ok {
				if k, _, found := strings.Cut(rest, "."); found {
					kind = k
				}
			}
		} else {
			kind = events.AggregateOfType(p)
		}
		if kind == "" {
			return []string{"tenancy.evt." + tenant + ".>"}
		}
		if !slices.Contains(kinds, kind) {
			kinds = append(kinds, kind)
		}
	}
	slices.Sort(kinds)
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = "tenancy.evt." + tenant + "." + k + ".>"
	}
	return out
}

func (w *Webhooker) ensureConsumers(ctx context.Context, s *subscription, filters []string) error {
	id := s.state.ID
	if _, err := w.o.JS.CreateOrUpdateConsumer(ctx, w.o.Store.Stream(), jetstream.ConsumerConfig{
		Durable:     liveConsumer(id),
		Description: "webhook deliveries to " + id,
		// Delivery starts after the subscription was created, whatever
		// instance gets here first.
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: s.createdSeq + 1,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: w.o.AckWait, MaxDeliver: -1,
		MaxAckPending: 1, FilterSubjects: filters,
	}); err != nil {
		return fmt.Errorf("consumer %s: %w", liveConsumer(id), err)
	}
	if _, err := w.o.JS.CreateOrUpdateConsumer(ctx, deadletter.RedeliveryStream, jetstream.ConsumerConfig{
		Durable:     redeliveryConsumer(id),
		Description: "requeued and replayed deliveries to " + id,
		AckPolicy:   jetstream.AckExplicitPolicy, AckWait: w.o.AckWait, MaxDeliver: -1,
		MaxAckPending: 1, FilterSubjects: []string{deadletter.RedeliverySubject(id)},
	}); err != nil {
		return fmt.Errorf("consumer %s: %w", redeliveryConsumer(id), err)
	}
	return nil
}

// cleanup removes a deleted subscription's consumers, queues and secrets.
func (w *Webhooker) cleanup(ctx context.Context, id string) {
	for _, c := range []struct{ stream, name string }{{w.o.Store.Stream(), liveConsumer(id)}, {deadletter.RedeliveryStream, redeliveryConsumer(id)}} {
		if err := w.o.JS.DeleteConsumer(ctx, c.stream, c.name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			w.o.Log.Warn("cannot delete a deleted webhook's consumer", "webhook_id", id, "consumer", c.name, "error", err)
		}
	}
	w.o.Queues.Purge(ctx, id)
	if err := w.o.Secrets.Delete(ctx, id); err != nil {
		w.o.Log.Warn("cannot erase a deleted webhook's secrets", "webhook_id", id, "error", err)
	}
	_ = w.o.State.Purge(ctx, id)
}

// consume runs handle on every message of an endpoint's consumer, one at a
// time, until ctx ends.
func (w *Webhooker) consume(ctx context.Context, ep *endpoint, stream, name string, raw bool, handle func(context.Context, *endpoint, *consume.Message)) {
	log := w.o.Log.With("webhook_id", ep.id, "consumer", name)
	o := consume.Options{Raw: raw, Log: log}
	if !raw {
		o.Reader, o.Poison = w.o.Reader(), w.poison("webhook "+ep.id)
	}
	err := consume.Run(ctx, w.o.JS, consume.Source{Stream: stream, Name: name}, o,
		func(ctx context.Context, m *consume.Message) { handle(ctx, ep, m) })
	if err != nil {
		log.Error("deliveries to this endpoint stopped; they resume on the next change of the subscription or a restart", "error", err)
	}
}
