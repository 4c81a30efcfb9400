package keycloakfake

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Group is a group representation. Path is computed from the tree; the
// fake keeps the tree in parent links.
type Group struct {
	ID            string              `json:"id,omitempty"`
	Name          string              `json:"name"`
	Path          string              `json:"path,omitempty"`
	ParentID      string              `json:"parentId,omitempty"`
	SubGroupCount int                 `json:"subGroupCount"`
	Attributes    map[string][]string `json:"attributes,omitempty"`
}

type groupState struct {
	id, name, parent string
	attributes       map[string][]string
}

var (
	errGroupNotFound = oauthError(http.StatusNotFound, "Could not find group by id", "")
	errGroupNoName   = errorMessage(http.StatusBadRequest, "Group name is missing")
)

func (rs *realmState) groupPath(g *groupState) string {
	path := "/" + g.name
	for p := g.parent; p != ""; {
		parent := rs.groups[p]
		path = "/" + parent.name + path
		p = parent.parent
	}
	return path
}

// shownGroup renders g as Keycloak does: attributes only when brief is
// false.
func (rs *realmState) shownGroup(g *groupState, brief bool) Group {
	out := Group{ID: g.id, Name: g.name, Path: rs.groupPath(g), ParentID: g.parent, SubGroupCount: len(rs.childGroups(g.id))}
	if !brief {
		out.Attributes = map[string][]string{}
		for k, v := range g.attributes {
			out.Attributes[k] = slices.Clone(v)
		}
	}
	return out
}

func (rs *realmState) childGroups(parent string) []*groupState {
	var out []*groupState
	for _, g := range rs.groups {
		if g.parent == parent {
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b *groupState) int { return cmp.Compare(a.name, b.name) })
	return out
}

func (s *Server) routeGroups(q *request, rs *realmState, rest []string) response {
	if len(rest) == 0 {
		return collection(q, rs, func(q *request, rs *realmState) response { return listGroups(q, rs, "") },
			func(q *request, rs *realmState) response { return s.putGroupUnder(q, rs, "") })
	}
	g, ok := rs.groups[rest[0]]
	if !ok {
		return errGroupNotFound
	}
	switch {
	case len(rest) == 1:
		return item(q,
			func() response { return jsonOK(rs.shownGroup(g, false)) },
			func() response { return updateGroup(q, rs, g) },
			func() response { rs.deleteGroup(g.id); return noContent() })
	case len(rest) == 2 && rest[1] == "children":
		return collection(q, rs, func(q *request, rs *realmState) response { return listGroups(q, rs, g.id) },
			func(q *request, rs *realmState) response { return s.putGroupUnder(q, rs, g.id) })
	}
	return errNoRoute
}

// listGroups lists the groups under parent ("" for the top): top-level
// listings are brief unless briefRepresentation=false; children are full
// unless briefRepresentation=true, as in Keycloak 26.
func listGroups(q *request, rs *realmState, parent string) response {
	brief := q.query.Get("briefRepresentation") == "true"
	if parent == "" {
		brief = q.query.Get("briefRepresentation") != "false"
	}
	out := []Group{}
	for _, g := range rs.childGroups(parent) {
		out = append(out, rs.shownGroup(g, brief))
	}
	return jsonOK(page(out, q.query, 100))
}

// putGroupUnder creates a group under parent (201 with a Location), or,
// given the id of an existing group, moves that group there (204).
// Sibling names are unique (409).
func (s *Server) putGroupUnder(q *request, rs *realmState, parent string) response {
	var b Group
	if !q.decode(&b) {
		return errCannotParse
	}
	if existing, ok := rs.groups[b.ID]; ok && b.ID != "" {
		for p := parent; p != ""; p = rs.groups[p].parent {
			if p == existing.id {
				return errorMessage(http.StatusBadRequest, "Cannot move group under itself")
			}
		}
		if rs.siblingNamed(parent, existing.name, existing.id) {
			return siblingTaken(parent, existing.name)
		}
		existing.parent = parent
		return noContent()
	}
	if strings.TrimSpace(b.Name) == "" {
		return errGroupNoName
	}
	if rs.siblingNamed(parent, b.Name, "") {
		return siblingTaken(parent, b.Name)
	}
	g := &groupState{id: newUUID(), name: b.Name, parent: parent, attributes: map[string][]string{}}
	for k, v := range b.Attributes {
		g.attributes[k] = slices.Clone(v)
	}
	rs.groups[g.id] = g
	s.creates["group"]++
	return response{status: http.StatusCreated, location: q.base + "/admin/realms/" + url.PathEscape(rs.rep.Realm) + "/groups/" + g.id}
}

