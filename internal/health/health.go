// Package health is the one readiness rule of every service: a service is
// ready when each of its checks (NATS, PostgreSQL, ...) answers within a few
// seconds. The workers serve it on /readyz next to /healthz and /metrics;
// the API serves it through its own router.
package health

import (
	"github.com/tenancyhq/tenancy/internal/redact"

	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/tenancyhq/tenancy/internal/metrics"
)

// Check is one readiness check.
type Check struct {
	Name  string
	Check func(context.Context) error
}

// Timeout bounds a readiness probe: a dependency slower than this is not
// ready.
const Timeout = 3 * time.Second

// Ready runs every check and returns each one's outcome ("ok" or the
// error), and whether all passed.
func Ready(ctx context.Context, checks []Check) (map[string]string, bool) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	results, ready := map[string]string{}, true
	for _, c := range checks {
		if err := c.Check(ctx); err != nil {
			// Unauthenticated callers read this: no internal addresses.
			results[c.Name], ready = redact.Text(err.Error()), false
		} else {
			results[c.Name] = "ok"
		}
	}
	return results, ready
}

// Handler serves the workers' /healthz (the process is up), /readyz (every
// check passes; otherwise a 503 problem listing the checks) and /metrics
// (the process's Prometheus metrics).
func Handler(checks ...Check) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		results, ready := Ready(r.Context(), checks)
		body := map[string]any{"ready": true, "checks": results}
		status := http.StatusOK
		w.Header().Set("Content-Type", "application/json")
		if !ready {
			status = http.StatusServiceUnavailable
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Retry-After", "1")
			body = map[string]any{"type": "/problems/unavailable", "title": "Temporarily unavailable", "status": status, "detail": "a dependency is unreachable", "checks": results}
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
	})
	return mux
}
