package auth

import "github.com/tenancyhq/tenancy/internal/metrics"

// The issuer failure counters exist from start, at 0.
func init() {
	for _, f := range []string{"discovery", "keys"} {
		metrics.IssuerFailures.WithLabelValues(f)
	}
}
