package domain

import (
	"slices"
	"strings"
	"time"

	iradix "github.com/hashicorp/go-immutable-radix/v2"

	"github.com/tenancyhq/tenancy/pkg/events"
)

// Tenant-wide roles a user or client holds in its tenant.
const (
	UserRoleTenantAdmin  = "tenant-admin"
	UserRoleTenantViewer = "tenant-viewer"
)

// UserRoles lists the tenant-wide roles.
var UserRoles = []string{UserRoleTenantAdmin, UserRoleTenantViewer}

// Roles a membership gives its user in one org unit.
const (
	OURoleAdmin   = "admin"
	OURoleDefault = "default"
	OURoleAuditor = "auditor"
)

// OURoles lists the membership roles.
var OURoles = []string{OURoleAdmin, OURoleDefault, OURoleAuditor}

// Where a user came from: made through Tenancy, or arriving through one of
// the tenant's login methods (federation, brokering, SCIM).
const (
	SourceTenancy   = "tenancy"
	SourceFederated = "federated"
	SourceBrokered  = "brokered"
	SourceSCIM      = "scim"
)

// UserSources lists the sources.
var UserSources = []string{SourceTenancy, SourceFederated, SourceBrokered, SourceSCIM}

// RequiredActions are the actions the identity provider makes a user take
// at the next sign-in (Keycloak's names).
var RequiredActions = []string{"VERIFY_EMAIL", "UPDATE_PASSWORD", "CONFIGURE_TOTP", "UPDATE_PROFILE", "TERMS_AND_CONDITIONS"}

// Limits on directory records.
const (
	MaxUsername       = 255
	MaxPersonName     = 255
	MaxUserAttributes = 32
	MaxAttributeValue = 255
	MaxOUName         = 100
	MaxOUDescription  = 1000
	MaxOUDepth        = 8
	MaxClientName     = 200
	MaxReason         = 500
	// MaxImportRows bounds one batch of imported users: each becomes an
	// event, and one append must stay within JetStream's atomic batch limit.
	MaxImportRows = 500
)

// User is one person of a tenant.
type User struct {
	ID              string
	Username        string
	Email           string
	FirstName       string
	LastName        string
	Attributes      map[string]string
	Enabled         bool
	Roles           []string
	BreakGlass      bool
	Source          string
	RequiredActions []string
	UsernameIndex   string
	EmailIndex      string
	// Version counts the events that changed this user (its ETag).
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
	// PIIErased is true when the user's personal data key is gone.
	PIIErased bool
}

// IsAdmin reports whether u holds the tenant-admin role.
func (u User) IsAdmin() bool { return slices.Contains(u.Roles, UserRoleTenantAdmin) }

