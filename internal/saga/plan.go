package saga

import (
	"context"

	"github.com/tenancyhq/tenancy/pkg/domain"
)

// Step names.
const (
	StepRealm           = "realm"
	StepClient          = "client"
	StepRoles           = "roles"
	StepAdmin           = "admin"
	StepBreakGlass      = "break_glass_admin"
	StepBillingAccount  = "billing_account"
	StepRealmDisable    = "realm_disable"
	StepRealmEnable     = "realm_enable"
	StepRealmDelete     = "realm_delete"
	StepBillingPause    = "billing_pause"
	StepBillingResume   = "billing_resume"
	StepBillingClose    = "billing_close"
	StepErasePersonal   = "personal_data_erase"
	StepCompensateRealm = "realm_remove"
)

// KeyDestroyer erases a tenant's personal-data key.
type KeyDestroyer interface {
	Destroy(ctx context.Context, tenantID string) error
}

// Integrations are the external systems sagas act on. A nil system is not
// configured: its steps are recorded as skipped, with the reason.
type Integrations struct {
	Keys KeyDestroyer
}

const (
	noIdentity = "no identity provider configured (KEYCLOAK_URL is unset)"
	noBilling  = "no billing system configured (BILLING_URL is unset)"
)

func skip(name, why string) Step {
	return Step{Name: name, Run: func(context.Context, domain.Tenant) (Outcome, error) {
		return Outcome{Skipped: true, Detail: why}, nil
	}}
}

// NewPlan returns the steps of each saga for the configured integrations.
func NewPlan(in Integrations) Plan {
	erase := Step{Name: StepErasePersonal, Run: func(ctx context.Context, t domain.Tenant) (Outcome, error) {
		if in.Keys == nil {
			return Outcome{Skipped: true, Detail: "no keyring configured"}, nil
		}
		if err := in.Keys.Destroy(ctx, t.ID); err != nil {
			return Outcome{}, err
		}
		return Outcome{Detail: "personal data key destroyed"}, nil
	}}
	return func(saga string) []Step {
		switch saga {
		case domain.SagaActivate:
			return []Step{skip(StepRealm, noIdentity), skip(StepClient, noIdentity), skip(StepRoles, noIdentity),
				skip(StepAdmin, noIdentity), skip(StepBreakGlass, noIdentity), skip(StepBillingAccount, noBilling)}
		case domain.SagaSuspend, domain.SagaArchive:
			close := StepBillingPause
			if saga == domain.SagaArchive {
				close = StepBillingClose
			}
			return []Step{skip(StepRealmDisable, noIdentity), skip(close, noBilling)}
		case domain.SagaResume:
			return []Step{skip(StepRealmEnable, noIdentity), skip(StepBillingResume, noBilling)}
		case domain.SagaRestore:
			return []Step{skip(StepBillingPause, noBilling)}
		case domain.SagaCancel:
			return []Step{skip(StepCompensateRealm, noIdentity), skip(StepBillingClose, noBilling)}
		case domain.SagaDelete:
			return []Step{skip(StepRealmDelete, noIdentity), skip(StepBillingClose, noBilling), erase}
		}
		return nil
	}
}
