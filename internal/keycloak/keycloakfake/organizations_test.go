package keycloakfake_test

import (
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/tenancyhq/tenancy/internal/keycloak/keycloakfake"
)

const orgs = "/admin/realms/acme/organizations"

func (f *fixture) createOrg(body map[string]any) string {
	f.t.Helper()
	return f.do(http.MethodPost, orgs, body).created(f.t, f.srv.URL(), orgs+"/")
}

func TestOrganizationsNeedThemEnabled(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", nil)
	if r, _ := f.srv.Realm("acme"); r.OrganizationsEnabled {
		t.Fatal("a new realm has organizations enabled")
	}
	disabled := `{"errorMessage":"Organizations not enabled for this realm."}`
	f.wantErrors(t, []errCase{
		{"list", "GET", orgs, nil, 404, disabled},
		{"create", "POST", orgs, map[string]any{"name": "a"}, 404, disabled},
		{"item", "GET", orgs + "/x", nil, 404, disabled},
		{"members", "POST", orgs + "/x/members", `"u"`, 404, disabled},
	})
	f.do(http.MethodPut, "/admin/realms/acme", map[string]any{"organizationsEnabled": true}).wantStatus(t, http.StatusNoContent)
	var r keycloakfake.Realm
	f.get(t, "/admin/realms/acme", &r)
	if !r.OrganizationsEnabled || r.Enabled {
		t.Fatalf("after enabling organizations: %+v", r)
	}
	var list []keycloakfake.Organization
	f.get(t, orgs, &list)
	if list == nil || len(list) != 0 {
		t.Fatalf("organizations of a new realm: %v", list)
	}
}

func TestOrganizationsCreateFindUpdateDelete(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", map[string]any{"organizationsEnabled": true})
	id := f.createOrg(map[string]any{"name": "Beta Corp", "alias": "beta", "description": "B",
		"attributes": map[string][]string{"tenancy.tenant_id": {"t-1"}}, "domains": []map[string]any{{"name": "beta.test"}, {"name": " "}}})
	f.createOrg(map[string]any{"name": "alpha"})
	f.wantCreates(t, "organization", 2)

	var got keycloakfake.Organization
	f.get(t, orgs+"/"+id, &got)
	if got.ID != id || got.Alias != "beta" || !got.Enabled || got.Attributes["tenancy.tenant_id"][0] != "t-1" || len(got.Domains) != 1 {
		t.Fatalf("organization = %+v", got)
	}
	f.wantErrors(t, []errCase{
		{"same name", "POST", orgs, map[string]any{"name": "alpha", "alias": "other"}, 409,
			`{"errorMessage":"A organization with the same name already exists."}`},
		{"same alias", "POST", orgs, map[string]any{"name": "Other", "alias": "beta"}, 409,
			`{"errorMessage":"A organization with the same alias already exists"}`},
		{"no name", "POST", orgs, map[string]any{"alias": "x"}, 400, `{"errorMessage":"Name can not be null"}`},
		{"name unfit for alias", "POST", orgs, map[string]any{"name": "Two words"}, 400,
			`{"errorMessage":"Name contains a reserved character and cannot be used as alias"}`},
		{"not JSON", "POST", orgs, "{", 400, `{"error":"invalid_request","error_description":"Cannot parse the JSON"}`},
		{"unknown", "GET", orgs + "/nope", nil, 404, `{"errorMessage":"Organization not found."}`},
		{"delete unknown", "DELETE", orgs + "/nope", nil, 404, `{"errorMessage":"Organization not found."}`},
		{"alias changes", "PUT", orgs + "/" + id, map[string]any{"name": "Beta Corp", "alias": "b2"}, 400,
			`{"errorMessage":"Cannot change the alias"}`},
		{"name taken", "PUT", orgs + "/" + id, map[string]any{"name": "alpha", "alias": "beta"}, 409,
			`{"errorMessage":"A organization with the same name already exists."}`},
	})

	name := func(o keycloakfake.Organization) string { return o.Name }
	wantLists(t, f, "search", orgs, name, []listCase{
		{"", []string{"Beta Corp", "alpha"}},
		{"?search=ALP", []string{"alpha"}},
		{"?search=alp&exact=true", nil},
		{"?search=beta.test&exact=true", []string{"Beta Corp"}},
		{"?q=" + url.QueryEscape("alias:beta"), []string{"Beta Corp"}},
		{"?q=" + url.QueryEscape(`"alias":"alpha"`), []string{"alpha"}},
		{"?q=" + url.QueryEscape("tenancy.tenant_id:t-1 nokey"), []string{"Beta Corp"}},
		{"?q=" + url.QueryEscape("tenancy.tenant_id:t-2"), nil},
		{"?max=1", []string{"Beta Corp"}},
		{"?first=1", []string{"alpha"}},
	})
	var list []keycloakfake.Organization
	f.get(t, orgs+"?q=alias:beta", &list)
	if list[0].Attributes != nil {
		t.Fatalf("a brief listing shows attributes: %+v", list[0])
	}
	f.get(t, orgs+"?q=alias:beta&briefRepresentation=false", &list)
	if list[0].Attributes["tenancy.tenant_id"] == nil {
		t.Fatalf("a full listing hides attributes: %+v", list[0])
	}
	var n int
	f.get(t, orgs+"/count?search=a", &n)
	if n != 2 {
		t.Fatalf("count = %d", n)
	}

	// PUT replaces, but absent attributes and domains stay; absent
	// "enabled" means true.
	f.do(http.MethodPut, orgs+"/"+id, map[string]any{"name": "Beta", "alias": "beta", "enabled": false}).wantStatus(t, http.StatusNoContent)
	got = keycloakfake.Organization{}
	f.get(t, orgs+"/"+id, &got)
	if got.Name != "Beta" || got.Alias != "beta" || got.Enabled || got.Description != "" || len(got.Attributes) != 1 || len(got.Domains) != 1 {
		t.Fatalf("after PUT: %+v", got)
	}
	f.do(http.MethodPut, orgs+"/"+id, map[string]any{"name": "Beta", "alias": "beta", "attributes": map[string][]string{}}).wantStatus(t, http.StatusNoContent)
	got = keycloakfake.Organization{}
	f.get(t, orgs+"/"+id, &got)
	if !got.Enabled || len(got.Attributes) != 0 {
		t.Fatalf("after second PUT: %+v", got)
	}

	f.do(http.MethodDelete, orgs+"/"+id, nil).wantStatus(t, http.StatusNoContent)
	if got := f.srv.Organizations("acme"); len(got) != 1 || got[0].Alias != "alpha" {
		t.Fatalf("after delete: %+v", got)
	}
}

