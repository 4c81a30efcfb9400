package keycloakfake

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
)

// Keycloak 24 and later hold every user attribute to the realm's user
// profile. An attribute the profile declares is seen and written by the
// roles its permissions name ("admin" is the Admin API); one it does not
// declare is unmanaged, and the profile's unmanagedAttributePolicy decides:
// ENABLED and ADMIN_EDIT let the Admin API see and write it, ADMIN_VIEW only
// see it (admin writes getting through under ADMIN_VIEW was reported against
// 26.4 as a bug, issue #45417), and no policy, the default, neither. A write Keycloak does
// not allow is dropped with a 2xx answer, not refused (issue #25984); a
// value stored before its declaration went away stays stored but hidden, and
// shows again once declared. The fake does all of this because a client
// that forgets to declare what it stores loses it against a real Keycloak
// and must lose it here too.

// defaultProfileJSON is Keycloak's keycloak-default-user-profile.json, the
// profile of every realm whose profile was never set.
const defaultProfileJSON = `{
  "attributes": [
    {"name": "username", "displayName": "${username}",
     "validations": {"length": {"min": 3, "max": 255}, "username-prohibited-characters": {}, "up-username-not-idn-homograph": {}},
     "permissions": {"view": ["admin", "user"], "edit": ["admin", "user"]}, "multivalued": false},
    {"name": "email", "displayName": "${email}",
     "validations": {"email": {}, "length": {"max": 255}},
     "required": {"roles": ["user"]},
     "permissions": {"view": ["admin", "user"], "edit": ["admin", "user"]}, "multivalued": false},
    {"name": "firstName", "displayName": "${firstName}",
     "validations": {"length": {"max": 255}, "person-name-prohibited-characters": {}},
     "required": {"roles": ["user"]},
     "permissions": {"view": ["admin", "user"], "edit": ["admin", "user"]}, "multivalued": false},
    {"name": "lastName", "displayName": "${lastName}",
     "validations": {"length": {"max": 255}, "person-name-prohibited-characters": {}},
     "required": {"roles": ["user"]},
     "permissions": {"view": ["admin", "user"], "edit": ["admin", "user"]}, "multivalued": false}
  ],
  "groups": [
    {"name": "user-metadata", "displayHeader": "User metadata", "displayDescription": "Attributes, which refer to user metadata"}
  ]
}`

// defaultProfile is parsed once; a realm gets a clone.
var defaultProfile = func() UserProfile {
	var p UserProfile
	if err := json.Unmarshal([]byte(defaultProfileJSON), &p); err != nil {
		panic("keycloakfake: the default user profile does not parse: " + err.Error())
	}
	return p.clone()
}()

// clone deep-copies p through JSON, since validations and annotations hold
// arbitrary values, and fills in the empty lists Keycloak serialises.
func (p UserProfile) clone() UserProfile {
	b, err := json.Marshal(p)
	var out UserProfile
	if err == nil {
		err = json.Unmarshal(b, &out)
	}
	if err != nil {
		// Only values decoded from JSON are ever stored, so they encode.
		panic("keycloakfake: user profile does not round-trip: " + err.Error())
	}
	if out.Groups == nil {
		out.Groups = []ProfileGroup{}
	}
	for _, a := range out.Attributes {
		if a.Permissions != nil {
			a.Permissions.View = cloneSlice(a.Permissions.View)
			a.Permissions.Edit = cloneSlice(a.Permissions.Edit)
		}
	}
	return out
}

func (s *Server) routeProfile(q *request, rs *realmState, rest []string) response {
	if len(rest) != 0 {
		return errNoRoute // the metadata view is not modelled
	}
	switch q.method {
	case http.MethodGet:
		return jsonOK(rs.profile.clone())
	case http.MethodPut:
		return updateProfile(q, rs)
	}
	return methodNotAllowed(http.MethodGet, http.MethodPut)
}

// updateProfile replaces the profile and answers 200 with it. An empty or
// null body resets the realm to the default profile, as Keycloak's
// setConfiguration(null) does.
func updateProfile(q *request, rs *realmState) response {
	if body := bytes.TrimSpace(q.body); len(body) == 0 || string(body) == "null" {
		rs.profile = defaultProfile.clone()
		return jsonOK(rs.profile.clone())
	}
	var p UserProfile
	if !q.decode(&p) {
		return errCannotParse
	}
	switch p.UnmanagedAttributePolicy {
	case "", PolicyEnabled, PolicyAdminView, PolicyAdminEdit:
	default:
		return errCannotParse // an unknown enum constant fails deserialisation
	}
	if problems := p.problems(); len(problems) > 0 {
		return errorMessage(http.StatusBadRequest, "["+strings.Join(problems, ", ")+"]")
	}
	rs.profile = p.clone()
	return jsonOK(rs.profile.clone())
}

