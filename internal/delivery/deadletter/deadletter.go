// Package deadletter holds the delivery side's two queues next to the
// event log: the dead-letter stream (deliveries that exhausted their retry
// schedule, kept until an operator requeues or discards them) and the
// redelivery work queue (requeued dead letters and replays, delivered in
// order per endpoint). Both have one subject per endpoint.
package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/natsconn"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Streams of the delivery side.
const (
	// DeadLetterStream keeps deliveries that exhausted their retry schedule,
	// one subject per endpoint, until an operator requeues or discards them.
	DeadLetterStream = "TENANCY_WEBHOOK_DLQ"
	// RedeliveryStream queues requeued dead letters and replays, one subject
	// per endpoint; it is a work queue: a message is gone once delivered.
	RedeliveryStream = "TENANCY_WEBHOOK_REDELIVERY"

	dlqPrefix        = "tenancy.dlq."
	redeliveryPrefix = "tenancy.redeliver."
)

// RedeliverySubject is an endpoint's subject in the redelivery queue.
func RedeliverySubject(webhookID string) string { return redeliveryPrefix + webhookID }

// Queues reads and writes both streams.
type Queues struct {
	js jetstream.JetStream
}

// Ensure creates (or updates) both streams and returns their queues.
func Ensure(ctx context.Context, js jetstream.JetStream, replicas int) (*Queues, error) {
	if replicas < 1 {
		replicas = 1
	}
	if _, err := natsconn.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name: DeadLetterStream, Description: "webhook deliveries that exhausted their retries",
		Subjects: []string{dlqPrefix + ">"}, Storage: jetstream.FileStorage, Replicas: replicas,
		Retention: jetstream.LimitsPolicy, Duplicates: 2 * time.Minute, AllowDirect: true,
	}); err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", DeadLetterStream, err)
	}
	if _, err := natsconn.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name: RedeliveryStream, Description: "requeued and replayed webhook deliveries",
		Subjects: []string{redeliveryPrefix + ">"}, Storage: jetstream.FileStorage, Replicas: replicas,
		Retention: jetstream.WorkQueuePolicy, Duplicates: 2 * time.Minute,
	}); err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", RedeliveryStream, err)
	}
	return &Queues{js: js}, nil
}

// DeadLetter is a delivery that exhausted its retry schedule.
type DeadLetter struct {
	// Seq is its sequence in the dead-letter stream: its id for operators.
	Seq        uint64    `json:"seq"`
	WebhookID  string    `json:"webhook_id"`
	EventSeq   uint64    `json:"event_seq"`
	EventID    string    `json:"event_id"`
	EventType  string    `json:"event_type"`
	TenantID   string    `json:"tenant_id"`
	Replay     bool      `json:"replay"`
	Attempts   int       `json:"attempts"`
	Reason     string    `json:"reason"`
	LastStatus int       `json:"last_status,omitempty"`
	FailedAt   time.Time `json:"failed_at"`
}

// Kinds of redelivery.
const (
	KindEvent  = "event"
	KindReplay = "replay"
)

// Redelivery is a message of the redelivery stream: one event to deliver
// again, or a replay of a range to expand into such messages.
type Redelivery struct {
	Kind       string                         `json:"kind"` // "event" or "replay"
	EventSeq   uint64                         `json:"event_seq,omitempty"`
	DeadLetter uint64                         `json:"dead_letter,omitempty"`
	Replay     bool                           `json:"replay,omitempty"`
	Range      *events.WebhookReplayRequested `json:"range,omitempty"`
	RequestID  string                         `json:"request_id,omitempty"`
}

// Filter selects dead letters.
type Filter struct {
	WebhookID string
	Type      string
	From, To  time.Time
	// After is the page token: the last sequence of the previous page.
	After uint64
	Limit int
}

// List reads the dead letters f selects, in order, and says whether more
// follow. Dead letters are few (operators act on them), so a filtered scan is
// enough.
func (q *Queues) List(ctx context.Context, f Filter) ([]DeadLetter, bool, error) {
	subject := dlqPrefix + ">"
	if f.WebhookID != "" {
		subject = dlqPrefix + f.WebhookID
	}
	st, err := q.js.Stream(ctx, DeadLetterStream)
	if err != nil {
		return nil, false, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return nil, false, err
	}
	if info.State.Msgs == 0 || info.State.LastSeq <= f.After {
		return []DeadLetter{}, false, nil
	}
	cc := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if f.After > 0 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, f.After+1
	}
	cons, err := st.OrderedConsumer(ctx, cc)
	if err != nil {
		return nil, false, err
	}
	out := []DeadLetter{}
	for {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return nil, false, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return nil, false, err
			}
			var d DeadLetter
			if err := json.Unmarshal(m.Data(), &d); err != nil {
				continue
			}
			d.Seq = md.Sequence.Stream
			if (f.Type == "" || domain.MatchesType(f.Type, d.EventType)) &&
				(f.From.IsZero() || !d.FailedAt.Before(f.From)) && (f.To.IsZero() || d.FailedAt.Before(f.To)) {
				if len(out) == f.Limit {
					return out, true, nil
				}
				out = append(out, d)
			}
			if md.Sequence.Stream >= info.State.LastSeq {
				return out, false, nil
			}
		}
		if batch.Error() != nil && !errors.Is(batch.Error(), jetstream.ErrNoMessages) {
			return nil, false, batch.Error()
		}
		if n == 0 {
			return out, false, nil
		}
	}
}

