package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/metrics"
	"github.com/tenancyhq/tenancy/internal/natsconn"
	"github.com/tenancyhq/tenancy/internal/tracing"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Disabler disables an endpoint with a reason, as an event.
type Disabler func(ctx context.Context, webhookID, reason string) error

// Options configure a Webhooker.
type Options struct {
	JS       jetstream.JetStream
	Store    *eventstore.Store
	Secrets  *Secrets
	Sender   *Sender
	Disable  Disabler
	Attempts *AttemptLog
	// State is the endpoint health bucket (EnsureStreams returns it).
	State jetstream.KeyValue
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
func (e *endpoint) apply(raw []byte, env *events.Envelope) {
	_, p, err := events.Decode(raw)
	if err != nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if env.AggVersion != e.cfg.Version+1 {
		return
	}
	e.cfg = domain.EvolveWebhook(e.cfg, domain.Recorded{AggregateID: e.id, ID: env.ID, Time: env.Time, Version: env.AggVersion, Payload: p})
}

func (e *endpoint) config() domain.Webhook {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cfg
}

// New returns a webhooker.
func New(o Options) *Webhooker {
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
	defer metrics.WatchConsumers(w.o.JS, metrics.Consumers{Stream: RedeliveryStream, Group: "webhook-redeliver", Prefix: redeliveryConsumer("")})()
	defer metrics.WatchDeadLetters(w.o.JS, DeadLetterStream)()
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
	for n := 0; ; n++ {
		err := w.watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		w.o.Log.Warn("webhook subscriptions feed interrupted; restarting", "error", err)
		select {
		case <-time.After(min(time.Duration(n+1)*time.Second, 15*time.Second)):
		case <-ctx.Done():
			return nil
		}
	}
}

// subscriptionsFilter is the subject of every webhook subscription event.
func subscriptionsFilter() string {
	return events.Subject(events.PlatformTenantID, events.AggregateWebhook, "*")
}

// watch folds subscription events from the start of the log, then live, and
// reconciles the running endpoints whenever it has caught up.
func (w *Webhooker) watch(ctx context.Context) error {
	st, err := w.o.JS.Stream(ctx, w.o.Store.Stream())
	if err != nil {
		return err
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subscriptionsFilter()}})
	if err != nil {
		return err
	}
	// Consume from a fresh view each time: the ordered consumer starts over.
	w.caughtUp.Store(false)
	w.mu.Lock()
	w.subs = map[string]*subscription{}
	w.mu.Unlock()
	// An empty history has no message to say "caught up".
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subscriptionsFilter()))
	if err != nil {
		return err
	}
	if info.State.Msgs == 0 {
		w.caughtUp.Store(true)
		w.reconcile(ctx)
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			return err
		}
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		e, p, err := events.Decode(m.Data())
		if err != nil {
			w.o.Log.Error("unreadable webhook subscription event; skipped", "seq", md.Sequence.Stream, "error", err)
			continue
		}
		_, _, id, err := events.ParseSubject(m.Subject())
		if err != nil {
			continue
		}
		w.mu.Lock()
		s := w.subs[id]
		if s == nil {
			s = &subscription{}
			w.subs[id] = s
		}
		if _, ok := p.(*events.WebhookCreated); ok {
			s.createdSeq = md.Sequence.Stream
		}
		s.state = domain.EvolveWebhook(s.state, domain.Recorded{AggregateID: id, ID: e.ID, Time: e.Time, Version: e.AggVersion, Payload: p})
		w.mu.Unlock()
		if md.NumPending == 0 {
			w.caughtUp.Store(true)
			w.reconcile(ctx)
		}
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
			go func() { defer w.wg.Done(); w.consume(epCtx, ep, w.o.Store.Stream(), liveConsumer(id), w.handleLive) }()
			go func() {
				defer w.wg.Done()
				w.consume(epCtx, ep, RedeliveryStream, redeliveryConsumer(id), w.handleRedelivery)
			}()
		}
	}
}

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
	if _, err := w.o.JS.CreateOrUpdateConsumer(ctx, RedeliveryStream, jetstream.ConsumerConfig{
		Durable:     redeliveryConsumer(id),
		Description: "requeued and replayed deliveries to " + id,
		AckPolicy:   jetstream.AckExplicitPolicy, AckWait: w.o.AckWait, MaxDeliver: -1,
		MaxAckPending: 1, FilterSubjects: []string{redeliveryPrefix + id},
	}); err != nil {
		return fmt.Errorf("consumer %s: %w", redeliveryConsumer(id), err)
	}
	return nil
}

