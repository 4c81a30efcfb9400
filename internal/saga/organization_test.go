package saga_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/billing/billingfake"
	"github.com/tenancyhq/tenancy/internal/keycloak"
	"github.com/tenancyhq/tenancy/internal/keycloak/keycloakfake"
	"github.com/tenancyhq/tenancy/internal/realmsync"
	"github.com/tenancyhq/tenancy/internal/run/provisioner"
	"github.com/tenancyhq/tenancy/internal/saga"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// sharedRealm is the shared tenant's slug, so its realm's name.
const sharedRealm = "shared"

// sharedCustomer bootstraps the platform's tenants, waits until the shared
// tenant is active (its realm made), and returns a customer whose tenants
// join the shared realm. The test must have started a provisioner.
func (e *env) sharedCustomer(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	if err := app.Bootstrap(ctx, e.core.Customers, e.core.Tenants, app.BootstrapOptions{AdminEmail: "ops@x.test"}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(t, domain.SharedTenantID, "the shared tenant active", isActive)
	res, err := e.core.Customers.Create(ctx, domain.CreateCustomer{Kind: domain.CustomerBusiness, LegalName: "Acme Holdings Ltd",
		DisplayName: "Acme", RealmMode: domain.RealmShared}, meta())
	if err != nil {
		t.Fatal(err)
	}
	return res.State.ID
}

// activateShared creates a tenant of customer and activates it.
func (e *env) activateShared(t *testing.T, slug, customer, email string) (string, domain.Tenant) {
	t.Helper()
	id := e.createFor(t, slug, customer, email)
	e.do(t, id, domain.RequestActivation{})
	return id, e.waitFor(t, id, "active", isActive)
}

// org returns the shared realm's organization with alias, or fails.
func (e *env) org(t *testing.T, alias string) keycloakfake.Organization {
	t.Helper()
	for _, o := range e.kc.Organizations(sharedRealm) {
		if o.Alias == alias {
			return o
		}
	}
	t.Fatalf("no organization %s in %+v", alias, e.kc.Organizations(sharedRealm))
	return keycloakfake.Organization{}
}

// sharedUser returns the shared realm's user, and whether there is one.
func (e *env) sharedUser(username string) (keycloakfake.User, bool) {
	users := e.kc.Users(sharedRealm)
	i := slices.IndexFunc(users, func(u keycloakfake.User) bool { return u.Username == username })
	if i < 0 {
		return keycloakfake.User{}, false
	}
	return users[i], true
}

func stepNames(st domain.Tenant) []string {
	var names []string
	for _, s := range st.Provisioning.Steps {
		names = append(names, s.Name)
	}
	return names
}

// TestSharedActivationMakesAnOrganization: a tenant placed in the shared
// realm gets an organization there, carrying its id, with its
// administrator as a member, and no realm, client or roles of its own;
// creates whose responses are lost, and the steps run again, change
// nothing.
func TestSharedActivationMakesAnOrganization(t *testing.T) {
	e := setup(t, billingfake.Options{})
	e.provisioner(t)
	customer := e.sharedCustomer(t)
	realmsBefore := e.kc.Creates("realm")
	e.kc.Inject(keycloakfake.Fault{Method: "POST", Path: "/admin/realms/shared/organizations", Times: 1, Status: 502, AfterHandling: true})
	e.kc.Inject(keycloakfake.Fault{Method: "POST", Path: "/admin/realms/shared/organizations/*/members", Times: 1, Drop: true, AfterHandling: true})
	id, st := e.activateShared(t, "acme", customer, "Tech@Acme.test")

	if p := st.Realm; p == nil || p.Mode != domain.RealmShared || p.Realm != sharedRealm || p.Organization != "acme" {
		t.Fatalf("placement: %+v", st.Realm)
	}
	want := []string{saga.StepPolicy, saga.StepOrganization, saga.StepOrgAdmin, saga.StepDirectory, saga.StepBillingAccount}
	if got := stepNames(st); !slices.Equal(got, want) {
		t.Fatalf("steps %v, want %v", got, want)
	}
	if _, ok := e.kc.Realm("acme"); ok || e.kc.Creates("realm") != realmsBefore {
		t.Fatalf("a realm was made for a tenant in the shared realm: %v", e.kc.RealmNames())
	}
	if r, _ := e.kc.Realm(sharedRealm); !r.OrganizationsEnabled {
		t.Fatal("the shared realm does not have organizations enabled")
	}
	o := e.org(t, "acme")
	if !o.Enabled || o.Name != "acme" || o.Description != st.DisplayName || !slices.Equal(o.Attributes[saga.AttrTenantID], []string{id}) {
		t.Fatalf("organization: %+v", o)
	}
	if got := e.kc.OrganizationMembers(sharedRealm, "acme"); !slices.Equal(got, []string{"tech@acme.test"}) {
		t.Fatalf("members: %v", got)
	}
	admin, _ := e.sharedUser("tech@acme.test")
	if !admin.Enabled || !slices.Equal(admin.RequiredActions, []string{"VERIFY_EMAIL", "UPDATE_PASSWORD"}) ||
		!slices.Equal(admin.Attributes[saga.AttrTenantID], []string{id}) || slices.Contains(e.kc.UserRoles(sharedRealm, admin.ID), "admin") {
		t.Fatalf("administrator: %+v, roles %v", admin, e.kc.UserRoles(sharedRealm, admin.ID))
	}
	if e.kc.Creates("organization") != 1 || e.kc.Creates("member") != 1 {
		t.Fatalf("%d organizations and %d memberships made", e.kc.Creates("organization"), e.kc.Creates("member"))
	}
	if s, _ := st.Provisioning.Step(saga.StepOrganization); s.Attempt < 2 {
		t.Fatalf("the lost response was not retried: %+v", s)
	}
	ids := st.Provisioning.ExternalIDs
	if ids["keycloak_organization"] != o.ID || ids["keycloak_realm"] != sharedRealm || ids["keycloak_admin_user"] != admin.ID {
		t.Fatalf("external ids recorded: %v", ids)
	}

	// Each step run twice more, as a retry after a lost response would.
	creates := map[string]int{}
	for _, kind := range []string{"realm", "organization", "member", "user"} {
		creates[kind] = e.kc.Creates(kind)
	}
	for _, step := range saga.NewPlan(e.in)(domain.SagaActivate) {
		if step.Applies != nil && !step.Applies(st) || step.Name == saga.StepBillingAccount {
			continue
		}
		for range 2 {
			out, err := step.Run(context.Background(), st)
			if err != nil || out.Skipped {
				t.Fatalf("step %s again: %+v %v", step.Name, out, err)
			}
		}
	}
	for kind, n := range creates {
		if got := e.kc.Creates(kind); got != n {
			t.Errorf("running the steps again made %d more %s", got-n, kind)
		}
	}
}

// TestSharedLifecycle: suspension disables the organization, reconcile
// disables it again after drift (and makes no realm), resumption enables
// it, and deletion removes it and its administrator, except where that
// administrator serves another tenant too.
func TestSharedLifecycle(t *testing.T) {
	e := setup(t, billingfake.Options{})
	e.provisioner(t)
	customer := e.sharedCustomer(t)
	// A user made while acme is a draft: the directory step syncs it
	// into the shared realm as a member of acme's organization.
	id := e.createFor(t, "acme", customer, "boss@acme.test")
	if _, _, err := e.core.Directory.CreateUser(context.Background(), id, domain.CreateUser{Username: "dev@acme.test",
		Roles: []string{domain.UserRoleTenantViewer}}, meta()); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := e.core.Directory.CreateClient(context.Background(), id, domain.CreateClient{ClientID: "acme-etl", Name: "ETL"}, meta()); err != nil {
		t.Fatal(err)
	}
	e.do(t, id, domain.RequestActivation{})
	e.waitFor(t, id, "active", isActive)
	other, _ := e.activateShared(t, "acme-labs", customer, "Boss@acme.test")
	u, _ := e.sharedUser("boss@acme.test")
	if !slices.Equal(u.Attributes[saga.AttrTenantID], []string{id, other}) || len(u.Attributes[realmsync.AttrGrants]) != 2 {
		t.Fatalf("an administrator of two tenants: %+v", u)
	}
	// The shared realm's tokens name no fixed tenant: they carry grants.
	clients := e.kc.Clients(sharedRealm)
	if !slices.ContainsFunc(clients, func(c keycloakfake.Client) bool { return c.ClientID == saga.AppClientID }) {
		t.Fatalf("the shared realm has no %s: %+v", saga.AppClientID, clients)
	}
	for _, c := range clients {
		if c.ClientID != saga.AppClientID {
			continue
		}
		var names []string
		for _, m := range c.ProtocolMappers {
			names = append(names, m.Name)
		}
		if slices.Sort(names); !slices.Equal(names, []string{"tenancy-grants", "tenancy-memberships", "tenancy-tenant-ids"}) {
			t.Fatalf("the shared realm's %s mappers: %v", saga.AppClientID, names)
		}
	}
	dev, ok := e.sharedUser("dev@acme.test")
	if !ok || !slices.Equal(dev.Attributes[saga.AttrTenantID], []string{id}) || len(e.kc.UserRoles(sharedRealm, dev.ID)) > 1 ||
		!slices.Contains(e.kc.OrganizationMembers(sharedRealm, "acme"), "dev@acme.test") {
		t.Fatalf("acme's user in the shared realm: %+v %v, roles %v", dev, ok, e.kc.UserRoles(sharedRealm, dev.ID))
	}
	// acme's admins control dev's account (they can set its password): it
	// must never become another tenant's administrator.
	grab := e.createFor(t, "grab", customer, "dev@acme.test")
	e.do(t, grab, domain.RequestActivation{})
	failed := e.waitFor(t, grab, "a failed saga", func(t domain.Tenant) bool { return t.Provisioning.Status == domain.SagaFailed })
	if failed.Provisioning.FailedStep != saga.StepOrgAdmin || !strings.Contains(failed.Provisioning.LastError, "another tenant's user") {
		t.Fatalf("failure: step %q, reason %q", failed.Provisioning.FailedStep, failed.Provisioning.LastError)
	}
	if dev, _ = e.sharedUser("dev@acme.test"); !slices.Equal(dev.Attributes[saga.AttrTenantID], []string{id}) ||
		slices.Contains(e.kc.OrganizationMembers(sharedRealm, "grab"), "dev@acme.test") {
		t.Fatalf("dev's account after grab's attempt: %+v", dev)
	}
	e.do(t, grab, domain.CancelActivation{Reason: "administrator refused"})
	e.waitFor(t, grab, "compensated", sagaDone(domain.SagaCancel))
	if _, ok := e.sharedUser("dev@acme.test"); !ok {
		t.Fatal("cancelling grab removed acme's user")
	}

	e.do(t, id, domain.Suspend{Reason: "payment"})
	st := e.waitFor(t, id, "suspended", sagaDone(domain.SagaSuspend))
	if o := e.org(t, "acme"); o.Enabled || !e.org(t, "acme-labs").Enabled {
		t.Fatalf("after suspending acme: acme %+v, acme-labs %+v", o, e.org(t, "acme-labs"))
	}
	// Its client cannot get tokens while it is suspended.
	clientEnabled := func() bool {
		i := slices.IndexFunc(e.kc.Clients(sharedRealm), func(c keycloakfake.Client) bool { return c.ClientID == "acme-etl" })
		if i < 0 {
			t.Fatal("acme's client is not in the shared realm")
		}
		return e.kc.Clients(sharedRealm)[i].Enabled
	}
	if clientEnabled() {
		t.Fatal("a suspended tenant's client is still enabled")
	}
	if got := stepNames(st); !slices.Equal(got, []string{saga.StepOrgDisable, saga.StepBillingPause}) {
		t.Fatalf("suspend steps %v", got)
	}

	e.kc.SetOrganizationEnabled(sharedRealm, "acme", true)
	rec := provisioner.NewReconciler(e.core, e.in, nil)
	repairs, err := rec.Tenant(context.Background(), id)
	if err != nil || len(repairs) != 1 || repairs[0].System != "keycloak" || repairs[0].Found != "enabled" {
		t.Fatalf("repairs: %+v %v", repairs, err)
	}
	if e.org(t, "acme").Enabled {
		t.Fatal("reconcile left the organization enabled")
	}
	if again, err := rec.Tenant(context.Background(), id); len(again) != 0 || err != nil {
		t.Fatalf("a second reconcile: %+v %v", again, err)
	}
	if _, ok := e.kc.Realm("acme"); ok {
		t.Fatal("reconcile made a realm for a tenant in the shared realm")
	}

	e.do(t, id, domain.Resume{})
	e.waitFor(t, id, "resumed", sagaDone(domain.SagaResume))
	if !e.org(t, "acme").Enabled || !clientEnabled() {
		t.Fatal("resume left the organization or its client disabled")
	}

	e.do(t, id, domain.Suspend{Reason: "operator"})
	e.waitFor(t, id, "suspended", sagaDone(domain.SagaSuspend))
	e.do(t, id, domain.Archive{})
	e.waitFor(t, id, "archived", sagaDone(domain.SagaArchive))
	e.do(t, id, domain.Delete{Confirm: "acme"})
	st = e.waitFor(t, id, "deleted", sagaDone(domain.SagaDelete))
	if names := stepNames(st); !slices.Contains(names, saga.StepOrgDelete) || slices.Contains(names, saga.StepRealmDelete) {
		t.Fatalf("delete steps %v", names)
	}
	if got := e.kc.Organizations(sharedRealm); len(got) != 1 || got[0].Alias != "acme-labs" {
		t.Fatalf("organizations after deleting acme: %+v", got)
	}
	u, ok = e.sharedUser("boss@acme.test")
	if !ok || !slices.Equal(u.Attributes[saga.AttrTenantID], []string{other}) ||
		!slices.Equal(e.kc.OrganizationMembers(sharedRealm, "acme-labs"), []string{"boss@acme.test"}) {
		t.Fatalf("the administrator of acme-labs after deleting acme: %+v %v", u, ok)
	}
	if _, ok := st.Provisioning.ExternalIDs["keycloak_organization"]; ok {
		t.Fatalf("external ids after delete: %v", st.Provisioning.ExternalIDs)
	}
	if _, ok := e.sharedUser("dev@acme.test"); ok {
		t.Fatal("acme's user outlived acme in the shared realm")
	}

	e.do(t, other, domain.Suspend{Reason: "operator"})
	e.waitFor(t, other, "suspended", sagaDone(domain.SagaSuspend))
	e.do(t, other, domain.Archive{})
	e.waitFor(t, other, "archived", sagaDone(domain.SagaArchive))
	e.do(t, other, domain.Delete{Confirm: "acme-labs"})
	e.waitFor(t, other, "deleted", sagaDone(domain.SagaDelete))
	if _, ok := e.sharedUser("boss@acme.test"); ok || len(e.kc.Organizations(sharedRealm)) != 0 {
		t.Fatalf("after deleting both: users %+v, organizations %+v", e.kc.Users(sharedRealm), e.kc.Organizations(sharedRealm))
	}
	if _, ok := e.kc.Realm(sharedRealm); !ok {
		t.Fatal("deleting tenants removed the shared realm")
	}
}

// TestSharedForeignOrganization: an organization of the tenant's alias
// that is not the tenant's stops activation for good, with a reason saying
// what to fix; cancelling leaves that organization alone.
func TestSharedForeignOrganization(t *testing.T) {
	e := setup(t, billingfake.Options{})
	e.provisioner(t)
	customer := e.sharedCustomer(t)
	ctx := context.Background()
	kc := e.in.Keycloak
	if err := kc.UpdateRealm(ctx, sharedRealm, keycloak.Realm{OrganizationsEnabled: keycloak.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CreateOrganization(ctx, sharedRealm, keycloak.Organization{Name: "taken", Alias: "taken", Enabled: true,
		Attributes: map[string][]string{saga.AttrTenantID: {"someone-else"}}}); err != nil {
		t.Fatal(err)
	}
	id := e.createFor(t, "taken", customer, "a@taken.test")
	e.do(t, id, domain.RequestActivation{})
	failed := e.waitFor(t, id, "a failed saga", func(t domain.Tenant) bool { return t.Provisioning.Status == domain.SagaFailed })
	if failed.Provisioning.FailedStep != saga.StepOrganization || !strings.Contains(failed.Provisioning.LastError, "remove or rename that organization") {
		t.Fatalf("failure: step %q, reason %q", failed.Provisioning.FailedStep, failed.Provisioning.LastError)
	}
	if st, _ := failed.Provisioning.Step(saga.StepOrganization); st.Attempt != 1 {
		t.Fatalf("a permanent failure was retried: %+v", st)
	}

	e.do(t, id, domain.CancelActivation{Reason: "alias taken"})
	done := e.waitFor(t, id, "compensated", sagaDone(domain.SagaCancel))
	if got := stepNames(done); !slices.Equal(got, []string{saga.StepCompensateOrg, saga.StepBillingRemove}) {
		t.Fatalf("cancel steps %v", got)
	}
	if o := e.org(t, "taken"); !slices.Equal(o.Attributes[saga.AttrTenantID], []string{"someone-else"}) {
		t.Fatalf("cancelling touched the other organization: %+v", o)
	}
	if len(e.kc.Organizations(sharedRealm)) != 1 {
		t.Fatalf("organizations: %+v", e.kc.Organizations(sharedRealm))
	}
}

// TestPlanByPlacement: each saga's steps for a tenant in its own realm and
// for one in the shared realm; a step of the other placement, run anyway,
// does nothing.
func TestPlanByPlacement(t *testing.T) {
	own := domain.Tenant{ID: "t1", Slug: "acme"}
	shared := own
	shared.Realm = &domain.RealmPlacement{Mode: domain.RealmShared, Realm: sharedRealm, Organization: "acme"}
	plan := saga.NewPlan(saga.Integrations{})
	for _, tc := range []struct {
		saga        string
		own, shared []string
	}{
		{domain.SagaActivate, []string{"policy", "realm", "client", "roles", "admin", "break_glass_admin", "directory", "billing_account"},
			[]string{"policy", "organization", "org_admin", "directory", "billing_account"}},
		{domain.SagaSuspend, []string{"realm_disable", "billing_pause"}, []string{"organization_disable", "billing_pause"}},
		{domain.SagaResume, []string{"realm_enable", "billing_resume"}, []string{"organization_enable", "billing_resume"}},
		{domain.SagaArchive, []string{"realm_disable", "billing_close"}, []string{"organization_disable", "billing_close"}},
		{domain.SagaRestore, []string{"billing_pause"}, []string{"billing_pause"}},
		{domain.SagaCancel, []string{"realm_remove", "billing_remove"}, []string{"organization_remove", "billing_remove"}},
		{domain.SagaDelete, []string{"realm_delete", "billing_close", "personal_data_erase"},
			[]string{"organization_delete", "billing_close", "personal_data_erase"}},
	} {
		t.Run(tc.saga, func(t *testing.T) {
			for _, c := range []struct {
				tenant domain.Tenant
				want   []string
			}{{own, tc.own}, {shared, tc.shared}} {
				var got []string
				for _, s := range plan(tc.saga) {
					if s.Applies == nil || s.Applies(c.tenant) {
						got = append(got, s.Name)
						continue
					}
					if out, err := s.Run(context.Background(), c.tenant); err != nil || !out.Skipped {
						t.Errorf("step %s run for a tenant it is not for: %+v %v", s.Name, out, err)
					}
				}
				if !slices.Equal(got, c.want) {
					t.Errorf("placed %v: steps %v, want %v", c.tenant.Realm, got, c.want)
				}
			}
		})
	}
}
