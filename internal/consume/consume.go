// Package consume is the one loop every JetStream consumer of Tenancy runs
// on: the projector's runners, the provisioner's saga worker, the
// webhooker's endpoints and its subscription watcher.
//
// The loop binds (or creates) a consumer, reads messages ahead of the
// handler, decodes each through the one envelope reader (events.Decode), and
// hands them over in stream order: one at a time, in batches, or to several
// handlers at once for a work queue. A message that is not a readable event
// goes to the poison handler instead. Interruptions are survived: a
// transient failure to set the consumer up (natsconn.Transient: JetStream
// electing leaders, unreachable) and a broken message feed are retried with
// the one backoff, resuming where the loop left off; anything else ends the
// loop with its error.
package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/backoff"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/integrity"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/natsconn"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Message is one stream message as every consumer sees it.
type Message struct {
	Seq     uint64
	Subject string
	Data    []byte
	// Time is when the stream stored it.
	Time time.Time
	// Delivered counts the deliveries of this message to a durable consumer
	// (1 the first time): the attempt number of whatever the handler does.
	Delivered int
	// Pending is how many messages matched the consumer after this one when
	// it was delivered.
	Pending uint64
	// Envelope and Payload are the decoded event (nil for poison, and for
	// Raw sources).
	Envelope *events.Envelope
	Payload  events.Payload

	msg jetstream.Msg // nil for ordered consumers: nothing to settle
}

// Ack settles the message: done, never deliver it again.
func (m *Message) Ack() {
	if m.msg != nil {
		_ = m.msg.Ack()
	}
}

// Retry asks for the message again after d (at once when d <= 0).
func (m *Message) Retry(d time.Duration) {
	switch {
	case m.msg == nil:
	case d > 0:
		_ = m.msg.NakWithDelay(d)
	default:
		_ = m.msg.Nak()
	}
}

// Drop settles the message without handling it: it is never delivered
// again.
func (m *Message) Drop() {
	if m.msg != nil {
		_ = m.msg.Term()
	}
}

// InProgress tells the server the message is still being worked on, so that
// it is not redelivered to another instance while a long handler runs.
func (m *Message) InProgress() {
	if m.msg != nil {
		_ = m.msg.InProgress()
	}
}

// Source says where the loop reads from: exactly one of Durable, Name and
// Ordered.
type Source struct {
	Stream string
	// Durable is a durable consumer the loop creates (or updates) with this
	// configuration; instances sharing it share its messages.
	Durable *jetstream.ConsumerConfig
	// Name binds a durable consumer someone else manages.
	Name string
	// Ordered reads with an ephemeral ordered consumer; after an
	// interruption it resumes after the last message handled.
	Ordered *jetstream.OrderedConsumerConfig
}

// Heartbeat is how often the server signals an idle pull; two missed
// heartbeats interrupt the feed.
const Heartbeat = 5 * time.Second

// Options configure a loop.
type Options struct {
	// Prefetch bounds the messages read ahead of the handler (default 1).
	Prefetch int
	// Concurrency is how many Run handlers may run at once (default 1:
	// strictly in order). More suits a work queue whose messages are
	// independent.
	Concurrency int
	// Batch is the most messages one RunBatches call gets (default 1).
	Batch int
	// Raw hands messages over undecoded: the stream holds Tenancy's own
	// records (a work queue), not events.
	Raw bool
	// Reader checks every event read (signature, chain, keys): the one
	// envelope reader. Required unless Raw.
	Reader *integrity.Reader
	// Poison hears of a message that fails the Reader's checks (an
	// *integrity.Violation: forged, replayed, out of its chain, not an
	// event). Returning nil goes on without it (a durable consumer's message
	// is dropped); returning an error ends the loop with it. Without Poison
	// the message is logged at ERROR and dropped. A message operators
	// resolved never reaches Poison or the handler.
	Poison func(ctx context.Context, m *Message, err error) error
	// Tick, if set, runs every TickEvery between handler calls, in the
	// handler's goroutine; an error ends the loop.
	Tick      func(ctx context.Context) error
	TickEvery time.Duration
	Log       *slog.Logger
}

func (o Options) withDefaults() Options {
	o.Prefetch = max(o.Prefetch, 1)
	o.Concurrency = max(o.Concurrency, 1)
	o.Batch = max(o.Batch, 1)
	if o.Log == nil {
		o.Log = logging.Discard()
	}
	return o
}