// cleanup removes a deleted subscription's consumers, queues and secrets.
func (w *Webhooker) cleanup(ctx context.Context, id string) {
	for _, c := range []struct{ stream, name string }{{w.o.Store.Stream(), liveConsumer(id)}, {RedeliveryStream, redeliveryConsumer(id)}} {
		if err := w.o.JS.DeleteConsumer(ctx, c.stream, c.name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			w.o.Log.Warn("cannot delete a deleted webhook's consumer", "webhook_id", id, "consumer", c.name, "error", err)
		}
	}
	for _, name := range []string{RedeliveryStream, DeadLetterStream} {
		prefix := redeliveryPrefix
		if name == DeadLetterStream {
			prefix = dlqPrefix
		}
		if st, err := w.o.JS.Stream(ctx, name); err == nil {
			_ = st.Purge(ctx, jetstream.WithPurgeSubject(prefix+id))
		}
	}
	if err := w.o.Secrets.Delete(ctx, id); err != nil {
		w.o.Log.Warn("cannot erase a deleted webhook's secrets", "webhook_id", id, "error", err)
	}
	_ = w.o.State.Purge(ctx, id)
}

// consume runs handle on every message of an endpoint's consumer until ctx
// ends, reconnecting after errors.
func (w *Webhooker) consume(ctx context.Context, ep *endpoint, stream, name string, handle func(context.Context, *endpoint, jetstream.Msg)) {
	log := w.o.Log.With("webhook_id", ep.id, "consumer", name)
	for n := 0; ctx.Err() == nil; n++ {
		err := func() error {
			cons, err := w.o.JS.Consumer(ctx, stream, name)
			if err != nil {
				return err
			}
			it, err := cons.Messages(jetstream.PullMaxMessages(1))
			if err != nil {
				return err
			}
			defer it.Stop()
			stop := context.AfterFunc(ctx, it.Stop)
			defer stop()
			for {
				m, err := it.Next()
				if err != nil {
					return err
				}
				n = 0
				handle(ctx, ep, m)
			}
		}()
		if ctx.Err() != nil {
			return
		}
		log.Warn("delivery feed interrupted; restarting", "error", err)
		select {
		case <-time.After(min(time.Duration(n+1)*500*time.Millisecond, 10*time.Second)):
		case <-ctx.Done():
		}
	}
}

// delivery is one event to deliver.
type delivery struct {
	seq     uint64
	env     *events.Envelope
	raw     []byte
	attempt int
	replay  bool
	// dlqID deduplicates the dead letter if this attempt exhausts the
	// schedule twice (a crash after dead-lettering, before the ack).
	dlqID string
}

func (w *Webhooker) handleLive(ctx context.Context, ep *endpoint, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		_ = m.Nak()
		return
	}
	env, err := events.Parse(m.Data())
	if err != nil {
		w.o.Log.Error("not an event; not delivered", "webhook_id", ep.id, "seq", md.Sequence.Stream, "error", err)
		_ = m.Ack()
		return
	}
	if m.Subject() == ownSubject(ep.id) {
		ep.apply(m.Data(), env)
	}
	cfg := ep.config()
	if !cfg.Matches(env.Type, env.TenantID) {
		_ = m.Ack()
		return
	}
	if !cfg.Enabled || cfg.Deleted {
		// Disabled at this point of the log: the event waits, unacked,
		// until the endpoint is enabled again (the watcher stops this
		// consumer meanwhile).
		_ = m.NakWithDelay(2 * time.Second)
		return
	}
	w.deliver(ctx, ep, m, delivery{seq: md.Sequence.Stream, env: env, raw: m.Data(), attempt: int(md.NumDelivered),
		dlqID: fmt.Sprintf("live-%s-%d", ep.id, md.Sequence.Stream)})
}

