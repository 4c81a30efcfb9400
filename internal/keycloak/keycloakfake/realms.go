package keycloakfake

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
)

func (s *Server) listRealms() response {
	out := make([]Realm, 0, len(s.realms))
	for _, rs := range s.realms {
		out = append(out, rs.rep.clone())
	}
	slices.SortFunc(out, func(a, b Realm) int { return cmp.Compare(a.Realm, b.Realm) })
	return jsonOK(out)
}

// createRealm applies Keycloak's defaults for a realm created with a minimal
// body; notably "enabled" defaults to false.
func (s *Server) createRealm(q *request) response {
	var p realmPatch
	if !q.decode(&p) {
		return errCannotParse
	}
	if p.Realm == nil || *p.Realm == "" {
		return errorMessage(http.StatusBadRequest, "Realm name cannot be empty")
	}
	if _, exists := s.realms[*p.Realm]; exists {
		return errorMessage(http.StatusConflict, "Conflict detected. See logs for details")
	}
	rep := Realm{
		Realm:                 *p.Realm,
		SSLRequired:           "external",
		LoginWithEmailAllowed: true,
		AccessTokenLifespan:   300,
	}
	if p.ID != nil {
		rep.ID = *p.ID
	}
	p.apply(&rep)
	rs := s.newRealm(rep)
	s.creates["realm"]++
	return response{status: http.StatusCreated, location: q.base + "/admin/realms/" + url.PathEscape(rs.rep.Realm)}
}

// updateRealm is a merge: absent or null fields are left as they are. A
// different name in the body renames the realm, as in Keycloak.
func (s *Server) updateRealm(q *request, rs *realmState) response {
	var p realmPatch
	if !q.decode(&p) {
		return errCannotParse
	}
	if p.Realm != nil && *p.Realm != "" && *p.Realm != rs.rep.Realm {
		if _, taken := s.realms[*p.Realm]; taken {
			return errorMessage(http.StatusConflict, "Realm with same name exists")
		}
		delete(s.realms, rs.rep.Realm)
		rs.rep.Realm = *p.Realm
		s.realms[rs.rep.Realm] = rs
	}
	p.apply(&rs.rep)
	return noContent()
}

func (s *Server) deleteRealm(rs *realmState) response {
	if rs.rep.Realm == masterRealm {
		return errorMessage(http.StatusBadRequest, "Can't remove master realm")
	}
	delete(s.realms, rs.rep.Realm)
	return noContent()
}