// Run hands every message to handle, which settles it (Ack, Retry, Drop),
// until ctx ends (then it returns nil) or the loop fails for good.
func Run(ctx context.Context, js jetstream.JetStream, src Source, o Options, handle func(context.Context, *Message)) error {
	o = o.withDefaults()
	sem := make(chan struct{}, o.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	return loop(ctx, js, src, o, func(ctx context.Context, batch []*Message) error {
		for _, m := range batch {
			if o.Concurrency == 1 {
				handle(ctx, m)
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				m.Retry(0)
				return nil
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				handle(ctx, m)
			}()
		}
		return nil
	})
}

// RunBatches hands the messages to handle in order, up to o.Batch of those
// already read at a time, until ctx ends (then it returns nil), handle or
// Tick fails (then it returns that error), or the loop fails for good.
func RunBatches(ctx context.Context, js jetstream.JetStream, src Source, o Options, handle func(context.Context, []*Message) error) error {
	return loop(ctx, js, src, o.withDefaults(), handle)
}

// errFeed marks an interrupted message feed: the loop starts it again.
type errFeed struct{ err error }

func (e errFeed) Error() string { return "message feed interrupted: " + e.err.Error() }

func loop(ctx context.Context, js jetstream.JetStream, src Source, o Options, handle func(context.Context, []*Message) error) error {
	if !o.Raw && o.Reader == nil {
		return errors.New("consume: reading events needs an integrity reader (Options.Reader)")
	}
	var last uint64 // the last message handled, where an ordered feed resumes
	for attempt := 1; ; attempt++ {
		err := session(ctx, js, src, o, &last, handle)
		var feed errFeed
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &feed):
			o.Log.WarnContext(ctx, "consumer feed interrupted; restarting", "consumer", src.name(), "attempt", attempt, "error", feed.err)
		case natsconn.Transient(err):
			o.Log.WarnContext(ctx, "cannot set the consumer up yet; retrying", "consumer", src.name(), "attempt", attempt, "error", err)
		default:
			return err
		}
		if backoff.Reconnect.Wait(ctx, attempt) != nil {
			return nil
		}
	}
}

func (s Source) name() string {
	switch {
	case s.Durable != nil:
		return s.Durable.Durable
	case s.Name != "":
		return s.Name
	}
	return s.Stream + " (ordered)"
}

// open binds the consumer; an ordered one starts after last when the loop
// has handled messages already.
func (s Source) open(ctx context.Context, js jetstream.JetStream, last uint64) (jetstream.Consumer, error) {
	switch {
	case s.Durable != nil:
		return js.CreateOrUpdateConsumer(ctx, s.Stream, *s.Durable)
	case s.Name != "":
		return js.Consumer(ctx, s.Stream, s.Name)
	case s.Ordered != nil:
		st, err := js.Stream(ctx, s.Stream)
		if err != nil {
			return nil, err
		}
		cfg := *s.Ordered
		if last > 0 {
			cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, last+1, nil
		}
		return st.OrderedConsumer(ctx, cfg)
	}
	return nil, errors.New("consume: a source needs Durable, Name or Ordered")
}

// session reads from one binding of the consumer until it fails.
func session(ctx context.Context, js jetstream.JetStream, src Source, o Options, last *uint64, handle func(context.Context, []*Message) error) error {
	cons, err := src.open(ctx, js, *last)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", src.name(), err)
	}
	// A consumer deleted or lost while no pull was waiting is only noticed
	// as missing heartbeats; reporting them ends this binding, and the next
	// one finds out whether the consumer is still there.
	it, err := cons.Messages(jetstream.PullMaxMessages(o.Prefetch), jetstream.PullHeartbeat(Heartbeat), jetstream.WithMessagesErrOnMissingHeartbeat(true))
	if err != nil {
		return fmt.Errorf("consumer %s: %w", src.name(), err)
	}
	feed := make(chan read, o.Prefetch)
	go pump(it, feed)
	ordered := src.Ordered != nil
	defer drain(it, feed, ordered)
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	var tick <-chan time.Time
	if o.Tick != nil && o.TickEvery > 0 {
		t := time.NewTicker(o.TickEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			if err := o.Tick(ctx); err != nil {
				return err
			}
		case r, ok := <-feed:
			if !ok || r.err != nil {
				return errFeed{feedErr(r.err)}
			}
			batch, ferr := take(feed, r.msg, o.Batch)
			if err := deliver(ctx, o, batch, ordered, last, handle); err != nil {
				return err
			}
			if ferr != nil {
				return errFeed{ferr}
			}
		}
	}
}

// read is one result of the message iterator.
type read struct {
	msg jetstream.Msg
	err error
}

// pump moves the iterator's messages into feed until it fails or stops.
func pump(it jetstream.MessagesContext, feed chan<- read) {
	defer close(feed)
	for {
		m, err := it.Next()
		feed <- read{m, err}
		if err != nil {
			return
		}
	}
}

