package keycloakfake

import (
	"bytes"
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// knownRequiredActions are the required-action provider ids of a stock
// Keycloak 26. Keycloak silently drops any other id from a user's
// requiredActions and refuses it in execute-actions-email.
var knownRequiredActions = map[string]bool{
	"CONFIGURE_TOTP":                 true,
	"TERMS_AND_CONDITIONS":           true,
	"UPDATE_PASSWORD":                true,
	"UPDATE_PROFILE":                 true,
	"VERIFY_EMAIL":                   true,
	"VERIFY_PROFILE":                 true,
	"UPDATE_EMAIL":                   true,
	"CONFIGURE_RECOVERY_AUTHN_CODES": true,
	"delete_account":                 true,
	"delete_credential":              true,
	"update_user_locale":             true,
	"webauthn-register":              true,
	"webauthn-register-passwordless": true,
	"idp_link":                       true,
}

const (
	updatePassword    = "UPDATE_PASSWORD"
	minPasswordLength = 8
)

var errPasswordTooShort = oauthError(http.StatusBadRequest, "invalidPasswordMinLengthMessage",
	"Invalid password: minimum length "+strconv.Itoa(minPasswordLength)+".")

func (s *Server) routeUsers(q *request, rs *realmState, rest []string) response {
	if len(rest) == 0 {
		return collection(q, rs, listUsers, s.createUser)
	}
	if rest[0] == "profile" {
		return s.routeProfile(q, rs, rest[1:])
	}
	if len(rest) == 1 && rest[0] == "count" {
		if q.method != http.MethodGet {
			return methodNotAllowed(http.MethodGet)
		}
		n := 0
		match := userFilter(q.query)
		withSA := includesServiceAccounts(q.query)
		for _, u := range rs.users {
			if (withSA || u.serviceAccountOf == "") && match(u.rep) {
				n++
			}
		}
		return jsonOK(n)
	}
	u, ok := rs.users[rest[0]]
	if !ok {
		return errUserNotFound
	}
	switch {
	case len(rest) == 1:
		return item(q,
			func() response { return jsonOK(rs.shown(u)) },
			func() response { return s.updateUser(q, rs, u) },
			func() response {
				delete(rs.users, u.rep.ID)
				for _, o := range rs.orgs {
					delete(o.members, u.rep.ID)
				}
				return noContent()
			})
	case len(rest) == 3 && rest[1] == "role-mappings" && rest[2] == "realm":
		switch q.method {
		case http.MethodGet:
			return jsonOK(mappedRoles(rs, u))
		case http.MethodPost:
			return mapRoles(q, rs, u, true)
		case http.MethodDelete:
			return mapRoles(q, rs, u, false)
		}
		return methodNotAllowed(http.MethodGet, http.MethodPost, http.MethodDelete)
	case len(rest) >= 2 && rest[1] == "groups":
		return routeUserGroups(q, rs, u, rest[2:])
	case len(rest) == 2 && rest[1] == "logout":
		if q.method != http.MethodPost {
			return methodNotAllowed(http.MethodPost)
		}
		u.logouts++
		return noContent()
	case len(rest) == 2 && rest[1] == "reset-password":
		if q.method != http.MethodPut {
			return methodNotAllowed(http.MethodPut)
		}
		return resetPassword(q, u)
	case len(rest) == 2 && rest[1] == "execute-actions-email":
		if q.method != http.MethodPut {
			return methodNotAllowed(http.MethodPut)
		}
		return executeActionsEmail(q, rs, u)
	}
	return errNoRoute
}

func listUsers(q *request, rs *realmState) response {
	match := userFilter(q.query)
	out := []User{}
	withSA := includesServiceAccounts(q.query)
	for _, u := range sortedUsers(rs) {
		if (withSA || u.serviceAccountOf == "") && match(u.rep) {
			out = append(out, rs.shown(u))
		}
	}
	return jsonOK(page(out, q.query, 100))
}

// includesServiceAccounts reports whether a user search shows service
// accounts, as Keycloak's UsersResource decides: a search by field
// (username, email, names, exact, attributes, flags) does; an unfiltered
// listing and a free-text search= do not.
func includesServiceAccounts(v url.Values) bool {
	if v.Has("search") {
		return false
	}
	for _, p := range []string{"username", "email", "firstName", "lastName", "exact", "q", "enabled", "emailVerified", "idpAlias", "idpUserId"} {
		if v.Has(p) {
			return true
		}
	}
	return false
}

// userFilter implements the user search parameters. username, email,
// firstName and lastName are case-insensitive substrings unless exact=true;
// search is Keycloak's prefix search across all four ("*" is a wildcard,
// surrounding quotes mean equality) and overrides them.
func userFilter(v url.Values) func(User) bool {
	var checks []func(User) bool
	if v.Has("search") {
		checks = append(checks, searchMatcher(v.Get("search")))
	} else {
		exact := v.Get("exact") == "true"
		fields := []struct {
			param string
			get   func(User) string
		}{
			{"username", func(u User) string { return u.Username }},
			{"email", func(u User) string { return u.Email }},
			{"firstName", func(u User) string { return u.FirstName }},
			{"lastName", func(u User) string { return u.LastName }},
		}
		for _, f := range fields {
			if !v.Has(f.param) {
				continue
			}
			want := strings.ToLower(v.Get(f.param))
			get := f.get
			checks = append(checks, func(u User) bool {
				got := strings.ToLower(get(u))
				if exact {
					return got == want
				}
				return strings.Contains(got, want)
			})
		}
	}
	if v.Has("q") {
		checks = append(checks, attributeMatcher(v.Get("q")))
	}
	for _, b := range []struct {
		param string
		get   func(User) bool
	}{
		{"enabled", func(u User) bool { return u.Enabled }},
		{"emailVerified", func(u User) bool { return u.EmailVerified }},
	} {
		if want, err := strconv.ParseBool(v.Get(b.param)); err == nil {
			get := b.get
			checks = append(checks, func(u User) bool { return get(u) == want })
		}
	}
	return func(u User) bool {
		for _, c := range checks {
			if !c(u) {
				return false
			}
		}
		return true
	}
}

// attributeMatcher implements q, Keycloak's custom attribute search:
// "key1:value1 key2:value2", every pair matching one of the attribute's
// values exactly.
func attributeMatcher(q string) func(User) bool {
	type pair struct{ key, value string }
	var pairs []pair
	for _, f := range strings.Fields(q) {
		k, v, _ := strings.Cut(f, ":")
		pairs = append(pairs, pair{k, v})
	}
	return func(u User) bool {
		for _, p := range pairs {
			if !slices.Contains(u.Attributes[p.key], p.value) {
				return false
			}
		}
		return true
	}
}

func searchMatcher(s string) func(User) bool {
	s = strings.ToLower(strings.TrimSpace(s))
	exact := len(s) >= 2 && strings.HasPrefix(s, `"`) && strings.HasSuffix(s, `"`)
	if exact {
		s = s[1 : len(s)-1]
	} else if !strings.Contains(s, "*") {
		s += "*"
	}
	return func(u User) bool {
		for _, f := range []string{u.Username, u.Email, u.FirstName, u.LastName} {
			f = strings.ToLower(f)
			if (exact && f == s) || (!exact && glob(s, f)) {
				return true
			}
		}
		return false
	}
}

// glob matches s against pattern, where "*" matches any run of characters
// and everything else is literal.
func glob(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, last)
}

