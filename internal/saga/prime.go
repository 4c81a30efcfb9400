package saga

import (
	"github.com/tenancyhq/tenancy/internal/metrics"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// Sagas are every saga the provisioner runs.
var Sagas = []string{domain.SagaActivate, domain.SagaCancel, domain.SagaSuspend, domain.SagaResume, domain.SagaArchive, domain.SagaRestore, domain.SagaDelete}

// Every saga's and step's counters, and the reconciler's, exist from
// start, at 0 (first attempts; later attempts' series appear as they
// happen).
func init() {
	plan := NewPlan(Integrations{})
	for _, s := range Sagas {
		for _, r := range []string{"completed", "failed", "retry", "superseded", "error"} {
			metrics.Sagas.WithLabelValues(s, r)
		}
		for _, step := range plan(s) {
			for _, o := range []string{"completed", "skipped", "failed"} {
				metrics.SagaSteps.WithLabelValues(s, step.Name, o, metrics.AttemptLabel(1))
			}
		}
	}
	for _, r := range []string{"ok", "error"} {
		metrics.ReconcileTenants.WithLabelValues(r)
	}
	for _, sys := range []string{"keycloak", "billing"} {
		metrics.ReconcileRepairs.WithLabelValues(sys)
	}
}
