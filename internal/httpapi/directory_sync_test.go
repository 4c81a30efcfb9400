package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/keycloak/keycloakfake"
	"github.com/tenancyhq/tenancy/internal/realmsync"
	"github.com/tenancyhq/tenancy/internal/run/provisioner"
	"github.com/tenancyhq/tenancy/internal/saga"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// kcUser returns the realm user carrying Tenancy user id, waiting up to d
// for cond to hold of it (nil user: absent).
func kcUser(t *testing.T, kf *keycloakfake.Server, realm, id string, d time.Duration, cond func(*keycloakfake.User) bool) *keycloakfake.User {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var found *keycloakfake.User
		n := 0
		for _, u := range kf.Users(realm) {
			if slices.Contains(u.Attributes[realmsync.AttrUserID], id) {
				found = &u
				n++
			}
		}
		if n > 1 {
			t.Fatalf("%d realm users carry Tenancy user %s", n, id)
		}
		if cond(found) {
			return found
		}
		if time.Now().After(deadline) {
			t.Fatalf("realm user of %s did not reach the expected state within %s: %+v", id, d, found)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDirectorySyncsIntoTheRealm: users and clients made before activation
// reach the realm with the activation; later changes follow one by one,
// through Keycloak failures and lost responses, each user and client
// existing exactly once.
func TestDirectorySyncsIntoTheRealm(t *testing.T) {
	kf, kc := newKeycloak(t, 2*time.Second)
	h := newHarness(t, options{provisioner: true, projections: true, integrations: saga.Integrations{Keycloak: kc}})
	id := h.create(t, tenantBody("synced"))["id"].(string)
	base := "/v1/tenants/" + id
	early := h.created(t, base+"/users", map[string]any{"username": "early", "email": "early@synced.test", "roles": []string{"tenant-viewer"}, "attributes": map[string]string{"team": "blue"}})["id"].(string)
	h.do(t, req{method: "POST", path: base + "/activate", token: h.admin})
	h.waitFor(t, id, 15*time.Second, func(m map[string]any) bool { return m["state"] == "active" })

	// The activation adopted its administrators and synced the draft's user.
	users := h.listed(t, base+"/users?role=tenant-admin", h.admin)
	var breakGlass, admin string
	for _, u := range users {
		m := u.(map[string]any)
		if m["break_glass"] == true {
			breakGlass = m["id"].(string)
		} else {
			admin = m["id"].(string)
		}
	}
	if breakGlass == "" || admin == "" {
		t.Fatalf("administrators in the directory: %v", users)
	}
	for _, uid := range []string{admin, breakGlass} {
		u := kcUser(t, kf, "synced", uid, 5*time.Second, func(u *keycloakfake.User) bool { return u != nil })
		if !slices.Contains(kf.UserRoles("synced", u.ID), "tenant-admin") {
			t.Fatalf("administrator %s lacks tenant-admin in the realm: %v", u.Username, kf.UserRoles("synced", u.ID))
		}
	}
	e := kcUser(t, kf, "synced", early, 5*time.Second, func(u *keycloakfake.User) bool { return u != nil })
	if e.Username != "early" || e.Attributes["team"][0] != "blue" || !slices.Contains(kf.UserRoles("synced", e.ID), "tenant-viewer") {
		t.Fatalf("early user in the realm: %+v roles %v", e, kf.UserRoles("synced", e.ID))
	}

	// Later changes follow, through failures and lost responses.
	kf.Inject(keycloakfake.Fault{Method: "POST", Path: "/admin/realms/*/users", Times: 2, Status: 504, AfterHandling: true})
	kf.Inject(keycloakfake.Fault{Method: "PUT", Path: "/admin/realms/*/users/*", Times: 2, Status: 503})
	late := h.created(t, base+"/users", map[string]any{"username": "late", "roles": []string{"tenant-admin"}})["id"].(string)
	kcUser(t, kf, "synced", late, 10*time.Second, func(u *keycloakfake.User) bool { return u != nil })
	kf.Inject(keycloakfake.Fault{Method: "POST", Path: "/admin/realms/*/groups", Times: 1, Status: 504, AfterHandling: true})
	kf.Inject(keycloakfake.Fault{Method: "POST", Path: "/admin/realms/*/groups/*/children", Times: 2, Drop: true, AfterHandling: true})
	ou := h.created(t, base+"/org-units", map[string]any{"name": "Sales"})["id"].(string)
	h.status(t, "PUT", base+"/org-units/"+ou+"/members/"+late, h.admin, map[string]any{"roles": []string{"auditor"}})
	kcUser(t, kf, "synced", late, 10*time.Second, func(u *keycloakfake.User) bool {
		var claim []map[string]any
		return u != nil && len(u.Attributes[realmsync.AttrMemberships]) == 1 && json.Unmarshal([]byte(u.Attributes[realmsync.AttrMemberships][0]), &claim) == nil &&
			len(claim) == 1 && claim[0]["ou"] == ou
	})
	// The unit is a group with a subgroup per role; the member is in the
	// unit's group and its role's.
	waitPaths := func(uid string, want ...string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			u := kcUser(t, kf, "synced", uid, time.Second, func(u *keycloakfake.User) bool { return u != nil })
			got := kf.UserGroupPaths("synced", u.ID)
			if slices.Equal(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("groups of %s: %v, want %v (realm groups %v)", uid, got, want, kf.Groups("synced"))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitPaths(late, "/Sales", "/Sales/auditor")
	paths := map[string]int{}
	for _, g := range kf.Groups("synced") {
		paths[g.Path]++
	}
	for _, p := range []string{"/Sales", "/Sales/admin", "/Sales/default", "/Sales/auditor"} {
		if paths[p] != 1 {
			t.Fatalf("group %s exists %d times despite the lost answers: %v", p, paths[p], paths)
		}
	}
	// A child unit, a move of the member's roles, a rename: paths follow.
	north := h.created(t, base+"/org-units", map[string]any{"name": "North", "parent_id": ou})["id"].(string)
	h.status(t, "PUT", base+"/org-units/"+north+"/members/"+late, h.admin, map[string]any{"roles": []string{"admin", "default"}})
	h.status(t, "PATCH", base+"/org-units/"+ou, h.admin, map[string]any{"name": "Sales EU"})
	waitPaths(late, "/Sales EU", "/Sales EU/North", "/Sales EU/North/admin", "/Sales EU/North/default", "/Sales EU/auditor")
	h.status(t, "DELETE", base+"/org-units/"+north+"/members/"+late, h.admin, nil)
	h.status(t, "DELETE", base+"/org-units/"+north, h.admin, nil)
	waitPaths(late, "/Sales EU", "/Sales EU/auditor")
	h.awaitConsumer(t, realmsync.Consumer)
	for _, g := range kf.Groups("synced") {
		if strings.HasPrefix(g.Path, "/Sales EU/North") {
			t.Fatalf("the deleted unit's group is still there: %v", kf.Groups("synced"))
		}
	}
	h.status(t, "PATCH", base+"/users/"+late, h.admin, map[string]any{"roles": []string{"tenant-viewer"}})
	l := kcUser(t, kf, "synced", late, 10*time.Second, func(u *keycloakfake.User) bool {
		return u != nil && slices.Contains(kf.UserRoles("synced", u.ID), "tenant-viewer") && !slices.Contains(kf.UserRoles("synced", u.ID), "tenant-admin")
	})
	// Without SMTP a tenant admin gives a user a temporary password, shown
	// once; the log records the issue, never the password.
	pw := h.status(t, "POST", base+"/users/"+late+"/temporary-password", h.token(t, tokenFor("tenant-admin", id)), nil)
	if pw.Status != http.StatusOK || pw.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("temporary password: %d %s", pw.Status, pw.Body)
	}
	value, temporary, ok := kf.Password("synced", l.ID)
	if !ok || !temporary || value != pw.json(t)["temporary_password"] {
		t.Fatalf("password in Keycloak: %v %v; answered %s", temporary, ok, pw.Body)
	}
	if strings.Contains(string(h.allEvents(t)), value) {
		t.Fatal("the temporary password is in the log")
	}
	h.status(t, "POST", base+"/users/"+late+"/disable", h.admin, map[string]any{"reason": "left"})
	if r := h.status(t, "POST", base+"/users/"+late+"/temporary-password", h.admin, nil); r.Status != http.StatusConflict {
		t.Fatalf("a disabled user's password: %d %s", r.Status, r.Body)
	}
	// Disabled first (no new sign-ins), then its sessions ended.
	kcUser(t, kf, "synced", late, 10*time.Second, func(u *keycloakfake.User) bool {
		return u != nil && !u.Enabled && kf.UserLogouts("synced", l.ID) >= 1
	})
	h.status(t, "DELETE", base+"/users/"+late, h.admin, nil)
	kcUser(t, kf, "synced", late, 10*time.Second, func(u *keycloakfake.User) bool { return u == nil })

	// A client: confidential, with a service account and the secret shown.
	c := h.created(t, base+"/clients", map[string]any{"client_id": "ci-bot", "name": "CI"})
	secret := c["secret"].(string)
	waitClient := func(cond func(*keycloakfake.Client) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var found *keycloakfake.Client
			for _, cl := range kf.Clients("synced") {
				if cl.ClientID == "ci-bot" {
					found = &cl
				}
			}
			if cond(found) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("client ci-bot: %+v", found)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitClient(func(cl *keycloakfake.Client) bool {
		return cl != nil && cl.Secret == secret && cl.ServiceAccountsEnabled && !cl.PublicClient && !cl.StandardFlowEnabled
	})
	rotated := h.status(t, "POST", base+"/clients/"+c["id"].(string)+"/rotate-secret", h.admin, nil).json(t)["secret"].(string)
	waitClient(func(cl *keycloakfake.Client) bool { return cl != nil && cl.Secret == rotated })
	h.status(t, "DELETE", base+"/clients/"+c["id"].(string), h.admin, nil)
	waitClient(func(cl *keycloakfake.Client) bool { return cl == nil })

	// Drift: the early user disabled and renamed in Keycloak
	// behind Tenancy's back; reconcile repairs it, with an event. First the
	// realm sync must be idle: an event it retried (its tenant was still
	// provisioning) would repair the drift itself.
	ctx := t.Context()
	h.awaitConsumer(t, realmsync.Consumer)
	kcEarly, err := kc.GetUser(ctx, "synced", e.ID)
	if err != nil {
		t.Fatal(err)
	}
	kcEarly.Enabled, kcEarly.FirstName = false, "Mallory"
	if err := kc.UpdateUser(ctx, "synced", kcEarly); err != nil {
		t.Fatal(err)
	}
	rec := provisioner.NewReconciler(h.core, saga.Integrations{Keycloak: kc, Directory: h.core.Directory, ClientSecrets: h.core.ClientSecrets}, nil)
	repairs, err := rec.Tenant(ctx, id)
	if err != nil || len(repairs) != 1 || repairs[0].Resource != "user "+early || repairs[0].Action != "updated" {
		t.Fatalf("repairs: %+v %v", repairs, err)
	}
	kcUser(t, kf, "synced", early, time.Second, func(u *keycloakfake.User) bool { return u != nil && u.Enabled && u.FirstName == "" })
	if again, err := rec.Tenant(ctx, id); err != nil || len(again) != 0 {
		t.Fatalf("a second reconcile: %+v %v", again, err)
	}
}

// awaitConsumer waits until a durable consumer of the log has handled
// every message (none pending, none awaiting an ack or a retry).
func (h *harness) awaitConsumer(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := h.core.JS.Consumer(t.Context(), h.core.Store.Stream(), name)
		if err == nil {
			info, err := c.Info(t.Context())
			if err == nil && info.NumPending == 0 && info.NumAckPending == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer %s is still busy", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestUserMadeDuringActivationReachesTheRealm: a user created while the
// activation syncs the directory (after it read the directory, before the
// tenant is active) reaches the realm without waiting for reconcile.
func TestUserMadeDuringActivationReachesTheRealm(t *testing.T) {
	kf, kc := newKeycloak(t, 10*time.Second)
	h := newHarness(t, options{provisioner: true, integrations: saga.Integrations{Keycloak: kc}})
	id := h.create(t, tenantBody("midway"))["id"].(string)
	base := "/v1/tenants/" + id
	h.created(t, base+"/org-units", map[string]any{"name": "Early"})
	// The directory step makes the unit's group first: held up there, it
	// has read the directory and not yet recorded itself.
	kf.Inject(keycloakfake.Fault{Method: "POST", Path: "/admin/realms/*/groups", Times: 1, Latency: 1500 * time.Millisecond})
	h.do(t, req{method: "POST", path: base + "/activate", token: h.admin})
	h.waitFor(t, id, 15*time.Second, func(m map[string]any) bool {
		for _, s := range m["provisioning"].(map[string]any)["steps"].([]any) {
			if st := s.(map[string]any); st["name"] == saga.StepBreakGlass && st["outcome"] == "completed" {
				return true
			}
		}
		return false
	})
	time.Sleep(300 * time.Millisecond)
	mid := h.created(t, base+"/users", map[string]any{"username": "midway-user", "roles": []string{"tenant-viewer"}})["id"].(string)
	h.waitFor(t, id, 15*time.Second, func(m map[string]any) bool { return m["state"] == "active" })
	kcUser(t, kf, "midway", mid, 10*time.Second, func(u *keycloakfake.User) bool { return u != nil })
}

// TestClientsBecomeServiceAccounts: a tenant's non-browser client is a
// confidential realm client whose service account holds the client's
// tenant roles, and whose tokens name the tenant and are meant for the
// Tenancy API; role changes follow, and the account goes with the client.
func TestClientsBecomeServiceAccounts(t *testing.T) {
	kf, kc := newKeycloak(t, 5*time.Second)
	h := newHarness(t, options{provisioner: true, integrations: saga.Integrations{Keycloak: kc}})
	id := h.create(t, tenantBody("robots"))["id"].(string)
	base := "/v1/tenants/" + id
	h.do(t, req{method: "POST", path: base + "/activate", token: h.admin})
	h.waitFor(t, id, 15*time.Second, func(m map[string]any) bool { return m["state"] == "active" })
	// Lost answers on the create and the first mapper: the retries make no
	// second client or mapper.
	kf.Inject(keycloakfake.Fault{Method: "POST", Path: "/admin/realms/*/clients", Times: 1, Status: 504, AfterHandling: true})
	kf.Inject(keycloakfake.Fault{Method: "POST", Path: "/admin/realms/*/clients/*/protocol-mappers/models", Times: 1, Status: 504, AfterHandling: true})
	cid := h.created(t, base+"/clients", map[string]any{"client_id": "robots-export", "roles": []string{"tenant-viewer"}})["id"].(string)

	roles := func(want ...string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			sa, ok := kf.ServiceAccount("robots", "robots-export")
			var got []string
			for _, r := range kf.UserRoles("robots", sa.ID) {
				if r == "tenant-admin" || r == "tenant-viewer" {
					got = append(got, r)
				}
			}
			if ok && slices.Equal(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("service account %+v (found %v) has tenant roles %v, want %v", sa, ok, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	roles("tenant-viewer")
	var client *keycloakfake.Client
	for _, c := range kf.Clients("robots") {
		if c.ClientID == "robots-export" {
			if client != nil {
				t.Fatal("the client exists twice in the realm")
			}
			client = &c
		}
	}
	if client == nil || !client.ServiceAccountsEnabled || client.PublicClient || client.StandardFlowEnabled {
		t.Fatalf("realm client: %+v", client)
	}
	mappers := map[string]map[string]string{}
	for _, m := range client.ProtocolMappers {
		if _, dup := mappers[m.Name]; dup {
			t.Fatalf("mapper %s twice", m.Name)
		}
		mappers[m.Name] = m.Config
	}
	if mappers["tenancy-tenant-id"]["claim.value"] != id || mappers["tenancy-audience"]["included.client.audience"] != "tenancy-app" {
		t.Fatalf("mappers: %v", mappers)
	}
	if r := h.status(t, "PATCH", base+"/clients/"+cid, h.admin, map[string]any{"roles": []string{"tenant-admin"}}); r.Status != http.StatusOK {
		t.Fatalf("patch: %d %s", r.Status, r.Body)
	}
	roles("tenant-admin")
	// A search by username finds service accounts, so no user may take a
	// name of theirs: the realm sync would take the account for a person.
	if _, found, err := kc.FindUser(context.Background(), "robots", "service-account-robots-export"); err != nil || !found {
		t.Fatalf("a username search did not find the service account: %v %v", found, err)
	}
	if r := h.status(t, "POST", base+"/users", h.admin, map[string]any{"username": "service-account-robots-export"}); r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("a user named like a service account: %d %s", r.Status, r.Body)
	}
	if r := h.status(t, "DELETE", base+"/clients/"+cid, h.admin, nil); r.Status != http.StatusOK {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := kf.ServiceAccount("robots", "robots-export"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the deleted client's service account is still in the realm")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSharedRealmDirectorySync: the users of tenants placed in the shared
// realm become its accounts, members of their tenant's organization and
// carrying their grant; a username another tenant holds is refused (the
// other tenant's users still sync); disabling ends the sessions; and no
// one tenant may set the password of an account that serves another
// tenant too, a refusal that records nothing.
func TestSharedRealmDirectorySync(t *testing.T) {
	kf, kc := newKeycloak(t, 2*time.Second)
	h := newHarness(t, options{provisioner: true, projections: true, customerPolicy: true, bootstrap: true,
		integrations: saga.Integrations{Keycloak: kc}})
	h.waitFor(t, domain.SharedTenantID, 20*time.Second, func(m map[string]any) bool { return m["state"] == "active" })
	body := businessCustomer(t, "Orgco")
	body["realm_mode"] = "shared"
	customer := h.createCustomer(t, body)["id"].(string)
	h.verifyCustomer(t, customer, "completed")
	tenants := map[string]string{}
	for _, slug := range []string{"alpha", "beta"} {
		tb := tenantBody(slug)
		tb["customer_id"] = customer
		// One administrator for both: one account of two tenants.
		tb["contacts"] = []map[string]string{{"role": "technical", "name": "Boss", "email": "boss@orgco.test"}}
		tenants[slug] = h.create(t, tb)["id"].(string)
		h.do(t, req{method: "POST", path: "/v1/tenants/" + tenants[slug] + "/activate", token: h.admin})
		h.waitFor(t, tenants[slug], 20*time.Second, func(m map[string]any) bool { return m["state"] == "active" })
	}
	alpha, beta := "/v1/tenants/"+tenants["alpha"], "/v1/tenants/"+tenants["beta"]

	pat := h.created(t, alpha+"/users", map[string]any{"username": "pat@orgco.test", "roles": []string{"tenant-viewer"}})["id"].(string)
	u := kcUser(t, kf, "shared", pat, 10*time.Second, func(u *keycloakfake.User) bool { return u != nil })
	if len(u.Attributes[realmsync.AttrGrants]) != 1 || !strings.Contains(u.Attributes[realmsync.AttrGrants][0], `"roles":["tenant-viewer"]`) ||
		!slices.Contains(kf.OrganizationMembers("shared", "alpha"), "pat@orgco.test") || slices.Contains(kf.OrganizationMembers("shared", "beta"), "pat@orgco.test") ||
		slices.Contains(kf.UserRoles("shared", u.ID), "tenant-viewer") {
		t.Fatalf("alpha's pat in the shared realm: %+v, roles %v", u, kf.UserRoles("shared", u.ID))
	}
	// Beta's pat is someone else: refused; beta's next user still syncs.
	betaPat := h.created(t, beta+"/users", map[string]any{"username": "pat@orgco.test"})["id"].(string)
	quinn := h.created(t, beta+"/users", map[string]any{"username": "quinn@orgco.test"})["id"].(string)
	kcUser(t, kf, "shared", quinn, 10*time.Second, func(u *keycloakfake.User) bool { return u != nil })
	kcUser(t, kf, "shared", betaPat, time.Millisecond, func(u *keycloakfake.User) bool { return u == nil })
	if u := kcUser(t, kf, "shared", pat, time.Millisecond, func(u *keycloakfake.User) bool { return u != nil }); len(u.Attributes[realmsync.AttrGrants]) != 1 {
		t.Fatalf("beta's pat took alpha's account: %+v", u)
	}

	// A password for alpha's own account; none for the shared administrator's.
	if r := h.status(t, "POST", alpha+"/users/"+pat+"/temporary-password", h.admin, nil); r.Status != http.StatusOK {
		t.Fatalf("password for pat: %d %s", r.Status, r.Body)
	}
	var boss string
	for _, u := range h.listed(t, alpha+"/users?role=tenant-admin", h.admin) {
		boss = u.(map[string]any)["id"].(string)
	}
	kcUser(t, kf, "shared", boss, 10*time.Second, func(u *keycloakfake.User) bool { return u != nil && len(u.Attributes[realmsync.AttrGrants]) == 2 })
	seq := h.lastSeq(t)
	if r := h.status(t, "POST", alpha+"/users/"+boss+"/temporary-password", h.admin, nil); r.Status != http.StatusConflict ||
		!strings.Contains(string(r.Body), "other tenants too") {
		t.Fatalf("password for the administrator of both: %d %s", r.Status, r.Body)
	}
	if after := h.lastSeq(t); after != seq {
		t.Fatalf("the refused password appended %d events", after-seq)
	}

	if r := h.status(t, "POST", alpha+"/users/"+pat+"/disable", h.admin, map[string]any{"reason": "left"}); r.Status != http.StatusOK {
		t.Fatalf("disable pat: %d %s", r.Status, r.Body)
	}
	// Disabled first, then logged out (the other way round, a sign-in in
	// between would survive): wait for both.
	kcUser(t, kf, "shared", pat, 10*time.Second, func(u *keycloakfake.User) bool {
		return u != nil && !u.Enabled && kf.UserLogouts("shared", u.ID) == 1
	})
}
