package keycloakfake_test

import (
	"net/http"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tenancyhq/tenancy/internal/keycloak/keycloakfake"
)

const profilePath = "/admin/realms/acme/users/profile"

// profile reads the realm's user profile through the API.
func (f *fixture) profile(t *testing.T) keycloakfake.UserProfile {
	t.Helper()
	var p keycloakfake.UserProfile
	f.get(t, profilePath, &p)
	return p
}

func attributeNames(p keycloakfake.UserProfile) []string {
	var names []string
	for _, a := range p.Attributes {
		names = append(names, a.Name)
	}
	return names
}

// adminOnly declares name for administrators only.
func adminOnly(name string, multivalued bool) keycloakfake.ProfileAttribute {
	return keycloakfake.ProfileAttribute{Name: name, Multivalued: multivalued,
		Permissions: &keycloakfake.AttributePermissions{View: []string{"admin"}, Edit: []string{"admin"}}}
}

func TestUserProfileDefaultAndPut(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", nil)
	def := f.profile(t)
	if got := attributeNames(def); !slices.Equal(got, []string{"username", "email", "firstName", "lastName"}) ||
		def.UnmanagedAttributePolicy != "" || len(def.Groups) != 1 || def.Groups[0].Name != "user-metadata" {
		t.Fatalf("default profile: %+v", def)
	}

	f.wantErrors(t, []errCase{
		{"no attributes", "PUT", profilePath, map[string]any{"unmanagedAttributePolicy": "ENABLED"}, 400,
			`{"errorMessage":"[UserProfile configuration without 'attributes' section is not allowed]"}`},
		{"bad names and roles", "PUT", profilePath, map[string]any{"attributes": []map[string]any{
			{"name": "a b"}, {"name": ""}, {"name": "x", "permissions": map[string]any{"view": []string{"admin"}, "edit": []string{"owner"}}}, {"name": "x"},
		}}, 400, `{"errorMessage":"[Invalid attribute name (only letters, numbers and '.' '_' '-' special characters allowed): a b', ` +
			`Attribute configuration without 'name' is not allowed, 'permissions.edit' configuration for attribute 'x' contains unsupported role 'owner', ` +
			`Attribute configuration already exists with 'name':'x']"}`},
		{"unknown policy", "PUT", profilePath, map[string]any{"attributes": []any{}, "unmanagedAttributePolicy": "SOMETIMES"}, 400,
			`{"error":"invalid_request","error_description":"Cannot parse the JSON"}`},
		{"DELETE", "DELETE", profilePath, nil, 405, `{"error":"HTTP 405 Method Not Allowed"}`},
		{"unknown realm", "GET", "/admin/realms/nope/users/profile", nil, 404, `{"error":"Realm not found."}`},
	})

	// Whatever the PUT carried comes back, and only that.
	want := def
	want.UnmanagedAttributePolicy = keycloakfake.PolicyAdminEdit
	want.Attributes = append(want.Attributes, keycloakfake.ProfileAttribute{
		Name: "tenancy.tenant_id", DisplayName: "Tenant", Multivalued: true, Group: "user-metadata", DefaultValue: "none",
		Validations: map[string]map[string]any{"length": {"max": float64(36)}}, Annotations: map[string]any{"inputType": "text"},
		Required:    &keycloakfake.AttributeRequired{Roles: []string{"admin"}, Scopes: []string{"openid"}},
		Permissions: &keycloakfake.AttributePermissions{View: []string{"admin"}, Edit: []string{}},
		Selector:    &keycloakfake.AttributeSelector{Scopes: []string{"openid"}},
	})
	var answered keycloakfake.UserProfile
	f.do(http.MethodPut, profilePath, want).decode(t, &answered)
	if diff := cmp.Diff(want, answered); diff != "" {
		t.Fatalf("PUT answered (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, f.profile(t)); diff != "" {
		t.Fatalf("GET after PUT (-want +got):\n%s", diff)
	}
	// An empty body puts the default back, as Keycloak's null does.
	f.do(http.MethodPut, profilePath, nil).wantStatus(t, http.StatusOK)
	if diff := cmp.Diff(def, f.profile(t)); diff != "" {
		t.Fatalf("after a reset (-default +got):\n%s", diff)
	}
}

// TestUserAttributesFollowTheProfile: what a user create keeps of the
// attributes sent, under each unmanaged attribute policy and declaration.
func TestUserAttributesFollowTheProfile(t *testing.T) {
	sent := map[string][]string{"tenancy.tenant_id": {"t-1", "t-2"}, "free": {"x"}}
	for _, tc := range []struct {
		name      string
		policy    string
		declare   []keycloakfake.ProfileAttribute
		want      map[string][]string
		wantError string
	}{
		{name: "default: undeclared are dropped", want: nil},
		{name: "declared for admins", declare: []keycloakfake.ProfileAttribute{adminOnly("tenancy.tenant_id", true)},
			want: map[string][]string{"tenancy.tenant_id": {"t-1", "t-2"}}},
		{name: "declared without permissions", declare: []keycloakfake.ProfileAttribute{{Name: "tenancy.tenant_id", Multivalued: true}}, want: nil},
		{name: "declared for users only", declare: []keycloakfake.ProfileAttribute{{Name: "tenancy.tenant_id", Multivalued: true,
			Permissions: &keycloakfake.AttributePermissions{View: []string{"admin", "user"}, Edit: []string{"user"}}}}, want: nil},
		{name: "declared single-valued", declare: []keycloakfake.ProfileAttribute{adminOnly("tenancy.tenant_id", false)},
			wantError: `{"field":"tenancy.tenant_id","errorMessage":"error-invalid-multivalued-size","params":["tenancy.tenant_id","0","1"]}`},
		{name: "ENABLED", policy: keycloakfake.PolicyEnabled, want: sent},
		{name: "ADMIN_EDIT", policy: keycloakfake.PolicyAdminEdit, want: sent},
		{name: "ADMIN_VIEW: admins cannot write them", policy: keycloakfake.PolicyAdminView, want: nil},
		{name: "ENABLED and a declaration", policy: keycloakfake.PolicyEnabled,
			declare: []keycloakfake.ProfileAttribute{{Name: "tenancy.tenant_id", Multivalued: true}}, want: map[string][]string{"free": {"x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.createRealm("acme", nil)
			p := f.profile(t)
			p.UnmanagedAttributePolicy = tc.policy
			p.Attributes = append(p.Attributes, tc.declare...)
			f.do(http.MethodPut, profilePath, p).wantStatus(t, http.StatusOK)
			res := f.do(http.MethodPost, "/admin/realms/acme/users", map[string]any{"username": "ann", "attributes": sent})
			if tc.wantError != "" {
				res.wantError(t, http.StatusBadRequest, tc.wantError)
				return
			}
			id := res.created(t, f.srv.URL(), "/admin/realms/acme/users/")
			var u keycloakfake.User
			f.get(t, "/admin/realms/acme/users/"+id, &u)
			if diff := cmp.Diff(tc.want, u.Attributes); diff != "" {
				t.Fatalf("attributes shown (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, f.srv.Users("acme")[0].Attributes); diff != "" {
				t.Fatalf("attributes stored (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHiddenAttributesSurviveAndReturn: a stored attribute whose
// declaration is removed is hidden, kept through updates that cannot see
// it, and shown again once declared; a declared read-only attribute cannot
// be changed.
func TestHiddenAttributesSurviveAndReturn(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", nil)
	declared := f.profile(t)
	declared.Attributes = append(declared.Attributes, adminOnly("tenancy.tenant_id", true))
	f.do(http.MethodPut, profilePath, declared).wantStatus(t, http.StatusOK)
	id := f.createUser("acme", map[string]any{"username": "ann", "attributes": map[string][]string{"tenancy.tenant_id": {"t-1"}}})
	userPath := "/admin/realms/acme/users/" + id

	f.do(http.MethodPut, profilePath, nil).wantStatus(t, http.StatusOK) // back to the default
	var u keycloakfake.User
	f.get(t, userPath, &u)
	if u.Attributes != nil {
		t.Fatalf("an undeclared attribute is shown: %v", u.Attributes)
	}
	u.FirstName = "Ann"
	u.Attributes = map[string][]string{"tenancy.tenant_id": {"forged"}}
	f.do(http.MethodPut, userPath, u).wantStatus(t, http.StatusNoContent)
	if got := f.srv.Users("acme")[0]; got.FirstName != "Ann" || !slices.Equal(got.Attributes["tenancy.tenant_id"], []string{"t-1"}) {
		t.Fatalf("after an update that could not see the attribute: %+v", got)
	}

	f.do(http.MethodPut, profilePath, declared).wantStatus(t, http.StatusOK)
	f.get(t, userPath, &u)
	if !slices.Equal(u.Attributes["tenancy.tenant_id"], []string{"t-1"}) {
		t.Fatalf("declared again, the attribute is not shown: %v", u.Attributes)
	}

	readOnly := f.profile(t)
	readOnly.Attributes[len(readOnly.Attributes)-1].Permissions.Edit = nil
	f.do(http.MethodPut, profilePath, readOnly).wantStatus(t, http.StatusOK)
	f.do(http.MethodPut, userPath, u).wantStatus(t, http.StatusNoContent) // unchanged: fine
	u.Attributes["tenancy.tenant_id"] = []string{"t-2"}
	f.do(http.MethodPut, userPath, u).wantError(t, http.StatusBadRequest,
		`{"field":"tenancy.tenant_id","errorMessage":"error-user-attribute-read-only","params":["tenancy.tenant_id"]}`)
}

func TestUserProfileInspection(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", nil)
	p, ok := f.srv.UserProfile("acme")
	if !ok || len(p.Attributes) != 4 {
		t.Fatalf("UserProfile: %+v %v", p, ok)
	}
	p.Attributes = p.Attributes[:2]
	p.UnmanagedAttributePolicy = keycloakfake.PolicyEnabled
	f.srv.SetUserProfile("acme", p)
	if got := f.profile(t); !slices.Equal(attributeNames(got), []string{"username", "email"}) || got.UnmanagedAttributePolicy != keycloakfake.PolicyEnabled {
		t.Fatalf("after SetUserProfile: %+v", got)
	}
	p.Attributes[0].Name = "mutated"
	if again, _ := f.srv.UserProfile("acme"); again.Attributes[0].Name != "username" {
		t.Fatal("UserProfile hands out the fake's own state")
	}
	if _, ok := f.srv.UserProfile("nope"); ok {
		t.Fatal("a profile for a realm that does not exist")
	}
}
