// Package delivery delivers the event log to webhook subscribers: one
// durable consumer per enabled subscription with one delivery in flight
// (per-endpoint order across any number of instances), Standard Webhooks
// signatures, retries on a schedule, dead letters, and the endpoint's
// health. Its queues, secrets and attempt record are the subpackages
// deadletter, secrets and attempts.
package delivery

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/consume"
	"github.com/tenancyhq/tenancy/internal/delivery/attempts"
	"github.com/tenancyhq/tenancy/internal/delivery/deadletter"
	"github.com/tenancyhq/tenancy/internal/delivery/secrets"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/integrity"
	"github.com/tenancyhq/tenancy/internal/metrics"
	"github.com/tenancyhq/tenancy/internal/natsconn"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// Disabler disables an endpoint with a reason, as an event.
type Disabler func(ctx context.Context, webhookID, reason string) error

// Options configure a Webhooker.
type Options struct {
	JS       jetstream.JetStream
	Store    *eventstore.Store
	Secrets  *secrets.Store
	Queues   *deadletter.Queues
	Sender   *Sender
	Disable  Disabler
	Attempts *attempts.Log
	// State is the endpoint health bucket (EnsureState returns it).
	State jetstream.KeyValue
	// Reader returns a new integrity reader for one consumer of the log
	// (each endpoint and the subscription watcher); Poison hears of the
	// messages that fail its checks, which are never delivered.
	Reader func() *integrity.Reader
	Poison func(ctx context.Context, reader string, m *consume.Message, err error) error
	// Schedule is the delay before each attempt; the first must be 0.
	Schedule     []time.Duration
	MaxBody      int
	DisableAfter time.Duration
	// EventURL is where an oversized event can be fetched (its dataref).
	EventURL func(tenantID string, seq uint64) string
	// AckWait is how long an attempt may take before another instance
	// takes the delivery over; it must exceed the HTTP timeout.
	AckWait time.Duration
	Clock   func() time.Time
	Log     *slog.Logger
}

// Webhooker delivers the log to every enabled subscription. Any number of
// instances can run: each endpoint's durable consumer allows one delivery in
// flight (MaxAckPending 1), which keeps per-endpoint order across instances,
// and the stream's redelivery makes a crashed attempt happen again.
type Webhooker struct {
	o Options

	mu        sync.Mutex
	subs      map[string]*subscription
	endpoints map[string]*endpoint
	wg        sync.WaitGroup
	// retry is set when an endpoint could not be set up (JetStream busy or
	// electing a leader); a ticker reconciles again instead of waiting for
	// the next subscription change.
	retry atomic.Bool
	// caughtUp is set while the watcher's view of the subscriptions is
	// complete; a restarted watcher reloads it from the start of the log,
	// and reconciling a half-loaded view would act on old states.
	caughtUp atomic.Bool
}

// subscription is what the watcher knows about a subscription.
type subscription struct {
	state      domain.Webhook
	createdSeq uint64
}

// endpoint is a running delivery for one enabled subscription.
type endpoint struct {
	id      string
	cancel  context.CancelFunc
	filters []string

	mu           sync.Mutex
	cfg          domain.Webhook
	failingSince time.Time
	// unsure is set until a success has cleared failure state a previous
	// run may have left.
	unsure bool
}

// apply folds one of the subscription's own events into its configuration
// unless the watcher has already applied it.
func (e *endpoint) apply(m *consume.Message) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if m.Envelope.AggVersion != e.cfg.Version+1 {
		return
	}
	e.cfg = domain.EvolveWebhook(e.cfg, domain.RecordedFrom(e.id, m.Seq, m.Envelope, m.Payload))
}

func (e *endpoint) config() domain.Webhook {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cfg
}

