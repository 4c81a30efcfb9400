package domain

import (
	"testing"

	"github.com/tenancyhq/tenancy/pkg/events"
)

func suspendedFor(reasons ...string) []events.Payload {
	given := append([]events.Payload{}, inState[StateActive]...)
	given = append(given, &events.TenantSuspended{Reason: reasons[0]})
	for _, r := range reasons[1:] {
		given = append(given, &events.TenantHoldAdded{Reason: r})
	}
	return given
}

// TestHolds: a tenant stays suspended while any hold remains, each hold
// lifted by its own command, so one reason never lifts another.
func TestHolds(t *testing.T) {
	runTenantCases(t, []tenantCase{
		{name: "a second reason adds a hold", given: suspendedFor("payment"), when: Suspend{Reason: "compliance", Note: "re-KYC overdue"},
			then: []events.Payload{&events.TenantHoldAdded{Reason: "compliance", Note: "re-KYC overdue"}}},
		{name: "a reason already held is a no-op", given: suspendedFor("payment", "compliance"), when: Suspend{Reason: "compliance"}},
		{name: "lifting one of two holds keeps the tenant suspended", given: suspendedFor("payment", "compliance"), when: Resume{Reason: "compliance"},
			then: []events.Payload{&events.TenantHoldLifted{Reason: "compliance"}}},
		{name: "lifting the last hold resumes", given: append(suspendedFor("payment", "compliance"), &events.TenantHoldLifted{Reason: "compliance"}), when: Resume{Reason: "payment"},
			then: []events.Payload{&events.TenantResumed{Reason: "payment"}}},
		{name: "a hold not held is a no-op", given: suspendedFor("payment"), when: Resume{Reason: "compliance"}},
		{name: "no reason lifts the only hold", given: suspendedFor("security"), when: Resume{},
			then: []events.Payload{&events.TenantResumed{Reason: "security"}}},
		{name: "no reason with two holds is refused, naming them", given: suspendedFor("payment", "compliance"), when: Resume{},
			err: ErrInvalid, msg: "held for payment and compliance"},
		{name: "an unknown reason is refused", given: suspendedFor("payment"), when: Resume{Reason: "whim"}, err: ErrInvalid, msg: `unknown suspension reason "whim"`},
		{name: "billing lifts only the holds it placed", given: suspendedFor("payment"), when: Resume{Reason: "payment", PlacedBy: "billing-svc"},
			err: ErrForbidden, msg: "placed by"},
		{name: "an old single-reason suspension resumes with no reason", given: inState[StateSuspended], when: Resume{},
			then: []events.Payload{&events.TenantResumed{Reason: "payment"}}},
	})
}

func TestHoldsFold(t *testing.T) {
	tn := fold(append(suspendedFor("payment", "compliance"), &events.TenantHoldLifted{Reason: "payment"}))
	if tn.State != StateSuspended || len(tn.Holds) != 1 || tn.Holds[0].Reason != SuspendCompliance {
		t.Fatalf("state %s holds %+v, want suspended with compliance only", tn.State, tn.Holds)
	}
	if tn.Suspension == nil || tn.Suspension.Reason != SuspendCompliance {
		t.Fatalf("suspension %+v, want the remaining hold", tn.Suspension)
	}
	tn = fold(append(suspendedFor("payment", "compliance"), &events.TenantHoldLifted{Reason: "payment"}, &events.TenantResumed{Reason: "compliance"}))
	if tn.State != StateActive || len(tn.Holds) != 0 || tn.Suspension != nil {
		t.Fatalf("state %s holds %+v, want active with none", tn.State, tn.Holds)
	}
}

func platform(role string) []events.Payload {
	given := append([]events.Payload{}, inState[StateActive]...)
	return append(given, &events.TenantMarkedRoot{Role: role})
}

