// Package readmodel answers queries from the PostgreSQL read models, and lets
// a reader wait until a projection has reached the sequence a write
// returned (read-your-writes).
package readmodel

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/internal/backoff"
	"github.com/tenancyhq/tenancy/internal/projection"
)

// Waiter tracks how far each projection has got, from the runners'
// notifications, so that readers can wait for a sequence without polling.
type Waiter struct {
	dbURL string
	pool  *pgxpool.Pool
	log   *slog.Logger

	mu        sync.Mutex
	reached   map[string]uint64
	changed   chan struct{}
	listening bool
}

// NewWaiter returns a waiter; Run must be running for it to learn of
// progress promptly (without it, waiters poll).
func NewWaiter(dbURL string, pool *pgxpool.Pool, log *slog.Logger) *Waiter {
	return &Waiter{dbURL: dbURL, pool: pool, log: log, reached: map[string]uint64{}, changed: make(chan struct{})}
}

// Run listens for checkpoint notifications until ctx ends, reconnecting as
// needed.
func (w *Waiter) Run(ctx context.Context) error {
	for attempt := 1; ctx.Err() == nil; attempt++ {
		err := w.listen(ctx)
		w.setListening(false)
		if ctx.Err() != nil {
			return nil
		}
		w.log.WarnContext(ctx, "read model: listening for projection progress failed; retrying", "error", err)
		if backoff.Reconnect.Wait(ctx, attempt) != nil {
			return nil
		}
	}
	return nil
}

func (w *Waiter) listen(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, w.dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+projection.NotifyChannel); err != nil {
		return err
	}
	// Listening first, then reading the state, misses nothing.
	if err := w.refresh(ctx, conn); err != nil {
		return err
	}
	w.setListening(true)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		name, seq, ok := strings.Cut(n.Payload, ":")
		if !ok {
			continue
		}
		if v, err := strconv.ParseUint(seq, 10, 64); err == nil {
			w.advance(name, v)
		}
	}
}

type rowQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func (w *Waiter) refresh(ctx context.Context, q rowQuerier) error {
	rows, err := q.Query(ctx, "SELECT name, checkpoint FROM projection_state WHERE generation > 0")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var cp int64
		if err := rows.Scan(&name, &cp); err != nil {
			return err
		}
		w.advance(name, uint64(cp))
	}
	return rows.Err()
}

func (w *Waiter) setListening(v bool) {
	w.mu.Lock()
	w.listening = v
	w.mu.Unlock()
}

func (w *Waiter) advance(name string, seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if seq <= w.reached[name] {
		return
	}
	w.reached[name] = seq
	close(w.changed)
	w.changed = make(chan struct{})
}

// ErrBehind reports a projection that did not reach the wanted sequence in
// time.
var ErrBehind = errors.New("the read model has not caught up")

// Wait returns once projection name has applied sequence minSeq, or
// ErrBehind after timeout. It returns the sequence the projection reached.
func (w *Waiter) Wait(ctx context.Context, name string, minSeq uint64, timeout time.Duration) (uint64, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		reached, changed, listening := w.reached[name], w.changed, w.listening
		w.mu.Unlock()
		if reached >= minSeq {
			return reached, nil
		}
		var poll <-chan time.Time
		if !listening {
			// No notifications: look at the table now and then.
			if err := w.refresh(ctx, w.pool); err != nil && ctx.Err() == nil {
				w.log.DebugContext(ctx, "read model: reading projection state failed", "error", err)
			}
			poll = time.After(50 * time.Millisecond)
		}
		select {
		case <-changed:
		case <-poll:
		case <-deadline.C:
			return reached, ErrBehind
		case <-ctx.Done():
			return reached, ctx.Err()
		}
	}
}
