package domain

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/tenancyhq/tenancy/pkg/events"
)

// UniqueIndexer returns the blind index (a keyed HMAC) of a normalised
// value of a kind ("username", "email"); uniqueness is decided on it, so
// the values themselves are never in the clear.
type UniqueIndexer func(kind, value string) string

// Directory rules: a refused command names the one it would break.
const (
	RuleLastAdmin     = "last-admin"
	RuleLastPrincipal = "last-principal"
	RuleBreakGlass    = "break-glass"
	RuleOUChildren    = "org-unit-has-children"
	RuleOUCycle       = "org-unit-cycle"
	RuleOUDepth       = "org-unit-depth"
)

// RuleError refuses a command that would break one of a directory's
// invariants; its message says what to do instead. It is a precondition
// (409).
type RuleError struct {
	Rule    string
	Message string
}

func (e *RuleError) Error() string { return e.Message }

// Is makes errors.Is(err, ErrPrecondition) true.
func (e *RuleError) Is(target error) bool { return target == ErrPrecondition }

var (
	usernameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9._@+-]*$`)
	clientIDRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,62}[a-z0-9]$`)
	attrKeyRE   = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_.-]{0,63}$`)
	reservedKey = "tenancy."
)

// NormaliseUsername returns the form usernames are compared and stored in:
// trimmed and lower-case, as Keycloak keeps them.
func NormaliseUsername(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// NormaliseEmail returns the form emails are compared in.
func NormaliseEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// CreateUser creates a user of the tenant.
type CreateUser struct {
	ID              string
	Username        string
	Email           string
	FirstName       string
	LastName        string
	Attributes      map[string]string
	Enabled         *bool
	Roles           []string
	Source          string
	RequiredActions []string
	// BreakGlass marks the tenant's emergency administrator (the
	// provisioner adopts it; no API sets it).
	BreakGlass bool
	Index      UniqueIndexer
}

// UpdateUser changes a user with merge patch semantics. The username and
// the break-glass mark cannot change.
type UpdateUser struct {
	ID              string
	Email           *string
	FirstName       *string
	LastName        *string
	Attributes      *MapPatch
	Roles           *[]string
	RequiredActions *[]string
	// IfVersion, when non-zero, requires the user at that version.
	IfVersion int64
	Index     UniqueIndexer
}

// SetUserEnabled disables or re-enables a user, with a reason (mandatory
// for the break-glass administrator).
type SetUserEnabled struct {
	ID      string
	Enabled bool
	Reason  string
}

// DeleteUser deletes a user and their memberships.
type DeleteUser struct {
	ID        string
	IfVersion int64
}

// RecordUserPassword records that a user is given a temporary password
// (the password itself is never recorded).
type RecordUserPassword struct {
	ID string
}

// ImportUsers creates many users at once. A row that already exists with
// the same values changes nothing; a row that cannot be created is
// skipped (ImportOutcome says why), so one bad row does not fail the
// batch.
type ImportUsers struct {
	Rows []CreateUser
}

// ServiceAccountPrefix starts the username of every client's service
// account in the identity provider (Keycloak's service-account-<clientId>),
// so no user's username may start with it.
const ServiceAccountPrefix = "service-account-"

// ReservedClientIDs are the clients every realm has (Keycloak's own, and
// the tenant's tenancy-app): a tenant's client cannot take their names.
var ReservedClientIDs = []string{"account", "account-console", "admin-cli", "broker", "realm-management", "security-admin-console", "tenancy-app"}

// CreateClient creates a non-browser client.
type CreateClient struct {
	ID       string
	ClientID string
	Name     string
	Roles    []string
	Enabled  *bool
}

// UpdateClient changes a client with merge patch semantics.
type UpdateClient struct {
	ID        string
	Name      *string
	Roles     *[]string
	Enabled   *bool
	IfVersion int64
}

// RotateClientSecret records a client's next secret version, which must
// follow its current one.
type RotateClientSecret struct {
	ID      string
	Version int
}

// DeleteClient deletes a client.
type DeleteClient struct {
	ID        string
	IfVersion int64
}

// CreateOrgUnit creates an org unit, at the top or under ParentID.
type CreateOrgUnit struct {
	ID          string
	Name        string
	Description string
	ParentID    string
}

// UpdateOrgUnit renames, redescribes or moves an org unit (ParentID set
// to "" moves it to the top).
type UpdateOrgUnit struct {
	ID          string
	Name        *string
	Description *string
	ParentID    *string
	IfVersion   int64
}

// DeleteOrgUnit deletes an org unit without children, and its
// memberships.
type DeleteOrgUnit struct {
	ID        string
	IfVersion int64
}

// SetMembership makes a user a member of an org unit with roles (adding
// or replacing).
type SetMembership struct {
	UserID, OUID string
	Roles        []string
}

// RemoveMembership ends a user's membership of an org unit.
type RemoveMembership struct {
	UserID, OUID string
}

// DirectoryCommand is a command the Directory aggregate decides.
type DirectoryCommand interface {
	directoryCommand()
}

func (CreateUser) directoryCommand()         {}
func (UpdateUser) directoryCommand()         {}
func (SetUserEnabled) directoryCommand()     {}
func (DeleteUser) directoryCommand()         {}
func (ImportUsers) directoryCommand()        {}
func (RecordUserPassword) directoryCommand() {}
func (CreateClient) directoryCommand()       {}
func (UpdateClient) directoryCommand()       {}
func (RotateClientSecret) directoryCommand() {}
func (DeleteClient) directoryCommand()       {}
func (CreateOrgUnit) directoryCommand()      {}
func (UpdateOrgUnit) directoryCommand()      {}
func (DeleteOrgUnit) directoryCommand()      {}
func (SetMembership) directoryCommand()      {}
func (RemoveMembership) directoryCommand()   {}

// Decide implements Decider. Every decision is checked against the
// directory's invariants on the state it leads to.
func (dd DirectoryDecider) Decide(d Directory, cmd DirectoryCommand) ([]events.Payload, error) {
	// A directory without events has no trees yet; the lookups need them.
	d = d.init()
	out, err := dd.decide(d, cmd)
	if err != nil || len(out) == 0 {
		return nil, err
	}
	after := d
	for i, p := range out {
		after = dd.Evolve(after, Recorded{AggregateID: d.TenantID, Version: d.Version + int64(i) + 1, Payload: p})
	}
	if err := checkInvariants(d, after); err != nil {
		return nil, err
	}
	return out, nil
}

func (dd DirectoryDecider) decide(d Directory, cmd DirectoryCommand) ([]events.Payload, error) {
	switch c := cmd.(type) {
	case CreateUser:
		return decideCreateUser(d, c)
	case UpdateUser:
		return decideUpdateUser(d, c)
	case SetUserEnabled:
		return decideSetUserEnabled(d, c)
	case DeleteUser:
		return decideDeleteUser(d, c)
	case ImportUsers:
		return dd.decideImport(d, c)
	case RecordUserPassword:
		u, ok := d.User(c.ID)
		switch {
		case !ok:
			return nil, userNotFound(c.ID)
		case !u.Enabled:
			return nil, fmt.Errorf("%w: user %s is disabled; enable it first", ErrPrecondition, c.ID)
		case u.Source != SourceTenancy:
			return nil, fmt.Errorf("%w: user %s signs in through the tenant's %s login; its password is not Tenancy's to set", ErrPrecondition, c.ID, u.Source)
		}
		return []events.Payload{&events.UserPasswordIssued{UserID: c.ID}}, nil
	case CreateClient, UpdateClient, RotateClientSecret, DeleteClient:
		return decideClient(d, cmd)
	case CreateOrgUnit, UpdateOrgUnit, DeleteOrgUnit:
		return decideOrgUnit(d, cmd)
	case SetMembership:
		return decideSetMembership(d, c)
	case RemoveMembership:
		if _, ok := d.Membership(c.UserID, c.OUID); !ok {
			return nil, fmt.Errorf("user %s is not a member of org unit %s: %w", c.UserID, c.OUID, ErrNotFound)
		}
		return []events.Payload{&events.MembershipRemoved{UserID: c.UserID, OUID: c.OUID}}, nil
	}
	return nil, fmt.Errorf("%w: unknown directory command %T", ErrInvalid, cmd)
}

// checkInvariants refuses a state that lost the tenant's last enabled
// administrator or its last enabled principal.
func checkInvariants(before, after Directory) error {
	if before.enabledAdmins > 0 && after.enabledAdmins == 0 {
		return &RuleError{Rule: RuleLastAdmin, Message: "this is the tenant's last enabled user with the tenant-admin role: " +
			"give another enabled user tenant-admin first (PATCH /v1/tenants/{tenant}/users/{id} with roles), then retry"}
	}
	if before.enabledPrincipals > 0 && after.enabledPrincipals == 0 {
		return &RuleError{Rule: RuleLastPrincipal, Message: "a tenant keeps at least one enabled user or client: " +
			"create or enable another one first, then retry"}
	}
	return nil
}

func userNotFound(id string) error {
	return fmt.Errorf("no user with id %q in this tenant: %w", id, ErrNotFound)
}

func checkEntityVersion(kind string, want, have int64) error {
	if want != 0 && want != have {
		return &VersionMismatchError{Expected: want, Actual: have, Kind: kind}
	}
	return nil
}

// ValidateUser checks a new user's fields, normalising the username and
// email.
func ValidateUser(c *CreateUser) error {
	var fe fieldErrors
	c.Username, c.Email = NormaliseUsername(c.Username), NormaliseEmail(c.Email)
	switch {
	case c.Username == "":
		fe.add("username", "is required")
	case len(c.Username) > MaxUsername || !usernameRE.MatchString(c.Username):
		fe.add("username", fmt.Sprintf("must be 1-%d characters of letters, digits and . _ @ + -, starting with a letter or digit (compared case-insensitively)", MaxUsername))
	case strings.HasPrefix(c.Username, ServiceAccountPrefix):
		fe.add("username", fmt.Sprintf("must not start with %q: the identity provider names clients' service accounts so; choose another", ServiceAccountPrefix))
	}
	if c.Email != "" {
		checkEmail(&fe, "email", c.Email)
	}
	checkText(&fe, "first_name", c.FirstName, false, MaxPersonName)
	checkText(&fe, "last_name", c.LastName, false, MaxPersonName)
	checkAttributes(&fe, c.Attributes)
	checkSubset(&fe, "roles", c.Roles, UserRoles)
	checkSubset(&fe, "required_actions", c.RequiredActions, RequiredActions)
	if c.Source == "" {
		c.Source = SourceTenancy
	}
	if !slices.Contains(UserSources, c.Source) {
		fe.add("source", fmt.Sprintf("unknown source %q", c.Source), UserSources...)
	}
	c.Roles, c.RequiredActions = sortedSet(c.Roles), sortedSet(c.RequiredActions)
	return fe.err()
}

func checkAttributes(fe *fieldErrors, attrs map[string]string) {
	if len(attrs) > MaxUserAttributes {
		fe.add("attributes", fmt.Sprintf("at most %d attributes", MaxUserAttributes))
		return
	}
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		switch {
		case !attrKeyRE.MatchString(k):
			fe.add("attributes."+k, "names must be 1-64 characters of letters, digits and _ . -, starting with a letter")
		case strings.HasPrefix(k, reservedKey):
			fe.add("attributes."+k, "names starting with tenancy. are reserved for Tenancy's own attributes")
		default:
			checkText(fe, "attributes."+k, attrs[k], false, MaxAttributeValue)
		}
	}
}

func checkSubset(fe *fieldErrors, field string, got, allowed []string) {
	for _, v := range got {
		if !slices.Contains(allowed, v) {
			fe.add(field, fmt.Sprintf("unknown value %q", v), allowed...)
			return
		}
	}
}

// sortedSet returns vs sorted without repeats (nil when empty), so that
// equal sets compare equal.
func sortedSet(vs []string) []string {
	if len(vs) == 0 {
		return nil
	}
	out := slices.Clone(vs)
	slices.Sort(out)
	return slices.Compact(out)
}

func newUserEvent(c CreateUser) *events.UserCreated {
	enabled := c.Enabled == nil || *c.Enabled
	e := &events.UserCreated{UserID: c.ID, UsernameIndex: c.Index("username", c.Username), Enabled: enabled, Roles: c.Roles,
		BreakGlass: c.BreakGlass, Source: c.Source, RequiredActions: c.RequiredActions,
		Personal: &events.UserPII{Username: c.Username, Email: c.Email, FirstName: c.FirstName, LastName: c.LastName, Attributes: c.Attributes}}
	if c.Email != "" {
		e.EmailIndex = c.Index("email", c.Email)
	}
	return e
}

func decideCreateUser(d Directory, c CreateUser) ([]events.Payload, error) {
	if c.Index == nil {
		return nil, fmt.Errorf("%w: creating users needs the blind index key", ErrUnavailable)
	}
	if err := ValidateUser(&c); err != nil {
		return nil, err
	}
	if u, ok := d.User(c.ID); ok {
		if sameUser(u, c) {
			return nil, nil
		}
		return nil, &ConflictError{Field: "id", Value: c.ID, Message: "a user with this id already exists with other values"}
	}
	e := newUserEvent(c)
	if _, taken := d.UserByUsernameIndex(e.UsernameIndex); taken {
		return nil, &ConflictError{Field: "username", Value: c.Username,
			Message: fmt.Sprintf("username %q is taken in this tenant (usernames are compared case-insensitively); choose another", c.Username)}
	}
	if e.EmailIndex != "" {
		if _, taken := d.userByIndex("email/" + e.EmailIndex); taken {
			return nil, &ConflictError{Field: "email", Value: c.Email, Message: "another user of this tenant has this email; each email belongs to one user"}
		}
	}
	return []events.Payload{e}, nil
}

// sameUser reports whether u is what c would create (a repeat).
func sameUser(u User, c CreateUser) bool {
	enabled := c.Enabled == nil || *c.Enabled
	return u.Username == c.Username && u.Email == c.Email && u.FirstName == c.FirstName && u.LastName == c.LastName &&
		maps.Equal(u.Attributes, c.Attributes) && u.Enabled == enabled && slices.Equal(u.Roles, c.Roles) && u.Source == c.Source &&
		u.BreakGlass == c.BreakGlass && (len(c.RequiredActions) == 0 || slices.Equal(u.RequiredActions, c.RequiredActions))
}