// drain stops the iterator and waits for the pump to finish, so that no
// goroutine outlives the session. Messages a durable consumer read ahead go
// back at once, for another instance to take.
func drain(it jetstream.MessagesContext, feed <-chan read, ordered bool) {
	it.Stop()
	for r := range feed {
		if r.msg != nil && !ordered {
			_ = r.msg.Nak()
		}
	}
}

// take returns first and up to n-1 more messages already read, without
// waiting, and the feed's failure if it failed meanwhile.
func take(feed <-chan read, first jetstream.Msg, n int) ([]jetstream.Msg, error) {
	out := []jetstream.Msg{first}
	for len(out) < n {
		select {
		case r, ok := <-feed:
			if !ok || r.err != nil {
				return out, feedErr(r.err)
			}
			out = append(out, r.msg)
		default:
			return out, nil
		}
	}
	return out, nil
}

func feedErr(err error) error {
	if err == nil {
		return errors.New("the message iterator stopped")
	}
	return err
}

// deliver decodes a batch and hands it to handle, cutting it at a poison
// message, which goes to the poison handler.
func deliver(ctx context.Context, o Options, batch []jetstream.Msg, ordered bool, last *uint64, handle func(context.Context, []*Message) error) error {
	ms := make([]*Message, 0, len(batch))
	if !o.Raw && len(batch) > 1 {
		// Verify the batch's signatures in parallel; Read then only follows
		// the chains, in order.
		if err := o.Reader.Preverify(ctx, storeMessages(batch)); err != nil {
			return err
		}
	}
	flush := func() error {
		if len(ms) == 0 {
			return nil
		}
		if err := handle(ctx, ms); err != nil {
			return err
		}
		*last = ms[len(ms)-1].Seq
		ms = ms[:0]
		return nil
	}
	for _, jm := range batch {
		m, ignored, err := newMessage(ctx, o, jm, ordered)
		var v *integrity.Violation
		switch {
		case err == nil && !ignored:
			ms = append(ms, m)
			continue
		case err != nil && !errors.As(err, &v):
			// The log or the keys are unreachable: nothing is wrong with the
			// message. Stop here; it is read again.
			if ferr := flush(); ferr != nil {
				return ferr
			}
			return err
		}
		if err := flush(); err != nil {
			return err
		}
		if ignored {
			m.Ack()
		} else if err := poison(ctx, o, m, err); err != nil {
			return err
		}
		*last = m.Seq
	}
	return flush()
}

// storeMessages returns the batch as the log's messages (those whose
// metadata cannot be read are left out: newMessage refuses them).
func storeMessages(batch []jetstream.Msg) []eventstore.Message {
	out := make([]eventstore.Message, 0, len(batch))
	for _, jm := range batch {
		if md, err := jm.Metadata(); err == nil {
			out = append(out, eventstore.Message{Seq: md.Sequence.Stream, Subject: jm.Subject(), Data: jm.Data(), Time: md.Timestamp, Header: jm.Headers()})
		}
	}
	return out
}

// newMessage reads a message through the one envelope reader. ignored is
// set for a message operators resolved; an *integrity.Violation is poison.
func newMessage(ctx context.Context, o Options, jm jetstream.Msg, ordered bool) (*Message, bool, error) {
	m := &Message{Subject: jm.Subject(), Data: jm.Data()}
	if !ordered {
		m.msg = jm
	}
	md, err := jm.Metadata()
	if err != nil {
		return m, false, &integrity.Violation{Subject: m.Subject, Reason: "not-an-event", Err: fmt.Errorf("no stream metadata: %w", err)}
	}
	m.Seq, m.Time, m.Delivered, m.Pending = md.Sequence.Stream, md.Timestamp, int(md.NumDelivered), md.NumPending
	if o.Raw {
		return m, false, nil
	}
	c, err := o.Reader.Read(ctx, eventstore.Message{Seq: m.Seq, Subject: m.Subject, Data: m.Data, Time: m.Time, Header: jm.Headers()})
	if err != nil || c.Ignored {
		return m, c.Ignored, err
	}
	m.Envelope, m.Payload = c.Envelope, c.Payload
	return m, false, nil
}

func poison(ctx context.Context, o Options, m *Message, err error) error {
	if o.Poison != nil {
		if perr := o.Poison(ctx, m, err); perr != nil {
			return perr
		}
	} else {
		o.Log.ErrorContext(ctx, "not a readable event; dropped", "seq", m.Seq, "subject", m.Subject, "error", err)
	}
	m.Drop()
	return nil
}
