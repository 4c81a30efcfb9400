package integrity

import "github.com/tenancyhq/tenancy/internal/metrics"

// Every violation's counter exists from start, at 0, so that an alert on
// its increase sees the first one.
func init() {
	for _, r := range reasons {
		metrics.IntegrityViolations.WithLabelValues(r.reason)
	}
	metrics.IntegrityViolations.WithLabelValues(reasonNotAnEvent)
}
