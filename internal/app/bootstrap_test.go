package app_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/testrig"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// TestBootstrapRace: instances starting at once make exactly one root
// customer, one root tenant and one shared tenant, each created, verified
// and activated once; a later start changes nothing.
func TestBootstrapRace(t *testing.T) {
	r := testrig.New(t, testrig.Options{CustomerPolicy: true})
	cores := []*app.Tenants{r.Core.Tenants}
	customers := []*app.Customers{r.Core.Customers}
	for range 3 {
		c := testrig.OpenCoreWith(t, r.Ctx, r.NATS, r.SigningKey, r.MasterKey, testrig.Options{CustomerPolicy: true})
		cores, customers = append(cores, c.Tenants), append(customers, c.Customers)
	}
	o := app.BootstrapOptions{AdminEmail: "ops@platform.test"}
	var wg sync.WaitGroup
	errs := make([]error, len(cores))
	for i := range cores {
		wg.Go(func() { errs[i] = app.Bootstrap(r.Ctx, customers[i], cores[i], o) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
	}
	before, err := r.Core.Store.LastSeq(r.Ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Bootstrap(r.Ctx, customers[0], cores[0], o); err != nil {
		t.Fatalf("a later start: %v", err)
	}
	if after, _ := r.Core.Store.LastSeq(r.Ctx); after != before {
		t.Fatalf("a later start appended %d events", after-before)
	}

	counts := map[string]int{}
	msgs, err := r.Core.Store.ReadAll(r.Ctx, events.AllSubjects, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		e, _, err := events.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		counts[e.Subject+" "+e.Type]++
	}
	for _, want := range []string{
		domain.RootCustomerID + " " + events.TypeCustomerCreated,
		domain.RootCustomerID + " " + events.TypeCustomerVerificationRecorded,
		domain.RootTenantID + " " + events.TypeTenantCreated,
		domain.RootTenantID + " " + events.TypeTenantMarkedRoot,
		domain.RootTenantID + " " + events.TypeTenantActivationRequested,
		domain.SharedTenantID + " " + events.TypeTenantCreated,
		domain.SharedTenantID + " " + events.TypeTenantActivationRequested,
	} {
		if counts[want] != 1 {
			t.Errorf("%s: %d events, want exactly 1", want, counts[want])
		}
	}
	for k, n := range counts {
		if strings.Contains(k, events.TypeTenantCreated) && n != 1 {
			t.Errorf("%s: %d", k, n)
		}
	}
	root, _, err := r.Core.Tenants.Get(r.Ctx, domain.RootTenantID)
	if err != nil || root.Slug != "root" || root.Root != domain.RoleRootTenant || root.CustomerID != domain.RootCustomerID || root.State != domain.StateProvisioning {
		t.Fatalf("root tenant: %+v, %v", root, err)
	}
	if root.Activation.Admin == nil || root.Activation.Admin.Email != "ops@platform.test" {
		t.Fatalf("root tenant's admin: %+v", root.Activation.Admin)
	}
}
