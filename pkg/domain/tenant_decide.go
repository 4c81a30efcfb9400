package domain

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/tenancyhq/tenancy/pkg/events"
)

// TenantCommand is a command the Tenant aggregate decides.
type TenantCommand interface {
	// Action names the command as the API and error messages do.
	Action() string
}

// CreateTenant creates a tenant in draft.
type CreateTenant struct {
	ID          string
	Slug        string
	DisplayName string
	Plan        string
	Regions     Regions
	Isolation   string
	Contacts    []events.Contact
	ExternalIDs map[string]string
	Labels      map[string]string
	CustomerRef string
	// CustomerID names the owning customer ("" for none yet); Customer
	// is what the application found under it.
	CustomerID string
	Customer   *CustomerFacts
	// Platform makes one of the platform's own tenants (RoleRootTenant,
	// RoleSharedTenant): only bootstrap sets it, and only it may use the
	// reserved slugs.
	Platform string
}

// CustomerFacts is what a tenant command needs to know of a customer: the
// application reads the customer and passes them in, so the decision stays
// pure.
type CustomerFacts struct {
	ID string
	// Exists is false for an unknown or deleted customer.
	Exists       bool
	Verification string
	RealmMode    string
	// GraceExpired: the customer's re-KYC grace period ended without a
	// new verification; none of its tenants is activated until it is
	// verified again, whatever the plan.
	GraceExpired bool
}

// UpdateTenant changes metadata with JSON merge patch (RFC 7396) semantics,
// applied to the state current when the command is decided, so concurrent
// updates of different members never lose each other. A nil field is left
// as it is.
type UpdateTenant struct {
	DisplayName *string
	Plan        *string
	Regions     *RegionsPatch
	Isolation   *string
	// Contacts replaces the whole list (merge patch replaces arrays).
	Contacts    *[]events.Contact
	ExternalIDs *MapPatch
	Labels      *MapPatch
	// CustomerRef set to "" removes the reference.
	CustomerRef *string
	// CustomerID set to "" detaches the tenant from its customer;
	// Customer holds the facts of the customer it names.
	CustomerID *string
	Customer   *CustomerFacts
}

// RegionsPatch changes the residency member by member.
type RegionsPatch struct {
	Allowed   *[]string
	Preferred *string
}

func (p *RegionsPatch) apply(r Regions) Regions {
	out := cloneRegions(r)
	if p.Allowed != nil {
		out.Allowed = slices.Clone(*p.Allowed)
	}
	if p.Preferred != nil {
		out.Preferred = *p.Preferred
	}
	return out
}

// MapPatch merges into a string map: a nil value removes its key. With
// Replace the map starts empty (the patch set the whole member to null).
type MapPatch struct {
	Replace bool
	Values  map[string]*string
}

