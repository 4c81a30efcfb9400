// Package keycloakfake is an in-process fake of the part of Keycloak 26.6's
// Admin REST API that a tenant provisioner uses, plus the client_credentials
// token endpoint that authenticates it.
//
// It exists so a real HTTP client can be tested against Keycloak's contract
// (status codes, Location headers, the two error body shapes, partial versus
// replacing updates) and against the failures a network adds (errors, latency,
// dropped connections, responses lost after the server acted) without starting
// a Keycloak container.
//
// Behaviour that is Keycloak's but easy to forget, and that the fake keeps:
//   - a realm created without "enabled" is disabled;
//   - every realm has the roles default-roles-{realm}, offline_access and
//     uma_authorization, and every new user is mapped to default-roles-{realm},
//     so a user's realm role mappings are never empty;
//   - role-mapping writes look roles up by name and refuse them unless the
//     id matches too, so a client must send both;
//   - usernames and emails are stored lowercased, and a user PUT cannot change
//     the username (editUsernameAllowed is off by default);
//   - a realm starts with organizations disabled, and until
//     organizationsEnabled is set every organization endpoint answers 404
//     "Organizations not enabled for this realm.";
//   - an organization's name and alias are each unique (two different 409s),
//     its alias defaults to its name and cannot change, its PUT replaces it
//     (an absent "enabled" means true) but for absent attributes and
//     domains, and listings leave attributes out unless
//     briefRepresentation=false;
//   - an organization member is added by POSTing the user id as a JSON
//     string (201 with a Location), and deleting the user or the
//     organization ends the membership;
//   - every realm has Keycloak's default user profile (username, email,
//     firstName, lastName; no unmanaged attribute policy), and user writes
//     silently drop the attributes it neither declares writable by "admin"
//     nor lets through by its unmanagedAttributePolicy (see profile.go).
//
// One deliberate departure: a user PUT replaces the whole user (absent fields
// become zero values), where Keycloak 26 merges most of them. A client that
// does GET, modify, PUT of the whole representation is correct against both;
// one that sends partial bodies is caught here.
package keycloakfake

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"time"

	"github.com/tenancyhq/tenancy/internal/faultinject"
)

// masterRealm is where the service account lives and the only realm whose
// token endpoint issues tokens.
const masterRealm = "master"

// Options configure a fake.
type Options struct {
	// ClientID and ClientSecret are the service account's credentials, in
	// realm "master".
	ClientID, ClientSecret string
	// TokenTTL is the access token lifetime; zero means 60s.
	TokenTTL time.Duration
	// Now is the clock used for token expiry and createdTimestamp; nil means
	// time.Now. It is called from request goroutines with the fake's lock
	// held, so it must be safe for concurrent use and must not call back
	// into the Server.
	Now func() time.Time
}

// Server is a running fake. Its methods are safe for concurrent use.
type Server struct {
	ts      *httptest.Server
	opts    Options
	closing chan struct{}
	once    sync.Once
	faults  faultinject.Set
	hook    faultinject.Hook

	mu           sync.Mutex
	realms       map[string]*realmState
	tokens       map[string]time.Time
	tokensIssued int
	creates      map[string]int
}

type realmState struct {
	rep Realm
	// defaultRoleID survives a realm rename, as Keycloak keeps the role's
	// original name.
	defaultRoleID string
	clients       map[string]*Client
	roles         map[string]*Role
	users         map[string]*userState
	orgs          map[string]*orgState
	groups        map[string]*groupState
	// profile decides which user attributes are kept and shown.
	profile    UserProfile
	logoutAlls int
}

type orgState struct {
	rep Organization
	// members holds the ids of the users who are members.
	members map[string]bool
}

type userState struct {
	rep          User
	roleIDs      map[string]bool
	password     string
	temporary    bool
	hasPassword  bool
	actionEmails [][]string
	// logouts counts POST .../users/{id}/logout.
	logouts int
	// groups holds the ids of the groups the user is a member of.
	groups map[string]bool
	// serviceAccountOf is the id of the client whose service account
	// this user is ("" for a person). Keycloak leaves such users out of
	// user listings, searches and counts.
	serviceAccountOf string
}