func TestOrganizationMembers(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", map[string]any{"organizationsEnabled": true})
	org := f.createOrg(map[string]any{"name": "beta"})
	ann := f.createUser("acme", map[string]any{"username": "ann", "email": "ann@beta.test"})
	bob := f.createUser("acme", map[string]any{"username": "bob"})
	members := orgs + "/" + org + "/members"

	// The id as a JSON string, or bare with whitespace around it.
	got := f.do(http.MethodPost, members, `"`+ann+`"`).created(t, f.srv.URL(), members+"/")
	if got != ann {
		t.Fatalf("Location names %q, want %q", got, ann)
	}
	f.do(http.MethodPost, members, " "+bob+"\n").created(t, f.srv.URL(), members+"/")
	f.wantCreates(t, "member", 2)
	f.wantErrors(t, []errCase{
		{"again", "POST", members, `"` + ann + `"`, 409, `{"errorMessage":"User is already a member of the organization."}`},
		{"unknown user", "POST", members, `"nope"`, 400, `{"errorMessage":"User does not exist"}`},
		{"unknown organization", "POST", orgs + "/nope/members", `"` + ann + `"`, 404, `{"errorMessage":"Organization not found."}`},
		{"not a member", "GET", members + "/nope", nil, 404, `{"error":"HTTP 404 Not Found"}`},
	})
	var m struct {
		ID             string `json:"id"`
		MembershipType string `json:"membershipType"`
	}
	f.get(t, members+"/"+ann, &m)
	if m.ID != ann || m.MembershipType != "UNMANAGED" {
		t.Fatalf("member = %+v", m)
	}
	username := func(u keycloakfake.User) string { return u.Username }
	wantLists(t, f, "members", members, username, []listCase{
		{"", []string{"ann", "bob"}},
		{"?search=BETA", []string{"ann"}},
		{"?search=an&exact=true", nil},
		{"?max=1", []string{"ann"}},
	})

	f.do(http.MethodDelete, members+"/"+ann, nil).wantStatus(t, http.StatusNoContent)
	f.do(http.MethodDelete, members+"/"+ann, nil).wantError(t, http.StatusNotFound, `{"error":"HTTP 404 Not Found"}`)
	f.do(http.MethodDelete, "/admin/realms/acme/users/"+bob, nil).wantStatus(t, http.StatusNoContent)
	if got := f.srv.OrganizationMembers("acme", "beta"); len(got) != 0 {
		t.Fatalf("members after removing one and deleting the other: %v", got)
	}
	f.srv.SetOrganizationEnabled("acme", "beta", false)
	if o := f.srv.Organizations("acme"); o[0].Enabled || !slices.Equal(f.srv.OrganizationMembers("acme", "beta"), []string{}) {
		t.Fatalf("SetOrganizationEnabled: %+v", o)
	}
}
