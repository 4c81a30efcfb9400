package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/tenancyhq/tenancy/internal/backoff"
	"github.com/tenancyhq/tenancy/internal/consume"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/integrity"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/metrics"
	"github.com/tenancyhq/tenancy/internal/postgres"
	"github.com/tenancyhq/tenancy/internal/tracing"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Opener opens tenants' personal data for projections, fetching many
// tenants' keys at once.
type Opener interface {
	events.PIICipher
	Prefetch(ctx context.Context, tenantIDs []string) error
}

// Deps are a runner's collaborators.
type Deps struct {
	DatabaseURL string
	JS          jetstream.JetStream
	Store       *eventstore.Store
	Opener      Opener
	Log         *slog.Logger
	// MaxBatch bounds the events applied in one transaction (default 2000).
	MaxBatch int
	// ControlInterval is how often the runner looks for rebuild and skip
	// requests (default 1 s).
	ControlInterval time.Duration
	// Observe, if set, is told about every applied batch.
	Observe func(name string, events int, took time.Duration, checkpoint uint64, lastEvent time.Time)
	// Reader returns a new integrity reader: every event the runner applies
	// is checked through one (a session's).
	Reader func() *integrity.Reader
	// Quarantine records a message that fails the checks: the runner passes
	// over it and marks its aggregate broken (see Quarantiner).
	Quarantine func(ctx context.Context, v *integrity.Violation)
}

// Runner keeps one projection up to date.
type Runner struct {
	p    Projection
	d    Deps
	log  *slog.Logger
	once bool // exit after the first rebuild (the CLI)

	mu      sync.Mutex
	rebuild *rebuildJob
	reader  *integrity.Reader
}

// NewRunner returns a runner for p.
func NewRunner(p Projection, d Deps) *Runner {
	if d.MaxBatch <= 0 {
		d.MaxBatch = 2000
	}
	if d.ControlInterval <= 0 {
		d.ControlInterval = time.Second
	}
	if d.Log == nil {
		d.Log = logging.Discard()
	}
	if d.Reader == nil {
		checker := integrity.NewLogChecker(d.Store)
		d.Reader = func() *integrity.Reader { return integrity.NewReader(checker, d.Store, 0) }
	}
	if d.Quarantine == nil {
		d.Quarantine = func(context.Context, *integrity.Violation) {}
	}
	return &Runner{p: p, d: d, log: d.Log.With("projection", p.Name())}
}

// Name returns the projection's name.
func (r *Runner) Name() string { return r.p.Name() }

// errRestart makes the runner start over from its checkpoint: its view of
// the state is no longer current.
var errRestart = errors.New("restart from the checkpoint")

// Run keeps the projection up to date until ctx ends. It waits while
// another runner holds the projection, and recovers from database and NATS
// outages by itself.
func (r *Runner) Run(ctx context.Context) error {
	for attempt := 1; ctx.Err() == nil; {
		err := r.session(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errRebuilt):
			return nil
		case err == nil || errors.Is(err, errRestart):
			attempt = 1
			continue
		}
		r.log.WarnContext(ctx, "projection runner interrupted; retrying", "error", err, "attempt", attempt)
		if backoff.Reconnect.Wait(ctx, attempt) != nil {
			return nil
		}
		attempt++
	}
	return nil
}

// RunUntilRebuilt rebuilds the projection and returns (for the CLI, when no
// other runner is active). It returns ErrBusy when another runner holds the
// projection: ask it instead with RequestRebuild.
func (r *Runner) RunUntilRebuilt(ctx context.Context, actor string) error {
	conn, err := pgx.Connect(ctx, r.d.DatabaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lockKey(r.p.Name())).Scan(&got); err != nil {
		return err
	}
	if !got {
		return ErrBusy
	}
	if err := r.ensureState(ctx, conn); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "UPDATE projection_state SET rebuild_requested_at = now(), rebuild_requested_by = $2 WHERE name = $1", r.p.Name(), actor); err != nil {
		return err
	}
	_, _ = conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", lockKey(r.p.Name()))
	r.once = true
	return r.Run(ctx)
}

// ErrBusy reports that another runner is active for the projection.
var ErrBusy = errors.New("another runner is active for this projection")

var errRebuilt = errors.New("rebuilt")

