package httpapi_test

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

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/delivery/secrets"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"

	"github.com/tenancyhq/tenancy/internal/auth"
)

// dir is one tenant with a directory to test against: an admin, a viewer,
// an org unit with a child, and a client.
type dir struct {
	tenant, admin, viewer, ou, child, client string
}

func (h *harness) directoryOf(t testing.TB, slug string) dir {
	t.Helper()
	d := dir{tenant: h.create(t, tenantBody(slug))["id"].(string)}
	base := "/v1/tenants/" + d.tenant
	d.admin = h.created(t, base+"/users", map[string]any{"username": slug + "-admin", "email": "admin@" + slug + ".test", "roles": []string{"tenant-admin"}})["id"].(string)
	d.viewer = h.created(t, base+"/users", map[string]any{"username": slug + "-viewer", "first_name": "Vera", "roles": []string{"tenant-viewer"}})["id"].(string)
	d.ou = h.created(t, base+"/org-units", map[string]any{"name": "Sales"})["id"].(string)
	d.child = h.created(t, base+"/org-units", map[string]any{"name": "North", "parent_id": d.ou})["id"].(string)
	d.client = h.created(t, base+"/clients", map[string]any{"client_id": slug + "-bot", "roles": []string{"tenant-viewer"}})["id"].(string)
	return d
}

// listed reads a listing from the read model once it holds every write
// so far, and returns its items. A read model still being built (503)
// is waited out.
func (h *harness) listed(t testing.TB, path, token string) []any {
	t.Helper()
	seq := h.lastSeq(t)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r := h.status(t, "GET", fmt.Sprintf("%s%smin_seq=%d", path, sep(path), seq), token, nil)
		if r.Status == http.StatusServiceUnavailable && time.Now().Before(deadline) {
			continue
		}
		if r.Status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
		}
		return r.json(t)["items"].([]any)
	}
}

func (h *harness) status(t testing.TB, method, path, token string, body any) response {
	t.Helper()
	r := req{method: method, path: path, token: token, body: body}
	if method == "PATCH" {
		r.contentType = "application/merge-patch+json"
	}
	return h.do(t, r)
}

