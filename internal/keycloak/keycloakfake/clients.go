package keycloakfake

import (
	"net/http"
	"net/url"
	"strings"
)

func (s *Server) routeClients(q *request, rs *realmState, rest []string) response {
	if len(rest) == 0 {
		return collection(q, rs, listClients, s.createClient)
	}
	c, ok := rs.clients[rest[0]]
	if !ok {
		return errClientNotFound
	}
	switch {
	case len(rest) == 1:
		return item(q,
			func() response { return jsonOK(c.clone()) },
			func() response { return s.updateClient(q, rs, c) },
			func() response {
				if u := serviceAccountOf(rs, c); u != nil {
					delete(rs.users, u.rep.ID)
				}
				delete(rs.clients, c.ID)
				return noContent()
			})
	case len(rest) == 2 && rest[1] == "service-account-user":
		if q.method != http.MethodGet {
			return methodNotAllowed(http.MethodGet)
		}
		u := serviceAccountOf(rs, c)
		if !c.ServiceAccountsEnabled || u == nil {
			return errorMessage(http.StatusBadRequest, "Service account not enabled for the client '"+c.ClientID+"'")
		}
		return jsonOK(rs.shown(u))
	case len(rest) >= 3 && rest[1] == "protocol-mappers" && rest[2] == "models":
		return s.routeMappers(q, rs, c, rest[3:])
	}
	return errNoRoute
}

// listClients filters on clientId exactly, unless search=true turns it into
// a case-insensitive substring match, as Keycloak does.
func listClients(q *request, rs *realmState) response {
	want := q.query.Get("clientId")
	search := q.query.Get("search") == "true"
	out := []Client{}
	for _, c := range sortedClients(rs) {
		switch {
		case want == "":
		case search && strings.Contains(strings.ToLower(c.ClientID), strings.ToLower(want)):
		case !search && c.ClientID == want:
		default:
			continue
		}
		out = append(out, c)
	}
	return jsonOK(page(out, q.query, -1))
}

func (s *Server) createClient(q *request, rs *realmState) response {
	var p clientPatch
	if !q.decode(&p) {
		return errCannotParse
	}
	if p.ClientID == nil || *p.ClientID == "" {
		return errorMessage(http.StatusBadRequest, "Client ID is missing")
	}
	exists := errorMessage(http.StatusConflict, "Client "+*p.ClientID+" already exists")
	if clientByClientID(rs, *p.ClientID) != nil {
		return exists
	}
	c := &Client{
		ClientID:            *p.ClientID,
		Enabled:             true,
		Protocol:            "openid-connect",
		StandardFlowEnabled: true,
		RedirectURIs:        []string{},
		WebOrigins:          []string{},
		Attributes:          map[string]string{},
	}
	if p.ID != nil && *p.ID != "" {
		if _, taken := rs.clients[*p.ID]; taken {
			return exists
		}
		c.ID = *p.ID
	} else {
		c.ID = newUUID()
	}
	p.apply(c)
	if c.Secret == "" && !c.PublicClient {
		c.Secret = newUUID()
	}
	seen := map[string]bool{}
	for _, m := range p.ProtocolMappers {
		if seen[m.Name] {
			return errorMessage(http.StatusConflict, "Protocol mapper exists with same name")
		}
		seen[m.Name] = true
		m = m.clone()
		m.ID = newUUID()
		if m.Config == nil {
			m.Config = map[string]string{}
		}
		c.ProtocolMappers = append(c.ProtocolMappers, m)
	}
	rs.clients[c.ID] = c
	s.ensureServiceAccount(rs, c)
	s.creates["client"]++
	return response{status: http.StatusCreated, location: q.base + "/admin/realms/" + url.PathEscape(rs.rep.Realm) + "/clients/" + c.ID}
}

// updateClient merges the body into the client. Protocol mappers in the
// body are ignored: Keycloak manages them only through their own endpoints.
func (s *Server) updateClient(q *request, rs *realmState, c *Client) response {
	var p clientPatch
	if !q.decode(&p) {
		return errCannotParse
	}
	if p.ClientID != nil && *p.ClientID != "" && *p.ClientID != c.ClientID {
		if clientByClientID(rs, *p.ClientID) != nil {
			return errorMessage(http.StatusConflict, "Client "+*p.ClientID+" already exists")
		}
		c.ClientID = *p.ClientID
	}
	p.apply(c)
	if u := serviceAccountOf(rs, c); u != nil {
		u.rep.ServiceAccountClientID = c.ClientID
	}
	s.ensureServiceAccount(rs, c)
	return noContent()
}

