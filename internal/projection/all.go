package projection

import "github.com/tenancyhq/tenancy/internal/metrics"

// All returns every projection of the read side.
func All() []Projection { return []Projection{Tenants{}, Customers{}, Audit{}, Directory{}} }

// Every projection's counter exists from start, at 0.
func init() {
	for _, p := range All() {
		metrics.ProjectionEvents.WithLabelValues(p.Name())
	}
}