func (w *Webhooker) handleRedelivery(ctx context.Context, ep *endpoint, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		_ = m.Nak()
		return
	}
	var r redelivery
	if err := json.Unmarshal(m.Data(), &r); err != nil {
		w.o.Log.Error("unreadable redelivery; dropped", "webhook_id", ep.id, "error", err)
		_ = m.Term()
		return
	}
	switch r.Kind {
	case "replay":
		if err := w.expandReplay(ctx, ep, m, r); err != nil {
			if ctx.Err() == nil {
				w.o.Log.Warn("replay interrupted; it will start over", "webhook_id", ep.id, "error", err)
				_ = m.NakWithDelay(5 * time.Second)
			}
			return
		}
		_ = m.Ack()
	case "event":
		msg, err := w.o.Store.Get(ctx, r.EventSeq)
		if err != nil {
			if ctx.Err() == nil {
				_ = m.NakWithDelay(5 * time.Second)
			}
			return
		}
		env, err := events.Parse(msg.Data)
		if err != nil {
			_ = m.Term()
			return
		}
		w.deliver(ctx, ep, m, delivery{seq: r.EventSeq, env: env, raw: msg.Data, attempt: int(md.NumDelivered), replay: r.Replay,
			dlqID: "redelivery-" + strconv.FormatUint(md.Sequence.Stream, 10)})
	default:
		_ = m.Term()
	}
}

