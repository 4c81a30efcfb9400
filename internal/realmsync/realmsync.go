// Package realmsync keeps each tenant's Keycloak realm in step with its
// directory in the log: Tenancy's users become realm users (with their
// tenant-wide roles as realm roles, their org-unit memberships as a token
// claim, and their sessions ended when they are disabled), and its
// non-browser clients become confidential clients with service accounts.
//
// Every change converges one entity to what the log says now, found by the
// Tenancy id it carries (the tenancy.user_id attribute, the
// tenancy.client_id client attribute) or else by its unique name: running
// it again changes nothing, so a consumer that crashed and is handed the
// same event again, or reconcile repairing drift, does no harm.
package realmsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/tenancyhq/tenancy/internal/keycloak"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// Attributes Tenancy writes on realm users; each is declared in the
// realm's user profile (Keycloak 24 and later drop undeclared ones).
const (
	AttrTenantID    = keycloak.AttrTenantID
	AttrBreakGlass  = "tenancy.break_glass"
	AttrUserID      = keycloak.AttrUserID
	AttrMemberships = "tenancy.memberships"
	// ClientAttrID is the client attribute naming the Tenancy client.
	ClientAttrID = "tenancy.client_id"
)

// ManagedRoles are the realm roles that carry the tenant-wide roles; other
// realm roles of a user are the realm's own business and left alone.
var ManagedRoles = []string{domain.UserRoleTenantAdmin, domain.UserRoleTenantViewer}

// Keycloak is what syncing needs of Keycloak's Admin API.
type Keycloak interface {
	FindUserByAttribute(ctx context.Context, realm, key, value string) (keycloak.User, bool, error)
	FindUser(ctx context.Context, realm, username string) (keycloak.User, bool, error)
	CreateUser(ctx context.Context, realm string, u keycloak.User) (string, error)
	GetUser(ctx context.Context, realm, id string) (keycloak.User, error)
	UpdateUser(ctx context.Context, realm string, u keycloak.User) error
	DeleteUser(ctx context.Context, realm, id string) error
	LogoutUser(ctx context.Context, realm, userID string) error
	GetRole(ctx context.Context, realm, name string) (keycloak.Role, error)
	RealmRolesOf(ctx context.Context, realm, userID string) ([]keycloak.Role, error)
	AddRealmRoles(ctx context.Context, realm, userID string, roles []keycloak.Role) error
	RemoveRealmRoles(ctx context.Context, realm, userID string, roles []keycloak.Role) error
	FindClient(ctx context.Context, realm, clientID string) (keycloak.OIDCClient, bool, error)
	CreateClient(ctx context.Context, realm string, cl keycloak.OIDCClient) (string, error)
	UpdateClient(ctx context.Context, realm string, cl keycloak.OIDCClient) error
	DeleteClient(ctx context.Context, realm, id string) error
	ServiceAccountUser(ctx context.Context, realm, clientUUID string) (keycloak.User, error)
	UsersByAttribute(ctx context.Context, realm, key, value string, first, max int) ([]keycloak.User, error)
	Clients(ctx context.Context, realm string, first, max int) ([]keycloak.OIDCClient, error)
	FindOrganization(ctx context.Context, realm, alias string) (keycloak.Organization, bool, error)
	AddOrganizationMember(ctx context.Context, realm, orgID, userID string) error
	RemoveOrganizationMember(ctx context.Context, realm, orgID, userID string) error
	Mappers(ctx context.Context, realm, clientUUID string) ([]keycloak.ProtocolMapper, error)
	CreateMapper(ctx context.Context, realm, clientUUID string, m keycloak.ProtocolMapper) error
	UpdateMapper(ctx context.Context, realm, clientUUID string, m keycloak.ProtocolMapper) error
	Groups
}

// Secrets reads clients' secrets (kept encrypted outside the log).
type Secrets interface {
	Secret(ctx context.Context, id string, version int) (string, error)
}

// Syncer converges realms to directories.
type Syncer struct {
	Keycloak Keycloak
	Secrets  Secrets
	// EmailNewUsers, when the realms can send email (KEYCLOAK_REALM_SMTP),
	// emails each new user a link to do their required actions (set a
	// password, verify the address).
	EmailNewUsers bool
	Log           *slog.Logger
}

// Emailer sends users Keycloak's execute-actions email.
type Emailer interface {
	ExecuteActionsEmail(ctx context.Context, realm, userID string, actions []string) error
}

// Change is what one sync did, for the log and the saga's record.
type Change struct {
	Entity string
	ID     string
	Action string
}