func TestDirectory(t *testing.T) {
	h := newHarness(t, options{projections: true})
	d := h.directoryOf(t, "inside")
	base := "/v1/tenants/" + d.tenant

	// Usernames are unique case-insensitively; the problem names the field.
	r := h.status(t, "POST", base+"/users", h.admin, map[string]any{"username": "INSIDE-ADMIN"})
	if r.Status != http.StatusConflict || r.json(t)["field"] != "username" {
		t.Fatalf("duplicate username: %d %s", r.Status, r.Body)
	}
	// The last enabled admin can be neither disabled nor demoted.
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/users/" + d.admin + "/disable", `{"reason":"test"}`},
		{"PATCH", "/users/" + d.admin, `{"roles":["tenant-viewer"]}`},
		{"DELETE", "/users/" + d.admin, ""},
	} {
		seq := h.lastSeq(t)
		var body any
		if tc.body != "" {
			body = tc.body
		}
		r := h.status(t, tc.method, base+tc.path, h.admin, body)
		if r.Status != http.StatusConflict || !strings.Contains(string(r.Body), "last enabled user with the tenant-admin role") {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, r.Status, r.Body)
		}
		if h.lastSeq(t) != seq {
			t.Errorf("%s %s: a refused command appended", tc.method, tc.path)
		}
	}
	// If-Match on one user: its own version, not the directory's.
	u := h.status(t, "GET", base+"/users/"+d.viewer, h.admin, nil)
	if u.Header.Get("ETag") != `"1"` {
		t.Fatalf("user ETag = %q", u.Header.Get("ETag"))
	}
	r = h.do(t, req{method: "PATCH", path: base + "/users/" + d.viewer, token: h.admin, contentType: "application/merge-patch+json",
		body: `{"last_name":"Rao","attributes":{"team":"blue"}}`, header: map[string]string{"If-Match": `"1"`}})
	if r.Status != http.StatusOK || r.json(t)["last_name"] != "Rao" || r.Header.Get("ETag") != `"2"` {
		t.Fatalf("patch: %d %s", r.Status, r.Body)
	}
	r = h.do(t, req{method: "PATCH", path: base + "/users/" + d.viewer, token: h.admin, contentType: "application/merge-patch+json",
		body: `{"last_name":"Iyer"}`, header: map[string]string{"If-Match": `"1"`}})
	if r.Status != http.StatusPreconditionFailed {
		t.Fatalf("stale If-Match: %d %s", r.Status, r.Body)
	}
	// Memberships, and deleting a user takes theirs with it.
	if r := h.status(t, "PUT", base+"/org-units/"+d.ou+"/members/"+d.viewer, h.admin, map[string]any{"roles": []string{"auditor", "admin"}}); r.Status != http.StatusOK {
		t.Fatalf("put member: %d %s", r.Status, r.Body)
	}
	if m := h.status(t, "GET", base+"/users/"+d.viewer+"/memberships", h.admin, nil).json(t)["items"].([]any); len(m) != 1 {
		t.Fatalf("memberships = %v", m)
	}
	list := h.listed(t, base+"/users?ou="+d.ou, h.admin)
	if len(list) != 1 || list[0].(map[string]any)["id"] != d.viewer {
		t.Fatalf("users in OU = %v", list)
	}
	// An OU with children cannot go; the child can, and the tree has no cycles.
	if r := h.status(t, "DELETE", base+"/org-units/"+d.ou, h.admin, nil); r.Status != http.StatusConflict {
		t.Fatalf("delete parent: %d %s", r.Status, r.Body)
	}
	if r := h.status(t, "PATCH", base+"/org-units/"+d.ou, h.admin, map[string]any{"parent_id": d.child}); r.Status != http.StatusConflict {
		t.Fatalf("cycle: %d %s", r.Status, r.Body)
	}
	if r := h.status(t, "DELETE", base+"/users/"+d.viewer, h.admin, nil); r.Status != http.StatusOK {
		t.Fatalf("delete user: %d %s", r.Status, r.Body)
	}
	if m := h.status(t, "GET", base+"/org-units/"+d.ou+"/members", h.admin, nil).json(t)["items"].([]any); len(m) != 0 {
		t.Fatalf("members after the user's deletion = %v", m)
	}
	// A client's secret is shown at create and rotate only.
	c := h.do(t, req{method: "POST", path: base + "/clients", token: h.admin, body: map[string]any{"client_id": "ci-runner"}})
	if c.Status != http.StatusCreated || c.Header.Get("Cache-Control") != "no-store" || c.json(t)["secret"] == "" {
		t.Fatalf("client create: %d %v %s", c.Status, c.Header, c.Body)
	}
	secret := c.json(t)["secret"].(string)
	got := h.status(t, "GET", base+"/clients/"+c.json(t)["id"].(string), h.admin, nil)
	if strings.Contains(string(got.Body), secret) || strings.Contains(string(got.Body), `"secret"`) {
		t.Fatalf("GET shows the secret: %s", got.Body)
	}
	rot := h.status(t, "POST", base+"/clients/"+c.json(t)["id"].(string)+"/rotate-secret", h.admin, nil).json(t)
	if rot["secret"] == secret || rot["secret_version"] != float64(2) {
		t.Fatalf("rotate: %v", rot)
	}
	if strings.Contains(string(h.allEvents(t)), secret) {
		t.Fatal("a client secret is in the log")
	}
	h.verifyLog(t)
}

// allEvents returns every event's raw bytes, concatenated.
func (h *harness) allEvents(t testing.TB) []byte {
	t.Helper()
	var all []byte
	for seq := uint64(1); seq <= h.lastSeq(t); seq++ {
		m, err := h.core.Store.Get(t.Context(), seq)
		if err == nil {
			all = append(all, m.Data...)
		}
	}
	return all
}

func TestMeAndMyTenant(t *testing.T) {
	h := newHarness(t, options{projections: true})
	d := h.directoryOf(t, "mine")
	tok := h.token(t, auth.TokenRequest{Subject: "kc-user-1", Username: "mine-admin", Roles: []string{auth.RoleTenantAdmin}, TenantID: d.tenant,
		Memberships: []auth.OUMembership{{OU: d.ou, Roles: []string{"admin"}}}})
	me := h.status(t, "GET", "/v1/me", tok, nil).json(t)
	if me["tenant_id"] != d.tenant || me["username"] != "mine-admin" || me["tenant"].(map[string]any)["slug"] != "mine" || len(me["memberships"].([]any)) != 1 {
		t.Fatalf("me = %v", me)
	}
	if users := h.listed(t, "/v1/tenants/me/users", tok); len(users) != 2 {
		t.Fatalf("my users: %v", users)
	}
	if r := h.status(t, "GET", "/v1/tenants/me/users", h.admin, nil); r.Status != http.StatusNotFound {
		t.Fatalf("me without a tenant claim: %d %s", r.Status, r.Body)
	}
}

