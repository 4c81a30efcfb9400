package projection

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/metrics"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Status is what operators need to know about a projection.
type Status struct {
	Name string `json:"name"`
	// State is running, rebuilding, stopped (on a poison event) or
	// not_built.
	State string `json:"state"`
	// Active says whether a runner currently holds the projection.
	Active        bool       `json:"active"`
	Generation    int        `json:"generation"`
	SchemaVersion int        `json:"schema_version"`
	Checkpoint    uint64     `json:"checkpoint"`
	StreamHead    uint64     `json:"stream_head"`
	LagEvents     uint64     `json:"lag_events"`
	LagSeconds    float64    `json:"lag_seconds"`
	LastEventAt   *time.Time `json:"last_event_at,omitempty"`
	UpdatedAt     time.Time  `json:"updated_at"`
	Error         string     `json:"error,omitempty"`
	PoisonSeq     uint64     `json:"poison_seq,omitempty"`
	Rebuild       *Rebuild   `json:"rebuild,omitempty"`
}

// Rebuild describes a rebuild in progress.
type Rebuild struct {
	Generation int       `json:"generation"`
	Checkpoint uint64    `json:"checkpoint"`
	StartedAt  time.Time `json:"started_at"`
}

// Statuses reports every projection whose runner has ever started.
func Statuses(ctx context.Context, pool *pgxpool.Pool, store *eventstore.Store, now time.Time) ([]Status, error) {
	states, err := States(ctx, pool)
	if err != nil {
		return nil, err
	}
	head, err := store.LastSeq(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Status, 0, len(states))
	for _, s := range states {
		st := Status{
			Name: s.Name, Generation: s.Generation, SchemaVersion: s.SchemaVersion, Checkpoint: s.Checkpoint,
			StreamHead: head, UpdatedAt: s.UpdatedAt, Error: s.Error, PoisonSeq: s.PoisonSeq,
		}
		if !s.LastEventAt.IsZero() {
			t := s.LastEventAt
			st.LastEventAt = &t
		}
		switch {
		case s.Status == StatusStopped:
			st.State = "stopped"
		case s.RebuildingGeneration != 0:
			st.State = "rebuilding"
		case s.Generation == 0:
			st.State = "not_built"
		default:
			st.State = "running"
		}
		if s.RebuildingGeneration != 0 {
			st.Rebuild = &Rebuild{Generation: s.RebuildingGeneration, Checkpoint: s.RebuildCheckpoint, StartedAt: s.RebuildStartedAt}
		}
		lag, err := lagOf(ctx, store, s, now)
		if err != nil {
			return nil, err
		}
		st.LagEvents, st.LagSeconds = lag.Events, lag.Seconds
		key := lockKey(s.Name)
		// pg_locks spans the whole server: only this database's runners count.
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1)`, uint64(key)>>32, uint64(key)&0xffffffff).Scan(&st.Active); err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Lags reports how far each projection is behind the log: the events after
// its checkpoint, and the age of the oldest of them. It is what the
// projection lag metrics read at scrape time.
func Lags(ctx context.Context, pool *pgxpool.Pool, store *eventstore.Store, now time.Time) ([]metrics.ProjectionLag, error) {
	states, err := States(ctx, pool)
	if err != nil {
		return nil, err
	}
	out := make([]metrics.ProjectionLag, 0, len(states))
	for _, s := range states {
		lag, err := lagOf(ctx, store, s, now)
		if err != nil {
			return nil, err
		}
		out = append(out, lag)
	}
	return out, nil
}

func lagOf(ctx context.Context, store *eventstore.Store, s State, now time.Time) (metrics.ProjectionLag, error) {
	lag := metrics.ProjectionLag{Name: s.Name}
	first, pending, err := store.Pending(ctx, events.AllSubjects, s.Checkpoint+1)
	if err != nil {
		return lag, err
	}
	lag.Events = pending
	if first != nil {
		lag.Seconds = max(0, now.Sub(first.Time).Seconds())
	}
	return lag, nil
}