func (s *Server) createUser(q *request, rs *realmState) response {
	var b userBody
	if !q.decode(&b) {
		return errCannotParse
	}
	username := strings.ToLower(b.Username)
	if username == "" {
		return errorMessage(http.StatusBadRequest, "User name is missing")
	}
	email := strings.ToLower(b.Email)
	if userBy(rs, func(u User) bool { return u.Username == username }) != nil {
		return errorMessage(http.StatusConflict, "User exists with same username")
	}
	if email != "" && userBy(rs, func(u User) bool { return u.Email == email }) != nil {
		return errorMessage(http.StatusConflict, "User exists with same email")
	}
	// A credential without a value makes Keycloak fail after it has started
	// creating the user; the transaction rolls back, so no user is left.
	pw, bad := passwordFrom(b.Credentials, oauthError(http.StatusInternalServerError, "unknown_error",
		"For more on this error consult the server log."))
	if bad != nil {
		return *bad
	}
	attrs, bad := rs.profile.admitAttributes(b.Attributes, nil, false)
	if bad != nil {
		return *bad
	}
	created := s.opts.Now().UnixMilli()
	if b.CreatedTimestamp != nil {
		created = *b.CreatedTimestamp
	}
	u := &userState{
		rep:     userFromBody(b, newUUID(), username, email, created, attrs),
		roleIDs: map[string]bool{},
		groups:  map[string]bool{},
	}
	if _, ok := roleByID(rs, rs.defaultRoleID); ok {
		u.roleIDs[rs.defaultRoleID] = true
	}
	u.applyPassword(pw)
	rs.users[u.rep.ID] = u
	s.creates["user"]++
	return response{status: http.StatusCreated, location: q.base + "/admin/realms/" + url.PathEscape(rs.rep.Realm) + "/users/" + u.rep.ID}
}