// session is one stretch of work on one database connection holding the
// projection's lock.
func (r *Runner) session(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, r.d.DatabaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := r.acquire(ctx, conn); err != nil {
		return err
	}
	ctx = logging.With(ctx, slog.String("projection", r.p.Name()))
	// Each session follows the aggregates' chains from its checkpoint.
	r.reader = r.d.Reader()
	if err := r.ensureState(ctx, conn); err != nil {
		return err
	}
	st, err := loadState(ctx, conn, r.p.Name())
	if err != nil {
		return err
	}
	if st.Generation == 0 || st.SchemaVersion != r.p.SchemaVersion() {
		// Nothing to serve yet, or tables of another shape: build before
		// applying anything live.
		r.log.InfoContext(ctx, "building projection", "from_generation", st.Generation, "schema_version", r.p.SchemaVersion())
		if err := r.rebuildNow(ctx, conn, st); err != nil {
			var pe *poisonError
			if errors.As(err, &pe) {
				return r.poison(ctx, conn, st.Checkpoint, pe.seq, pe.err)
			}
			return err
		}
		if r.once {
			return errRebuilt
		}
		return errRestart
	}
	if st.Status == StatusStopped {
		return r.stopped(ctx, conn, st)
	}
	if st.RebuildingGeneration != 0 {
		// A rebuild whose runner died: start it over.
		r.dropAbandoned(ctx, conn, st)
		if _, err := conn.Exec(ctx, `UPDATE projection_state SET rebuilding_generation = NULL, rebuild_checkpoint = NULL,
			rebuild_started_at = NULL, rebuild_requested_at = coalesce(rebuild_requested_at, now()) WHERE name = $1`, r.p.Name()); err != nil {
			return err
		}
		st.RebuildingGeneration = 0
	}
	return r.live(ctx, conn, st)
}

// acquire takes the projection's advisory lock on conn, waiting while
// another runner holds it.
func (r *Runner) acquire(ctx context.Context, conn *pgx.Conn) error {
	logged := false
	for {
		var got bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lockKey(r.p.Name())).Scan(&got); err != nil {
			return err
		}
		if got {
			if logged {
				r.log.InfoContext(ctx, "took over the projection")
			}
			return nil
		}
		if !logged {
			r.log.InfoContext(ctx, "another runner is active; standing by")
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		// Keep the connection honest while waiting.
		if err := conn.Ping(ctx); err != nil {
			return err
		}
	}
}

func (r *Runner) ensureState(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, `INSERT INTO projection_state (name, generation, schema_version) VALUES ($1, 0, $2)
		ON CONFLICT (name) DO NOTHING`, r.p.Name(), r.p.SchemaVersion())
	return err
}

// live applies events as they arrive, and between batches looks for
// operators' requests (rebuild, skip).
func (r *Runner) live(ctx context.Context, conn *pgx.Conn, st State) error {
	defer r.stopRebuild()
	gen, cp := st.Generation, st.Checkpoint
	r.log.InfoContext(ctx, "projection running", "generation", gen, "checkpoint", cp)
	src := consume.Source{Stream: r.d.Store.Stream(), Ordered: &jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.AllSubjects}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: cp + 1,
	}}
	o := consume.Options{
		Prefetch: 2 * r.d.MaxBatch, Batch: r.d.MaxBatch, Log: r.log, TickEvery: r.d.ControlInterval,
		Tick: func(ctx context.Context) error {
			next, err := r.control(ctx, conn, gen, cp)
			if err != nil || next == gen {
				return err
			}
			// Switched to a rebuilt generation: carry on there.
			gen = next
			if r.once {
				return errRebuilt
			}
			return nil
		},
		Reader: r.reader,
		Poison: func(ctx context.Context, m *consume.Message, err error) error {
			if err := r.quarantine(ctx, conn, gen, cp, m.Seq, err); err != nil {
				return err
			}
			cp = m.Seq
			return nil
		},
	}
	err := consume.RunBatches(ctx, r.d.JS, src, o, func(ctx context.Context, ms []*consume.Message) error {
		batch := make([]Event, len(ms))
		for i, m := range ms {
			batch[i] = Event{Seq: m.Seq, Subject: m.Subject, Envelope: m.Envelope, Payload: m.Payload}
		}
		n, oerr := r.open(ctx, batch)
		if n > 0 {
			if err := r.applyBatch(ctx, conn, gen, cp, batch[:n]); err != nil {
				return err
			}
			cp = batch[n-1].Seq
		}
		if errors.Is(oerr, domain.ErrUnavailable) {
			// The key store, not the event: read the batch again later.
			return fmt.Errorf("opening personal data at seq %d: %w", batch[n].Seq, oerr)
		}
		if oerr != nil {
			return r.poison(ctx, conn, cp, batch[n].Seq, oerr)
		}
		return nil
	})
	if err == nil {
		return ctx.Err()
	}
	return err
}