var attributeName = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)

// problems runs Keycloak's UPConfigUtils.validate checks that need no
// validator registry or client scopes, with its messages.
func (p UserProfile) problems() []string {
	if p.Attributes == nil {
		return []string{"UserProfile configuration without 'attributes' section is not allowed"}
	}
	var out []string
	seen := map[string]bool{}
	for _, a := range p.Attributes {
		switch {
		case strings.TrimSpace(a.Name) == "":
			out = append(out, "Attribute configuration without 'name' is not allowed")
		case seen[a.Name]:
			out = append(out, "Attribute configuration already exists with 'name':'"+a.Name+"'")
		case !attributeName.MatchString(a.Name):
			out = append(out, "Invalid attribute name (only letters, numbers and '.' '_' '-' special characters allowed): "+a.Name+"'")
		}
		seen[a.Name] = true
		roles := map[string][]string{}
		if a.Permissions != nil {
			roles["permissions.view"], roles["permissions.edit"] = a.Permissions.View, a.Permissions.Edit
		}
		if a.Required != nil {
			roles["required.roles"] = a.Required.Roles
		}
		for _, field := range []string{"permissions.view", "permissions.edit", "required.roles"} {
			for _, r := range roles[field] {
				if r != "admin" && r != "user" {
					out = append(out, "'"+field+"' configuration for attribute '"+a.Name+"' contains unsupported role '"+r+"'")
				}
			}
		}
	}
	return out
}

// access is what the Admin API may do with one user attribute.
type access struct {
	declared, multivalued, view, edit bool
}

// adminAccess applies the profile to the attribute name for the Admin
// API: a declared attribute's permissions (none when absent; whoever may
// write may see), else the unmanaged attribute policy.
func (p *UserProfile) adminAccess(name string) access {
	for _, a := range p.Attributes {
		if a.Name != name {
			continue
		}
		acc := access{declared: true, multivalued: a.Multivalued}
		if a.Permissions != nil {
			acc.edit = slices.Contains(a.Permissions.Edit, "admin")
			acc.view = acc.edit || slices.Contains(a.Permissions.View, "admin")
		}
		return acc
	}
	switch p.UnmanagedAttributePolicy {
	case PolicyEnabled, PolicyAdminEdit:
		return access{view: true, edit: true}
	case PolicyAdminView:
		return access{view: true}
	}
	return access{}
}

// userError is the ErrorRepresentation of a failed user profile
// validation.
func userError(field, msg string, params ...string) response {
	return response{status: http.StatusBadRequest, body: map[string]any{"field": field, "errorMessage": msg, "params": append([]string{field}, params...)}}
}

// admitAttributes returns the attributes a user holds after an Admin API
// write that sent sent, stored being those it held (nil for a new user).
// What the caller may not write keeps its stored values: a change to a
// declared read-only attribute of an existing user is a 400, as Keycloak's
// ImmutableAttributeValidator makes it, and any other such write is dropped
// silently. A declared single-valued attribute with more than one
// non-blank value is a 400.
func (p *UserProfile) admitAttributes(sent, stored map[string][]string, update bool) (map[string][]string, *response) {
	out := map[string][]string{}
	for name, v := range stored {
		if !p.adminAccess(name).edit {
			out[name] = slices.Clone(v)
		}
	}
	for name, v := range sent {
		acc := p.adminAccess(name)
		if !acc.edit {
			if acc.declared && update && !sameValues(v, stored[name]) {
				bad := userError(name, "error-user-attribute-read-only")
				return nil, &bad
			}
			continue
		}
		if acc.declared && !acc.multivalued && nonBlank(v) > 1 {
			bad := userError(name, "error-invalid-multivalued-size", "0", "1")
			return nil, &bad
		}
		out[name] = slices.Clone(v)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// sameValues compares as Keycloak's ImmutableAttributeValidator does:
// the same size, and every new value among the old ones.
func sameValues(v, was []string) bool {
	if len(v) != len(was) {
		return false
	}
	for _, x := range v {
		if !slices.Contains(was, x) {
			return false
		}
	}
	return true
}

func nonBlank(v []string) int {
	n := 0
	for _, x := range v {
		if strings.TrimSpace(x) != "" {
			n++
		}
	}
	return n
}

// shown is the user as the Admin API shows it: without the attributes the
// realm's profile hides from administrators.
func (rs *realmState) shown(u *userState) User {
	rep := u.rep.clone()
	for name := range rep.Attributes {
		if !rs.profile.adminAccess(name).view {
			delete(rep.Attributes, name)
		}
	}
	if len(rep.Attributes) == 0 {
		rep.Attributes = nil
	}
	return rep
}
