package events

import (
	"fmt"
	"strings"
)

// Directory event types: what lives inside a tenant (seeds 000 and 002).
// Users, non-browser clients, org units and memberships form one aggregate
// per tenant, the tenant's directory, on the subject
// tenancy.evt.<tenant>.directory.<tenant>: its invariants (the last enabled
// administrator, never zero principals, memberships gone with their user or
// OU, no cycles among OUs) span them all and are decided in one place, on
// one consistent state, and appended atomically.
const (
	TypeUserCreated         = "tenancy.user.created.v1"
	TypeUserUpdated         = "tenancy.user.updated.v1"
	TypeUserDisabled        = "tenancy.user.disabled.v1"
	TypeUserEnabled         = "tenancy.user.enabled.v1"
	TypeUserDeleted         = "tenancy.user.deleted.v1"
	TypeUserPasswordIssued  = "tenancy.user.temporary_password_issued.v1"
	TypeClientCreated       = "tenancy.client.created.v1"
	TypeClientUpdated       = "tenancy.client.updated.v1"
	TypeClientSecretRotated = "tenancy.client.secret_rotated.v1"
	TypeClientDeleted       = "tenancy.client.deleted.v1"
	TypeOrgUnitCreated      = "tenancy.org_unit.created.v1"
	TypeOrgUnitUpdated      = "tenancy.org_unit.updated.v1"
	TypeOrgUnitDeleted      = "tenancy.org_unit.deleted.v1"
	TypeMembershipSet       = "tenancy.membership.set.v1"
	TypeMembershipRemoved   = "tenancy.membership.removed.v1"
)

// AggregateDirectory is the aggregate kind of a tenant's directory in
// subjects; its id is the tenant's id.
const AggregateDirectory = "directory"

// UserPIIScope is the key scope of user id's personal data: each user's
// own, so that erasing one user destroys that key alone.
func UserPIIScope(id string) string { return "user-" + id }