// Client is a non-browser client (service account) of a tenant.
type Client struct {
	ID            string
	ClientID      string
	Name          string
	Roles         []string
	Enabled       bool
	SecretVersion int
	Version       int64
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// OrgUnit is a grouping the customer controls, in a tree.
type OrgUnit struct {
	ID          string
	Name        string
	Description string
	ParentID    string
	Version     int64
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Membership joins a user to an org unit with roles scoped to that unit.
type Membership struct {
	UserID    string
	OUID      string
	Roles     []string
	UpdatedAt time.Time
}

// Directory is the state of one tenant's directory aggregate: its users,
// clients, org units and memberships. It is persistent (immutable radix
// trees): Evolve returns a new state sharing all but the changed paths, so
// that deciding on a tenant of many thousand users copies almost nothing.
type Directory struct {
	TenantID string
	Version  int64

	users   *iradix.Tree[*User]
	clients *iradix.Tree[*Client]
	ous     *iradix.Tree[*OrgUnit]
	// members holds each membership twice: under "u/<user>/<ou>" and under
	// "o/<ou>/<user>", so both directions are a prefix walk.
	members *iradix.Tree[*Membership]
	// index maps unique values to ids: "username/<blind index>",
	// "email/<blind index>", "client/<client_id>",
	// "ouname/<parent>/<lower-case name>" and "child/<parent>/<child>".
	index *iradix.Tree[string]

	enabledAdmins     int
	enabledPrincipals int
}

// AggregateVersion implements Aggregate.
func (d Directory) AggregateVersion() int64 { return d.Version }

func (d Directory) init() Directory {
	if d.users == nil {
		d.users, d.clients, d.ous = iradix.New[*User](), iradix.New[*Client](), iradix.New[*OrgUnit]()
		d.members, d.index = iradix.New[*Membership](), iradix.New[string]()
	}
	return d
}

// User returns the user with id.
func (d Directory) User(id string) (User, bool) { return lookup(d.users, id) }

// lookup returns the entity with id in tree (a state not yet evolved has
// no trees).
func lookup[T any](tree *iradix.Tree[*T], id string) (T, bool) {
	var zero T
	if tree == nil {
		return zero, false
	}
	v, ok := tree.Get([]byte(id))
	if !ok {
		return zero, false
	}
	return *v, true
}

// all returns every entity of tree, ordered by id.
func all[T any](tree *iradix.Tree[*T]) []T {
	if tree == nil {
		return nil
	}
	out := make([]T, 0, tree.Len())
	tree.Root().Walk(func(_ []byte, v *T) bool {
		out = append(out, *v)
		return false
	})
	return out
}

// UserByUsernameIndex returns the user whose username has the blind index.
func (d Directory) UserByUsernameIndex(idx string) (User, bool) {
	return d.userByIndex("username/" + idx)
}

func (d Directory) userByIndex(key string) (User, bool) {
	if d.index == nil {
		return User{}, false
	}
	id, ok := d.index.Get([]byte(key))
	if !ok {
		return User{}, false
	}
	return d.User(id)
}

// Users returns every user, ordered by id (creation order: ids are
// UUIDv7).
func (d Directory) Users() []User { return all(d.users) }

// Client returns the client with id.
func (d Directory) Client(id string) (Client, bool) { return lookup(d.clients, id) }

// Clients returns every client, ordered by id.
func (d Directory) Clients() []Client { return all(d.clients) }

// OrgUnit returns the org unit with id.
func (d Directory) OrgUnit(id string) (OrgUnit, bool) { return lookup(d.ous, id) }

// OrgUnits returns every org unit, ordered by id.
func (d Directory) OrgUnits() []OrgUnit { return all(d.ous) }

// Children returns the ids of an org unit's children ("" for the top).
func (d Directory) Children(ouID string) []string {
	if d.index == nil {
		return nil
	}
	var out []string
	d.index.Root().WalkPrefix([]byte("child/"+ouID+"/"), func(_ []byte, id string) bool {
		out = append(out, id)
		return false
	})
	return out
}

// Path returns an org unit's ancestry from the top down to it (bounded by
// MaxOUDepth, so a corrupt state cannot loop).
func (d Directory) Path(ouID string) []OrgUnit {
	var rev []OrgUnit
	for id := ouID; id != "" && len(rev) <= MaxOUDepth; {
		o, ok := d.OrgUnit(id)
		if !ok {
			break
		}
		rev = append(rev, o)
		id = o.ParentID
	}
	slices.Reverse(rev)
	return rev
}

// Membership returns a user's membership of an org unit.
func (d Directory) Membership(userID, ouID string) (Membership, bool) {
	if d.members == nil {
		return Membership{}, false
	}
	m, ok := d.members.Get([]byte("u/" + userID + "/" + ouID))
	if !ok {
		return Membership{}, false
	}
	return *m, true
}

// MembershipsOf returns a user's memberships, ordered by org unit id.
func (d Directory) MembershipsOf(userID string) []Membership {
	return d.walkMembers("u/" + userID + "/")
}

// MembersOf returns an org unit's memberships, ordered by user id.
func (d Directory) MembersOf(ouID string) []Membership {
	return d.walkMembers("o/" + ouID + "/")
}

func (d Directory) walkMembers(prefix string) []Membership {
	if d.members == nil {
		return nil
	}
	var out []Membership
	d.members.Root().WalkPrefix([]byte(prefix), func(_ []byte, m *Membership) bool {
		out = append(out, *m)
		return false
	})
	return out
}

// EnabledAdmins returns how many enabled users hold tenant-admin.
func (d Directory) EnabledAdmins() int { return d.enabledAdmins }

// DirectoryDecider decides the commands of a tenant's directory.
type DirectoryDecider struct{}

// Kind implements Decider.
func (DirectoryDecider) Kind() string { return events.AggregateDirectory }

// Evolve implements Decider.
func (DirectoryDecider) Evolve(d Directory, r Recorded) Directory {
	d = d.init()
	if d.TenantID == "" {
		d.TenantID = r.AggregateID
	}
	d.Version = r.Version
	switch p := r.Payload.(type) {
	case *events.UserPasswordIssued:
	case *events.UserCreated, *events.UserUpdated, *events.UserDisabled, *events.UserEnabled, *events.UserDeleted:
		d = d.evolveUser(r)
	case *events.ClientCreated, *events.ClientUpdated, *events.ClientSecretRotated, *events.ClientDeleted:
		d = d.evolveClient(r)
	case *events.OrgUnitCreated, *events.OrgUnitUpdated, *events.OrgUnitDeleted:
		d = d.evolveOrgUnit(r)
	case *events.MembershipSet:
		m := &Membership{UserID: p.UserID, OUID: p.OUID, Roles: slices.Clone(p.Roles), UpdatedAt: r.Time}
		d.members, _, _ = d.members.Insert([]byte("u/"+p.UserID+"/"+p.OUID), m)
		d.members, _, _ = d.members.Insert([]byte("o/"+p.OUID+"/"+p.UserID), m)
	case *events.MembershipRemoved:
		d.members, _, _ = d.members.Delete([]byte("u/" + p.UserID + "/" + p.OUID))
		d.members, _, _ = d.members.Delete([]byte("o/" + p.OUID + "/" + p.UserID))
	}
	return d
}

// countUser adds (sign 1) or removes (sign -1) u from the invariant
// counters.
func (d *Directory) countUser(u *User, sign int) {
	if u == nil || !u.Enabled {
		return
	}
	d.enabledPrincipals += sign
	if u.IsAdmin() {
		d.enabledAdmins += sign
	}
}

func (d Directory) putUser(before, after *User) Directory {
	d.countUser(before, -1)
	if before != nil {
		d.index, _, _ = d.index.Delete([]byte("username/" + before.UsernameIndex))
		if before.EmailIndex != "" {
			d.index, _, _ = d.index.Delete([]byte("email/" + before.EmailIndex))
		}
	}
	if after == nil {
		d.users, _, _ = d.users.Delete([]byte(before.ID))
		return d
	}
	d.countUser(after, 1)
	d.users, _, _ = d.users.Insert([]byte(after.ID), after)
	d.index, _, _ = d.index.Insert([]byte("username/"+after.UsernameIndex), after.ID)
	if after.EmailIndex != "" {
		d.index, _, _ = d.index.Insert([]byte("email/"+after.EmailIndex), after.ID)
	}
	return d
}

func (d Directory) evolveUser(r Recorded) Directory {
	switch p := r.Payload.(type) {
	case *events.UserCreated:
		u := &User{ID: p.UserID, UsernameIndex: p.UsernameIndex, EmailIndex: p.EmailIndex, Enabled: p.Enabled, Roles: slices.Clone(p.Roles),
			BreakGlass: p.BreakGlass, Source: p.Source, RequiredActions: slices.Clone(p.RequiredActions), Version: 1,
			CreatedAt: r.Time, UpdatedAt: r.Time, PIIErased: p.PIIErased}
		u.setPersonal(p.Personal)
		return d.putUser(nil, u)
	case *events.UserUpdated:
		return d.changeUser(p.UserID, r.Time, func(u *User) {
			if p.EmailIndex != nil {
				u.EmailIndex = *p.EmailIndex
			}
			if p.Roles != nil {
				u.Roles = slices.Clone(*p.Roles)
			}
			if p.RequiredActions != nil {
				u.RequiredActions = slices.Clone(*p.RequiredActions)
			}
			u.PIIErased = u.PIIErased || p.PIIErased
			u.setPersonal(p.Personal)
		})
	case *events.UserDisabled:
		return d.changeUser(p.UserID, r.Time, func(u *User) { u.Enabled = false })
	case *events.UserEnabled:
		return d.changeUser(p.UserID, r.Time, func(u *User) { u.Enabled = true })
	case *events.UserDeleted:
		if u, ok := d.users.Get([]byte(p.UserID)); ok {
			return d.putUser(u, nil)
		}
	}
	return d
}

func (u *User) setPersonal(p *events.UserPII) {
	if p == nil {
		return
	}
	u.Username, u.Email, u.FirstName, u.LastName = p.Username, p.Email, p.FirstName, p.LastName
	u.Attributes = p.Attributes
}

func (d Directory) changeUser(id string, at time.Time, change func(*User)) Directory {
	before, ok := d.users.Get([]byte(id))
	if !ok {
		return d
	}
	after := *before
	change(&after)
	after.Version++
	after.UpdatedAt = at
	return d.putUser(before, &after)
}

func (d Directory) putClient(before, after *Client) Directory {
	if before != nil {
		if before.Enabled {
			d.enabledPrincipals--
		}
		d.index, _, _ = d.index.Delete([]byte("client/" + before.ClientID))
	}
	if after == nil {
		d.clients, _, _ = d.clients.Delete([]byte(before.ID))
		return d
	}
	if after.Enabled {
		d.enabledPrincipals++
	}
	d.clients, _, _ = d.clients.Insert([]byte(after.ID), after)
	d.index, _, _ = d.index.Insert([]byte("client/"+after.ClientID), after.ID)
	return d
}

func (d Directory) evolveClient(r Recorded) Directory {
	switch p := r.Payload.(type) {
	case *events.ClientCreated:
		return d.putClient(nil, &Client{ID: p.ID, ClientID: p.ClientID, Name: p.Name, Roles: slices.Clone(p.Roles), Enabled: p.Enabled,
			SecretVersion: p.SecretVersion, Version: 1, CreatedAt: r.Time, UpdatedAt: r.Time})
	case *events.ClientUpdated:
		return d.changeClient(p.ID, r.Time, func(c *Client) {
			if p.Name != nil {
				c.Name = *p.Name
			}
			if p.Roles != nil {
				c.Roles = slices.Clone(*p.Roles)
			}
			if p.Enabled != nil {
				c.Enabled = *p.Enabled
			}
		})
	case *events.ClientSecretRotated:
		return d.changeClient(p.ID, r.Time, func(c *Client) { c.SecretVersion = p.SecretVersion })
	case *events.ClientDeleted:
		if c, ok := d.clients.Get([]byte(p.ID)); ok {
			return d.putClient(c, nil)
		}
	}
	return d
}

func (d Directory) changeClient(id string, at time.Time, change func(*Client)) Directory {
	before, ok := d.clients.Get([]byte(id))
	if !ok {
		return d
	}
	after := *before
	change(&after)
	after.Version++
	after.UpdatedAt = at
	return d.putClient(before, &after)
}

func ouNameKey(parentID, name string) []byte {
	return []byte("ouname/" + parentID + "/" + strings.ToLower(name))
}

func (d Directory) putOrgUnit(before, after *OrgUnit) Directory {
	if before != nil {
		d.index, _, _ = d.index.Delete(ouNameKey(before.ParentID, before.Name))
		d.index, _, _ = d.index.Delete([]byte("child/" + before.ParentID + "/" + before.ID))
	}
	if after == nil {
		d.ous, _, _ = d.ous.Delete([]byte(before.ID))
		return d
	}
	d.ous, _, _ = d.ous.Insert([]byte(after.ID), after)
	d.index, _, _ = d.index.Insert(ouNameKey(after.ParentID, after.Name), after.ID)
	d.index, _, _ = d.index.Insert([]byte("child/"+after.ParentID+"/"+after.ID), after.ID)
	return d
}

func (d Directory) evolveOrgUnit(r Recorded) Directory {
	switch p := r.Payload.(type) {
	case *events.OrgUnitCreated:
		return d.putOrgUnit(nil, &OrgUnit{ID: p.ID, Name: p.Name, Description: p.Description, ParentID: p.ParentID, Version: 1,
			CreatedAt: r.Time, UpdatedAt: r.Time})
	case *events.OrgUnitUpdated:
		before, ok := d.ous.Get([]byte(p.ID))
		if !ok {
			return d
		}
		after := *before
		if p.Name != nil {
			after.Name = *p.Name
		}
		if p.Description != nil {
			after.Description = *p.Description
		}
		if p.ParentID != nil {
			after.ParentID = *p.ParentID
		}
		after.Version++
		after.UpdatedAt = r.Time
		return d.putOrgUnit(before, &after)
	case *events.OrgUnitDeleted:
		if o, ok := d.ous.Get([]byte(p.ID)); ok {
			return d.putOrgUnit(o, nil)
		}
	}
	return d
}
