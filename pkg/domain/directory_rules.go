package domain

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/tenancyhq/tenancy/pkg/events"
)

func decideUpdateUser(d Directory, c UpdateUser) ([]events.Payload, error) {
	u, ok := d.User(c.ID)
	if !ok {
		return nil, userNotFound(c.ID)
	}
	if err := checkEntityVersion("user", c.IfVersion, u.Version); err != nil {
		return nil, err
	}
	if u.PIIErased {
		return nil, fmt.Errorf("%w: this user's personal data is erased; delete the user", ErrPrecondition)
	}
	next := CreateUser{Username: u.Username, Email: u.Email, FirstName: u.FirstName, LastName: u.LastName, Attributes: u.Attributes,
		Roles: u.Roles, Source: u.Source, RequiredActions: u.RequiredActions}
	apply(&next.Email, c.Email)
	apply(&next.FirstName, c.FirstName)
	apply(&next.LastName, c.LastName)
	apply(&next.Roles, c.Roles)
	apply(&next.RequiredActions, c.RequiredActions)
	if c.Attributes != nil {
		next.Attributes = c.Attributes.Apply(u.Attributes)
	}
	if err := ValidateUser(&next); err != nil {
		return nil, err
	}
	e := &events.UserUpdated{UserID: u.ID}
	personal := next.Email != u.Email || next.FirstName != u.FirstName || next.LastName != u.LastName || !maps.Equal(next.Attributes, u.Attributes)
	if next.Email != u.Email {
		e.Changed = append(e.Changed, "email")
		idx := ""
		if next.Email != "" {
			if c.Index == nil {
				return nil, fmt.Errorf("%w: changing an email needs the blind index key", ErrUnavailable)
			}
			idx = c.Index("email", next.Email)
			if other, taken := d.userByIndex("email/" + idx); taken && other.ID != u.ID {
				return nil, &ConflictError{Field: "email", Value: next.Email, Message: "another user of this tenant has this email; each email belongs to one user"}
			}
		}
		e.EmailIndex = &idx
	}
	if personal {
		e.Changed = append(e.Changed, changedPersonal(u, next)...)
		e.Personal = &events.UserPII{Username: u.Username, Email: next.Email, FirstName: next.FirstName, LastName: next.LastName, Attributes: next.Attributes}
	}
	if !slices.Equal(next.Roles, u.Roles) {
		e.Changed, e.Roles = append(e.Changed, "roles"), &next.Roles
	}
	if !slices.Equal(next.RequiredActions, u.RequiredActions) {
		e.Changed, e.RequiredActions = append(e.Changed, "required_actions"), &next.RequiredActions
	}
	if len(e.Changed) == 0 {
		return nil, nil
	}
	slices.Sort(e.Changed)
	return []events.Payload{e}, nil
}