// ensureServiceAccount gives a client with service accounts enabled its
// service-account user, as Keycloak does when the flag is first set: named
// service-account-<clientId>, enabled, with the realm's default roles. It
// stays when the flag is turned off again, and goes with the client.
func (s *Server) ensureServiceAccount(rs *realmState, c *Client) {
	if !c.ServiceAccountsEnabled || serviceAccountOf(rs, c) != nil {
		return
	}
	u := &userState{
		rep: User{ID: newUUID(), Username: "service-account-" + strings.ToLower(c.ClientID), Enabled: true, RequiredActions: []string{},
			CreatedTimestamp: s.opts.Now().UnixMilli(), ServiceAccountClientID: c.ClientID},
		roleIDs: map[string]bool{}, groups: map[string]bool{}, serviceAccountOf: c.ID,
	}
	if _, ok := roleByID(rs, rs.defaultRoleID); ok {
		u.roleIDs[rs.defaultRoleID] = true
	}
	rs.users[u.rep.ID] = u
}

// serviceAccountOf returns the service-account user of c (nil for none).
func serviceAccountOf(rs *realmState, c *Client) *userState {
	for _, u := range rs.users {
		if u.serviceAccountOf == c.ID {
			return u
		}
	}
	return nil
}

func clientByClientID(rs *realmState, clientID string) *Client {
	for _, c := range rs.clients {
		if c.ClientID == clientID {
			return c
		}
	}
	return nil
}

func (s *Server) routeMappers(q *request, rs *realmState, c *Client, rest []string) response {
	if len(rest) == 0 {
		switch q.method {
		case http.MethodGet:
			out := c.clone().ProtocolMappers
			if out == nil {
				out = []ProtocolMapper{}
			}
			return jsonOK(out)
		case http.MethodPost:
			return s.createMapper(q, rs, c)
		}
		return methodNotAllowed(http.MethodGet, http.MethodPost)
	}
	if len(rest) != 1 {
		return errNoRoute
	}
	i := mapperIndex(c, rest[0])
	if i < 0 {
		return errMapperNotFound
	}
	switch q.method {
	case http.MethodGet:
		return jsonOK(c.ProtocolMappers[i].clone())
	case http.MethodPut:
		m, bad := decodeMapper(q)
		if bad != nil {
			return *bad
		}
		if j := mapperByName(c, m.Name); j >= 0 && j != i {
			return errorMessage(http.StatusConflict, "Protocol mapper exists with same name")
		}
		m.ID = c.ProtocolMappers[i].ID
		c.ProtocolMappers[i] = m
		return noContent()
	case http.MethodDelete:
		c.ProtocolMappers = append(c.ProtocolMappers[:i:i], c.ProtocolMappers[i+1:]...)
		if len(c.ProtocolMappers) == 0 {
			c.ProtocolMappers = nil
		}
		return noContent()
	}
	return methodNotAllowed(http.MethodGet, http.MethodPut, http.MethodDelete)
}

func (s *Server) createMapper(q *request, rs *realmState, c *Client) response {
	m, bad := decodeMapper(q)
	if bad != nil {
		return *bad
	}
	if mapperByName(c, m.Name) >= 0 {
		return errorMessage(http.StatusConflict, "Protocol mapper exists with same name")
	}
	m.ID = newUUID()
	c.ProtocolMappers = append(c.ProtocolMappers, m)
	s.creates["mapper"]++
	return response{
		status:   http.StatusCreated,
		location: q.base + "/admin/realms/" + url.PathEscape(rs.rep.Realm) + "/clients/" + c.ID + "/protocol-mappers/models/" + m.ID,
	}
}

// decodeMapper rejects a mapper without a type the way Keycloak does: it
// looks the type up as a provider and answers 404 when there is none.
func decodeMapper(q *request) (ProtocolMapper, *response) {
	var m ProtocolMapper
	if !q.decode(&m) {
		return m, &errCannotParse
	}
	if m.ProtocolMapper == "" {
		r := oauthError(http.StatusNotFound, "ProtocolMapper provider not found", "")
		return m, &r
	}
	m = m.clone()
	if m.Config == nil {
		m.Config = map[string]string{}
	}
	return m, nil
}

func mapperIndex(c *Client, id string) int {
	for i, m := range c.ProtocolMappers {
		if m.ID == id {
			return i
		}
	}
	return -1
}

func mapperByName(c *Client, name string) int {
	for i, m := range c.ProtocolMappers {
		if m.Name == name {
			return i
		}
	}
	return -1
}
