package keycloakfake

import (
	"cmp"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// routeOrgs answers /admin/realms/{realm}/organizations/... Keycloak checks
// that the realm has organizations enabled before it looks at the rest of
// the path, so every organization endpoint of a realm without them answers
// 404 (to a caller allowed to query organizations, as the provisioner is;
// others get a 403).
func (s *Server) routeOrgs(q *request, rs *realmState, rest []string) response {
	if !rs.rep.OrganizationsEnabled {
		return errOrgsDisabled
	}
	if len(rest) == 0 {
		return collection(q, rs, listOrgs, s.createOrg)
	}
	if len(rest) == 1 && rest[0] == "count" {
		if q.method != http.MethodGet {
			return methodNotAllowed(http.MethodGet)
		}
		return jsonOK(len(filterOrgs(q.query, rs)))
	}
	o, ok := rs.orgs[rest[0]]
	if !ok {
		return errOrgNotFound
	}
	switch {
	case len(rest) == 1:
		return item(q,
			func() response { return jsonOK(o.rep.clone()) },
			func() response { return updateOrg(q, rs, o) },
			func() response {
				delete(rs.orgs, o.rep.ID)
				return noContent()
			})
	case rest[1] == "members":
		return s.routeMembers(q, rs, o, rest[2:])
	}
	return errNoRoute
}

// listOrgs answers a search, ordered by name as Keycloak orders it, ten at
// a time unless max says otherwise; listings are brief (no attributes)
// unless briefRepresentation=false.
func listOrgs(q *request, rs *realmState) response {
	found := filterOrgs(q.query, rs)
	brief := q.query.Get("briefRepresentation") != "false"
	out := make([]Organization, 0, len(found))
	for _, o := range found {
		if brief {
			out = append(out, o.rep.brief())
		} else {
			out = append(out, o.rep.clone())
		}
	}
	return jsonOK(page(out, q.query, 10))
}

// filterOrgs applies the search parameters. q ("key:value" pairs) wins over
// search: its "alias" key matches the alias exactly and any other key an
// attribute value. search matches the name or a domain, case-insensitive
// substrings unless exact=true.
func filterOrgs(v url.Values, rs *realmState) []*orgState {
	match := func(Organization) bool { return true }
	if fields := parseSearchQuery(v.Get("q")); len(fields) > 0 {
		match = func(o Organization) bool {
			for k, want := range fields {
				if k == "alias" && o.Alias != want || k != "alias" && !slices.Contains(o.Attributes[k], want) {
					return false
				}
			}
			return true
		}
	} else if search := v.Get("search"); search != "" {
		exact := v.Get("exact") == "true"
		like := func(s string) bool {
			if exact {
				return s == search
			}
			return strings.Contains(strings.ToLower(s), strings.ToLower(search))
		}
		match = func(o Organization) bool {
			return like(o.Name) || slices.ContainsFunc(o.Domains, func(d OrganizationDomain) bool { return like(d.Name) })
		}
	}
	var out []*orgState
	for _, o := range sortedOrgs(rs, func(o Organization) string { return o.Name }) {
		if match(o.rep) {
			out = append(out, o)
		}
	}
	return out
}

// searchPair is one key:value pair of Keycloak's q syntax; either side may
// be double-quoted, with backslash escapes inside.
var (
	searchPair    = regexp.MustCompile(`(?:([^":\s][^:\s]*)|"((?:\\.|[^"\\])*)"):(?:([^"\s]\S*)|"((?:\\.|[^"\\])*)")`)
	searchEscaped = regexp.MustCompile(`\\(.)`)
)

// parseSearchQuery reads q: space-separated key:value pairs; words
// without a colon are ignored.
func parseSearchQuery(q string) map[string]string {
	fields := map[string]string{}
	for _, m := range searchPair.FindAllStringSubmatch(q, -1) {
		key, value := m[1], m[3]
		if key == "" {
			key = searchEscaped.ReplaceAllString(m[2], "$1")
		}
		if value == "" {
			value = searchEscaped.ReplaceAllString(m[4], "$1")
		}
		fields[key] = value
	}
	return fields
}

func (s *Server) createOrg(q *request, rs *realmState) response {
	var b orgBody
	if !q.decode(&b) {
		return errCannotParse
	}
	if strings.TrimSpace(b.Name) == "" {
		return errorMessage(http.StatusBadRequest, "Name can not be null")
	}
	if b.Alias == "" {
		if strings.ContainsAny(b.Name, " \t") {
			return errorMessage(http.StatusBadRequest, "Name contains a reserved character and cannot be used as alias")
		}
		b.Alias = b.Name
	}
	if orgBy(rs, func(o Organization) bool { return o.Name == b.Name }) != nil {
		return errOrgNameTaken
	}
	if orgBy(rs, func(o Organization) bool { return o.Alias == b.Alias }) != nil {
		return errorMessage(http.StatusConflict, "A organization with the same alias already exists")
	}
	o := &orgState{rep: Organization{ID: newUUID(), Alias: b.Alias, Domains: []OrganizationDomain{}}, members: map[string]bool{}}
	b.applyTo(&o.rep)
	rs.orgs[o.rep.ID] = o
	s.creates["organization"]++
	return response{status: http.StatusCreated, location: q.base + orgPath(rs, o)}
}

var errOrgNameTaken = errorMessage(http.StatusConflict, "A organization with the same name already exists.")

// updateOrg replaces the organization with the body, as Keycloak's PUT
// does, but for the alias, which cannot change (empty means the name), and
// attributes and domains, which stay as they are when absent.
func updateOrg(q *request, rs *realmState, o *orgState) response {
	var b orgBody
	if !q.decode(&b) {
		return errCannotParse
	}
	if strings.TrimSpace(b.Name) == "" {
		return errorMessage(http.StatusBadRequest, "Name can not be null")
	}
	if b.Alias == "" {
		b.Alias = b.Name
	}
	if b.Alias != o.rep.Alias {
		return errorMessage(http.StatusBadRequest, "Cannot change the alias")
	}
	if orgBy(rs, func(other Organization) bool { return other.Name == b.Name && other.ID != o.rep.ID }) != nil {
		return errOrgNameTaken
	}
	b.applyTo(&o.rep)
	return noContent()
}

// applyTo writes the body's fields other than id and alias.
func (b orgBody) applyTo(o *Organization) {
	o.Name = b.Name
	o.Enabled = b.Enabled == nil || *b.Enabled
	o.Description = b.Description
	o.RedirectURL = b.RedirectURL
	if b.Attributes != nil {
		o.Attributes = cloneAttributes(b.Attributes)
	}
	if b.Domains != nil {
		// Keycloak drops domains without a name.
		o.Domains = slices.DeleteFunc(slices.Clone(b.Domains), func(d OrganizationDomain) bool { return strings.TrimSpace(d.Name) == "" })
	}
}

// member is a MemberRepresentation: the user, and how it joined.
type member struct {
	User
	MembershipType string `json:"membershipType"`
}

func (s *Server) routeMembers(q *request, rs *realmState, o *orgState, rest []string) response {
	switch {
	case len(rest) == 0:
		switch q.method {
		case http.MethodGet:
			return listMembers(q, rs, o)
		case http.MethodPost:
			return s.addMember(q, rs, o)
		}
		return methodNotAllowed(http.MethodGet, http.MethodPost)
	case len(rest) == 1 && rest[0] == "count":
		if q.method != http.MethodGet {
			return methodNotAllowed(http.MethodGet)
		}
		return jsonOK(len(orgMembers(rs, o)))
	case len(rest) == 1:
		u, ok := rs.users[rest[0]]
		if !ok || !o.members[rest[0]] {
			return errNotMember
		}
		switch q.method {
		case http.MethodGet:
			return jsonOK(member{User: rs.shown(u), MembershipType: "UNMANAGED"})
		case http.MethodDelete:
			delete(o.members, rest[0])
			return noContent()
		}
		return methodNotAllowed(http.MethodGet, http.MethodDelete)
	}
	return errNoRoute
}

// addMember reads the user id, a JSON string or the bare id, surrounding
// whitespace trimmed, as Keycloak does.
func (s *Server) addMember(q *request, rs *realmState, o *orgState) response {
	id := strings.TrimSpace(string(q.body))
	if unquoted, err := strconv.Unquote(id); err == nil {
		id = strings.TrimSpace(unquoted)
	}
	if _, ok := rs.users[id]; !ok {
		return errorMessage(http.StatusBadRequest, "User does not exist")
	}
	if o.members[id] {
		return errorMessage(http.StatusConflict, "User is already a member of the organization.")
	}
	o.members[id] = true
	s.creates["member"]++
	return response{status: http.StatusCreated, location: q.base + orgPath(rs, o) + "/members/" + id}
}

// listMembers filters on search (username, email, first or last name;
// case-insensitive substrings unless exact=true), ten at a time unless max
// says otherwise.
func listMembers(q *request, rs *realmState, o *orgState) response {
	search := strings.ToLower(q.query.Get("search"))
	exact := q.query.Get("exact") == "true"
	out := []member{}
	for _, u := range orgMembers(rs, o) {
		hit := search == ""
		for _, f := range []string{u.rep.Username, u.rep.Email, u.rep.FirstName, u.rep.LastName} {
			f = strings.ToLower(f)
			hit = hit || exact && f == search || !exact && strings.Contains(f, search)
		}
		if hit {
			out = append(out, member{User: rs.shown(u), MembershipType: "UNMANAGED"})
		}
	}
	return jsonOK(page(out, q.query, 10))
}

// orgMembers returns the organization's members sorted by username.
func orgMembers(rs *realmState, o *orgState) []*userState {
	var out []*userState
	for _, u := range sortedUsers(rs) {
		if o.members[u.rep.ID] {
			out = append(out, u)
		}
	}
	return out
}

func orgPath(rs *realmState, o *orgState) string {
	return "/admin/realms/" + url.PathEscape(rs.rep.Realm) + "/organizations/" + o.rep.ID
}

func orgBy(rs *realmState, match func(Organization) bool) *orgState {
	for _, o := range rs.orgs {
		if match(o.rep) {
			return o
		}
	}
	return nil
}

func sortedOrgs(rs *realmState, key func(Organization) string) []*orgState {
	out := make([]*orgState, 0, len(rs.orgs))
	for _, o := range rs.orgs {
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b *orgState) int { return cmp.Compare(key(a.rep), key(b.rep)) })
	return out
}
