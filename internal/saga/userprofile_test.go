package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tenancyhq/tenancy/internal/billing/billingfake"
	"github.com/tenancyhq/tenancy/internal/keycloak/keycloakfake"
	"github.com/tenancyhq/tenancy/internal/realmsync"
	"github.com/tenancyhq/tenancy/internal/run/provisioner"
	"github.com/tenancyhq/tenancy/internal/saga"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// multivalued maps each attribute Tenancy writes on users to whether it
// is declared multivalued; all are declared for administrators only.
var multivalued = map[string]bool{saga.AttrTenantID: true, saga.AttrBreakGlass: false, realmsync.AttrUserID: true, realmsync.AttrMemberships: false,
	realmsync.AttrGrants: true}

// checkDeclared asserts that the realm's user profile declares every
// attribute Tenancy writes, for administrators only, and still declares
// Keycloak's own.
func (e *env) checkDeclared(t *testing.T, realm string) {
	t.Helper()
	p, _ := e.kc.UserProfile(realm)
	var names []string
	for _, a := range p.Attributes {
		names = append(names, a.Name)
		want, ours := multivalued[a.Name]
		if !ours {
			continue
		}
		if a.Permissions == nil || !slices.Equal(a.Permissions.View, []string{"admin"}) || !slices.Equal(a.Permissions.Edit, []string{"admin"}) ||
			a.Multivalued != want {
			t.Errorf("realm %s declares %s as %+v (permissions %+v)", realm, a.Name, a, a.Permissions)
		}
	}
	for _, want := range []string{"username", "email", "firstName", "lastName", saga.AttrTenantID, saga.AttrBreakGlass, realmsync.AttrUserID, realmsync.AttrMemberships, realmsync.AttrGrants} {
		if !slices.Contains(names, want) {
			t.Errorf("realm %s's user profile lacks %s: %v", realm, want, names)
		}
	}
}

// checkMarked asserts that the user of realm carries exactly want, both
// as the Admin API shows it and as stored.
func (e *env) checkMarked(t *testing.T, realm, username string, want map[string][]string) {
	t.Helper()
	u, ok, err := e.in.Keycloak.FindUser(context.Background(), realm, username)
	if err != nil || !ok {
		t.Fatalf("user %s of realm %s: %v %v", username, realm, ok, err)
	}
	if diff := cmp.Diff(want, u.Attributes); diff != "" {
		t.Errorf("user %s of realm %s as Keycloak shows it (-want +got):\n%s", username, realm, diff)
	}
	i := slices.IndexFunc(e.kc.Users(realm), func(s keycloakfake.User) bool { return s.ID == u.ID })
	if diff := cmp.Diff(want, e.kc.Users(realm)[i].Attributes); diff != "" {
		t.Errorf("user %s of realm %s as stored (-want +got):\n%s", username, realm, diff)
	}
}

// checkMarks asserts that the tenant's realm declares Tenancy's attributes
// and that its administrator and break-glass administrator carry them.
func (e *env) checkMarks(t *testing.T, st domain.Tenant) {
	t.Helper()
	e.checkDeclared(t, st.Slug)
	e.checkMarked(t, st.Slug, "tech@"+st.Slug+".test", map[string][]string{saga.AttrTenantID: {st.ID},
		realmsync.AttrUserID: {saga.AdoptedUserID(st, "admin")}, realmsync.AttrMemberships: {"[]"}})
	e.checkMarked(t, st.Slug, saga.BreakGlassUsername, map[string][]string{saga.AttrTenantID: {st.ID}, saga.AttrBreakGlass: {"true"},
		realmsync.AttrUserID: {saga.AdoptedUserID(st, "break-glass")}, realmsync.AttrMemberships: {"[]"}})
}

// undeclare removes Tenancy's declarations from the realm's user profile
// behind the API's back, as an operator editing it by hand, or a realm
// made before they existed, would have it.
func (e *env) undeclare(t *testing.T, realm string) {
	t.Helper()
	p, ok := e.kc.UserProfile(realm)
	if !ok {
		t.Fatalf("no realm %s", realm)
	}
	p.Attributes = slices.DeleteFunc(p.Attributes, func(a keycloakfake.ProfileAttribute) bool { _, ours := multivalued[a.Name]; return ours })
	// As Keycloak's default profile: no unmanaged attribute policy either.
	p.UnmanagedAttributePolicy = ""
	e.kc.SetUserProfile(realm, p)
}

