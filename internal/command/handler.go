// Package command runs the write path: load an aggregate from the log, let
// its decider decide, turn the decided payloads into signed, hash-chained
// CloudEvents and append them atomically with the uniqueness claims they
// need, retrying a bounded number of times when another writer got there
// first.
package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"reflect"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/tenancyhq/tenancy/internal/backoff"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/integrity"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/metrics"
	"github.com/tenancyhq/tenancy/internal/tracing"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Meta is who and what caused a command.
type Meta struct {
	Actor         string
	CorrelationID string
	CausationID   string
	// TraceParent is recorded on the events when ctx carries no span of its
	// own (the span of the command, when tracing is on, wins).
	TraceParent string
	// IfVersion, when non-zero, requires the aggregate to be at that version
	// (If-Match).
	IfVersion int64
}

// Result is the outcome of a command.
type Result[S domain.Aggregate] struct {
	State S
	// Seq is the stream sequence of the last event appended or, for a
	// command that changed nothing, of the aggregate's last event.
	Seq uint64
	// Events are the envelopes appended (none for an idempotent repeat).
	Events []*events.Envelope
}

// Deps are what a handler needs from outside.
type Deps struct {
	Store  *eventstore.Store
	Signer *events.Signer
	// Cipher seals personal data; nil refuses payloads that carry any.
	Cipher events.PIICipher
	Clock  func() time.Time
	NewID  func() string
	// Checker checks every event the handler folds: signature, chain, keys
	// (default: one on Store's registered keys).
	Checker *integrity.Checker
	// Quarantine, if set, hears of a message on an aggregate's subject that
	// fails the checks (the aggregate then takes no commands until it is
	// resolved).
	Quarantine func(ctx context.Context, v *integrity.Violation)
	// Log receives the refusals of commands on broken aggregates.
	Log *slog.Logger
	// MaxAttempts bounds decide-append rounds when other writers interfere.
	MaxAttempts int
	// CacheSize bounds how many aggregates stay folded in memory.
	CacheSize int
}

// Handler executes commands on one kind of aggregate.
type Handler[S domain.Aggregate, C any] struct {
	agg   domain.Decider[S, C]
	deps  Deps
	cache *lru.Cache[string, snapshot[S]]
	locks [256]sync.Mutex
	seed  maphash.Seed
}

// snapshot is an aggregate folded from its subject: its state, the
// sequence of the subject's last message (what an append expects), and the
// chain head of its last valid event. broken is set when a message on the
// subject failed the integrity checks: nothing after it is folded.
type snapshot[S domain.Aggregate] struct {
	state  S
	seq    uint64
	hash   events.Hash
	lastID string
	broken *integrity.Violation
}

func (s snapshot[S]) head() events.Head {
	return events.Head{Version: s.state.AggregateVersion(), Hash: s.hash, ID: s.lastID}
}

// ErrContention reports a command that kept losing the race to append.
// The caller may retry: it is a domain.ErrUnavailable.
var ErrContention = fmt.Errorf("too many concurrent changes to this aggregate: %w", domain.ErrUnavailable)

// NewHandler returns a handler for agg.
func NewHandler[S domain.Aggregate, C any](agg domain.Decider[S, C], deps Deps) *Handler[S, C] {
	if deps.MaxAttempts <= 0 {
		deps.MaxAttempts = 10
	}
	if deps.CacheSize <= 0 {
		deps.CacheSize = 10000
	}
	if deps.Clock == nil {
		deps.Clock = time.Now
	}
	if deps.Log == nil {
		deps.Log = logging.Discard()
	}
	if deps.Checker == nil {
		deps.Checker = integrity.NewLogChecker(deps.Store)
	}
	c, _ := lru.New[string, snapshot[S]](deps.CacheSize)
	return &Handler[S, C]{agg: agg, deps: deps, cache: c, seed: maphash.MakeSeed()}
}

// Subject returns the subject of an aggregate of this kind.
func (h *Handler[S, C]) Subject(tenantID, id string) string {
	return events.Subject(tenantID, h.agg.Kind(), id)
}

func (h *Handler[S, C]) lock(subject string) func() {
	m := &h.locks[maphash.String(h.seed, subject)%uint64(len(h.locks))]
	m.Lock()
	return m.Unlock
}

