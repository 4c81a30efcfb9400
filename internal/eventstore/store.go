// Package eventstore is the event log on NATS JetStream: stream setup,
// reading an aggregate's events with batched direct gets, atomic appends with
// per-subject optimistic concurrency, and the uniqueness claims that live in
// the log beside the events.
package eventstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/tenancyhq/tenancy/internal/backoff"
	"github.com/tenancyhq/tenancy/internal/metrics"
	"github.com/tenancyhq/tenancy/internal/natsconn"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// DefaultStream is the stream name used when none is configured.
const DefaultStream = "TENANCY"

// ClaimSubjects is the subject space of uniqueness claims.
const ClaimSubjects = "tenancy.claim.>"

// StreamConfig says how the event stream is created.
type StreamConfig struct {
	Name     string
	Replicas int
}

// EnsureStream creates the event stream or brings an existing one to the
// required configuration. The stream keeps everything forever and refuses
// deletes and purges: it is the audit trail.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	if cfg.Name == "" {
		cfg.Name = DefaultStream
	}
	if cfg.Replicas < 1 {
		cfg.Replicas = 1
	}
	sc := jetstream.StreamConfig{
		Name:               cfg.Name,
		Description:        "Tenancy event log: signed, hash-chained CloudEvents and uniqueness claims",
		Subjects:           []string{events.AllSubjects, ClaimSubjects},
		Retention:          jetstream.LimitsPolicy,
		Storage:            jetstream.FileStorage,
		Replicas:           cfg.Replicas,
		Discard:            jetstream.DiscardNew,
		MaxAge:             0,
		MaxMsgs:            -1,
		MaxBytes:           -1,
		Duplicates:         30 * time.Second,
		DenyDelete:         true,
		DenyPurge:          true,
		AllowDirect:        true,
		AllowAtomicPublish: true,
	}
	s, err := natsconn.EnsureStream(ctx, js, sc)
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
	}
	return s, nil
}

// Store reads and appends events.
type Store struct {
	js     jetstream.JetStream
	stream string
	dg     *directGetter
	// BatchSize is how many messages one direct get asks for.
	BatchSize int
}

// New returns a store on the named stream, which must exist.
func New(js jetstream.JetStream, stream string) *Store {
	if stream == "" {
		stream = DefaultStream
	}
	return &Store{js: js, stream: stream, dg: newDirectGetter(js, stream), BatchSize: 256}
}

// Stream returns the stream name.
func (s *Store) Stream() string { return s.stream }

// JetStream returns the JetStream context the store uses.
func (s *Store) JetStream() jetstream.JetStream { return s.js }

// Message is one stored message.
type Message struct {
	Seq     uint64
	Subject string
	Data    []byte
	Time    time.Time
	Header  nats.Header
}

// ErrUnavailable reports that the log could not be reached or did not answer
// in time. The caller may retry: it is a domain.ErrUnavailable.
var ErrUnavailable = fmt.Errorf("event log %w", domain.ErrUnavailable)

// ErrWrongSequence reports an append whose expected subject sequence no
// longer holds: someone else appended first.
var ErrWrongSequence = errors.New("wrong last sequence")

// Read returns up to max messages matching filter (wildcards allowed) from
// stream sequence from on, and whether more may follow.
func (s *Store) Read(ctx context.Context, filter string, from uint64, max int) ([]Message, bool, error) {
	if from == 0 {
		from = 1
	}
	msgs, end, err := s.dg.get(ctx, directGetRequest{Seq: from, NextFor: filter, Batch: max}, max)
	if err != nil {
		return nil, false, err
	}
	return msgs, end.pending > 0 && len(msgs) > 0, nil
}

// ReadAll returns every message matching filter from sequence from on.
func (s *Store) ReadAll(ctx context.Context, filter string, from uint64) ([]Message, error) {
	var out []Message
	for {
		batch, more, err := s.Read(ctx, filter, from, s.BatchSize)
		if err != nil {
			return nil, err
		}
		out = append(out, batch...)
		if !more {
			return out, nil
		}
		from = batch[len(batch)-1].Seq + 1
	}
}

// Get returns the message at seq.
func (s *Store) Get(ctx context.Context, seq uint64) (*Message, error) {
	st, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return nil, classify(err)
	}
	m, err := st.GetMsg(ctx, seq)
	if err != nil {
		return nil, classify(err)
	}
	return &Message{Seq: m.Sequence, Subject: m.Subject, Data: m.Data, Time: m.Time, Header: m.Header}, nil
}