// unmark removes every attribute of the user of realm, through the API
// while they are still declared, as a Keycloak that dropped them at
// creation would have left it.
func (e *env) unmark(t *testing.T, realm, username string) {
	t.Helper()
	ctx := context.Background()
	u, _, err := e.in.Keycloak.FindUser(ctx, realm, username)
	if err == nil {
		u.Attributes = nil
		err = e.in.Keycloak.UpdateUser(ctx, realm, u)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// writes counts the user profile and user updates Keycloak receives.
type writes struct {
	mu             sync.Mutex
	profile, users int
}

func (w *writes) hook(r *http.Request) {
	if r.Method != http.MethodPut {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/"); {
	case len(segs) == 5 && segs[3] == "users" && segs[4] == "profile":
		w.profile++
	case len(segs) == 5 && segs[3] == "users":
		w.users++
	}
}

func (w *writes) counts() (profile, users int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.profile, w.users
}

// TestActivationDeclaresBeforeWriting: the realm step declares Tenancy's
// attributes in the new realm's user profile, so the administrators are
// created carrying them, with no update after; the steps run again change
// nothing. Against a Keycloak that drops undeclared attributes, the users
// would otherwise lack them.
func TestActivationDeclaresBeforeWriting(t *testing.T) {
	e := setup(t, billingfake.Options{})
	w := &writes{}
	e.kc.SetHook(w.hook)
	e.provisioner(t)
	_, st := e.activate(t, "marked")
	e.checkMarks(t, st)
	if profile, users := w.counts(); profile != 1 || users != 0 {
		t.Fatalf("%d user profile updates and %d user updates; want the profile declared once, before the users were created", profile, users)
	}
	if s, _ := st.Provisioning.Step(saga.StepRealm); !strings.Contains(s.Detail, "declared tenancy.tenant_id, tenancy.break_glass, tenancy.user_id, tenancy.memberships, tenancy.grants, unmanagedAttributePolicy in its user profile") {
		t.Fatalf("realm step detail %q", s.Detail)
	}

	for _, step := range saga.NewPlan(e.in)(domain.SagaActivate) {
		if step.Applies != nil && !step.Applies(st) || step.Name == saga.StepBillingAccount {
			continue
		}
		for range 2 {
			if out, err := step.Run(context.Background(), st); err != nil || out.Skipped {
				t.Fatalf("step %s again: %+v %v", step.Name, out, err)
			}
		}
	}
	if profile, users := w.counts(); profile != 1 || users != 0 {
		t.Fatalf("running the steps again wrote the profile %d and users %d more times", profile-1, users)
	}
	e.checkMarks(t, st)
	e.checkCreatedOnce(t, "after running the steps again")
}

// TestAdminStepsMarkExistingUsers: users made before their realm declared
// Tenancy's attributes (a saga resumed across an upgrade) are marked by
// the administrator steps, which declare the attributes first.
func TestAdminStepsMarkExistingUsers(t *testing.T) {
	e := setup(t, billingfake.Options{})
	e.provisioner(t)
	_, st := e.activate(t, "upgraded")
	e.unmark(t, st.Slug, "tech@upgraded.test")
	e.unmark(t, st.Slug, saga.BreakGlassUsername)
	e.undeclare(t, st.Slug)
	for _, step := range saga.NewPlan(e.in)(domain.SagaActivate) {
		if step.Name == saga.StepAdmin || step.Name == saga.StepBreakGlass {
			if _, err := step.Run(context.Background(), st); err != nil {
				t.Fatalf("step %s: %v", step.Name, err)
			}
		}
	}
	e.checkMarks(t, st)
}

// TestLostMarksArePermanentFailures: a Keycloak that keeps dropping the
// attributes after they are declared (here: the declarations vanish just
// before each user update) fails the step for good, with a reason that
// says what to fix and does not repeat the username, an email address.
func TestLostMarksArePermanentFailures(t *testing.T) {
	e := setup(t, billingfake.Options{})
	e.provisioner(t)
	_, st := e.activate(t, "leaky")
	e.unmark(t, st.Slug, "tech@leaky.test")
	e.kc.SetHook(func(r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/users/") && !strings.HasSuffix(r.URL.Path, "/profile") {
			e.undeclare(t, st.Slug)
		}
	})
	var admin saga.Step
	for _, step := range saga.NewPlan(e.in)(domain.SagaActivate) {
		if step.Name == saga.StepAdmin {
			admin = step
		}
	}
	_, err := admin.Run(context.Background(), st)
	var perm *saga.PermanentError
	if !errors.As(err, &perm) || !strings.Contains(perm.Reason, "did not keep the attributes tenancy.memberships, tenancy.tenant_id, tenancy.user_id") || strings.Contains(perm.Reason, "tech@") {
		t.Fatalf("admin step with the marks dropped: %v", err)
	}
}

// TestReconcileRepairsUserAttributes: a realm whose user profile lost
// Tenancy's declarations, or lets users edit them, is repaired by
// reconcile, as are administrators that lost their marks; a second pass
// finds nothing.
func TestReconcileRepairsUserAttributes(t *testing.T) {
	e := setup(t, billingfake.Options{})
	e.provisioner(t)
	rec := provisioner.NewReconciler(e.core, e.in, nil)
	for _, tc := range []struct {
		slug    string
		drift   func(st domain.Tenant)
		repairs []string // the resources repaired, in order
	}{
		{"undeclared", func(st domain.Tenant) { e.undeclare(t, st.Slug) }, []string{"realm undeclared user profile"}},
		{"user-editable", func(st domain.Tenant) {
			p, _ := e.kc.UserProfile(st.Slug)
			for _, a := range p.Attributes {
				if a.Name == saga.AttrTenantID {
					a.Permissions.Edit = append(a.Permissions.Edit, "user")
				}
			}
			e.kc.SetUserProfile(st.Slug, p)
		}, []string{"realm user-editable user profile"}},
		{"unmarked", func(st domain.Tenant) {
			e.unmark(t, st.Slug, "tech@unmarked.test")
			e.unmark(t, st.Slug, saga.BreakGlassUsername)
			e.undeclare(t, st.Slug)
		}, []string{"realm unmarked user profile", "administrator", "break-glass administrator"}},
	} {
		t.Run(tc.slug, func(t *testing.T) {
			id, st := e.activate(t, tc.slug)
			tc.drift(st)
			repairs, err := rec.Tenant(context.Background(), id)
			if err != nil || len(repairs) != len(tc.repairs) {
				t.Fatalf("repairs: %+v %v", repairs, err)
			}
			for i, want := range tc.repairs {
				if !strings.HasPrefix(repairs[i].Resource, want) || repairs[i].System != "keycloak" {
					t.Errorf("repair %d: %+v, want one of %q", i, repairs[i], want)
				}
			}
			e.checkMarks(t, st)
			if again, err := rec.Tenant(context.Background(), id); len(again) != 0 || err != nil {
				t.Fatalf("a second reconcile: %+v %v", again, err)
			}
			if after, _, _ := e.core.Tenants.Get(context.Background(), id); after.Provisioning.Repairs != len(tc.repairs) {
				t.Fatalf("%d repairs recorded", after.Provisioning.Repairs)
			}
		})
	}
}

// TestSharedRealmDeclarations: a shared realm whose profile predates the
// declarations gets them from the organization step, so the tenant's
// administrator carries its mark; reconcile repairs them there too.
func TestSharedRealmDeclarations(t *testing.T) {
	e := setup(t, billingfake.Options{})
	e.provisioner(t)
	customer := e.sharedCustomer(t)
	e.undeclare(t, sharedRealm)
	id, st := e.activateShared(t, "acme", customer, "Tech@Acme.test")
	if s, _ := st.Provisioning.Step(saga.StepOrganization); !strings.Contains(s.Detail, "declared tenancy.tenant_id, tenancy.break_glass, tenancy.user_id, tenancy.memberships, tenancy.grants, unmanagedAttributePolicy in the user profile of realm shared") {
		t.Fatalf("organization step detail %q", s.Detail)
	}
	e.checkDeclared(t, sharedRealm)
	// The directory step adopted the administrator: the account carries
	// its grant in the tenant too.
	admin := saga.AdoptedUserID(st, "admin")
	grant, _ := json.Marshal(domain.Grant{TenantID: id, Organization: "acme", UserID: admin, Enabled: true,
		Roles: []string{domain.UserRoleTenantAdmin}, Memberships: []domain.GrantMembership{}})
	marks := map[string][]string{saga.AttrTenantID: {id}, realmsync.AttrUserID: {admin}, realmsync.AttrGrants: {string(grant)}}
	e.checkMarked(t, sharedRealm, "tech@acme.test", marks)

	e.undeclare(t, sharedRealm)
	repairs, err := provisioner.NewReconciler(e.core, e.in, nil).Tenant(context.Background(), id)
	if err != nil || len(repairs) != 1 || repairs[0].Resource != "realm shared user profile" {
		t.Fatalf("repairs: %+v %v", repairs, err)
	}
	e.checkDeclared(t, sharedRealm)
	e.checkMarked(t, sharedRealm, "tech@acme.test", marks)
}
