package realmsync

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/tenancyhq/tenancy/internal/keycloak"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// A tenant placed in the shared realm is an organization there, not a
// realm: its users are accounts of the shared realm, members of its
// organization, and one account may belong to several tenants (the
// provisioner makes a person who administers several organizations one
// account). So nothing per tenant may live where the realm's other
// tenants would see or share it:
//   - no realm roles (the shared realm's roles are the shared tenant's)
//     and no groups (a realm's groups are visible realm-wide): the user's
//     roles and memberships in the tenant travel as a domain.Grant, one
//     value of the account's tenancy.grants attribute per tenant, which the
//     realm's tokens carry as the tenancy claim;
//   - the account's tenancy.tenant_id and tenancy.user_id list every
//     tenant and directory user it stands for, and it is deleted with the
//     last of them;
//   - a username is unique in the whole realm, so a username another
//     tenant's account holds is refused (ErrForeign), never taken over;
//   - disabling a user disables its grant, and the account (ending its
//     sessions) only when no tenant it belongs to still has it enabled.

// AttrGrants is the multivalued user attribute holding an account's
// grants in the shared realm, one JSON domain.Grant per tenant.
const AttrGrants = "tenancy.grants"

// Realm is where a tenant's directory lives in Keycloak.
type Realm struct {
	// Name is the Keycloak realm.
	Name string
	// Organization is the alias of the tenant's organization when the
	// tenant is placed in the shared realm Name; empty for a realm of its
	// own.
	Organization string
	// Suspended is set for a suspended or archived tenant in the shared
	// realm, whose realm cannot be disabled as a whole: its clients are
	// disabled instead (its users are, through its organization).
	Suspended bool
}

// Shared reports whether the tenant is an organization of the shared realm.
func (r Realm) Shared() bool { return r.Organization != "" }

func (r Realm) String() string {
	if r.Shared() {
		return r.Name + " (organization " + r.Organization + ")"
	}
	return r.Name
}

// grantsOf reads an account's grants; a value that is not a grant is
// dropped (it is Tenancy's attribute, rewritten whole).
func grantsOf(kc keycloak.User) []domain.Grant {
	var out []domain.Grant
	for _, v := range kc.Attributes[AttrGrants] {
		var g domain.Grant
		if json.Unmarshal([]byte(v), &g) == nil && g.TenantID != "" {
			out = append(out, g)
		}
	}
	return out
}

// withGrants returns kc's attributes with grants and the tenant and user
// ids they stand for, plus the extra tenant ids kept (tenants the
// provisioner marked the account for that have no grant yet).
func withGrants(kc keycloak.User, grants []domain.Grant, extraTenants []string) map[string][]string {
	attrs := map[string][]string{}
	for k, v := range kc.Attributes {
		attrs[k] = v
	}
	tenants, users, values := slices.Clone(extraTenants), []string{}, []string{}
	for _, g := range grants {
		b, _ := json.Marshal(g)
		values = append(values, string(b))
		if !slices.Contains(tenants, g.TenantID) {
			tenants = append(tenants, g.TenantID)
		}
		users = append(users, g.UserID)
	}
	slices.Sort(tenants)
	slices.Sort(users)
	for k, v := range map[string][]string{AttrGrants: values, AttrTenantID: tenants, AttrUserID: users} {
		if len(v) == 0 {
			delete(attrs, k)
		} else {
			attrs[k] = v
		}
	}
	return attrs
}

// ungranted returns the tenant ids kc lists that have no grant: tenants
// the provisioner made the account administrator of before their
// directories were synced.
func ungranted(kc keycloak.User, grants []domain.Grant) []string {
	return slices.DeleteFunc(slices.Clone(kc.Attributes[AttrTenantID]), func(id string) bool {
		return slices.ContainsFunc(grants, func(g domain.Grant) bool { return g.TenantID == id })
	})
}