// ErrNotFound reports that no message matched.
var ErrNotFound = errors.New("no such message")

// LastSeq returns the stream's last sequence number (0 when empty).
func (s *Store) LastSeq(ctx context.Context) (uint64, error) {
	st, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return 0, classify(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, classify(err)
	}
	return info.State.LastSeq, nil
}

// LastFor returns the last message on each subject that has one, in one
// round trip.
func (s *Store) LastFor(ctx context.Context, subjects []string) (map[string]Message, error) {
	out := map[string]Message{}
	if len(subjects) == 0 {
		return out, nil
	}
	msgs, _, err := s.dg.get(ctx, directGetRequest{MultiLast: subjects, Batch: len(subjects)}, len(subjects))
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		out[m.Subject] = m
	}
	return out, nil
}

// LastMatching returns the sequence of the newest message matching filter
// (wildcards allowed; 0 when none does) and the stream's last sequence when
// it was read: no message matching filter up to head is newer than last.
// It is one round trip when something matches.
func (s *Store) LastMatching(ctx context.Context, filter string) (last, head uint64, err error) {
	const batch = 64
	msgs, end, err := s.dg.get(ctx, directGetRequest{MultiLast: []string{filter}, Batch: batch}, batch)
	if err != nil {
		return 0, 0, err
	}
	if len(msgs) == batch {
		// More subjects match than one answer holds: say that something
		// may be newer, up to the head.
		return end.upTo, end.upTo, nil
	}
	if len(msgs) == 0 || end.upTo == 0 {
		// Nothing matches (or an older server that does not say how far
		// it looked): the stream's head, read after, bounds the answer.
		if head, err = s.LastSeq(ctx); err != nil {
			return 0, 0, err
		}
	}
	for _, m := range msgs {
		last = max(last, m.Seq)
	}
	return last, max(head, end.upTo), nil
}

// Outgoing is one message to append.
type Outgoing struct {
	Subject string
	Data    []byte
	// MsgID deduplicates retried publishes (the event id).
	MsgID string
	// CheckSeq makes the append conditional on the subject's last sequence
	// being ExpectSeq (0: the subject must be empty).
	CheckSeq  bool
	ExpectSeq uint64
	Header    nats.Header
}

// PublishTimeout bounds one append attempt made on a context without a
// deadline, as the JetStream client's default does for its own calls.
const PublishTimeout = 5 * time.Second

// Append stores msgs atomically: all of them or none. It returns the stream
// sequence of the last one. A batch that was already stored (a retry after a
// lost acknowledgement) returns its sequence without storing it twice.
func (s *Store) Append(ctx context.Context, msgs []Outgoing) (uint64, error) {
	if len(msgs) == 0 {
		return 0, errors.New("append: nothing to append")
	}
	nmsgs := make([]*nats.Msg, len(msgs))
	for i, o := range msgs {
		m := nats.NewMsg(o.Subject)
		m.Data = o.Data
		for k, v := range o.Header {
			m.Header[k] = v
		}
		if o.MsgID != "" {
			m.Header.Set(jetstream.MsgIDHeader, o.MsgID)
		}
		if o.CheckSeq {
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(o.ExpectSeq, 10))
		}
		nmsgs[i] = m
	}
	// A publish whose acknowledgement was lost may or may not be stored.
	// Sending the same messages again is safe (their ids deduplicate), so a
	// few quick retries turn most lost acks into a known outcome.
	var seq uint64
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			metrics.PublishRetries.Inc()
			if err := backoff.Publish.Wait(ctx, attempt); err != nil {
				return 0, classify(err)
			}
		}
		seq, err = s.publish(ctx, msgs, nmsgs)
		if !errors.Is(err, ErrUnavailable) {
			break
		}
	}
	return seq, err
}

func (s *Store) publish(ctx context.Context, msgs []Outgoing, nmsgs []*nats.Msg) (uint64, error) {
	if len(nmsgs) == 1 {
		if _, ok := ctx.Deadline(); !ok {
			// Without a deadline a request whose stream leader died after
			// receiving it waits forever (workers run on contexts that
			// only end at shutdown); the retry above then settles it.
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, PublishTimeout)
			defer cancel()
		}
		resp, err := s.js.Conn().RequestMsgWithContext(ctx, nmsgs[0])
		if err != nil {
			return 0, classify(err)
		}
		return parsePubAck(resp.Data)
	}
	ack, err := jetstreamext.PublishMsgBatch(ctx, s.js, nmsgs, jetstreamext.BatchFlowControl{AckFirst: false})
	if err != nil {
		if natsconn.HasCode(err, natsconn.CodeAtomicBatchDuplicate) {
			// The batch's first message id is already stored, and batches
			// are atomic: the whole batch is in. Find where it ended.
			return s.findStored(ctx, msgs[len(msgs)-1])
		}
		return 0, classify(err)
	}
	return ack.Sequence, nil
}