// New returns a webhooker.
func New(o Options) *Webhooker {
	if o.Reader == nil {
		checker := integrity.NewLogChecker(o.Store)
		o.Reader = func() *integrity.Reader { return integrity.NewReader(checker, o.Store, 0) }
	}
	if o.Poison == nil {
		o.Poison = func(ctx context.Context, reader string, m *consume.Message, err error) error {
			o.Log.ErrorContext(ctx, "not a valid event; not delivered", "reader", reader, "seq", m.Seq, "error", err)
			return nil
		}
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.AckWait <= 0 {
		o.AckWait = time.Minute
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 256 << 10
	}
	return &Webhooker{o: o, subs: map[string]*subscription{}, endpoints: map[string]*endpoint{}}
}

// Run follows the subscriptions in the log and delivers to each enabled one
// until ctx ends.
func (w *Webhooker) Run(ctx context.Context) error {
	// The endpoints' backlogs and the dead letters are metrics while this
	// webhooker runs; one series per group, however many endpoints.
	defer metrics.WatchConsumers(w.o.JS, metrics.Consumers{Stream: w.o.Store.Stream(), Group: "webhook", Prefix: liveConsumer("")})()
	defer metrics.WatchConsumers(w.o.JS, metrics.Consumers{Stream: deadletter.RedeliveryStream, Group: "webhook-redeliver", Prefix: redeliveryConsumer("")})()
	defer metrics.WatchDeadLetters(w.o.JS, deadletter.DeadLetterStream)()
	defer w.wg.Wait()
	defer func() {
		w.mu.Lock()
		for _, ep := range w.endpoints {
			ep.cancel()
		}
		w.mu.Unlock()
	}()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if w.caughtUp.Load() && w.retry.Swap(false) {
					w.reconcile(ctx)
				}
			}
		}
	}()
	return w.watch(ctx)
}

// reconcile starts, updates and stops endpoints to match the subscriptions.
func (w *Webhooker) reconcile(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, s := range w.subs {
		ep := w.endpoints[id]
		switch {
		case s.state.Deleted:
			if ep != nil {
				ep.cancel()
				delete(w.endpoints, id)
			}
			w.cleanup(ctx, id)
			// Forget it: cleaning up once per process is enough.
			delete(w.subs, id)
		case !s.state.Enabled:
			if ep != nil {
				ep.cancel()
				delete(w.endpoints, id)
			}
		default:
			filters := liveFilters(s.state)
			if ep != nil && slices.Equal(ep.filters, filters) {
				ep.mu.Lock()
				// The live consumer may already have applied newer events.
				if s.state.Version > ep.cfg.Version {
					ep.cfg = s.state
				}
				ep.mu.Unlock()
				continue
			}
			if ep != nil {
				ep.cancel()
			}
			if err := w.ensureConsumers(ctx, s, filters); err != nil {
				delete(w.endpoints, id)
				if natsconn.Transient(err) {
					w.o.Log.Warn("cannot set up deliveries yet; retrying", "webhook_id", id, "error", err)
					w.retry.Store(true)
				} else {
					w.o.Log.Error("cannot set up deliveries; will retry on the next change or restart", "webhook_id", id, "error", err)
				}
				continue
			}
			ep = &endpoint{id: id, filters: filters, cfg: s.state, unsure: true}
			epCtx, cancel := context.WithCancel(ctx)
			ep.cancel = cancel
			w.endpoints[id] = ep
			w.wg.Add(2)
			go func() {
				defer w.wg.Done()
				w.consume(epCtx, ep, w.o.Store.Stream(), liveConsumer(id), false, w.handleLive)
			}()
			go func() {
				defer w.wg.Done()
				w.consume(epCtx, ep, deadletter.RedeliveryStream, redeliveryConsumer(id), true, w.handleRedelivery)
			}()
		}
	}
}

// StateBucket remembers since when each endpoint has been failing.
const StateBucket = "TENANCY_WEBHOOK_STATE"

// EnsureState creates (or opens) the endpoint health bucket.
func EnsureState(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := natsconn.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket: StateBucket, Description: "webhook endpoint health", History: 1, Replicas: max(replicas, 1), Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", StateBucket, err)
	}
	return kv, nil
}