// deliver makes one attempt and settles the message: ack on success or
// dead-letter, a delayed nak to retry.
//
// With tracing on, the attempt is a span whose parent is the span that
// appended the event, and the request carries its traceparent.
func (w *Webhooker) deliver(ctx context.Context, ep *endpoint, m jetstream.Msg, d delivery) {
	ctx, span := tracing.StartFromTraceParent(ctx, d.env.TraceParent, "webhook deliver", trace.WithSpanKind(trace.SpanKindProducer))
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(attribute.String("tenancy.webhook_id", ep.id), attribute.Int64("tenancy.seq", int64(d.seq)),
			attribute.String("tenancy.event_type", d.env.Type), attribute.String("tenancy.tenant_id", d.env.TenantID),
			attribute.Int("tenancy.attempt", d.attempt), attribute.Bool("tenancy.replay", d.replay))
	}
	cfg := ep.config()
	now := w.o.Clock()
	// Built lazily: the successful path logs nothing.
	log := func() *slog.Logger {
		return w.o.Log.With("webhook_id", ep.id, "tenant_id", d.env.TenantID, "correlation_id", d.env.CorrelationID, "event_id", d.env.ID, "seq", d.seq)
	}
	var keys [][]byte
	for _, v := range cfg.SecretVersions(now) {
		k, err := w.o.Secrets.Key(ctx, ep.id, v)
		if err != nil {
			log().WarnContext(ctx, "signing secret unavailable; delivery postponed", "error", err)
			_ = m.NakWithDelay(5 * time.Second)
			return
		}
		keys = append(keys, k)
	}
	body := d.raw
	if len(body) > w.o.MaxBody && w.o.EventURL != nil {
		if thinned, err := thin(body, w.o.EventURL(d.env.TenantID, d.seq)); err == nil {
			body = thinned
		}
	}
	res := w.o.Sender.Send(ctx, Request{URL: cfg.URL, Keys: keys, EventID: d.env.ID, Seq: d.seq, Attempt: d.attempt, Replay: d.replay, Body: body})
	if ctx.Err() != nil && res.Outcome != Delivered {
		// Shutting down mid-attempt is not the receiver's fault; another
		// instance (or this one, restarted) makes the attempt again.
		_ = m.Nak()
		return
	}
	metrics.WebhookAttempts.WithLabelValues(string(res.Outcome)).Inc()
	metrics.WebhookDuration.WithLabelValues(string(res.Outcome)).Observe(res.Latency.Seconds())
	if span.IsRecording() {
		span.SetAttributes(attribute.String("tenancy.outcome", string(res.Outcome)), attribute.Int("http.response.status_code", res.Status))
		if res.Outcome != Delivered {
			span.SetStatus(codes.Error, res.Error)
		}
	}
	if w.o.Attempts != nil {
		w.o.Attempts.Record(ctx, Attempt{WebhookID: ep.id, EventSeq: d.seq, EventID: d.env.ID, EventType: d.env.Type, TenantID: d.env.TenantID,
			Attempt: d.attempt, Replay: d.replay, At: now, Outcome: res.Outcome, Status: res.Status,
			LatencyMS: float64(res.Latency.Microseconds()) / 1000, Response: res.Response, Error: res.Error})
	}
	switch res.Outcome {
	case Delivered:
		_ = m.Ack()
		w.healthy(ctx, ep)
		return
	case Gone:
		log().WarnContext(ctx, "endpoint answered 410 Gone; disabling it")
		if err := w.o.Disable(ctx, ep.id, fmt.Sprintf("the endpoint answered 410 Gone at %s", now.UTC().Format(time.RFC3339))); err != nil {
			log().ErrorContext(ctx, "cannot disable the endpoint", "error", err)
		}
		// The event stays pending: when the endpoint is enabled again,
		// delivery resumes with it.
		_ = m.NakWithDelay(2 * time.Second)
		return
	}
	log().InfoContext(ctx, "delivery attempt failed", "attempt", d.attempt, "status", res.Status, "error", res.Error)
	w.failing(ctx, ep, now)
	delay, retry := Backoff(w.o.Schedule, d.attempt)
	if retry {
		if res.RetryAfter > 0 {
			delay = res.RetryAfter
		}
		if delay > 0 {
			_ = m.NakWithDelay(delay)
		} else {
			_ = m.Nak()
		}
		return
	}
	dl := DeadLetter{WebhookID: ep.id, EventSeq: d.seq, EventID: d.env.ID, EventType: d.env.Type, TenantID: d.env.TenantID, Replay: d.replay,
		Attempts: d.attempt, Reason: res.Error, LastStatus: res.Status, FailedAt: now.UTC()}
	data, _ := json.Marshal(dl)
	if _, err := w.o.JS.Publish(ctx, dlqPrefix+ep.id, data, jetstream.WithMsgID(d.dlqID)); err != nil {
		log().ErrorContext(ctx, "cannot dead-letter the delivery; retrying it", "error", err)
		_ = m.NakWithDelay(5 * time.Second)
		return
	}
	metrics.WebhookDeadLettered.Inc()
	log().WarnContext(ctx, "delivery dead-lettered after the last attempt", "attempts", d.attempt, "reason", res.Error)
	_ = m.Ack()
}

// healthy clears an endpoint's failure record.
func (w *Webhooker) healthy(ctx context.Context, ep *endpoint) {
	ep.mu.Lock()
	clear := ep.unsure || !ep.failingSince.IsZero()
	ep.unsure, ep.failingSince = false, time.Time{}
	ep.mu.Unlock()
	if clear {
		if err := w.o.State.Purge(ctx, ep.id); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			w.o.Log.Warn("cannot clear endpoint failure state", "webhook_id", ep.id, "error", err)
		}
	}
}

