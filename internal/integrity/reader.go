package integrity

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/backoff"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// DefaultHeads bounds how many aggregates' chain heads a Reader keeps.
const DefaultHeads = 200_000

// Reader checks the messages a consumer reads in stream order, keeping each
// aggregate's chain head between them. A consumer that did not read an
// aggregate's earlier events (it joined the log in the middle, it shares a
// work queue with other instances) verifies the chain from the aggregate's
// first event in the log before judging the message; and a message that
// would be an aggregate's first event, on an aggregate the reader has not
// seen, is only taken as one once the log confirms nothing came before it
// (a genuine first event published again must not start the aggregate
// over), unless the reader has read its subjects from the log's start.
type Reader struct {
	checker *Checker
	log     eventstore.Log
	heads   *lru.Cache[string, head]

	mu sync.Mutex
	// pre holds batch verifications (Preverify) by stream sequence until
	// Read takes them.
	pre map[uint64]verified
	// fromStart: every message of the reader's subjects since the log's
	// first has passed through it, so an aggregate it has no head for has
	// no earlier event, unless its head was evicted (evicted, bounded).
	fromStart bool
	evicted   map[string]struct{}
}

// maxEvicted bounds the evicted heads a from-start reader remembers; past
// it, the reader asks the log like any other.
const maxEvicted = 1_000_000

// head is an aggregate's chain head and the sequence it stands at.
type head struct {
	events.Head
	seq uint64
}

// NewReader returns a reader checking with checker, reading aggregates'
// earlier events from log, keeping at most size heads (DefaultHeads when
// size is 0).
func NewReader(checker *Checker, log eventstore.Log, size int) *Reader {
	if size <= 0 {
		size = DefaultHeads
	}
	r := &Reader{checker: checker, log: log}
	r.heads, _ = lru.NewWithEvict[string, head](size, r.onEvict)
	return r
}

// FromStart declares that the reader will read every message of its
// subjects from the log's first on (a rebuild): aggregates it has not seen
// then need no question to the log.
func (r *Reader) FromStart() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fromStart, r.evicted = true, map[string]struct{}{}
}

func (r *Reader) onEvict(subject string, _ head) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.fromStart {
		return
	}
	r.evicted[subject] = struct{}{}
	if len(r.evicted) > maxEvicted {
		r.fromStart, r.evicted = false, nil
	}
}

// Preverify verifies a batch of messages the reader is about to Read, in
// parallel: signatures and payloads do not depend on the chain, so only
// following the chains is left for Read, in order. An error is the log or
// the keys being unreachable.
func (r *Reader) Preverify(ctx context.Context, msgs []eventstore.Message) error {
	if len(msgs) < 2 {
		return nil
	}
	vs, err := r.checker.verifyAll(ctx, msgs)
	if err != nil {
		return err
	}
	pre := make(map[uint64]verified, len(msgs))
	for i, m := range msgs {
		pre[m.Seq] = vs[i]
	}
	// A batch replaces the last one: what it left unread (a batch cut
	// short) is verified again if it comes back.
	r.mu.Lock()
	r.pre = pre
	r.mu.Unlock()
	return nil
}

// verification returns m's verification, from Preverify or made now.
func (r *Reader) verification(ctx context.Context, m eventstore.Message) (verified, error) {
	r.mu.Lock()
	v, ok := r.pre[m.Seq]
	if ok {
		delete(r.pre, m.Seq)
	}
	r.mu.Unlock()
	if ok {
		return v, nil
	}
	ks, err := r.checker.keys.at(ctx, m.Seq)
	if err != nil {
		return verified{}, err
	}
	return verify(ks, m), nil
}

// provenFirst reports whether the log itself guarantees that m was the
// first message on its subject: it was stored with an expected last
// subject sequence of 0, which the server enforces at append (Tenancy
// appends every aggregate's first event so). A genuine first event
// published again without that header gets no such proof; with it, the
// server would have refused it.
func provenFirst(m eventstore.Message) bool {
	return m.Header.Get(jetstream.ExpectedLastSubjSeqHeader) == "0"
}

// knowsFirst reports whether the reader can tell, without the log, that an
// aggregate it has no head for has no earlier event.
func (r *Reader) knowsFirst(subject string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.fromStart {
		return false
	}
	_, ev := r.evicted[subject]
	return !ev
}

// Checker returns the reader's checker.
func (r *Reader) Checker() *Checker { return r.checker }