// Execute decides cmd on the aggregate id owned by tenantID and appends what
// it decided.
//
// Each command is counted and timed by type and outcome, and, with tracing
// on, runs in a span whose traceparent its events record.
func (h *Handler[S, C]) Execute(ctx context.Context, tenantID, id string, cmd C, meta Meta) (res Result[S], err error) {
	name := CommandName(cmd)
	start := time.Now()
	var span trace.Span
	ctx, span = tracing.Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("tenancy.command", name), attribute.String("tenancy.aggregate", h.agg.Kind()),
			attribute.String("tenancy.tenant_id", tenantID), attribute.String("tenancy.aggregate_id", id))
	}
	defer func() {
		outcome := Outcome(res, err)
		metrics.Commands.WithLabelValues(name, outcome).Inc()
		metrics.CommandDuration.WithLabelValues(name).Observe(metrics.Since(start))
		if span.IsRecording() {
			span.SetAttributes(attribute.String("tenancy.outcome", outcome), attribute.Int64("tenancy.seq", int64(res.Seq)),
				attribute.Int("tenancy.events", len(res.Events)))
			if outcome == OutcomeError || outcome == OutcomeContention {
				tracing.Fail(span, err)
			}
		}
		span.End()
	}()
	return h.execute(ctx, name, tenantID, id, cmd, meta)
}

// Outcomes of a command, as metrics label them.
const (
	OutcomeOK         = "ok"
	OutcomeUnchanged  = "unchanged"
	OutcomeRejected   = "rejected"
	OutcomeContention = "contention"
	OutcomeError      = "error"
)

// Outcome classifies a command's result: ok (events appended), unchanged
// (nothing to append), rejected (the domain or an If-Match refused it),
// contention (too many conflicts) or error (anything else: the log, keys,
// cancellation).
func Outcome[S domain.Aggregate](res Result[S], err error) string {
	switch {
	case err == nil && len(res.Events) > 0:
		return OutcomeOK
	case err == nil:
		return OutcomeUnchanged
	case errors.Is(err, ErrContention):
		return OutcomeContention
	case errors.Is(err, domain.ErrInvalid), errors.Is(err, domain.ErrPrecondition), errors.Is(err, domain.ErrConflict),
		errors.Is(err, domain.ErrNotFound), errors.Is(err, domain.ErrVersionMismatch), errors.Is(err, domain.ErrForbidden):
		return OutcomeRejected
	}
	return OutcomeError
}

// commandNames caches the label of each command type.
var commandNames sync.Map // reflect.Type -> string