func (rs *realmState) siblingNamed(parent, name, except string) bool {
	for _, g := range rs.childGroups(parent) {
		if g.name == name && g.id != except {
			return true
		}
	}
	return false
}

func siblingTaken(parent, name string) response {
	if parent == "" {
		return errorMessage(http.StatusConflict, "Top level group named '"+name+"' already exists.")
	}
	return errorMessage(http.StatusConflict, "Sibling group named '"+name+"' already exists.")
}

// updateGroup renames a group and replaces its attributes when given
// ("Update group, ignores subgroups").
func updateGroup(q *request, rs *realmState, g *groupState) response {
	var b Group
	if !q.decode(&b) {
		return errCannotParse
	}
	if b.Name != "" && b.Name != g.name {
		if rs.siblingNamed(g.parent, b.Name, g.id) {
			return siblingTaken(g.parent, b.Name)
		}
		g.name = b.Name
	}
	if b.Attributes != nil {
		g.attributes = map[string][]string{}
		for k, v := range b.Attributes {
			g.attributes[k] = slices.Clone(v)
		}
	}
	return noContent()
}

// deleteGroup deletes a group, its subgroups and their memberships.
func (rs *realmState) deleteGroup(id string) {
	for _, c := range rs.childGroups(id) {
		rs.deleteGroup(c.id)
	}
	delete(rs.groups, id)
	for _, u := range rs.users {
		delete(u.groups, id)
	}
}

// routeUserGroups serves /users/{id}/groups[/{groupId}].
func routeUserGroups(q *request, rs *realmState, u *userState, rest []string) response {
	if len(rest) == 0 {
		if q.method != http.MethodGet {
			return methodNotAllowed(http.MethodGet)
		}
		brief := q.query.Get("briefRepresentation") != "false"
		out := []Group{}
		for id := range u.groups {
			out = append(out, rs.shownGroup(rs.groups[id], brief))
		}
		slices.SortFunc(out, func(a, b Group) int { return cmp.Compare(a.Path, b.Path) })
		return jsonOK(page(out, q.query, 100))
	}
	g, ok := rs.groups[rest[0]]
	if !ok || len(rest) != 1 {
		return errGroupNotFound
	}
	switch q.method {
	case http.MethodPut:
		u.groups[g.id] = true
		return noContent()
	case http.MethodDelete:
		delete(u.groups, g.id)
		return noContent()
	}
	return methodNotAllowed(http.MethodPut, http.MethodDelete)
}

// Groups returns the realm's groups, every level, ordered by path.
func (s *Server) Groups(realm string) []Group {
	return inspectRealm(s, realm, func(rs *realmState) []Group {
		out := []Group{}
		for _, g := range rs.groups {
			out = append(out, rs.shownGroup(g, false))
		}
		slices.SortFunc(out, func(a, b Group) int { return cmp.Compare(a.Path, b.Path) })
		return out
	})
}

// UserGroupPaths returns the paths of the groups a user is a member of,
// sorted.
func (s *Server) UserGroupPaths(realm, userID string) []string {
	return inspectRealm(s, realm, func(rs *realmState) []string {
		u, ok := rs.users[userID]
		if !ok {
			return nil
		}
		var out []string
		for id := range u.groups {
			out = append(out, rs.groupPath(rs.groups[id]))
		}
		slices.Sort(out)
		return out
	})
}