// updateUser replaces every field except id, createdTimestamp, username and
// the attributes the user profile does not let the Admin API write.
// The username cannot change because editUsernameAllowed is off by default,
// but a username held by another user is still a 409, as in Keycloak, whose
// uniqueness check runs before the change is discarded.
func (s *Server) updateUser(q *request, rs *realmState, u *userState) response {
	var b userBody
	if !q.decode(&b) {
		return errCannotParse
	}
	username := strings.ToLower(b.Username)
	email := strings.ToLower(b.Email)
	if username != "" && username != u.rep.Username &&
		userBy(rs, func(o User) bool { return o.Username == username }) != nil {
		return errorMessage(http.StatusConflict, "User exists with same username")
	}
	if email != "" && userBy(rs, func(o User) bool { return o.Email == email && o.ID != u.rep.ID }) != nil {
		return errorMessage(http.StatusConflict, "User exists with same email")
	}
	pw, bad := passwordFrom(b.Credentials, errorMessage(http.StatusBadRequest, "Could not update user!"))
	if bad != nil {
		return *bad
	}
	attrs, bad := rs.profile.admitAttributes(b.Attributes, u.rep.Attributes, true)
	if bad != nil {
		return *bad
	}
	u.rep = userFromBody(b, u.rep.ID, u.rep.Username, email, u.rep.CreatedTimestamp, attrs)
	u.applyPassword(pw)
	return noContent()
}

// userFromBody builds the stored user; attrs are the attributes the user
// profile admitted.
func userFromBody(b userBody, id, username, email string, created int64, attrs map[string][]string) User {
	u := User{
		ID:               id,
		Username:         username,
		Email:            email,
		FirstName:        b.FirstName,
		LastName:         b.LastName,
		Enabled:          b.Enabled,
		EmailVerified:    b.EmailVerified,
		RequiredActions:  []string{},
		Attributes:       attrs,
		CreatedTimestamp: created,
	}
	for _, a := range b.RequiredActions {
		if knownRequiredActions[a] && !slices.Contains(u.RequiredActions, a) {
			u.RequiredActions = append(u.RequiredActions, a)
		}
	}
	return u
}

type password struct {
	value     string
	temporary bool
}

// passwordFrom validates inline credentials; missingValue is the answer for
// a password credential without a value, which differs between create and
// update.
func passwordFrom(creds []credentialBody, missingValue response) (*password, *response) {
	var pw *password
	for _, c := range creds {
		if c.Type != "password" {
			continue
		}
		if c.Value == nil {
			return nil, &missingValue
		}
		if utf8.RuneCountInString(*c.Value) < minPasswordLength {
			return nil, &errPasswordTooShort
		}
		pw = &password{value: *c.Value, temporary: c.Temporary != nil && *c.Temporary}
	}
	return pw, nil
}

// applyPassword sets the password and, for a temporary one, the
// UPDATE_PASSWORD required action, which is how Keycloak makes it temporary.
func (u *userState) applyPassword(pw *password) {
	if pw == nil {
		return
	}
	u.password, u.temporary, u.hasPassword = pw.value, pw.temporary, true
	if pw.temporary && !slices.Contains(u.rep.RequiredActions, updatePassword) {
		u.rep.RequiredActions = append(u.rep.RequiredActions, updatePassword)
	}
}