func TestUserSearchAndPages(t *testing.T) {
	h := newHarness(t, options{projections: true})
	d := h.directoryOf(t, "pages")
	// Another tenant with a Vera of its own: no listing may show her.
	h.directoryOf(t, "other-pages")
	base := "/v1/tenants/" + d.tenant
	for i := range 5 {
		h.created(t, base+"/users", map[string]any{"username": fmt.Sprintf("p%d", i), "first_name": "Page", "enabled": i%2 == 0})
	}
	if n := len(h.listed(t, base+"/users?q=vera", h.admin)); n != 1 {
		t.Fatalf("q=vera found %d", n)
	}
	if n := len(h.listed(t, base+"/users?enabled=false", h.admin)); n != 2 {
		t.Fatalf("enabled=false found %d", n)
	}
	if n := len(h.listed(t, base+"/users?role=tenant-admin", h.admin)); n != 1 {
		t.Fatalf("role=tenant-admin found %d", n)
	}
	seen := map[string]bool{}
	path := fmt.Sprintf("%s/users?page_size=3&min_seq=%d", base, h.lastSeq(t))
	for path != "" {
		page := h.status(t, "GET", path, h.admin, nil).json(t)
		for _, u := range page["items"].([]any) {
			id := u.(map[string]any)["id"].(string)
			if seen[id] {
				t.Fatalf("user %s on two pages", id)
			}
			seen[id] = true
		}
		path = ""
		if tok := page["next_page_token"].(string); tok != "" {
			path = base + "/users?page_size=3&page_token=" + tok
		}
	}
	if len(seen) != 7 {
		t.Fatalf("pages held %d users, want 7", len(seen))
	}
	// Similar, not only equal: a typo still finds the user, best first.
	if found := h.listed(t, base+"/users?q=pages-admn", h.admin); len(found) == 0 || found[0].(map[string]any)["id"] != d.admin {
		t.Fatalf("q=pages-admn found %v", found)
	}
	for _, q := range []string{"ou=not-a-unit", "page_token=bm9wZQ", "enabled=maybe", "role=owner", fmt.Sprintf("min_seq=%d", h.lastSeq(t)+1000)} {
		if r := h.status(t, "GET", base+"/users?"+q, h.admin, nil); r.Status != http.StatusUnprocessableEntity {
			t.Errorf("%s: %d %s", q, r.Status, r.Body)
		}
	}
}

func TestUserBatch(t *testing.T) {
	h := newHarness(t, options{})
	d := h.directoryOf(t, "batch")
	path := "/v1/tenants/" + d.tenant + "/users/batch"
	rows := []map[string]any{{"username": "b1", "email": "b1@batch.test"}, {"username": "b2"}, {"username": "bad name"}, {"username": "batch-admin", "email": "admin@batch.test", "roles": []string{"tenant-admin"}}}
	first := h.status(t, "POST", path, h.admin, map[string]any{"users": rows}).json(t)
	if first["created"] != float64(2) || first["failed"] != float64(1) || first["unchanged"] != float64(1) {
		t.Fatalf("first batch: %v", first)
	}
	results := first["results"].([]any)
	if p := results[2].(map[string]any)["problem"].(map[string]any); p["status"] != float64(422) {
		t.Fatalf("bad row: %v", results[2])
	}
	seq := h.lastSeq(t)
	again := h.status(t, "POST", path, h.admin, map[string]any{"users": rows}).json(t)
	if again["created"] != float64(0) || again["unchanged"] != float64(3) || h.lastSeq(t) != seq {
		t.Fatalf("rerun: %v (appended: %v)", again, h.lastSeq(t) != seq)
	}
	big := make([]map[string]any, 501)
	for i := range big {
		big[i] = map[string]any{"username": fmt.Sprintf("u%d", i)}
	}
	if r := h.status(t, "POST", path, h.admin, map[string]any{"users": big}); r.Status != http.StatusUnprocessableEntity && r.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("501 rows: %d %s", r.Status, r.Body)
	}
}