// New starts a fake on a loopback port with realm "master" present and
// enabled. Call Close when done.
func New(o Options) *Server {
	if o.TokenTTL <= 0 {
		o.TokenTTL = 60 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{
		opts:    o,
		closing: make(chan struct{}),
		realms:  make(map[string]*realmState),
		tokens:  make(map[string]time.Time),
		creates: make(map[string]int),
	}
	master := s.newRealm(Realm{Realm: masterRealm, Enabled: true})
	for _, name := range []string{"admin", "create-realm"} {
		s.addRole(master, name, "${role_"+name+"}", false)
	}
	s.ts = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// URL is the base URL without a trailing slash.
func (s *Server) URL() string { return s.ts.URL }

// Close stops the server. It first releases requests held by a Latency
// fault, because httptest waits for in-flight requests and a long injected
// delay would otherwise hang the test.
func (s *Server) Close() {
	s.once.Do(func() { close(s.closing) })
	s.ts.Close()
}

// SetHook installs f to be called at the start of every request, before
// faults are considered; nil removes it. f runs on the request goroutine
// without the fake's lock held, so it may call the inspection methods; it
// must not read r.Body, which the handler still needs.
func (s *Server) SetHook(f func(r *http.Request)) { s.hook.Set(f) }

// Realm returns a copy of the named realm.
func (s *Server) Realm(name string) (Realm, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs, ok := s.realms[name]
	if !ok {
		return Realm{}, false
	}
	return rs.rep.clone(), true
}

// RealmNames returns every realm's name, sorted, including "master".
func (s *Server) RealmNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.realms))
	for n := range s.realms {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Clients returns copies of the realm's clients, with their protocol
// mappers, sorted by clientId.
func (s *Server) Clients(realm string) []Client { return inspectRealm(s, realm, sortedClients) }

// Roles returns copies of the realm's roles sorted by name, including the
// ones Keycloak creates with every realm.
func (s *Server) Roles(realm string) []Role { return inspectRealm(s, realm, sortedRoles) }

// Users returns copies of the realm's users sorted by username, with every
// attribute stored, those the user profile hides from the Admin API too.
func (s *Server) Users(realm string) []User {
	return inspectRealm(s, realm, func(rs *realmState) []User {
		users := sortedUsers(rs)
		out := make([]User, len(users))
		for i, u := range users {
			out[i] = u.rep.clone()
		}
		return out
	})
}

// UserRoles returns the names of the realm roles mapped directly to the
// user, sorted; it includes default-roles-{realm}.
// ServiceAccount returns the service-account user of realm's client with
// clientID, if it has one.
func (s *Server) ServiceAccount(realm, clientID string) (User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.realms[realm]
	if rs == nil {
		return User{}, false
	}
	c := clientByClientID(rs, clientID)
	if c == nil {
		return User{}, false
	}
	if u := serviceAccountOf(rs, c); u != nil {
		return u.rep.clone(), true
	}
	return User{}, false
}

func (s *Server) UserRoles(realm, userID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs, u := s.lookupUser(realm, userID)
	if u == nil {
		return nil
	}
	var names []string
	for _, role := range rs.roles {
		if u.roleIDs[role.ID] {
			names = append(names, role.Name)
		}
	}
	slices.Sort(names)
	return names
}

// Password returns the user's current password and whether it was set as
// temporary; ok is false when no password was ever set.
func (s *Server) Password(realm, userID string) (value string, temporary bool, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, u := s.lookupUser(realm, userID)
	if u == nil || !u.hasPassword {
		return "", false, false
	}
	return u.password, u.temporary, true
}

// ActionEmails returns the actions of every execute-actions-email call that
// sent an email (answered 204), oldest first. Calls that failed sent nothing
// and are not recorded.
func (s *Server) ActionEmails(realm, userID string) [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, u := s.lookupUser(realm, userID)
	if u == nil {
		return nil
	}
	out := make([][]string, len(u.actionEmails))
	for i, a := range u.actionEmails {
		out[i] = cloneSlice(a)
	}
	return out
}

// UserLogouts returns how many times the user's sessions were ended
// (POST .../users/{id}/logout); -1 when there is no such user.
func (s *Server) UserLogouts(realm, userID string) int {
	return inspectRealm(s, realm, func(rs *realmState) int {
		if u, ok := rs.users[userID]; ok {
			return u.logouts
		}
		return -1
	})
}

// LogoutAlls returns how many times logout-all succeeded on the realm.
func (s *Server) LogoutAlls(realm string) int {
	return inspectRealm(s, realm, func(rs *realmState) int { return rs.logoutAlls })
}

// Creates returns how many creates of kind ("realm", "client", "mapper",
// "role", "user", "organization", "member" for an organization membership)
// produced a 201, including ones whose response a fault then lost. Mappers embedded in a client create are part of that client's
// create and are not counted as "mapper".
func (s *Server) Creates(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.creates[kind]
}

// TokensIssued returns how many access tokens the token endpoint issued.
func (s *Server) TokensIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokensIssued
}

// UserProfile returns a copy of the realm's user profile configuration.
func (s *Server) UserProfile(realm string) (UserProfile, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs, ok := s.realms[realm]
	if !ok {
		return UserProfile{}, false
	}
	return rs.profile.clone(), true
}