func resetPassword(q *request, u *userState) response {
	var c credentialBody
	if len(bytes.TrimSpace(q.body)) > 0 && !q.decode(&c) {
		return errCannotParse
	}
	if c.Value == nil {
		return oauthError(http.StatusBadRequest, "No password provided", "")
	}
	if strings.TrimSpace(*c.Value) == "" {
		return oauthError(http.StatusBadRequest, "Empty password not allowed", "")
	}
	if utf8.RuneCountInString(*c.Value) < minPasswordLength {
		return errPasswordTooShort
	}
	temporary := c.Temporary != nil && *c.Temporary
	u.applyPassword(&password{value: *c.Value, temporary: temporary})
	if !temporary {
		// Keycloak clears a pending UPDATE_PASSWORD when an admin sets a
		// permanent password.
		u.rep.RequiredActions = slices.DeleteFunc(u.rep.RequiredActions, func(a string) bool { return a == updatePassword })
	}
	return noContent()
}

// executeActionsEmail runs Keycloak's checks in Keycloak's order; the email
// is "sent" (recorded) only when the realm has an SMTP host.
func executeActionsEmail(q *request, rs *realmState, u *userState) response {
	var actions []string
	if len(bytes.TrimSpace(q.body)) > 0 && !q.decode(&actions) {
		return errCannotParse
	}
	if u.rep.Email == "" {
		return errorMessage(http.StatusBadRequest, "User email missing")
	}
	if !u.rep.Enabled {
		return errorMessage(http.StatusBadRequest, "User is disabled")
	}
	redirect, clientID := q.query.Get("redirect_uri"), q.query.Get("client_id")
	if redirect != "" && clientID == "" {
		return errorMessage(http.StatusBadRequest, "Client id missing")
	}
	if clientID != "" {
		c := clientByClientID(rs, clientID)
		if c == nil {
			return errorMessage(http.StatusBadRequest, "Client doesn't exist")
		}
		if !c.Enabled {
			return errorMessage(http.StatusBadRequest, "Client is not enabled")
		}
		if redirect != "" && !redirectAllowed(c, redirect) {
			return errorMessage(http.StatusBadRequest, "Invalid redirect uri.")
		}
	}
	for _, a := range actions {
		if !knownRequiredActions[a] {
			return errorMessage(http.StatusBadRequest, "Provided invalid required actions")
		}
	}
	if rs.rep.SMTPServer["host"] == "" {
		return errorMessage(http.StatusInternalServerError, "Failed to send execute actions email: Please provide a valid address")
	}
	u.actionEmails = append(u.actionEmails, cloneSlice(actions))
	return noContent()
}

func redirectAllowed(c *Client, uri string) bool {
	for _, allowed := range c.RedirectURIs {
		if allowed == uri {
			return true
		}
		if prefix, ok := strings.CutSuffix(allowed, "*"); ok && strings.HasPrefix(uri, prefix) {
			return true
		}
	}
	return false
}

func mappedRoles(rs *realmState, u *userState) []Role {
	out := []Role{}
	for id := range u.roleIDs {
		if r, ok := roleByID(rs, id); ok {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Role) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// mapRoles adds or removes realm role mappings. Keycloak resolves each role
// by name and then insists the id matches, so a client must send both; it
// validates the whole batch before applying any of it. A DELETE without a
// body removes every realm role mapping.
func mapRoles(q *request, rs *realmState, u *userState, add bool) response {
	var refs []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	empty := len(bytes.TrimSpace(q.body)) == 0
	if !empty && !q.decode(&refs) {
		return errCannotParse
	}
	if refs == nil {
		if add {
			return errCannotParse
		}
		clear(u.roleIDs)
		return noContent()
	}
	ids := make([]string, 0, len(refs))
	for _, ref := range refs {
		role, ok := rs.roles[ref.Name]
		if !ok || role.ID != ref.ID {
			return oauthError(http.StatusNotFound, "Role not found", "")
		}
		ids = append(ids, role.ID)
	}
	for _, id := range ids {
		if add {
			u.roleIDs[id] = true
		} else {
			delete(u.roleIDs, id)
		}
	}
	return noContent()
}

func userBy(rs *realmState, match func(User) bool) *userState {
	for _, u := range rs.users {
		if match(u.rep) {
			return u
		}
	}
	return nil
}

func roleByID(rs *realmState, id string) (Role, bool) {
	for _, r := range rs.roles {
		if r.ID == id {
			return *r, true
		}
	}
	return Role{}, false
}