// TestDirectoryRoleMatrix runs every directory route with every kind of
// caller, against its own tenant and a foreign one: a caller of another
// tenant always gets 404, a caller without the role 403 (or 404 when it
// has nothing to do with the tenant), and a refused request appends
// nothing.
func TestDirectoryRoleMatrix(t *testing.T) {
	h := newHarness(t, options{projections: true})
	b := h.directoryOf(t, "matrix-b")
	callers := func(a dir) map[string]string {
		return map[string]string{
			"tenant-admin":  h.token(t, tokenFor(auth.RoleTenantAdmin, a.tenant)),
			"tenant-viewer": h.token(t, tokenFor(auth.RoleTenantViewer, a.tenant)),
			"ou-admin": h.token(t, auth.TokenRequest{Subject: "ou-admin", TenantID: a.tenant,
				Memberships: []auth.OUMembership{{OU: a.ou, Roles: []string{"admin"}}}}),
			"ou-auditor": h.token(t, auth.TokenRequest{Subject: "ou-auditor", TenantID: a.tenant,
				Memberships: []auth.OUMembership{{OU: a.ou, Roles: []string{"auditor"}}}}),
			"no-role":       h.token(t, auth.TokenRequest{Subject: "nobody", TenantID: a.tenant}),
			"foreign-admin": h.token(t, tokenFor(auth.RoleTenantAdmin, b.tenant)),
			"billing":       h.token(t, auth.TokenRequest{Subject: "billing", Roles: []string{auth.RoleBilling}}),
			// A token of tenant B naming one of A's org units gains nothing in A.
			"foreign-ou-admin": h.token(t, auth.TokenRequest{Subject: "x", TenantID: b.tenant, Memberships: []auth.OUMembership{{OU: a.ou, Roles: []string{"admin"}}}}),
		}
	}
	type route struct {
		method, path string
		body         any
		// allowed lists the callers that may; everyone else is refused.
		allowed []string
		// want is the status the allowed get when not a success (this
		// harness has no identity provider).
		want int
	}
	read := []string{"platform-admin", "tenant-admin", "tenant-viewer"}
	manage := []string{"platform-admin", "tenant-admin"}
	ouRead := []string{"platform-admin", "tenant-admin", "tenant-viewer", "ou-admin", "ou-auditor"}
	ouManage := []string{"platform-admin", "tenant-admin", "ou-admin"}
	routes := func(d dir) []route {
		base := "/v1/tenants/" + d.tenant
		return []route{
			{"GET", base + "/users", nil, read, 0},
			{"GET", base + "/users/" + d.viewer, nil, read, 0},
			{"GET", base + "/users/" + d.viewer + "/memberships", nil, read, 0},
			{"POST", base + "/users/" + d.viewer + "/temporary-password", nil, manage, http.StatusConflict},
			{"PATCH", base + "/users/" + d.viewer, map[string]any{"first_name": "Changed"}, manage, 0},
			{"POST", base + "/users/" + d.viewer + "/disable", map[string]any{"reason": "matrix"}, manage, 0},
			{"POST", base + "/users/" + d.viewer + "/enable", map[string]any{"reason": "matrix"}, manage, 0},
			{"POST", base + "/users", map[string]any{"username": "matrix-new"}, manage, 0},
			{"POST", base + "/users/batch", map[string]any{"users": []map[string]any{{"username": "matrix-batch"}}}, manage, 0},
			{"GET", base + "/clients", nil, read, 0},
			{"GET", base + "/clients/" + d.client, nil, read, 0},
			{"PATCH", base + "/clients/" + d.client, map[string]any{"name": "Bot"}, manage, 0},
			{"POST", base + "/clients/" + d.client + "/rotate-secret", nil, manage, 0},
			{"POST", base + "/clients", map[string]any{"client_id": "matrix-client"}, manage, 0},
			{"GET", base + "/org-units", nil, read, 0},
			{"GET", base + "/org-units/" + d.ou, nil, ouRead, 0},
			{"GET", base + "/org-units/" + d.child, nil, ouRead, 0},
			{"GET", base + "/org-units/" + d.ou + "/members", nil, ouRead, 0},
			{"GET", base + "/org-units/" + d.ou + "/audit", nil, ouRead, 0},
			{"GET", base + "/org-units/" + d.child + "/audit", nil, ouRead, 0},
			{"PUT", base + "/org-units/" + d.child + "/members/" + d.viewer, map[string]any{"roles": []string{"default"}}, ouManage, 0},
			{"DELETE", base + "/org-units/" + d.child + "/members/" + d.viewer, nil, ouManage, 0},
			{"PATCH", base + "/org-units/" + d.child, map[string]any{"description": "x"}, manage, 0},
			{"POST", base + "/org-units", map[string]any{"name": "Matrix"}, manage, 0},
			{"DELETE", base + "/clients/" + d.client, nil, manage, 0},
			{"DELETE", base + "/users/" + d.viewer, nil, manage, 0},
			{"DELETE", base + "/org-units/" + d.child, nil, manage, 0},
		}
	}
	for _, name := range []string{"no-role", "billing", "foreign-admin", "foreign-ou-admin", "ou-auditor", "tenant-viewer", "ou-admin", "tenant-admin"} {
		// Each caller meets a fresh tenant: the allowed deletes take its
		// viewer, child unit and client.
		a := h.directoryOf(t, "matrix-"+strings.ReplaceAll(name, "-", ""))
		tok := callers(a)[name]
		for _, rt := range routes(a) {
			allowed := false
			for _, who := range rt.allowed {
				allowed = allowed || who == name
			}
			seq := h.lastSeq(t)
			r := h.status(t, rt.method, rt.path, tok, rt.body)
			foreign := strings.HasPrefix(name, "foreign") || name == "billing"
			switch {
			case allowed && rt.want != 0 && r.Status != rt.want:
				t.Errorf("%s %s as %s: %d, want %d: %s", rt.method, rt.path, name, r.Status, rt.want, r.Body)
			case allowed && rt.want == 0 && r.Status >= 300 && !(rt.method == "DELETE" && r.Status == http.StatusNotFound):
				t.Errorf("%s %s as %s: %d, want success: %s", rt.method, rt.path, name, r.Status, r.Body)
			case !allowed && foreign && r.Status != http.StatusNotFound:
				t.Errorf("%s %s as %s (another tenant): %d, want 404", rt.method, rt.path, name, r.Status)
			case !allowed && !foreign && r.Status != http.StatusForbidden:
				t.Errorf("%s %s as %s: %d, want 403", rt.method, rt.path, name, r.Status)
			}
			if !allowed && h.lastSeq(t) != seq {
				t.Errorf("%s %s as %s: refused, yet something was appended", rt.method, rt.path, name)
			}
		}
	}
	// Tenant B's admin still sees their own tenant, untouched.
	for _, rt := range routes(b)[:3] {
		if r := h.status(t, rt.method, rt.path, callers(b)["foreign-admin"], rt.body); r.Status != http.StatusOK {
			t.Errorf("%s %s as its own admin: %d", rt.method, rt.path, r.Status)
		}
	}
}

