package delivery

import (
	"github.com/tenancyhq/tenancy/internal/delivery/attempts"
	"github.com/tenancyhq/tenancy/internal/metrics"
)

// Every outcome's attempt counter exists from start, at 0.
func init() {
	for _, o := range []attempts.Outcome{attempts.Delivered, attempts.Failed, attempts.Gone, attempts.Refused} {
		metrics.WebhookAttempts.WithLabelValues(string(o))
	}
}