// setGrant returns grants with g in place of the tenant's grant.
func setGrant(grants []domain.Grant, g domain.Grant) []domain.Grant {
	out := append(slices.DeleteFunc(slices.Clone(grants), func(h domain.Grant) bool { return h.TenantID == g.TenantID }), g)
	slices.SortFunc(out, func(a, b domain.Grant) int { return cmp.Compare(a.TenantID, b.TenantID) })
	return out
}

// accountEnabled: an account signs in while any tenant it belongs to has
// it enabled (a tenant without a grant yet made it administrator).
func accountEnabled(grants []domain.Grant, extraTenants []string) bool {
	return len(extraTenants) > 0 || slices.ContainsFunc(grants, func(g domain.Grant) bool { return g.Enabled })
}

// findMember finds the shared realm's account of directory user id: by
// its tenancy.user_id, or else by username, adopted only when the
// provisioner marked it with the tenant and no other user of the tenant
// holds it.
func (s *Syncer) findMember(ctx context.Context, r Realm, tenantID, id, username string) (keycloak.User, bool, error) {
	kc, found, err := s.Keycloak.FindUserByAttribute(ctx, r.Name, AttrUserID, id)
	if err != nil || found {
		return kc, found, err
	}
	kc, found, err = s.Keycloak.FindUser(ctx, r.Name, username)
	if err != nil || !found {
		return kc, found, err
	}
	if !slices.Contains(kc.Attributes[AttrTenantID], tenantID) {
		return kc, false, fmt.Errorf("%w: the shared realm %s already has a user %q of another tenant, and usernames are unique across the realm; give this user another username",
			ErrForeign, r.Name, username)
	}
	if i := slices.IndexFunc(grantsOf(kc), func(g domain.Grant) bool { return g.TenantID == tenantID }); i >= 0 {
		return kc, false, fmt.Errorf("%w: user %q of the shared realm %s is another user of this tenant", ErrForeign, username, r.Name)
	}
	return kc, true, nil
}

// organization returns the id of the tenant's organization, refusing one
// of that alias that is not the tenant's.
func (s *Syncer) organization(ctx context.Context, r Realm, tenantID string) (string, error) {
	o, ok, err := s.Keycloak.FindOrganization(ctx, r.Name, r.Organization)
	switch {
	case err != nil:
		return "", err
	case !ok:
		return "", fmt.Errorf("%w: the shared realm %s has no organization %s yet (the activation makes it); will retry", errNoOrganization, r.Name, r.Organization)
	case !slices.Contains(o.Attributes[AttrTenantID], tenantID):
		return "", fmt.Errorf("%w: organization %s of the shared realm %s is not this tenant's", ErrForeign, r.Organization, r.Name)
	}
	return o.ID, nil
}

