// Package faultinject is the fault injection that the in-process fakes of
// Tenancy's integrations (keycloakfake, billingfake) share: which requests
// a fault hits and how often, a hook that sees every request first, and the
// delays, dropped connections and Retry-After headers faults answer with.
// Each fake writes an injected error in its own system's error shape and
// documents in which order it applies a fault's parts.
package faultinject

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fault makes matching requests fail.
type Fault struct {
	// Method matches the request method, ignoring case; "" or "*" match
	// any.
	Method string
	// Path matches the request path segment by segment, where a "*"
	// segment matches any one segment, e.g. "/admin/realms/*/users"; ""
	// matches any path. An escaped "/" stays inside its segment.
	Path string
	// Times is how many matching requests the fault affects; 0 means every
	// one until the faults are cleared.
	Times int
	// Status, when non-zero, is the error status to answer with, in the
	// fake's own error shape.
	Status int
	// RetryAfter, with Status, adds a Retry-After header in whole seconds,
	// rounded up so that a sub-second value is not sent as 0.
	RetryAfter time.Duration
	// Latency delays the request. A request whose client gives up during a
	// delay before handling is never handled.
	Latency time.Duration
	// Drop closes the connection without writing a response. Go's
	// http.Transport silently retries an idempotent request (GET, HEAD, ...)
	// that was dropped on a reused keep-alive connection, so to make a GET
	// fail use Times of 2 or more, or a fresh connection.
	Drop bool
	// AfterHandling applies the request to the fake's state first and only
	// then fails the response: the server acted but the client never learns
	// of it.
	AfterHandling bool
}

// matches reports whether f applies to r, whatever its uses left.
func (f *Fault) matches(r *http.Request) bool {
	if f.Method != "" && f.Method != "*" && !strings.EqualFold(f.Method, r.Method) {
		return false
	}
	if f.Path == "" {
		return true
	}
	want := strings.Split(strings.Trim(f.Path, "/"), "/")
	got := Segments(r.URL)
	if len(want) != len(got) {
		return false
	}
	for i := range want {
		if want[i] != "*" && want[i] != got[i] {
			return false
		}
	}
	return true
}

// Segments splits a URL's path into its unescaped segments, without the
// leading and trailing slashes. It unescapes each segment separately so
// that an escaped "/" (a role name holding one, say) stays one segment.
func Segments(u *url.URL) []string {
	raw := strings.Trim(u.EscapedPath(), "/")
	if raw == "" {
		return nil
	}
	parts := strings.Split(raw, "/")
	for i, p := range parts {
		if dp, err := url.PathUnescape(p); err == nil {
			parts[i] = dp
		}
	}
	return parts
}

// Set is the faults injected into one fake. Its methods are safe for
// concurrent use.
type Set struct {
	mu     sync.Mutex
	faults []*Fault // Times counts down the uses left of a limited fault
}

// Inject appends a fault. Faults are tried in the order injected, and the
// first matching one with uses left applies.
func (s *Set) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// Clear removes every fault.
func (s *Set) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Take returns the fault that applies to r, using up one of its Times, or
// nil when none does.
func (s *Set) Take(r *http.Request) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if !f.matches(r) {
			continue
		}
		applied := *f
		switch {
		case f.Times == 1:
			s.faults = slices.Delete(s.faults, i, i+1)
		case f.Times > 1:
			f.Times--
		}
		return &applied
	}
	return nil
}

// Hook holds a function to call at the start of every request, before
// faults are considered. It is safe for concurrent use.
type Hook struct {
	mu sync.Mutex
	fn func(*http.Request)
}

// Set installs fn; nil removes the hook.
func (h *Hook) Set(fn func(*http.Request)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fn = fn
}

// Call runs the hook, if any, on r. The hook runs without the lock held, so
// it may block or call back into the fake.
func (h *Hook) Call(r *http.Request) {
	h.mu.Lock()
	fn := h.fn
	h.mu.Unlock()
	if fn != nil {
		fn(r)
	}
}

// Wait sleeps for d unless the client goes away or closing is closed
// first, and reports whether the request should still be served.
func Wait(r *http.Request, d time.Duration, closing <-chan struct{}) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
	case <-closing:
	}
	return false
}

// SetRetryAfter adds the Retry-After header for d, if d is positive.
func SetRetryAfter(h http.Header, d time.Duration) {
	if d > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
	}
}

// Drop closes the underlying connection so the client sees a transport
// error rather than any HTTP response.
func Drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	// Only HTTP/2 lacks Hijacker, and httptest.NewServer speaks HTTP/1.1;
	// panicking with ErrAbortHandler is net/http's own way to abort a
	// response without writing it.
	panic(http.ErrAbortHandler)
}

// Recorder keeps what a hook noted about each request, for a test to
// compare once the requests are done. It is safe for concurrent use.
type Recorder[T any] struct {
	mu   sync.Mutex
	seen []T
}

// Record installs a hook through setHook (a fake's SetHook) that notes
// what note makes of each request.
func Record[T any](setHook func(func(*http.Request)), note func(*http.Request) T) *Recorder[T] {
	rec := &Recorder[T]{}
	setHook(func(r *http.Request) {
		v := note(r)
		rec.mu.Lock()
		defer rec.mu.Unlock()
		rec.seen = append(rec.seen, v)
	})
	return rec
}

// Seen returns a copy of the notes so far, oldest first.
func (rec *Recorder[T]) Seen() []T {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.seen)
}
