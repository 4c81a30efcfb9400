package keycloakfake

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/tenancyhq/tenancy/internal/faultinject"
)

// response is computed under the lock and written after it is released, so
// a slow client never holds up other requests, and so an AfterHandling fault
// can discard it once the state change has happened.
type response struct {
	status   int
	location string
	allow    string
	body     any
}

func (res response) write(w http.ResponseWriter) {
	if res.location != "" {
		w.Header().Set("Location", res.location)
	}
	if res.allow != "" {
		w.Header().Set("Allow", res.allow)
	}
	if res.body == nil {
		w.WriteHeader(res.status)
		return
	}
	b, err := json.Marshal(res.body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(res.status)
	_, _ = w.Write(b)
}

// The two error shapes Keycloak uses. Which one an endpoint answers with is
// part of its contract, so every error goes through one of these.

// errorMessage is the ErrorRepresentation most admin endpoints use.
func errorMessage(status int, msg string) response {
	return response{status: status, body: map[string]string{"errorMessage": msg}}
}

// oauthError is the OAuth2ErrorRepresentation used by the token endpoint and
// by JAX-RS exceptions such as NotFoundException.
func oauthError(status int, code, description string) response {
	body := map[string]string{"error": code}
	if description != "" {
		body["error_description"] = description
	}
	return response{status: status, body: body}
}

func jsonOK(body any) response { return response{status: http.StatusOK, body: body} }

func noContent() response { return response{status: http.StatusNoContent} }

func methodNotAllowed(allow ...string) response {
	r := oauthError(http.StatusMethodNotAllowed, "HTTP 405 Method Not Allowed", "")
	r.allow = strings.Join(allow, ", ")
	return r
}

var (
	errRealmNotFound  = oauthError(http.StatusNotFound, "Realm not found.", "")
	errClientNotFound = oauthError(http.StatusNotFound, "Could not find client", "")
	errRoleNotFound   = oauthError(http.StatusNotFound, "Could not find role", "")
	errUserNotFound   = oauthError(http.StatusNotFound, "User not found", "")
	errMapperNotFound = oauthError(http.StatusNotFound, "Model not found", "")
	errOrgsDisabled   = errorMessage(http.StatusNotFound, "Organizations not enabled for this realm.")
	errOrgNotFound    = errorMessage(http.StatusNotFound, "Organization not found.")
	// errNotMember is JAX-RS's NotFoundException with no message, which is
	// what the member resource throws.
	errNotMember    = oauthError(http.StatusNotFound, "HTTP 404 Not Found", "")
	errUnauthorized = oauthError(http.StatusUnauthorized, "HTTP 401 Unauthorized", "")
	errCannotParse  = oauthError(http.StatusBadRequest, "invalid_request", "Cannot parse the JSON")
	errNoRoute      = errorMessage(http.StatusNotFound, "Unable to find matching target resource method")
)

// request is what a handler needs, read before the lock is taken.
type request struct {
	method string
	segs   []string
	query  url.Values
	body   []byte
	base   string
	form   url.Values
	auth   string
}

func (q *request) decode(v any) bool {
	if len(bytes.TrimSpace(q.body)) == 0 {
		return false
	}
	return json.Unmarshal(q.body, v) == nil
}

// serveHTTP orders the stages of a request: hook, fault, then the real
// handling, whose result an AfterHandling fault may throw away.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.hook.Call(r)

	f := s.faults.Take(r)
	if f != nil && !faultinject.Wait(r, f.Latency, s.closing) {
		return
	}
	if f != nil && !f.AfterHandling && answerFault(w, f) {
		return
	}

	res := s.handle(r)

	if f != nil && f.AfterHandling && answerFault(w, f) {
		return
	}
	res.write(w)
}

func (s *Server) handle(r *http.Request) response {
	body, err := io.ReadAll(io.LimitReader(r.Body, 10<<20))
	if err != nil {
		return errCannotParse
	}
	q := &request{
		method: r.Method,
		segs:   faultinject.Segments(r.URL),
		query:  r.URL.Query(),
		body:   body,
		base:   "http://" + r.Host,
		auth:   r.Header.Get("Authorization"),
	}
	if ct := r.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		q.form, _ = url.ParseQuery(string(body))
	}
	if u, p, ok := r.BasicAuth(); ok {
		// RFC 6749 §2.3.1 form-encodes client credentials before Basic
		// encoding them; Keycloak decodes them again.
		if du, err := url.QueryUnescape(u); err == nil {
			u = du
		}
		if dp, err := url.QueryUnescape(p); err == nil {
			p = dp
		}
		if q.form == nil {
			q.form = url.Values{}
		}
		q.form.Set("client_id", u)
		q.form.Set("client_secret", p)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	return s.route(q)
}

// collection answers a realm's collection resource: GET lists, POST
// creates, and any other method is a 405.
func collection(q *request, rs *realmState, list, create func(*request, *realmState) response) response {
	switch q.method {
	case http.MethodGet:
		return list(q, rs)
	case http.MethodPost:
		return create(q, rs)
	}
	return methodNotAllowed(http.MethodGet, http.MethodPost)
}

// item answers a single resource, found before the method is looked at as
// Keycloak's resource locators do: GET reads, PUT updates, DELETE removes,
// and any other method is a 405.
func item(q *request, get, put, del func() response) response {
	switch q.method {
	case http.MethodGet:
		return get()
	case http.MethodPut:
		return put()
	case http.MethodDelete:
		return del()
	}
	return methodNotAllowed(http.MethodGet, http.MethodPut, http.MethodDelete)
}

// route dispatches in the order Keycloak's JAX-RS resources resolve a path:
// authentication, then the realm, then the sub-resource, then the method.
func (s *Server) route(q *request) response {
	segs := q.segs
	if len(segs) == 5 && segs[0] == "realms" && segs[2] == "protocol" && segs[3] == "openid-connect" && segs[4] == "token" {
		if q.method != http.MethodPost {
			return methodNotAllowed(http.MethodPost)
		}
		return s.token(q, segs[1])
	}
	if len(segs) == 0 || segs[0] != "admin" {
		return errNoRoute
	}
	if !s.authorized(q.auth) {
		return errUnauthorized
	}
	if len(segs) < 2 || segs[1] != "realms" {
		return errNoRoute
	}
	if len(segs) == 2 {
		switch q.method {
		case http.MethodGet:
			return s.listRealms()
		case http.MethodPost:
			return s.createRealm(q)
		}
		return methodNotAllowed(http.MethodGet, http.MethodPost)
	}
	rs, ok := s.realms[segs[2]]
	if !ok {
		return errRealmNotFound
	}
	rest := segs[3:]
	if len(rest) == 0 {
		return item(q,
			func() response { return jsonOK(rs.rep.clone()) },
			func() response { return s.updateRealm(q, rs) },
			func() response { return s.deleteRealm(rs) })
	}
	switch rest[0] {
	case "logout-all":
		if len(rest) != 1 {
			return errNoRoute
		}
		if q.method != http.MethodPost {
			return methodNotAllowed(http.MethodPost)
		}
		rs.logoutAlls++
		return jsonOK(struct{}{})
	case "clients":
		return s.routeClients(q, rs, rest[1:])
	case "roles":
		return s.routeRoles(q, rs, rest[1:])
	case "users":
		return s.routeUsers(q, rs, rest[1:])
	case "organizations":
		return s.routeOrgs(q, rs, rest[1:])
	case "groups":
		return s.routeGroups(q, rs, rest[1:])
	}
	return errNoRoute
}
