package projection

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/integrity"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// A rebuild replays the whole log into a new generation of the tables with
// the projection's bulk loader (COPY), creates the indexes, catches up with
// the live generation, and then — in one transaction on the live runner's
// connection — applies the last few events, points the views at the new
// tables and moves the state to the new generation. Readers see the old
// tables or the new ones, never a half-built one. The old tables are then
// dropped.

type rebuildJob struct {
	gen     int
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
	switchs chan switchRequest
}

type switchRequest struct {
	gen        int
	checkpoint uint64
	reply      chan error
}

// control handles operator requests between batches. It returns the
// generation live events now go to.
func (r *Runner) control(ctx context.Context, conn *pgx.Conn, gen int, cp uint64) (int, error) {
	r.mu.Lock()
	job := r.rebuild
	r.mu.Unlock()
	if job != nil {
		select {
		case req := <-job.switchs:
			err := r.switchTo(ctx, conn, gen, cp, req.gen, req.checkpoint)
			req.reply <- err
			if err != nil {
				return gen, err
			}
			r.log.InfoContext(ctx, "switched reads to the rebuilt generation", "generation", req.gen, "checkpoint", cp)
			return req.gen, nil
		case <-job.done:
			r.mu.Lock()
			r.rebuild = nil
			r.mu.Unlock()
			if job.err != nil && ctx.Err() == nil {
				r.log.ErrorContext(ctx, "rebuild failed; the live generation keeps serving", "generation", job.gen, "error", job.err)
				_, _ = conn.Exec(ctx, `UPDATE projection_state SET rebuilding_generation = NULL, rebuild_checkpoint = NULL,
					rebuild_started_at = NULL, error = $2, updated_at = now() WHERE name = $1`, r.p.Name(), "rebuild failed: "+job.err.Error())
			}
			return gen, nil
		default:
			return gen, nil
		}
	}
	st, err := loadState(ctx, conn, r.p.Name())
	if err != nil {
		return gen, err
	}
	if st.RebuildRequestedAt.IsZero() {
		return gen, nil
	}
	r.dropAbandoned(ctx, conn, st)
	next := max(st.Generation, st.RebuildingGeneration) + 1
	if _, err := conn.Exec(ctx, `UPDATE projection_state SET rebuild_requested_at = NULL, rebuilding_generation = $2,
		rebuild_checkpoint = 0, rebuild_started_at = now(), error = NULL, updated_at = now() WHERE name = $1`, r.p.Name(), next); err != nil {
		return gen, err
	}
	r.log.InfoContext(ctx, "rebuilding into a new generation while the live one serves", "generation", next, "requested_by", st.RebuildRequestedBy)
	jctx, cancel := context.WithCancel(ctx)
	job = &rebuildJob{gen: next, cancel: cancel, done: make(chan struct{}), switchs: make(chan switchRequest)}
	r.mu.Lock()
	r.rebuild = job
	r.mu.Unlock()
	go func() {
		defer close(job.done)
		job.err = r.build(jctx, next, func(ctx context.Context, gen int, rcp uint64) error {
			reply := make(chan error, 1)
			select {
			case job.switchs <- switchRequest{gen: gen, checkpoint: rcp, reply: reply}:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case err := <-reply:
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	return gen, nil
}

// stopRebuild cancels a rebuild in progress (the session ended).
func (r *Runner) stopRebuild() {
	r.mu.Lock()
	job := r.rebuild
	r.rebuild = nil
	r.mu.Unlock()
	if job != nil {
		job.cancel()
		<-job.done
	}
}

// rebuildNow builds a generation while nothing is applied live (first start,
// or tables of another schema version).
func (r *Runner) rebuildNow(ctx context.Context, conn *pgx.Conn, st State) error {
	r.dropAbandoned(ctx, conn, st)
	next := max(st.Generation, st.RebuildingGeneration) + 1
	if _, err := conn.Exec(ctx, `UPDATE projection_state SET rebuilding_generation = $2, rebuild_checkpoint = 0,
		rebuild_started_at = now(), rebuild_requested_at = NULL, updated_at = now() WHERE name = $1`, r.p.Name(), next); err != nil {
		return err
	}
	return r.build(ctx, next, func(ctx context.Context, gen int, rcp uint64) error {
		// Nothing moved the live checkpoint: the new generation replaces the
		// old one at the sequence it reached.
		return r.switchTo(ctx, conn, st.Generation, st.Checkpoint, gen, rcp)
	})
}

// dropAbandoned drops the tables of a rebuild that never finished (its
// runner died).
func (r *Runner) dropAbandoned(ctx context.Context, conn *pgx.Conn, st State) {
	if st.RebuildingGeneration == 0 || st.RebuildingGeneration == st.Generation {
		return
	}
	for _, t := range r.p.Tables() {
		if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+Ident(Table(t, st.RebuildingGeneration))); err != nil {
			r.log.WarnContext(ctx, "dropping an abandoned generation failed", "table", Table(t, st.RebuildingGeneration), "error", err)
		}
	}
}

// build replays the log into generation gen, then calls switchIn with how
// far it got.
func (r *Runner) build(ctx context.Context, gen int, switchIn func(ctx context.Context, gen int, rcp uint64) error) error {
	conn, err := pgx.Connect(ctx, r.d.DatabaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	start := time.Now()
	if err := r.createGeneration(ctx, conn, gen); err != nil {
		return err
	}
	head, err := r.d.Store.LastSeq(ctx)
	if err != nil {
		return err
	}
	skipped, err := r.skipped(ctx, conn)
	if err != nil {
		return err
	}
	rd := r.d.Reader() // the rebuild follows the chains from the log's start
	rd.FromStart()
	rcp, err := r.replay(ctx, conn, rd, gen, head, skipped)
	if err != nil {
		return err
	}
	if err := r.indexGeneration(ctx, conn, gen); err != nil {
		return err
	}
	r.log.InfoContext(ctx, "replayed the log into the new generation", "generation", gen, "checkpoint", rcp, "took", time.Since(start).String())
	if rcp, err = r.catchUpWithLive(ctx, conn, rd, gen, rcp, skipped); err != nil {
		return err
	}
	return switchIn(ctx, gen, rcp)
}

// createGeneration creates generation gen's tables, empty, dropping any
// left over.
func (r *Runner) createGeneration(ctx context.Context, conn *pgx.Conn, gen int) error {
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, t := range r.p.Tables() {
			if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+Ident(Table(t, gen))); err != nil {
				return err
			}
		}
		return r.p.Create(ctx, tx, gen)
	}); err != nil {
		return fmt.Errorf("create generation %d: %w", gen, err)
	}
	return nil
}

// replay bulk-loads the log up to head into generation gen, recording the
// rebuild checkpoint after each batch, and returns the sequence it reached.
func (r *Runner) replay(ctx context.Context, conn *pgx.Conn, rd *integrity.Reader, gen int, head uint64, skipped map[uint64]bool) (uint64, error) {
	bulk := r.p.NewBulk(gen)
	var rcp uint64
	var violations []*integrity.Violation
	defer func() {
		// Marked once the bulk load has written every row; only
		// unresolved violations are reported, so no later resolution in
		// the replay clears them.
		if len(violations) > 0 {
			if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return r.mark(ctx, tx, gen, violations) }); err != nil {
				r.log.ErrorContext(ctx, "marking quarantined aggregates in the new generation failed", "error", err)
			}
		}
	}()
	for from := uint64(1); from <= head; {
		msgs, more, err := r.d.Store.Read(ctx, events.AllSubjects, from, r.d.MaxBatch)
		if err != nil {
			return rcp, err
		}
		if len(msgs) == 0 {
			break
		}
		batch, viol, bad, derr := r.decodeSkipping(ctx, rd, msgs, skipped)
		if bad != nil || derr != nil {
			return rcp, r.decodeFailure(bad, derr)
		}
		violations = append(violations, viol...)
		if len(batch) > 0 {
			if err := bulk.Load(ctx, conn, batch); err != nil {
				return rcp, fmt.Errorf("bulk load up to seq %d: %w", batch[len(batch)-1].Seq, err)
			}
		}
		rcp = msgs[len(msgs)-1].Seq
		if err := r.saveRebuildCheckpoint(ctx, conn, rcp); err != nil {
			return rcp, err
		}
		from = rcp + 1
		if !more {
			break
		}
	}
	return rcp, nil
}

