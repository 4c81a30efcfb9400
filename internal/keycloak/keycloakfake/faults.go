package keycloakfake

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Fault describes a failure to inject into matching requests.
type Fault struct {
	// Method matches the request method exactly; "" matches any.
	Method string
	// Path matches the request path segment by segment, where a "*" segment
	// matches any one segment, e.g. "/admin/realms/*/users"; "" matches any
	// path.
	Path string
	// Times is how many matching requests the fault affects; 0 means every
	// one until ClearFaults.
	Times int
	// Status, when non-zero, is sent with an errorMessage body instead of
	// handling the request (or after it, with AfterHandling).
	Status int
	// RetryAfter, with Status, adds a Retry-After header in whole seconds,
	// rounded up so that a sub-second value is not sent as 0.
	RetryAfter time.Duration
	// Latency delays the request before anything else happens. If the
	// client gives up first, the request is abandoned unhandled.
	Latency time.Duration
	// Drop closes the connection without writing a response. Go's
	// http.Transport silently retries an idempotent request (GET, HEAD, ...)
	// that was dropped on a reused keep-alive connection, so to make a GET
	// fail use Times of 2 or more, or a fresh connection.
	Drop bool
	// AfterHandling applies the request to the fake's state first and only
	// then answers with Status or Drop: the server acted but the client
	// never learns of it.
	AfterHandling bool
}

type faultState struct {
	f         Fault
	remaining int
}

// Inject appends a fault. Faults are tried in the order injected, and the
// first matching one with uses left applies.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &faultState{f: f, remaining: f.Times})
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// takeFault returns the fault that applies to r, using up one of its Times.
func (s *Server) takeFault(r *http.Request) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fs := range s.faults {
		if fs.f.Times > 0 && fs.remaining <= 0 {
			continue
		}
		if fs.f.Method != "" && fs.f.Method != r.Method {
			continue
		}
		if !pathMatches(fs.f.Path, r.URL.Path) {
			continue
		}
		if fs.f.Times > 0 {
			fs.remaining--
		}
		f := fs.f
		return &f
	}
	return nil
}

func pathMatches(pattern, path string) bool {
	if pattern == "" {
		return true
	}
	ps := strings.Split(strings.Trim(pattern, "/"), "/")
	segs := strings.Split(strings.Trim(path, "/"), "/")
	if len(ps) != len(segs) {
		return false
	}
	for i, p := range ps {
		if p != "*" && p != segs[i] {
			return false
		}
	}
	return true
}

// wait sleeps for d unless the client goes away or the server closes first,
// and reports whether the request should still be served.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.closing:
		return false
	}
}

// answerFault sends the fault's own outcome. It reports false when the fault
// has none (only Latency), so the caller should send the real response.
func answerFault(w http.ResponseWriter, f *Fault) bool {
	switch {
	case f.Drop:
		dropConnection(w)
		return true
	case f.Status != 0:
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(f.RetryAfter.Seconds()))))
		}
		msg := http.StatusText(f.Status)
		if msg == "" {
			msg = "injected fault"
		}
		errorMessage(f.Status, msg).write(w)
		return true
	}
	return false
}

// dropConnection closes the underlying connection so the client sees a
// transport error rather than any HTTP response.
func dropConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		// Only HTTP/2 lacks Hijacker, and httptest.NewServer speaks
		// HTTP/1.1; panicking with ErrAbortHandler is net/http's own way to
		// abort a response without writing it.
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}