func (c Change) String() string { return c.Action + " " + c.Entity + " " + c.ID }

// ErrForeign reports a realm user or client that has Tenancy's name but
// belongs to something else (another Tenancy id): nothing is changed, an
// operator must look.
var ErrForeign = errors.New("the realm holds another account of that name")

// memberships renders a user's org-unit memberships as the claim tokens
// carry: [{"ou": id, "roles": [...]}].
func memberships(d domain.Directory, userID string) string {
	type claim struct {
		OU    string   `json:"ou"`
		Roles []string `json:"roles"`
	}
	out := []claim{}
	for _, m := range d.MembershipsOf(userID) {
		out = append(out, claim{OU: m.OUID, Roles: m.Roles})
	}
	b, _ := json.Marshal(out)
	return string(b)
}

// wantUser is the realm user a directory user should be, from kc, the
// current one (zero when new). Tenancy is the source of a user it made:
// its attributes are exactly the user's and Tenancy's own.
func wantUser(d domain.Directory, u domain.User, kc keycloak.User) keycloak.User {
	attrs := map[string][]string{}
	for k, v := range u.Attributes {
		attrs[k] = []string{v}
	}
	attrs[AttrTenantID] = []string{d.TenantID}
	attrs[AttrUserID] = []string{u.ID}
	attrs[AttrMemberships] = []string{memberships(d, u.ID)}
	if u.BreakGlass {
		attrs[AttrBreakGlass] = []string{"true"}
	}
	want := kc
	want.Username, want.Email, want.FirstName, want.LastName = u.Username, u.Email, u.FirstName, u.LastName
	want.Enabled, want.Attributes = u.Enabled, attrs
	if kc.ID == "" {
		want.RequiredActions = newUserActions(u)
	}
	return want
}

// newUserActions are the required actions of a new account: the user's,
// or else setting a password (and verifying the address, if it has one).
func newUserActions(u domain.User) []string {
	if len(u.RequiredActions) > 0 {
		return u.RequiredActions
	}
	if u.Email != "" {
		return []string{"UPDATE_PASSWORD", "VERIFY_EMAIL"}
	}
	return []string{"UPDATE_PASSWORD"}
}

// leftAlone says why a directory user's account is not Tenancy's to
// change, or "" when it is: users that came through the tenant's login
// methods are Keycloak's own, and an erased one has nothing left to sync.
func leftAlone(u domain.User) string {
	switch {
	case u.Source == domain.SourceFederated || u.Source == domain.SourceBrokered:
		return "left alone (" + u.Source + ")"
	case u.PIIErased:
		return "left alone (personal data erased)"
	}
	return ""
}

func sameUser(a, b keycloak.User) bool {
	if a.Username != b.Username || a.Email != b.Email || a.FirstName != b.FirstName || a.LastName != b.LastName || a.Enabled != b.Enabled {
		return false
	}
	return maps.EqualFunc(a.Attributes, b.Attributes, slices.Equal[[]string])
}

// findUser finds the realm user of Tenancy user id, by its tenancy.user_id
// attribute, or else by username (an account the provisioner made for
// this tenant before the directory knew it, like the activation's
// administrator), which it adopts only when marked with the tenant.
func (s *Syncer) findUser(ctx context.Context, realm, tenantID, id, username string) (keycloak.User, bool, error) {
	kc, found, err := s.Keycloak.FindUserByAttribute(ctx, realm, AttrUserID, id)
	if err != nil || found || username == "" {
		return kc, found, err
	}
	kc, found, err = s.Keycloak.FindUser(ctx, realm, username)
	if err != nil || !found {
		return kc, found, err
	}
	if other := kc.Attributes[AttrUserID]; len(other) > 0 && !slices.Contains(other, id) {
		return kc, false, fmt.Errorf("%w: user %q of realm %s is Tenancy user %s, not %s", ErrForeign, username, realm, other[0], id)
	}
	if !slices.Contains(kc.Attributes[AttrTenantID], tenantID) {
		// Only an account the provisioner made for this tenant (marked with
		// it) is adopted: a realm's own user, a service account or one from
		// a federated directory is not Tenancy's to overwrite or delete.
		return kc, false, fmt.Errorf("%w: user %q of realm %s was not made by Tenancy for this tenant", ErrForeign, username, realm)
	}
	return kc, true, nil
}