// indexGeneration creates generation gen's indexes and statistics.
func (r *Runner) indexGeneration(ctx context.Context, conn *pgx.Conn, gen int) error {
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return r.p.Indexes(ctx, tx, gen) }); err != nil {
		return fmt.Errorf("index generation %d: %w", gen, err)
	}
	// Fresh tables have no statistics until autovacuum gets to them; without
	// them the planner misjudges every filter.
	for _, t := range r.p.Tables() {
		if _, err := conn.Exec(ctx, "ANALYZE "+Ident(Table(t, gen))); err != nil {
			return fmt.Errorf("analyze generation %d: %w", gen, err)
		}
	}
	return nil
}

// catchUpWithLive applies to generation gen, from rcp on, what the live
// generation has applied since, while it keeps going, until the gap is
// small enough to close inside the switch. It returns the sequence reached.
func (r *Runner) catchUpWithLive(ctx context.Context, conn *pgx.Conn, rd *integrity.Reader, gen int, rcp uint64, skipped map[uint64]bool) (uint64, error) {
	for {
		var live int64
		if err := conn.QueryRow(ctx, "SELECT checkpoint FROM projection_state WHERE name = $1", r.p.Name()).Scan(&live); err != nil {
			return rcp, err
		}
		if uint64(live) <= rcp+uint64(r.d.MaxBatch) {
			return rcp, nil
		}
		next, err := r.catchUp(ctx, conn, rd, gen, rcp, uint64(live), skipped)
		if err != nil {
			return rcp, err
		}
		rcp = next
		if err := r.saveRebuildCheckpoint(ctx, conn, rcp); err != nil {
			return rcp, err
		}
	}
}

