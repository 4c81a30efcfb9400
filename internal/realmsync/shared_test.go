package realmsync_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/tenancyhq/tenancy/internal/keycloak"
	"github.com/tenancyhq/tenancy/internal/keycloak/keycloakfake"
	"github.com/tenancyhq/tenancy/internal/realmsync"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

const (
	tenantA = "0195f1c2-7d4e-7a10-8c3b-00000000000a"
	tenantB = "0195f1c2-7d4e-7a10-8c3b-00000000000b"
)

var (
	orgA = realmsync.Realm{Name: "shared", Organization: "org-a"}
	orgB = realmsync.Realm{Name: "shared", Organization: "org-b"}
)

// sharedRealm makes the shared realm with the organizations of tenants A
// and B.
func sharedRealm(t *testing.T, kc *keycloak.Client) {
	t.Helper()
	ctx := context.Background()
	// Its realm roles are the shared tenant's: never given to an
	// organization's users.
	newRealm(t, kc, keycloak.Realm{Realm: "shared", Enabled: keycloak.Bool(true), OrganizationsEnabled: keycloak.Bool(true)})
	for alias, owner := range map[string]string{"org-a": tenantA, "org-b": tenantB} {
		if _, err := kc.CreateOrganization(ctx, "shared", keycloak.Organization{Name: alias, Alias: alias, Enabled: true,
			Attributes: map[string][]string{realmsync.AttrTenantID: {owner}}}); err != nil {
			t.Fatal(err)
		}
	}
}

func grants(t *testing.T, u keycloak.User) map[string]domain.Grant {
	t.Helper()
	out := map[string]domain.Grant{}
	for _, v := range u.Attributes[realmsync.AttrGrants] {
		var g domain.Grant
		if err := json.Unmarshal([]byte(v), &g); err != nil {
			t.Fatalf("grant %q: %v", v, err)
		}
		out[g.TenantID] = g
	}
	return out
}

func account(t *testing.T, kc *keycloak.Client, username string) keycloak.User {
	t.Helper()
	u, ok, err := kc.FindUser(context.Background(), "shared", username)
	if err != nil || !ok {
		t.Fatalf("account %s: found %v, %v", username, ok, err)
	}
	return u
}

func isMember(kf *keycloakfake.Server, alias, username string) bool {
	return slices.Contains(kf.OrganizationMembers("shared", alias), username)
}