// SyncUser makes realm's user of Tenancy user id what directory d says:
// created, updated, with its tenant-wide roles, its sessions ended when it
// was just disabled, or deleted when d no longer has it. Users that came
// through the tenant's login methods (federated, brokered) are Keycloak's
// own and left alone.
func (s *Syncer) SyncUser(ctx context.Context, r Realm, d domain.Directory, id string) (Change, error) {
	if r.Shared() {
		return s.syncMember(ctx, r, d, id)
	}
	return s.syncUser(ctx, r.Name, d, id, nil)
}

func (s *Syncer) syncUser(ctx context.Context, realm string, d domain.Directory, id string, idx *groupIndex) (Change, error) {
	u, ok := d.User(id)
	if !ok {
		return s.deleteUser(ctx, realm, id)
	}
	if why := leftAlone(u); why != "" {
		return Change{"user", id, why}, nil
	}
	kc, found, err := s.findUser(ctx, realm, d.TenantID, id, u.Username)
	if err != nil {
		return Change{}, err
	}
	want := wantUser(d, u, kc)
	action := "unchanged"
	switch {
	case !found:
		if want.ID, err = s.Keycloak.CreateUser(ctx, realm, want); err != nil {
			return Change{}, err
		}
		action = s.welcome(ctx, realm, id, u, want, "created")
	case !sameUser(kc, want):
		if err := s.Keycloak.UpdateUser(ctx, realm, want); err != nil {
			return Change{}, err
		}
		action = "updated"
	}
	if _, err := s.syncRoles(ctx, realm, want.ID, u.Roles); err != nil {
		return Change{}, err
	}
	if idx == nil && (len(d.MembershipsOf(id)) > 0 || found) {
		if idx, err = s.indexGroups(ctx, realm); err != nil {
			return Change{}, err
		}
	}
	if idx != nil {
		if err := s.syncGroups(ctx, realm, d, idx, id, want.ID); err != nil {
			return Change{}, err
		}
	}
	if found && kc.Enabled && !u.Enabled {
		if err := s.Keycloak.LogoutUser(ctx, realm, want.ID); err != nil {
			return Change{}, err
		}
		action = "disabled and logged out"
	}
	return Change{"user", id, action}, nil
}

// welcome emails a new account its required actions when the realms can
// send email, and returns action as it then reads. Best effort: the
// account exists and its required actions stand; an admin can issue a
// temporary password instead.
func (s *Syncer) welcome(ctx context.Context, realm, id string, u domain.User, kc keycloak.User, action string) string {
	e, ok := s.Keycloak.(Emailer)
	if !ok || !s.EmailNewUsers || u.Email == "" {
		return action
	}
	switch err := e.ExecuteActionsEmail(ctx, realm, kc.ID, kc.RequiredActions); {
	case err == nil:
		return action + " and emailed"
	case s.Log != nil:
		s.Log.WarnContext(ctx, "emailing a new user their required actions failed", "realm", realm, "user_id", id, "error", err)
	}
	return action
}

func (s *Syncer) deleteUser(ctx context.Context, realm, id string) (Change, error) {
	kc, found, err := s.Keycloak.FindUserByAttribute(ctx, realm, AttrUserID, id)
	if err != nil || !found {
		return Change{"user", id, "already gone"}, err
	}
	if err := s.Keycloak.DeleteUser(ctx, realm, kc.ID); err != nil && !errors.Is(err, keycloak.ErrNotFound) {
		return Change{}, err
	}
	return Change{"user", id, "deleted"}, nil
}

// syncRoles maps exactly roles of ManagedRoles to the user, and reports
// whether it changed any.
func (s *Syncer) syncRoles(ctx context.Context, realm, kcID string, roles []string) (bool, error) {
	have, err := s.Keycloak.RealmRolesOf(ctx, realm, kcID)
	if err != nil {
		return false, err
	}
	var add, remove []keycloak.Role
	for _, name := range ManagedRoles {
		i := slices.IndexFunc(have, func(r keycloak.Role) bool { return r.Name == name })
		switch want := slices.Contains(roles, name); {
		case want && i < 0:
			r, err := s.Keycloak.GetRole(ctx, realm, name)
			if err != nil {
				return false, fmt.Errorf("realm role %s: %w", name, err)
			}
			add = append(add, r)
		case !want && i >= 0:
			remove = append(remove, have[i])
		}
	}
	if len(add) > 0 {
		if err := s.Keycloak.AddRealmRoles(ctx, realm, kcID, add); err != nil {
			return false, err
		}
	}
	if len(remove) > 0 {
		if err := s.Keycloak.RemoveRealmRoles(ctx, realm, kcID, remove); err != nil {
			return false, err
		}
	}
	return len(add)+len(remove) > 0, nil
}
