package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tenancyhq/tenancy/internal/consume"
	"github.com/tenancyhq/tenancy/internal/delivery/attempts"
	"github.com/tenancyhq/tenancy/internal/delivery/deadletter"
	"github.com/tenancyhq/tenancy/internal/metrics"
	"github.com/tenancyhq/tenancy/internal/tracing"
	"github.com/tenancyhq/tenancy/pkg/events"
)

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

func (w *Webhooker) handleLive(ctx context.Context, ep *endpoint, m *consume.Message) {
	if m.Subject == ownSubject(ep.id) {
		ep.apply(m)
	}
	cfg := ep.config()
	if !cfg.Matches(m.Envelope.Type, m.Envelope.TenantID) {
		m.Ack()
		return
	}
	if !cfg.Enabled || cfg.Deleted {
		// Disabled at this point of the log: the event waits, unacked,
		// until the endpoint is enabled again (the watcher stops this
		// consumer meanwhile).
		m.Retry(2 * time.Second)
		return
	}
	w.deliver(ctx, ep, m, delivery{seq: m.Seq, env: m.Envelope, raw: m.Data, attempt: m.Delivered,
		dlqID: fmt.Sprintf("live-%s-%d", ep.id, m.Seq)})
}

func (w *Webhooker) handleRedelivery(ctx context.Context, ep *endpoint, m *consume.Message) {
	var r deadletter.Redelivery
	if err := json.Unmarshal(m.Data, &r); err != nil {
		w.o.Log.Error("unreadable redelivery; dropped", "webhook_id", ep.id, "error", err)
		m.Drop()
		return
	}
	switch r.Kind {
	case deadletter.KindReplay:
		if err := w.expandReplay(ctx, ep, m, r); err != nil {
			if ctx.Err() == nil {
				w.o.Log.Warn("replay interrupted; it will start over", "webhook_id", ep.id, "error", err)
				m.Retry(5 * time.Second)
			}
			return
		}
		m.Ack()
	case deadletter.KindEvent:
		msg, err := w.o.Store.Get(ctx, r.EventSeq)
		if err != nil {
			if ctx.Err() == nil {
				m.Retry(5 * time.Second)
			}
			return
		}
		env, _, err := events.Decode(msg.Data)
		if err != nil {
			m.Drop()
			return
		}
		w.deliver(ctx, ep, m, delivery{seq: r.EventSeq, env: env, raw: msg.Data, attempt: m.Delivered, replay: r.Replay,
			dlqID: "redelivery-" + strconv.FormatUint(m.Seq, 10)})
	default:
		m.Drop()
	}
}

// deliver makes one attempt and settles the message: ack on success or
// dead-letter, a delayed retry otherwise.
//
// With tracing on, the attempt is a span whose parent is the span that
// appended the event, and the request carries its traceparent.
func (w *Webhooker) deliver(ctx context.Context, ep *endpoint, m *consume.Message, d delivery) {
	ctx, span := tracing.StartFromTraceParent(ctx, d.env.TraceParent, "webhook deliver", trace.WithSpanKind(trace.SpanKindProducer))
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(attribute.String("tenancy.webhook_id", ep.id), attribute.Int64("tenancy.seq", int64(d.seq)),
			attribute.String("tenancy.event_type", d.env.Type), attribute.String("tenancy.tenant_id", d.env.TenantID),
			attribute.Int("tenancy.attempt", d.attempt), attribute.Bool("tenancy.replay", d.replay))
	}
	cfg := ep.config()
	now := w.o.Clock()
	keys, err := w.signingKeys(ctx, ep.id, cfg.SecretVersions(now))
	if err != nil {
		w.logFor(ep, d).WarnContext(ctx, "signing secret unavailable; delivery postponed", "error", err)
		m.Retry(5 * time.Second)
		return
	}
	body := d.raw
	if len(body) > w.o.MaxBody && w.o.EventURL != nil {
		if thinned, err := thin(body, w.o.EventURL(d.env.TenantID, d.seq)); err == nil {
			body = thinned
		}
	}
	res := w.o.Sender.Send(ctx, Request{URL: cfg.URL, Keys: keys, EventID: d.env.ID, Seq: d.seq, Attempt: d.attempt, Replay: d.replay, Body: body})
	if ctx.Err() != nil && res.Outcome != attempts.Delivered {
		// Shutting down mid-attempt is not the receiver's fault; another
		// instance (or this one, restarted) makes the attempt again.
		m.Retry(0)
		return
	}
	w.observe(ctx, span, ep, d, now, res)
	w.settle(ctx, ep, m, d, now, res)
}