// TestSharedRealmUsers: a tenant in the shared realm gets an account per
// user, a member of its organization, whose roles and memberships travel
// as the tenant's grant and never as the shared tenant's realm roles or
// groups; a username another tenant holds is refused; an account of
// several tenants (an administrator of both organizations) keeps one
// grant per tenant, signs in while any tenant has it enabled, and is
// deleted with the last of them.
func TestSharedRealmUsers(t *testing.T) {
	kf, kc, s := setup(t)
	ctx := context.Background()
	sharedRealm(t, kc)
	// The provisioner made the administrator of both organizations.
	if _, err := kc.CreateUser(ctx, "shared", keycloak.User{Username: "boss@example.com", Enabled: true,
		Attributes: map[string][]string{realmsync.AttrTenantID: {tenantA, tenantB}}}); err != nil {
		t.Fatal(err)
	}
	dA := foldIn(tenantA, user("a1", "alice", "", domain.UserRoleTenantAdmin), user("a2", "boss@example.com", "", domain.UserRoleTenantAdmin),
		&events.OrgUnitCreated{ID: "o1", Name: "Sales"}, &events.MembershipSet{UserID: "a1", OUID: "o1", Roles: []string{"admin"}})
	dB := foldIn(tenantB, user("b1", "alice", ""), user("b2", "boss@example.com", "", domain.UserRoleTenantViewer))

	if _, err := s.SyncAll(ctx, orgA, dA); err != nil {
		t.Fatal(err)
	}
	// B's alice is another person: the realm-wide username is A's.
	if _, err := s.SyncAll(ctx, orgB, dB); !errors.Is(err, realmsync.ErrForeign) {
		t.Fatalf("B's alice: %v, want a refusal", err)
	}
	alice := account(t, kc, "alice")
	g := grants(t, alice)
	if len(g) != 1 || !slices.Equal(g[tenantA].Roles, []string{domain.UserRoleTenantAdmin}) || g[tenantA].Organization != "org-a" ||
		len(g[tenantA].Memberships) != 1 || g[tenantA].Memberships[0].OU != "o1" || !g[tenantA].Enabled {
		t.Fatalf("alice's grants: %+v", g)
	}
	if roles, _ := kc.RealmRolesOf(ctx, "shared", alice.ID); slices.ContainsFunc(roles, func(r keycloak.Role) bool { return slices.Contains(realmsync.ManagedRoles, r.Name) }) {
		t.Fatalf("alice got the shared tenant's realm roles: %v", roles)
	}
	if groups := kf.Groups("shared"); len(groups) != 0 {
		t.Fatalf("groups made in the shared realm: %v", groups)
	}
	if !isMember(kf, "org-a", alice.Username) || isMember(kf, "org-b", alice.Username) {
		t.Fatal("alice should be a member of org-a only")
	}
	boss := account(t, kc, "boss@example.com")
	if g := grants(t, boss); len(g) != 2 || !slices.Equal(g[tenantB].Roles, []string{domain.UserRoleTenantViewer}) ||
		!slices.Equal(boss.Attributes[realmsync.AttrUserID], []string{"a2", "b2"}) {
		t.Fatalf("boss: %+v %v", g, boss.Attributes)
	}
	if !isMember(kf, "org-a", boss.Username) || !isMember(kf, "org-b", boss.Username) {
		t.Fatal("boss should be a member of both organizations")
	}

	// Disabled in A: B still has the account enabled, so it signs in.
	dA = domain.DirectoryDecider{}.Evolve(dA, domain.Recorded{AggregateID: tenantA, Version: 5, Payload: &events.UserDisabled{UserID: "a2"}})
	if c, err := s.SyncUser(ctx, orgA, dA, "a2"); err != nil || c.Action != "updated" {
		t.Fatalf("disable in A: %v %v", c, err)
	}
	if boss = account(t, kc, "boss@example.com"); !boss.Enabled || grants(t, boss)[tenantA].Enabled || kf.UserLogouts("shared", boss.ID) != 0 ||
		isMember(kf, "org-a", boss.Username) || !isMember(kf, "org-b", boss.Username) {
		t.Fatalf("after A disabled boss: enabled %v, grants %+v, logouts %d", boss.Enabled, grants(t, boss), kf.UserLogouts("shared", boss.ID))
	}
	dB = domain.DirectoryDecider{}.Evolve(dB, domain.Recorded{AggregateID: tenantB, Version: 3, Payload: &events.UserDisabled{UserID: "b2"}})
	if c, err := s.SyncUser(ctx, orgB, dB, "b2"); err != nil || c.Action != "disabled and logged out" {
		t.Fatalf("disable in B too: %v %v", c, err)
	}

	// Deleted in A: alice's account goes; boss stays, for B, out of org-a.
	dA = domain.DirectoryDecider{}.Evolve(dA, domain.Recorded{AggregateID: tenantA, Version: 6, Payload: &events.MembershipRemoved{UserID: "a1", OUID: "o1"}})
	dA = domain.DirectoryDecider{}.Evolve(dA, domain.Recorded{AggregateID: tenantA, Version: 7, Payload: &events.UserDeleted{UserID: "a1"}})
	dA = domain.DirectoryDecider{}.Evolve(dA, domain.Recorded{AggregateID: tenantA, Version: 8, Payload: &events.UserDeleted{UserID: "a2"}})
	for _, id := range []string{"a1", "a2"} {
		if _, err := s.SyncUser(ctx, orgA, dA, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, _ := kc.FindUser(ctx, "shared", "alice"); ok {
		t.Fatal("alice's account outlived her")
	}
	boss = account(t, kc, "boss@example.com")
	if isMember(kf, "org-a", boss.Username) || !slices.Equal(boss.Attributes[realmsync.AttrTenantID], []string{tenantB}) || len(grants(t, boss)) != 1 {
		t.Fatalf("boss after A deleted it: %v", boss.Attributes)
	}
	// A's grant written back by a concurrent sync of B's: A's next full
	// sync takes it off again.
	stale := boss
	stale.Attributes = map[string][]string{realmsync.AttrTenantID: {tenantA, tenantB}, realmsync.AttrUserID: {"a2", "b2"},
		realmsync.AttrGrants: append(slices.Clone(boss.Attributes[realmsync.AttrGrants]), `{"tenant_id":"`+tenantA+`","organization":"org-a","user_id":"a2","enabled":true,"roles":["tenant-admin"]}`)}
	if err := kc.UpdateUser(ctx, "shared", stale); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SyncAll(ctx, orgA, dA); err != nil {
		t.Fatal(err)
	}
	if boss = account(t, kc, "boss@example.com"); !slices.Equal(boss.Attributes[realmsync.AttrTenantID], []string{tenantB}) || len(grants(t, boss)) != 1 {
		t.Fatalf("the stale grant survived A's sync: %v", boss.Attributes)
	}
	// Now B's alice can have the name.
	if c, err := s.SyncUser(ctx, orgB, dB, "b1"); err != nil || c.Action != "created" {
		t.Fatalf("B's alice: %v %v", c, err)
	}
	// B deleted: every account of B's goes.
	if rel, err := s.ReleaseTenant(ctx, orgB, tenantB); err != nil || rel.Deleted != 2 || rel.Kept != 0 {
		t.Fatalf("release B: %+v: %v", rel, err)
	}
	if users, _ := kc.UsersByAttribute(ctx, "shared", realmsync.AttrTenantID, tenantB, 0, 10); len(users) != 0 {
		t.Fatalf("accounts left for B: %v", users)
	}
}

// TestSharedRealmClients: a client of a tenant in the shared realm carries
// its roles as a grant fixed on the client, and its service account gets
// none of the shared tenant's realm roles.
func TestSharedRealmClients(t *testing.T) {
	_, kc, s := setup(t)
	ctx := context.Background()
	sharedRealm(t, kc)
	d := foldIn(tenantA, &events.ClientCreated{ID: "c1", ClientID: "etl", Roles: []string{domain.UserRoleTenantViewer}, Enabled: true, SecretVersion: 1})
	if c, err := s.SyncClient(ctx, orgA, d, "c1", "etl"); err != nil || c.Action != "created" {
		t.Fatalf("sync: %v %v", c, err)
	}
	cl, ok, err := kc.FindClient(ctx, "shared", "etl")
	if err != nil || !ok {
		t.Fatalf("client: %v %v", ok, err)
	}
	mappers, err := kc.Mappers(ctx, "shared", cl.ID)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(mappers, func(m keycloak.ProtocolMapper) bool { return m.Config["claim.name"] == realmsync.GrantsClaim })
	if i < 0 {
		t.Fatalf("no grant mapper: %+v", mappers)
	}
	var g []domain.Grant
	if err := json.Unmarshal([]byte(mappers[i].Config["claim.value"]), &g); err != nil || len(g) != 1 || g[0].TenantID != tenantA ||
		!slices.Equal(g[0].Roles, []string{domain.UserRoleTenantViewer}) || g[0].Organization != "org-a" {
		t.Fatalf("grant claim %q: %v", mappers[i].Config["claim.value"], err)
	}
	sa, err := kc.ServiceAccountUser(ctx, "shared", cl.ID)
	if err != nil {
		t.Fatal(err)
	}
	if roles, _ := kc.RealmRolesOf(ctx, "shared", sa.ID); slices.ContainsFunc(roles, func(r keycloak.Role) bool { return slices.Contains(realmsync.ManagedRoles, r.Name) }) {
		t.Fatalf("the service account got the shared tenant's realm roles: %v", roles)
	}
	// B's client of another name stays when A goes.
	if _, err := s.SyncClient(ctx, orgB, foldIn(tenantB, &events.ClientCreated{ID: "c2", ClientID: "b-etl", Enabled: true, SecretVersion: 1}), "c2", "b-etl"); err != nil {
		t.Fatal(err)
	}
	if rel, err := s.ReleaseTenant(ctx, orgA, tenantA); err != nil || rel.Clients != 1 {
		t.Fatalf("release A: %+v %v", rel, err)
	}
	if _, ok, _ := kc.FindClient(ctx, "shared", "etl"); ok {
		t.Fatal("A's client outlived A")
	}
	if _, ok, _ := kc.FindClient(ctx, "shared", "b-etl"); !ok {
		t.Fatal("B's client went with A")
	}
}

// TestSharedRealmFaults: answers lost after Keycloak acted (a create, an
// update, a membership) and a failing organization lookup leave, once the
// sync is run again as the reactor and reconcile do, exactly one account
// with one grant, a member of its organization once.
func TestSharedRealmFaults(t *testing.T) {
	kf, kc, s := setup(t)
	ctx := context.Background()
	sharedRealm(t, kc)
	d := foldIn(tenantA, user("a1", "alice", "", domain.UserRoleTenantAdmin))
	for _, f := range []keycloakfake.Fault{
		{Method: "GET", Path: "/admin/realms/shared/organizations", Times: 1, Status: 503},
		{Method: "POST", Path: "/admin/realms/shared/users", Times: 1, Status: 504, AfterHandling: true},
		{Method: "POST", Path: "/admin/realms/shared/organizations/*/members", Times: 1, Status: 502, AfterHandling: true},
	} {
		kf.Inject(f)
	}
	failures := 0
	for range 10 {
		if _, err := s.SyncUser(ctx, orgA, d, "a1"); err == nil {
			break
		}
		failures++
	}
	if failures != 3 {
		t.Fatalf("%d syncs failed, want one per fault", failures)
	}
	if _, err := s.SyncAll(ctx, orgA, d); err != nil {
		t.Fatal(err)
	}
	var accounts int
	for _, u := range kf.Users("shared") {
		if slices.Contains(u.Attributes[realmsync.AttrUserID], "a1") {
			accounts++
			if len(u.Attributes[realmsync.AttrGrants]) != 1 {
				t.Fatalf("grants: %v", u.Attributes[realmsync.AttrGrants])
			}
		}
	}
	if accounts != 1 || !slices.Equal(kf.OrganizationMembers("shared", "org-a"), []string{"alice"}) {
		t.Fatalf("%d accounts, members %v", accounts, kf.OrganizationMembers("shared", "org-a"))
	}
}
