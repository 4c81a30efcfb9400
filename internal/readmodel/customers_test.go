package readmodel_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/projection"
	"github.com/tenancyhq/tenancy/internal/readmodel"
	"github.com/tenancyhq/tenancy/internal/testrig"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// fixture is a log of customers and tenants, projected, and a reader on
// the read models.
type fixture struct {
	rig    *testrig.Rig
	reader *readmodel.Reader
	// ids by name
	c map[string]string // customers
	t map[string]string // tenants
	// pans by customer name
	pan map[string]string
	// gstin of globex
	gstin string
}

func meta() command.Meta { return command.Meta{Actor: "tester", CorrelationID: "corr-1"} }

func gstinOf(t *testing.T, pan string) string {
	t.Helper()
	first := "27" + pan + "1Z"
	check, ok := domain.GSTINCheck(first)
	if !ok {
		t.Fatalf("no GSTIN check character for %s", first)
	}
	return first + string(check)
}

// newFixture writes, in this order (ids are time-ordered): customers acme,
// acme-west (same PAN as acme), robotics, globex, priya (individual), ravi
// (individual, deleted); tenants acme-1, acme-2 (deleted), globex-1, loose
// (no customer); and waits until the tenants and customers read models
// have applied all of it.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	r := testrig.New(t, testrig.Options{Database: true})
	f := &fixture{rig: r, reader: readmodel.NewReader(r.ReadSide.Pool), c: map[string]string{}, t: map[string]string{}, pan: map[string]string{}}
	h := command.NewHandler[domain.Customer, domain.CustomerCommand](domain.CustomerDecider{}, r.Core.CommandDeps())
	do := func(id string, cmd domain.CustomerCommand) {
		t.Helper()
		if _, err := h.Execute(r.Ctx, events.PlatformTenantID, id, cmd, meta()); err != nil {
			t.Fatalf("%s on customer %s: %v", cmd.Action(), id, err)
		}
	}
	verify := func(name, status string) {
		do(f.c[name], domain.RecordVerification{Status: status, Now: time.Now(), Grace: time.Hour})
	}
	f.gstin = gstinOf(t, "AAACG5678D")
	for _, c := range []struct {
		name, kind, legal, display, pan, gstin, status string
	}{
		{"acme", domain.CustomerBusiness, "Acme Private Limited", "Acme", "AAACA1234C", "", domain.VerificationCompleted},
		{"acme-west", domain.CustomerBusiness, "Acme West Private Limited", "Acme West", "AAACA1234C", "", ""},
		{"robotics", domain.CustomerBusiness, "Robotics Fabrication LLP", "Acme Robotics", "AAAFR4321B", "", domain.VerificationPartial},
		{"globex", domain.CustomerBusiness, "Globex Corporation Limited", "Globex", "AAACG5678D", f.gstin, domain.VerificationDueForRekyc},
		{"priya", domain.CustomerIndividual, "Priya Sharma", "Priya", "ABCPS1234K", "", domain.VerificationCompleted},
		{"ravi", domain.CustomerIndividual, "Ravi Kumar", "Ravi", "ABCPK1111L", "", ""},
	} {
		id := app.NewID()
		f.c[c.name], f.pan[c.name] = id, c.pan
		email := ""
		if c.kind == domain.CustomerIndividual {
			email = c.name + "@example.test"
		}
		do(id, domain.CreateCustomer{ID: id, Kind: c.kind, LegalName: c.legal, DisplayName: c.display, Email: email,
			FiscalIDs: events.FiscalIDs{PAN: c.pan, GSTIN: c.gstin}, Index: r.Core.Keyring.BlindIndex})
		if c.status != "" {
			verify(c.name, c.status)
		}
	}
	do(f.c["ravi"], domain.DeleteCustomer{Confirm: f.c["ravi"]})

	for _, tn := range []struct{ slug, customer string }{{"acme-1", "acme"}, {"acme-2", "acme"}, {"globex-1", "globex"}, {"loose", ""}} {
		res, err := r.Core.Tenants.Create(r.Ctx, domain.CreateTenant{Slug: tn.slug, DisplayName: "Tenant " + tn.slug, Plan: "standard", Isolation: "shared",
			Regions:  domain.Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"},
			Contacts: []events.Contact{{Role: "technical", Name: "Tech", Email: "tech@" + tn.slug + ".test"}}, CustomerID: f.c[tn.customer]}, meta())
		if err != nil {
			t.Fatalf("create tenant %s: %v", tn.slug, err)
		}
		f.t[tn.slug] = res.State.ID
	}
	if _, err := r.Core.Tenants.Do(r.Ctx, f.t["acme-2"], domain.Delete{Confirm: "acme-2"}, meta()); err != nil {
		t.Fatal(err)
	}

	deps := projection.Deps{DatabaseURL: r.ReadSide.URL, JS: r.Core.JS, Store: r.Core.Store, Opener: r.Core.Keyring, MaxBatch: 5,
		ControlInterval: 50 * time.Millisecond, Log: logging.Discard()}
	w := readmodel.NewWaiter(r.ReadSide.URL, r.ReadSide.Pool, logging.Discard())
	testrig.Run(t, w.Run)
	head, err := r.Core.Store.LastSeq(r.Ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []projection.Projection{projection.Tenants{}, projection.Customers{}} {
		testrig.Run(t, projection.NewRunner(p, deps).Run)
		if _, err := w.Wait(r.Ctx, p.Name(), head, time.Minute); err != nil {
			t.Fatalf("%s did not reach seq %d: %v", p.Name(), head, err)
		}
	}
	return f
}