// saveRebuildCheckpoint records how far the rebuild got.
func (r *Runner) saveRebuildCheckpoint(ctx context.Context, conn *pgx.Conn, rcp uint64) error {
	_, err := conn.Exec(ctx, "UPDATE projection_state SET rebuild_checkpoint = $2 WHERE name = $1", r.p.Name(), int64(rcp))
	return err
}

// catchUp applies the events after from, up to and including to, to
// generation gen.
func (r *Runner) catchUp(ctx context.Context, conn *pgx.Conn, rd *integrity.Reader, gen int, from, to uint64, skipped map[uint64]bool) (uint64, error) {
	for from < to {
		msgs, _, err := r.d.Store.Read(ctx, events.AllSubjects, from+1, min(r.d.MaxBatch, int(to-from)))
		if err != nil {
			return from, err
		}
		var keep []Event
		batch, viol, bad, derr := r.decodeSkipping(ctx, rd, msgs, skipped)
		for _, e := range batch {
			if e.Seq <= to {
				keep = append(keep, e)
			}
		}
		if (bad != nil && bad.Seq <= to) || (bad == nil && derr != nil) {
			return from, r.decodeFailure(bad, derr)
		}
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return r.mark(ctx, tx, gen, viol) }); err != nil {
			return from, err
		}
		if len(keep) == 0 {
			if len(msgs) == 0 || msgs[len(msgs)-1].Seq >= to {
				return to, nil
			}
			from = msgs[len(msgs)-1].Seq
			continue
		}
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return r.p.Apply(ctx, tx, gen, keep) }); err != nil {
			return from, err
		}
		from = keep[len(keep)-1].Seq
	}
	return from, nil
}

