package domain

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tenancyhq/tenancy/pkg/events"
)

func testCatalog(t testing.TB) *Catalog {
	t.Helper()
	c, err := NewCatalog(
		[]Region{
			{Code: "eu-west-1", Name: "Ireland", Jurisdiction: "EU"},
			{Code: "eu-central-1", Name: "Frankfurt", Jurisdiction: "EU"},
			{Code: "us-east-1", Name: "Virginia", Jurisdiction: "US"},
			{Code: "eu-north-0", Name: "Old", Jurisdiction: "EU", Status: RegionClosed},
		},
		[]Plan{
			{Code: "standard", Features: []string{"sso"}, Quotas: map[string]int64{"users": 100}, Isolation: []IsolationMode{IsolationShared, IsolationHybrid}},
			{Code: "enterprise", Features: []string{"sso", "audit-export"}, Quotas: map[string]int64{"users": 10000}, Isolation: IsolationModes},
			{Code: "starter", Features: []string{}, Quotas: map[string]int64{"users": 5}, Isolation: []IsolationMode{IsolationShared}, MaxRegions: 1},
		},
	)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var t0 = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)

func created() *events.TenantCreated {
	return &events.TenantCreated{
		Slug: "acme", DisplayName: "Acme Corp", Plan: "standard",
		Regions:   Regions{Allowed: []string{"eu-west-1", "eu-central-1"}, Preferred: "eu-west-1"},
		Isolation: "shared",
		Contacts: []events.Contact{
			{Role: "technical", Name: "T. Person", Email: "tech@acme.test"},
			{Role: "billing", Name: "A. Person", Email: "billing@acme.test"},
		},
		ExternalIDs: map[string]string{"billing": "cus_123"},
		Labels:      map[string]string{"env": "prod"},
	}
}

func activationRequested() *events.TenantActivationRequested {
	return &events.TenantActivationRequested{
		Placement: events.Placement{Region: "eu-west-1", Isolation: "shared"},
		Plan:      "standard", Features: []string{"sso"}, Quotas: map[string]int64{"users": 100},
		Admin: &events.Admin{Email: "tech@acme.test", Name: "T. Person"},
	}
}

// fold builds the state after given, with event ids e1, e2, ...
func fold(given []events.Payload) Tenant {
	var t Tenant
	for i, p := range given {
		t = EvolveTenant(t, Recorded{AggregateID: "t1", ID: fmt.Sprintf("e%d", i+1), Time: t0.Add(time.Duration(i) * time.Minute), Version: int64(i + 1), Payload: p})
	}
	return t
}

// Histories that put a tenant in each state. The saga of the last
// transition is e<len>.
var inState = map[State][]events.Payload{
	StateDraft:        {created()},
	StateProvisioning: {created(), activationRequested()},
	StateActive:       {created(), activationRequested(), &events.TenantActivated{SagaID: "e2", Region: "eu-west-1"}},
	StateSuspended:    {created(), activationRequested(), &events.TenantActivated{SagaID: "e2", Region: "eu-west-1"}, &events.TenantSuspended{Reason: "payment"}},
	StateArchived:     {created(), activationRequested(), &events.TenantActivated{SagaID: "e2", Region: "eu-west-1"}, &events.TenantSuspended{Reason: "payment"}, &events.TenantArchived{}},
	StateDeleted:      {created(), &events.TenantDeleted{Slug: "acme"}},
}

type tenantCase struct {
	name  string
	given []events.Payload
	when  TenantCommand
	then  []events.Payload
	err   error  // the kind of error expected, nil for success
	msg   string // a substring the error message must contain
}

func runTenantCases(t *testing.T, cases []tenantCase) {
	t.Helper()
	d := TenantDecider{Catalog: testCatalog(t)}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			state := fold(tc.given)
			got, err := d.Decide(state, tc.when)
			if !checkDecision(t, got, err, tc.err, tc.msg, tc.then) {
				return
			}
			// Every decided event must fold without surprises.
			for _, e := range got {
				state = EvolveTenant(state, Recorded{ID: "next", Time: t0.Add(time.Hour), Version: state.Version + 1, Payload: e})
			}
		})
	}
}