// Apply returns m with the patch applied, nil when empty.
func (p *MapPatch) Apply(m map[string]string) map[string]string {
	out := map[string]string{}
	if !p.Replace {
		maps.Copy(out, m)
	}
	for k, v := range p.Values {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = *v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// RequestActivation moves a draft tenant into provisioning after its policy
// checks pass. Admin defaults to the technical contact.
type RequestActivation struct {
	Admin *events.Admin
	// Customer holds the facts of the tenant's customer (nil: none);
	// SharedRealm is the shared tenant's realm, where a shared customer's
	// tenants are placed.
	Customer    *CustomerFacts
	SharedRealm string
}

// CancelActivation returns a provisioning tenant to draft.
type CancelActivation struct {
	Reason string
}

// Suspend places a hold on a tenant: an active one is suspended, a
// suspended one gains another reason to stay so.
type Suspend struct {
	Reason string
	Note   string
}

// Resume lifts the hold for Reason; the tenant is active again once no
// hold remains. An empty Reason lifts the only hold there is.
type Resume struct {
	Reason string
	// PlacedBy, when set, lifts the hold only if that actor placed it:
	// billing resumes only the payment holds it placed itself.
	PlacedBy string
}

// Archive retires a suspended tenant.
type Archive struct{}

// Restore brings an archived tenant back, suspended.
type Restore struct{}

// Delete removes a draft or archived tenant for good. Confirm must repeat
// the tenant's slug.
type Delete struct {
	Confirm string
}

// RecordStep records the outcome of one step of the current saga.
type RecordStep struct {
	Step events.TenantStepRecorded
}

// FailSaga stops the current saga on an error retrying cannot fix.
type FailSaga struct {
	SagaID  string
	Step    string
	Attempt int
	Reason  string
}

// RetrySaga resumes a failed saga from its failed step.
type RetrySaga struct{}

// CompleteSaga finishes the current saga; for activation it activates the
// tenant.
type CompleteSaga struct {
	SagaID string
}

// RecordAdminPassword records that a temporary password was issued to the
// tenant's administrator.
type RecordAdminPassword struct{}

// Action implements TenantCommand.
func (RecordAdminPassword) Action() string { return "issue-admin-password" }

// RecordRepair records a drift repair made by reconcile.
type RecordRepair struct {
	Repair events.TenantDriftRepaired
}

// Action implements TenantCommand.
func (CreateTenant) Action() string { return "create" }

// Action implements TenantCommand.
func (UpdateTenant) Action() string { return "update" }

// Action implements TenantCommand.
func (RequestActivation) Action() string { return "activate" }

// Action implements TenantCommand.
func (CancelActivation) Action() string { return "cancel-activation" }

// Action implements TenantCommand.
func (Suspend) Action() string { return "suspend" }

// Action implements TenantCommand.
func (Resume) Action() string { return "resume" }

// Action implements TenantCommand.
func (Archive) Action() string { return "archive" }

// Action implements TenantCommand.
func (Restore) Action() string { return "restore" }

// Action implements TenantCommand.
func (Delete) Action() string { return "delete" }

// Action implements TenantCommand.
func (RecordStep) Action() string { return "record-step" }

// Action implements TenantCommand.
func (FailSaga) Action() string { return "fail-provisioning" }

// Action implements TenantCommand.
func (RetrySaga) Action() string { return "retry-provisioning" }

// Action implements TenantCommand.
func (CompleteSaga) Action() string { return "complete-provisioning" }

// Action implements TenantCommand.
func (RecordRepair) Action() string { return "record-repair" }

// TenantDecider decides tenant commands against a policy catalog.
type TenantDecider struct {
	Catalog *Catalog
}

// Kind implements Decider.
func (TenantDecider) Kind() string { return events.AggregateTenant }

// Evolve implements Decider.
func (TenantDecider) Evolve(t Tenant, r Recorded) Tenant { return EvolveTenant(t, r) }

// Decide returns the events cmd causes on t, or an error saying why it is
// refused. An empty result with a nil error means the command is already
// satisfied (an idempotent repeat).
func (d TenantDecider) Decide(t Tenant, cmd TenantCommand) ([]events.Payload, error) {
	if _, isCreate := cmd.(CreateTenant); !isCreate && !t.Exists() {
		return nil, fmt.Errorf("tenant %w", ErrNotFound)
	}
	switch c := cmd.(type) {
	case CreateTenant:
		return d.create(t, c)
	case UpdateTenant:
		return d.update(t, c)
	case RequestActivation:
		return d.activate(t, c)
	case CancelActivation:
		return cancelActivation(t, c)
	case Suspend:
		return suspend(t, c)
	case Resume:
		return resume(t, c)
	case Archive:
		if err := notPlatform(t, c.Action()); err != nil {
			return nil, err
		}
		return transition(t, c.Action(), StateSuspended, StateArchived, &events.TenantArchived{})
	case Restore:
		return transition(t, c.Action(), StateArchived, StateSuspended, &events.TenantRestored{})
	case Delete:
		return deleteTenant(t, c)
	case RecordStep:
		return recordStep(t, c)
	case FailSaga:
		return failSaga(t, c)
	case RetrySaga:
		return retrySaga(t)
	case CompleteSaga:
		return completeSaga(t, c)
	case RecordAdminPassword:
		return recordAdminPassword(t)
	case RecordRepair:
		return recordRepair(t, c)
	}
	return nil, fmt.Errorf("%w: unknown command %T", ErrInvalid, cmd)
}

// cancelActivation returns a provisioning tenant to draft; a draft tenant
// has nothing left to cancel.
func cancelActivation(t Tenant, c CancelActivation) ([]events.Payload, error) {
	if err := notPlatform(t, c.Action()); err != nil {
		return nil, err
	}
	switch t.State {
	case StateDraft:
		return nil, nil
	case StateProvisioning:
		var fe fieldErrors
		checkText(&fe, "reason", c.Reason, false, MaxNote)
		if err := fe.err(); err != nil {
			return nil, err
		}
		return []events.Payload{&events.TenantActivationCancelled{Reason: c.Reason}}, nil
	}
	return nil, refuse(&t, c.Action())
}

// notPlatform refuses action on the platform's own tenants.
func notPlatform(t Tenant, action string) error {
	if t.Root == "" {
		return nil
	}
	return fmt.Errorf("%w: cannot %s the platform's %s tenant %q: the platform itself runs in it", ErrPlatformTenant, action, t.Root, t.Slug)
}

// suspend places a hold: an active tenant is suspended, a suspended one
// keeps the new reason too, and a reason already held needs nothing.
func suspend(t Tenant, c Suspend) ([]events.Payload, error) {
	if err := notPlatform(t, c.Action()); err != nil {
		return nil, err
	}
	var fe fieldErrors
	reason, err := ParseSuspensionReason(c.Reason)
	if err != nil {
		fe.add("reason", err.Error(), suspensionReasonStrings()...)
	}
	checkText(&fe, "note", c.Note, false, MaxNote)
	if t.State != StateActive && t.State != StateSuspended {
		return nil, refuse(&t, c.Action())
	}
	if err := fe.err(); err != nil {
		return nil, err
	}
	if t.State == StateActive {
		return []events.Payload{&events.TenantSuspended{Reason: string(reason), Note: c.Note}}, nil
	}
	if _, held := t.HasHold(reason); held {
		return nil, nil
	}
	return []events.Payload{&events.TenantHoldAdded{Reason: string(reason), Note: c.Note}}, nil
}

// resume lifts one hold, and resumes the tenant when it was the last. An
// active tenant, or a reason not held, needs nothing: the hold is already
// gone.
func resume(t Tenant, c Resume) ([]events.Payload, error) {
	switch t.State {
	case StateActive:
		return nil, nil
	case StateSuspended:
	default:
		return nil, refuse(&t, c.Action())
	}
	reason := SuspensionReason(c.Reason)
	if c.Reason == "" {
		if len(t.Holds) > 1 {
			return nil, &ValidationError{Fields: []FieldError{{Field: "reason",
				Message: fmt.Sprintf("the tenant is held for %s; say which hold to lift (each is lifted on its own)", holdList(t.Holds)),
				Allowed: holdReasons(t.Holds)}}}
		}
		if len(t.Holds) == 1 {
			reason = t.Holds[0].Reason
		}
	} else if _, err := ParseSuspensionReason(c.Reason); err != nil {
		return nil, &ValidationError{Fields: []FieldError{{Field: "reason", Message: err.Error(), Allowed: suspensionReasonStrings()}}}
	}
	if len(t.Holds) == 0 {
		return []events.Payload{&events.TenantResumed{}}, nil
	}
	hold, held := t.HasHold(reason)
	if !held {
		return nil, nil
	}
	if c.PlacedBy != "" && hold.By != c.PlacedBy {
		return nil, fmt.Errorf("%w: the %s hold was placed by %s; you may lift only holds you placed", ErrForbidden, reason, hold.By)
	}
	if len(t.Holds) == 1 {
		return []events.Payload{&events.TenantResumed{Reason: string(reason)}}, nil
	}
	return []events.Payload{&events.TenantHoldLifted{Reason: string(reason)}}, nil
}

func holdReasons(holds []Hold) []string {
	out := make([]string, len(holds))
	for i, h := range holds {
		out[i] = string(h.Reason)
	}
	return out
}

func holdList(holds []Hold) string {
	rs := holdReasons(holds)
	if len(rs) < 2 {
		return strings.Join(rs, "")
	}
	return strings.Join(rs[:len(rs)-1], ", ") + " and " + rs[len(rs)-1]
}

// deleteTenant removes a draft or archived tenant once the command repeats
// its slug.
func deleteTenant(t Tenant, c Delete) ([]events.Payload, error) {
	if t.State == StateDeleted {
		return nil, nil
	}
	if err := notPlatform(t, c.Action()); err != nil {
		return nil, err
	}
	if t.State != StateDraft && t.State != StateArchived {
		return nil, refuse(&t, c.Action())
	}
	if c.Confirm != t.Slug {
		return nil, &ValidationError{Fields: []FieldError{{
			Field:   "confirm",
			Message: fmt.Sprintf("deletion is permanent: repeat the tenant's slug (confirm=%s) to confirm it", t.Slug),
		}}}
	}
	return []events.Payload{&events.TenantDeleted{Slug: t.Slug}}, nil
}

// failSaga stops the running saga c names.
func failSaga(t Tenant, c FailSaga) ([]events.Payload, error) {
	if err := currentSaga(t, c.SagaID, SagaRunning); err != nil {
		return nil, err
	}
	return []events.Payload{&events.TenantProvisioningFailed{
		SagaID: c.SagaID, Saga: t.Provisioning.Saga, Step: c.Step, Attempt: c.Attempt, Reason: c.Reason,
	}}, nil
}

// retrySaga resumes the failed saga; a running one needs nothing.
func retrySaga(t Tenant) ([]events.Payload, error) {
	switch t.Provisioning.Status {
	case SagaRunning:
		return nil, nil
	case SagaFailed:
		return []events.Payload{&events.TenantProvisioningRetried{
			SagaID: t.Provisioning.SagaID, Saga: t.Provisioning.Saga, Step: t.Provisioning.FailedStep,
		}}, nil
	}
	return nil, fmt.Errorf("%w: no failed provisioning to retry (the last saga, %q, is %s)", ErrPrecondition, t.Provisioning.Saga, statusOrNone(t.Provisioning.Status))
}

// completeSaga finishes the running saga c names, activating the tenant
// when it is the activation saga.
func completeSaga(t Tenant, c CompleteSaga) ([]events.Payload, error) {
	if t.Provisioning.SagaID == c.SagaID && t.Provisioning.Status == SagaCompleted {
		return nil, nil
	}
	if err := currentSaga(t, c.SagaID, SagaRunning); err != nil {
		return nil, err
	}
	if t.Provisioning.Saga == SagaActivate {
		region := ""
		if t.Activation != nil {
			region = t.Activation.Placement.Region
		}
		return []events.Payload{&events.TenantActivated{SagaID: c.SagaID, Region: region}}, nil
	}
	return []events.Payload{&events.TenantSagaCompleted{SagaID: c.SagaID, Saga: t.Provisioning.Saga}}, nil
}

// recordAdminPassword records an issued password while the tenant has an
// administrator to issue it to.
func recordAdminPassword(t Tenant) ([]events.Payload, error) {
	switch t.State {
	case StateProvisioning, StateActive, StateSuspended:
		return []events.Payload{&events.TenantAdminPasswordIssued{}}, nil
	}
	return nil, fmt.Errorf("%w: the tenant is %s; an administrator password can be issued while it is provisioning, active or suspended", ErrPrecondition, t.State)
}

// recordRepair records a drift repair on any tenant not deleted.
func recordRepair(t Tenant, c RecordRepair) ([]events.Payload, error) {
	if t.State == StateDeleted {
		return nil, refuse(&t, c.Action())
	}
	r := c.Repair
	return []events.Payload{&r}, nil
}

func statusOrNone(s SagaStatus) string {
	if s == "" {
		return "none"
	}
	return string(s)
}

func suspensionReasonStrings() []string {
	out := make([]string, len(SuspensionReasons))
	for i, r := range SuspensionReasons {
		out[i] = string(r)
	}
	return out
}

func transition(t Tenant, action string, from, to State, e events.Payload) ([]events.Payload, error) {
	switch t.State {
	case to:
		return nil, nil
	case from:
		return []events.Payload{e}, nil
	}
	return nil, refuse(&t, action)
}

func currentSaga(t Tenant, sagaID string, want SagaStatus) error {
	if t.Provisioning.SagaID != sagaID {
		return fmt.Errorf("%w: saga %s was superseded by %s saga %s", ErrPrecondition, sagaID, t.Provisioning.Saga, t.Provisioning.SagaID)
	}
	if t.Provisioning.Status != want {
		return fmt.Errorf("%w: %s saga %s is %s, not %s", ErrPrecondition, t.Provisioning.Saga, sagaID, t.Provisioning.Status, want)
	}
	return nil
}

func recordStep(t Tenant, c RecordStep) ([]events.Payload, error) {
	s := c.Step
	if err := currentSaga(t, s.SagaID, SagaRunning); err != nil {
		return nil, err
	}
	if s.Step == "" {
		return nil, &ValidationError{Fields: []FieldError{{Field: "step", Message: "is required"}}}
	}
	switch s.Outcome {
	case events.StepCompleted, events.StepSkipped, events.StepFailed, events.StepCompensated:
	default:
		return nil, &ValidationError{Fields: []FieldError{{Field: "outcome", Message: fmt.Sprintf("unknown outcome %q", s.Outcome),
			Allowed: []string{events.StepCompleted, events.StepSkipped, events.StepFailed, events.StepCompensated}}}}
	}
	// A saga that crashed after recording a step repeats it on resume; the
	// repeat is already recorded.
	if prev, ok := t.Provisioning.Step(s.Step); ok && prev.Outcome == s.Outcome && s.Outcome != events.StepFailed &&
		maps.Equal(prev.ExternalIDs, s.ExternalIDs) {
		return nil, nil
	}
	s.Saga = t.Provisioning.Saga
	return []events.Payload{&s}, nil
}

func (d TenantDecider) create(t Tenant, c CreateTenant) ([]events.Payload, error) {
	if t.Exists() {
		return nil, &ConflictError{Field: "id", Value: c.ID, Message: fmt.Sprintf("tenant %s already exists", c.ID)}
	}
	var fe fieldErrors
	if c.ID == "" {
		fe.add("id", "is required")
	}
	if c.Platform != "" {
		checkSlugShape(&fe, "slug", c.Slug)
	} else {
		checkSlug(&fe, "slug", c.Slug)
	}
	checkCustomer(&fe, c.CustomerID, c.Customer)
	checkText(&fe, "display_name", c.DisplayName, true, MaxDisplayName)
	checkContacts(&fe, c.Contacts)
	checkExternalIDs(&fe, c.ExternalIDs)
	checkLabels(&fe, c.Labels)
	checkCustomerRef(&fe, c.CustomerRef)
	checkRegionsShape(&fe, c.Regions)
	iso, err := ParseIsolationMode(c.Isolation)
	if err != nil {
		fe.add("isolation", err.Error(), isolationStrings(IsolationModes)...)
	}
	if c.Plan == "" {
		fe.add("plan", "is required", d.Catalog.PlanCodes()...)
	} else if iso != "" {
		_, pe := d.Catalog.Evaluate(Placement{Plan: c.Plan, Isolation: iso, Regions: c.Regions}, true)
		fe = append(fe, pe...)
	}
	if err := fe.err(); err != nil {
		return nil, err
	}
	out := []events.Payload{&events.TenantCreated{
		Slug:        c.Slug,
		DisplayName: c.DisplayName,
		Plan:        c.Plan,
		Regions:     cloneRegions(c.Regions),
		Isolation:   string(iso),
		Contacts:    slices.Clone(c.Contacts),
		ExternalIDs: nonEmpty(c.ExternalIDs),
		Labels:      nonEmpty(c.Labels),
		CustomerRef: c.CustomerRef,
	}}
	if c.CustomerID != "" {
		out = append(out, &events.TenantCustomerAssigned{CustomerID: c.CustomerID})
	}
	if c.Platform != "" {
		out = append(out, &events.TenantMarkedRoot{Role: c.Platform})
	}
	return out, nil
}

// checkCustomer checks that a customer id names a customer that exists.
func checkCustomer(fe *fieldErrors, id string, facts *CustomerFacts) {
	if id == "" {
		return
	}
	if facts == nil || facts.ID != id || !facts.Exists {
		fe.add("customer_id", fmt.Sprintf("no customer %q exists; create it first (POST /v1/customers) or leave customer_id out", id))
	}
}

func nonEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

func (d TenantDecider) update(t Tenant, c UpdateTenant) ([]events.Payload, error) {
	switch t.State {
	case StateDraft, StateProvisioning, StateActive:
	default:
		return nil, refuse(&t, c.Action())
	}
	var fe fieldErrors
	u := &events.TenantUpdated{}
	if c.DisplayName != nil && *c.DisplayName != t.DisplayName {
		checkText(&fe, "display_name", *c.DisplayName, true, MaxDisplayName)
		u.DisplayName = c.DisplayName
		u.Changed = append(u.Changed, "display_name")
	}
	planChange, err := d.updatePlacement(t, c, u, &fe)
	if err != nil {
		return nil, err
	}
	updateMetadata(t, c, u, &fe)
	var assign *events.TenantCustomerAssigned
	if c.CustomerID != nil && *c.CustomerID != t.CustomerID {
		if err := notPlatform(t, "change the customer of"); err != nil {
			return nil, err
		}
		checkCustomer(&fe, *c.CustomerID, c.Customer)
		if f := c.Customer; f != nil && f.Exists && f.GraceExpired && t.State != StateDraft {
			return nil, fmt.Errorf("%w: customer %s's re-KYC grace period has ended; a %s tenant can move to it once it is verified again (POST /v1/customers/%s/verification)",
				ErrCustomerNotVerified, f.ID, t.State, f.ID)
		}
		if t.State != StateDraft && *c.CustomerID == "" {
			fe.add("customer_id", fmt.Sprintf("a tenant that is %s keeps a customer; attach it to another customer instead of detaching it", t.State))
		}
		assign = &events.TenantCustomerAssigned{CustomerID: *c.CustomerID}
	}
	if err := fe.err(); err != nil {
		return nil, err
	}
	var out []events.Payload
	if len(u.Changed) > 0 {
		out = append(out, u)
	}
	if planChange != nil {
		out = append(out, planChange)
	}
	if assign != nil {
		out = append(out, assign)
	}
	return out, nil
}

// updatePlacement adds the regions and isolation c changes to u and
// returns the plan change it asks for, if any; the new placement must pass
// the catalog's policy. It returns an error at once for a change the
// tenant's state forbids.
func (d TenantDecider) updatePlacement(t Tenant, c UpdateTenant, u *events.TenantUpdated, fe *fieldErrors) (*events.TenantPlanChanged, error) {
	placement := Placement{Plan: t.Plan, Isolation: t.Isolation, Regions: t.Regions}
	placementChanged := false
	if c.Regions != nil {
		if r := c.Regions.apply(t.Regions); !regionsEqual(r, t.Regions) {
			checkRegionsShape(fe, r)
			u.Regions = &r
			placement.Regions = r
			placementChanged = true
			u.Changed = append(u.Changed, "regions")
		}
	}
	if c.Isolation != nil && *c.Isolation != string(t.Isolation) {
		iso, err := ParseIsolationMode(*c.Isolation)
		if err != nil {
			fe.add("isolation", err.Error(), isolationStrings(IsolationModes)...)
		}
		u.Isolation = c.Isolation
		placement.Isolation = iso
		placementChanged = true
		u.Changed = append(u.Changed, "isolation")
	}
	var planChange *events.TenantPlanChanged
	if c.Plan != nil && *c.Plan != t.Plan {
		if t.State == StateProvisioning {
			return nil, &ValidationError{Fields: []FieldError{{
				Field:   "plan",
				Message: "the plan cannot change while the tenant is being provisioned; wait until it is active or cancel the activation",
			}}}
		}
		placement.Plan = *c.Plan
		placementChanged = true
		if p, ok := d.Catalog.Plan(*c.Plan); ok {
			planChange = &events.TenantPlanChanged{From: t.Plan, To: p.Code, Features: slices.Clone(p.Features), Quotas: maps.Clone(p.Quotas)}
		}
	}
	if placementChanged && t.State != StateDraft && (u.Regions != nil || u.Isolation != nil) {
		return nil, &ValidationError{Fields: []FieldError{{
			Field:   placementField(u),
			Message: fmt.Sprintf("placement is fixed once activation is requested (the tenant is %s); only plan, display_name, contacts, external_ids, labels and customer_ref can change", t.State),
		}}}
	}
	if placementChanged {
		_, pe := d.Catalog.Evaluate(placement, t.State == StateDraft || u.Regions != nil)
		*fe = append(*fe, pe...)
	}
	return planChange, nil
}

// updateMetadata adds the contacts, external ids, labels and customer
// reference c changes to u, checking each.
func updateMetadata(t Tenant, c UpdateTenant, u *events.TenantUpdated, fe *fieldErrors) {
	if c.Contacts != nil && !slices.Equal(*c.Contacts, t.Contacts) {
		checkContacts(fe, *c.Contacts)
		u.Contacts = slices.Clone(*c.Contacts)
		if u.Contacts == nil {
			u.Contacts = []events.Contact{}
		}
		u.Changed = append(u.Changed, "contacts")
	}
	if c.ExternalIDs != nil {
		if ids := c.ExternalIDs.Apply(t.ExternalIDs); !maps.Equal(ids, t.ExternalIDs) {
			checkExternalIDs(fe, ids)
			u.ExternalIDs = ids
			u.Changed = append(u.Changed, "external_ids")
		}
	}
	if c.Labels != nil {
		if labels := c.Labels.Apply(t.Labels); !maps.Equal(labels, t.Labels) {
			checkLabels(fe, labels)
			u.Labels = labels
			u.Changed = append(u.Changed, "labels")
		}
	}
	if c.CustomerRef != nil && *c.CustomerRef != t.CustomerRef {
		checkCustomerRef(fe, *c.CustomerRef)
		u.CustomerRef = c.CustomerRef
		u.Changed = append(u.Changed, "customer_ref")
	}
}

func placementField(u *events.TenantUpdated) string {
	if u.Regions != nil {
		return "regions"
	}
	return "isolation"
}

func regionsEqual(a, b Regions) bool {
	return a.Preferred == b.Preferred && slices.Equal(a.Allowed, b.Allowed)
}

func (d TenantDecider) activate(t Tenant, c RequestActivation) ([]events.Payload, error) {
	switch t.State {
	case StateProvisioning, StateActive:
		return nil, nil
	case StateDraft:
	default:
		return nil, refuse(&t, c.Action())
	}
	var fe fieldErrors
	admin := c.Admin
	if admin == nil {
		if tc, ok := t.TechnicalContact(); ok {
			admin = &events.Admin{Email: tc.Email, Name: tc.Name}
		} else {
			fe.add("admin.email", "is required: the tenant has no technical contact to make its first administrator")
		}
	}
	if admin != nil {
		checkEmail(&fe, "admin.email", admin.Email)
		checkText(&fe, "admin.name", admin.Name, false, MaxDisplayName)
	}
	checks, pe := d.Catalog.Evaluate(Placement{Plan: t.Plan, Isolation: t.Isolation, Regions: t.Regions}, true)
	fe = append(fe, pe...)
	if err := fe.err(); err != nil {
		return nil, err
	}
	plan, _ := d.Catalog.Plan(t.Plan)
	if err := customerPolicy(t, plan, c.Customer); err != nil {
		return nil, err
	}
	// A tenant in a realm of its own (the default) needs no placement
	// event: its realm is named by its slug, as before customers existed.
	var out []events.Payload
	switch {
	case c.Customer != nil && c.Customer.RealmMode == RealmShared && t.Root == "":
		if c.SharedRealm == "" {
			return nil, fmt.Errorf("%w: customer %s places its tenants in the shared realm, and the shared tenant has no realm yet; start the API once so that bootstrap makes it", ErrPrecondition, t.CustomerID)
		}
		out = append(out, &events.TenantRealmPlaced{Mode: RealmShared, Realm: c.SharedRealm, Organization: t.Slug})
	case t.Realm != nil && t.Realm.Mode == RealmShared:
		// Placed in the shared realm by an activation since cancelled,
		// and its customer now wants realms of their own.
		out = append(out, &events.TenantRealmPlaced{Mode: RealmOwn, Realm: t.Slug})
	}
	return append(out, &events.TenantActivationRequested{
		Placement: events.Placement{Region: t.Regions.Preferred, Isolation: string(t.Isolation)},
		Plan:      plan.Code,
		Features:  slices.Clone(plan.Features),
		Quotas:    maps.Clone(plan.Quotas),
		Policy:    checks,
		Admin:     admin,
	}), nil
}

// customerPolicy checks the plan's demand on the tenant's customer.
func customerPolicy(t Tenant, plan Plan, facts *CustomerFacts) error {
	p := plan.Customer
	if facts != nil && facts.Exists && facts.GraceExpired && t.CustomerID == facts.ID {
		return fmt.Errorf("%w: customer %s's re-KYC grace period has ended, and its tenants are suspended for compliance; record a completed verification (POST /v1/customers/%s/verification) and retry",
			ErrCustomerNotVerified, t.CustomerID, t.CustomerID)
	}
	if !p.Required && !p.Verified {
		return nil
	}
	if facts != nil && t.CustomerID != "" && facts.ID != t.CustomerID {
		return fmt.Errorf("%w: the tenant's customer changed to %s while activation was being decided; retry", ErrPrecondition, t.CustomerID)
	}
	if t.CustomerID == "" || facts == nil || !facts.Exists {
		return fmt.Errorf("%w: plan %q activates only tenants owned by a customer; attach one with PATCH {\"customer_id\": ...} and retry", ErrCustomerRequired, plan.Code)
	}
	if !p.Verified {
		return nil
	}
	switch facts.Verification {
	case VerificationCompleted:
		return nil
	case VerificationPartial:
		if p.AcceptPartial {
			return nil
		}
	}
	want := "completed"
	if p.AcceptPartial {
		want = "completed or partial"
	}
	status := facts.Verification
	if status == "" {
		status = VerificationPending
	}
	return fmt.Errorf("%w: plan %q activates only tenants of a verified customer: customer %s's verification is %s, it must be %s (POST /v1/customers/%s/verification)",
		ErrCustomerNotVerified, plan.Code, t.CustomerID, status, want, t.CustomerID)
}
