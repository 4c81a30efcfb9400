package keycloakfake

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

func (s *Server) routeRoles(q *request, rs *realmState, rest []string) response {
	switch len(rest) {
	case 0:
		return collection(q, rs, listRoles, s.createRole)
	case 1:
		role, ok := rs.roles[rest[0]]
		if !ok {
			return errRoleNotFound
		}
		return item(q,
			func() response { return jsonOK(*role) },
			func() response { return updateRole(q, rs, role) },
			func() response {
				delete(rs.roles, role.Name)
				for _, u := range rs.users {
					delete(u.roleIDs, role.ID)
				}
				return noContent()
			})
	}
	return errNoRoute
}

func listRoles(q *request, rs *realmState) response {
	search := strings.ToLower(q.query.Get("search"))
	out := []Role{}
	for _, r := range sortedRoles(rs) {
		if search == "" || strings.Contains(strings.ToLower(r.Name), search) {
			out = append(out, r)
		}
	}
	return jsonOK(page(out, q.query, -1))
}

func (s *Server) createRole(q *request, rs *realmState) response {
	var b roleBody
	if !q.decode(&b) {
		return errCannotParse
	}
	if b.Name == nil || *b.Name == "" {
		return errorMessage(http.StatusBadRequest, "Role name is missing")
	}
	if _, exists := rs.roles[*b.Name]; exists {
		return errorMessage(http.StatusConflict, "Role with name "+*b.Name+" already exists")
	}
	desc := ""
	if b.Description != nil {
		desc = *b.Description
	}
	s.addRole(rs, *b.Name, desc, false)
	s.creates["role"]++
	return response{
		status:   http.StatusCreated,
		location: q.base + "/admin/realms/" + url.PathEscape(rs.rep.Realm) + "/roles/" + url.PathEscape(*b.Name),
	}
}

// updateRole renames when the body names a different role; mappings follow
// the role because they are kept by id.
func updateRole(q *request, rs *realmState, role *Role) response {
	var b roleBody
	if !q.decode(&b) {
		return errCannotParse
	}
	if b.Name != nil && *b.Name != "" && *b.Name != role.Name {
		if _, taken := rs.roles[*b.Name]; taken {
			return errorMessage(http.StatusConflict, "Role with name "+*b.Name+" already exists")
		}
		delete(rs.roles, role.Name)
		role.Name = *b.Name
		rs.roles[role.Name] = role
	}
	setIf(&role.Description, b.Description)
	return noContent()
}

// page applies Keycloak's first/max pagination; defMax < 0 means no limit.
func page[T any](items []T, q url.Values, defMax int) []T {
	first, err := strconv.Atoi(q.Get("first"))
	if err != nil || first < 0 {
		first = 0
	}
	limit := defMax
	if v, err := strconv.Atoi(q.Get("max")); err == nil && v >= 0 {
		limit = v
	}
	if first >= len(items) {
		return []T{}
	}
	items = items[first:]
	if limit >= 0 && limit < len(items) {
		items = items[:limit]
	}
	return items
}
