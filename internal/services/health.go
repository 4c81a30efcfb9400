package services

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/tenancyhq/tenancy/internal/metrics"
)

// HealthCheck is one readiness check of a worker.
type HealthCheck struct {
	Name  string
	Check func(context.Context) error
}

// HealthHandler serves /healthz (the process is up), /readyz (every check
// passes) and /metrics (the process's Prometheus metrics) for the worker
// services.
func HealthHandler(checks ...HealthCheck) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		results, ready := map[string]string{}, true
		for _, c := range checks {
			if err := c.Check(ctx); err != nil {
				results[c.Name], ready = err.Error(), false
			} else {
				results[c.Name] = "ok"
			}
		}
		body := map[string]any{"ready": ready, "checks": results}
		status := http.StatusOK
		if !ready {
			status = http.StatusServiceUnavailable
			w.Header().Set("Content-Type", "application/problem+json")
			body = map[string]any{"type": "/problems/unavailable", "title": "Temporarily unavailable", "status": status, "detail": "a dependency is unreachable", "checks": results}
		} else {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
	})
	return mux
}