// Get reads one dead letter.
func (q *Queues) Get(ctx context.Context, seq uint64) (DeadLetter, error) {
	st, err := q.js.Stream(ctx, DeadLetterStream)
	if err != nil {
		return DeadLetter{}, err
	}
	m, err := st.GetMsg(ctx, seq)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return DeadLetter{}, fmt.Errorf("no dead letter %d (requeued, discarded or never there): %w", seq, domain.ErrNotFound)
		}
		return DeadLetter{}, err
	}
	var d DeadLetter
	if err := json.Unmarshal(m.Data, &d); err != nil || !strings.HasPrefix(m.Subject, dlqPrefix) {
		return DeadLetter{}, fmt.Errorf("dead letter %d is unreadable: %w", seq, domain.ErrNotFound)
	}
	d.Seq = m.Sequence
	return d, nil
}

// All reads every dead letter of an endpoint, in order.
func (q *Queues) All(ctx context.Context, webhookID string) ([]DeadLetter, error) {
	var out []DeadLetter
	var after uint64
	for {
		page, more, err := q.List(ctx, Filter{WebhookID: webhookID, After: after, Limit: 1000})
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if !more || len(page) == 0 {
			return out, nil
		}
		after = page[len(page)-1].Seq
	}
}

// Requeue moves dead letters, in order, to their endpoint's redelivery
// queue. Message ids make a retried requeue of the same dead letter a no-op.
func (q *Queues) Requeue(ctx context.Context, webhookID string, dls []DeadLetter) error {
	for _, d := range dls {
		r := Redelivery{Kind: KindEvent, EventSeq: d.EventSeq, DeadLetter: d.Seq, Replay: d.Replay}
		if err := q.publish(ctx, webhookID, r, fmt.Sprintf("requeue-%d", d.Seq)); err != nil {
			return fmt.Errorf("requeue dead letter %d: %w", d.Seq, err)
		}
		if err := q.Remove(ctx, d.Seq); err != nil {
			return fmt.Errorf("remove requeued dead letter %d: %w", d.Seq, err)
		}
	}
	return nil
}

// QueueReplay queues a replay request, to be expanded into redeliveries by
// the endpoint's webhooker.
func (q *Queues) QueueReplay(ctx context.Context, webhookID, requestID string, rg *events.WebhookReplayRequested) error {
	return q.publish(ctx, webhookID, Redelivery{Kind: KindReplay, Range: rg, RequestID: requestID}, "replay-"+requestID)
}

// QueueReplayed queues one event of an expanded replay.
func (q *Queues) QueueReplayed(ctx context.Context, webhookID, requestID string, eventSeq uint64) (jetstream.PubAckFuture, error) {
	data, err := json.Marshal(Redelivery{Kind: KindEvent, EventSeq: eventSeq, Replay: true})
	if err != nil {
		return nil, err
	}
	return q.js.PublishAsync(RedeliverySubject(webhookID), data, jetstream.WithMsgID(fmt.Sprintf("replay-%s-%d", requestID, eventSeq)))
}

func (q *Queues) publish(ctx context.Context, webhookID string, r Redelivery, msgID string) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = q.js.Publish(ctx, RedeliverySubject(webhookID), data, jetstream.WithMsgID(msgID))
	return err
}

// Put dead-letters a delivery; msgID deduplicates a delivery dead-lettered
// twice (a crash after dead-lettering, before the ack).
func (q *Queues) Put(ctx context.Context, d DeadLetter, msgID string) error {
	data, err := json.Marshal(d)
	if err != nil {
		return err
	}
	_, err = q.js.Publish(ctx, dlqPrefix+d.WebhookID, data, jetstream.WithMsgID(msgID))
	return err
}

// Remove deletes a dead letter (requeued or discarded); one already gone is
// not an error.
func (q *Queues) Remove(ctx context.Context, seq uint64) error {
	st, err := q.js.Stream(ctx, DeadLetterStream)
	if err != nil {
		return err
	}
	if err := st.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return err
	}
	return nil
}

// Purge drops everything queued for a deleted endpoint.
func (q *Queues) Purge(ctx context.Context, webhookID string) {
	for name, prefix := range map[string]string{RedeliveryStream: redeliveryPrefix, DeadLetterStream: dlqPrefix} {
		if st, err := q.js.Stream(ctx, name); err == nil {
			_ = st.Purge(ctx, jetstream.WithPurgeSubject(prefix+webhookID))
		}
	}
}
