package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Streams and buckets of the delivery side.
const (
	// DeadLetterStream keeps deliveries that exhausted their retry schedule,
	// one subject per endpoint, until an operator requeues or discards them.
	DeadLetterStream = "TENANCY_WEBHOOK_DLQ"
	// RedeliveryStream queues requeued dead letters and replays, one subject
	// per endpoint; it is a work queue: a message is gone once delivered.
	RedeliveryStream = "TENANCY_WEBHOOK_REDELIVERY"
	// StateBucket remembers since when each endpoint has been failing.
	StateBucket = "TENANCY_WEBHOOK_STATE"

	dlqPrefix        = "tenancy.dlq."
	redeliveryPrefix = "tenancy.redeliver."
)

// EnsureStreams creates the delivery side's streams and bucket.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	if replicas < 1 {
		replicas = 1
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: DeadLetterStream, Description: "webhook deliveries that exhausted their retries",
		Subjects: []string{dlqPrefix + ">"}, Storage: jetstream.FileStorage, Replicas: replicas,
		Retention: jetstream.LimitsPolicy, Duplicates: 2 * time.Minute, AllowDirect: true,
	}); err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", DeadLetterStream, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: RedeliveryStream, Description: "requeued and replayed webhook deliveries",
		Subjects: []string{redeliveryPrefix + ">"}, Storage: jetstream.FileStorage, Replicas: replicas,
		Retention: jetstream.WorkQueuePolicy, Duplicates: 2 * time.Minute,
	}); err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", RedeliveryStream, err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: StateBucket, Description: "webhook endpoint health", History: 1, Replicas: replicas, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", StateBucket, err)
	}
	return kv, nil
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

// redelivery is a message of the redelivery stream: one event to deliver
// again, or a replay of a range to expand into such messages.
type redelivery struct {
	Kind       string                         `json:"kind"` // "event" or "replay"
	EventSeq   uint64                         `json:"event_seq,omitempty"`
	DeadLetter uint64                         `json:"dead_letter,omitempty"`
	Replay     bool                           `json:"replay,omitempty"`
	Range      *events.WebhookReplayRequested `json:"range,omitempty"`
	RequestID  string                         `json:"request_id,omitempty"`
}

// DeadLetterFilter selects dead letters.
type DeadLetterFilter struct {
	WebhookID string
	Type      string
	From, To  time.Time
	// After is the page token: the last sequence of the previous page.
	After uint64
	Limit int
}

// listDeadLetters reads the dead-letter stream in order. Dead letters are few
// (operators act on them), so a filtered scan is enough.
func listDeadLetters(ctx context.Context, js jetstream.JetStream, f DeadLetterFilter) ([]DeadLetter, bool, error) {
	subject := dlqPrefix + ">"
	if f.WebhookID != "" {
		subject = dlqPrefix + f.WebhookID
	}
	st, err := js.Stream(ctx, DeadLetterStream)
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

// getDeadLetter reads one dead letter.
func getDeadLetter(ctx context.Context, js jetstream.JetStream, seq uint64) (DeadLetter, error) {
	st, err := js.Stream(ctx, DeadLetterStream)
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
