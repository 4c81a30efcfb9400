package saga_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/backoff"
	"github.com/tenancyhq/tenancy/internal/billing"
	"github.com/tenancyhq/tenancy/internal/billing/billingfake"
	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/keycloak"
	"github.com/tenancyhq/tenancy/internal/keycloak/keycloakfake"
	"github.com/tenancyhq/tenancy/internal/run/boot"
	"github.com/tenancyhq/tenancy/internal/run/provisioner"
	"github.com/tenancyhq/tenancy/internal/saga"
	"github.com/tenancyhq/tenancy/internal/testrig"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

type env struct {
	core *boot.Core
	kc   *keycloakfake.Server
	bill *billingfake.Server
	in   saga.Integrations
}

func setup(t *testing.T, billOpts billingfake.Options) *env {
	t.Helper()
	core := testrig.New(t, testrig.Options{}).Core
	cat := core.Catalog
	kf := keycloakfake.New(keycloakfake.Options{ClientID: "prov", ClientSecret: "secret"})
	t.Cleanup(kf.Close)
	bf := billingfake.New(billOpts)
	t.Cleanup(bf.Close)
	kc, err := keycloak.New(keycloak.Config{URL: kf.URL(), Realm: "master", ClientID: "prov", ClientSecret: "secret", HTTPClient: &http.Client{Timeout: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	token := billOpts.Token
	if token == "" {
		token = billingfake.DefaultToken
	}
	bc, err := billing.New(billing.Config{URL: bf.URL(), Token: token, HTTPClient: &http.Client{Timeout: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	in := saga.Integrations{Keycloak: kc, Billing: bc, Keys: core.Keyring, Catalog: cat, Directory: core.Directory, ClientSecrets: core.ClientSecrets}
	return &env{core: core, kc: kf, bill: bf, in: in}
}

// provisioner runs a provisioner until stop is called or the test ends.
func (e *env) provisioner(t *testing.T) (stop func()) {
	t.Helper()
	p, err := provisioner.New(context.Background(), e.core, provisioner.Options{
		Integrations: e.in, Backoff: saga.Backoff{Attempts: 4, Pause: backoff.Policy{Base: 5 * time.Millisecond, Max: 50 * time.Millisecond}}, RetryDelay: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return testrig.Run(t, p.Run)
}

func meta() command.Meta { return command.Meta{Actor: "op"} }

func (e *env) create(t *testing.T, slug string) string {
	t.Helper()
	return e.createFor(t, slug, "", "Tech@"+slug+".test")
}

// createFor creates a draft tenant of customer (none if "") whose
// technical contact, its first administrator, has this email address.
func (e *env) createFor(t *testing.T, slug, customer, email string) string {
	t.Helper()
	res, err := e.core.Tenants.Create(context.Background(), domain.CreateTenant{
		Slug: slug, DisplayName: "Tenant " + slug, Plan: "standard", Isolation: "shared", CustomerID: customer,
		Regions:  domain.Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"},
		Contacts: []events.Contact{{Role: "technical", Name: "Tech Person", Email: email}},
	}, meta())
	if err != nil {
		t.Fatal(err)
	}
	return res.State.ID
}

func (e *env) do(t *testing.T, id string, cmd domain.TenantCommand) {
	t.Helper()
	if _, err := e.core.Tenants.Do(context.Background(), id, cmd, meta()); err != nil {
		t.Fatalf("%s: %v", cmd.Action(), err)
	}
}

func (e *env) waitFor(t *testing.T, id, what string, cond func(domain.Tenant) bool) domain.Tenant {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, _, err := e.core.Tenants.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("tenant never got %s: state %s, saga %s %s, steps %+v, last error %q", what, st.State, st.Provisioning.Saga, st.Provisioning.Status, st.Provisioning.Steps, st.Provisioning.LastError)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func isActive(t domain.Tenant) bool { return t.State == domain.StateActive }

// activate creates a tenant, requests its activation and waits until it is
// active (the test must have started a provisioner).
func (e *env) activate(t *testing.T, slug string) (string, domain.Tenant) {
	t.Helper()
	id := e.create(t, slug)
	e.do(t, id, domain.RequestActivation{})
	return id, e.waitFor(t, id, "active", isActive)
}

// checkCreatedOnce asserts that each kind of object was created exactly
// once (three roles, two users), however often a step ran; when says in
// which circumstances, for the failure message.
func (e *env) checkCreatedOnce(t *testing.T, when string) {
	t.Helper()
	for kind, want := range map[string]int{"realm": 1, "client": 1, "role": 2, "user": 2} {
		if got := e.kc.Creates(kind); got != want {
			t.Errorf("%d %s creates %s, want %d", got, kind, when, want)
		}
	}
	if e.bill.Creates() != 1 {
		t.Errorf("%d billing accounts created %s", e.bill.Creates(), when)
	}
}

func sagaDone(saga string) func(domain.Tenant) bool {
	return func(t domain.Tenant) bool {
		return t.Provisioning.Saga == saga && t.Provisioning.Status == domain.SagaCompleted
	}
}

// checkProvisioned asserts the tenant has exactly one of everything.
func (e *env) checkProvisioned(t *testing.T, st domain.Tenant) {
	t.Helper()
	realm, ok := e.kc.Realm(st.Slug)
	if !ok || !realm.Enabled || realm.Attributes[saga.AttrTenantID] != st.ID {
		t.Fatalf("realm %s: %+v %v", st.Slug, realm, ok)
	}
	clients := e.kc.Clients(st.Slug)
	var app *keycloakfake.Client
	for i := range clients {
		if clients[i].ClientID == saga.AppClientID {
			app = &clients[i]
		}
	}
	if app == nil {
		t.Fatalf("no %s client in %v", saga.AppClientID, clients)
	}
	claims := map[string]string{}
	for _, m := range app.ProtocolMappers {
		claims[m.Config["claim.name"]] = m.Config["claim.value"]
	}
	if claims["tenant_id"] != st.ID || claims["tenant_slug"] != st.Slug || claims["plan"] != st.Plan || !strings.Contains(claims["features"], "sso-oidc") {
		t.Fatalf("token claims: %v", claims)
	}
	var roles []string
	for _, r := range e.kc.Roles(st.Slug) {
		roles = append(roles, r.Name)
	}
	for _, want := range []string{"tenant-admin", "tenant-viewer"} {
		if !slices.Contains(roles, want) {
			t.Fatalf("roles %v lack %s", roles, want)
		}
	}
	users := e.kc.Users(st.Slug)
	if len(users) != 2 {
		t.Fatalf("users: %+v", users)
	}
	for _, u := range users {
		if got := e.kc.UserRoles(st.Slug, u.ID); !slices.Contains(got, "tenant-admin") {
			t.Fatalf("user %s has roles %v", u.Username, got)
		}
		switch u.Username {
		case "tech@" + st.Slug + ".test":
			if !slices.Equal(u.RequiredActions, []string{"VERIFY_EMAIL", "UPDATE_PASSWORD"}) || !u.Enabled {
				t.Fatalf("admin: %+v", u)
			}
		case saga.BreakGlassUsername:
		default:
			t.Fatalf("unexpected user %s", u.Username)
		}
	}
	e.checkMarks(t, st)
	acct, ok := e.bill.Account(st.ID)
	if !ok || acct.Plan != st.Plan || acct.Status != "active" {
		t.Fatalf("billing account: %+v %v", acct, ok)
	}
	if st.Provisioning.ExternalIDs["billing_account"] != acct.AccountID || st.Provisioning.ExternalIDs["keycloak_client"] != app.ID {
		t.Fatalf("external ids recorded: %v", st.Provisioning.ExternalIDs)
	}
}

func TestActivationProvisionsEverythingOnce(t *testing.T) {
	e := setup(t, billingfake.Options{})
	e.provisioner(t)
	_, st := e.activate(t, "acme")
	e.checkProvisioned(t, st)
	e.checkCreatedOnce(t, "on a clean run")
	var names []string
	for _, s := range st.Provisioning.Steps {
		if s.Outcome != events.StepCompleted || s.FinishedAt.Before(s.StartedAt) {
			t.Errorf("step %+v", s)
		}
		names = append(names, s.Name)
	}
	want := []string{saga.StepPolicy, saga.StepRealm, saga.StepClient, saga.StepRoles, saga.StepAdmin, saga.StepBreakGlass, saga.StepDirectory, saga.StepBillingAccount}
	if !slices.Equal(names, want) {
		t.Fatalf("steps %v, want %v", names, want)
	}
}

// TestFaultsAndLostResponses: every step fails transiently several times,
// some creates succeed but lose their response (the retry meets a 409),
// and Keycloak asks for patience with 429s; the saga still ends with one of
// everything.
func TestFaultsAndLostResponses(t *testing.T) {
	e := setup(t, billingfake.Options{})
	e.kc.Inject(keycloakfake.Fault{Path: "/realms/master/protocol/openid-connect/token", Times: 2, Status: 503})
	e.kc.Inject(keycloakfake.Fault{Method: "POST", Path: "/admin/realms", Times: 1, Status: 502, AfterHandling: true})
	e.kc.Inject(keycloakfake.Fault{Method: "GET", Path: "/admin/realms/*", Times: 3, Status: 500})
	e.kc.Inject(keycloakfake.Fault{Method: "POST", Path: "/admin/realms/*/clients", Times: 1, Drop: true, AfterHandling: true})
	e.kc.Inject(keycloakfake.Fault{Method: "POST", Path: "/admin/realms/*/roles", Times: 2, Status: 429, RetryAfter: time.Second})
	e.kc.Inject(keycloakfake.Fault{Method: "POST", Path: "/admin/realms/*/users", Times: 2, Status: 504, AfterHandling: true})
	e.kc.Inject(keycloakfake.Fault{Latency: 20 * time.Millisecond, Times: 10})
	e.bill.Inject(billingfake.Fault{Method: "POST", Path: "/v1/accounts", Times: 1, Drop: true, AfterHandling: true})
	e.bill.Inject(billingfake.Fault{Method: "GET", Times: 3, Status: 503, RetryAfter: time.Second})
	e.provisioner(t)
	_, st := e.activate(t, "flaky")
	e.checkProvisioned(t, st)
	e.checkCreatedOnce(t, "despite the faults (a retry duplicated something)")
	retried := 0
	for _, s := range st.Provisioning.Steps {
		if s.Attempt > 1 {
			retried++
		}
	}
	if retried < 3 {
		t.Fatalf("only %d steps record more than one attempt: %+v", retried, st.Provisioning.Steps)
	}
}

// TestCrashBetweenSteps stops the provisioner in the middle of a saga and
// starts another: it resumes from the last recorded step and duplicates
// nothing.
func TestCrashBetweenSteps(t *testing.T) {
	for _, at := range []string{"/roles", "/users", "/v1/accounts"} {
		t.Run(at, func(t *testing.T) {
			e := setup(t, billingfake.Options{})
			stop := e.provisioner(t)
			var once sync.Once
			crashed := make(chan struct{})
			hook := func(r *http.Request) {
				if r.Method == "POST" && strings.HasSuffix(r.URL.Path, at) {
					once.Do(func() { close(crashed) })
				}
			}
			e.kc.SetHook(hook)
			e.bill.SetHook(hook)
			id := e.create(t, "crashy")
			e.do(t, id, domain.RequestActivation{})
			<-crashed
			stop()
			e.kc.SetHook(nil)
			e.bill.SetHook(nil)
			mid, _, _ := e.core.Tenants.Get(context.Background(), id)
			if mid.State == domain.StateActive {
				t.Fatalf("the saga finished before the crash at %s", at)
			}
			e.provisioner(t)
			st := e.waitFor(t, id, "active after the restart", isActive)
			e.checkProvisioned(t, st)
			e.checkCreatedOnce(t, "after resuming")
		})
	}
}

// TestPermanentFailureRetryAndCancel: a realm of the tenant's name that is
// not the tenant's stops the saga with a reason saying what to fix; once
// fixed, retry completes. A second tenant cancelled after a failure leaves
// nothing behind.
func TestPermanentFailureRetryAndCancel(t *testing.T) {
	e := setup(t, billingfake.Options{})
	ctx := context.Background()
	if err := e.in.Keycloak.CreateRealm(ctx, keycloak.Realm{Realm: "taken", Enabled: keycloak.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	e.provisioner(t)
	id := e.create(t, "taken")
	e.do(t, id, domain.RequestActivation{})
	failed := e.waitFor(t, id, "a failed saga", func(t domain.Tenant) bool { return t.Provisioning.Status == domain.SagaFailed })
	if failed.Provisioning.FailedStep != saga.StepRealm || !strings.Contains(failed.Provisioning.LastError, "remove or rename that realm") {
		t.Fatalf("failure: step %q, reason %q", failed.Provisioning.FailedStep, failed.Provisioning.LastError)
	}
	if err := e.in.Keycloak.DeleteRealm(ctx, "taken"); err != nil {
		t.Fatal(err)
	}
	e.do(t, id, domain.RetrySaga{})
	st := e.waitFor(t, id, "active after the retry", isActive)
	e.checkProvisioned(t, st)

	// Billing refuses for good; cancelling compensates everything created.
	e.bill.Inject(billingfake.Fault{Method: "POST", Path: "/v1/accounts", Status: 422})
	other := e.create(t, "undone")
	e.do(t, other, domain.RequestActivation{})
	f2 := e.waitFor(t, other, "a failed saga", func(t domain.Tenant) bool { return t.Provisioning.Status == domain.SagaFailed })
	if f2.Provisioning.FailedStep != saga.StepBillingAccount || !strings.Contains(f2.Provisioning.LastError, "billing refused") {
		t.Fatalf("billing failure: %q %q", f2.Provisioning.FailedStep, f2.Provisioning.LastError)
	}
	if _, ok := e.kc.Realm("undone"); !ok {
		t.Fatal("the realm should exist before compensation")
	}
	e.do(t, other, domain.CancelActivation{Reason: "billing refuses"})
	done := e.waitFor(t, other, "compensated", sagaDone(domain.SagaCancel))
	if _, ok := e.kc.Realm("undone"); ok {
		t.Fatal("cancel-activation left the realm behind")
	}
	if _, ok := e.bill.Account(other); ok {
		t.Fatal("cancel-activation left a billing account behind")
	}
	if done.State != domain.StateDraft {
		t.Fatalf("state after cancel: %s", done.State)
	}
}

// TestSuspendResumeAndDrift: suspension disables the realm (sessions
// ended) and pauses billing; a realm re-enabled behind Tenancy's back is
// disabled again by reconcile, which records the repair.
func TestSuspendResumeAndDrift(t *testing.T) {
	e := setup(t, billingfake.Options{})
	e.provisioner(t)
	id, _ := e.activate(t, "drifty")
	e.do(t, id, domain.Suspend{Reason: "payment"})
	st := e.waitFor(t, id, "suspended", sagaDone(domain.SagaSuspend))
	if r, _ := e.kc.Realm("drifty"); r.Enabled || e.kc.LogoutAlls("drifty") == 0 {
		t.Fatalf("suspended realm: %+v, logout-all %d", r, e.kc.LogoutAlls("drifty"))
	}
	if a, _ := e.bill.Account(id); a.Status != "paused" {
		t.Fatalf("billing after suspend: %s", a.Status)
	}

	e.kc.SetRealmEnabled("drifty", true)
	e.bill.SetStatus(id, "active")
	rec := provisioner.NewReconciler(e.core, e.in, nil)
	repairs, err := rec.Tenant(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(repairs) != 2 {
		t.Fatalf("repairs: %+v", repairs)
	}
	if r, _ := e.kc.Realm("drifty"); r.Enabled {
		t.Fatal("reconcile left the realm enabled")
	}
	if a, _ := e.bill.Account(id); a.Status != "paused" {
		t.Fatalf("reconcile left billing %s", a.Status)
	}
	after, _, _ := e.core.Tenants.Get(context.Background(), id)
	if after.Provisioning.Repairs != 2 || after.Version != st.Version+2 {
		t.Fatalf("repairs recorded: %d, version %d -> %d", after.Provisioning.Repairs, st.Version, after.Version)
	}
	if again, _ := rec.Tenant(context.Background(), id); len(again) != 0 {
		t.Fatalf("a second reconcile found drift again: %+v", again)
	}

	e.do(t, id, domain.Resume{})
	e.waitFor(t, id, "resumed", sagaDone(domain.SagaResume))
	if r, _ := e.kc.Realm("drifty"); !r.Enabled {
		t.Fatal("resume left the realm disabled")
	}
	if a, _ := e.bill.Account(id); a.Status != "active" {
		t.Fatalf("billing after resume: %s", a.Status)
	}
}

// TestPlanChangeReachesClaimsAndBilling: a plan change on an active tenant
// is reconciled at once into the realm's token claims and the billing plan.
func TestPlanChangeReachesClaimsAndBilling(t *testing.T) {
	e := setup(t, billingfake.Options{})
	e.provisioner(t)
	id, _ := e.activate(t, "upgrade")
	plan := "enterprise"
	e.do(t, id, domain.UpdateTenant{Plan: &plan})
	st := e.waitFor(t, id, "the plan propagated", func(t domain.Tenant) bool { return t.Provisioning.Repairs >= 2 })
	if a, _ := e.bill.Account(id); a.Plan != "enterprise" {
		t.Fatalf("billing plan %s", a.Plan)
	}
	e.checkProvisioned(t, st)
}

func TestArchiveAndDelete(t *testing.T) {
	e := setup(t, billingfake.Options{})
	e.provisioner(t)
	id, _ := e.activate(t, "gone")
	e.do(t, id, domain.Suspend{Reason: "operator"})
	e.do(t, id, domain.Archive{})
	e.waitFor(t, id, "archived", sagaDone(domain.SagaArchive))
	if a, _ := e.bill.Account(id); a.Status != "closed" {
		t.Fatalf("billing after archive: %s", a.Status)
	}
	e.do(t, id, domain.Delete{Confirm: "gone"})
	st := e.waitFor(t, id, "deleted", sagaDone(domain.SagaDelete))
	if _, ok := e.kc.Realm("gone"); ok {
		t.Fatal("delete left the realm")
	}
	if !st.PIIErased {
		t.Fatal("delete kept personal data")
	}
	if _, err := e.core.Keyring.Open(id, "v1.AAAA"); !errors.Is(err, events.ErrErased) {
		t.Fatalf("the tenant's key survives deletion: %v", err)
	}
}

func TestUnconfiguredIntegrationsAreSkippedWithReason(t *testing.T) {
	e := setup(t, billingfake.Options{})
	e.in = saga.Integrations{Keys: e.core.Keyring}
	e.provisioner(t)
	_, st := e.activate(t, "bare")
	for _, s := range st.Provisioning.Steps {
		if s.Name == saga.StepPolicy {
			continue
		}
		if s.Name == saga.StepDirectory {
			// The directory is the log's own: the administrators are adopted,
			// the realm sync is what is skipped.
			if s.Outcome != events.StepCompleted || !strings.Contains(s.Detail, "realm sync skipped: no identity provider") {
				t.Fatalf("step %s: %s %q", s.Name, s.Outcome, s.Detail)
			}
			continue
		}
		if s.Outcome != events.StepSkipped || !strings.Contains(s.Detail, "not") && !strings.Contains(s.Detail, "unset") {
			t.Fatalf("step %s: %s %q", s.Name, s.Outcome, s.Detail)
		}
	}
	if len(e.kc.RealmNames()) != 1 || e.bill.Creates() != 0 {
		t.Fatal("an unconfigured integration was called")
	}
	_ = fmt.Sprint
}