// logFor is built lazily: the successful path logs nothing.
func (w *Webhooker) logFor(ep *endpoint, d delivery) *slog.Logger {
	return w.o.Log.With("webhook_id", ep.id, "tenant_id", d.env.TenantID, "correlation_id", d.env.CorrelationID, "event_id", d.env.ID, "seq", d.seq)
}

// signingKeys returns the HMAC keys of the secret versions that sign now.
func (w *Webhooker) signingKeys(ctx context.Context, webhookID string, versions []int) ([][]byte, error) {
	keys := make([][]byte, 0, len(versions))
	for _, v := range versions {
		k, err := w.o.Secrets.Key(ctx, webhookID, v)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// observe counts, traces and records an attempt.
func (w *Webhooker) observe(ctx context.Context, span trace.Span, ep *endpoint, d delivery, now time.Time, res AttemptResult) {
	metrics.WebhookAttempts.WithLabelValues(string(res.Outcome)).Inc()
	metrics.WebhookDuration.WithLabelValues(string(res.Outcome)).Observe(res.Latency.Seconds())
	if span.IsRecording() {
		span.SetAttributes(attribute.String("tenancy.outcome", string(res.Outcome)), attribute.Int("http.response.status_code", res.Status))
		if res.Outcome != attempts.Delivered {
			span.SetStatus(codes.Error, res.Error)
		}
	}
	if w.o.Attempts != nil {
		w.o.Attempts.Record(ctx, attempts.Attempt{WebhookID: ep.id, EventSeq: d.seq, EventID: d.env.ID, EventType: d.env.Type, TenantID: d.env.TenantID,
			Attempt: d.attempt, Replay: d.replay, At: now, Outcome: res.Outcome, Status: res.Status,
			LatencyMS: float64(res.Latency.Microseconds()) / 1000, Response: res.Response, Error: res.Error})
	}
}

// settle acts on an attempt's outcome: ack a delivery, disable an endpoint
// that is gone, retry on the schedule, or dead-letter once it is exhausted.
func (w *Webhooker) settle(ctx context.Context, ep *endpoint, m *consume.Message, d delivery, now time.Time, res AttemptResult) {
	switch res.Outcome {
	case attempts.Delivered:
		m.Ack()
		w.healthy(ctx, ep)
		return
	case attempts.Gone:
		w.logFor(ep, d).WarnContext(ctx, "endpoint answered 410 Gone; disabling it")
		if err := w.o.Disable(ctx, ep.id, fmt.Sprintf("the endpoint answered 410 Gone at %s", now.UTC().Format(time.RFC3339))); err != nil {
			w.logFor(ep, d).ErrorContext(ctx, "cannot disable the endpoint", "error", err)
		}
		// The event stays pending: when the endpoint is enabled again,
		// delivery resumes with it.
		m.Retry(2 * time.Second)
		return
	}
	w.logFor(ep, d).InfoContext(ctx, "delivery attempt failed", "attempt", d.attempt, "status", res.Status, "error", res.Error)
	w.failing(ctx, ep, now)
	if delay, retry := RetryDelay(w.o.Schedule, d.attempt); retry {
		if res.RetryAfter > 0 {
			delay = res.RetryAfter
		}
		m.Retry(delay)
		return
	}
	dl := deadletter.DeadLetter{WebhookID: ep.id, EventSeq: d.seq, EventID: d.env.ID, EventType: d.env.Type, TenantID: d.env.TenantID, Replay: d.replay,
		Attempts: d.attempt, Reason: res.Error, LastStatus: res.Status, FailedAt: now.UTC()}
	if err := w.o.Queues.Put(ctx, dl, d.dlqID); err != nil {
		w.logFor(ep, d).ErrorContext(ctx, "cannot dead-letter the delivery; retrying it", "error", err)
		m.Retry(5 * time.Second)
		return
	}
	metrics.WebhookDeadLettered.Inc()
	w.logFor(ep, d).WarnContext(ctx, "delivery dead-lettered after the last attempt", "attempts", d.attempt, "reason", res.Error)
	m.Ack()
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