// TestDeletedUsersKeyIsErasedByTheProvisioner: when the API could not
// destroy a deleted user's key, the provisioner does, on the deletion
// event (here without Keycloak: it only erases).
func TestDeletedUsersKeyIsErasedByTheProvisioner(t *testing.T) {
	h := newHarness(t, options{provisioner: true})
	d := h.directoryOf(t, "erase")
	scope := events.UserPIIScope(d.viewer)
	sealed, err := h.core.Keyring.Seal(scope, []byte("kept until the user goes"))
	if err != nil {
		t.Fatal(err)
	}
	// A directory without a key destroyer stands for an API whose destroy
	// failed after the deletion was recorded.
	failing := app.NewDirectory(app.DirectoryOptions{Deps: h.core.CommandDeps(), Index: h.core.Keyring, Tenants: h.core.Tenants, Log: logging.Discard()})
	if _, err := failing.Do(t.Context(), d.tenant, domain.DeleteUser{ID: d.viewer}, command.Meta{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := h.core.Keyring.OpenCurrent(scope, sealed)
		if errors.Is(err, events.ErrErased) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deleted user's key survives: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOrgUnitAudit: an org unit's auditor reads the unit's part of the
// audit trail (the unit, the units under it at the time, their
// memberships) and nothing else: not the tenant's other entries, not a
// sibling's, not the parent's, not the history of a unit from before it
// moved in, and not the tenant-wide trail.
func TestOrgUnitAudit(t *testing.T) {
	h := newHarness(t, options{projections: true})
	d := h.directoryOf(t, "ou-audit")
	base := "/v1/tenants/" + d.tenant
	sibling := h.created(t, base+"/org-units", map[string]any{"name": "Support"})["id"].(string)
	for _, ou := range []string{d.ou, d.child, sibling} {
		if r := h.status(t, "PUT", base+"/org-units/"+ou+"/members/"+d.viewer, h.admin, map[string]any{"roles": []string{"default"}}); r.Status != http.StatusOK {
			t.Fatalf("put member: %d %s", r.Status, r.Body)
		}
	}
	if r := h.status(t, "DELETE", base+"/org-units/"+d.child+"/members/"+d.viewer, h.admin, nil); r.Status != http.StatusOK {
		t.Fatalf("delete member: %d %s", r.Status, r.Body)
	}
	auditor := func(ou string) string {
		return h.token(t, auth.TokenRequest{Subject: "auditor", TenantID: d.tenant, Memberships: []auth.OUMembership{{OU: ou, Roles: []string{"auditor"}}}})
	}
	types := func(items []any) []string {
		var out []string
		for _, it := range items {
			m := it.(map[string]any)
			if m["tenant_id"] != d.tenant {
				t.Errorf("an entry of tenant %v", m["tenant_id"])
			}
			out = append(out, m["type"].(string))
		}
		return out
	}
	got := types(h.listed(t, base+"/org-units/"+d.ou+"/audit", auditor(d.ou)))
	want := []string{events.TypeMembershipRemoved, events.TypeMembershipSet, events.TypeMembershipSet, events.TypeOrgUnitCreated, events.TypeOrgUnitCreated}
	if !slices.Equal(got, want) {
		t.Errorf("the unit's trail, newest first = %v, want %v", got, want)
	}
	if got := types(h.listed(t, base+"/org-units/"+d.ou+"/audit?type=tenancy.org_unit.*", auditor(d.ou))); len(got) != 2 {
		t.Errorf("type filter: %v", got)
	}
	if got := types(h.listed(t, base+"/org-units/"+sibling+"/audit", h.admin)); len(got) != 2 {
		t.Errorf("the sibling's trail: %v", got)
	}

	// A unit made under the sibling, with a member, then moved under the
	// first unit and deleted there: the first unit's auditors see the move
	// and what followed, never its history from before; the sibling's see
	// that history and the move, never what followed.
	moved := h.created(t, base+"/org-units", map[string]any{"name": "Moved", "parent_id": sibling})["id"].(string)
	if r := h.status(t, "PUT", base+"/org-units/"+moved+"/members/"+d.viewer, h.admin, map[string]any{"roles": []string{"default"}}); r.Status != http.StatusOK {
		t.Fatalf("put member: %d %s", r.Status, r.Body)
	}
	for _, step := range []struct{ method, path string }{{"PATCH", "/org-units/" + moved}, {"DELETE", "/org-units/" + moved}} {
		var body any
		if step.method == "PATCH" {
			body = map[string]any{"parent_id": d.ou}
		}
		if r := h.status(t, step.method, base+step.path, h.admin, body); r.Status != http.StatusOK {
			t.Fatalf("%s %s: %d %s", step.method, step.path, r.Status, r.Body)
		}
	}
	got = types(h.listed(t, base+"/org-units/"+d.ou+"/audit", auditor(d.ou)))
	want = append([]string{events.TypeOrgUnitDeleted, events.TypeMembershipRemoved, events.TypeOrgUnitUpdated}, want...)
	if !slices.Equal(got, want) {
		t.Errorf("the unit's trail after a unit moved in and was deleted = %v, want %v", got, want)
	}
	got = types(h.listed(t, base+"/org-units/"+sibling+"/audit", h.admin))
	wantSibling := []string{events.TypeOrgUnitUpdated, events.TypeMembershipSet, events.TypeOrgUnitCreated, events.TypeMembershipSet, events.TypeOrgUnitCreated}
	if !slices.Equal(got, wantSibling) {
		t.Errorf("the sibling's trail after its unit moved away = %v, want %v", got, wantSibling)
	}
	for _, tc := range []struct {
		name, path, token string
		want              int
	}{
		{"a sibling's trail", base + "/org-units/" + sibling + "/audit", auditor(d.ou), http.StatusForbidden},
		{"the parent's trail from the child's auditor", base + "/org-units/" + d.ou + "/audit", auditor(d.child), http.StatusForbidden},
		{"the tenant's trail", "/v1/audit", auditor(d.ou), http.StatusForbidden},
		{"no such unit", base + "/org-units/01a00000-0000-7000-8000-000000000000/audit", h.admin, http.StatusNotFound},
		{"not a unit id", base + "/org-units/nope/audit", h.admin, http.StatusNotFound},
		{"a bad time", base + "/org-units/" + d.ou + "/audit?from=yesterday", h.admin, http.StatusUnprocessableEntity},
	} {
		if r := h.status(t, "GET", tc.path, tc.token, nil); r.Status != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, r.Status, r.Body, tc.want)
		}
	}
}

// TestClientSecretsUnderRaces: concurrent rotations of one client never
// show a caller a secret other than the one kept for the version they
// were told; a retried create shows the secret the first attempt kept; a
// version stored by a rotation that never recorded it blocks rotation
// only until it is old enough to be taken over.
func TestClientSecretsUnderRaces(t *testing.T) {
	h := newHarness(t, options{})
	d := h.directoryOf(t, "races")
	ctx := context.Background()
	path := "/v1/tenants/" + d.tenant + "/clients/" + d.client + "/rotate-secret"
	type shown struct {
		version int
		secret  string
	}
	var mu sync.Mutex
	var ok []shown
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := h.status(t, "POST", path, h.admin, nil)
			switch r.Status {
			case http.StatusOK:
				m := r.json(t)
				mu.Lock()
				ok = append(ok, shown{int(m["secret_version"].(float64)), m["secret"].(string)})
				mu.Unlock()
			case http.StatusConflict:
			default:
				t.Errorf("rotate: %d %s", r.Status, r.Body)
			}
		}()
	}
	wg.Wait()
	if len(ok) == 0 {
		t.Fatal("no rotation succeeded")
	}
	for _, s := range ok {
		kept, err := h.core.ClientSecrets.Secret(ctx, d.client, s.version)
		if err != nil || kept != s.secret {
			t.Errorf("version %d: shown %q, kept %q (%v)", s.version, s.secret, kept, err)
		}
	}
	dir, _, err := h.core.Directory.Load(ctx, d.tenant)
	if err != nil {
		t.Fatal(err)
	}
	if cl, _ := dir.Client(d.client); cl.SecretVersion != 1+len(ok) {
		t.Errorf("secret version %d after %d rotations", cl.SecretVersion, len(ok))
	}

	// A create retried with the id of the first attempt shows that
	// attempt's secret, not a new one the realm never gets.
	id := app.NewID()
	var first string
	for i := range 2 {
		_, secret, _, err := h.core.Directory.CreateClient(ctx, d.tenant, domain.CreateClient{ID: id, ClientID: "races-retried"}, command.Meta{Actor: "t"})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = secret
		} else if secret != first {
			t.Errorf("the retry showed another secret")
		}
	}

	// A rotation that stored its version and crashed before recording it.
	dir, _, _ = h.core.Directory.Load(ctx, d.tenant)
	cl, _ := dir.Client(d.client)
	if err := h.core.ClientSecrets.Create(ctx, d.client, cl.SecretVersion+1, "abandoned"); err != nil {
		t.Fatal(err)
	}
	if r := h.status(t, "POST", path, h.admin, nil); r.Status != http.StatusConflict {
		t.Fatalf("rotate over a fresh unrecorded version: %d %s", r.Status, r.Body)
	}
	if err := h.core.ClientSecrets.Reclaim(ctx, d.client, cl.SecretVersion+1, "taken-over", time.Hour); !errors.Is(err, secrets.ErrExists) {
		t.Fatalf("reclaim a young version: %v", err)
	}
	if err := h.core.ClientSecrets.Reclaim(ctx, d.client, cl.SecretVersion+1, "taken-over", 0); err != nil {
		t.Fatalf("reclaim an abandoned version: %v", err)
	}
	if kept, _ := h.core.ClientSecrets.Secret(ctx, d.client, cl.SecretVersion+1); kept != "taken-over" {
		t.Fatalf("after reclaim: %q", kept)
	}
}
