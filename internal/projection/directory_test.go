package projection_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/projection"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// directoryWorkload runs a tenant's directory through every kind of
// change and returns the ids it named.
func directoryWorkload(t *testing.T, e *env, tenant, prefix string) (deleted string) {
	t.Helper()
	ctx := context.Background()
	dir := e.core.Directory
	user := func(name string, roles ...string) string {
		t.Helper()
		u, _, err := dir.CreateUser(ctx, tenant, domain.CreateUser{Username: prefix + name, Email: name + "@" + prefix + ".test",
			FirstName: strings.ToUpper(name[:1]) + name[1:], LastName: "Doe", Attributes: map[string]string{"dept": "ops"}, Roles: roles}, meta())
		if err != nil {
			t.Fatal(err)
		}
		return u.ID
	}
	do := func(cmd domain.DirectoryCommand) {
		t.Helper()
		if _, err := dir.Do(ctx, tenant, cmd, meta()); err != nil {
			t.Fatalf("%T: %v", cmd, err)
		}
	}
	alice, bob, carol := user("alice", "tenant-admin"), user("bob", "tenant-viewer"), user("carol")
	newEmail, admin := "robert@"+prefix+".test", []string{"tenant-admin"}
	do(domain.UpdateUser{ID: bob, Email: &newEmail, Roles: &admin, Attributes: &domain.MapPatch{Values: map[string]*string{"dept": nil}}})
	do(domain.SetUserEnabled{ID: bob, Enabled: false, Reason: "left"})
	sales, north := prefix+"-sales", prefix+"-north"
	ids := map[string]string{}
	for _, ou := range []struct{ name, parent string }{{sales, ""}, {north, sales}} {
		res, err := dir.Do(ctx, tenant, domain.CreateOrgUnit{ID: app.NewID(), Name: ou.name, ParentID: ids[ou.parent]}, meta())
		if err != nil {
			t.Fatal(err)
		}
		ous := res.State.OrgUnits()
		for _, o := range ous {
			ids[o.Name] = o.ID
		}
	}
	renamed, top := prefix+"-north-east", ""
	do(domain.UpdateOrgUnit{ID: ids[north], Name: &renamed, ParentID: &top})
	do(domain.SetMembership{UserID: alice, OUID: ids[sales], Roles: []string{"admin"}})
	do(domain.SetMembership{UserID: bob, OUID: ids[north], Roles: []string{"default", "auditor"}})
	do(domain.SetMembership{UserID: carol, OUID: ids[sales], Roles: []string{"default"}})
	do(domain.DeleteUser{ID: carol})
	if err := e.core.Keyring.Destroy(ctx, events.UserPIIScope(carol)); err != nil {
		t.Fatal(err)
	}
	bot, _, _, err := dir.CreateClient(ctx, tenant, domain.CreateClient{ClientID: prefix + "-bot", Roles: []string{"tenant-viewer"}}, meta())
	if err != nil {
		t.Fatal(err)
	}
	name := "Nightly export"
	do(domain.UpdateClient{ID: bot.ID, Name: &name})
	if _, _, _, err := dir.RotateClientSecret(ctx, tenant, bot.ID, meta()); err != nil {
		t.Fatal(err)
	}
	gone, _, _, err := dir.CreateClient(ctx, tenant, domain.CreateClient{ClientID: prefix + "-gone"}, meta())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dir.DeleteClient(ctx, tenant, domain.DeleteClient{ID: gone.ID}, meta()); err != nil {
		t.Fatal(err)
	}
	return carol
}

var directoryTableNames = []string{"directory_tenants", "directory_users", "directory_clients", "directory_org_units", "directory_memberships"}

// directoryRows is the read model of one tenant, as comparable strings.
func directoryRows(t *testing.T, e *env, tenant string) []string {
	t.Helper()
	var out []string
	for _, q := range []string{
		`SELECT 'user ' || id || ' ' || username || ' ' || email || ' ' || first_name || ' ' || last_name || ' ' || attributes::text || ' ' ||
			enabled || ' ' || array_to_string(roles, ',') || ' ' || break_glass || ' ' || source || ' ' || version FROM directory_users WHERE tenant_id = $1`,
		`SELECT 'client ' || id || ' ' || client_id || ' ' || name || ' ' || array_to_string(roles, ',') || ' ' || enabled || ' ' ||
			secret_version || ' ' || version FROM directory_clients WHERE tenant_id = $1`,
		`SELECT 'ou ' || id || ' ' || name || ' ' || description || ' parent=' || parent_id || ' ' || version FROM directory_org_units WHERE tenant_id = $1`,
		`SELECT 'member ' || user_id || ' ' || ou_id || ' ' || array_to_string(roles, ',') FROM directory_memberships WHERE tenant_id = $1`,
	} {
		rows, err := e.pool.Query(context.Background(), q, tenant)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		rows.Close()
	}
	slices.Sort(out)
	return out
}

