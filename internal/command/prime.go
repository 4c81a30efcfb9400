package command

import (
	"github.com/tenancyhq/tenancy/internal/metrics"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// Every command's counters exist from start, at 0: an alert on their
// increase then sees the first one (a series born at 1 has no increase).
func init() {
	for _, c := range domain.Commands() {
		name := CommandName(c)
		for _, o := range []string{OutcomeOK, OutcomeUnchanged, OutcomeRejected, OutcomeContention, OutcomeError} {
			metrics.Commands.WithLabelValues(name, o)
		}
		metrics.AppendConflicts.WithLabelValues(name)
		metrics.CommandRetries.WithLabelValues(name)
	}
}
