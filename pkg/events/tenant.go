package events

import (
	"fmt"
	"strings"
	"time"
)

// Tenant event types.
const (
	TypeTenantCreated             = "tenancy.tenant.created.v1"
	TypeTenantUpdated             = "tenancy.tenant.updated.v1"
	TypeTenantPlanChanged         = "tenancy.tenant.plan_changed.v1"
	TypeTenantActivationRequested = "tenancy.tenant.activation_requested.v1"
	TypeTenantActivationCancelled = "tenancy.tenant.activation_cancelled.v1"
	TypeTenantStepRecorded        = "tenancy.tenant.provisioning_step_recorded.v1"
	TypeTenantProvisioningFailed  = "tenancy.tenant.provisioning_failed.v1"
	TypeTenantProvisioningRetried = "tenancy.tenant.provisioning_retried.v1"
	TypeTenantActivated           = "tenancy.tenant.activated.v1"
	TypeTenantSuspended           = "tenancy.tenant.suspended.v1"
	TypeTenantResumed             = "tenancy.tenant.resumed.v1"
	TypeTenantArchived            = "tenancy.tenant.archived.v1"
	TypeTenantRestored            = "tenancy.tenant.restored.v1"
	TypeTenantDeleted             = "tenancy.tenant.deleted.v1"
	TypeTenantDriftRepaired       = "tenancy.tenant.drift_repaired.v1"
	TypeTenantSagaCompleted       = "tenancy.tenant.provisioning_completed.v1"
	TypeTenantAdminPasswordIssued = "tenancy.tenant.admin_password_issued.v1"
)

// AggregateTenant is the aggregate kind of tenant events in subjects.
const AggregateTenant = "tenant"

// Contact is a person to reach about a tenant. It is personal data and only
// ever stored sealed.
type Contact struct {
	Role  string `json:"role"`
	Name  string `json:"name"`
	Email string `json:"email"`
	Phone string `json:"phone,omitempty"`
}

// Admin is the tenant's first administrator, named at activation. It is
// personal data and only ever stored sealed.
type Admin struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

// Regions is a tenant's residency: where its data may live, and where it
// should.
type Regions struct {
	Allowed   []string `json:"allowed"`
	Preferred string   `json:"preferred"`
}

// TenantCreated records a new tenant in draft.
type TenantCreated struct {
	Slug        string            `json:"slug"`
	DisplayName string            `json:"display_name"`
	Plan        string            `json:"plan"`
	Regions     Regions           `json:"regions"`
	Isolation   string            `json:"isolation"`
	ExternalIDs map[string]string `json:"external_ids,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	CustomerRef string            `json:"customer_ref,omitempty"`
	// PII is the sealed form of Contacts.
	PII string `json:"pii,omitempty"`

	Contacts  []Contact `json:"-"`
	PIIErased bool      `json:"-"`
}

// EventType implements Payload.
func (*TenantCreated) EventType() string { return TypeTenantCreated }

// Summary implements Summarizer.
func (p *TenantCreated) Summary() string {
	return fmt.Sprintf("created tenant %q (%s) on plan %s, %s isolation, preferred region %s",
		p.Slug, p.DisplayName, p.Plan, p.Isolation, p.Regions.Preferred)
}

type contactsPII struct {
	Contacts []Contact `json:"contacts"`
}

// HasPlainPII implements PIIHolder.
func (p *TenantCreated) HasPlainPII() bool { return len(p.Contacts) > 0 }

// SealPII implements PIIHolder.
func (p *TenantCreated) SealPII(tenantID string, c PIICipher) error {
	return sealInto(tenantID, c, contactsPII{Contacts: p.Contacts}, &p.PII)
}

// OpenPII implements PIIHolder.
func (p *TenantCreated) OpenPII(tenantID string, c PIICipher) error {
	return openInto(tenantID, p.PII, c, &p.PIIErased, func(v contactsPII) { p.Contacts = v.Contacts })
}

// TenantUpdated records a metadata change. Only the members named in Changed
// are meaningful; each holds its complete new value.
type TenantUpdated struct {
	Changed     []string          `json:"changed"`
	DisplayName *string           `json:"display_name,omitempty"`
	Regions     *Regions          `json:"regions,omitempty"`
	Isolation   *string           `json:"isolation,omitempty"`
	ExternalIDs map[string]string `json:"external_ids,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	CustomerRef *string           `json:"customer_ref,omitempty"`
	// PII is the sealed form of Contacts when contacts changed.
	PII string `json:"pii,omitempty"`

	Contacts  []Contact `json:"-"`
	PIIErased bool      `json:"-"`
}

