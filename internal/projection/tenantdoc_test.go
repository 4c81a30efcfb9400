package projection_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tenancyhq/tenancy/internal/projection"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fullTenant has every field of domain.Tenant set.
func fullTenant() domain.Tenant {
	t0 := time.Date(2026, 11, 1, 9, 30, 0, 0, time.UTC)
	return domain.Tenant{
		ID: "0194f5d2-6a4e-7c3b-9f00-000000000001", Slug: "acme", DisplayName: "Acme Corp", Plan: "standard",
		Regions: domain.Regions{Allowed: []string{"eu-west-1", "eu-central-1"}, Preferred: "eu-west-1"}, Isolation: domain.IsolationShared,
		Contacts:    []events.Contact{{Role: "technical", Name: "T. Person", Email: "tech@acme.test", Phone: "+44 20 7946 0000"}},
		ExternalIDs: map[string]string{"billing": "cus_123"}, Labels: map[string]string{"env": "prod"}, CustomerRef: "crm-9",
		State: domain.StateSuspended, Version: 9, CreatedAt: t0, UpdatedAt: t0.Add(time.Hour), ArchivedAt: t0.Add(2 * time.Hour), DeletedAt: t0.Add(3 * time.Hour),
		Suspension: &domain.Suspension{Reason: domain.SuspensionReason("payment"), Note: "invoice 42", Since: t0.Add(time.Hour)},
		Holds: []domain.Hold{
			{Reason: domain.SuspendPayment, Note: "invoice 42", Since: t0.Add(time.Hour), By: "billing"},
			{Reason: domain.SuspendCompliance, Note: "re-KYC overdue", Since: t0.Add(90 * time.Minute), By: "compliance"},
		},
		CustomerID: "0194f5d2-6a4e-7c3b-9f00-0000000000c1", Root: domain.RoleSharedTenant,
		Realm: &domain.RealmPlacement{Mode: "shared", Realm: "shared", Organization: "acme"},
		Activation: &domain.Activation{
			Placement: events.Placement{Region: "eu-west-1", Isolation: "shared"}, Features: []string{"sso"}, Quotas: map[string]int64{"users": 50},
			Policy: []events.PolicyCheck{{Name: "region", Outcome: "pass", Detail: "allowed"}}, Admin: &events.Admin{Email: "admin@acme.test", Name: "A. Admin"},
			RequestedAt: t0, ActivatedAt: t0.Add(time.Minute),
		},
		Provisioning: domain.Provisioning{
			SagaID: "saga-1", Saga: domain.SagaSuspend, Status: domain.SagaFailed, FailedStep: "billing_pause", LastError: "billing refused",
			StartedAt: t0, UpdatedAt: t0.Add(time.Minute), ExternalIDs: map[string]string{"realm": "acme"}, Repairs: 2,
			Steps: []domain.StepStatus{{Name: "realm_disable", Outcome: "completed", Attempt: 1, Detail: "ok", StartedAt: t0, FinishedAt: t0.Add(time.Second), ExternalIDs: map[string]string{"realm": "acme"}}},
		},
		PIIErased: true,
	}
}

// TestTenantDocGolden pins the stored form of a tenant: a domain field
// renamed or added must not change what rows hold (that needs a new
// SchemaVersion and a rebuild). Refresh with -update only for such a change.
func TestTenantDocGolden(t *testing.T) {
	tenant := fullTenant()
	got, err := projection.MarshalTenant(tenant)
	if err != nil {
		t.Fatal(err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, got, "", "  "); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "tenant_doc.golden.json")
	if *update {
		if err := os.WriteFile(path, append(pretty.Bytes(), '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), pretty.String()+"\n"); diff != "" {
		t.Errorf("the stored form of a tenant changed (-golden +now):\n%s", diff)
	}
	back, err := projection.UnmarshalTenant(want)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tenant, back); diff != "" {
		t.Errorf("a stored tenant does not read back as itself (-want +got):\n%s", diff)
	}
}

// TestFullValuesSetEveryField keeps the golden tests honest: a field added
// to a domain aggregate (or to a struct in it) must be set in its full
// value, so the round trip through the stored form shows whether the
// document keeps it.
func TestFullValuesSetEveryField(t *testing.T) {
	var check func(path string, v reflect.Value)
	check = func(path string, v reflect.Value) {
		for i := range v.NumField() {
			f, name := v.Field(i), path+"."+v.Type().Field(i).Name
			switch {
			case f.IsZero():
				t.Errorf("%s is not set in the golden test's value: set it, and store it (or say why not)", name)
			case f.Kind() == reflect.Struct && f.Type() != reflect.TypeFor[time.Time]():
				check(name, f)
			}
		}
	}
	check("Tenant", reflect.ValueOf(fullTenant()))
	check("Customer", reflect.ValueOf(fullCustomer()))
}