// syncMember is SyncUser for a tenant in the shared realm.
func (s *Syncer) syncMember(ctx context.Context, r Realm, d domain.Directory, id string) (Change, error) {
	u, ok := d.User(id)
	if !ok {
		return s.releaseMember(ctx, r, d.TenantID, id)
	}
	if why := leftAlone(u); why != "" {
		return Change{"user", id, why}, nil
	}
	orgID, err := s.organization(ctx, r, d.TenantID)
	if err != nil {
		return Change{}, err
	}
	kc, found, err := s.findMember(ctx, r, d.TenantID, id, u.Username)
	if err != nil {
		return Change{}, err
	}
	grants := setGrant(grantsOf(kc), domain.GrantOf(d, u, r.Organization))
	extra := ungranted(kc, grants)
	want := kc
	if !found || len(grants) == 1 && len(extra) == 0 {
		// The tenant's alone: its directory says who the account is.
		// An account of several tenants is the person's, left as it is.
		want.Username, want.Email, want.FirstName, want.LastName = u.Username, u.Email, u.FirstName, u.LastName
	}
	want.Enabled, want.Attributes = accountEnabled(grants, extra), withGrants(kc, grants, extra)
	action := "unchanged"
	switch {
	case !found:
		want.RequiredActions = newUserActions(u)
		if want.ID, err = s.Keycloak.CreateUser(ctx, r.Name, want); err != nil {
			return Change{}, err
		}
		action = "created"
	case !sameUser(kc, want):
		if err := s.Keycloak.UpdateUser(ctx, r.Name, want); err != nil {
			return Change{}, err
		}
		action = "updated"
	}
	// A user the tenant disabled leaves its organization, so that the
	// organization claim, which the tenant's other applications trust,
	// drops it too.
	if u.Enabled {
		err = s.Keycloak.AddOrganizationMember(ctx, r.Name, orgID, want.ID)
	} else {
		err = s.Keycloak.RemoveOrganizationMember(ctx, r.Name, orgID, want.ID)
	}
	if err != nil && !errors.Is(err, keycloak.ErrConflict) && !errors.Is(err, keycloak.ErrNotFound) {
		return Change{}, err
	}
	if !found {
		return Change{"user", id, s.welcome(ctx, r.Name, id, u, want, action)}, nil
	}
	if kc.Enabled && !want.Enabled {
		if err := s.Keycloak.LogoutUser(ctx, r.Name, want.ID); err != nil {
			return Change{}, err
		}
		action = "disabled and logged out"
	}
	return Change{"user", id, action}, nil
}

// releaseMember takes a deleted directory user's tenant off its account:
// the account leaves the organization, and is deleted when it stands for
// no other tenant.
func (s *Syncer) releaseMember(ctx context.Context, r Realm, tenantID, id string) (Change, error) {
	kc, found, err := s.Keycloak.FindUserByAttribute(ctx, r.Name, AttrUserID, id)
	if err != nil || !found {
		return Change{"user", id, "already gone"}, err
	}
	orgID, err := s.orgIfAny(ctx, r, tenantID)
	if err != nil {
		return Change{}, err
	}
	return s.release(ctx, r, orgID, kc, tenantID, id)
}

// orgIfAny returns the id of the tenant's organization, or "" when there
// is none of the tenant's (being deleted, or never made).
func (s *Syncer) orgIfAny(ctx context.Context, r Realm, tenantID string) (string, error) {
	id, err := s.organization(ctx, r, tenantID)
	if errors.Is(err, ErrForeign) || errors.Is(err, errNoOrganization) {
		return "", nil
	}
	return id, err
}

// errNoOrganization reports a tenant whose organization is not there
// (yet): a retry may find it.
var errNoOrganization = errors.New("no organization")

// release takes the tenant off account kc (and out of organization orgID,
// if any).
func (s *Syncer) release(ctx context.Context, r Realm, orgID string, kc keycloak.User, tenantID, id string) (Change, error) {
	grants := slices.DeleteFunc(grantsOf(kc), func(g domain.Grant) bool { return g.TenantID == tenantID })
	extra := slices.DeleteFunc(ungranted(kc, grants), func(t string) bool { return t == tenantID })
	if len(grants) == 0 && len(extra) == 0 {
		if err := s.Keycloak.DeleteUser(ctx, r.Name, kc.ID); err != nil && !errors.Is(err, keycloak.ErrNotFound) {
			return Change{}, err
		}
		return Change{"user", id, "deleted"}, nil
	}
	if orgID != "" {
		if err := s.Keycloak.RemoveOrganizationMember(ctx, r.Name, orgID, kc.ID); err != nil && !errors.Is(err, keycloak.ErrNotFound) {
			return Change{}, err
		}
	}
	want := kc
	want.Enabled, want.Attributes = accountEnabled(grants, extra), withGrants(kc, grants, extra)
	if err := s.Keycloak.UpdateUser(ctx, r.Name, want); err != nil {
		return Change{}, err
	}
	if kc.Enabled && !want.Enabled {
		// Its other tenants have it disabled: now it signs in nowhere.
		if err := s.Keycloak.LogoutUser(ctx, r.Name, kc.ID); err != nil {
			return Change{}, err
		}
	}
	return Change{"user", id, "removed from the organization; the account stays for its other tenants"}, nil
}

