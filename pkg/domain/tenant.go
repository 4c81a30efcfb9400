package domain

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/tenancyhq/tenancy/pkg/events"
)

// State is a tenant's lifecycle state.
type State string

// Lifecycle states.
const (
	StateDraft        State = "draft"
	StateProvisioning State = "provisioning"
	StateActive       State = "active"
	StateSuspended    State = "suspended"
	StateArchived     State = "archived"
	StateDeleted      State = "deleted"
)

// States lists every lifecycle state in lifecycle order.
var States = []State{StateDraft, StateProvisioning, StateActive, StateSuspended, StateArchived, StateDeleted}

// ParseState parses a lifecycle state, rejecting unknown strings.
func ParseState(s string) (State, error) {
	for _, st := range States {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("unknown state %q", s)
}

// SuspensionReason says why a tenant was suspended.
type SuspensionReason string

// Suspension reasons.
const (
	SuspendCompliance SuspensionReason = "compliance"
	SuspendPayment    SuspensionReason = "payment"
	SuspendSecurity   SuspensionReason = "security"
	SuspendOperator   SuspensionReason = "operator"
)

// SuspensionReasons lists every suspension reason.
var SuspensionReasons = []SuspensionReason{SuspendCompliance, SuspendPayment, SuspendSecurity, SuspendOperator}

// ParseSuspensionReason parses a suspension reason, rejecting unknown strings.
func ParseSuspensionReason(s string) (SuspensionReason, error) {
	for _, r := range SuspensionReasons {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("unknown suspension reason %q", s)
}

// ContactRole is what a contact is reached about.
type ContactRole string

// Contact roles.
const (
	ContactTechnical ContactRole = "technical"
	ContactBilling   ContactRole = "billing"
	ContactIncident  ContactRole = "incident"
)

// ContactRoles lists every contact role.
var ContactRoles = []ContactRole{ContactTechnical, ContactBilling, ContactIncident}

// ParseContactRole parses a contact role, rejecting unknown strings.
func ParseContactRole(s string) (ContactRole, error) {
	for _, r := range ContactRoles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("unknown contact role %q", s)
}

func contactRoleStrings() []string {
	out := make([]string, len(ContactRoles))
	for i, r := range ContactRoles {
		out[i] = string(r)
	}
	return out
}

// Regions is a tenant's residency.
type Regions = events.Regions

// Suspension describes why and since when a tenant is suspended.
type Suspension struct {
	Reason SuspensionReason
	Note   string
	Since  time.Time
}

// Hold is one reason a suspended tenant stays suspended: it is active again
// only when every hold is lifted, each by its own command, so that (say) a
// customer verified again never lifts a payment suspension.
type Hold struct {
	Reason SuspensionReason
	Note   string
	Since  time.Time
	// By is the actor who placed it (billing may lift only its own).
	By string
}

// RealmPlacement is where a tenant's identity lives: its own realm, or an
// organization in the shared tenant's realm.
type RealmPlacement struct {
	Mode         string
	Realm        string
	Organization string
}

// Platform tenant roles, made by bootstrap.
const (
	RoleRootTenant   = "root"
	RoleSharedTenant = "shared"
)

// The platform's own tenants' ids, fixed so that every API instance's
// bootstrap makes the same ones.
const (
	RootTenantID   = "01900000-0000-7000-8000-000000000002"
	SharedTenantID = "01900000-0000-7000-8000-000000000003"
)

// Activation is what was decided when activation was requested.
type Activation struct {
	Placement   events.Placement
	Features    []string
	Quotas      map[string]int64
	Policy      []events.PolicyCheck
	Admin       *events.Admin
	RequestedAt time.Time
	ActivatedAt time.Time
}

// SagaStatus is where a lifecycle saga stands.
type SagaStatus string

// Saga statuses.
const (
	SagaRunning   SagaStatus = "running"
	SagaFailed    SagaStatus = "failed"
	SagaCompleted SagaStatus = "completed"
)

// Saga names: the lifecycle operation whose external effects a saga carries out.
const (
	SagaActivate = "activate"
	SagaCancel   = "cancel"
	SagaSuspend  = "suspend"
	SagaResume   = "resume"
	SagaArchive  = "archive"
	SagaRestore  = "restore"
	SagaDelete   = "delete"
)

// StepStatus is the latest recorded outcome of one saga step.
type StepStatus struct {
	Name        string
	Outcome     string
	Attempt     int
	Detail      string
	StartedAt   time.Time
	FinishedAt  time.Time
	ExternalIDs map[string]string
}

// Provisioning is the state of the tenant's current lifecycle saga and the
// identifiers its sagas created in external systems.
type Provisioning struct {
	SagaID     string
	Saga       string
	Status     SagaStatus
	Steps      []StepStatus
	FailedStep string
	LastError  string
	StartedAt  time.Time
	UpdatedAt  time.Time
	// ExternalIDs accumulates what every saga created (realm id, client id,
	// billing account, ...), keyed by resource.
	ExternalIDs map[string]string
	// Repairs counts drift repairs made by reconcile.
	Repairs int
}

// Step returns the latest status of the named step in the current saga.
func (p *Provisioning) Step(name string) (StepStatus, bool) {
	for _, s := range p.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return StepStatus{}, false
}

// Tenant is the state of one tenant aggregate, folded from its events.
type Tenant struct {
	ID          string
	Slug        string
	DisplayName string
	Plan        string
	Regions     Regions
	Isolation   IsolationMode
	Contacts    []events.Contact
	ExternalIDs map[string]string
	Labels      map[string]string
	CustomerRef string

	State      State
	Version    int64
	CreatedAt  time.Time
	UpdatedAt  time.Time
	ArchivedAt time.Time
	DeletedAt  time.Time

	// Suspension is the first of the holds while suspended (or archived).
	Suspension *Suspension
	Holds      []Hold
	// CustomerID is the customer that owns the tenant ("" for none).
	CustomerID string
	// Root is the tenant's platform role ("root", "shared") or "".
	Root         string
	Realm        *RealmPlacement
	Activation   *Activation
	Provisioning Provisioning
	// PIIErased is true once the tenant's personal data key is destroyed.
	PIIErased bool
}

// Exists reports whether the tenant has been created.
func (t *Tenant) Exists() bool { return t.Version > 0 }

// AggregateVersion implements Aggregate.
func (t Tenant) AggregateVersion() int64 { return t.Version }

// TechnicalContact returns the first technical contact, if any.
func (t *Tenant) TechnicalContact() (events.Contact, bool) {
	for _, c := range t.Contacts {
		if c.Role == string(ContactTechnical) {
			return c, true
		}
	}
	return events.Contact{}, false
}

// Claim is a value unique across tenants that a tenant holds.
type Claim struct {
	// Kind is "slug" or "external_id".
	Kind string
	// System is the external system of an external id.
	System string
	Value  string
}

// Field returns the input field a claim comes from, for error messages.
func (c Claim) Field() string {
	if c.Kind == ClaimSlug {
		return "slug"
	}
	return "external_ids." + c.System
}

// Claim kinds.
const (
	ClaimSlug       = "slug"
	ClaimExternalID = "external_id"
)

// Claims returns the unique values the tenant holds: its slug and its
// external ids, none once deleted.
func (t Tenant) Claims() []Claim {
	if !t.Exists() || t.State == StateDeleted {
		return nil
	}
	out := []Claim{{Kind: ClaimSlug, Value: t.Slug}}
	for _, sys := range sortedKeys(t.ExternalIDs) {
		out = append(out, Claim{Kind: ClaimExternalID, System: sys, Value: t.ExternalIDs[sys]})
	}
	return out
}

// Actions returns the lifecycle actions allowed in state s.
func Actions(s State) []string {
	switch s {
	case StateDraft:
		return []string{"update", "activate", "delete"}
	case StateProvisioning:
		return []string{"update", "cancel-activation"}
	case StateActive:
		return []string{"update", "suspend"}
	case StateSuspended:
		return []string{"resume", "archive"}
	case StateArchived:
		return []string{"restore", "delete"}
	default:
		return nil
	}
}

func refuse(t *Tenant, action string) error {
	return &TransitionError{Action: action, State: t.State, Allowed: Actions(t.State)}
}

// EvolveTenant folds one event into the tenant's state.
func EvolveTenant(t Tenant, r Recorded) Tenant {
	t.Version = r.Version
	t.UpdatedAt = r.Time
	// Each event type belongs to exactly one group; the first group that
	// knows the payload folds it.
	if !evolveProfile(&t, r) && !evolveLifecycle(&t, r) {
		evolveSaga(&t, r)
	}
	return t
}

// startSaga makes the event r the start of the named lifecycle saga,
// forgetting the steps and failure of the previous one.
func (p *Provisioning) startSaga(saga string, r Recorded) {
	p.SagaID = r.ID
	p.Saga = saga
	p.Status = SagaRunning
	p.Steps = nil
	p.FailedStep = ""
	p.LastError = ""
	p.StartedAt = r.Time
	p.UpdatedAt = r.Time
}

// evolveProfile folds the events that change the tenant's metadata,
// reporting whether r was one of them.
func evolveProfile(t *Tenant, r Recorded) bool {
	switch p := r.Payload.(type) {
	case *events.TenantCreated:
		t.ID = r.AggregateID
		t.Slug = p.Slug
		t.DisplayName = p.DisplayName
		t.Plan = p.Plan
		t.Regions = cloneRegions(p.Regions)
		t.Isolation = IsolationMode(p.Isolation)
		t.Contacts = slices.Clone(p.Contacts)
		t.PIIErased = p.PIIErased
		t.ExternalIDs = maps.Clone(p.ExternalIDs)
		t.Labels = maps.Clone(p.Labels)
		t.CustomerRef = p.CustomerRef
		t.State = StateDraft
		t.CreatedAt = r.Time
	case *events.TenantUpdated:
		applyUpdate(t, p)
	case *events.TenantPlanChanged:
		t.Plan = p.To
	case *events.TenantCustomerAssigned:
		t.CustomerID = p.CustomerID
	case *events.TenantMarkedRoot:
		t.Root = p.Role
	case *events.TenantRealmPlaced:
		t.Realm = &RealmPlacement{Mode: p.Mode, Realm: p.Realm, Organization: p.Organization}
	default:
		return false
	}
	return true
}

// HasHold reports whether reason holds the tenant suspended.
func (t *Tenant) HasHold(reason SuspensionReason) (Hold, bool) {
	for _, h := range t.Holds {
		if h.Reason == reason {
			return h, true
		}
	}
	return Hold{}, false
}

// setHolds sets the holds and the suspension they show.
func (t *Tenant) setHolds(holds []Hold) {
	t.Holds = holds
	if len(holds) == 0 {
		t.Suspension = nil
		return
	}
	h := holds[0]
	t.Suspension = &Suspension{Reason: h.Reason, Note: h.Note, Since: h.Since}
}

// applyUpdate applies the members a TenantUpdated changed.
func applyUpdate(t *Tenant, p *events.TenantUpdated) {
	if p.DisplayName != nil {
		t.DisplayName = *p.DisplayName
	}
	if p.Regions != nil {
		t.Regions = cloneRegions(*p.Regions)
	}
	if p.Isolation != nil {
		t.Isolation = IsolationMode(*p.Isolation)
	}
	if p.ChangedField("external_ids") {
		t.ExternalIDs = maps.Clone(p.ExternalIDs)
	}
	if p.ChangedField("labels") {
		t.Labels = maps.Clone(p.Labels)
	}
	if p.CustomerRef != nil {
		t.CustomerRef = *p.CustomerRef
	}
	if p.ChangedField("contacts") {
		t.Contacts = slices.Clone(p.Contacts)
		t.PIIErased = p.PIIErased
	}
}

// evolveLifecycle folds the events that move the tenant between lifecycle
// states (most of which start a saga), reporting whether r was one of them.
func evolveLifecycle(t *Tenant, r Recorded) bool {
	switch p := r.Payload.(type) {
	case *events.TenantActivationRequested:
		t.State = StateProvisioning
		t.Activation = &Activation{
			Placement:   p.Placement,
			Features:    slices.Clone(p.Features),
			Quotas:      maps.Clone(p.Quotas),
			Policy:      slices.Clone(p.Policy),
			Admin:       p.Admin,
			RequestedAt: r.Time,
		}
		t.Provisioning.startSaga(SagaActivate, r)
	case *events.TenantActivationCancelled:
		t.State = StateDraft
		t.Provisioning.startSaga(SagaCancel, r)
	case *events.TenantActivated:
		t.State = StateActive
		if t.Activation != nil {
			a := *t.Activation
			a.ActivatedAt = r.Time
			t.Activation = &a
		}
		t.Provisioning.Status = SagaCompleted
		t.Provisioning.UpdatedAt = r.Time
	case *events.TenantSuspended:
		t.State = StateSuspended
		t.setHolds([]Hold{{Reason: SuspensionReason(p.Reason), Note: p.Note, Since: r.Time, By: r.Actor}})
		t.Provisioning.startSaga(SagaSuspend, r)
	case *events.TenantHoldAdded:
		t.setHolds(append(slices.Clone(t.Holds), Hold{Reason: SuspensionReason(p.Reason), Note: p.Note, Since: r.Time, By: r.Actor}))
	case *events.TenantHoldLifted:
		t.setHolds(slices.DeleteFunc(slices.Clone(t.Holds), func(h Hold) bool { return h.Reason == SuspensionReason(p.Reason) }))
	case *events.TenantResumed:
		// Every hold goes: this lifts the last one, or (in logs from before
		// holds, an upcast) the one suspension there was.
		t.State = StateActive
		t.setHolds(nil)
		t.Provisioning.startSaga(SagaResume, r)
	case *events.TenantArchived:
		t.State = StateArchived
		t.ArchivedAt = r.Time
		t.Provisioning.startSaga(SagaArchive, r)
	case *events.TenantRestored:
		t.State = StateSuspended
		t.ArchivedAt = time.Time{}
		// The holds it was archived with stand (a payment or compliance
		// hold survives the archive); with none, an operator hold keeps
		// it suspended until someone resumes it.
		if len(t.Holds) == 0 {
			t.setHolds([]Hold{{Reason: SuspendOperator, Note: "restored from archive", Since: r.Time, By: r.Actor}})
		}
		t.Provisioning.startSaga(SagaRestore, r)
	case *events.TenantDeleted:
		evolveDeleted(t, r)
	default:
		return false
	}
	return true
}

// evolveDeleted forgets the tenant's personal data (contacts and the
// administrator named at activation) and starts the delete saga.
func evolveDeleted(t *Tenant, r Recorded) {
	t.State = StateDeleted
	t.DeletedAt = r.Time
	t.Contacts = nil
	t.PIIErased = true
	if t.Activation != nil {
		a := *t.Activation
		a.Admin = nil
		t.Activation = &a
	}
	t.Provisioning.startSaga(SagaDelete, r)
}

// evolveSaga folds the events that record the progress of the current saga.
func evolveSaga(t *Tenant, r Recorded) {
	switch p := r.Payload.(type) {
	case *events.TenantStepRecorded:
		t.Provisioning.applyStep(p, r)
	case *events.TenantProvisioningFailed:
		t.Provisioning.Status = SagaFailed
		t.Provisioning.FailedStep = p.Step
		t.Provisioning.LastError = p.Reason
		t.Provisioning.UpdatedAt = r.Time
	case *events.TenantProvisioningRetried:
		t.Provisioning.Status = SagaRunning
		t.Provisioning.FailedStep = ""
		t.Provisioning.UpdatedAt = r.Time
	case *events.TenantSagaCompleted:
		t.Provisioning.Status = SagaCompleted
		t.Provisioning.UpdatedAt = r.Time
	case *events.TenantDriftRepaired:
		t.Provisioning.Repairs++
		t.Provisioning.UpdatedAt = r.Time
	}
}

// applyStep replaces the step's latest status (or appends it) and merges
// the external ids it reports, an empty value deleting its key. Slices and
// maps are copied, never changed in place: earlier states share them.
func (p *Provisioning) applyStep(e *events.TenantStepRecorded, r Recorded) {
	st := StepStatus{
		Name: e.Step, Outcome: e.Outcome, Attempt: e.Attempt, Detail: e.Detail,
		StartedAt: e.StartedAt, FinishedAt: e.FinishedAt, ExternalIDs: maps.Clone(e.ExternalIDs),
	}
	if i := slices.IndexFunc(p.Steps, func(s StepStatus) bool { return s.Name == e.Step }); i >= 0 {
		p.Steps = slices.Clone(p.Steps)
		p.Steps[i] = st
	} else {
		p.Steps = append(slices.Clone(p.Steps), st)
	}
	if len(e.ExternalIDs) > 0 {
		ids := maps.Clone(p.ExternalIDs)
		if ids == nil {
			ids = map[string]string{}
		}
		for k, v := range e.ExternalIDs {
			if v == "" {
				delete(ids, k)
			} else {
				ids[k] = v
			}
		}
		p.ExternalIDs = ids
	}
	if e.Outcome == events.StepFailed {
		p.LastError = e.Detail
	}
	p.UpdatedAt = r.Time
}

func cloneRegions(r Regions) Regions {
	return Regions{Allowed: slices.Clone(r.Allowed), Preferred: r.Preferred}
}