// names returns the fixture names of customers, in order.
func (f *fixture) names(cs []domain.Customer) []string {
	byID := map[string]string{}
	for n, id := range f.c {
		byID[id] = n
	}
	out := []string{}
	for _, c := range cs {
		out = append(out, byID[c.ID])
	}
	return out
}

func (f *fixture) tenantNames(ids []string) []string {
	byID := map[string]string{}
	for n, id := range f.t {
		byID[id] = n
	}
	out := []string{}
	for _, id := range ids {
		out = append(out, byID[id])
	}
	return out
}

// listAll walks every page of a customer listing.
func (f *fixture) listAll(t *testing.T, filter readmodel.CustomerFilter, size int) []string {
	t.Helper()
	var all []domain.Customer
	token := ""
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("paging does not end")
		}
		page, err := f.reader.ListCustomers(context.Background(), filter, readmodel.Page{Size: size, Token: token})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Items) > size {
			t.Fatalf("a page of %d has %d items", size, len(page.Items))
		}
		all = append(all, page.Items...)
		if token = page.NextPageToken; token == "" {
			return f.names(all)
		}
	}
}

func TestCustomers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	t.Run("ListCustomers", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			filter readmodel.CustomerFilter
			want   []string
		}{
			{"all but the deleted, in creation order", readmodel.CustomerFilter{}, []string{"acme", "acme-west", "robotics", "globex", "priya"}},
			{"by kind", readmodel.CustomerFilter{Kinds: []string{domain.CustomerIndividual}}, []string{"priya"}},
			{"by verification status", readmodel.CustomerFilter{VerificationStatuses: []string{domain.VerificationCompleted, domain.VerificationPartial}},
				[]string{"acme", "robotics", "priya"}},
			{"pending", readmodel.CustomerFilter{VerificationStatuses: []string{domain.VerificationPending}}, []string{"acme-west"}},
			{"kind and status", readmodel.CustomerFilter{Kinds: []string{domain.CustomerBusiness}, VerificationStatuses: []string{domain.VerificationCompleted}},
				[]string{"acme"}},
			{"search ranks the closest name first", readmodel.CustomerFilter{Query: "Acme"}, []string{"acme", "acme-west", "robotics"}},
			{"search by legal name", readmodel.CustomerFilter{Query: "fabrication"}, []string{"robotics"}},
			{"search forgives a typo", readmodel.CustomerFilter{Query: "Globx"}, []string{"globex"}},
			{"search with a filter", readmodel.CustomerFilter{Query: "acme", VerificationStatuses: []string{domain.VerificationPartial}}, []string{"robotics"}},
			{"search finds an individual", readmodel.CustomerFilter{Query: "Priya"}, []string{"priya"}},
			{"a deleted individual's name is gone", readmodel.CustomerFilter{Query: "Ravi"}, []string{}},
			{"LIKE wildcards are literal", readmodel.CustomerFilter{Query: "%"}, []string{}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				page, err := f.reader.ListCustomers(ctx, tc.filter, readmodel.Page{Size: 50})
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tc.want, f.names(page.Items)); diff != "" || page.NextPageToken != "" {
					t.Errorf("(-want +got):\n%s\nnext page token %q", diff, page.NextPageToken)
				}
				for _, size := range []int{1, 2} {
					if diff := cmp.Diff(tc.want, f.listAll(t, tc.filter, size)); diff != "" {
						t.Errorf("walked in pages of %d (-want +got):\n%s", size, diff)
					}
				}
			})
		}
		acme := f.c["acme"]
		page, err := f.reader.ListCustomers(ctx, readmodel.CustomerFilter{}, readmodel.Page{Size: 1})
		if err != nil || len(page.Items) != 1 {
			t.Fatal(page, err)
		}
		if got := page.Items[0]; got.ID != acme || got.LegalName != "Acme Private Limited" || got.Verification.Status != domain.VerificationCompleted ||
			got.FiscalIDs != (events.FiscalIDs{}) || got.FiscalIndex.PAN == "" {
			t.Errorf("a listed customer: %+v", got)
		}
	})

	t.Run("page tokens", func(t *testing.T) {
		plain, err := f.reader.ListCustomers(ctx, readmodel.CustomerFilter{}, readmodel.Page{Size: 1})
		if err != nil {
			t.Fatal(err)
		}
		ranked, err := f.reader.ListCustomers(ctx, readmodel.CustomerFilter{Query: "acme"}, readmodel.Page{Size: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name   string
			filter readmodel.CustomerFilter
			token  string
		}{
			{"not base64", readmodel.CustomerFilter{}, "!!!"},
			{"not a cursor", readmodel.CustomerFilter{}, "bm9wZQ"},
			{"an id that is no uuid", readmodel.CustomerFilter{}, "eyJpIjoiMTsgRFJPUCBUQUJMRSBjdXN0b21lcnMifQ"},
			{"a ranked token without a query", readmodel.CustomerFilter{}, ranked.NextPageToken},
			{"an unranked token with a query", readmodel.CustomerFilter{Query: "acme"}, plain.NextPageToken},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := f.reader.ListCustomers(ctx, tc.filter, readmodel.Page{Size: 1, Token: tc.token})
				if !errors.Is(err, readmodel.ErrBadToken) || !errors.Is(err, domain.ErrInvalid) {
					t.Errorf("got %v, want ErrBadToken", err)
				}
			})
		}
	})

	t.Run("CustomerByFiscalIndex", func(t *testing.T) {
		index := f.rig.Core.Keyring.BlindIndex
		for _, tc := range []struct {
			name, kind, index, want string
			err                     error
		}{
			{"the oldest of two with one PAN", "pan", index("pan", f.pan["acme"]), "acme", nil},
			{"an individual's PAN", "pan", index("pan", f.pan["priya"]), "priya", nil},
			{"a GSTIN", "gstin", index("gstin", f.gstin), "globex", nil},
			{"a deleted customer's PAN", "pan", index("pan", f.pan["ravi"]), "", readmodel.ErrNotFound},
			{"a PAN's index under another kind", "tan", index("pan", f.pan["acme"]), "", readmodel.ErrNotFound},
			{"an index nobody has", "pan", index("pan", "ZZZPZ9999Z"), "", readmodel.ErrNotFound},
			{"no index", "pan", "", "", readmodel.ErrNotFound},
			{"an unknown kind", "pan_idx = pan_idx OR true; --", "x", "", domain.ErrInvalid},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := f.reader.CustomerByFiscalIndex(ctx, tc.kind, tc.index)
				if tc.err != nil {
					if !errors.Is(err, tc.err) {
						t.Errorf("got %v (%s), want %v", err, got.ID, tc.err)
					}
					return
				}
				if err != nil || got.ID != f.c[tc.want] {
					t.Errorf("got %s, %v; want %s", f.names([]domain.Customer{got}), err, tc.want)
				}
			})
		}
		if !errors.Is(readmodel.ErrNotFound, domain.ErrNotFound) {
			t.Error("ErrNotFound is not a domain.ErrNotFound")
		}
	})

	t.Run("OpenTenantsOfCustomer", func(t *testing.T) {
		for _, tc := range []struct {
			customer string
			want     []string
		}{
			{f.c["acme"], []string{"acme-1"}},
			{f.c["globex"], []string{"globex-1"}},
			{f.c["priya"], []string{}},
			{"not-a-uuid", []string{}},
		} {
			got, err := f.reader.OpenTenantsOfCustomer(ctx, tc.customer)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, f.tenantNames(got)); diff != "" {
				t.Errorf("customer %s (-want +got):\n%s", tc.customer, diff)
			}
		}
	})

	t.Run("TenantFilter.CustomerID", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			filter readmodel.TenantFilter
			want   []string
		}{
			{"live tenants of a customer", readmodel.TenantFilter{CustomerID: f.c["acme"]}, []string{"acme-1"}},
			{"deleted ones on request", readmodel.TenantFilter{CustomerID: f.c["acme"], States: []string{"deleted"}}, []string{"acme-2"}},
			{"another customer", readmodel.TenantFilter{CustomerID: f.c["globex"]}, []string{"globex-1"}},
			{"with a search", readmodel.TenantFilter{CustomerID: f.c["globex"], Query: "acme"}, []string{}},
			{"a customer without tenants", readmodel.TenantFilter{CustomerID: f.c["priya"]}, []string{}},
			{"no customer filter", readmodel.TenantFilter{}, []string{"acme-1", "globex-1", "loose"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				page, err := f.reader.ListTenants(ctx, tc.filter, readmodel.Page{Size: 50})
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, tn := range page.Items {
					ids = append(ids, tn.ID)
					if tc.filter.CustomerID != "" && tn.CustomerID != tc.filter.CustomerID {
						t.Errorf("tenant %s has customer %q", tn.Slug, tn.CustomerID)
					}
				}
				got := f.tenantNames(ids)
				slices.Sort(got)
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			})
		}
		if _, err := f.reader.ListTenants(ctx, readmodel.TenantFilter{CustomerID: "not-a-uuid"}, readmodel.Page{Size: 50}); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("a customer id that is no uuid: %v, want a validation error", err)
		}
	})
}