func apply[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func changedPersonal(u User, next CreateUser) []string {
	var out []string
	if next.FirstName != u.FirstName {
		out = append(out, "first_name")
	}
	if next.LastName != u.LastName {
		out = append(out, "last_name")
	}
	if !maps.Equal(next.Attributes, u.Attributes) {
		out = append(out, "attributes")
	}
	return out
}

func decideSetUserEnabled(d Directory, c SetUserEnabled) ([]events.Payload, error) {
	u, ok := d.User(c.ID)
	if !ok {
		return nil, userNotFound(c.ID)
	}
	if u.BreakGlass && c.Reason == "" {
		return nil, &ValidationError{Fields: []FieldError{{Field: "reason", Message: "is required to disable or enable the break-glass administrator; say why"}}}
	}
	var fe fieldErrors
	checkText(&fe, "reason", c.Reason, false, MaxReason)
	if err := fe.err(); err != nil {
		return nil, err
	}
	switch {
	case u.Enabled == c.Enabled:
		return nil, nil
	case c.Enabled:
		return []events.Payload{&events.UserEnabled{UserID: u.ID, Reason: c.Reason}}, nil
	}
	return []events.Payload{&events.UserDisabled{UserID: u.ID, Reason: c.Reason}}, nil
}

func decideDeleteUser(d Directory, c DeleteUser) ([]events.Payload, error) {
	u, ok := d.User(c.ID)
	if !ok {
		return nil, userNotFound(c.ID)
	}
	if err := checkEntityVersion("user", c.IfVersion, u.Version); err != nil {
		return nil, err
	}
	if u.BreakGlass {
		return nil, &RuleError{Rule: RuleBreakGlass, Message: "the break-glass administrator cannot be deleted, only disabled " +
			"(POST /v1/tenants/{tenant}/users/{id}/disable with a reason)"}
	}
	var out []events.Payload
	for _, m := range d.MembershipsOf(u.ID) {
		out = append(out, &events.MembershipRemoved{UserID: m.UserID, OUID: m.OUID})
	}
	return append(out, &events.UserDeleted{UserID: u.ID}), nil
}

// decideImport decides each row on the state the rows before it lead to,
// skipping the ones that fail or exist already.
func (dd DirectoryDecider) decideImport(d Directory, c ImportUsers) ([]events.Payload, error) {
	if len(c.Rows) > MaxImportRows {
		return nil, &ValidationError{Fields: []FieldError{{Field: "rows", Message: fmt.Sprintf("at most %d rows per batch; split the file", MaxImportRows)}}}
	}
	var out []events.Payload
	cur := d
	for _, row := range c.Rows {
		ps, err := decideCreateUser(cur, row)
		if err != nil || len(ps) == 0 {
			continue
		}
		cur = dd.Evolve(cur, Recorded{AggregateID: d.TenantID, Version: cur.Version + 1, Payload: ps[0]})
		out = append(out, ps...)
	}
	return out, nil
}

func normalised(row CreateUser) CreateUser {
	_ = ValidateUser(&row)
	return row
}

func sameUsername(d Directory, row CreateUser) (User, bool) {
	if row.Index == nil {
		return User{}, false
	}
	return d.UserByUsernameIndex(row.Index("username", NormaliseUsername(row.Username)))
}

// Import outcomes.
const (
	ImportCreated   = "created"
	ImportUnchanged = "unchanged"
	ImportFailed    = "failed"
)

// ImportOutcome says what became of one imported row, judged on the state
// after the import: created (the row's new id is there), unchanged (a
// user with its username and the same values was there), or failed, with
// the problem the row would meet now.
func ImportOutcome(after Directory, row CreateUser) (string, string, error) {
	if u, ok := after.User(row.ID); ok {
		return ImportCreated, u.ID, nil
	}
	if prev, ok := sameUsername(after, row); ok {
		if sameUser(prev, normalised(row)) {
			return ImportUnchanged, prev.ID, nil
		}
		return ImportFailed, prev.ID, &ConflictError{Field: "username", Value: NormaliseUsername(row.Username),
			Message: "a user with this username exists with other values; change it with PATCH /v1/tenants/{tenant}/users/{id}"}
	}
	if _, err := decideCreateUser(after, row); err != nil {
		return ImportFailed, "", err
	}
	return ImportFailed, "", fmt.Errorf("%w: the row was not imported; send it again", ErrUnavailable)
}

func clientNotFound(id string) error {
	return fmt.Errorf("no client with id %q in this tenant: %w", id, ErrNotFound)
}

func checkClient(fe *fieldErrors, name string, roles []string) {
	checkText(fe, "name", name, false, MaxClientName)
	checkSubset(fe, "roles", roles, UserRoles)
}

func decideClient(d Directory, cmd DirectoryCommand) ([]events.Payload, error) {
	switch c := cmd.(type) {
	case CreateClient:
		return decideCreateClient(d, c)
	case UpdateClient:
		return decideUpdateClient(d, c)
	case RotateClientSecret:
		cl, ok := d.Client(c.ID)
		if !ok {
			return nil, clientNotFound(c.ID)
		}
		if c.Version != cl.SecretVersion+1 {
			return nil, &ConflictError{Field: "secret_version", Message: "the secret was rotated concurrently; rotate again"}
		}
		return []events.Payload{&events.ClientSecretRotated{ID: cl.ID, SecretVersion: c.Version}}, nil
	case DeleteClient:
		cl, ok := d.Client(c.ID)
		if !ok {
			return nil, clientNotFound(c.ID)
		}
		if err := checkEntityVersion("client", c.IfVersion, cl.Version); err != nil {
			return nil, err
		}
		return []events.Payload{&events.ClientDeleted{ID: cl.ID, ClientID: cl.ClientID}}, nil
	}
	return nil, nil
}

func decideCreateClient(d Directory, c CreateClient) ([]events.Payload, error) {
	var fe fieldErrors
	c.ClientID = strings.TrimSpace(c.ClientID)
	if c.ClientID == "" {
		fe.add("client_id", "is required")
	} else if !clientIDRE.MatchString(c.ClientID) {
		fe.add("client_id", "must be 3-64 characters of lowercase letters, digits and . _ -, starting and ending with a letter or digit")
	} else if slices.Contains(ReservedClientIDs, c.ClientID) {
		fe.add("client_id", fmt.Sprintf("%q is one of the identity provider's own clients; choose another", c.ClientID))
	}
	checkClient(&fe, c.Name, c.Roles)
	if err := fe.err(); err != nil {
		return nil, err
	}
	enabled := c.Enabled == nil || *c.Enabled
	roles := sortedSet(c.Roles)
	if cl, ok := d.Client(c.ID); ok {
		if cl.ClientID == c.ClientID && cl.Name == c.Name && slices.Equal(cl.Roles, roles) && cl.Enabled == enabled {
			return nil, nil
		}
		return nil, &ConflictError{Field: "id", Value: c.ID, Message: "a client with this id already exists with other values"}
	}
	if _, taken := d.index.Get([]byte("client/" + c.ClientID)); taken {
		return nil, &ConflictError{Field: "client_id", Value: c.ClientID, Message: fmt.Sprintf("client_id %q is taken in this tenant; choose another", c.ClientID)}
	}
	return []events.Payload{&events.ClientCreated{ID: c.ID, ClientID: c.ClientID, Name: c.Name, Roles: roles, Enabled: enabled, SecretVersion: 1}}, nil
}

func decideUpdateClient(d Directory, c UpdateClient) ([]events.Payload, error) {
	cl, ok := d.Client(c.ID)
	if !ok {
		return nil, clientNotFound(c.ID)
	}
	if err := checkEntityVersion("client", c.IfVersion, cl.Version); err != nil {
		return nil, err
	}
	name, roles, enabled := cl.Name, cl.Roles, cl.Enabled
	apply(&name, c.Name)
	apply(&roles, c.Roles)
	apply(&enabled, c.Enabled)
	var fe fieldErrors
	checkClient(&fe, name, roles)
	if err := fe.err(); err != nil {
		return nil, err
	}
	roles = sortedSet(roles)
	e := &events.ClientUpdated{ID: cl.ID}
	if enabled != cl.Enabled {
		e.Changed, e.Enabled = append(e.Changed, "enabled"), &enabled
	}
	if name != cl.Name {
		e.Changed, e.Name = append(e.Changed, "name"), &name
	}
	if !slices.Equal(roles, cl.Roles) {
		e.Changed, e.Roles = append(e.Changed, "roles"), &roles
	}
	if len(e.Changed) == 0 {
		return nil, nil
	}
	return []events.Payload{e}, nil
}

func ouNotFound(id string) error {
	return fmt.Errorf("no org unit with id %q in this tenant: %w", id, ErrNotFound)
}

func decideOrgUnit(d Directory, cmd DirectoryCommand) ([]events.Payload, error) {
	switch c := cmd.(type) {
	case CreateOrgUnit:
		if o, ok := d.OrgUnit(c.ID); ok {
			if o.Name == c.Name && o.Description == c.Description && o.ParentID == c.ParentID {
				return nil, nil
			}
			return nil, &ConflictError{Field: "id", Value: c.ID, Message: "an org unit with this id already exists with other values"}
		}
		if err := checkOrgUnit(d, c.ID, c.Name, c.Description, c.ParentID); err != nil {
			return nil, err
		}
		return []events.Payload{&events.OrgUnitCreated{ID: c.ID, Name: c.Name, Description: c.Description, ParentID: c.ParentID}}, nil
	case UpdateOrgUnit:
		return decideUpdateOrgUnit(d, c)
	case DeleteOrgUnit:
		o, ok := d.OrgUnit(c.ID)
		if !ok {
			return nil, ouNotFound(c.ID)
		}
		if err := checkEntityVersion("org unit", c.IfVersion, o.Version); err != nil {
			return nil, err
		}
		if kids := d.Children(o.ID); len(kids) > 0 {
			return nil, &RuleError{Rule: RuleOUChildren, Message: fmt.Sprintf("org unit %s has %d child org units: move or delete them first", o.ID, len(kids))}
		}
		var out []events.Payload
		for _, m := range d.MembersOf(o.ID) {
			out = append(out, &events.MembershipRemoved{UserID: m.UserID, OUID: m.OUID})
		}
		return append(out, &events.OrgUnitDeleted{ID: o.ID}), nil
	}
	return nil, nil
}

// checkOrgUnit checks an org unit's fields and place: a sibling name
// unique case-insensitively, an existing parent, no cycle, bounded depth.
func checkOrgUnit(d Directory, id, name, description, parentID string) error {
	var fe fieldErrors
	checkText(&fe, "name", name, true, MaxOUName)
	if slices.Contains(OURoles, strings.ToLower(name)) {
		// Each unit's group in the identity provider has a subgroup per
		// role, named after it: a child unit of that name would collide.
		fe.add("name", fmt.Sprintf("%q is reserved: it names a membership role (admin, default, auditor); choose another name", name))
	}
	checkText(&fe, "description", description, false, MaxOUDescription)
	if err := fe.err(); err != nil {
		return err
	}
	if parentID != "" {
		if _, ok := d.OrgUnit(parentID); !ok {
			return &ValidationError{Fields: []FieldError{{Field: "parent_id", Message: "no org unit with this id in this tenant"}}}
		}
		path := d.Path(parentID)
		for _, o := range path {
			if o.ID == id {
				return &RuleError{Rule: RuleOUCycle, Message: "an org unit cannot move under itself or one of its descendants; choose another parent"}
			}
		}
		if len(path)+1+subtreeHeight(d, id) > MaxOUDepth {
			return &RuleError{Rule: RuleOUDepth, Message: fmt.Sprintf("org units nest at most %d deep; choose a parent higher up", MaxOUDepth)}
		}
	}
	if other, ok := d.index.Get(ouNameKey(parentID, name)); ok && other != id {
		return &ConflictError{Field: "name", Value: name, Message: fmt.Sprintf("a sibling org unit is already named %q (names compare case-insensitively); choose another", name)}
	}
	return nil
}

// subtreeHeight is how many levels lie below org unit id (0 for a leaf or
// a unit that does not exist yet).
func subtreeHeight(d Directory, id string) int {
	h := 0
	for _, k := range d.Children(id) {
		h = max(h, 1+subtreeHeight(d, k))
	}
	return h
}

func decideUpdateOrgUnit(d Directory, c UpdateOrgUnit) ([]events.Payload, error) {
	o, ok := d.OrgUnit(c.ID)
	if !ok {
		return nil, ouNotFound(c.ID)
	}
	if err := checkEntityVersion("org unit", c.IfVersion, o.Version); err != nil {
		return nil, err
	}
	name, desc, parent := o.Name, o.Description, o.ParentID
	apply(&name, c.Name)
	apply(&desc, c.Description)
	apply(&parent, c.ParentID)
	if parent == o.ID {
		return nil, &RuleError{Rule: RuleOUCycle, Message: "an org unit cannot be its own parent"}
	}
	if err := checkOrgUnit(d, o.ID, name, desc, parent); err != nil {
		return nil, err
	}
	e := &events.OrgUnitUpdated{ID: o.ID}
	if name != o.Name {
		e.Changed, e.Name = append(e.Changed, "name"), &name
	}
	if desc != o.Description {
		e.Changed, e.Description = append(e.Changed, "description"), &desc
	}
	if parent != o.ParentID {
		e.Changed, e.ParentID = append(e.Changed, "parent_id"), &parent
	}
	if len(e.Changed) == 0 {
		return nil, nil
	}
	return []events.Payload{e}, nil
}

func decideSetMembership(d Directory, c SetMembership) ([]events.Payload, error) {
	if _, ok := d.User(c.UserID); !ok {
		return nil, userNotFound(c.UserID)
	}
	if _, ok := d.OrgUnit(c.OUID); !ok {
		return nil, ouNotFound(c.OUID)
	}
	var fe fieldErrors
	if len(c.Roles) == 0 {
		fe.add("roles", "name at least one role; to end the membership, DELETE it", OURoles...)
	}
	checkSubset(&fe, "roles", c.Roles, OURoles)
	if err := fe.err(); err != nil {
		return nil, err
	}
	roles := sortedSet(c.Roles)
	if m, ok := d.Membership(c.UserID, c.OUID); ok && slices.Equal(m.Roles, roles) {
		return nil, nil
	}
	return []events.Payload{&events.MembershipSet{UserID: c.UserID, OUID: c.OUID, Roles: roles}}, nil
}
