package backoff_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/backoff"
)

func TestDelayDoublesWithinJitterAndCaps(t *testing.T) {
	p := backoff.Policy{Base: 100 * time.Millisecond, Max: time.Second}
	for _, tc := range []struct {
		n      int
		lo, hi time.Duration
	}{
		{0, 50 * time.Millisecond, 100 * time.Millisecond},
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{4, 400 * time.Millisecond, 800 * time.Millisecond},
		{5, 500 * time.Millisecond, time.Second},
		{64, 500 * time.Millisecond, time.Second},
		{1 << 20, 500 * time.Millisecond, time.Second},
	} {
		for range 200 {
			if d := p.Delay(tc.n); d < tc.lo || d > tc.hi {
				t.Fatalf("Delay(%d) = %s, want within [%s, %s]", tc.n, d, tc.lo, tc.hi)
			}
		}
	}
}

func TestDelaySpreads(t *testing.T) {
	p := backoff.Policy{Base: time.Second, Max: time.Second}
	seen := map[time.Duration]bool{}
	for range 50 {
		seen[p.Delay(1)] = true
	}
	if len(seen) < 10 {
		t.Fatalf("50 delays took only %d values: no jitter", len(seen))
	}
}

func TestRetry(t *testing.T) {
	errBusy, errBroken := errors.New("busy"), errors.New("broken")
	retryable := func(err error) bool { return errors.Is(err, errBusy) }
	p := backoff.Policy{Base: time.Millisecond, Max: 2 * time.Millisecond}
	for _, tc := range []struct {
		name      string
		failures  []error
		wantCalls int
		wantErr   error
	}{
		{"succeeds at once", nil, 1, nil},
		{"retries what is retryable", []error{errBusy, errBusy}, 3, nil},
		{"stops on anything else", []error{errBusy, errBroken, errBusy}, 2, errBroken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls, retried := 0, 0
			v, err := backoff.Retry(context.Background(), p, retryable, func(int, error) { retried++ }, func(context.Context) (int, error) {
				calls++
				if calls <= len(tc.failures) {
					return 0, tc.failures[calls-1]
				}
				return 42, nil
			})
			if calls != tc.wantCalls || !errors.Is(err, tc.wantErr) || (err == nil && v != 42) {
				t.Fatalf("calls %d err %v v %d; want calls %d err %v", calls, err, v, tc.wantCalls, tc.wantErr)
			}
			if retried != calls-1 {
				t.Fatalf("onRetry heard %d retries of %d calls", retried, calls)
			}
		})
	}
}

func TestRetryStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	errBusy := errors.New("busy")
	calls := 0
	_, err := backoff.Retry(ctx, backoff.Policy{Base: time.Hour, Max: time.Hour}, func(error) bool { return true }, nil, func(context.Context) (int, error) {
		calls++
		cancel()
		return 0, errBusy
	})
	if !errors.Is(err, errBusy) || calls != 1 {
		t.Fatalf("err %v after %d calls; want the last error after 1 call", err, calls)
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := backoff.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on a cancelled context = %v", err)
	}
}