// failing records that an endpoint fails and disables it once it has
// failed without a success for DisableAfter.
func (w *Webhooker) failing(ctx context.Context, ep *endpoint, now time.Time) {
	ep.mu.Lock()
	since := ep.failingSince
	ep.mu.Unlock()
	if since.IsZero() {
		// Another instance, or an earlier run, may have started the clock.
		if e, err := w.o.State.Get(ctx, ep.id); err == nil {
			since, _ = time.Parse(time.RFC3339Nano, string(e.Value()))
		}
		if since.IsZero() {
			since = now
			if _, err := w.o.State.Create(ctx, ep.id, []byte(now.UTC().Format(time.RFC3339Nano))); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
				w.o.Log.Warn("cannot record endpoint failure state", "webhook_id", ep.id, "error", err)
			}
		}
		ep.mu.Lock()
		ep.failingSince, ep.unsure = since, false
		ep.mu.Unlock()
	}
	if w.o.DisableAfter > 0 && now.Sub(since) >= w.o.DisableAfter {
		reason := fmt.Sprintf("no successful delivery since %s (failing for more than %s)", since.UTC().Format(time.RFC3339), w.o.DisableAfter)
		w.o.Log.Warn("disabling a continuously failing endpoint", "webhook_id", ep.id, "reason", reason)
		if err := w.o.Disable(ctx, ep.id, reason); err != nil {
			w.o.Log.Error("cannot disable the endpoint", "webhook_id", ep.id, "error", err)
		}
	}
}

// expandReplay turns a replay request into one redelivery per matching
// event, in log order, behind the request in the endpoint's queue.
func (w *Webhooker) expandReplay(ctx context.Context, ep *endpoint, m jetstream.Msg, r redelivery) error {
	rg := r.Range
	if rg == nil {
		return nil
	}
	cfg := ep.config()
	tenant := "*"
	switch {
	case cfg.TenantID != "" && rg.TenantID != "" && rg.TenantID != cfg.TenantID:
		// A tenant-scoped endpoint never receives another tenant's events.
		return nil
	case cfg.TenantID != "":
		tenant = cfg.TenantID
	case rg.TenantID != "":
		tenant = rg.TenantID
	}
	head, err := w.o.Store.LastSeq(ctx)
	if err != nil {
		return err
	}
	last := head
	if rg.ToSeq != 0 {
		last = min(rg.ToSeq, head)
	}
	st, err := w.o.JS.Stream(ctx, w.o.Store.Stream())
	if err != nil {
		return err
	}
	cc := jetstream.OrderedConsumerConfig{FilterSubjects: []string{"tenancy.evt." + tenant + ".>"}}
	if rg.FromSeq != 0 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, rg.FromSeq
	} else {
		start := rg.FromTime
		cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	if rg.FromSeq > last {
		return nil
	}
	cons, err := st.OrderedConsumer(ctx, cc)
	if err != nil {
		return err
	}
	types := rg.Types
	if len(types) == 0 {
		types = cfg.EventTypes
	}
	queued := 0
	for {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return err
		}
		n := 0
		var futures []jetstream.PubAckFuture
		done := false
		for em := range batch.Messages() {
			n++
			md, err := em.Metadata()
			if err != nil {
				return err
			}
			if md.Sequence.Stream > last || (!rg.ToTime.IsZero() && md.Timestamp.After(rg.ToTime)) {
				done = true
				break
			}
			env, err := events.Parse(em.Data())
			if err == nil && cfg.Matches(env.Type, env.TenantID) && slices.ContainsFunc(types, func(p string) bool { return domain.MatchesType(p, env.Type) }) {
				data, _ := json.Marshal(redelivery{Kind: "event", EventSeq: md.Sequence.Stream, Replay: true})
				f, err := w.o.JS.PublishAsync(redeliveryPrefix+ep.id, data, jetstream.WithMsgID(fmt.Sprintf("replay-%s-%d", r.RequestID, md.Sequence.Stream)))
				if err != nil {
					return err
				}
				futures = append(futures, f)
				queued++
			}
			if md.Sequence.Stream >= last {
				done = true
				break
			}
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		_ = m.InProgress()
		if done || n == 0 {
			w.o.Log.Info("replay queued", "webhook_id", ep.id, "events", queued)
			return nil
		}
	}
}