// Read checks m, the next message the consumer read, and returns its
// decoded event. A failure of the checks is a *Violation (the message is
// not part of its aggregate; the head stays where it was); another error is
// the log or the keys being unreachable.
func (r *Reader) Read(ctx context.Context, m eventstore.Message) (Checked, error) {
	if _, _, _, err := events.ParseSubject(m.Subject); err != nil {
		// Not an event subject (a claim): nothing to check it against.
		return Checked{}, violation(m.Seq, m.Subject, err)
	}
	h, cached := r.heads.Get(m.Subject)
	if h.seq >= m.Seq {
		h, cached = head{}, false // read again (a redelivery, a restarted consumer)
	}
	v, err := r.verification(ctx, m)
	if err != nil {
		return Checked{}, err
	}
	c, err := r.checker.follow(ctx, h.Head, m, v)
	if err == nil && !c.Ignored && !cached && !provenFirst(m) && !r.knowsFirst(m.Subject) {
		// It passed as its aggregate's first event: make sure it is.
		first, _, ferr := r.log.Read(ctx, m.Subject, 1, 1)
		if ferr != nil {
			return Checked{}, fmt.Errorf("reading %s's first event: %w", m.Subject, ferr)
		}
		if len(first) > 0 && first[0].Seq < m.Seq {
			err = events.ErrReplayed // not the first: judge it in its place
		}
	}
	if outOfPlace(err) {
		// The aggregate's events in between were not read here (a consumer
		// that joined late, a work queue shared with other instances): the
		// log has them; verify the chain up to this message, then check it
		// again.
		if h, err = r.headBefore(ctx, m); err != nil {
			return Checked{}, err
		}
		c, err = r.checker.follow(ctx, h.Head, m, v)
	}
	if err != nil || c.Ignored {
		return c, err
	}
	r.heads.Add(m.Subject, head{Head: c.Head, seq: m.Seq})
	return c, nil
}

// readThrough reads the events of m's subject up to and including m. The
// log's reads are served by any replica, and one that is behind would show
// a chain with its last events missing, which would make m look out of
// place: an answer is only taken from a replica that already has m itself
// (a subject's messages are stored in order, so it then has every one
// before m). A replica still behind after a few tries is the log being
// unavailable: the consumer reads m again later.
func (r *Reader) readThrough(ctx context.Context, m eventstore.Message) ([]eventstore.Message, error) {
	for attempt := 1; ; attempt++ {
		msgs, err := r.log.ReadAll(ctx, m.Subject, 1)
		if err != nil {
			return nil, fmt.Errorf("reading %s's earlier events: %w", m.Subject, err)
		}
		if slices.ContainsFunc(msgs, func(x eventstore.Message) bool { return x.Seq == m.Seq }) {
			return msgs, nil
		}
		if attempt == readThroughAttempts {
			return nil, fmt.Errorf("%w: the replica that answered has not reached seq %d of %s yet", eventstore.ErrUnavailable, m.Seq, m.Subject)
		}
		if err := backoff.Reconnect.Wait(ctx, attempt); err != nil {
			return nil, err
		}
	}
}

// readThroughAttempts bounds readThrough's tries (about 4 s with
// backoff.Reconnect).
const readThroughAttempts = 5

// outOfPlace reports a violation that may only mean the chain's earlier
// events are unknown.
func outOfPlace(err error) bool {
	return errors.Is(err, events.ErrVersionGap) || errors.Is(err, events.ErrReplayed) || errors.Is(err, events.ErrBrokenChain) || errors.Is(err, events.ErrDuplicateEventID)
}

// headBefore returns the chain head of m's aggregate before m, from its
// earlier events.
func (r *Reader) headBefore(ctx context.Context, m eventstore.Message) (head, error) {
	msgs, err := r.readThrough(ctx, m)
	if err != nil {
		return head{}, err
	}
	var h head
	for _, prev := range msgs {
		if prev.Seq >= m.Seq {
			break
		}
		c, err := r.checker.Check(ctx, h.Head, prev)
		var v *Violation
		switch {
		case errors.As(err, &v):
			// Found (and quarantined) by whoever read it first: it is not
			// part of the chain.
			continue
		case err != nil:
			return head{}, err
		case !c.Ignored:
			h = head{Head: c.Head, seq: prev.Seq}
		}
	}
	return h, nil
}
