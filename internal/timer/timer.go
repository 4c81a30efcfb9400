// Package timer is Tenancy's durable timer: every deadline of the product
// (a re-KYC grace period now; registration expiry, trials and entitlement
// expiry later) is one timer here, kept by JetStream itself rather than by
// a process that could be down when the deadline passes.
//
// A timer is a key, a due time and a small JSON payload. It lives in the
// TENANCY_TIMERS stream as a JetStream message schedule (nats-server 2.12+):
// Schedule publishes a message on tenancy.timer.sched.<key> carrying
// "Nats-Schedule: @at <due>" and "Nats-Schedule-Target:
// tenancy.timer.fire.<key>". When the time comes the server itself stores a
// copy on the target subject (the firing) and purges the schedule message.
// Run hands each firing to a handler through a durable consumer shared by
// every instance.
//
// Invariants, and the server behaviour (nats-server v2.15.2) they rest on:
//
//   - One pending timer per key. The server adds "Nats-Rollup: sub" to every
//     schedule message (server/stream.go:6924-6927), so scheduling a key
//     again replaces its earlier schedule, and storing a message on a
//     subject drops the subject's old schedule from the scheduler
//     (server/filestore.go:5539-5547, scheduler.go:67-80).
//   - Never early. A schedule fires once its time is <= the server's clock
//     (server/thw/thw.go:157); the server's timer aims at the earliest due
//     schedule but runs at most every 250ms (server/scheduler.go:139-145),
//     so a timer fires at its time or up to about 250ms after. A time in
//     the past is accepted (only the pattern is checked,
//     server/scheduler.go:325-331) and fires at the next run.
//   - Durable. Schedules are in the stream, recovered by a restarted server
//     (server/filestore.go:2502, 2351-2443); the stream is a work queue, so a
//     firing stays until a handler succeeded with it, whether or not any Run
//     was going when it fired, and is gone after.
//   - At least once. A firing is acknowledged only when the handler returned
//     nil and is redelivered otherwise, after a backoff. Handlers must be
//     idempotent: the product's handlers record each firing as a domain
//     event, and the aggregate's decider ignores a repeat (and a firing that
//     no longer applies, such as a grace period already resolved).
//
// What it is not: the server, not the caller, decides the moment of firing
// (its clock); a timer fires once (@at only; no repetition); and Cancel
// cannot stop a firing already handed to a handler.
package timer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/backoff"
	"github.com/tenancyhq/tenancy/internal/consume"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/metrics"
	"github.com/tenancyhq/tenancy/internal/natsconn"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// Stream is the stream holding timers: their pending schedules and their
// firings not yet handled.
const Stream = "TENANCY_TIMERS"

// Subjects of the stream. A key is appended to each.
const (
	// SchedulePrefix carries a key's pending schedule (at most one message
	// per key).
	SchedulePrefix = "tenancy.timer.sched."
	// FirePrefix carries the firings, written by the server when a schedule
	// comes due.
	FirePrefix = "tenancy.timer.fire."
)

// Limits of a timer.
const (
	// MaxKeyLen bounds a key: it is a subject token sequence, stored twice
	// per timer and in every firing.
	MaxKeyLen = 200
	// MaxPayload bounds a payload: a timer points at domain state (an id, a
	// reason), it does not carry it.
	MaxPayload = 16 << 10
)

// Consumer settings of Run.
const (
	// concurrency is how many firings one instance handles at once: firings
	// are independent, and a slow one should not hold up the others.
	concurrency = 4
	// ackWait is how long the server waits for a handler before giving the
	// firing to another instance; handlerTimeout, well below it, cuts a
	// handler off first, so that one firing is not worked on twice at once.
	ackWait        = time.Minute
	handlerTimeout = 30 * time.Second
)

// retry paces redelivery of a firing whose handler failed: soon at first
// (most failures are a dependency blinking), then no more than every five
// minutes.
var retry = backoff.Policy{Base: time.Second, Max: 5 * time.Minute}

// Timers schedules, cancels and consumes timers on the Stream.
type Timers struct {
	js     jetstream.JetStream
	stream jetstream.Stream
}