// SetUserProfile replaces the realm's user profile behind the API's back,
// without validating it, for tests of drift. It does nothing if the realm
// does not exist.
func (s *Server) SetUserProfile(realm string, p UserProfile) {
	inspectRealm(s, realm, func(rs *realmState) bool {
		rs.profile = p.clone()
		return true
	})
}

// SetRealmEnabled changes a realm behind the API's back, for tests of drift
// detection. It does nothing if the realm does not exist.
func (s *Server) SetRealmEnabled(name string, enabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rs, ok := s.realms[name]; ok {
		rs.rep.Enabled = enabled
	}
}

// Organizations returns copies of the realm's organizations, with their
// attributes, sorted by alias.
func (s *Server) Organizations(realm string) []Organization {
	return inspectRealm(s, realm, func(rs *realmState) []Organization {
		out := make([]Organization, 0, len(rs.orgs))
		for _, o := range sortedOrgs(rs, func(o Organization) string { return o.Alias }) {
			out = append(out, o.rep.clone())
		}
		return out
	})
}

// OrganizationMembers returns the usernames of the members of the realm's
// organization with this alias, sorted.
func (s *Server) OrganizationMembers(realm, alias string) []string {
	return inspectRealm(s, realm, func(rs *realmState) []string {
		o := orgBy(rs, func(o Organization) bool { return o.Alias == alias })
		if o == nil {
			return nil
		}
		names := []string{}
		for _, u := range orgMembers(rs, o) {
			names = append(names, u.rep.Username)
		}
		return names
	})
}

// SetOrganizationEnabled changes an organization behind the API's back, for
// tests of drift detection. It does nothing if there is no such
// organization.
func (s *Server) SetOrganizationEnabled(realm, alias string, enabled bool) {
	inspectRealm(s, realm, func(rs *realmState) bool {
		if o := orgBy(rs, func(o Organization) bool { return o.Alias == alias }); o != nil {
			o.rep.Enabled = enabled
		}
		return true
	})
}

// inspectRealm runs f on the named realm with the lock held; a missing
// realm gives f's zero value.
func inspectRealm[T any](s *Server, realm string, f func(*realmState) T) T {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs, ok := s.realms[realm]
	if !ok {
		var zero T
		return zero
	}
	return f(rs)
}

func (s *Server) lookupUser(realm, userID string) (*realmState, *userState) {
	rs, ok := s.realms[realm]
	if !ok {
		return nil, nil
	}
	return rs, rs.users[userID]
}

// newRealm stores a realm with the roles Keycloak gives every realm. The
// caller holds the lock (or owns s exclusively, as New does).
func (s *Server) newRealm(rep Realm) *realmState {
	if rep.ID == "" {
		rep.ID = newUUID()
	}
	rep.Attributes = cloneMap(rep.Attributes)
	rep.SMTPServer = cloneMap(rep.SMTPServer)
	rs := &realmState{
		rep:     rep,
		clients: make(map[string]*Client),
		roles:   make(map[string]*Role),
		users:   make(map[string]*userState),
		orgs:    make(map[string]*orgState),
		groups:  make(map[string]*groupState),
		profile: defaultProfile.clone(),
	}
	s.realms[rep.Realm] = rs
	rs.defaultRoleID = s.addRole(rs, defaultRolesName(rep.Realm), "${role_default-roles}", true).ID
	s.addRole(rs, "offline_access", "${role_offline-access}", false)
	s.addRole(rs, "uma_authorization", "${role_uma_authorization}", false)
	return rs
}

func (s *Server) addRole(rs *realmState, name, description string, composite bool) *Role {
	r := &Role{ID: newUUID(), Name: name, Description: description, Composite: composite, ContainerID: rs.rep.ID}
	rs.roles[name] = r
	return r
}

// defaultRolesName is fixed at realm creation: Keycloak does not rename the
// role when the realm is renamed, and neither does the fake.
func defaultRolesName(realm string) string { return "default-roles-" + realm }

func sortedClients(rs *realmState) []Client {
	out := make([]Client, 0, len(rs.clients))
	for _, c := range rs.clients {
		out = append(out, c.clone())
	}
	slices.SortFunc(out, func(a, b Client) int { return cmp.Compare(a.ClientID, b.ClientID) })
	return out
}

func sortedRoles(rs *realmState) []Role {
	out := make([]Role, 0, len(rs.roles))
	for _, r := range rs.roles {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Role) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func sortedUsers(rs *realmState) []*userState {
	out := make([]*userState, 0, len(rs.users))
	for _, u := range rs.users {
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b *userState) int { return cmp.Compare(a.rep.Username, b.rep.Username) })
	return out
}

// newUUID returns a random version 4 UUID; the standard library has no
// generator and ids only need to be unique and UUID-shaped.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
