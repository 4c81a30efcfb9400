// Package attempts records every webhook delivery attempt in PostgreSQL,
// off the delivery path, and reads the record back for operators. The
// record is operational, not an event: replaying the log does not rebuild
// it.
package attempts

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/internal/backoff"
	"github.com/tenancyhq/tenancy/internal/postgres"
)

// Outcome classifies one attempt.
type Outcome string

// Outcomes of an attempt.
const (
	Delivered Outcome = "delivered"
	Failed    Outcome = "failed"
	// Gone is a 410: the receiver asked never to be called again.
	Gone Outcome = "gone"
	// Refused is a destination the egress policy denies; it is retried like
	// any failure, since the allowlist or DNS may change.
	Refused Outcome = "refused"
)

// Attempt is the record of one delivery attempt.
type Attempt struct {
	ID        int64     `json:"id"`
	WebhookID string    `json:"webhook_id"`
	EventSeq  uint64    `json:"event_seq"`
	EventID   string    `json:"event_id"`
	EventType string    `json:"event_type"`
	TenantID  string    `json:"tenant_id"`
	Attempt   int       `json:"attempt"`
	Replay    bool      `json:"replay"`
	At        time.Time `json:"at"`
	Outcome   Outcome   `json:"outcome"`
	Status    int       `json:"status,omitempty"`
	LatencyMS float64   `json:"latency_ms"`
	Response  string    `json:"response,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// Log writes attempts to PostgreSQL in batches, off the delivery
// path, and reads them back.
type Log struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	ch   chan Attempt
}

// NewLog returns a log on pool. Run must be running for Record to
// make progress.
func NewLog(pool *pgxpool.Pool, log *slog.Logger) *Log {
	return &Log{pool: pool, log: log, ch: make(chan Attempt, 4096)}
}

// Record queues an attempt. It blocks when the queue is full (PostgreSQL is
// down for long): deliveries slow down rather than go unrecorded.
func (l *Log) Record(ctx context.Context, a Attempt) {
	select {
	case l.ch <- a:
	case <-ctx.Done():
	}
}

// Run writes queued attempts until ctx ends, retrying while PostgreSQL is
// unreachable, and flushes what is queued before returning.
func (l *Log) Run(ctx context.Context) error {
	batch := make([]Attempt, 0, 512)
	for {
		select {
		case a := <-l.ch:
			batch = append(batch, a)
		case <-ctx.Done():
			l.drain(&batch)
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := l.write(fctx, batch); err != nil {
				l.log.Warn("attempt records lost at shutdown", "count", len(batch), "error", err)
			}
			return nil
		}
		l.drain(&batch)
		for n := 0; ; n++ {
			err := l.write(ctx, batch)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				break
			}
			l.log.Warn("cannot record webhook attempts; retrying", "count", len(batch), "error", err)
			_ = backoff.Reconnect.Wait(ctx, n+1)
		}
		if ctx.Err() == nil {
			batch = batch[:0]
		}
	}
}

func (l *Log) drain(batch *[]Attempt) {
	for len(*batch) < cap(*batch) {
		select {
		case a := <-l.ch:
			*batch = append(*batch, a)
		default:
			return
		}
	}
}

func (l *Log) write(ctx context.Context, batch []Attempt) error {
	if len(batch) == 0 {
		return nil
	}
	rows := make([][]any, len(batch))
	for i, a := range batch {
		var status any
		if a.Status != 0 {
			status = a.Status
		}
		rows[i] = []any{a.WebhookID, int64(a.EventSeq), a.EventID, a.EventType, a.TenantID, a.Attempt, a.Replay, a.At, string(a.Outcome), status, a.LatencyMS, nullable(a.Response), nullable(a.Error)}
	}
	_, err := l.pool.CopyFrom(ctx, pgx.Identifier{"webhook_attempts"},
		[]string{"webhook_id", "event_seq", "event_id", "event_type", "tenant_id", "attempt", "replay", "at", "outcome", "status", "latency_ms", "response", "error"},
		pgx.CopyFromRows(rows))
	return err
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Filter selects attempts of one endpoint.
type Filter struct {
	WebhookID string
	EventSeq  uint64
	// Before is the page token: attempts with smaller ids follow.
	Before int64
	Limit  int
}

// Reader reads recorded attempts.
type Reader struct{ Pool *pgxpool.Pool }

// List returns attempts newest first, and whether more follow.
func (r Reader) List(ctx context.Context, f Filter) ([]Attempt, bool, error) {
	q := `SELECT id, webhook_id::text, event_seq, event_id, event_type, tenant_id::text, attempt, replay, at, outcome,
	             coalesce(status, 0), latency_ms, coalesce(response, ''), coalesce(error, '')
	        FROM webhook_attempts WHERE webhook_id = $1`
	args := []any{f.WebhookID}
	if f.EventSeq != 0 {
		args = append(args, int64(f.EventSeq))
		q += fmt.Sprintf(" AND event_seq = $%d", len(args))
	}
	if f.Before != 0 {
		args = append(args, f.Before)
		q += fmt.Sprintf(" AND id < $%d", len(args))
	}
	args = append(args, f.Limit+1)
	q += fmt.Sprintf(" ORDER BY id DESC LIMIT $%d", len(args))
	rows, err := r.Pool.Query(ctx, q, args...)
	if err != nil {
		return nil, false, postgres.ReadErr(err)
	}
	out := []Attempt{}
	for rows.Next() {
		var a Attempt
		var seq int64
		var outcome string
		if err := rows.Scan(&a.ID, &a.WebhookID, &seq, &a.EventID, &a.EventType, &a.TenantID, &a.Attempt, &a.Replay, &a.At, &outcome,
			&a.Status, &a.LatencyMS, &a.Response, &a.Error); err != nil {
			rows.Close()
			return nil, false, postgres.ReadErr(err)
		}
		a.EventSeq, a.Outcome = uint64(seq), Outcome(outcome)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, false, postgres.ReadErr(err)
	}
	more := len(out) > f.Limit
	if more {
		out = out[:f.Limit]
	}
	return out, more, nil
}