// UserPII is a user's personal data, sealed under the user's own key.
type UserPII struct {
	Username   string            `json:"username"`
	Email      string            `json:"email,omitempty"`
	FirstName  string            `json:"first_name,omitempty"`
	LastName   string            `json:"last_name,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// UserCreated records a new user of the tenant. Username and email are
// personal data (sealed); their blind indexes (keyed HMACs of the
// normalised values) are in the clear so that uniqueness holds even after
// a user's data is erased.
type UserCreated struct {
	UserID          string   `json:"user_id"`
	UsernameIndex   string   `json:"username_index"`
	EmailIndex      string   `json:"email_index,omitempty"`
	Enabled         bool     `json:"enabled"`
	Roles           []string `json:"roles,omitempty"`
	BreakGlass      bool     `json:"break_glass,omitempty"`
	Source          string   `json:"source"`
	RequiredActions []string `json:"required_actions,omitempty"`
	PII             string   `json:"pii,omitempty"`

	Personal  *UserPII `json:"-"`
	PIIErased bool     `json:"-"`
}

// EventType implements Payload.
func (*UserCreated) EventType() string { return TypeUserCreated }

// Summary implements Summarizer.
func (p *UserCreated) Summary() string {
	s := "created user " + p.UserID
	if len(p.Roles) > 0 {
		s += " with roles " + strings.Join(p.Roles, ", ")
	}
	if p.BreakGlass {
		s += " (break-glass)"
	}
	return s
}

// HasPlainPII implements PIIHolder.
func (p *UserCreated) HasPlainPII() bool { return p.Personal != nil }

// OwnScope implements OwnScoped.
func (p *UserCreated) OwnScope() string { return sealedScope(p.PII, p.UserID) }

// SealPII implements PIIHolder: a user's data is sealed under the user's
// own key, whatever scope the aggregate has.
func (p *UserCreated) SealPII(_ string, c PIICipher) error {
	return sealInto(UserPIIScope(p.UserID), c, p.Personal, &p.PII)
}

// OpenPII implements PIIHolder.
func (p *UserCreated) OpenPII(_ string, c PIICipher) error {
	return openInto(UserPIIScope(p.UserID), p.PII, c, &p.PIIErased, func(v UserPII) { p.Personal = &v })
}

// UserUpdated records a change of a user. Only the members named in
// Changed are meaningful; personal members that changed are in the sealed
// PII, which then holds the user's complete personal data.
type UserUpdated struct {
	UserID          string    `json:"user_id"`
	Changed         []string  `json:"changed"`
	EmailIndex      *string   `json:"email_index,omitempty"`
	Roles           *[]string `json:"roles,omitempty"`
	RequiredActions *[]string `json:"required_actions,omitempty"`
	PII             string    `json:"pii,omitempty"`

	Personal  *UserPII `json:"-"`
	PIIErased bool     `json:"-"`
}

// EventType implements Payload.
func (*UserUpdated) EventType() string { return TypeUserUpdated }

// Summary implements Summarizer.
func (p *UserUpdated) Summary() string {
	return "updated user " + p.UserID + ": " + strings.Join(p.Changed, ", ")
}

// HasPlainPII implements PIIHolder.
func (p *UserUpdated) HasPlainPII() bool { return p.Personal != nil }

// OwnScope implements OwnScoped.
func (p *UserUpdated) OwnScope() string { return sealedScope(p.PII, p.UserID) }

// sealedScope is the user's key scope when there is sealed data to open.
func sealedScope(sealed, userID string) string {
	if sealed == "" {
		return ""
	}
	return UserPIIScope(userID)
}

// SealPII implements PIIHolder.
func (p *UserUpdated) SealPII(_ string, c PIICipher) error {
	return sealInto(UserPIIScope(p.UserID), c, p.Personal, &p.PII)
}

// OpenPII implements PIIHolder.
func (p *UserUpdated) OpenPII(_ string, c PIICipher) error {
	return openInto(UserPIIScope(p.UserID), p.PII, c, &p.PIIErased, func(v UserPII) { p.Personal = &v })
}

// UserDisabled records that a user may no longer sign in (their sessions
// are ended in the identity provider).
type UserDisabled struct {
	UserID string `json:"user_id"`
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (*UserDisabled) EventType() string { return TypeUserDisabled }

// Summary implements Summarizer.
func (p *UserDisabled) Summary() string { return withReason("disabled user "+p.UserID, p.Reason) }

// UserEnabled records that a disabled user may sign in again.
type UserEnabled struct {
	UserID string `json:"user_id"`
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (*UserEnabled) EventType() string { return TypeUserEnabled }

// Summary implements Summarizer.
func (p *UserEnabled) Summary() string { return withReason("enabled user "+p.UserID, p.Reason) }

// UserDeleted records that a user is gone; their personal data key is
// destroyed after this event.
type UserDeleted struct {
	UserID string `json:"user_id"`
}

// EventType implements Payload.
func (*UserDeleted) EventType() string { return TypeUserDeleted }

// Summary implements Summarizer.
func (p *UserDeleted) Summary() string { return "deleted user " + p.UserID + "; personal data erased" }

// UserPasswordIssued records that a user was given a temporary password
// in the identity provider (never the password): for realms that cannot
// email users to set one.
type UserPasswordIssued struct {
	UserID string `json:"user_id"`
}

// EventType implements Payload.
func (*UserPasswordIssued) EventType() string { return TypeUserPasswordIssued }

// Summary implements Summarizer.
func (p *UserPasswordIssued) Summary() string {
	return "issued user " + p.UserID + " a temporary password"
}

// ClientCreated records a non-browser client (a service account). Its
// secret is never in an event: SecretVersion names the version kept
// encrypted outside the log.
type ClientCreated struct {
	ID            string   `json:"id"`
	ClientID      string   `json:"client_id"`
	Name          string   `json:"name,omitempty"`
	Roles         []string `json:"roles,omitempty"`
	Enabled       bool     `json:"enabled"`
	SecretVersion int      `json:"secret_version"`
}

// EventType implements Payload.
func (*ClientCreated) EventType() string { return TypeClientCreated }

// Summary implements Summarizer.
func (p *ClientCreated) Summary() string { return "created client " + p.ClientID }

// ClientUpdated records a change of a client; only the members named in
// Changed are meaningful.
type ClientUpdated struct {
	ID      string    `json:"id"`
	Changed []string  `json:"changed"`
	Name    *string   `json:"name,omitempty"`
	Roles   *[]string `json:"roles,omitempty"`
	Enabled *bool     `json:"enabled,omitempty"`
}

// EventType implements Payload.
func (*ClientUpdated) EventType() string { return TypeClientUpdated }

// Summary implements Summarizer.
func (p *ClientUpdated) Summary() string {
	return "updated client " + p.ID + ": " + strings.Join(p.Changed, ", ")
}

// ClientSecretRotated records a new secret version of a client; the old
// one stops working when the identity provider takes the new one.
type ClientSecretRotated struct {
	ID            string `json:"id"`
	SecretVersion int    `json:"secret_version"`
}

// EventType implements Payload.
func (*ClientSecretRotated) EventType() string { return TypeClientSecretRotated }

// Summary implements Summarizer.
func (p *ClientSecretRotated) Summary() string {
	return fmt.Sprintf("rotated the secret of client %s (version %d)", p.ID, p.SecretVersion)
}

// ClientDeleted records that a client is gone; ClientID is the client_id
// it had, by which the identity provider knows it.
type ClientDeleted struct {
	ID       string `json:"id"`
	ClientID string `json:"client_id"`
}

// EventType implements Payload.
func (*ClientDeleted) EventType() string { return TypeClientDeleted }

// Summary implements Summarizer.
func (p *ClientDeleted) Summary() string { return "deleted client " + p.ID }

// OrgUnitCreated records an org unit: a grouping the customer controls,
// at the top of the tree or under ParentID.
type OrgUnitCreated struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	ParentID    string `json:"parent_id,omitempty"`
}

// EventType implements Payload.
func (*OrgUnitCreated) EventType() string { return TypeOrgUnitCreated }

// Summary implements Summarizer.
func (p *OrgUnitCreated) Summary() string { return "created org unit " + p.Name }

// OrgUnitUpdated records a renamed, redescribed or moved org unit; only
// the members named in Changed are meaningful (parent_id "" is the top).
type OrgUnitUpdated struct {
	ID          string   `json:"id"`
	Changed     []string `json:"changed"`
	Name        *string  `json:"name,omitempty"`
	Description *string  `json:"description,omitempty"`
	ParentID    *string  `json:"parent_id,omitempty"`
}

// EventType implements Payload.
func (*OrgUnitUpdated) EventType() string { return TypeOrgUnitUpdated }

// Summary implements Summarizer.
func (p *OrgUnitUpdated) Summary() string {
	return "updated org unit " + p.ID + ": " + strings.Join(p.Changed, ", ")
}

// OrgUnitDeleted records that an org unit (without children) is gone.
type OrgUnitDeleted struct {
	ID string `json:"id"`
}

// EventType implements Payload.
func (*OrgUnitDeleted) EventType() string { return TypeOrgUnitDeleted }

// Summary implements Summarizer.
func (p *OrgUnitDeleted) Summary() string { return "deleted org unit " + p.ID }

// MembershipSet records that a user is a member of an org unit with the
// given roles (a complete set, replacing any before).
type MembershipSet struct {
	UserID string   `json:"user_id"`
	OUID   string   `json:"ou_id"`
	Roles  []string `json:"roles"`
}

// EventType implements Payload.
func (*MembershipSet) EventType() string { return TypeMembershipSet }

// Summary implements Summarizer.
func (p *MembershipSet) Summary() string {
	return fmt.Sprintf("user %s is a member of org unit %s as %s", p.UserID, p.OUID, strings.Join(p.Roles, ", "))
}

// MembershipRemoved records that a user is no longer a member of an org
// unit.
type MembershipRemoved struct {
	UserID string `json:"user_id"`
	OUID   string `json:"ou_id"`
}

// EventType implements Payload.
func (*MembershipRemoved) EventType() string { return TypeMembershipRemoved }

// Summary implements Summarizer.
func (p *MembershipRemoved) Summary() string {
	return fmt.Sprintf("user %s left org unit %s", p.UserID, p.OUID)
}

func withReason(s, reason string) string {
	if reason == "" {
		return s
	}
	return s + ": " + reason
}

func init() {
	register(
		func() Payload { return &UserCreated{} },
		func() Payload { return &UserUpdated{} },
		func() Payload { return &UserDisabled{} },
		func() Payload { return &UserEnabled{} },
		func() Payload { return &UserDeleted{} },
		func() Payload { return &UserPasswordIssued{} },
		func() Payload { return &ClientCreated{} },
		func() Payload { return &ClientUpdated{} },
		func() Payload { return &ClientSecretRotated{} },
		func() Payload { return &ClientDeleted{} },
		func() Payload { return &OrgUnitCreated{} },
		func() Payload { return &OrgUnitUpdated{} },
		func() Payload { return &OrgUnitDeleted{} },
		func() Payload { return &MembershipSet{} },
		func() Payload { return &MembershipRemoved{} },
	)
}