// checkDecision checks what a decider answered. With wantErr, the command
// must be refused with an error of that kind that mentions msg (if given),
// and produce no events; otherwise it must produce exactly then. It reports
// whether the command was accepted.
func checkDecision(t *testing.T, got []events.Payload, err, wantErr error, msg string, then []events.Payload) bool {
	t.Helper()
	if wantErr != nil {
		if !errors.Is(err, wantErr) {
			t.Fatalf("error = %v, want kind %v", err, wantErr)
		}
		if msg != "" && (err == nil || !strings.Contains(err.Error(), msg)) {
			t.Fatalf("error = %q, want it to mention %q", err, msg)
		}
		if len(got) != 0 {
			t.Fatalf("a refused command produced events: %v", got)
		}
		return false
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if diff := cmp.Diff(then, got); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	return true
}

// TestLifecycleMatrix checks every lifecycle command in every state: the
// allowed ones produce their event, repeats towards the current state are
// no-ops, and everything else is a precondition error naming the state and
// its allowed actions.
func TestLifecycleMatrix(t *testing.T) {
	type outcome struct {
		then []events.Payload // nil with noop=false means refused
		noop bool
	}
	commands := []struct {
		cmd      TenantCommand
		outcomes map[State]outcome
	}{
		{RequestActivation{}, map[State]outcome{
			StateDraft:        {then: []events.Payload{withPolicy(activationRequested())}},
			StateProvisioning: {noop: true},
			StateActive:       {noop: true},
		}},
		{CancelActivation{Reason: "wrong region"}, map[State]outcome{
			StateDraft:        {noop: true},
			StateProvisioning: {then: []events.Payload{&events.TenantActivationCancelled{Reason: "wrong region"}}},
		}},
		{Suspend{Reason: "payment", Note: "invoice 42 overdue"}, map[State]outcome{
			StateActive:    {then: []events.Payload{&events.TenantSuspended{Reason: "payment", Note: "invoice 42 overdue"}}},
			StateSuspended: {noop: true},
		}},
		{Resume{}, map[State]outcome{
			StateSuspended: {then: []events.Payload{&events.TenantResumed{Reason: "payment"}}},
			StateActive:    {noop: true},
		}},
		{Archive{}, map[State]outcome{
			StateSuspended: {then: []events.Payload{&events.TenantArchived{}}},
			StateArchived:  {noop: true},
		}},
		{Restore{}, map[State]outcome{
			StateArchived:  {then: []events.Payload{&events.TenantRestored{}}},
			StateSuspended: {noop: true},
		}},
		{Delete{Confirm: "acme"}, map[State]outcome{
			StateDraft:    {then: []events.Payload{&events.TenantDeleted{Slug: "acme"}}},
			StateArchived: {then: []events.Payload{&events.TenantDeleted{Slug: "acme"}}},
			StateDeleted:  {noop: true},
		}},
	}
	var cases []tenantCase
	for _, c := range commands {
		for _, st := range States {
			o, allowed := c.outcomes[st]
			tc := tenantCase{name: fmt.Sprintf("%s/in %s", c.cmd.Action(), st), given: inState[st], when: c.cmd}
			switch {
			case !allowed:
				tc.err = ErrPrecondition
				tc.msg = fmt.Sprintf("cannot %s a tenant that is %s; allowed actions in %s:", c.cmd.Action(), st, st)
			case o.noop:
				tc.then = nil
			default:
				tc.then = o.then
			}
			cases = append(cases, tc)
		}
	}
	runTenantCases(t, cases)
}

func withPolicy(a *events.TenantActivationRequested) *events.TenantActivationRequested {
	a.Policy = []events.PolicyCheck{
		{Name: "plan.exists", Outcome: "passed", Detail: "standard"},
		{Name: "plan.isolation", Outcome: "passed", Detail: "shared on standard"},
		{Name: "residency.inventory", Outcome: "passed", Detail: "eu-west-1,eu-central-1"},
		{Name: "residency.preferred", Outcome: "passed", Detail: "eu-west-1"},
	}
	return a
}

func TestTransitionErrorNamesStateAndActions(t *testing.T) {
	d := TenantDecider{Catalog: testCatalog(t)}
	_, err := d.Decide(fold(inState[StateSuspended]), UpdateTenant{DisplayName: ptr("New")})
	var te *TransitionError
	if !errors.As(err, &te) {
		t.Fatalf("error = %v, want a TransitionError", err)
	}
	want := &TransitionError{Action: "update", State: StateSuspended, Allowed: []string{"resume", "archive"}}
	if diff := cmp.Diff(want, te); diff != "" {
		t.Fatal(diff)
	}
	_, err = d.Decide(fold(inState[StateDeleted]), Resume{})
	if err == nil || !strings.Contains(err.Error(), "none (the state is terminal)") {
		t.Fatalf("deleted tenant error = %v, want it to say the state is terminal", err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestCreate(t *testing.T) {
	// The command that records created(), field for field.
	e := created()
	valid := CreateTenant{ID: "t1", Slug: e.Slug, DisplayName: e.DisplayName, Plan: e.Plan, Regions: e.Regions,
		Isolation: e.Isolation, Contacts: e.Contacts, ExternalIDs: e.ExternalIDs, Labels: e.Labels}
	with := func(f func(*CreateTenant)) CreateTenant {
		c := valid
		f(&c)
		return c
	}
	runTenantCases(t, []tenantCase{
		{name: "valid", when: valid, then: []events.Payload{created()}},
		{name: "exists", given: inState[StateDraft], when: valid, err: ErrConflict},
		{name: "slug too short", when: with(func(c *CreateTenant) { c.Slug = "ab" }), err: ErrInvalid, msg: "slug: must be 3-63"},
		{name: "slug uppercase", when: with(func(c *CreateTenant) { c.Slug = "Acme" }), err: ErrInvalid, msg: "slug"},
		{name: "slug trailing hyphen", when: with(func(c *CreateTenant) { c.Slug = "acme-" }), err: ErrInvalid, msg: "slug"},
		{name: "slug reserved", when: with(func(c *CreateTenant) { c.Slug = "master" }), err: ErrInvalid, msg: `"master" is reserved`},
		{name: "no display name", when: with(func(c *CreateTenant) { c.DisplayName = "" }), err: ErrInvalid, msg: "display_name: is required"},
		{name: "display name control chars", when: with(func(c *CreateTenant) { c.DisplayName = "A\x00B" }), err: ErrInvalid, msg: "control characters"},
		{name: "display name with a bidi override", when: with(func(c *CreateTenant) { c.DisplayName = "Acme \u202Egnp.exe" }), err: ErrInvalid, msg: "U+202E"},
		{name: "display name with a bidi isolate", when: with(func(c *CreateTenant) { c.DisplayName = "Acme \u2067x\u2069" }), err: ErrInvalid, msg: "U+2067"},
		{name: "display name with a zero-width space", when: with(func(c *CreateTenant) { c.DisplayName = "Ac\u200Bme" }), err: ErrInvalid, msg: "U+200B"},
		{name: "display name with a byte-order mark", when: with(func(c *CreateTenant) { c.DisplayName = "\uFEFFAcme" }), err: ErrInvalid, msg: "U+FEFF"},
		// Joiners shape Indic and Persian text: कृ‍ष्ण (ZWJ), می‌خواهم (ZWNJ).
		{name: "display name with joiners", when: with(func(c *CreateTenant) {
			c.DisplayName = "\u0915\u0943\u200D\u0937\u094D\u0923 \u0645\u06CC\u200C\u062E\u0648\u0627\u0647\u0645"
		}),
			then: []events.Payload{func() *events.TenantCreated {
				e := created()
				e.DisplayName = "\u0915\u0943\u200D\u0937\u094D\u0923 \u0645\u06CC\u200C\u062E\u0648\u0627\u0647\u0645"
				return e
			}()}},
		{name: "unknown plan", when: with(func(c *CreateTenant) { c.Plan = "gold" }), err: ErrInvalid, msg: `plan: unknown plan "gold"`},
		{name: "plan forbids isolation", when: with(func(c *CreateTenant) { c.Isolation = "dedicated" }), err: ErrInvalid, msg: `plan "standard" does not allow dedicated isolation`},
		{name: "unknown isolation", when: with(func(c *CreateTenant) { c.Isolation = "solo" }), err: ErrInvalid, msg: `unknown isolation mode "solo"`},
		{name: "region not in inventory", when: with(func(c *CreateTenant) { c.Regions.Allowed = []string{"mars-1"}; c.Regions.Preferred = "mars-1" }), err: ErrInvalid, msg: `region "mars-1" is not in the topology inventory`},
		{name: "closed region", when: with(func(c *CreateTenant) { c.Regions.Allowed = []string{"eu-north-0"}; c.Regions.Preferred = "eu-north-0" }), err: ErrInvalid, msg: "closed to new tenants"},
		{name: "preferred not allowed", when: with(func(c *CreateTenant) { c.Regions.Preferred = "us-east-1" }), err: ErrInvalid, msg: "regions.preferred"},
		{name: "no regions", when: with(func(c *CreateTenant) { c.Regions = Regions{} }), err: ErrInvalid, msg: "regions.allowed: at least one region"},
		{name: "plan region limit", when: with(func(c *CreateTenant) { c.Plan = "starter" }), err: ErrInvalid, msg: "at most 1 regions"},
		{name: "bad contact role", when: with(func(c *CreateTenant) { c.Contacts = []events.Contact{{Role: "ceo", Name: "X", Email: "x@acme.test"}} }), err: ErrInvalid, msg: `unknown contact role "ceo"`},
		{name: "bad email", when: with(func(c *CreateTenant) {
			c.Contacts = []events.Contact{{Role: "billing", Name: "X", Email: "not-an-email"}}
		}), err: ErrInvalid, msg: "contacts[0].email"},
		{name: "bad phone", when: with(func(c *CreateTenant) {
			c.Contacts = []events.Contact{{Role: "billing", Name: "X", Email: "x@acme.test", Phone: "12345"}}
		}), err: ErrInvalid, msg: "E.164"},
		{name: "bad external id system", when: with(func(c *CreateTenant) { c.ExternalIDs = map[string]string{"Bill Ing": "x"} }), err: ErrInvalid, msg: "external_ids.Bill Ing"},
		{name: "empty external id", when: with(func(c *CreateTenant) { c.ExternalIDs = map[string]string{"crm": ""} }), err: ErrInvalid, msg: "external_ids.crm: is required"},
		{name: "bad label", when: with(func(c *CreateTenant) { c.Labels = map[string]string{"env": "prod!"} }), err: ErrInvalid, msg: "labels.env"},
		{name: "bad customer ref", when: with(func(c *CreateTenant) { c.CustomerRef = " x" }), err: ErrInvalid, msg: "customer_ref"},
	})
}

func TestCreateReportsEveryProblemAtOnce(t *testing.T) {
	d := TenantDecider{Catalog: testCatalog(t)}
	_, err := d.Decide(Tenant{}, CreateTenant{ID: "t1", Slug: "A", Plan: "gold", Isolation: "shared", Regions: Regions{Allowed: []string{"mars-1"}, Preferred: "venus-1"}})
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error = %v, want a ValidationError", err)
	}
	var fields []string
	for _, f := range ve.Fields {
		fields = append(fields, f.Field)
	}
	want := []string{"slug", "display_name", "plan", "regions.allowed[0]", "regions.preferred"}
	if diff := cmp.Diff(want, fields); diff != "" {
		t.Fatalf("fields (-want +got):\n%s", diff)
	}
	for _, f := range ve.Fields {
		if f.Field == "plan" && len(f.Allowed) == 0 {
			t.Fatal("the plan error must list the allowed plans")
		}
	}
}

func TestUpdate(t *testing.T) {
	active := inState[StateActive]
	runTenantCases(t, []tenantCase{
		{name: "display name", given: inState[StateDraft], when: UpdateTenant{DisplayName: ptr("Acme GmbH")},
			then: []events.Payload{&events.TenantUpdated{Changed: []string{"display_name"}, DisplayName: ptr("Acme GmbH")}}},
		{name: "same values change nothing", given: inState[StateDraft], when: UpdateTenant{DisplayName: ptr("Acme Corp"), Labels: &MapPatch{Values: map[string]*string{"env": ptr("prod")}}}, then: nil},
		{name: "labels and external ids", given: active, when: UpdateTenant{Labels: &MapPatch{Values: map[string]*string{"tier": ptr("gold")}}, ExternalIDs: &MapPatch{Values: map[string]*string{"crm": ptr("0012"), "billing": nil}}},
			then: []events.Payload{&events.TenantUpdated{Changed: []string{"external_ids", "labels"}, ExternalIDs: map[string]string{"crm": "0012"}, Labels: map[string]string{"env": "prod", "tier": "gold"}}}},
		{name: "remove all labels", given: active, when: UpdateTenant{Labels: &MapPatch{Replace: true}},
			then: []events.Payload{&events.TenantUpdated{Changed: []string{"labels"}}}},
		{name: "contacts", given: active, when: UpdateTenant{Contacts: &[]events.Contact{{Role: "incident", Name: "On Call", Email: "oncall@acme.test"}}},
			then: []events.Payload{&events.TenantUpdated{Changed: []string{"contacts"}, Contacts: []events.Contact{{Role: "incident", Name: "On Call", Email: "oncall@acme.test"}}}}},
		{name: "plan change when active", given: active, when: UpdateTenant{Plan: ptr("enterprise")},
			then: []events.Payload{&events.TenantPlanChanged{From: "standard", To: "enterprise", Features: []string{"audit-export", "sso"}, Quotas: map[string]int64{"users": 10000}}}},
		{name: "plan and name in one command", given: active, when: UpdateTenant{Plan: ptr("enterprise"), DisplayName: ptr("Acme AG")},
			then: []events.Payload{
				&events.TenantUpdated{Changed: []string{"display_name"}, DisplayName: ptr("Acme AG")},
				&events.TenantPlanChanged{From: "standard", To: "enterprise", Features: []string{"audit-export", "sso"}, Quotas: map[string]int64{"users": 10000}},
			}},
		{name: "plan that forbids isolation", given: inState[StateDraft], when: UpdateTenant{Plan: ptr("starter"), Isolation: ptr("hybrid")}, err: ErrInvalid, msg: "does not allow hybrid"},
		{name: "unknown plan", given: active, when: UpdateTenant{Plan: ptr("gold")}, err: ErrInvalid, msg: `unknown plan "gold"`},
		{name: "plan during provisioning", given: inState[StateProvisioning], when: UpdateTenant{Plan: ptr("enterprise")}, err: ErrInvalid, msg: "being provisioned"},
		{name: "regions in draft", given: inState[StateDraft], when: UpdateTenant{Regions: &RegionsPatch{Allowed: &[]string{"us-east-1"}, Preferred: ptr("us-east-1")}},
			then: []events.Payload{&events.TenantUpdated{Changed: []string{"regions"}, Regions: &Regions{Allowed: []string{"us-east-1"}, Preferred: "us-east-1"}}}},
		{name: "preferred only", given: inState[StateDraft], when: UpdateTenant{Regions: &RegionsPatch{Preferred: ptr("eu-central-1")}},
			then: []events.Payload{&events.TenantUpdated{Changed: []string{"regions"}, Regions: &Regions{Allowed: []string{"eu-west-1", "eu-central-1"}, Preferred: "eu-central-1"}}}},
		{name: "remove a label that is not there", given: active, when: UpdateTenant{Labels: &MapPatch{Values: map[string]*string{"nope": nil}}}, then: nil},
		{name: "regions after activation", given: active, when: UpdateTenant{Regions: &RegionsPatch{Allowed: &[]string{"us-east-1"}, Preferred: ptr("us-east-1")}}, err: ErrInvalid, msg: "placement is fixed"},
		{name: "bad preferred region", given: inState[StateDraft], when: UpdateTenant{Regions: &RegionsPatch{Preferred: ptr("us-east-1")}}, err: ErrInvalid, msg: "regions.preferred"},
		{name: "suspended refuses update", given: inState[StateSuspended], when: UpdateTenant{DisplayName: ptr("x")}, err: ErrPrecondition},
		{name: "archived refuses update", given: inState[StateArchived], when: UpdateTenant{DisplayName: ptr("x")}, err: ErrPrecondition},
		{name: "empty display name", given: inState[StateDraft], when: UpdateTenant{DisplayName: ptr("")}, err: ErrInvalid, msg: "display_name: is required"},
		{name: "unknown tenant", when: UpdateTenant{DisplayName: ptr("x")}, err: ErrNotFound},
	})
}

func TestActivationAndSuspensionInputs(t *testing.T) {
	noTechnical := []events.Payload{func() events.Payload { c := created(); c.Contacts = c.Contacts[1:]; return c }()}
	runTenantCases(t, []tenantCase{
		{name: "explicit admin", given: inState[StateDraft], when: RequestActivation{Admin: &events.Admin{Email: "root@acme.test", Name: "Root"}},
			then: []events.Payload{func() events.Payload {
				a := withPolicy(activationRequested())
				a.Admin = &events.Admin{Email: "root@acme.test", Name: "Root"}
				return a
			}()}},
		{name: "no admin and no technical contact", given: noTechnical, when: RequestActivation{}, err: ErrInvalid, msg: "admin.email"},
		{name: "bad admin email", given: inState[StateDraft], when: RequestActivation{Admin: &events.Admin{Email: "root"}}, err: ErrInvalid, msg: "admin.email"},
		{name: "suspend needs a known reason", given: inState[StateActive], when: Suspend{Reason: "bored"}, err: ErrInvalid, msg: `unknown suspension reason "bored"`},
		{name: "delete needs confirmation", given: inState[StateDraft], when: Delete{Confirm: "acm"}, err: ErrInvalid, msg: "confirm=acme"},
		{name: "delete an active tenant", given: inState[StateActive], when: Delete{Confirm: "acme"}, err: ErrPrecondition},
	})
}

func TestActivationPolicyUsesTheCurrentCatalog(t *testing.T) {
	// The tenant was created in a region that has since closed: activation
	// re-runs the policy and refuses, naming the field.
	given := []events.Payload{func() events.Payload {
		c := created()
		c.Regions = Regions{Allowed: []string{"eu-north-0"}, Preferred: "eu-north-0"}
		return c
	}()}
	runTenantCases(t, []tenantCase{
		{name: "closed region", given: given, when: RequestActivation{}, err: ErrInvalid, msg: `regions.allowed[0]: region "eu-north-0" is closed to new tenants`},
	})
}

func TestSagaCommands(t *testing.T) {
	prov := inState[StateProvisioning] // saga e2
	step := events.TenantStepRecorded{SagaID: "e2", Step: "realm", Outcome: events.StepCompleted, Attempt: 1, ExternalIDs: map[string]string{"realm": "acme"}}
	withStep := append(append([]events.Payload{}, prov...), &events.TenantStepRecorded{SagaID: "e2", Saga: "activate", Step: "realm", Outcome: events.StepCompleted, Attempt: 1, ExternalIDs: map[string]string{"realm": "acme"}})
	failed := append(append([]events.Payload{}, prov...), &events.TenantProvisioningFailed{SagaID: "e2", Saga: "activate", Step: "billing", Reason: "billing rejected the plan"})
	runTenantCases(t, []tenantCase{
		{name: "record a step", given: prov, when: RecordStep{Step: step},
			then: []events.Payload{&events.TenantStepRecorded{SagaID: "e2", Saga: "activate", Step: "realm", Outcome: events.StepCompleted, Attempt: 1, ExternalIDs: map[string]string{"realm": "acme"}}}},
		{name: "a repeated step is already recorded", given: withStep, when: RecordStep{Step: step}, then: nil},
		{name: "a step of a superseded saga", given: prov, when: RecordStep{Step: events.TenantStepRecorded{SagaID: "old", Step: "realm", Outcome: events.StepCompleted}}, err: ErrPrecondition, msg: "superseded"},
		{name: "complete activation", given: withStep, when: CompleteSaga{SagaID: "e2"}, then: []events.Payload{&events.TenantActivated{SagaID: "e2", Region: "eu-west-1"}}},
		{name: "complete twice", given: inState[StateActive], when: CompleteSaga{SagaID: "e2"}, then: nil},
		{name: "complete a suspension saga", given: inState[StateSuspended], when: CompleteSaga{SagaID: "e4"}, then: []events.Payload{&events.TenantSagaCompleted{SagaID: "e4", Saga: "suspend"}}},
		{name: "fail", given: prov, when: FailSaga{SagaID: "e2", Step: "billing", Attempt: 3, Reason: "billing rejected the plan"},
			then: []events.Payload{&events.TenantProvisioningFailed{SagaID: "e2", Saga: "activate", Step: "billing", Attempt: 3, Reason: "billing rejected the plan"}}},
		{name: "no steps after failure", given: failed, when: RecordStep{Step: step}, err: ErrPrecondition, msg: "failed, not running"},
		{name: "retry a failed saga", given: failed, when: RetrySaga{}, then: []events.Payload{&events.TenantProvisioningRetried{SagaID: "e2", Saga: "activate", Step: "billing"}}},
		{name: "retry a running saga is a no-op", given: prov, when: RetrySaga{}, then: nil},
		{name: "retry with nothing failed", given: inState[StateActive], when: RetrySaga{}, err: ErrPrecondition, msg: "no failed provisioning"},
		{name: "cancel a failed activation", given: failed, when: CancelActivation{}, then: []events.Payload{&events.TenantActivationCancelled{}}},
	})
}

func TestEvolveTracksProvisioningAndErasure(t *testing.T) {
	history := append(append([]events.Payload{}, inState[StateProvisioning]...),
		&events.TenantStepRecorded{SagaID: "e2", Saga: "activate", Step: "realm", Outcome: events.StepFailed, Attempt: 1, Detail: "503 from keycloak"},
		&events.TenantStepRecorded{SagaID: "e2", Saga: "activate", Step: "realm", Outcome: events.StepCompleted, Attempt: 2, ExternalIDs: map[string]string{"realm_id": "r-1"}},
		&events.TenantActivated{SagaID: "e2", Region: "eu-west-1"},
	)
	got := fold(history)
	if got.State != StateActive || got.Version != 5 || got.Provisioning.Status != SagaCompleted {
		t.Fatalf("state %s version %d saga %s", got.State, got.Version, got.Provisioning.Status)
	}
	if s, _ := got.Provisioning.Step("realm"); s.Outcome != events.StepCompleted || s.Attempt != 2 || len(got.Provisioning.Steps) != 1 {
		t.Fatalf("steps = %+v", got.Provisioning.Steps)
	}
	if got.Provisioning.ExternalIDs["realm_id"] != "r-1" || got.Activation.ActivatedAt.IsZero() {
		t.Fatalf("provisioning = %+v activation = %+v", got.Provisioning, got.Activation)
	}
	if got.ID != "t1" || !got.CreatedAt.Equal(t0) || got.UpdatedAt.Equal(t0) {
		t.Fatalf("id %q created %v updated %v", got.ID, got.CreatedAt, got.UpdatedAt)
	}
	deleted := fold(inState[StateDeleted])
	if !deleted.PIIErased || deleted.Contacts != nil || deleted.Claims() != nil {
		t.Fatalf("a deleted tenant keeps personal data or claims: %+v", deleted)
	}
}

func TestClaims(t *testing.T) {
	draft := fold(inState[StateDraft])
	got := draft.Claims()
	want := []Claim{{Kind: ClaimSlug, Value: "acme"}, {Kind: ClaimExternalID, System: "billing", Value: "cus_123"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatal(diff)
	}
}

func TestCatalogRejectsBadDefinitions(t *testing.T) {
	for name, tc := range map[string]struct {
		regions []Region
		plans   []Plan
		msg     string
	}{
		"no regions":      {plans: []Plan{{Code: "p", Isolation: IsolationModes}}, msg: "no region"},
		"duplicate":       {regions: []Region{{Code: "r1"}, {Code: "r1"}}, plans: []Plan{{Code: "p", Isolation: IsolationModes}}, msg: "listed twice"},
		"no isolation":    {regions: []Region{{Code: "r1"}}, plans: []Plan{{Code: "p"}}, msg: "allows no isolation"},
		"bad isolation":   {regions: []Region{{Code: "r1"}}, plans: []Plan{{Code: "p", Isolation: []IsolationMode{"solo"}}}, msg: "solo"},
		"bad status":      {regions: []Region{{Code: "r1", Status: "maybe"}}, plans: []Plan{{Code: "p", Isolation: IsolationModes}}, msg: "maybe"},
		"bad region code": {regions: []Region{{Code: "R 1"}}, plans: []Plan{{Code: "p", Isolation: IsolationModes}}, msg: "region code"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := NewCatalog(tc.regions, tc.plans)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error = %v, want it to mention %q", err, tc.msg)
			}
		})
	}
}

func TestEnumsRejectUnknownAndZero(t *testing.T) {
	for _, parse := range []func(string) error{
		func(s string) error { _, err := ParseState(s); return err },
		func(s string) error { _, err := ParseIsolationMode(s); return err },
		func(s string) error { _, err := ParseSuspensionReason(s); return err },
		func(s string) error { _, err := ParseContactRole(s); return err },
	} {
		for _, bad := range []string{"", "DRAFT", "unknown"} {
			if parse(bad) == nil {
				t.Errorf("parse(%q) succeeded", bad)
			}
		}
	}
}