// Open creates the stream, or updates it to this configuration, and returns
// its timers. replicas is the stream's replication (R1 in dev, R3 in a
// cluster).
//
// The stream is a work queue (a handled firing is removed, so the stream
// holds only pending timers and unhandled firings), on file storage,
// with message schedules allowed (which needs roll-ups, and purges: Cancel
// uses them). Being a work queue, it admits one durable consumer per
// subject: every instance of the product runs the same Run consumer.
func Open(ctx context.Context, js jetstream.JetStream, replicas int) (*Timers, error) {
	if replicas < 1 {
		replicas = 1
	}
	st, err := natsconn.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:              Stream,
		Description:       "Tenancy durable timers: pending schedules and unhandled firings",
		Subjects:          []string{SchedulePrefix + ">", FirePrefix + ">"},
		Retention:         jetstream.WorkQueuePolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		Discard:           jetstream.DiscardOld, // schedules refuse DiscardNew
		AllowMsgSchedules: true,
		AllowRollup:       true, // schedules require it
		AllowDirect:       true, // operators read a pending timer by subject
	})
	if err != nil {
		return nil, fmt.Errorf("timer: ensure stream %s: %w", Stream, err)
	}
	return &Timers{js: js, stream: st}, nil
}

// ValidKey reports whether key can name a timer, as an error of kind
// domain.ErrInvalid. A key is one or more tokens joined by dots, each of
// ASCII letters, digits, '_' and '-' (so "rekyc.<uuid>" is a key): a
// literal NATS subject suffix, without wildcards, spaces or empty tokens,
// and the dots let operators and consumers select keys by prefix.
func ValidKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("%w: timer key must be 1 to %d characters, got %d", domain.ErrInvalid, MaxKeyLen, len(key))
	}
	for tok := range strings.SplitSeq(key, ".") {
		if tok == "" {
			return fmt.Errorf("%w: timer key %q has an empty token", domain.ErrInvalid, key)
		}
		for _, c := range []byte(tok) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
				return fmt.Errorf("%w: timer key %q: only letters, digits, '_', '-' and '.' between tokens are allowed", domain.ErrInvalid, key)
			}
		}
	}
	return nil
}

// Schedule sets the timer key to fire at at with payload, a JSON value (or
// empty) that Run hands back unchanged.
//
// Scheduling a key again replaces its pending schedule: one pending timer
// per key, the last one scheduled. Scheduling the same key, time and payload
// twice is therefore harmless. A time in the past fires at once. Once a
// timer has fired, scheduling its key again sets a new timer.
//
// A Schedule issued in the instant its key's previous schedule fires can be
// lost: the server, storing the firing, purges the key's schedule subject,
// which may by then hold the new schedule (server/stream.go:7543-7551).
// Callers that reschedule near a deadline check, when handling the firing,
// whether a later deadline applies and schedule it again.
func (t *Timers) Schedule(ctx context.Context, key string, at time.Time, payload []byte) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	if at.IsZero() {
		return fmt.Errorf("%w: timer %s has no due time", domain.ErrInvalid, key)
	}
	if len(payload) > MaxPayload {
		return fmt.Errorf("%w: timer %s payload is %d bytes, over %d", domain.ErrInvalid, key, len(payload), MaxPayload)
	}
	if len(payload) > 0 && !json.Valid(payload) {
		return fmt.Errorf("%w: timer %s payload is not JSON", domain.ErrInvalid, key)
	}
	m := &nats.Msg{Subject: SchedulePrefix + key, Header: nats.Header{}, Data: encode(at, payload)}
	// RFC 3339 with nanoseconds: the server parses fractions of a second
	// (time.Parse accepts them), whereas nats.go's WithScheduleAt truncates
	// to the second, which would fire up to a second early.
	m.Header.Set(jetstream.ScheduleHeader, "@at "+at.UTC().Format(time.RFC3339Nano))
	m.Header.Set(jetstream.ScheduleTargetHeader, FirePrefix+key)
	if _, err := t.js.PublishMsg(ctx, m, jetstream.WithExpectStream(Stream)); err != nil {
		return fmt.Errorf("timer: schedule %s: %w", key, err)
	}
	return nil
}

// Cancel removes key's pending timer; cancelling a key with none is fine.
// It also withdraws a firing of key not yet handled, so that a deadline
// resolved in time does not reach its handler; a firing already handed to
// a handler still runs (that handler finds the deadline resolved).
func (t *Timers) Cancel(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	// The schedule first: a firing it produces meanwhile is then stored
	// before the second purge looks.
	for _, subject := range []string{SchedulePrefix + key, FirePrefix + key} {
		if err := t.stream.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
			return fmt.Errorf("timer: cancel %s: %w", key, err)
		}
	}
	return nil
}