// EventType implements Payload.
func (*TenantUpdated) EventType() string { return TypeTenantUpdated }

// Summary implements Summarizer.
func (p *TenantUpdated) Summary() string {
	return "updated " + strings.Join(p.Changed, ", ")
}

// ChangedField reports whether field is among the changed ones.
func (p *TenantUpdated) ChangedField(field string) bool {
	for _, f := range p.Changed {
		if f == field {
			return true
		}
	}
	return false
}

// HasPlainPII implements PIIHolder.
func (p *TenantUpdated) HasPlainPII() bool { return p.ChangedField("contacts") && p.PII == "" }

// SealPII implements PIIHolder.
func (p *TenantUpdated) SealPII(tenantID string, c PIICipher) error {
	contacts := p.Contacts
	if contacts == nil {
		contacts = []Contact{}
	}
	return sealInto(tenantID, c, contactsPII{Contacts: contacts}, &p.PII)
}

// OpenPII implements PIIHolder.
func (p *TenantUpdated) OpenPII(tenantID string, c PIICipher) error {
	return openInto(tenantID, p.PII, c, &p.PIIErased, func(v contactsPII) { p.Contacts = v.Contacts })
}

// TenantPlanChanged records a new commercial plan binding, with the features
// and quotas the new plan derives.
type TenantPlanChanged struct {
	From     string           `json:"from"`
	To       string           `json:"to"`
	Features []string         `json:"features"`
	Quotas   map[string]int64 `json:"quotas"`
}

// EventType implements Payload.
func (*TenantPlanChanged) EventType() string { return TypeTenantPlanChanged }

// Summary implements Summarizer.
func (p *TenantPlanChanged) Summary() string { return fmt.Sprintf("plan %s -> %s", p.From, p.To) }

// PolicyCheck is the outcome of one governance check.
type PolicyCheck struct {
	Name    string `json:"name"`
	Outcome string `json:"outcome"`
	Detail  string `json:"detail,omitempty"`
}

// Placement is the resolved region and isolation mode for provisioning.
type Placement struct {
	Region    string `json:"region"`
	Isolation string `json:"isolation"`
}

// TenantActivationRequested records that a draft tenant passed its policy
// checks and is being provisioned. It carries the placement decision and the
// configuration derived from the plan, so provisioning never re-derives them.
type TenantActivationRequested struct {
	Placement Placement        `json:"placement"`
	Plan      string           `json:"plan"`
	Features  []string         `json:"features"`
	Quotas    map[string]int64 `json:"quotas"`
	Policy    []PolicyCheck    `json:"policy"`
	// PII is the sealed form of Admin.
	PII string `json:"pii,omitempty"`

	Admin     *Admin `json:"-"`
	PIIErased bool   `json:"-"`
}

// EventType implements Payload.
func (*TenantActivationRequested) EventType() string { return TypeTenantActivationRequested }

// Summary implements Summarizer.
func (p *TenantActivationRequested) Summary() string {
	return fmt.Sprintf("activation requested: %s in %s, %d policy checks passed",
		p.Placement.Isolation, p.Placement.Region, len(p.Policy))
}

type adminPII struct {
	Admin *Admin `json:"admin"`
}

// HasPlainPII implements PIIHolder.
func (p *TenantActivationRequested) HasPlainPII() bool { return p.Admin != nil }

// SealPII implements PIIHolder.
func (p *TenantActivationRequested) SealPII(tenantID string, c PIICipher) error {
	return sealInto(tenantID, c, adminPII{Admin: p.Admin}, &p.PII)
}