// staleGrant is an account holding a grant of a user its tenant's
// directory no longer has.
type staleGrant struct {
	account keycloak.User
	userID  string
}

// staleGrants lists the accounts of the shared realm whose grant in d's
// tenant names a user d does not have.
func (s *Syncer) staleGrants(ctx context.Context, r Realm, d domain.Directory) ([]staleGrant, error) {
	var out []staleGrant
	for first := 0; ; first += 100 {
		users, err := s.Keycloak.UsersByAttribute(ctx, r.Name, AttrTenantID, d.TenantID, first, 100)
		if err != nil {
			return nil, err
		}
		for _, kc := range users {
			for _, g := range grantsOf(kc) {
				if _, ok := d.User(g.UserID); g.TenantID == d.TenantID && !ok {
					out = append(out, staleGrant{account: kc, userID: g.UserID})
				}
			}
		}
		if len(users) < 100 {
			return out, nil
		}
	}
}

// Released is what ReleaseTenant did.
type Released struct {
	// Deleted accounts were the tenant's alone; Kept ones stay for their
	// other tenants.
	Deleted, Kept int
	// Clients is how many of the tenant's clients it deleted.
	Clients int
}

// ReleaseTenant takes a deleted tenant off every account of the shared
// realm that stands for it (accounts of that tenant alone are deleted,
// the others keep their other tenants) and deletes its clients.
func (s *Syncer) ReleaseTenant(ctx context.Context, r Realm, tenantID string) (Released, error) {
	var out Released
	orgID, err := s.orgIfAny(ctx, r, tenantID)
	if err != nil {
		return out, err
	}
	// Each pass takes the tenant off what it finds, so the search shrinks;
	// a pass that finds an account again made no progress (a realm that
	// will not let go), and stops rather than loop.
	seen := map[string]bool{}
	for {
		users, err := s.Keycloak.UsersByAttribute(ctx, r.Name, AttrTenantID, tenantID, 0, 100)
		if err != nil {
			return out, err
		}
		if len(users) == 0 {
			break
		}
		for _, kc := range users {
			if seen[kc.ID] {
				return out, fmt.Errorf("the shared realm %s still lists tenant %s on user %s after taking it off", r.Name, tenantID, kc.ID)
			}
			seen[kc.ID] = true
			id := ""
			for _, g := range grantsOf(kc) {
				if g.TenantID == tenantID {
					id = g.UserID
				}
			}
			c, err := s.release(ctx, r, orgID, kc, tenantID, id)
			if err != nil {
				return out, err
			}
			if c.Action == "deleted" {
				out.Deleted++
			} else {
				out.Kept++
			}
		}
	}
	n, err := s.deleteClients(ctx, r, tenantID)
	out.Clients = n
	return out, err
}

// deleteClients deletes the realm's clients marked with the tenant.
// Keycloak searches client attributes only where configured to, so every
// client is read.
func (s *Syncer) deleteClients(ctx context.Context, r Realm, tenantID string) (int, error) {
	var theirs []string
	for first := 0; ; first += 100 {
		page, err := s.Keycloak.Clients(ctx, r.Name, first, 100)
		if err != nil {
			return 0, err
		}
		for _, cl := range page {
			if cl.Attributes[AttrTenantID] == tenantID {
				theirs = append(theirs, cl.ID)
			}
		}
		if len(page) < 100 {
			break
		}
	}
	for _, id := range theirs {
		if err := s.Keycloak.DeleteClient(ctx, r.Name, id); err != nil && !errors.Is(err, keycloak.ErrNotFound) {
			return 0, err
		}
	}
	return len(theirs), nil
}
