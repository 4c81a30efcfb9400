package projection

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// State is a projection's row in projection_state.
type State struct {
	Name                 string
	Generation           int
	SchemaVersion        int
	Checkpoint           uint64
	Status               string
	Error                string
	PoisonSeq            uint64
	LastEventAt          time.Time
	UpdatedAt            time.Time
	RebuildRequestedAt   time.Time
	RebuildRequestedBy   string
	RebuildingGeneration int
	RebuildCheckpoint    uint64
	RebuildStartedAt     time.Time
	SkipSeq              uint64
	SkipReason           string
	SkipActor            string
}

// Runner statuses.
const (
	StatusRunning = "running"
	StatusStopped = "stopped"
)

const stateColumns = `name, generation, schema_version, checkpoint, status, coalesce(error, ''), coalesce(poison_seq, 0),
	coalesce(last_event_at, 'epoch'), updated_at, coalesce(rebuild_requested_at, 'epoch'), coalesce(rebuild_requested_by, ''),
	coalesce(rebuilding_generation, 0), coalesce(rebuild_checkpoint, 0), coalesce(rebuild_started_at, 'epoch'),
	coalesce(skip_seq, 0), coalesce(skip_reason, ''), coalesce(skip_actor, '')`

func scanState(row pgx.Row) (State, error) {
	var s State
	var cp, poison, rcp, skip int64
	err := row.Scan(&s.Name, &s.Generation, &s.SchemaVersion, &cp, &s.Status, &s.Error, &poison,
		&s.LastEventAt, &s.UpdatedAt, &s.RebuildRequestedAt, &s.RebuildRequestedBy,
		&s.RebuildingGeneration, &rcp, &s.RebuildStartedAt, &skip, &s.SkipReason, &s.SkipActor)
	s.Checkpoint, s.PoisonSeq, s.RebuildCheckpoint, s.SkipSeq = uint64(cp), uint64(poison), uint64(rcp), uint64(skip)
	for _, t := range []*time.Time{&s.LastEventAt, &s.RebuildRequestedAt, &s.RebuildStartedAt} {
		if t.Unix() == 0 {
			*t = time.Time{}
		}
	}
	return s, err
}

// ErrUnknownProjection reports a projection name with no state row.
var ErrUnknownProjection = errors.New("unknown projection")

func loadState(ctx context.Context, conn *pgx.Conn, name string) (State, error) {
	s, err := scanState(conn.QueryRow(ctx, "SELECT "+stateColumns+" FROM projection_state WHERE name = $1", name))
	if errors.Is(err, pgx.ErrNoRows) {
		return s, fmt.Errorf("%w %q", ErrUnknownProjection, name)
	}
	return s, err
}

// States reads every projection's state.
func States(ctx context.Context, pool *pgxpool.Pool) ([]State, error) {
	rows, err := pool.Query(ctx, "SELECT "+stateColumns+" FROM projection_state ORDER BY name")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []State
	for rows.Next() {
		s, err := scanState(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// RequestRebuild asks the projection's active runner to rebuild it.
func RequestRebuild(ctx context.Context, pool *pgxpool.Pool, name, actor string) error {
	tag, err := pool.Exec(ctx, `UPDATE projection_state SET rebuild_requested_at = now(), rebuild_requested_by = $2, updated_at = now()
		WHERE name = $1`, name, actor)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w %q (has its runner ever started?)", ErrUnknownProjection, name)
	}
	return nil
}

// ErrNotStopped reports a skip request for a projection not stopped on that
// event.
var ErrNotStopped = errors.New("the projection is not stopped on that event")

// RequestSkip asks the projection's runner to skip the poison event it
// stopped on. seq must be that event's sequence: skipping is deliberate.
func RequestSkip(ctx context.Context, pool *pgxpool.Pool, name string, seq uint64, reason, actor string) error {
	if reason == "" {
		return errors.New("a skip needs a reason")
	}
	tag, err := pool.Exec(ctx, `UPDATE projection_state SET skip_seq = $2, skip_reason = $3, skip_actor = $4, updated_at = now()
		WHERE name = $1 AND status = 'stopped' AND poison_seq = $2`, name, int64(seq), reason, actor)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s is not stopped on seq %d (see `projector status`)", ErrNotStopped, name, seq)
	}
	return nil
}
