package domain

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tenancyhq/tenancy/pkg/events"
)

const dirTenant = "t1"

func userCreated(id, username string, roles ...string) *events.UserCreated {
	return &events.UserCreated{UserID: id, UsernameIndex: index("username", username), Enabled: true, Roles: roles, Source: SourceTenancy,
		Personal: &events.UserPII{Username: username}}
}

func foldDirectory(given []events.Payload) Directory {
	var d Directory
	for i, p := range given {
		d = DirectoryDecider{}.Evolve(d, Recorded{AggregateID: dirTenant, Time: t0.Add(time.Duration(i) * time.Minute), Version: int64(i + 1), Payload: p})
	}
	return d
}

func TestDecideDirectory(t *testing.T) {
	admin := userCreated("u1", "asha", UserRoleTenantAdmin)
	viewer := userCreated("u2", "ravi", UserRoleTenantViewer)
	breakGlass := userCreated("u9", "break-glass", UserRoleTenantAdmin)
	breakGlass.BreakGlass = true
	ou := &events.OrgUnitCreated{ID: "o1", Name: "Sales"}
	sub := &events.OrgUnitCreated{ID: "o2", Name: "North", ParentID: "o1"}
	member := &events.MembershipSet{UserID: "u2", OUID: "o1", Roles: []string{OURoleAdmin}}
	client := &events.ClientCreated{ID: "c1", ClientID: "ci-bot", Enabled: true, SecretVersion: 1}
	cases := []struct {
		name  string
		given []events.Payload
		when  DirectoryCommand
		then  []events.Payload
		err   error
		rule  string
		msg   string
	}{
		{name: "create a user: username lower-cased, personal data sealed, indexes in the clear",
			when: CreateUser{ID: "u1", Username: " Asha ", Email: "Asha@Example.com", Roles: []string{UserRoleTenantAdmin}, Index: index},
			then: []events.Payload{&events.UserCreated{UserID: "u1", UsernameIndex: "idx:username:asha", EmailIndex: "idx:email:asha@example.com", Enabled: true,
				Roles: []string{UserRoleTenantAdmin}, Source: SourceTenancy, Personal: &events.UserPII{Username: "asha", Email: "asha@example.com"}}}},
		{name: "usernames are unique case-insensitively", given: []events.Payload{admin}, when: CreateUser{ID: "u3", Username: "ASHA", Index: index},
			err: ErrConflict, msg: "taken"},
		{name: "emails are unique", given: []events.Payload{admin, &events.UserUpdated{UserID: "u1", Changed: []string{"email"}, EmailIndex: ptr("idx:email:a@x.io")}},
			when: CreateUser{ID: "u3", Username: "other", Email: "A@x.io", Index: index}, err: ErrConflict, msg: "email"},
		{name: "a username the identity provider keeps for service accounts is refused",
			when: CreateUser{ID: "u1", Username: "Service-Account-Export", Index: index}, err: ErrInvalid, msg: "service-account-"},
		{name: "unknown roles and reserved attributes are refused",
			when: CreateUser{ID: "u1", Username: "asha", Roles: []string{"root"}, Attributes: map[string]string{"tenancy.tenant_id": "x"}, Index: index},
			err:  ErrInvalid, msg: "roles"},
		{name: "a repeat of a create changes nothing", given: []events.Payload{admin},
			when: CreateUser{ID: "u1", Username: "asha", Roles: []string{UserRoleTenantAdmin}, Index: index}},
		{name: "the last enabled admin cannot be disabled", given: []events.Payload{admin, viewer},
			when: SetUserEnabled{ID: "u1"}, err: ErrPrecondition, rule: RuleLastAdmin},
		{name: "the last enabled admin cannot be demoted", given: []events.Payload{admin, viewer},
			when: UpdateUser{ID: "u1", Roles: &[]string{UserRoleTenantViewer}}, err: ErrPrecondition, rule: RuleLastAdmin},
		{name: "the last enabled admin cannot be deleted", given: []events.Payload{admin, viewer},
			when: DeleteUser{ID: "u1"}, err: ErrPrecondition, rule: RuleLastAdmin},
		{name: "an admin can be disabled while another remains", given: []events.Payload{admin, userCreated("u3", "meera", UserRoleTenantAdmin)},
			when: SetUserEnabled{ID: "u1", Reason: "left"}, then: []events.Payload{&events.UserDisabled{UserID: "u1", Reason: "left"}}},
		{name: "the last principal cannot go", given: []events.Payload{viewer}, when: DeleteUser{ID: "u2"}, err: ErrPrecondition, rule: RuleLastPrincipal},
		{name: "a client keeps the tenant from zero principals", given: []events.Payload{viewer, client}, when: DeleteUser{ID: "u2"},
			then: []events.Payload{&events.UserDeleted{UserID: "u2"}}},
		{name: "disabling the last enabled client is refused", given: []events.Payload{client}, when: UpdateClient{ID: "c1", Enabled: new(false)},
			err: ErrPrecondition, rule: RuleLastPrincipal},
		{name: "break-glass cannot be deleted", given: []events.Payload{admin, breakGlass}, when: DeleteUser{ID: "u9"},
			err: ErrPrecondition, rule: RuleBreakGlass},
		{name: "break-glass disable needs a reason", given: []events.Payload{admin, breakGlass}, when: SetUserEnabled{ID: "u9"},
			err: ErrInvalid, msg: "reason"},
		{name: "break-glass disable with a reason", given: []events.Payload{admin, breakGlass}, when: SetUserEnabled{ID: "u9", Reason: "drill over"},
			then: []events.Payload{&events.UserDisabled{UserID: "u9", Reason: "drill over"}}},
		{name: "deleting a user removes their memberships in the same append", given: []events.Payload{admin, viewer, ou, member},
			when: DeleteUser{ID: "u2"}, then: []events.Payload{&events.MembershipRemoved{UserID: "u2", OUID: "o1"}, &events.UserDeleted{UserID: "u2"}}},
		{name: "deleting an OU removes its memberships", given: []events.Payload{admin, viewer, ou, member},
			when: DeleteOrgUnit{ID: "o1"}, then: []events.Payload{&events.MembershipRemoved{UserID: "u2", OUID: "o1"}, &events.OrgUnitDeleted{ID: "o1"}}},
		{name: "an OU with children cannot be deleted", given: []events.Payload{ou, sub}, when: DeleteOrgUnit{ID: "o1"},
			err: ErrPrecondition, rule: RuleOUChildren},
		{name: "an OU cannot move under its descendant", given: []events.Payload{ou, sub}, when: UpdateOrgUnit{ID: "o1", ParentID: ptr("o2")},
			err: ErrPrecondition, rule: RuleOUCycle},
		{name: "an OU cannot be its own parent", given: []events.Payload{ou}, when: UpdateOrgUnit{ID: "o1", ParentID: ptr("o1")},
			err: ErrPrecondition, rule: RuleOUCycle},
		{name: "sibling names are unique case-insensitively", given: []events.Payload{ou}, when: CreateOrgUnit{ID: "o3", Name: "sales"},
			err: ErrConflict, msg: "sibling"},
		{name: "the same name under another parent is fine", given: []events.Payload{ou, sub}, when: CreateOrgUnit{ID: "o3", Name: "North"},
			then: []events.Payload{&events.OrgUnitCreated{ID: "o3", Name: "North"}}},
		{name: "depth is bounded", given: deepChain(MaxOUDepth), when: CreateOrgUnit{ID: "deeper", Name: "x", ParentID: "d7"},
			err: ErrPrecondition, rule: RuleOUDepth},
		{name: "role names are reserved for units", given: []events.Payload{ou}, when: CreateOrgUnit{ID: "o3", Name: "Admin", ParentID: "o1"},
			err: ErrInvalid, msg: "reserved"},
		{name: "the first entity of a directory can be a unit", when: CreateOrgUnit{ID: "o1", Name: "Sales"},
			then: []events.Payload{&events.OrgUnitCreated{ID: "o1", Name: "Sales"}}},
		{name: "or a client", when: CreateClient{ID: "c1", ClientID: "ci-bot"},
			then: []events.Payload{&events.ClientCreated{ID: "c1", ClientID: "ci-bot", Enabled: true, SecretVersion: 1}}},
		{name: "membership roles are a set", given: []events.Payload{admin, ou}, when: SetMembership{UserID: "u1", OUID: "o1", Roles: []string{"auditor", "admin", "admin"}},
			then: []events.Payload{&events.MembershipSet{UserID: "u1", OUID: "o1", Roles: []string{"admin", "auditor"}}}},
		{name: "membership of an unknown OU", given: []events.Payload{admin}, when: SetMembership{UserID: "u1", OUID: "o9", Roles: []string{"default"}},
			err: ErrNotFound},
		{name: "Keycloak's own clients are reserved", when: CreateClient{ID: "c2", ClientID: "admin-cli"}, err: ErrInvalid, msg: "own clients"},
		{name: "client ids are unique", given: []events.Payload{client}, when: CreateClient{ID: "c2", ClientID: "ci-bot"}, err: ErrConflict},
		{name: "rotating follows the current version", given: []events.Payload{client}, when: RotateClientSecret{ID: "c1", Version: 3}, err: ErrConflict},
		{name: "a stale If-Match is refused", given: []events.Payload{admin}, when: UpdateUser{ID: "u1", FirstName: ptr("A"), IfVersion: 7},
			err: ErrVersionMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DirectoryDecider{}.Decide(foldDirectory(tc.given), tc.when)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				var re *RuleError
				if tc.rule != "" && (!errors.As(err, &re) || re.Rule != tc.rule) {
					t.Fatalf("err = %v, want rule %s", err, tc.rule)
				}
				if !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.then, got, cmpopts.EquateEmpty()); d != "" {
				t.Fatalf("events (-want +got):\n%s", d)
			}
		})
	}
}