// Fired is one firing of a timer.
type Fired struct {
	Key string
	// At is when the timer was due (as scheduled), not when it fired.
	At time.Time
	// Payload is the payload given to Schedule (nil if none).
	Payload []byte
	// Delivered counts the deliveries of this firing (1 the first time).
	Delivered int
}

// Run hands every firing to fire, until ctx ends; it then returns ctx's
// error. It reads with the durable consumer named consumer, created if
// missing; every instance runs Run with the same name, and each firing goes
// to one of them.
//
// fire is called at least once per firing, several at a time, each with a
// context that ends after 30s. The firing is acknowledged when fire returns
// nil, and delivered again after a backoff (1s doubling to 5 minutes)
// otherwise, however many times it takes, so fire must be idempotent; the
// product's handlers record each firing as a domain event whose decider
// ignores repeats. A message on the firing subjects that is not a firing
// (nobody but the server writes there) is logged and dropped.
func (t *Timers) Run(ctx context.Context, consumer string, log *slog.Logger, fire func(ctx context.Context, f Fired) error) error {
	if consumer == "" {
		return errors.New("timer: Run needs a consumer name")
	}
	if log == nil {
		log = logging.Discard()
	}
	defer metrics.WatchConsumers(t.js, metrics.Consumers{Stream: Stream, Group: "timer", Name: consumer})()
	src := consume.Source{Stream: Stream, Durable: &jetstream.ConsumerConfig{
		Durable:       consumer,
		Description:   "Tenancy timer firings",
		FilterSubject: FirePrefix + ">",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1,
		MaxAckPending: concurrency * 4,
	}}
	o := consume.Options{Raw: true, Prefetch: concurrency, Concurrency: concurrency, Log: log}
	err := consume.Run(ctx, t.js, src, o, func(ctx context.Context, m *consume.Message) {
		handle(ctx, log, m, fire)
	})
	if err != nil {
		return fmt.Errorf("timer: %w", err)
	}
	return ctx.Err()
}

// handle settles one firing by fire's outcome.
func handle(ctx context.Context, log *slog.Logger, m *consume.Message, fire func(context.Context, Fired) error) {
	f, err := decode(m)
	if err != nil {
		log.ErrorContext(ctx, "timer: not a timer firing; dropped", "seq", m.Seq, "subject", m.Subject, "error", err)
		m.Drop()
		return
	}
	hctx, cancel := context.WithTimeout(ctx, handlerTimeout)
	err = fire(hctx, f)
	cancel()
	switch {
	case err == nil:
		m.Ack()
	case ctx.Err() != nil:
		// Shutting down: give it back for another instance at once.
		m.Retry(0)
	default:
		d := retry.Delay(f.Delivered)
		log.WarnContext(ctx, "timer: handler failed; will retry", "timer_key", f.Key, "due", f.At, "delivered", f.Delivered, "retry_in", d, "error", err)
		m.Retry(d)
	}
}

// The body of a schedule message, copied by the server into its firing:
// the due time and the caller's payload, verbatim. The due time travels in
// the body, not a header, because the one consumer loop hands handlers the
// body only.
//
//	{"at":"2026-01-02T03:04:05.123456789Z","payload":{...}}
type body struct {
	At      time.Time       `json:"at"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// encode writes the body by hand so that the payload's bytes are kept as
// given (json.Marshal would compact a RawMessage).
func encode(at time.Time, payload []byte) []byte {
	var b bytes.Buffer
	b.WriteString(`{"at":"`)
	b.WriteString(at.UTC().Format(time.RFC3339Nano))
	b.WriteByte('"')
	if len(payload) > 0 {
		b.WriteString(`,"payload":`)
		b.Write(payload)
	}
	b.WriteByte('}')
	return b.Bytes()
}

func decode(m *consume.Message) (Fired, error) {
	key, ok := strings.CutPrefix(m.Subject, FirePrefix)
	if !ok || ValidKey(key) != nil {
		return Fired{}, fmt.Errorf("subject %q is not a timer's firing subject", m.Subject)
	}
	var b body
	if err := json.Unmarshal(m.Data, &b); err != nil {
		return Fired{}, fmt.Errorf("body: %w", err)
	}
	if b.At.IsZero() {
		return Fired{}, errors.New("body has no due time")
	}
	f := Fired{Key: key, At: b.At, Delivered: m.Delivered}
	if len(b.Payload) > 0 {
		f.Payload = []byte(b.Payload)
	}
	return f, nil
}
