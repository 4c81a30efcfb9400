package keycloak_test

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

	"github.com/google/go-cmp/cmp"

	"github.com/tenancyhq/tenancy/internal/keycloak"
	"github.com/tenancyhq/tenancy/internal/keycloak/keycloakfake"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func setup(t *testing.T) (*keycloakfake.Server, *keycloak.Client, *clock) {
	t.Helper()
	clk := &clock{now: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	kf := keycloakfake.New(keycloakfake.Options{ClientID: "prov", ClientSecret: "secret", Now: clk.Now})
	t.Cleanup(kf.Close)
	c, err := keycloak.New(keycloak.Config{URL: kf.URL(), ClientID: "prov", ClientSecret: "secret", Now: clk.Now, HTTPClient: &http.Client{Timeout: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	return kf, c, clk
}

func TestTokenIsCachedAndRenewedBeforeExpiry(t *testing.T) {
	kf, c, clk := setup(t)
	ctx := context.Background()
	for range 5 {
		if _, err := c.GetRealm(ctx, "master"); err != nil {
			t.Fatal(err)
		}
	}
	if kf.TokensIssued() != 1 {
		t.Fatalf("%d tokens for 5 calls: the token is not cached", kf.TokensIssued())
	}
	clk.Add(30 * time.Second)
	if _, err := c.GetRealm(ctx, "master"); err != nil || kf.TokensIssued() != 1 {
		t.Fatalf("a 30 s old token was not reused: %v, %d tokens", err, kf.TokensIssued())
	}
	clk.Add(25 * time.Second) // 55 s: within its 60 s, but too close to expiry to use
	if _, err := c.GetRealm(ctx, "master"); err != nil {
		t.Fatal(err)
	}
	if kf.TokensIssued() != 2 {
		t.Fatalf("%d tokens: the token was not renewed before it expired", kf.TokensIssued())
	}
}

func TestRefreshesOnceOn401(t *testing.T) {
	kf, c, _ := setup(t)
	ctx := context.Background()
	if _, err := c.GetRealm(ctx, "master"); err != nil {
		t.Fatal(err)
	}
	kf.Inject(keycloakfake.Fault{Path: "/admin/realms/master", Times: 1, Status: 401})
	if _, err := c.GetRealm(ctx, "master"); err != nil {
		t.Fatalf("a 401 should refresh the token and retry once: %v", err)
	}
	if kf.TokensIssued() != 2 {
		t.Fatalf("%d tokens", kf.TokensIssued())
	}
	kf.Inject(keycloakfake.Fault{Path: "/admin/realms/master", Times: 2, Status: 401})
	_, err := c.GetRealm(ctx, "master")
	var ke *keycloak.Error
	if !errors.As(err, &ke) || ke.Status != 401 {
		t.Fatalf("a second 401 must be returned, not retried forever: %v", err)
	}
}

func TestBadCredentials(t *testing.T) {
	kf, _, _ := setup(t)
	c, _ := keycloak.New(keycloak.Config{URL: kf.URL(), ClientID: "prov", ClientSecret: "wrong"})
	_, err := c.GetRealm(context.Background(), "master")
	var ke *keycloak.Error
	if !errors.As(err, &ke) || ke.Status != 401 || !strings.Contains(ke.Message, "Invalid client") || ke.Temporary() {
		t.Fatalf("bad credentials: %v", err)
	}
}

func TestCreateFindAndErrors(t *testing.T) {
	kf, c, _ := setup(t)
	ctx := context.Background()
	_, err := c.GetRealm(ctx, "nope")
	if !errors.Is(err, keycloak.ErrNotFound) || !strings.Contains(err.Error(), "Realm not found") {
		t.Fatalf("missing realm (error/error_description shape): %v", err)
	}
	if err := c.CreateRealm(ctx, keycloak.Realm{Realm: "r1", Enabled: keycloak.Bool(true), Attributes: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	err = c.CreateRealm(ctx, keycloak.Realm{Realm: "r1"})
	if !errors.Is(err, keycloak.ErrConflict) || !strings.Contains(err.Error(), "Conflict") {
		t.Fatalf("duplicate realm (errorMessage shape): %v", err)
	}
	if err := c.UpdateRealm(ctx, "r1", keycloak.Realm{Enabled: keycloak.Bool(false)}); err != nil {
		t.Fatal(err)
	}
	r, _ := c.GetRealm(ctx, "r1")
	if r.IsEnabled() || r.Attributes["k"] != "v" {
		t.Fatalf("a partial realm update changed more than asked: %+v", r)
	}
	id, err := c.CreateClient(ctx, "r1", keycloak.OIDCClient{ClientID: "app", ProtocolMappers: []keycloak.ProtocolMapper{{Name: "m", Protocol: "openid-connect", ProtocolMapper: "oidc-hardcoded-claim-mapper", Config: map[string]string{"claim.name": "x"}}}})
	if err != nil || id == "" {
		t.Fatalf("create client: %q %v", id, err)
	}
	cl, ok, err := c.FindClient(ctx, "r1", "app")
	if err != nil || !ok || cl.ID != id {
		t.Fatalf("find client: %+v %v %v (id from Location %q)", cl, ok, err, id)
	}
	if _, ok, _ := c.FindClient(ctx, "r1", "other"); ok {
		t.Fatal("found a client that does not exist")
	}
	if err := c.CreateRole(ctx, "r1", keycloak.Role{Name: "admin"}); err != nil {
		t.Fatal(err)
	}
	role, err := c.GetRole(ctx, "r1", "admin")
	if err != nil || role.ID == "" {
		t.Fatal(err)
	}
	uid, err := c.CreateUser(ctx, "r1", keycloak.User{Username: "a@x.test", Email: "a@x.test", Enabled: true, RequiredActions: []string{"UPDATE_PASSWORD"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddRealmRoles(ctx, "r1", uid, []keycloak.Role{role}); err != nil {
		t.Fatal(err)
	}
	u, ok, err := c.FindUser(ctx, "r1", "A@X.test")
	if err != nil || !ok || u.ID != uid {
		t.Fatalf("find user: %+v %v %v", u, ok, err)
	}
	// PUT replaces: an update built from what was read keeps everything.
	u.FirstName = "Ada"
	if err := c.UpdateUser(ctx, "r1", u); err != nil {
		t.Fatal(err)
	}
	after := kf.Users("r1")[0]
	if !after.Enabled || len(after.RequiredActions) != 1 || after.FirstName != "Ada" {
		t.Fatalf("update lost fields: %+v", after)
	}
	err = c.ResetPassword(ctx, "r1", uid, "short", true)
	var ke *keycloak.Error
	if !errors.As(err, &ke) || ke.Status != 400 || ke.Temporary() {
		t.Fatalf("short password: %v", err)
	}
	if err := c.LogoutAll(ctx, "r1"); err != nil || kf.LogoutAlls("r1") != 1 {
		t.Fatalf("logout-all: %v", err)
	}
	if err := c.DeleteRealm(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
}

func TestRetryAfterAndTemporary(t *testing.T) {
	kf, c, _ := setup(t)
	kf.Inject(keycloakfake.Fault{Path: "/admin/realms/master", Times: 1, Status: 429, RetryAfter: 3 * time.Second})
	_, err := c.GetRealm(context.Background(), "master")
	var ke *keycloak.Error
	if !errors.As(err, &ke) || !ke.Temporary() || ke.RetryAfterDuration() != 3*time.Second {
		t.Fatalf("429: %v", err)
	}
	kf.Inject(keycloakfake.Fault{Path: "/admin/realms/master", Times: 1, Status: 503})
	if _, err := c.GetRealm(context.Background(), "master"); !errors.As(err, &ke) || !ke.Temporary() {
		t.Fatalf("503: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []keycloak.Config{{URL: "keycloak:8080", ClientID: "a", ClientSecret: "b"}, {URL: "http://k", ClientID: "a"}} {
		if _, err := keycloak.New(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// A failed user search names neither the username (an email address) in
// its error, whether Keycloak answered with an error or the connection
// dropped: errors reach logs, traces and recorded saga steps.
func TestErrorsDoNotRepeatTheUsername(t *testing.T) {
	for _, f := range []keycloakfake.Fault{
		{Method: "GET", Path: "/admin/realms/*/users", Status: 500},
		{Method: "GET", Path: "/admin/realms/*/users", Drop: true},
	} {
		kf, c, _ := setup(t)
		f.Times = 5
		kf.Inject(f)
		_, _, err := c.FindUser(context.Background(), "master", "ada.admin@example.test")
		if err == nil {
			t.Fatalf("fault %+v: no error", f)
		}
		if strings.Contains(err.Error(), "ada.admin") || !strings.Contains(err.Error(), "/users") {
			t.Fatalf("fault %+v: error %q", f, err)
		}
	}
}

func TestOrganizations(t *testing.T) {
	kf, c, _ := setup(t)
	ctx := context.Background()
	if err := c.CreateRealm(ctx, keycloak.Realm{Realm: "shared", Enabled: keycloak.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.FindOrganization(ctx, "shared", "acme")
	if !errors.Is(err, keycloak.ErrNotFound) || !strings.Contains(err.Error(), "Organizations not enabled") {
		t.Fatalf("organizations before they are enabled: %v", err)
	}
	if err := c.UpdateRealm(ctx, "shared", keycloak.Realm{OrganizationsEnabled: keycloak.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	if r, _ := c.GetRealm(ctx, "shared"); !r.IsEnabled() || r.OrganizationsEnabled == nil || !*r.OrganizationsEnabled {
		t.Fatalf("realm after enabling organizations: %+v", r)
	}
	if _, ok, err := c.FindOrganization(ctx, "shared", "acme"); ok || err != nil {
		t.Fatalf("found an organization that does not exist: %v %v", ok, err)
	}
	want := keycloak.Organization{Name: "acme", Alias: "acme", Enabled: true, Description: "Acme Corp", Attributes: map[string][]string{"tenancy.tenant_id": {"t-1"}}}
	id, err := c.CreateOrganization(ctx, "shared", want)
	if err != nil || id == "" {
		t.Fatalf("create: %q %v", id, err)
	}
	// Another whose name is the first one's alias: only the alias counts.
	if _, err := c.CreateOrganization(ctx, "shared", keycloak.Organization{Name: "acme-2", Alias: "acme-two", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	for _, dup := range []keycloak.Organization{{Name: "acme", Alias: "other"}, {Name: "other", Alias: "acme"}} {
		if _, err := c.CreateOrganization(ctx, "shared", dup); !errors.Is(err, keycloak.ErrConflict) {
			t.Fatalf("duplicate %+v: %v", dup, err)
		}
	}
	got, ok, err := c.FindOrganization(ctx, "shared", "acme")
	want.ID = id
	if err != nil || !ok || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("find:\n got %+v %v %v\nwant %+v", got, ok, err, want)
	}

	// Updates send the whole organization back: PUT replaces it.
	got.Enabled = false
	if err := c.UpdateOrganization(ctx, "shared", got); err != nil {
		t.Fatal(err)
	}
	after, err := c.GetOrganization(ctx, "shared", id)
	if err != nil || after.Enabled || after.Description != "Acme Corp" || after.Attributes["tenancy.tenant_id"][0] != "t-1" {
		t.Fatalf("after disabling: %+v %v", after, err)
	}

	uid, err := c.CreateUser(ctx, "shared", keycloak.User{Username: "ann@acme.test", Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddOrganizationMember(ctx, "shared", id, uid); err != nil {
		t.Fatal(err)
	}
	if err := c.AddOrganizationMember(ctx, "shared", id, uid); !errors.Is(err, keycloak.ErrConflict) {
		t.Fatalf("adding a member twice: %v", err)
	}
	var ke *keycloak.Error
	if err := c.AddOrganizationMember(ctx, "shared", id, "nobody"); !errors.As(err, &ke) || ke.Status != 400 || ke.Temporary() {
		t.Fatalf("adding an unknown user: %v", err)
	}
	if got := kf.OrganizationMembers("shared", "acme"); len(got) != 1 || got[0] != "ann@acme.test" {
		t.Fatalf("members: %v", got)
	}
	if u, err := c.GetUser(ctx, "shared", uid); err != nil || u.Username != "ann@acme.test" {
		t.Fatalf("get user: %+v %v", u, err)
	}

	for _, step := range []struct {
		name string
		do   func() error
		want error
	}{
		{"delete the organization", func() error { return c.DeleteOrganization(ctx, "shared", id) }, nil},
		{"delete it again", func() error { return c.DeleteOrganization(ctx, "shared", id) }, keycloak.ErrNotFound},
		{"read it", func() error { _, err := c.GetOrganization(ctx, "shared", id); return err }, keycloak.ErrNotFound},
		{"delete the user", func() error { return c.DeleteUser(ctx, "shared", uid) }, nil},
		{"delete the user again", func() error { return c.DeleteUser(ctx, "shared", uid) }, keycloak.ErrNotFound},
	} {
		if err := step.do(); !errors.Is(err, step.want) {
			t.Fatalf("%s: %v, want %v", step.name, err, step.want)
		}
	}
}

// TestUserProfile: the profile read back carries every field, so an update
// built from it loses nothing; attributes it declares for administrators
// are kept on users, others are dropped.
func TestUserProfile(t *testing.T) {
	kf, c, _ := setup(t)
	ctx := context.Background()
	if err := c.CreateRealm(ctx, keycloak.Realm{Realm: "r1", Enabled: keycloak.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	p, err := c.GetUserProfile(ctx, "r1")
	if err != nil || len(p.Attributes) != 4 || p.UnmanagedAttributePolicy != "" || len(p.Groups) != 1 {
		t.Fatalf("default profile: %+v %v", p, err)
	}
	if u, ok := p.Attribute("username"); !ok || u.Validations["username-prohibited-characters"] == nil || u.Permissions == nil {
		t.Fatalf("username as read: %+v %v", u, ok)
	}
	if _, ok := p.Attribute("tenancy.tenant_id"); ok {
		t.Fatal("found a declaration that is not there")
	}
	p.UnmanagedAttributePolicy = keycloak.UnmanagedAdminView
	p.Attributes = append(p.Attributes, keycloak.ProfileAttribute{
		Name: "tenancy.tenant_id", DisplayName: "Tenant", Multivalued: true, Group: "user-metadata", DefaultValue: "-",
		Validations: map[string]map[string]any{"length": {"max": float64(36)}}, Annotations: map[string]any{"inputType": "text"},
		Required:    &keycloak.AttributeRequired{Roles: []string{keycloak.ProfileAdmin}},
		Permissions: &keycloak.AttributePermissions{View: []string{keycloak.ProfileAdmin}, Edit: []string{keycloak.ProfileAdmin}},
		Selector:    &keycloak.AttributeSelector{Scopes: []string{"openid"}},
	})
	got, err := c.UpdateUserProfile(ctx, "r1", p)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, got); diff != "" {
		t.Fatalf("profile answered by the update (-sent +got):\n%s", diff)
	}
	if again, _ := c.GetUserProfile(ctx, "r1"); !cmp.Equal(p, again) {
		t.Fatalf("profile read after the update (-sent +got):\n%s", cmp.Diff(p, again))
	}

	uid, err := c.CreateUser(ctx, "r1", keycloak.User{Username: "ann", Enabled: true,
		Attributes: map[string][]string{"tenancy.tenant_id": {"t-1", "t-2"}, "undeclared": {"x"}}})
	if err != nil {
		t.Fatal(err)
	}
	if u, err := c.GetUser(ctx, "r1", uid); err != nil || !cmp.Equal(u.Attributes, map[string][]string{"tenancy.tenant_id": {"t-1", "t-2"}}) {
		t.Fatalf("user attributes: %v %v", u.Attributes, err)
	}

	// Groups left nil go as an empty list; attributes left nil are refused.
	_, err = c.UpdateUserProfile(ctx, "r1", keycloak.UserProfile{Attributes: p.Attributes})
	if err != nil {
		t.Fatalf("a profile without groups: %v", err)
	}
	_, err = c.UpdateUserProfile(ctx, "r1", keycloak.UserProfile{})
	var ke *keycloak.Error
	if !errors.As(err, &ke) || ke.Status != 400 || ke.Temporary() || !strings.Contains(ke.Message, "without 'attributes'") {
		t.Fatalf("a profile without attributes: %v", err)
	}
	if _, err := c.GetUserProfile(ctx, "nope"); !errors.Is(err, keycloak.ErrNotFound) {
		t.Fatalf("the profile of a missing realm: %v", err)
	}
	if stored, _ := kf.UserProfile("r1"); len(stored.Attributes) != 5 || stored.UnmanagedAttributePolicy != "" {
		t.Fatalf("stored profile: %+v", stored)
	}
}

// TestDirectoryCalls covers what the realm sync uses: attribute search,
// ending a user's sessions, unmapping roles, and confidential clients
// whose secret is set, replaced and deleted.
func TestDirectoryCalls(t *testing.T) {
	kf, c, _ := setup(t)
	ctx := context.Background()
	if err := c.CreateRealm(ctx, keycloak.Realm{Realm: "dir", Enabled: keycloak.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	p, err := c.GetUserProfile(ctx, "dir")
	if err != nil {
		t.Fatal(err)
	}
	p.UnmanagedAttributePolicy = keycloak.UnmanagedAdminEdit
	if _, err := c.UpdateUserProfile(ctx, "dir", p); err != nil {
		t.Fatal(err)
	}
	id, err := c.CreateUser(ctx, "dir", keycloak.User{Username: "asha", Enabled: true, Attributes: map[string][]string{"tenancy.user_id": {"u-1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateUser(ctx, "dir", keycloak.User{Username: "ravi", Enabled: true, Attributes: map[string][]string{"tenancy.user_id": {"u-2"}}}); err != nil {
		t.Fatal(err)
	}
	u, found, err := c.FindUserByAttribute(ctx, "dir", "tenancy.user_id", "u-1")
	if err != nil || !found || u.ID != id {
		t.Fatalf("find by attribute: %+v %v %v", u, found, err)
	}
	if _, found, _ := c.FindUserByAttribute(ctx, "dir", "tenancy.user_id", "u-9"); found {
		t.Fatal("found a user by an attribute value nobody has")
	}
	if err := c.LogoutUser(ctx, "dir", id); err != nil || kf.UserLogouts("dir", id) != 1 {
		t.Fatalf("logout: %v, %d", err, kf.UserLogouts("dir", id))
	}
	if err := c.CreateRole(ctx, "dir", keycloak.Role{Name: "tenant-admin"}); err != nil {
		t.Fatal(err)
	}
	role, _ := c.GetRole(ctx, "dir", "tenant-admin")
	if err := c.AddRealmRoles(ctx, "dir", id, []keycloak.Role{role}); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveRealmRoles(ctx, "dir", id, []keycloak.Role{role}); err != nil {
		t.Fatal(err)
	}
	if roles, _ := c.RealmRolesOf(ctx, "dir", id); slices.ContainsFunc(roles, func(r keycloak.Role) bool { return r.Name == "tenant-admin" }) {
		t.Fatalf("role still mapped: %+v", roles)
	}
	no, yes := false, true
	cid, err := c.CreateClient(ctx, "dir", keycloak.OIDCClient{ClientID: "bot", PublicClient: &no, ServiceAccountsEnabled: &yes, Secret: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	cl, _, _ := c.FindClient(ctx, "dir", "bot")
	cl.Secret = "s2"
	if err := c.UpdateClient(ctx, "dir", cl); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := c.FindClient(ctx, "dir", "bot"); got.Secret != "s2" || got.ID != cid {
		t.Fatalf("client after update: %+v", got)
	}
	if err := c.DeleteClient(ctx, "dir", cid); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteClient(ctx, "dir", cid); !errors.Is(err, keycloak.ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
}

// TestGroups: top-level groups and subgroups with unique sibling names,
// moves, renames, cascading deletes, and user membership.
func TestGroups(t *testing.T) {
	kf, c, _ := setup(t)
	ctx := context.Background()
	if err := c.CreateRealm(ctx, keycloak.Realm{Realm: "g", Enabled: keycloak.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	sales, err := c.CreateGroup(ctx, "g", "", keycloak.Group{Name: "Sales", Attributes: map[string][]string{"tenancy.ou_id": {"o1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateGroup(ctx, "g", "", keycloak.Group{Name: "Sales"}); !errors.Is(err, keycloak.ErrConflict) {
		t.Fatalf("a second top-level Sales: %v", err)
	}
	north, err := c.CreateGroup(ctx, "g", sales, keycloak.Group{Name: "North"})
	if err != nil {
		t.Fatal(err)
	}
	ops, _ := c.CreateGroup(ctx, "g", "", keycloak.Group{Name: "Ops"})
	if err := c.MoveGroup(ctx, "g", ops, keycloak.Group{ID: north, Name: "North"}); err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateGroup(ctx, "g", keycloak.Group{ID: ops, Name: "Operations"}); err != nil {
		t.Fatal(err)
	}
	top, err := c.Groups(ctx, "g", "")
	if err != nil || len(top) != 2 || top[0].Name != "Operations" || top[1].Attributes["tenancy.ou_id"][0] != "o1" {
		t.Fatalf("top-level groups: %+v %v", top, err)
	}
	uid, _ := c.CreateUser(ctx, "g", keycloak.User{Username: "asha", Enabled: true})
	if err := c.JoinGroup(ctx, "g", uid, north); err != nil {
		t.Fatal(err)
	}
	if got := kf.UserGroupPaths("g", uid); !slices.Equal(got, []string{"/Operations/North"}) {
		t.Fatalf("user groups: %v", got)
	}
	if err := c.DeleteGroup(ctx, "g", ops); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.UserGroups(ctx, "g", uid); len(got) != 0 {
		t.Fatalf("memberships of a deleted group remain: %+v", got)
	}
	if err := c.JoinGroup(ctx, "g", uid, north); !errors.Is(err, keycloak.ErrNotFound) {
		t.Fatalf("joining a deleted subgroup: %v", err)
	}
}