func deepChain(n int) []events.Payload {
	var out []events.Payload
	parent := ""
	for i := range n {
		id := "d" + string(rune('0'+i))
		out = append(out, &events.OrgUnitCreated{ID: id, Name: "level", ParentID: parent})
		parent = id
	}
	return out
}

func TestImportUsers(t *testing.T) {
	given := []events.Payload{userCreated("u1", "asha", UserRoleTenantAdmin)}
	rows := []CreateUser{
		{ID: "n1", Username: "asha", Roles: []string{UserRoleTenantAdmin}, Index: index}, // exists, same values
		{ID: "n2", Username: "ravi", Index: index},
		{ID: "n3", Username: "bad name", Index: index},
		{ID: "n4", Username: "Ravi", Index: index}, // the row before took it
		{ID: "n5", Username: "asha", FirstName: "Other", Index: index},
	}
	d := foldDirectory(given)
	got, err := DirectoryDecider{}.Decide(d, ImportUsers{Rows: rows})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].(*events.UserCreated).UserID != "n2" {
		t.Fatalf("events = %+v, want one create of n2", got)
	}
	after := DirectoryDecider{}.Evolve(d, Recorded{AggregateID: dirTenant, Version: 2, Payload: got[0]})
	want := []string{ImportUnchanged, ImportCreated, ImportFailed, ImportUnchanged, ImportFailed}
	for i, row := range rows {
		outcome, _, err := ImportOutcome(after, row)
		if outcome != want[i] || (outcome == ImportFailed) != (err != nil) {
			t.Errorf("row %d: outcome %s (%v), want %s", i, outcome, err, want[i])
		}
	}
	// A rerun after an interruption creates nothing twice.
	again, err := DirectoryDecider{}.Decide(after, ImportUsers{Rows: rows})
	if err != nil || len(again) != 0 {
		t.Fatalf("rerun: %d events, %v", len(again), err)
	}
}

func TestDirectoryEvolveIsPersistent(t *testing.T) {
	d := foldDirectory([]events.Payload{userCreated("u1", "asha", UserRoleTenantAdmin)})
	next := DirectoryDecider{}.Evolve(d, Recorded{AggregateID: dirTenant, Version: 2, Payload: &events.UserDisabled{UserID: "u1"}})
	if u, _ := d.User("u1"); !u.Enabled || d.EnabledAdmins() != 1 {
		t.Fatal("evolving changed the state it started from")
	}
	if u, _ := next.User("u1"); u.Enabled || next.EnabledAdmins() != 0 || u.Version != 2 {
		t.Fatalf("next = %+v, admins %d", u, next.EnabledAdmins())
	}
}
