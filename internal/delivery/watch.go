package delivery

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/consume"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// subscriptionsFilter is the subject of every webhook subscription event.
func subscriptionsFilter() string {
	return events.Subject(events.PlatformTenantID, events.AggregateWebhook, "*")
}

// watch folds subscription events from the start of the log, then live, and
// reconciles the running endpoints whenever it has caught up.
func (w *Webhooker) watch(ctx context.Context) error {
	// An empty history has no message to say "caught up".
	st, err := w.o.JS.Stream(ctx, w.o.Store.Stream())
	if err != nil {
		return err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subscriptionsFilter()))
	if err != nil {
		return err
	}
	if info.State.Msgs == 0 {
		w.caughtUp.Store(true)
		w.reconcile(ctx)
	}
	src := consume.Source{Stream: w.o.Store.Stream(), Ordered: &jetstream.OrderedConsumerConfig{FilterSubjects: []string{subscriptionsFilter()}}}
	o := consume.Options{Prefetch: 256, Reader: w.o.Reader(), Poison: w.poison("webhook subscriptions"), Log: w.o.Log}
	return consume.Run(ctx, w.o.JS, src, o, w.fold)
}

// fold applies one subscription event to the watcher's view.
func (w *Webhooker) fold(ctx context.Context, m *consume.Message) {
	_, _, id, err := events.ParseSubject(m.Subject)
	if err != nil {
		return
	}
	w.mu.Lock()
	s := w.subs[id]
	if s == nil {
		s = &subscription{}
		w.subs[id] = s
	}
	if _, ok := m.Payload.(*events.WebhookCreated); ok {
		s.createdSeq = m.Seq
	}
	s.state = domain.EvolveWebhook(s.state, domain.RecordedFrom(id, m.Seq, m.Envelope, m.Payload))
	w.mu.Unlock()
	if m.Pending == 0 {
		w.caughtUp.Store(true)
		w.reconcile(ctx)
	}
}

// Subscriptions returns the subscriptions as the watcher last saw them.
func (w *Webhooker) Subscriptions() []domain.Webhook {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]domain.Webhook, 0, len(w.subs))
	for _, s := range w.subs {
		out = append(out, s.state)
	}
	return out
}

// poison returns the poison handler of the consumer named reader.
func (w *Webhooker) poison(reader string) func(context.Context, *consume.Message, error) error {
	return func(ctx context.Context, m *consume.Message, err error) error {
		return w.o.Poison(ctx, reader, m, err)
	}
}