// applyBatch applies a batch. A batch that fails for a reason other than
// the connection is applied event by event to find the one that cannot be.
func (r *Runner) applyBatch(ctx context.Context, conn *pgx.Conn, gen int, cp uint64, batch []Event) error {
	err := r.applyTx(ctx, conn, gen, cp, batch)
	if err == nil || r.retryable(ctx, err) {
		return err
	}
	for _, e := range batch {
		if err := r.applyTx(ctx, conn, gen, cp, []Event{e}); err != nil {
			if r.retryable(ctx, err) {
				return err
			}
			return r.poison(ctx, conn, cp, e.Seq, err)
		}
		cp = e.Seq
	}
	return nil
}

// retryable errors end the session without blaming the events.
func (r *Runner) retryable(ctx context.Context, err error) bool {
	return ctx.Err() != nil || postgres.Transient(err) || errors.Is(err, errRestart)
}

// applyTx applies batch and moves the checkpoint from cp to its last event
// in one transaction. The checkpoint only moves if it is still cp in this
// generation: a second runner (after a takeover) can never apply twice.
func (r *Runner) applyTx(ctx context.Context, conn *pgx.Conn, gen int, cp uint64, batch []Event) error {
	start := time.Now()
	last := batch[len(batch)-1]
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := r.p.Apply(ctx, tx, gen, batch); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE projection_state SET checkpoint = $2, last_event_at = $3, updated_at = now()
			WHERE name = $1 AND checkpoint = $4 AND generation = $5`, r.p.Name(), int64(last.Seq), last.Envelope.Time, int64(cp), gen)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("%w: the checkpoint moved under this runner", errRestart)
		}
		_, err = tx.Exec(ctx, "SELECT pg_notify($1, $2)", NotifyChannel, r.p.Name()+":"+strconv.FormatUint(last.Seq, 10))
		return err
	})
	end := time.Now()
	if err == nil {
		metrics.ProjectionBatchDuration.WithLabelValues(r.p.Name()).Observe(end.Sub(start).Seconds())
		metrics.ProjectionEvents.WithLabelValues(r.p.Name()).Add(float64(len(batch)))
	}
	r.traceApplied(ctx, batch, start, end, err)
	if err == nil && r.d.Observe != nil {
		r.d.Observe(r.p.Name(), len(batch), end.Sub(start), last.Seq, last.Envelope.Time)
	}
	return err
}

// traceApplied records, with tracing on, a span of the transaction that
// applied each event carrying a trace, as a child of the span that appended
// the event: the request's trace then shows when its write reached the read
// model. The spans are made afterwards, from the transaction's times, so the
// transaction itself pays nothing for them.
func (r *Runner) traceApplied(ctx context.Context, batch []Event, start, end time.Time, err error) {
	if !tracing.Enabled() {
		return
	}
	name := "project " + r.p.Name()
	for _, e := range batch {
		if e.Envelope.TraceParent == "" {
			continue
		}
		_, span := tracing.StartFromTraceParent(ctx, e.Envelope.TraceParent, name, trace.WithTimestamp(start),
			trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
				attribute.String("tenancy.projection", r.p.Name()), attribute.Int64("tenancy.seq", int64(e.Seq)),
				attribute.String("tenancy.event_type", e.Envelope.Type), attribute.String("tenancy.tenant_id", e.Envelope.TenantID),
				attribute.Int("tenancy.batch_size", len(batch))))
		tracing.Fail(span, err)
		span.End(trace.WithTimestamp(end))
	}
}

// decode checks messages through the integrity reader and turns them into
// events, opening personal data. A message that fails the checks is left
// out, recorded, and returned among the violations (the caller marks its
// aggregate); decode stops at the first event whose personal data cannot be
// opened and returns it as bad.
func (r *Runner) decode(ctx context.Context, rd *integrity.Reader, msgs []eventstore.Message) ([]Event, []*integrity.Violation, *eventstore.Message, error) {
	out := make([]Event, 0, len(msgs))
	at := make([]int, 0, len(msgs))
	var viol []*integrity.Violation
	if err := rd.Preverify(ctx, msgs); err != nil {
		return out, nil, nil, err
	}
	for i := range msgs {
		c, err := rd.Read(ctx, msgs[i])
		var v *integrity.Violation
		switch {
		case errors.As(err, &v):
			r.d.Quarantine(ctx, v)
			viol = append(viol, v)
			continue
		case err != nil:
			return out, viol, nil, err
		case c.Ignored:
			continue
		}
		out = append(out, Event{Seq: msgs[i].Seq, Subject: msgs[i].Subject, Envelope: c.Envelope, Payload: c.Payload})
		at = append(at, i)
	}
	n, err := r.open(ctx, out)
	if err != nil {
		return out[:n], viol, &msgs[at[n]], err
	}
	return out, viol, nil, nil
}

// open opens the personal data of a batch, fetching its tenants' keys at
// once, and returns how many events it opened before one failed.
func (r *Runner) open(ctx context.Context, batch []Event) (int, error) {
	if r.d.Opener == nil {
		return len(batch), nil
	}
	ids := make([]string, 0, len(batch))
	for _, e := range batch {
		ids = append(ids, events.PIIScope(e.Envelope))
		if o, ok := e.Payload.(events.OwnScoped); ok && o.OwnScope() != "" {
			// A user's data is under the user's own key.
			ids = append(ids, o.OwnScope())
		}
	}
	if err := r.d.Opener.Prefetch(ctx, ids); err != nil {
		r.log.WarnContext(ctx, "prefetching tenant keys failed; reading them one by one", "error", err)
	}
	for i, e := range batch {
		if err := events.OpenPII(e.Payload, events.PIIScope(e.Envelope), r.d.Opener); err != nil {
			return i, err
		}
	}
	return len(batch), nil
}

// quarantine passes over the message at seq, which failed the integrity
// checks: it is recorded, its aggregate is marked broken in generation gen,
// and the checkpoint moves past it in the same transaction.
func (r *Runner) quarantine(ctx context.Context, conn *pgx.Conn, gen int, cp, seq uint64, cause error) error {
	v, ok := cause.(*integrity.Violation)
	if !ok {
		v = &integrity.Violation{Seq: seq, Reason: "not-an-event", Err: cause}
	}
	r.d.Quarantine(ctx, v)
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := r.mark(ctx, tx, gen, []*integrity.Violation{v}); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE projection_state SET checkpoint = $2, updated_at = now()
			WHERE name = $1 AND checkpoint = $3 AND generation = $4`, r.p.Name(), int64(seq), int64(cp), gen)
		if err == nil && tag.RowsAffected() != 1 {
			err = fmt.Errorf("%w: the checkpoint moved under this runner", errRestart)
		}
		return err
	})
}