// switchTo makes generation to (caught up to rcp) the live one at live
// checkpoint cp of generation from, in one transaction.
func (r *Runner) switchTo(ctx context.Context, conn *pgx.Conn, from int, cp uint64, to int, rcp uint64) error {
	final := max(cp, rcp)
	skipped, err := r.skipped(ctx, conn)
	if err != nil {
		return err
	}
	var gap []Event
	var gapViolations []*integrity.Violation
	rd := r.d.Reader()
	for at := rcp; at < final; {
		msgs, _, err := r.d.Store.Read(ctx, events.AllSubjects, at+1, r.d.MaxBatch)
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			break
		}
		batch, viol, bad, derr := r.decodeSkipping(ctx, rd, msgs, skipped)
		if (bad != nil && bad.Seq <= final) || (bad == nil && derr != nil) {
			return r.decodeFailure(bad, derr)
		}
		gapViolations = append(gapViolations, viol...)
		for _, e := range batch {
			if e.Seq <= final {
				gap = append(gap, e)
			}
		}
		at = msgs[len(msgs)-1].Seq
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := r.mark(ctx, tx, to, gapViolations); err != nil {
			return err
		}
		for len(gap) > 0 {
			n := min(len(gap), r.d.MaxBatch)
			if err := r.p.Apply(ctx, tx, to, gap[:n]); err != nil {
				return err
			}
			gap = gap[n:]
		}
		for _, t := range r.p.Tables() {
			if _, err := tx.Exec(ctx, "DROP VIEW IF EXISTS "+Ident(t)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "CREATE VIEW "+Ident(t)+" AS SELECT * FROM "+Ident(Table(t, to))); err != nil {
				return err
			}
		}
		tag, err := tx.Exec(ctx, `UPDATE projection_state SET generation = $2, schema_version = $3, checkpoint = $4,
			rebuilding_generation = NULL, rebuild_checkpoint = NULL, rebuild_started_at = NULL, updated_at = now()
			WHERE name = $1 AND generation = $5 AND checkpoint = $6`, r.p.Name(), to, r.p.SchemaVersion(), int64(final), from, int64(cp))
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("%w: the live generation moved during the switch", errRestart)
		}
		_, err = tx.Exec(ctx, "SELECT pg_notify($1, $2)", NotifyChannel, r.p.Name()+":"+strconv.FormatUint(final, 10))
		return err
	})
	if err != nil {
		return err
	}
	if from > 0 && from != to {
		for _, t := range r.p.Tables() {
			if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+Ident(Table(t, from))); err != nil {
				r.log.WarnContext(ctx, "dropping the old generation failed", "table", Table(t, from), "error", err)
			}
		}
	}
	return nil
}

// poisonError reports an event a rebuild cannot read.
type poisonError struct {
	seq uint64
	err error
}

func (e *poisonError) Error() string {
	return fmt.Sprintf("event at stream sequence %d cannot be read: %v", e.seq, e.err)
}

func (e *poisonError) Unwrap() error { return e.err }

// skipped returns the events operators skipped for this projection; a
// rebuild skips them again.
func (r *Runner) skipped(ctx context.Context, conn *pgx.Conn) (map[uint64]bool, error) {
	rows, err := conn.Query(ctx, "SELECT seq FROM projection_skips WHERE projection = $1", r.p.Name())
	if err != nil {
		return nil, err
	}
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	out := make(map[uint64]bool, len(seqs))
	for _, s := range seqs {
		out[uint64(s)] = true
	}
	return out, nil
}

// decodeFailure is a poison error for an event whose personal data cannot
// be opened, or the error that kept messages from being checked. A key
// that could not be read (the key store unavailable, as in a failover) is
// no fault of the event: the error is returned to be retried.
func (r *Runner) decodeFailure(bad *eventstore.Message, err error) error {
	if bad != nil && !errors.Is(err, domain.ErrUnavailable) {
		return &poisonError{seq: bad.Seq, err: err}
	}
	return err
}

// decodeSkipping decodes like decode, leaving out skipped events.
func (r *Runner) decodeSkipping(ctx context.Context, rd *integrity.Reader, msgs []eventstore.Message, skipped map[uint64]bool) ([]Event, []*integrity.Violation, *eventstore.Message, error) {
	if len(skipped) > 0 {
		kept := msgs[:0:0]
		for _, m := range msgs {
			if !skipped[m.Seq] {
				kept = append(kept, m)
			}
		}
		msgs = kept
	}
	return r.decode(ctx, rd, msgs)
}
