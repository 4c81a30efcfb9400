// Package backoff is the one retry pause policy of the tree: a pause that
// doubles from a base up to a cap, jittered so that many retriers (instances
// restarting together, commands racing for one aggregate) spread out instead
// of retrying in lockstep.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy says how long to pause before each retry.
type Policy struct {
	// Base is the pause before the first retry.
	Base time.Duration
	// Max caps the pause.
	Max time.Duration
}

// Policies of the tree, named for what retries with them.
var (
	// Reconnect paces a service reconnecting to NATS or PostgreSQL, or
	// waiting for JetStream to elect its leaders.
	Reconnect = Policy{Base: 250 * time.Millisecond, Max: 5 * time.Second}
	// Publish paces re-sending an append whose acknowledgement was lost.
	Publish = Policy{Base: 50 * time.Millisecond, Max: 500 * time.Millisecond}
	// Contention paces a command that lost the race to append: short, so
	// that the winner's queue drains and this command gets its turn.
	Contention = Policy{Base: time.Millisecond, Max: 64 * time.Millisecond}
)

// Delay returns the pause before retry n (n >= 1): Base doubled n-1 times,
// capped at Max, then drawn uniformly from its upper half. Half the pause is
// kept so that a retry never comes at once; the other half is random so
// that retriers spread out.
func (p Policy) Delay(n int) time.Duration {
	d := p.Max
	if n < 1 {
		n = 1
	}
	if shift := n - 1; shift < 32 {
		if grown := p.Base << shift; grown > 0 && grown < p.Max {
			d = grown
		}
	}
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// Wait pauses before retry n, or until ctx ends (then it returns ctx's
// error).
func (p Policy) Wait(ctx context.Context, n int) error { return Sleep(ctx, p.Delay(n)) }

// Sleep waits d, or until ctx ends (then it returns ctx's error).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Retry calls fn until it succeeds, fails with an error retryable does not
// accept, or ctx ends (then it returns fn's last error). onRetry, if set,
// hears of each failure that is retried, for logging.
func Retry[T any](ctx context.Context, p Policy, retryable func(error) bool, onRetry func(attempt int, err error), fn func(context.Context) (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		v, err := fn(ctx)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return v, err
		}
		if onRetry != nil {
			onRetry(attempt, err)
		}
		if p.Wait(ctx, attempt) != nil {
			return v, err
		}
	}
}