// OpenPII implements PIIHolder.
func (p *TenantActivationRequested) OpenPII(tenantID string, c PIICipher) error {
	return openInto(tenantID, p.PII, c, &p.PIIErased, func(v adminPII) { p.Admin = v.Admin })
}

// TenantActivationCancelled records that provisioning was abandoned and the
// tenant is back in draft; the provisioner compensates what it created.
type TenantActivationCancelled struct {
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (*TenantActivationCancelled) EventType() string { return TypeTenantActivationCancelled }

// Summary implements Summarizer.
func (p *TenantActivationCancelled) Summary() string {
	if p.Reason == "" {
		return "activation cancelled"
	}
	return "activation cancelled: " + p.Reason
}

// Provisioning step outcomes.
const (
	StepCompleted   = "completed"
	StepSkipped     = "skipped"
	StepFailed      = "failed"
	StepCompensated = "compensated"
)

// TenantStepRecorded records the outcome of one idempotent provisioning step
// of a saga (activate, suspend, resume, archive, delete, cancel).
type TenantStepRecorded struct {
	// SagaID is the id of the event that started the saga.
	SagaID      string            `json:"saga_id"`
	Saga        string            `json:"saga"`
	Step        string            `json:"step"`
	Outcome     string            `json:"outcome"`
	Attempt     int               `json:"attempt"`
	StartedAt   time.Time         `json:"started_at"`
	FinishedAt  time.Time         `json:"finished_at"`
	Detail      string            `json:"detail,omitempty"`
	ExternalIDs map[string]string `json:"external_ids,omitempty"`
}

// EventType implements Payload.
func (*TenantStepRecorded) EventType() string { return TypeTenantStepRecorded }

// Summary implements Summarizer.
func (p *TenantStepRecorded) Summary() string {
	s := fmt.Sprintf("%s/%s %s (attempt %d)", p.Saga, p.Step, p.Outcome, p.Attempt)
	if p.Detail != "" {
		s += ": " + p.Detail
	}
	return s
}

// TenantProvisioningFailed records that a saga stopped on an error retrying
// cannot fix; Reason says what to fix before retrying.
type TenantProvisioningFailed struct {
	SagaID  string `json:"saga_id"`
	Saga    string `json:"saga"`
	Step    string `json:"step"`
	Attempt int    `json:"attempt"`
	Reason  string `json:"reason"`
}

// EventType implements Payload.
func (*TenantProvisioningFailed) EventType() string { return TypeTenantProvisioningFailed }

// Summary implements Summarizer.
func (p *TenantProvisioningFailed) Summary() string {
	return fmt.Sprintf("%s failed at %s: %s", p.Saga, p.Step, p.Reason)
}

// TenantProvisioningRetried records an operator's request to resume a failed
// saga from its failed step.
type TenantProvisioningRetried struct {
	SagaID string `json:"saga_id"`
	Saga   string `json:"saga"`
	Step   string `json:"step"`
}

// EventType implements Payload.
func (*TenantProvisioningRetried) EventType() string { return TypeTenantProvisioningRetried }

// Summary implements Summarizer.
func (p *TenantProvisioningRetried) Summary() string {
	return fmt.Sprintf("retry of %s from %s requested", p.Saga, p.Step)
}

// TenantActivated records that every activation step finished and the
// tenant is active.
type TenantActivated struct {
	SagaID string `json:"saga_id"`
	Region string `json:"region"`
}

// EventType implements Payload.
func (*TenantActivated) EventType() string { return TypeTenantActivated }

// Summary implements Summarizer.
func (p *TenantActivated) Summary() string { return "activated in " + p.Region }

// TenantSuspended records that access to an active tenant is restricted.
type TenantSuspended struct {
	Reason string `json:"reason"`
	Note   string `json:"note,omitempty"`
}

// EventType implements Payload.
func (*TenantSuspended) EventType() string { return TypeTenantSuspended }

// Summary implements Summarizer.
func (p *TenantSuspended) Summary() string {
	if p.Note == "" {
		return "suspended (" + p.Reason + ")"
	}
	return "suspended (" + p.Reason + "): " + p.Note
}

// TenantResumed records that a suspended tenant is active again: its last
// hold, Reason, is lifted (empty in events written before holds existed,
// when a tenant had one suspension only).
type TenantResumed struct {
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (*TenantResumed) EventType() string { return TypeTenantResumed }

// Summary implements Summarizer.
func (p *TenantResumed) Summary() string {
	if p.Reason == "" {
		return "resumed"
	}
	return "resumed (" + p.Reason + " hold lifted)"
}

// TenantArchived records that a suspended tenant is retired.
type TenantArchived struct{}

// EventType implements Payload.
func (*TenantArchived) EventType() string { return TypeTenantArchived }

// Summary implements Summarizer.
func (*TenantArchived) Summary() string { return "archived" }

// TenantRestored records that an archived tenant is back, suspended, so an
// operator can review it before resuming.
type TenantRestored struct{}

// EventType implements Payload.
func (*TenantRestored) EventType() string { return TypeTenantRestored }

// Summary implements Summarizer.
func (*TenantRestored) Summary() string { return "restored from archive (suspended)" }

// TenantDeleted records the terminal deletion of a tenant. Its personal
// data key is destroyed after this event, and its slug and external ids are
// released.
type TenantDeleted struct {
	Slug string `json:"slug"`
}

// EventType implements Payload.
func (*TenantDeleted) EventType() string { return TypeTenantDeleted }

// Summary implements Summarizer.
func (p *TenantDeleted) Summary() string { return "deleted tenant " + p.Slug }

// TenantDriftRepaired records that reconcile found an external system
// differing from what the log says and put it back.
type TenantDriftRepaired struct {
	System   string `json:"system"`
	Resource string `json:"resource"`
	Found    string `json:"found"`
	Expected string `json:"expected"`
	Action   string `json:"action"`
}

// EventType implements Payload.
func (*TenantDriftRepaired) EventType() string { return TypeTenantDriftRepaired }

// Summary implements Summarizer.
func (p *TenantDriftRepaired) Summary() string {
	return fmt.Sprintf("drift repaired in %s %s: found %s, expected %s (%s)", p.System, p.Resource, p.Found, p.Expected, p.Action)
}

// TenantSagaCompleted records that every step of a lifecycle saga other
// than activation (which ends with TenantActivated) has finished.
type TenantSagaCompleted struct {
	SagaID string `json:"saga_id"`
	Saga   string `json:"saga"`
}

// EventType implements Payload.
func (*TenantSagaCompleted) EventType() string { return TypeTenantSagaCompleted }

// Summary implements Summarizer.
func (p *TenantSagaCompleted) Summary() string { return p.Saga + " provisioning completed" }

// TenantAdminPasswordIssued records that an operator issued the tenant
// administrator a temporary password (shown to the operator once; never
// stored).
type TenantAdminPasswordIssued struct{}

// EventType implements Payload.
func (*TenantAdminPasswordIssued) EventType() string { return TypeTenantAdminPasswordIssued }

// Summary implements Summarizer.
func (*TenantAdminPasswordIssued) Summary() string {
	return "issued the tenant administrator a temporary password"
}

func init() {
	register(
		func() Payload { return &TenantAdminPasswordIssued{} },
		func() Payload { return &TenantCreated{} },
		func() Payload { return &TenantUpdated{} },
		func() Payload { return &TenantPlanChanged{} },
		func() Payload { return &TenantActivationRequested{} },
		func() Payload { return &TenantActivationCancelled{} },
		func() Payload { return &TenantStepRecorded{} },
		func() Payload { return &TenantProvisioningFailed{} },
		func() Payload { return &TenantProvisioningRetried{} },
		func() Payload { return &TenantActivated{} },
		func() Payload { return &TenantSuspended{} },
		func() Payload { return &TenantResumed{} },
		func() Payload { return &TenantArchived{} },
		func() Payload { return &TenantRestored{} },
		func() Payload { return &TenantDeleted{} },
		func() Payload { return &TenantDriftRepaired{} },
		func() Payload { return &TenantSagaCompleted{} },
	)
}
