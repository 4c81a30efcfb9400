package testenv

import (
	"sync"
	"testing"
	"time"
)

// Load keeps fn busy on workers goroutines, calling it again and again with
// the worker's number and the count of its earlier calls, until the
// returned stop is called or the test ends. stop waits for the calls under
// way to return.
func Load(tb testing.TB, workers int, fn func(worker, i int)) (stop func()) {
	tb.Helper()
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-quit:
					return
				default:
				}
				fn(w, i)
			}
		})
	}
	var once sync.Once
	stop = func() {
		once.Do(func() { close(quit) })
		wg.Wait()
	}
	tb.Cleanup(stop)
	return stop
}

// Poll calls get every interval until done holds for what it returned or
// timeout has passed, and returns the last value and whether done held: the
// caller says what it was waiting for, with what it got.
func Poll[T any](timeout, every time.Duration, get func() T, done func(T) bool) (T, bool) {
	deadline := time.Now().Add(timeout)
	for {
		v := get()
		if done(v) {
			return v, true
		}
		if time.Now().After(deadline) {
			return v, false
		}
		time.Sleep(every)
	}
}

// Eventually reports whether cond held within timeout, trying it every
// interval.
func Eventually(timeout, every time.Duration, cond func() bool) bool {
	_, ok := Poll(timeout, every, cond, func(held bool) bool { return held })
	return ok
}

// Parallel calls fn(0), ..., fn(n-1) all at once and returns their results
// in that order once every call has returned.
func Parallel[T any](n int, fn func(i int) T) []T {
	out := make([]T, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { out[i] = fn(i) })
	}
	wg.Wait()
	return out
}