// aggregateRows is what the tenant's directory aggregate holds, in
// directoryRows' form: the read model's oracle.
func aggregateRows(t *testing.T, e *env, tenant string) []string {
	t.Helper()
	d, _, err := e.core.Directory.Load(context.Background(), tenant)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	b := func(v bool) string { return map[bool]string{true: "true", false: "false"}[v] }
	for _, u := range d.Users() {
		attrs := "{}"
		if len(u.Attributes) > 0 {
			var kv []string
			for k, v := range u.Attributes {
				kv = append(kv, `"`+k+`": "`+v+`"`)
			}
			slices.Sort(kv)
			attrs = "{" + strings.Join(kv, ", ") + "}"
		}
		out = append(out, strings.Join([]string{"user", u.ID, u.Username, u.Email, u.FirstName, u.LastName, attrs, b(u.Enabled),
			strings.Join(u.Roles, ","), b(u.BreakGlass), u.Source, strconv.FormatInt(u.Version, 10)}, " "))
	}
	for _, c := range d.Clients() {
		out = append(out, strings.Join([]string{"client", c.ID, c.ClientID, c.Name, strings.Join(c.Roles, ","), b(c.Enabled),
			strconv.Itoa(c.SecretVersion), strconv.FormatInt(c.Version, 10)}, " "))
	}
	for _, o := range d.OrgUnits() {
		out = append(out, strings.Join([]string{"ou", o.ID, o.Name, o.Description, "parent=" + o.ParentID, strconv.FormatInt(o.Version, 10)}, " "))
		for _, m := range d.MembersOf(o.ID) {
			out = append(out, strings.Join([]string{"member", m.UserID, m.OUID, strings.Join(m.Roles, ",")}, " "))
		}
	}
	slices.Sort(out)
	return out
}

// TestDirectoryProjection: two tenants' directories, run through every
// kind of change, are in the read model exactly as their aggregates hold
// them, each under its own tenant; a deleted user leaves no row and no
// personal data; a replay over the rows changes nothing; a rebuild gives
// the same rows.
func TestDirectoryProjection(t *testing.T) {
	e := setup(t)
	stop := e.start(t, projection.Directory{})
	e.start(t, projection.Audit{})
	ctx := context.Background()
	one, two := create(t, e, "dir-one", nil), create(t, e, "dir-two", nil)
	carol := directoryWorkload(t, e, one, "one")
	directoryWorkload(t, e, two, "two")
	// A deleted tenant's directory leaves nothing behind.
	gone := create(t, e, "dir-gone", nil)
	directoryWorkload(t, e, gone, "gone")
	do(t, e, gone, domain.Delete{Confirm: "dir-gone"})
	if n, err := e.core.Directory.EraseUsers(ctx, gone); err != nil || n != 2 {
		t.Fatalf("erasing the deleted tenant's users: %d, %v", n, err)
	}
	e.waitCaughtUp(t, "directory")
	for _, table := range directoryTableNames {
		var n int
		if err := e.pool.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE tenant_id = $1", gone).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s holds %d rows of the deleted tenant (%v)", table, n, err)
		}
	}

	for _, tenant := range []string{one, two} {
		want := aggregateRows(t, e, tenant)
		if len(want) != 7 { // 2 users, 1 client, 2 units, 2 memberships
			t.Fatalf("the workload left only %d entities: %v", len(want), want)
		}
		if diff := cmp.Diff(want, directoryRows(t, e, tenant)); diff != "" {
			t.Errorf("tenant %s: read model differs from the aggregate (-aggregate +read model):\n%s", tenant, diff)
		}
	}
	all := strings.Join(append(directoryRows(t, e, one), directoryRows(t, e, two)...), "\n")
	for _, s := range []string{carol, "onecarol", "carol@one.test"} {
		if strings.Contains(all, s) {
			t.Errorf("the deleted user's %q is still in the read model", s)
		}
	}

	dump := func() map[string][]map[string]any {
		t.Helper()
		out := map[string][]map[string]any{}
		for _, table := range []string{"directory_users", "directory_clients", "directory_org_units"} {
			out[table] = testenv.DumpTable(t, e.pool, table, "id")
		}
		out["directory_memberships"] = testenv.DumpTable(t, e.pool, "directory_memberships", "updated_at")
		return out
	}
	before := dump()
	stop()
	if _, err := e.pool.Exec(ctx, "UPDATE projection_state SET checkpoint = 0 WHERE name = 'directory'"); err != nil {
		t.Fatal(err)
	}
	e.start(t, projection.Directory{})
	e.waitCaughtUp(t, "directory")
	if diff := cmp.Diff(before, dump()); diff != "" {
		t.Errorf("replaying the log over the rows changed them (-before +after):\n%s", diff)
	}

	e.rebuild(t, "directory", 30*time.Second)
	if diff := cmp.Diff(before, dump()); diff != "" {
		t.Errorf("the rebuilt generation differs from the live one (-live +rebuilt):\n%s", diff)
	}

	// The audit trail places org unit events in the tree of their time
	// (the unit moved to the top keeps its earlier path on earlier rows),
	// and a rebuild places them the same.
	e.waitCaughtUp(t, "audit_log")
	var paths int
	if err := e.pool.QueryRow(ctx, "SELECT count(DISTINCT org_unit_path) FROM audit_log WHERE tenant_id = $1 AND org_unit_path IS NOT NULL", one).Scan(&paths); err != nil || paths != 3 {
		t.Errorf("distinct org unit paths: %d (%v), want 3: sales, north under sales (created, and moving away), north at the top", paths, err)
	}
	audit := testenv.DumpTable(t, e.pool, "audit_log", "seq")
	e.rebuild(t, "audit_log", 30*time.Second)
	if diff := cmp.Diff(audit, testenv.DumpTable(t, e.pool, "audit_log", "seq")); diff != "" {
		t.Errorf("the rebuilt audit trail differs (-live +rebuilt):\n%s", diff)
	}
}