// TestPlatformTenants: the root and shared tenants cannot be suspended,
// archived or deleted, and only bootstrap may use the reserved slugs.
func TestPlatformTenants(t *testing.T) {
	create := CreateTenant{ID: "t1", Slug: "root", DisplayName: "Platform", Plan: "standard", Isolation: "shared",
		Regions: Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"}}
	boot := create
	boot.Platform = RoleRootTenant
	runTenantCases(t, []tenantCase{
		{name: "suspend", given: platform("root"), when: Suspend{Reason: "payment"}, err: ErrPlatformTenant, msg: `cannot suspend the platform's root tenant "acme"`},
		{name: "archive", given: append(platform("shared"), &events.TenantSuspended{Reason: "operator"}), when: Archive{}, err: ErrPlatformTenant, msg: "shared tenant"},
		{name: "delete", given: []events.Payload{created(), &events.TenantMarkedRoot{Role: "root"}}, when: Delete{Confirm: "acme"}, err: ErrPlatformTenant},
		{name: "the API may not take a reserved slug", when: create, err: ErrInvalid, msg: `"root" is reserved`},
		{name: "bootstrap may", when: boot, then: []events.Payload{
			&events.TenantCreated{Slug: "root", DisplayName: "Platform", Plan: "standard", Isolation: "shared", Regions: Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"}},
			&events.TenantMarkedRoot{Role: "root"},
		}},
	})
}

func customerFacts(verification, mode string) *CustomerFacts {
	return &CustomerFacts{ID: "c1", Exists: true, Verification: verification, RealmMode: mode}
}

func withCustomer(given []events.Payload) []events.Payload {
	return append(append([]events.Payload{}, given...), &events.TenantCustomerAssigned{CustomerID: "c1"})
}

// TestCustomerPolicy: activation checks the plan's demand on the tenant's
// customer (the test catalog's standard plan wants a verified one, starter
// any customer).
func TestCustomerPolicy(t *testing.T) {
	cat := testCatalog(t)
	for code, p := range cat.plans {
		switch code {
		case "standard":
			p.Customer = CustomerPolicy{Required: true, Verified: true}
		case "enterprise":
			p.Customer = CustomerPolicy{Required: true, Verified: true, AcceptPartial: true}
		}
		cat.plans[code] = p
	}
	d := TenantDecider{Catalog: cat}
	draft := []events.Payload{created()}
	enterprise := []events.Payload{created(), &events.TenantPlanChanged{From: "standard", To: "enterprise"}}
	cases := []tenantCase{
		{name: "no customer", given: draft, when: RequestActivation{}, err: ErrCustomerRequired, msg: `plan "standard" activates only tenants owned by a customer`},
		{name: "customer pending", given: withCustomer(draft), when: RequestActivation{Customer: customerFacts("pending", "own")}, err: ErrCustomerNotVerified, msg: "verification is pending, it must be completed"},
		{name: "customer never verified", given: withCustomer(draft), when: RequestActivation{Customer: customerFacts("", "own")}, err: ErrCustomerNotVerified, msg: "verification is pending"},
		{name: "partial is not enough for standard", given: withCustomer(draft), when: RequestActivation{Customer: customerFacts("partial", "own")}, err: ErrCustomerNotVerified},
		{name: "due for re-KYC is not enough", given: withCustomer(draft), when: RequestActivation{Customer: customerFacts("due_for_rekyc", "own")}, err: ErrCustomerNotVerified},
		{name: "a deleted customer counts as none", given: withCustomer(draft), when: RequestActivation{Customer: &CustomerFacts{ID: "c1"}}, err: ErrCustomerRequired},
		{name: "partial is enough where the plan accepts it", given: withCustomer(enterprise), when: RequestActivation{Customer: customerFacts("partial", "own")}},
		{name: "a customer whose re-KYC grace ended, whatever the plan", given: withCustomer(enterprise),
			when: RequestActivation{Customer: &CustomerFacts{ID: "c1", Exists: true, Verification: "due_for_rekyc", GraceExpired: true}}, err: ErrCustomerNotVerified, msg: "grace period has ended"},
		{name: "shared realm without a shared tenant", given: withCustomer(draft), when: RequestActivation{Customer: customerFacts("completed", "shared")}, err: ErrPrecondition, msg: "shared tenant has no realm yet"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := d.Decide(fold(tc.given), tc.when)
			if tc.err == nil {
				if _, ok := got[len(got)-1].(*events.TenantActivationRequested); err != nil || len(got) != 1 || !ok {
					t.Fatalf("got %v, %v; want the activation request", got, err)
				}
				return
			}
			checkDecision(t, got, err, tc.err, tc.msg, tc.then)
		})
	}
	t.Run("verified: activation, placed in its own realm by default", func(t *testing.T) {
		got, err := d.Decide(fold(withCustomer(draft)), RequestActivation{Customer: customerFacts("completed", "own")})
		if err != nil || len(got) != 1 {
			t.Fatalf("got %v, %v; want one activation request", got, err)
		}
	})
	t.Run("shared: placed as an organization in the shared realm", func(t *testing.T) {
		got, err := d.Decide(fold(withCustomer(draft)), RequestActivation{Customer: customerFacts("completed", "shared"), SharedRealm: "shared"})
		if err != nil || len(got) != 2 {
			t.Fatalf("got %v, %v; want placement and activation request", got, err)
		}
		want := &events.TenantRealmPlaced{Mode: "shared", Realm: "shared", Organization: "acme"}
		if p, ok := got[0].(*events.TenantRealmPlaced); !ok || *p != *want {
			t.Fatalf("first event %#v, want %#v", got[0], want)
		}
	})
}

// TestCustomerAssignment: customer_id must name a customer that exists,
// and a tenant past draft keeps one.
func TestCustomerAssignment(t *testing.T) {
	id := func(s string) *string { return &s }
	create := CreateTenant{ID: "t1", Slug: "acme", DisplayName: "Acme", Plan: "standard", Isolation: "shared",
		Regions: Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"}, CustomerID: "c1"}
	unknown := create
	unknown.Customer = &CustomerFacts{ID: "c1"}
	known := create
	known.Customer = customerFacts("pending", "own")
	runTenantCases(t, []tenantCase{
		{name: "create with an unknown customer", when: unknown, err: ErrInvalid, msg: `no customer "c1" exists`},
		{name: "create with a customer", when: known, then: []events.Payload{
			&events.TenantCreated{Slug: "acme", DisplayName: "Acme", Plan: "standard", Isolation: "shared", Regions: Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"}},
			&events.TenantCustomerAssigned{CustomerID: "c1"},
		}},
		{name: "attach with PATCH", given: []events.Payload{created()}, when: UpdateTenant{CustomerID: id("c1"), Customer: customerFacts("", "own")},
			then: []events.Payload{&events.TenantCustomerAssigned{CustomerID: "c1"}}},
		{name: "the same customer again is a no-op", given: withCustomer([]events.Payload{created()}), when: UpdateTenant{CustomerID: id("c1"), Customer: customerFacts("", "own")}},
		{name: "detach a draft", given: withCustomer([]events.Payload{created()}), when: UpdateTenant{CustomerID: id("")},
			then: []events.Payload{&events.TenantCustomerAssigned{}}},
		{name: "an active tenant keeps a customer", given: withCustomer(inState[StateActive]), when: UpdateTenant{CustomerID: id("")}, err: ErrInvalid, msg: "keeps a customer"},
		{name: "attach an unknown one", given: []events.Payload{created()}, when: UpdateTenant{CustomerID: id("c9")}, err: ErrInvalid, msg: `no customer "c9"`},
	})
	tn := fold(withCustomer([]events.Payload{created()}))
	if tn.CustomerID != "c1" {
		t.Fatalf("customer %q, want c1", tn.CustomerID)
	}
}

// TestPlacementFollowsTheCustomer: a tenant placed in the shared realm by
// a cancelled activation gets a realm of its own when re-activated for a
// customer that now wants that.
func TestPlacementFollowsTheCustomer(t *testing.T) {
	d := TenantDecider{Catalog: testCatalog(t)}
	given := withCustomer([]events.Payload{created()})
	given = append(given, &events.TenantRealmPlaced{Mode: "shared", Realm: "shared", Organization: "acme"}, activationRequested(),
		&events.TenantActivationCancelled{Reason: "wrong realm"})
	got, err := d.Decide(fold(given), RequestActivation{Customer: customerFacts("completed", "own")})
	if err != nil || len(got) != 2 {
		t.Fatalf("got %v, %v", got, err)
	}
	if p, ok := got[0].(*events.TenantRealmPlaced); !ok || p.Mode != "own" || p.Realm != "acme" {
		t.Fatalf("placement %#v, want its own realm", got[0])
	}
}

// TestRestoreKeepsHolds: archiving and restoring a tenant does not lift the
// holds it was suspended for; one with none gets an operator hold.
func TestRestoreKeepsHolds(t *testing.T) {
	held := append(suspendedFor("payment", "compliance"), &events.TenantArchived{}, &events.TenantRestored{})
	if tn := fold(held); tn.State != StateSuspended || len(tn.Holds) != 2 {
		t.Fatalf("restored with holds %+v, want payment and compliance", tn.Holds)
	}
	runTenantCases(t, []tenantCase{{name: "one resume does not lift both after a restore", given: held, when: Resume{}, err: ErrInvalid, msg: "payment and compliance"}})
	old := append(append([]events.Payload{}, inState[StateArchived]...), &events.TenantRestored{})
	if tn := fold(old); len(tn.Holds) != 1 || tn.Holds[0].Reason != SuspendPayment {
		t.Fatalf("restored from an old log: holds %+v, want the payment suspension it had", tn.Holds)
	}
}
