package integrity

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Checked is a message that passed: the decoded event and its aggregate's
// new chain head. Ignored is set for a message operators resolved: readers
// pass over it, and the head stays where it was.
type Checked struct {
	Envelope *events.Envelope
	Payload  events.Payload
	Head     events.Head
	Ignored  bool
}

// Checker checks messages against the keys and resolutions in the log.
type Checker struct {
	keys *keyCache
	res  *resolutions
}

// NewChecker returns a checker; keys loads the verification keys (the
// signing key registrations) from the log, and log is read for
// resolutions and the stream head.
func NewChecker(log eventstore.Log, keys func(context.Context) (*events.KeySet, error)) *Checker {
	kc := &keyCache{log: log, load: keys}
	return &Checker{keys: kc, res: &resolutions{log: log, keys: kc}}
}

// NewLogChecker returns a checker with the keys registered in log.
func NewLogChecker(log eventstore.Log) *Checker {
	return NewChecker(log, func(ctx context.Context) (*events.KeySet, error) { return LoadKeys(ctx, log) })
}

// Check checks the message m, the next one of its aggregate after head. A
// failure of the checks is a *Violation; any other error is the log or the
// keys being unreachable (retry).
func (c *Checker) Check(ctx context.Context, head events.Head, m eventstore.Message) (Checked, error) {
	ks, err := c.keys.at(ctx, m.Seq)
	if err != nil {
		return Checked{}, err
	}
	return c.follow(ctx, head, m, verify(ks, m))
}

// verified is what can be checked of a message without its place in its
// chain: its form, signature and key, and its payload. It is the costly
// part (an Ed25519 verification), so a batch is verified in parallel
// (Reader.Preverify) before its messages are followed in order.
type verified struct {
	env     *events.Envelope
	hash    events.Hash
	payload events.Payload
	// verr is a verification failure; perr a payload that does not decode.
	verr, perr error
}

func verify(ks *events.KeySet, m eventstore.Message) verified {
	env, h, err := ks.VerifyAt(m.Seq, m.Data)
	if err != nil {
		id := ""
		if env != nil {
			id = env.ID
		}
		return verified{env: env, verr: &events.VerifyError{Seq: m.Seq, Subject: m.Subject, EventID: id, Err: err}}
	}
	p, err := events.DecodePayload(env.Type, env.Data)
	return verified{env: env, hash: h, payload: p, perr: err}
}

// follow checks a verified message's place after head.
func (c *Checker) follow(ctx context.Context, head events.Head, m eventstore.Message, v verified) (Checked, error) {
	err := v.verr
	var next events.Head
	if err == nil {
		if next, err = events.Follows(head, m.Subject, v.env, v.hash); err != nil {
			err = &events.VerifyError{Seq: m.Seq, Subject: m.Subject, EventID: v.env.ID, Err: err}
		}
	}
	if err == nil {
		err = v.perr
	}
	if err == nil {
		return Checked{Envelope: v.env, Payload: v.payload, Head: next}, nil
	}
	ignored, rerr := c.res.resolved(ctx, m.Seq)
	if rerr != nil {
		return Checked{}, rerr
	}
	if ignored {
		return Checked{Head: head, Ignored: true}, nil
	}
	return Checked{}, violation(m.Seq, m.Subject, err)
}

// verifyAll verifies msgs in parallel, one worker per CPU.
func (c *Checker) verifyAll(ctx context.Context, msgs []eventstore.Message) ([]verified, error) {
	ks, err := c.keys.at(ctx, msgs[len(msgs)-1].Seq)
	if err != nil {
		return nil, err
	}
	out := make([]verified, len(msgs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(msgs)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(msgs); i = int(next.Add(1) - 1) {
				out[i] = verify(ks, msgs[i])
			}
		})
	}
	wg.Wait()
	return out, nil
}

// Resolved reports whether operators resolved the message at seq.
func (c *Checker) Resolved(ctx context.Context, seq uint64) (bool, error) {
	return c.res.resolved(ctx, seq)
}

// keySubjects are where signing keys are registered and retired.
var keySubjects = events.Subject(events.PlatformTenantID, events.AggregateSigningKey, "*")

// keyCache holds the key set and how far into the log it is complete: for
// an event stored up to there, every registration and retirement before it
// is in the set. Checking a newer event costs one round trip (is there a
// key message newer than the set?) that covers every event stored so far;
// the set is only reloaded when there is.
type keyCache struct {
	log  eventstore.Log
	load func(context.Context) (*events.KeySet, error)

	mu      sync.Mutex
	set     *events.KeySet
	keysAt  uint64 // the newest key message the set reflects
	covered uint64 // the stream sequence the set is complete up to
}

// at returns the keys to check an event stored at seq with: every key
// registered, and every retirement appended, before it.
func (k *keyCache) at(ctx context.Context, seq uint64) (*events.KeySet, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.set != nil && seq <= k.covered {
		return k.set, nil
	}
	return k.refresh(ctx)
}

// current returns keys complete up to the log's head now.
func (k *keyCache) current(ctx context.Context) (*events.KeySet, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.refresh(ctx)
}

// refresh makes the set complete up to the log's head; k.mu is held.
func (k *keyCache) refresh(ctx context.Context) (*events.KeySet, error) {
	last, head, err := k.log.LastMatching(ctx, keySubjects)
	if err != nil {
		return nil, err
	}
	if k.set == nil || last > k.keysAt {
		set, err := k.load(ctx)
		if err != nil {
			return nil, fmt.Errorf("event signing keys: %w", err)
		}
		k.set, k.keysAt = set, last
	}
	k.covered = max(k.covered, head)
	return k.set, nil
}

// resolutions holds the sequences operators resolved, complete up to the
// newest resolution in the log when last asked; asking costs one round
// trip, made only for messages that fail their checks.
type resolutions struct {
	log  eventstore.Log
	keys *keyCache

	mu    sync.Mutex
	seqs  map[uint64]bool
	resAt uint64
}

func (r *resolutions) resolved(ctx context.Context, seq uint64) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seqs[seq] {
		return true, nil
	}
	last, _, err := r.log.LastMatching(ctx, ResolutionSubjects)
	if err != nil {
		return false, err
	}
	if r.seqs != nil && last <= r.resAt {
		return false, nil
	}
	msgs, err := r.log.ReadAll(ctx, ResolutionSubjects, 1)
	if err != nil {
		return false, err
	}
	ks, err := r.keys.current(ctx)
	if err != nil {
		return false, err
	}
	seqs := Resolved(msgs, ks)
	r.seqs, r.resAt = seqs, last
	return seqs[seq], nil
}

// Resolved returns the sequences the resolution messages msgs name.
// Resolutions are events like any other: only a signed one, on its own
// chain, naming the sequence of its subject, counts.
func Resolved(msgs []eventstore.Message, ks *events.KeySet) map[uint64]bool {
	v := events.NewChainVerifier(ks)
	seqs := map[uint64]bool{}
	for _, m := range msgs {
		if v.Next(m.Seq, m.Subject, m.Data) != nil {
			continue
		}
		_, p, err := events.Decode(m.Data)
		res, ok := p.(*events.QuarantineResolved)
		if err != nil || !ok {
			continue
		}
		if _, _, id, err := events.ParseSubject(m.Subject); err == nil && id == strconv.FormatUint(res.Seq, 10) {
			seqs[res.Seq] = true
		}
	}
	return seqs
}

// ResolutionSubjects is the filter of the resolution events.
const ResolutionSubjects = "tenancy.evt." + events.PlatformTenantID + "." + events.AggregateQuarantine + ".*"
