package mail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/backoff"
	"github.com/tenancyhq/tenancy/internal/consume"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/metrics"
	"github.com/tenancyhq/tenancy/internal/natsconn"
)

// The outbox's stream and bucket.
const (
	// Stream is the work queue of messages to send.
	Stream = "TENANCY_MAIL"
	// SentBucket remembers, for a week, the ids of the messages sent or
	// given up on, so that a redelivered queue entry is not sent again.
	SentBucket = "TENANCY_MAIL_SENT"
	// Consumer is the mailers' shared durable consumer.
	Consumer = "mailer"

	subject = "tenancy.mail.send"
	// platformScope seals the platform's own mail (no tenant).
	platformScope = "mail"
)

// Sealer encrypts messages at rest under a scope's data key (a tenant's,
// so that erasing the tenant makes its unsent mail unreadable).
type Sealer interface {
	Seal(scope string, plaintext []byte) (string, error)
	Open(scope, sealed string) ([]byte, error)
}

// queued is a stream entry: the message, sealed.
type queued struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Scope  string `json:"scope"`
	Sealed string `json:"sealed"`
}

// Outbox queues messages and drains the queue.
type Outbox struct {
	js   jetstream.JetStream
	kv   jetstream.KeyValue
	seal Sealer
}

// Retry is the delay before sending a message again after a failure that
// may pass (the relay down, a 4xx), by attempt: it is kept trying, with the
// delay capped, until it is sent or refused for good.
var Retry = backoff.Policy{Base: 5 * time.Second, Max: 10 * time.Minute}

// Ensure creates (or updates) the outbox's stream and bucket.
func Ensure(ctx context.Context, js jetstream.JetStream, replicas int, seal Sealer) (*Outbox, error) {
	replicas = max(replicas, 1)
	if _, err := natsconn.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name: Stream, Description: "Tenancy's outgoing mail, sealed", Subjects: []string{subject},
		Storage: jetstream.FileStorage, Replicas: replicas, Retention: jetstream.WorkQueuePolicy,
		// Enqueuing the same id again within the hour is a no-op; the
		// sent bucket covers redeliveries after that.
		Duplicates: time.Hour,
	}); err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", Stream, err)
	}
	kv, err := natsconn.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket: SentBucket, Description: "ids of mail sent or given up on", TTL: 7 * 24 * time.Hour,
		Storage: jetstream.FileStorage, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure bucket %s: %w", SentBucket, err)
	}
	return &Outbox{js: js, kv: kv, seal: seal}, nil
}

func scope(m Message) string {
	if m.TenantID != "" {
		return m.TenantID
	}
	return platformScope
}

// Enqueue queues m, sealed. Once it returns nil the message will be sent
// (or, if the relay refuses it for good, logged as given up); enqueuing the
// same id again sends it once.
func (o *Outbox) Enqueue(ctx context.Context, m Message) error {
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now().UTC()
	}
	if err := m.Validate(); err != nil {
		return err
	}
	plain, err := json.Marshal(m)
	if err != nil {
		return err
	}
	sealed, err := o.seal.Seal(scope(m), plain)
	if err != nil {
		return fmt.Errorf("sealing mail %s: %w", m.ID, err)
	}
	body, _ := json.Marshal(queued{ID: m.ID, Kind: m.Kind, Scope: scope(m), Sealed: sealed})
	msg := nats.NewMsg(subject)
	msg.Data = body
	msg.Header.Set(jetstream.MsgIDHeader, "mail-"+m.ID)
	_, err = o.js.PublishMsg(ctx, msg)
	return err
}

// Run sends every queued message with sender until ctx ends, then returns
// ctx's error. Every instance runs it with the same consumer; each message
// goes to one of them.
func (o *Outbox) Run(ctx context.Context, sender Sender, log *slog.Logger) error {
	if log == nil {
		log = logging.Discard()
	}
	defer metrics.WatchConsumers(o.js, metrics.Consumers{Stream: Stream, Group: "mail", Name: Consumer})()
	src := consume.Source{Stream: Stream, Durable: &jetstream.ConsumerConfig{
		Durable: Consumer, Description: "Tenancy mailers", AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 2 * time.Minute, MaxDeliver: -1, MaxAckPending: 16,
	}}
	err := consume.Run(ctx, o.js, src, consume.Options{Raw: true, Prefetch: 4, Concurrency: 4, Log: log},
		func(ctx context.Context, m *consume.Message) { o.handle(ctx, sender, log, m) })
	if err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	return ctx.Err()
}

// handle sends one queued message and settles it.
func (o *Outbox) handle(ctx context.Context, sender Sender, log *slog.Logger, m *consume.Message) {
	var q queued
	if err := json.Unmarshal(m.Data, &q); err != nil || q.ID == "" {
		log.ErrorContext(ctx, "mail: not a queued message; dropped", "seq", m.Seq)
		m.Drop()
		return
	}
	log = log.With("mail_id", q.ID, "kind", q.Kind)
	if q.Scope != platformScope {
		log = log.With("tenant_id", q.Scope)
	}
	if _, err := o.kv.Get(ctx, q.ID); err == nil {
		m.Ack() // sent before the last delivery could be acknowledged
		return
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		m.Retry(Retry.Delay(m.Delivered))
		return
	}
	plain, err := o.seal.Open(q.Scope, q.Sealed)
	if err != nil {
		// Its tenant's key is gone (the tenant erased): nothing to send.
		log.WarnContext(ctx, "mail: the message cannot be opened (its tenant's data erased?); dropped", "error", err)
		metrics.MailSent.WithLabelValues(q.Kind, "dropped").Inc()
		m.Drop()
		return
	}
	var msg Message
	if err := json.Unmarshal(plain, &msg); err != nil {
		log.ErrorContext(ctx, "mail: unreadable message; dropped", "error", err)
		m.Drop()
		return
	}
	err = sender.Send(ctx, msg)
	switch {
	case err == nil:
		o.done(ctx, log, m, q, "sent")
		log.InfoContext(ctx, "mail sent", "attempt", m.Delivered)
	case Permanent(err):
		o.done(ctx, log, m, q, "refused")
		log.ErrorContext(ctx, "mail refused by the relay; given up", "attempt", m.Delivered, "error", err)
	case ctx.Err() != nil:
		m.Retry(0)
	default:
		d := Retry.Delay(m.Delivered)
		log.WarnContext(ctx, "mail not sent; will retry", "attempt", m.Delivered, "retry_in", d, "error", err)
		metrics.MailSent.WithLabelValues(q.Kind, "retried").Inc()
		m.Retry(d)
	}
}

// done records the message as settled, then acknowledges it: a crash in
// between sends it again at most, never loses it.
func (o *Outbox) done(ctx context.Context, log *slog.Logger, m *consume.Message, q queued, outcome string) {
	metrics.MailSent.WithLabelValues(q.Kind, outcome).Inc()
	if _, err := o.kv.Put(context.WithoutCancel(ctx), q.ID, []byte(outcome)); err != nil {
		log.WarnContext(ctx, "mail: recording the outcome failed; a redelivery may send it again", "error", err)
	}
	m.Ack()
}