// parsePubAck reads a publish acknowledgement. The common answer,
// {"stream":"NAME","seq":N}, is read by hand: decoding it with
// encoding/json costs as much CPU as the rest of the append. Anything else
// (errors, duplicates, domains) goes through the full decoder.
func parsePubAck(data []byte) (uint64, error) {
	if rest, ok := bytes.CutPrefix(data, []byte(`{"stream":"`)); ok {
		if i := bytes.IndexByte(rest, '"'); i > 0 {
			if num, ok := bytes.CutPrefix(rest[i:], []byte(`","seq":`)); ok {
				if j := bytes.IndexByte(num, '}'); j > 0 {
					if seq, err := strconv.ParseUint(string(num[:j]), 10, 64); err == nil {
						return seq, nil
					}
				}
			}
		}
	}
	var ack struct {
		jetstream.PubAck
		Error *jetstream.APIError `json:"error,omitempty"`
	}
	if err := json.Unmarshal(data, &ack); err != nil {
		return 0, fmt.Errorf("%w: unreadable publish acknowledgement: %v", ErrUnavailable, err)
	}
	if ack.Error != nil {
		return 0, classify(ack.Error)
	}
	if ack.Stream == "" || ack.Sequence == 0 {
		return 0, fmt.Errorf("%w: empty publish acknowledgement", ErrUnavailable)
	}
	return ack.Sequence, nil
}

// findStored locates a message already appended (by its subject and msg id).
func (s *Store) findStored(ctx context.Context, o Outgoing) (uint64, error) {
	last, err := s.LastFor(ctx, []string{o.Subject})
	if err != nil {
		return 0, err
	}
	m, ok := last[o.Subject]
	if !ok || m.Header.Get(jetstream.MsgIDHeader) != o.MsgID {
		return 0, fmt.Errorf("%w: duplicate batch reported but its last message is not the subject's last", ErrWrongSequence)
	}
	return m.Seq, nil
}

// classify maps NATS errors onto the store's error kinds. What
// natsconn.Transient calls transient is unavailable, and so is a closed
// connection (a caller of the store cannot mend it either); the original
// error stays in the chain, so the one transient rule still applies to it.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case natsconn.HasCode(err, natsconn.CodeWrongLastSequence, natsconn.CodeWrongLastSequenceConstant):
		return fmt.Errorf("%w: %w", ErrWrongSequence, err)
	case natsconn.HasCode(err, jetstream.JSErrCodeMessageNotFound) || errors.Is(err, jetstream.ErrMsgNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case natsconn.Transient(err) || errors.Is(err, nats.ErrConnectionClosed):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// Pending returns the first message matching filter at or after from, and
// how many match from there on (0 and nil when none).
func (s *Store) Pending(ctx context.Context, filter string, from uint64) (*Message, uint64, error) {
	if from == 0 {
		from = 1
	}
	msgs, end, err := s.dg.get(ctx, directGetRequest{Seq: from, NextFor: filter, Batch: 1}, 1)
	if err != nil || len(msgs) == 0 {
		return nil, 0, err
	}
	return &msgs[0], end.pending + 1, nil
}

// ErrIncomplete reports a stream that lost records: it denies deletes and
// purges, so its messages must run from sequence 1 to its last without a
// gap. Only damage to its store (a file removed or truncated) does this.
var ErrIncomplete = errors.New("the event log lost records")

// CheckComplete checks that stream holds every record from 1 to its last
// sequence. A stream not created yet is complete.
func CheckComplete(ctx context.Context, js jetstream.JetStream, stream string) error {
	st, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return classify(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return classify(err)
	}
	s := info.State
	if s.LastSeq == 0 {
		return nil
	}
	if s.FirstSeq != 1 || s.Msgs != s.LastSeq || s.NumDeleted > 0 {
		return fmt.Errorf("%w: stream %s holds %d messages from sequence %d to %d (%d missing); restore the store from a backup, then run `tenancy verify`",
			ErrIncomplete, stream, s.Msgs, s.FirstSeq, s.LastSeq, s.LastSeq-s.Msgs)
	}
	return nil
}