// mark marks the aggregates the violations break, if the projection keeps
// such marks.
func (r *Runner) mark(ctx context.Context, tx pgx.Tx, gen int, viol []*integrity.Violation) error {
	q, ok := r.p.(Quarantiner)
	if !ok {
		return nil
	}
	for _, v := range viol {
		if err := q.Quarantine(ctx, tx, gen, v); err != nil {
			return err
		}
	}
	return nil
}

// poison stops the projection on an event it cannot apply, records why, and
// waits for an operator to skip it.
func (r *Runner) poison(ctx context.Context, conn *pgx.Conn, cp, seq uint64, cause error) error {
	msg := fmt.Sprintf("event at stream sequence %d cannot be applied: %v", seq, cause)
	r.log.ErrorContext(ctx, "projection stopped on a poison event; inspect it and skip it with `projector skip`",
		"seq", seq, "error", cause)
	if _, err := conn.Exec(ctx, `UPDATE projection_state SET status = 'stopped', error = $2, poison_seq = $3, updated_at = now()
		WHERE name = $1`, r.p.Name(), msg, int64(seq)); err != nil {
		return err
	}
	st, err := loadState(ctx, conn, r.p.Name())
	if err != nil {
		return err
	}
	return r.stopped(ctx, conn, st)
}

// stopped waits, holding the projection, until the poison event is skipped.
func (r *Runner) stopped(ctx context.Context, conn *pgx.Conn, st State) error {
	t := time.NewTicker(r.d.ControlInterval)
	defer t.Stop()
	for {
		if st.SkipSeq != 0 && st.SkipSeq == st.PoisonSeq {
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `INSERT INTO projection_skips (projection, seq, reason, actor, error) VALUES ($1, $2, $3, $4, $5)`,
					r.p.Name(), int64(st.SkipSeq), st.SkipReason, st.SkipActor, st.Error); err != nil {
					return err
				}
				// A live generation moves past the event; a generation being
				// built leaves it out when the build runs again.
				_, err := tx.Exec(ctx, `UPDATE projection_state SET checkpoint = CASE WHEN generation > 0 THEN GREATEST(checkpoint, $2) ELSE checkpoint END,
					status = 'running', error = NULL, poison_seq = NULL, rebuilding_generation = NULL,
					skip_seq = NULL, skip_reason = NULL, skip_actor = NULL, updated_at = now() WHERE name = $1`, r.p.Name(), int64(st.SkipSeq))
				return err
			})
			if err != nil {
				return err
			}
			r.log.WarnContext(ctx, "skipped a poison event", "seq", st.SkipSeq, "reason", st.SkipReason, "actor", st.SkipActor)
			return errRestart
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		var err error
		if st, err = loadState(ctx, conn, r.p.Name()); err != nil {
			return err
		}
		if st.Status != StatusStopped {
			return errRestart
		}
	}
}