// CommandName returns the label of a command: its Go type name
// ("CreateTenant"), a bounded set.
func CommandName(cmd any) string {
	t := reflect.TypeOf(cmd)
	if t == nil {
		return "unknown"
	}
	if n, ok := commandNames.Load(t); ok {
		return n.(string)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	n := t.Name()
	if n == "" {
		n = "unknown"
	}
	commandNames.Store(reflect.TypeOf(cmd), n)
	return n
}

func (h *Handler[S, C]) execute(ctx context.Context, name, tenantID, id string, cmd C, meta Meta) (Result[S], error) {
	subject := h.Subject(tenantID, id)
	// Commands on one aggregate in this process take turns: they would only
	// conflict in the log and retry.
	unlock := h.lock(subject)
	defer unlock()

	snap, cached := h.cache.Get(subject)
	fresh := !cached
	if !cached {
		var err error
		if snap, err = h.load(ctx, tenantID, id, subject); err != nil {
			return Result[S]{}, err
		}
		h.cache.Add(subject, snap)
	}
	if snap.broken != nil {
		var err error
		if snap, err = h.recheck(ctx, tenantID, id, subject, snap); err != nil {
			return Result[S]{}, err
		}
	}
	for attempt := 1; attempt <= h.deps.MaxAttempts; attempt++ {
		if snap.broken != nil {
			return Result[S]{}, h.refuse(ctx, name, snap.broken)
		}
		if attempt > 1 {
			metrics.CommandRetries.WithLabelValues(name).Inc()
		}
		res, retry, err := h.try(ctx, name, tenantID, id, subject, snap, cmd, meta)
		if !retry {
			if err == nil && len(res.Events) > 0 {
				return res, nil
			}
			// A refusal or a no-op is final when decided on the state the log
			// has just given; decided on a cached state it may be an artefact
			// of the cache being behind.
			if fresh || (err != nil && !refreshable(err)) {
				return res, err
			}
		}
		if retry {
			// The winner is likely another instance with more commands queued
			// for this aggregate. Back off (exponentially, with full jitter)
			// so that its queue drains and this command gets its turn.
			if err := backoff.Contention.Wait(ctx, attempt); err != nil {
				return Result[S]{}, err
			}
		}
		next, caught, cerr := h.catchUp(ctx, tenantID, id, subject, snap)
		if cerr != nil {
			h.cache.Remove(subject)
			return Result[S]{}, cerr
		}
		if !caught && !retry {
			return res, err
		}
		snap, fresh = next, true
	}
	h.cache.Remove(subject)
	return Result[S]{}, fmt.Errorf("%w: gave up after %d attempts; retry the request", ErrContention, h.deps.MaxAttempts)
}

// catchUp folds the events appended after snap. It reports whether there
// were any.
func (h *Handler[S, C]) catchUp(ctx context.Context, tenantID, id, subject string, snap snapshot[S]) (snapshot[S], bool, error) {
	msgs, err := h.deps.Store.ReadAll(ctx, subject, snap.seq+1)
	if err != nil {
		return snap, false, err
	}
	if len(msgs) == 0 {
		return snap, false, nil
	}
	next, err := h.fold(ctx, tenantID, id, snap, msgs)
	if err != nil {
		return snap, false, err
	}
	h.cache.Add(subject, next)
	return next, true, nil
}

// recheck folds a broken aggregate again if an operator has resolved the
// message that broke it since.
func (h *Handler[S, C]) recheck(ctx context.Context, tenantID, id, subject string, snap snapshot[S]) (snapshot[S], error) {
	resolved, err := h.deps.Checker.Resolved(ctx, snap.broken.Seq)
	if err != nil || !resolved {
		return snap, err
	}
	next, err := h.load(ctx, tenantID, id, subject)
	if err != nil {
		return snap, err
	}
	h.cache.Add(subject, next)
	return next, nil
}

// refuse refuses a command on an aggregate whose chain is broken.
func (h *Handler[S, C]) refuse(ctx context.Context, name string, v *integrity.Violation) error {
	metrics.IntegrityRefusals.Inc()
	h.deps.Log.ErrorContext(ctx, "command refused: the aggregate's hash chain is broken", "command", name, "seq", v.Seq,
		"subject", v.Subject, "violation", v.Reason)
	return &domain.IntegrityError{Seq: v.Seq, Violation: v.Reason}
}

// refreshable errors may be artefacts of a stale cached state.
func refreshable(err error) bool {
	return errors.Is(err, domain.ErrPrecondition) || errors.Is(err, domain.ErrNotFound) ||
		errors.Is(err, domain.ErrVersionMismatch) || errors.Is(err, domain.ErrConflict)
}

// try decides cmd on snap and appends the events decided, with the claims
// they change, expecting the stream to be where snap left it. It reports
// retry when another writer appended first.
func (h *Handler[S, C]) try(ctx context.Context, name, tenantID, id, subject string, snap snapshot[S], cmd C, meta Meta) (Result[S], bool, error) {
	version := snap.state.AggregateVersion()
	if meta.IfVersion != 0 && meta.IfVersion != version {
		return Result[S]{}, false, &domain.VersionMismatchError{Expected: meta.IfVersion, Actual: version}
	}
	decideStart := time.Now()
	payloads, err := h.agg.Decide(snap.state, cmd)
	metrics.PolicyDuration.WithLabelValues(name).Observe(metrics.Since(decideStart))
	if err != nil {
		return Result[S]{}, false, err
	}
	if len(payloads) == 0 {
		return Result[S]{State: snap.state, Seq: snap.seq}, false, nil
	}

	envs, state := h.envelopes(ctx, tenantID, id, snap.state, payloads, meta)
	out, err := h.claimChanges(ctx, id, envs[0].ID, snap.state, state)
	if err != nil {
		return Result[S]{}, false, err
	}
	msgs, last, err := h.sign(tenantID, subject, snap, payloads, envs)
	if err != nil {
		return Result[S]{}, false, err
	}
	out = append(out, msgs...)

	seq, err := h.deps.Store.Append(ctx, out)
	if errors.Is(err, eventstore.ErrWrongSequence) {
		metrics.AppendConflicts.WithLabelValues(name).Inc()
		return Result[S]{}, true, nil
	}
	if err != nil {
		h.cache.Remove(subject)
		return Result[S]{}, false, err
	}
	h.cache.Add(subject, snapshot[S]{state: state, seq: seq, hash: last, lastID: envs[len(envs)-1].ID})
	return Result[S]{State: state, Seq: seq, Events: envs}, false, nil
}

// envelopes wraps each payload in the envelope that will carry it (its
// data, hash chain and signature still to come) and returns them with the
// state they lead to from state.
func (h *Handler[S, C]) envelopes(ctx context.Context, tenantID, id string, state S, payloads []events.Payload, meta Meta) ([]*events.Envelope, S) {
	version := state.AggregateVersion()
	now := h.deps.Clock().UTC().Truncate(time.Microsecond)
	// The events name the span that appends them, so that whatever handles
	// them later continues this trace.
	traceParent := meta.TraceParent
	if tp := tracing.TraceParent(ctx); tp != "" {
		traceParent = tp
	}
	envs := make([]*events.Envelope, len(payloads))
	for i, p := range payloads {
		v := version + int64(i) + 1
		envs[i] = &events.Envelope{
			SpecVersion: events.SpecVersion, ID: h.deps.NewID(), Source: events.Source, Type: p.EventType(),
			Subject: id, Time: now, DataContentType: events.ContentType, TenantID: tenantID,
			Actor: meta.Actor, CorrelationID: meta.CorrelationID, CausationID: meta.CausationID,
			TraceParent: traceParent, AggVersion: v,
		}
		state = h.agg.Evolve(state, domain.RecordedFrom(id, 0, envs[i], p))
	}
	return envs, state
}

// claimChanges returns the claim writes that moving aggregate id from
// state from to state to needs (none when both hold the same claims),
// checked against the claims the store holds now.
func (h *Handler[S, C]) claimChanges(ctx context.Context, id, eventID string, from, to S) ([]eventstore.Outgoing, error) {
	before, after := claims(from), claims(to)
	if sameClaims(before, after) {
		return nil, nil
	}
	current, err := h.deps.Store.ReadClaims(ctx, append(append([]domain.Claim{}, before...), after...))
	if err != nil {
		return nil, err
	}
	return eventstore.ClaimChanges(id, eventID, before, after, current)
}

// sign seals each payload's personal data, encodes it into its envelope,
// chains the envelope to the one before (the first to snap's last event)
// and signs it. It returns the messages to append, the first expecting the
// stream at snap's sequence, and the hash of the last.
func (h *Handler[S, C]) sign(tenantID, subject string, snap snapshot[S], payloads []events.Payload, envs []*events.Envelope) ([]eventstore.Outgoing, events.Hash, error) {
	out := make([]eventstore.Outgoing, 0, len(payloads))
	prev := snap.hash
	for i, p := range payloads {
		if err := events.SealPII(p, events.PIIScopeOf(tenantID, h.agg.Kind(), envs[i].Subject), h.deps.Cipher); err != nil {
			return nil, prev, err
		}
		data, err := json.Marshal(p)
		if err != nil {
			return nil, prev, fmt.Errorf("encode %s: %w", p.EventType(), err)
		}
		envs[i].Data = data
		envs[i].PrevHash = events.PrevHash(prev)
		raw, hash, err := h.deps.Signer.Sign(envs[i])
		if err != nil {
			return nil, prev, err
		}
		// Never append what readers cannot read back.
		if err := events.Readable(raw, p); err != nil {
			return nil, prev, fmt.Errorf("%s would not read back: %w", p.EventType(), err)
		}
		prev = hash
		o := eventstore.Outgoing{Subject: subject, Data: raw, MsgID: envs[i].ID}
		if i == 0 {
			o.CheckSeq, o.ExpectSeq = true, snap.seq
		}
		out = append(out, o)
	}
	return out, prev, nil
}

// claims returns the unique values s holds, if its kind holds any.
func claims[S domain.Aggregate](s S) []domain.Claim {
	if c, ok := any(s).(domain.Claimer); ok {
		return c.Claims()
	}
	return nil
}

func sameClaims(a, b []domain.Claim) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Load returns the aggregate's current state as the log has it, and the
// stream sequence of its last event (0 if it has none). For an aggregate
// whose chain is broken it is the state up to the last valid event; Broken
// then says where the chain breaks.
func (h *Handler[S, C]) Load(ctx context.Context, tenantID, id string) (S, uint64, error) {
	subject := h.Subject(tenantID, id)
	snap, ok := h.cache.Get(subject)
	if !ok {
		s, err := h.load(ctx, tenantID, id, subject)
		if err != nil {
			return s.state, 0, err
		}
		h.cache.Add(subject, s)
		return s.state, s.seq, nil
	}
	if snap.broken != nil {
		var err error
		if snap, err = h.recheck(ctx, tenantID, id, subject, snap); err != nil {
			return snap.state, 0, err
		}
	}
	// Catch up from the cached sequence: one round trip that usually
	// returns nothing new.
	snap, _, err := h.catchUp(ctx, tenantID, id, subject, snap)
	if err != nil {
		return snap.state, 0, err
	}
	return snap.state, snap.seq, nil
}

// Broken reports where the aggregate's chain breaks, as the last Load or
// Execute found it (nil when intact).
func (h *Handler[S, C]) Broken(tenantID, id string) *domain.IntegrityError {
	snap, ok := h.cache.Peek(h.Subject(tenantID, id))
	if !ok || snap.broken == nil {
		return nil
	}
	return &domain.IntegrityError{Seq: snap.broken.Seq, Violation: snap.broken.Reason}
}

func (h *Handler[S, C]) load(ctx context.Context, tenantID, id, subject string) (snapshot[S], error) {
	msgs, err := h.deps.Store.ReadAll(ctx, subject, 1)
	if err != nil {
		return snapshot[S]{}, err
	}
	return h.fold(ctx, tenantID, id, snapshot[S]{}, msgs)
}

// fold checks and folds the subject's messages after snap. A message that
// fails the checks breaks the chain: it and everything after it stay out
// of the state until an operator resolves it. The messages are checked
// first and their personal data opened after, so that the keys of many
// scopes (a directory's users) are fetched in batches rather than one by
// one.
func (h *Handler[S, C]) fold(ctx context.Context, tenantID, id string, snap snapshot[S], msgs []eventstore.Message) (snapshot[S], error) {
	if snap.broken != nil {
		// Nothing after a break is folded (recheck starts over once it is
		// resolved).
		return snap, nil
	}
	type checked struct {
		c   integrity.Checked
		seq uint64
	}
	todo := make([]checked, 0, len(msgs))
	head, last := snap.head(), snap.seq
	var broken *integrity.Violation
	var brokenSeq uint64
	var cerr error
	for _, m := range msgs {
		c, err := h.deps.Checker.Check(ctx, head, m)
		var v *integrity.Violation
		if errors.As(err, &v) {
			broken, brokenSeq = v, m.Seq
			if h.deps.Quarantine != nil {
				h.deps.Quarantine(ctx, v)
			}
			break
		}
		if err != nil {
			cerr = fmt.Errorf("checking the event at seq %d on %s: %w", m.Seq, m.Subject, err)
			break
		}
		last = m.Seq
		if !c.Ignored {
			head = c.Head
			todo = append(todo, checked{c, m.Seq})
		}
	}
	payloads := make([]events.Payload, len(todo))
	for i, t := range todo {
		payloads[i] = t.c.Payload
	}
	h.prefetchKeys(ctx, payloads)
	for _, t := range todo {
		if err := events.OpenPII(t.c.Payload, events.PIIScope(t.c.Envelope), h.deps.Cipher); err != nil {
			return snap, fmt.Errorf("event at seq %d on %s: %w", t.seq, t.c.Envelope.Subject, err)
		}
		snap.state = h.agg.Evolve(snap.state, domain.RecordedFrom(id, t.seq, t.c.Envelope, t.c.Payload))
		snap.hash, snap.lastID, snap.seq = t.c.Head.Hash, t.c.Head.ID, t.seq
	}
	if cerr != nil {
		return snap, cerr
	}
	snap.seq = last
	if broken != nil {
		snap.broken, snap.seq = broken, brokenSeq
	}
	return snap, nil
}

// keyPrefetcher loads the personal-data keys of many scopes at once (the
// keyring does).
type keyPrefetcher interface {
	Prefetch(ctx context.Context, scopes []string) error
}

// prefetchKeys loads at once the keys of the scopes n payloads are sealed
// under when they name their own (a user's); a failure only means each
// key is read when opened.
func (h *Handler[S, C]) prefetchKeys(ctx context.Context, payloads []events.Payload) {
	p, ok := h.deps.Cipher.(keyPrefetcher)
	if !ok {
		return
	}
	seen := map[string]bool{}
	var scopes []string
	for _, pl := range payloads {
		if o, ok := pl.(events.OwnScoped); ok {
			if sc := o.OwnScope(); sc != "" && !seen[sc] {
				seen[sc] = true
				scopes = append(scopes, sc)
			}
		}
	}
	if len(scopes) < 2 {
		return
	}
	if err := p.Prefetch(ctx, scopes); err != nil {
		h.deps.Log.WarnContext(ctx, "prefetching personal-data keys failed; each is read when opened", "scopes", len(scopes), "error", err)
	}
}

// Forget drops an aggregate from the cache.
func (h *Handler[S, C]) Forget(tenantID, id string) {
	h.cache.Remove(h.Subject(tenantID, id))
}
