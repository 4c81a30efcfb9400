package realmsync_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/keycloak"
	"github.com/tenancyhq/tenancy/internal/keycloak/keycloakfake"
	"github.com/tenancyhq/tenancy/internal/realmsync"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

const tenant = "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b44"

// acme is the test's realm of the tenant's own.
var acme = realmsync.Realm{Name: "acme"}

func fold(ps ...events.Payload) domain.Directory { return foldIn(tenant, ps...) }

// foldIn is the directory of tenantID made of ps.
func foldIn(tenantID string, ps ...events.Payload) domain.Directory {
	var d domain.Directory
	for i, p := range ps {
		d = domain.DirectoryDecider{}.Evolve(d, domain.Recorded{AggregateID: tenantID, Version: int64(i + 1), Payload: p, Time: time.Now()})
	}
	return d
}

func user(id, username, source string, roles ...string) *events.UserCreated {
	return &events.UserCreated{UserID: id, UsernameIndex: "i-" + username, Enabled: true, Roles: roles, Source: source,
		Personal: &events.UserPII{Username: username}}
}

type noSecrets struct{}

func (noSecrets) Secret(context.Context, string, int) (string, error) { return "s", nil }

func setup(t *testing.T) (*keycloakfake.Server, *keycloak.Client, *realmsync.Syncer) {
	t.Helper()
	kf := keycloakfake.New(keycloakfake.Options{ClientID: "prov", ClientSecret: "secret"})
	t.Cleanup(kf.Close)
	kc, err := keycloak.New(keycloak.Config{URL: kf.URL(), ClientID: "prov", ClientSecret: "secret", HTTPClient: &http.Client{Timeout: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	newRealm(t, kc, keycloak.Realm{Realm: "acme", Enabled: keycloak.Bool(true)})
	return kf, kc, &realmsync.Syncer{Keycloak: kc, Secrets: noSecrets{}}
}

// newRealm makes a realm that keeps any attribute the Admin API writes,
// with the tenant-wide roles.
func newRealm(t *testing.T, kc *keycloak.Client, r keycloak.Realm) {
	t.Helper()
	ctx := context.Background()
	if err := kc.CreateRealm(ctx, r); err != nil {
		t.Fatal(err)
	}
	p, _ := kc.GetUserProfile(ctx, r.Realm)
	p.UnmanagedAttributePolicy = keycloak.UnmanagedAdminEdit
	if _, err := kc.UpdateUserProfile(ctx, r.Realm, p); err != nil {
		t.Fatal(err)
	}
	for _, name := range realmsync.ManagedRoles {
		if err := kc.CreateRole(ctx, r.Realm, keycloak.Role{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSyncAdoptsRefusesAndLeavesAlone(t *testing.T) {
	kf, kc, s := setup(t)
	ctx := context.Background()
	// A realm user of the same username, made for this tenant by the
	// provisioner before the directory knew it: adopted.
	if _, err := kc.CreateUser(ctx, "acme", keycloak.User{Username: "asha", Enabled: true, Attributes: map[string][]string{realmsync.AttrTenantID: {tenant}}}); err != nil {
		t.Fatal(err)
	}
	// The realm's own user of a name a Tenancy user has: never taken over.
	if _, err := kc.CreateUser(ctx, "acme", keycloak.User{Username: "local", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	// One that is another Tenancy user's: refused, untouched.
	if _, err := kc.CreateUser(ctx, "acme", keycloak.User{Username: "ravi", Enabled: true, Attributes: map[string][]string{realmsync.AttrUserID: {"someone-else"}}}); err != nil {
		t.Fatal(err)
	}
	d := fold(user("u1", "asha", domain.SourceTenancy, domain.UserRoleTenantAdmin), user("u2", "ravi", domain.SourceTenancy),
		user("u3", "fed", domain.SourceFederated), user("u4", "local", domain.SourceTenancy))
	if c, err := s.SyncUser(ctx, acme, d, "u1"); err != nil || c.Action != "updated" {
		t.Fatalf("adopting asha: %+v %v", c, err)
	}
	if _, err := s.SyncUser(ctx, acme, d, "u2"); !errors.Is(err, realmsync.ErrForeign) {
		t.Fatalf("ravi: %v, want ErrForeign", err)
	}
	if c, err := s.SyncUser(ctx, acme, d, "u3"); err != nil || c.Action != "left alone (federated)" {
		t.Fatalf("federated: %+v %v", c, err)
	}
	if _, err := s.SyncUser(ctx, acme, d, "u4"); !errors.Is(err, realmsync.ErrForeign) {
		t.Fatalf("the realm's own user: %v, want ErrForeign", err)
	}
	users := kf.Users("acme")
	if len(users) != 3 {
		t.Fatalf("realm users: %+v", users)
	}
	for _, u := range users {
		want, ours := map[string]string{"asha": "u1", "ravi": "someone-else"}[u.Username]
		if got := u.Attributes[realmsync.AttrUserID]; ours && (len(got) != 1 || got[0] != want) || !ours && len(got) != 0 {
			t.Errorf("%s carries tenancy.user_id %v, want %s", u.Username, got, want)
		}
	}
	// Converged: a second pass over everything changes nothing.
	d = fold(user("u1", "asha", domain.SourceTenancy, domain.UserRoleTenantAdmin), &events.OrgUnitCreated{ID: "o1", Name: "Sales"},
		&events.MembershipSet{UserID: "u1", OUID: "o1", Roles: []string{"admin"}})
	if _, err := s.SyncAll(ctx, acme, d); err != nil {
		t.Fatal(err)
	}
	again, err := s.SyncAll(ctx, acme, d)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range again {
		if c.Action != "unchanged" {
			t.Errorf("second pass: %s", c)
		}
	}
}

// TestSyncAllGoesPastARefusal: one user the realm refuses (its username is
// the realm's own account) does not keep the others out; the refusal is
// reported once everything else is synced.
func TestSyncAllGoesPastARefusal(t *testing.T) {
	kf, kc, s := setup(t)
	ctx := context.Background()
	if _, err := kc.CreateUser(ctx, "acme", keycloak.User{Username: "local", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	d := fold(user("u1", "local", domain.SourceTenancy), user("u2", "zed", domain.SourceTenancy, domain.UserRoleTenantAdmin),
		&events.ClientCreated{ID: "c1", ClientID: "bot", Enabled: true, SecretVersion: 1})
	changes, err := s.SyncAll(ctx, acme, d)
	if !errors.Is(err, realmsync.ErrForeign) {
		t.Fatalf("SyncAll: %v, want the refusal of local", err)
	}
	if len(changes) != 2 {
		t.Fatalf("changes %v: want zed and the client synced past the refusal", changes)
	}
	var zed bool
	for _, u := range kf.Users("acme") {
		zed = zed || u.Username == "zed"
	}
	if _, ok := kf.ServiceAccount("acme", "bot"); !zed || !ok {
		t.Fatalf("synced past the refusal: zed %v, bot's service account %v", zed, ok)
	}
}

// TestNewUsersAreEmailedWhenTheRealmCanSendEmail: with SMTP, a new user
// with an address gets the execute-actions email for their required
// actions; one without an address does not.
func TestNewUsersAreEmailedWhenTheRealmCanSendEmail(t *testing.T) {
	kf, kc, s := setup(t)
	s.EmailNewUsers = true
	r, err := kc.GetRealm(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	r.SMTPServer = map[string]string{"host": "smtp.acme.test", "from": "id@acme.test"}
	if err := kc.UpdateRealm(context.Background(), "acme", r); err != nil {
		t.Fatal(err)
	}
	withEmail := user("u1", "asha", domain.SourceTenancy)
	withEmail.Personal.Email = "asha@acme.test"
	d := fold(withEmail, user("u2", "ravi", domain.SourceTenancy))
	for _, id := range []string{"u1", "u2"} {
		if _, err := s.SyncUser(context.Background(), acme, d, id); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range kf.Users("acme") {
		emails := kf.ActionEmails("acme", u.ID)
		switch u.Username {
		case "asha":
			if len(emails) != 1 || len(emails[0]) != 2 {
				t.Fatalf("asha's emails: %v", emails)
			}
		default:
			if len(emails) != 0 {
				t.Fatalf("%s without an address was emailed: %v", u.Username, emails)
			}
		}
	}
}

func TestRefusedIsOnlyAnEntitysOwn4xx(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&keycloak.Error{Status: 400}, true},
		{&keycloak.Error{Status: 409}, true},
		{&keycloak.Error{Status: 401}, false},
		{&keycloak.Error{Status: 403}, false},
		{&keycloak.Error{Status: 429}, false},
		{&keycloak.Error{Status: 503}, false},
		{errors.New("connection reset"), false},
	} {
		if got := realmsync.Refused(tc.err); got != tc.want {
			t.Errorf("%v: refused %v, want %v", tc.err, got, tc.want)
		}
	}
}
