// Package keycloak is a client of Keycloak's Admin REST API, covering what
// the provisioner needs: realms, a client with protocol mappers, realm roles,
// users and the user profile that declares their attributes, and the
// organizations that place tenants in a shared realm. It authenticates with
// a service account's client credentials, caching the short-lived access
// token and renewing it before it expires.
package keycloak

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config says where Keycloak is and who the service account is.
type Config struct {
	// URL is Keycloak's base URL, e.g. https://keycloak.example.com.
	URL string
	// Realm is where the service account lives (usually "master").
	Realm        string
	ClientID     string
	ClientSecret string
	HTTPClient   *http.Client
	Now          func() time.Time
}

// Client calls the Admin REST API.
type Client struct {
	cfg  Config
	base *url.URL

	mu      sync.Mutex
	token   string
	expires time.Time
}

// New returns a client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("KEYCLOAK_URL %q is not an http(s) URL", cfg.URL)
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("KEYCLOAK_CLIENT_ID and KEYCLOAK_CLIENT_SECRET are required with KEYCLOAK_URL")
	}
	if cfg.Realm == "" {
		cfg.Realm = "master"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Client{cfg: cfg, base: u}, nil
}

// redactQuery drops a path's query: user searches carry the username, an
// email address, which must not reach logs, traces or recorded steps.
func redactQuery(p string) string {
	if path, _, found := strings.Cut(p, "?"); found {
		return path + "?…"
	}
	return p
}

// Error is a failed Admin API call.
type Error struct {
	Status     int
	Message    string
	RetryAfter time.Duration
	Method     string
	Path       string
}

func (e *Error) Error() string {
	return fmt.Sprintf("keycloak %s %s: %d %s", e.Method, e.Path, e.Status, e.Message)
}

// Temporary reports whether retrying may succeed.
func (e *Error) Temporary() bool {
	return e.Status == http.StatusTooManyRequests || e.Status == http.StatusRequestTimeout || e.Status >= 500
}

// RetryAfterDuration is the wait the server asked for, if any.
func (e *Error) RetryAfterDuration() time.Duration { return e.RetryAfter }

// Is lets errors.Is match the error kinds.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrConflict:
		return e.Status == http.StatusConflict
	}
	return false
}

// Error kinds.
var (
	ErrNotFound = errors.New("not found in keycloak")
	ErrConflict = errors.New("already exists in keycloak")
)

// errorBody covers Keycloak's two error shapes.
type errorBody struct {
	ErrorMessage     string `json:"errorMessage"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

func readError(resp *http.Response, method, p string) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &Error{Status: resp.StatusCode, Method: method, Path: p}
	var b errorBody
	if json.Unmarshal(raw, &b) == nil {
		switch {
		case b.ErrorMessage != "":
			e.Message = b.ErrorMessage
		case b.ErrorDescription != "":
			e.Message = b.Error + ": " + b.ErrorDescription
		case b.Error != "":
			e.Message = b.Error
		}
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
		if s := strings.TrimSpace(string(raw)); s != "" && len(s) < 200 {
			e.Message += ": " + s
		}
	}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if secs, err := strconv.Atoi(ra); err == nil && secs >= 0 {
			e.RetryAfter = time.Duration(secs) * time.Second
		} else if t, err := http.ParseTime(ra); err == nil {
			e.RetryAfter = max(0, time.Until(t))
		}
	}
	return e
}

// accessToken returns a cached token, fetching a new one when the cached
// one has less than 10 s (or a sixth of its life) left.
func (c *Client) accessToken(ctx context.Context, force bool) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !force && c.token != "" && c.cfg.Now().Before(c.expires) {
		return c.token, nil
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {c.cfg.ClientID}, "client_secret": {c.cfg.ClientSecret}}
	p := "/realms/" + url.PathEscape(c.cfg.Realm) + "/protocol/openid-connect/token"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.String()+p, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	start := c.cfg.Now()
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("keycloak token: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", readError(resp, http.MethodPost, p)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("keycloak token: unreadable response")
	}
	life := time.Duration(tok.ExpiresIn) * time.Second
	c.token = tok.AccessToken
	c.expires = start.Add(life - max(10*time.Second, life/6))
	return c.token, nil
}

// call sends one Admin API request. body, if not nil, is sent as JSON; out,
// if not nil, receives the JSON response. It returns the response headers.
// A 401 refreshes the token once.
func (c *Client) call(ctx context.Context, method, p string, body, out any) (http.Header, error) {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return nil, err
		}
	}
	for attempt := 0; ; attempt++ {
		tok, err := c.accessToken(ctx, attempt > 0)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, method, c.base.String()+p, bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", "application/json")
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := c.cfg.HTTPClient.Do(req)
		if err != nil {
			// The client's error quotes the URL, query and all; keep the
			// cause (a net.Error stays one).
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return nil, fmt.Errorf("keycloak %s %s: %w", method, redactQuery(p), err)
		}
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			continue
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return resp.Header, readError(resp, method, redactQuery(p))
		}
		if out != nil {
			if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(out); err != nil {
				return resp.Header, fmt.Errorf("keycloak %s %s: unreadable response: %w", method, p, err)
			}
		} else {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		}
		return resp.Header, nil
	}
}

// createdID reads the id of a created resource from its Location header.
func createdID(h http.Header) (string, error) {
	loc := h.Get("Location")
	if loc == "" {
		return "", errors.New("keycloak: created, but no Location header")
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("keycloak: bad Location header %q", loc)
	}
	id := path.Base(u.Path)
	if id == "" || id == "." || id == "/" {
		return "", fmt.Errorf("keycloak: no id in Location header %q", loc)
	}
	return url.PathUnescape(id)
}

// send makes a request whose answer carries nothing the caller needs.
func (c *Client) send(ctx context.Context, method, p string, body any) error {
	_, err := c.call(ctx, method, p, body, nil)
	return err
}

// get reads the resource at p.
func get[T any](ctx context.Context, c *Client, p string) (T, error) {
	var v T
	_, err := c.call(ctx, http.MethodGet, p, nil, &v)
	return v, err
}

// create posts body to the collection at p and returns the new resource's
// id.
func (c *Client) create(ctx context.Context, p string, body any) (string, error) {
	h, err := c.call(ctx, http.MethodPost, p, body, nil)
	if err != nil {
		return "", err
	}
	return createdID(h)
}

// findOne searches the collection at p (a path with its query) and returns
// the first result match accepts, and whether there is one: Keycloak's
// searches can also answer near matches.
func findOne[T any](ctx context.Context, c *Client, p string, match func(T) bool) (T, bool, error) {
	var zero T
	list, err := get[[]T](ctx, c, p)
	if err != nil {
		return zero, false, err
	}
	for _, v := range list {
		if match(v) {
			return v, true, nil
		}
	}
	return zero, false, nil
}

func realmPath(realm string, rest ...string) string {
	p := "/admin/realms/" + url.PathEscape(realm)
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

// Realm is the part of a realm representation the provisioner manages.
type Realm struct {
	Realm                 string            `json:"realm"`
	ID                    string            `json:"id,omitempty"`
	DisplayName           string            `json:"displayName,omitempty"`
	Enabled               *bool             `json:"enabled,omitempty"`
	SSLRequired           string            `json:"sslRequired,omitempty"`
	BruteForceProtected   *bool             `json:"bruteForceProtected,omitempty"`
	RegistrationAllowed   *bool             `json:"registrationAllowed,omitempty"`
	LoginWithEmailAllowed *bool             `json:"loginWithEmailAllowed,omitempty"`
	ResetPasswordAllowed  *bool             `json:"resetPasswordAllowed,omitempty"`
	AccessTokenLifespan   int               `json:"accessTokenLifespan,omitempty"`
	Attributes            map[string]string `json:"attributes,omitempty"`
	SMTPServer            map[string]string `json:"smtpServer,omitempty"`
	// OrganizationsEnabled is off in a new realm; every organization call
	// answers 404 until it is on.
	OrganizationsEnabled *bool `json:"organizationsEnabled,omitempty"`
}

// Bool returns a pointer to v.
func Bool(v bool) *bool { return &v }

// IsEnabled reports whether the realm is enabled.
func (r Realm) IsEnabled() bool { return r.Enabled != nil && *r.Enabled }

// GetRealm returns a realm; a missing one is an error wrapping ErrNotFound.
func (c *Client) GetRealm(ctx context.Context, name string) (Realm, error) {
	return get[Realm](ctx, c, realmPath(name))
}

// CreateRealm creates a realm; an existing one is an error wrapping
// ErrConflict.
func (c *Client) CreateRealm(ctx context.Context, r Realm) error {
	return c.send(ctx, http.MethodPost, "/admin/realms", r)
}

// UpdateRealm changes the top-level fields set in r (a partial update).
func (c *Client) UpdateRealm(ctx context.Context, name string, r Realm) error {
	r.Realm = name
	return c.send(ctx, http.MethodPut, realmPath(name), r)
}

// DeleteRealm deletes a realm; a missing one is an error wrapping
// ErrNotFound.
func (c *Client) DeleteRealm(ctx context.Context, name string) error {
	return c.send(ctx, http.MethodDelete, realmPath(name), nil)
}

// LogoutAll ends every user session of a realm.
func (c *Client) LogoutAll(ctx context.Context, realm string) error {
	return c.send(ctx, http.MethodPost, realmPath(realm, "logout-all"), nil)
}

// ProtocolMapper puts a claim into tokens.
type ProtocolMapper struct {
	ID             string            `json:"id,omitempty"`
	Name           string            `json:"name"`
	Protocol       string            `json:"protocol"`
	ProtocolMapper string            `json:"protocolMapper"`
	Config         map[string]string `json:"config"`
}

// OIDCClient is the part of a client representation the provisioner
// manages.
type OIDCClient struct {
	ID                        string            `json:"id,omitempty"`
	ClientID                  string            `json:"clientId"`
	Name                      string            `json:"name,omitempty"`
	Enabled                   *bool             `json:"enabled,omitempty"`
	Protocol                  string            `json:"protocol,omitempty"`
	PublicClient              *bool             `json:"publicClient,omitempty"`
	StandardFlowEnabled       *bool             `json:"standardFlowEnabled,omitempty"`
	DirectAccessGrantsEnabled *bool             `json:"directAccessGrantsEnabled,omitempty"`
	ServiceAccountsEnabled    *bool             `json:"serviceAccountsEnabled,omitempty"`
	RedirectURIs              []string          `json:"redirectUris,omitempty"`
	WebOrigins                []string          `json:"webOrigins,omitempty"`
	Attributes                map[string]string `json:"attributes,omitempty"`
	ProtocolMappers           []ProtocolMapper  `json:"protocolMappers,omitempty"`
	// Secret is a confidential client's secret; set on create or update
	// it replaces the one Keycloak would generate.
	Secret string `json:"secret,omitempty"`
}

// Group is a group representation.
type Group struct {
	ID            string              `json:"id,omitempty"`
	Name          string              `json:"name"`
	Path          string              `json:"path,omitempty"`
	SubGroupCount int                 `json:"subGroupCount,omitempty"`
	Attributes    map[string][]string `json:"attributes,omitempty"`
}

// Groups returns the realm's top-level groups (with attributes), or the
// subgroups of parent when it is not "".
func (c *Client) Groups(ctx context.Context, realm, parent string) ([]Group, error) {
	p := realmPath(realm, "groups")
	if parent != "" {
		p = realmPath(realm, "groups", parent, "children")
	}
	var out []Group
	for first := 0; ; first += pageSize {
		page, err := get[[]Group](ctx, c, p+"?briefRepresentation=false&first="+strconv.Itoa(first)+"&max="+strconv.Itoa(pageSize))
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < pageSize {
			return out, nil
		}
	}
}

// pageSize is how many items one listing call asks for.
const pageSize = 100

// CreateGroup creates g at the top, or under parent, and returns its id.
// A sibling of the same name is an error wrapping ErrConflict.
func (c *Client) CreateGroup(ctx context.Context, realm, parent string, g Group) (string, error) {
	if parent == "" {
		return c.create(ctx, realmPath(realm, "groups"), g)
	}
	return c.create(ctx, realmPath(realm, "groups", parent, "children"), g)
}

// MoveGroup moves the group g (its id) to the top, or under parent.
func (c *Client) MoveGroup(ctx context.Context, realm, parent string, g Group) error {
	if parent == "" {
		return c.send(ctx, http.MethodPost, realmPath(realm, "groups"), g)
	}
	return c.send(ctx, http.MethodPost, realmPath(realm, "groups", parent, "children"), g)
}

// UpdateGroup renames a group and replaces its attributes.
func (c *Client) UpdateGroup(ctx context.Context, realm string, g Group) error {
	return c.send(ctx, http.MethodPut, realmPath(realm, "groups", g.ID), g)
}

// DeleteGroup deletes a group with its subgroups; a missing one is an
// error wrapping ErrNotFound.
func (c *Client) DeleteGroup(ctx context.Context, realm, id string) error {
	return c.send(ctx, http.MethodDelete, realmPath(realm, "groups", id), nil)
}

// UserGroups returns the groups a user is a member of, with attributes.
func (c *Client) UserGroups(ctx context.Context, realm, userID string) ([]Group, error) {
	return get[[]Group](ctx, c, realmPath(realm, "users", userID, "groups")+"?briefRepresentation=false&max=1000")
}

// JoinGroup makes a user a member of a group.
func (c *Client) JoinGroup(ctx context.Context, realm, userID, groupID string) error {
	return c.send(ctx, http.MethodPut, realmPath(realm, "users", userID, "groups", groupID), nil)
}

// LeaveGroup ends a user's membership of a group.
func (c *Client) LeaveGroup(ctx context.Context, realm, userID, groupID string) error {
	return c.send(ctx, http.MethodDelete, realmPath(realm, "users", userID, "groups", groupID), nil)
}

// TenantAppClientID is the client of every tenant realm whose tokens
// carry the tenant's identity, plan and features: the provisioner makes it,
// and the API accepts tokens issued to it.
const TenantAppClientID = "tenancy-app"

// UpdateClient replaces a client with cl (send the whole representation,
// with its id).
func (c *Client) UpdateClient(ctx context.Context, realm string, cl OIDCClient) error {
	return c.send(ctx, http.MethodPut, realmPath(realm, "clients", cl.ID), cl)
}

// DeleteClient deletes a client by its id; a missing one is an error
// wrapping ErrNotFound.
func (c *Client) DeleteClient(ctx context.Context, realm, id string) error {
	return c.send(ctx, http.MethodDelete, realmPath(realm, "clients", id), nil)
}

// Clients returns up to max of the realm's clients from the first-th on.
func (c *Client) Clients(ctx context.Context, realm string, first, max int) ([]OIDCClient, error) {
	q := url.Values{"first": {strconv.Itoa(first)}, "max": {strconv.Itoa(max)}}
	return get[[]OIDCClient](ctx, c, realmPath(realm, "clients")+"?"+q.Encode())
}

// FindClient returns the realm's client with clientId, and whether it
// exists.
func (c *Client) FindClient(ctx context.Context, realm, clientID string) (OIDCClient, bool, error) {
	return findOne(ctx, c, realmPath(realm, "clients")+"?clientId="+url.QueryEscape(clientID),
		func(cl OIDCClient) bool { return cl.ClientID == clientID })
}

// CreateClient creates a client and returns its id.
func (c *Client) CreateClient(ctx context.Context, realm string, cl OIDCClient) (string, error) {
	return c.create(ctx, realmPath(realm, "clients"), cl)
}

// Mappers lists a client's protocol mappers.
func (c *Client) Mappers(ctx context.Context, realm, clientUUID string) ([]ProtocolMapper, error) {
	return get[[]ProtocolMapper](ctx, c, realmPath(realm, "clients", clientUUID, "protocol-mappers", "models"))
}

// CreateMapper adds a protocol mapper to a client.
func (c *Client) CreateMapper(ctx context.Context, realm, clientUUID string, m ProtocolMapper) error {
	return c.send(ctx, http.MethodPost, realmPath(realm, "clients", clientUUID, "protocol-mappers", "models"), m)
}

// UpdateMapper replaces a protocol mapper.
func (c *Client) UpdateMapper(ctx context.Context, realm, clientUUID string, m ProtocolMapper) error {
	return c.send(ctx, http.MethodPut, realmPath(realm, "clients", clientUUID, "protocol-mappers", "models", m.ID), m)
}

// DeleteMapper removes a protocol mapper from a client; a missing one is an
// error wrapping ErrNotFound.
func (c *Client) DeleteMapper(ctx context.Context, realm, clientUUID, id string) error {
	return c.send(ctx, http.MethodDelete, realmPath(realm, "clients", clientUUID, "protocol-mappers", "models", id), nil)
}

// Role is a realm role.
type Role struct {
	ID          string `json:"id,omitempty"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// GetRole returns a realm role; a missing one is an error wrapping
// ErrNotFound.
func (c *Client) GetRole(ctx context.Context, realm, name string) (Role, error) {
	return get[Role](ctx, c, realmPath(realm, "roles", name))
}

// CreateRole creates a realm role; an existing one is an error wrapping
// ErrConflict.
func (c *Client) CreateRole(ctx context.Context, realm string, r Role) error {
	return c.send(ctx, http.MethodPost, realmPath(realm, "roles"), r)
}

// User is a user representation. PUT replaces a user whole, so updates
// always send a complete User read back from Keycloak.
type User struct {
	ID               string              `json:"id,omitempty"`
	Username         string              `json:"username"`
	Email            string              `json:"email,omitempty"`
	FirstName        string              `json:"firstName,omitempty"`
	LastName         string              `json:"lastName,omitempty"`
	Enabled          bool                `json:"enabled"`
	EmailVerified    bool                `json:"emailVerified"`
	RequiredActions  []string            `json:"requiredActions,omitempty"`
	Attributes       map[string][]string `json:"attributes,omitempty"`
	CreatedTimestamp int64               `json:"createdTimestamp,omitempty"`
}

// FindUser returns the user with exactly this username, and whether it
// exists.
func (c *Client) FindUser(ctx context.Context, realm, username string) (User, bool, error) {
	return findOne(ctx, c, realmPath(realm, "users")+"?exact=true&username="+url.QueryEscape(username),
		func(u User) bool { return strings.EqualFold(u.Username, username) })
}

// FindUserByAttribute returns the user whose attribute key has exactly
// value (Keycloak's q search), and whether there is one. The attribute
// must be declared in the realm's user profile to be stored at all.
func (c *Client) FindUserByAttribute(ctx context.Context, realm, key, value string) (User, bool, error) {
	return findOne(ctx, c, realmPath(realm, "users")+"?briefRepresentation=false&exact=true&q="+url.QueryEscape(key+":"+value),
		func(u User) bool { return slices.Contains(u.Attributes[key], value) })
}

// UsersByAttribute returns up to max users whose attribute key has exactly
// value, from the first-th on (Keycloak's q search, service accounts
// included as Keycloak does for a search by field).
func (c *Client) UsersByAttribute(ctx context.Context, realm, key, value string, first, max int) ([]User, error) {
	q := url.Values{"briefRepresentation": {"false"}, "exact": {"true"}, "q": {key + ":" + value},
		"first": {strconv.Itoa(first)}, "max": {strconv.Itoa(max)}}
	list, err := get[[]User](ctx, c, realmPath(realm, "users")+"?"+q.Encode())
	return slices.DeleteFunc(list, func(u User) bool { return !slices.Contains(u.Attributes[key], value) }), err
}

// LogoutUser ends every session of a user.
func (c *Client) LogoutUser(ctx context.Context, realm, userID string) error {
	return c.send(ctx, http.MethodPost, realmPath(realm, "users", userID, "logout"), nil)
}

// RealmRolesOf returns the realm roles mapped to a user.
func (c *Client) RealmRolesOf(ctx context.Context, realm, userID string) ([]Role, error) {
	return get[[]Role](ctx, c, realmPath(realm, "users", userID, "role-mappings", "realm"))
}

// RemoveRealmRoles unmaps realm roles from a user.
func (c *Client) RemoveRealmRoles(ctx context.Context, realm, userID string, roles []Role) error {
	return c.send(ctx, http.MethodDelete, realmPath(realm, "users", userID, "role-mappings", "realm"), roles)
}

// CreateUser creates a user and returns its id.
func (c *Client) CreateUser(ctx context.Context, realm string, u User) (string, error) {
	return c.create(ctx, realmPath(realm, "users"), u)
}

// GetUser returns a user by id; a missing one is an error wrapping
// ErrNotFound.
func (c *Client) GetUser(ctx context.Context, realm, id string) (User, error) {
	return get[User](ctx, c, realmPath(realm, "users", id))
}

// ServiceAccountUser returns the user a client with service accounts
// enabled signs in as (client credentials grant); its realm roles are the
// client's. A client without service accounts answers 400.
func (c *Client) ServiceAccountUser(ctx context.Context, realm, clientUUID string) (User, error) {
	return get[User](ctx, c, realmPath(realm, "clients", clientUUID, "service-account-user"))
}

// DeleteUser deletes a user; a missing one is an error wrapping ErrNotFound.
func (c *Client) DeleteUser(ctx context.Context, realm, id string) error {
	return c.send(ctx, http.MethodDelete, realmPath(realm, "users", id), nil)
}

// UpdateUser replaces a user with u (send the whole representation).
func (c *Client) UpdateUser(ctx context.Context, realm string, u User) error {
	return c.send(ctx, http.MethodPut, realmPath(realm, "users", u.ID), u)
}

// UserProfile is a realm's user profile configuration (UPConfig): the user
// attributes the realm declares, the groups they are shown in, and what
// becomes of the attributes it does not declare. Since Keycloak 24 an
// undeclared ("unmanaged") attribute is dropped from every user create and
// update, with a 2xx answer, unless UnmanagedAttributePolicy lets it through;
// so an attribute a client stores on users must be declared here first.
//
// A PUT replaces the whole configuration, so changes start from one read
// back with GetUserProfile. The types carry every field of Keycloak 26.6's
// UPConfig for that reason: a field left out here would be erased from the
// realm by the next update.
type UserProfile struct {
	// Attributes is required by Keycloak: a PUT without it is a 400.
	Attributes               []ProfileAttribute       `json:"attributes"`
	Groups                   []ProfileGroup           `json:"groups"`
	UnmanagedAttributePolicy UnmanagedAttributePolicy `json:"unmanagedAttributePolicy,omitempty"`
}

// Attribute returns the declaration of the attribute name, and whether
// there is one.
func (p UserProfile) Attribute(name string) (ProfileAttribute, bool) {
	for _, a := range p.Attributes {
		if a.Name == name {
			return a, true
		}
	}
	return ProfileAttribute{}, false
}

// UnmanagedAttributePolicy says who may see and write the user attributes a
// profile does not declare. Its zero value, the field left out, is
// Keycloak's default: nobody, and writes of them are dropped silently. It is
// a plain string rather than a parsed enum so that a value a later Keycloak
// adds survives a read-modify-write of the profile.
type UnmanagedAttributePolicy string

// The policies Keycloak 26.6 knows.
const (
	// UnmanagedEnabled lets users and administrators see and write them.
	UnmanagedEnabled UnmanagedAttributePolicy = "ENABLED"
	// UnmanagedAdminView lets administrators see them; nobody writes them,
	// the Admin API included.
	UnmanagedAdminView UnmanagedAttributePolicy = "ADMIN_VIEW"
	// UnmanagedAdminEdit lets administrators, and so the Admin API, see and
	// write them; users do neither.
	UnmanagedAdminEdit UnmanagedAttributePolicy = "ADMIN_EDIT"
)

// The two roles a profile's permissions and requirements can name: the
// Admin API and admin console act as ProfileAdmin, a user on their own
// account (account console, login flows) as ProfileUser.
const (
	ProfileAdmin = "admin"
	ProfileUser  = "user"
)

// ProfileAttribute is a UPAttribute, one declared user attribute.
type ProfileAttribute struct {
	Name        string `json:"name"`
	DisplayName string `json:"displayName,omitempty"`
	// Validations maps a validator id to its configuration ({} for none).
	Validations map[string]map[string]any `json:"validations,omitempty"`
	Annotations map[string]any            `json:"annotations,omitempty"`
	// Required, when set with no roles and no scopes, means always.
	Required *AttributeRequired `json:"required,omitempty"`
	// Permissions left out let nobody see or write the attribute (but for
	// username and email).
	Permissions *AttributePermissions `json:"permissions,omitempty"`
	Selector    *AttributeSelector    `json:"selector,omitempty"`
	Group       string                `json:"group,omitempty"`
	// Multivalued off means one value at most: more is a 400 on write.
	Multivalued  bool   `json:"multivalued,omitempty"`
	DefaultValue string `json:"defaultValue,omitempty"`
}

// AttributePermissions names who may see (View) and write (Edit) an
// attribute: ProfileAdmin, ProfileUser or both. Whoever may write it may
// also see it.
type AttributePermissions struct {
	View []string `json:"view,omitempty"`
	Edit []string `json:"edit,omitempty"`
}

// AttributeRequired says for whom, or for which requested scopes, an
// attribute is required.
type AttributeRequired struct {
	Roles  []string `json:"roles,omitempty"`
	Scopes []string `json:"scopes,omitempty"`
}

// AttributeSelector limits an attribute to the flows requesting one of
// Scopes.
type AttributeSelector struct {
	Scopes []string `json:"scopes,omitempty"`
}

// ProfileGroup is a UPGroup, a heading attributes are shown under.
type ProfileGroup struct {
	Name               string         `json:"name"`
	DisplayHeader      string         `json:"displayHeader,omitempty"`
	DisplayDescription string         `json:"displayDescription,omitempty"`
	Annotations        map[string]any `json:"annotations,omitempty"`
}

// GetUserProfile returns the realm's user profile configuration; a realm
// never configured answers Keycloak's default one.
func (c *Client) GetUserProfile(ctx context.Context, realm string) (UserProfile, error) {
	return get[UserProfile](ctx, c, realmPath(realm, "users", "profile"))
}

// UpdateUserProfile replaces the realm's user profile configuration with p
// (start from one read with GetUserProfile) and returns the configuration
// Keycloak then holds. An invalid one is a 400 naming what is wrong.
func (c *Client) UpdateUserProfile(ctx context.Context, realm string, p UserProfile) (UserProfile, error) {
	if p.Groups == nil {
		// Keycloak's profile code walks the groups list without checking
		// for null: send an empty one, never null.
		p.Groups = []ProfileGroup{}
	}
	var out UserProfile
	_, err := c.call(ctx, http.MethodPut, realmPath(realm, "users", "profile"), p, &out)
	return out, err
}

// AddRealmRoles maps realm roles to a user.
func (c *Client) AddRealmRoles(ctx context.Context, realm, userID string, roles []Role) error {
	return c.send(ctx, http.MethodPost, realmPath(realm, "users", userID, "role-mappings", "realm"), roles)
}

// ResetPassword sets a user's password.
func (c *Client) ResetPassword(ctx context.Context, realm, userID, password string, temporary bool) error {
	return c.send(ctx, http.MethodPut, realmPath(realm, "users", userID, "reset-password"),
		map[string]any{"type": "password", "value": password, "temporary": temporary})
}

// SetTemporaryPassword sets password on username's account in realm, to be
// changed at first login, and returns the account's username; found is
// false when there is no such account.
func (c *Client) SetTemporaryPassword(ctx context.Context, realm, username, password string) (string, bool, error) {
	u, found, err := c.FindUser(ctx, realm, username)
	if err != nil || !found {
		return "", found, err
	}
	if err := c.ResetPassword(ctx, realm, u.ID, password, true); err != nil {
		return "", true, err
	}
	return u.Username, true, nil
}

// Attributes Tenancy marks the accounts it makes with (realmsync keeps
// them; the user profile declares them).
const (
	AttrTenantID = "tenancy.tenant_id"
	AttrUserID   = "tenancy.user_id"
)

// MemberAccount finds the shared realm's account of directory user userID
// and reports whether it belongs to tenants other than tenantID too: then
// no one tenant may set its password, which would open the others.
func (c *Client) MemberAccount(ctx context.Context, realm, tenantID, userID string) (found, shared bool, err error) {
	_, found, shared, err = c.memberAccount(ctx, realm, tenantID, userID)
	return found, shared, err
}

func (c *Client) memberAccount(ctx context.Context, realm, tenantID, userID string) (u User, found, shared bool, err error) {
	u, found, err = c.FindUserByAttribute(ctx, realm, AttrUserID, userID)
	return u, found, found && !slices.Equal(u.Attributes[AttrTenantID], []string{tenantID}), err
}

// SetMemberPassword is SetTemporaryPassword for the shared realm: the
// account of directory user userID, which must belong to tenantID alone
// (shared is true, and nothing is set, otherwise).
func (c *Client) SetMemberPassword(ctx context.Context, realm, tenantID, userID, password string) (account string, found, shared bool, err error) {
	u, found, shared, err := c.memberAccount(ctx, realm, tenantID, userID)
	if err != nil || !found || shared {
		return "", found, shared, err
	}
	if err := c.ResetPassword(ctx, realm, u.ID, password, true); err != nil {
		return "", true, false, err
	}
	return u.Username, true, false, nil
}

// ExecuteActionsEmail emails the user a link to perform actions.
func (c *Client) ExecuteActionsEmail(ctx context.Context, realm, userID string, actions []string) error {
	return c.send(ctx, http.MethodPut, realmPath(realm, "users", userID, "execute-actions-email"), actions)
}

// Organization is an OrganizationRepresentation: a group of a realm's users
// with its own name, alias and attributes. A PUT replaces an organization
// whole (an absent "enabled" means true, absent text fields are cleared),
// except that absent attributes and domains are left as they are; so
// updates send a complete Organization read back from Keycloak.
type Organization struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name"`
	// Alias is unique in the realm and cannot change; Keycloak makes it
	// the name when it is empty.
	Alias       string               `json:"alias,omitempty"`
	Enabled     bool                 `json:"enabled"`
	Description string               `json:"description,omitempty"`
	RedirectURL string               `json:"redirectUrl,omitempty"`
	Attributes  map[string][]string  `json:"attributes,omitempty"`
	Domains     []OrganizationDomain `json:"domains,omitempty"`
}

// OrganizationDomain is an email domain of an organization.
type OrganizationDomain struct {
	Name     string `json:"name"`
	Verified bool   `json:"verified"`
}

// searchTerm is one key:value pair of the q parameter of organization
// searches, both quoted (with \" inside) as Keycloak's parser allows, so
// that a space or colon cannot split them.
func searchTerm(key, value string) string {
	quote := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
	return quote(key) + ":" + quote(value)
}

// FindOrganization returns the realm's organization with this alias, and
// whether it exists. Keycloak's search parameter matches names and domains
// only; the q parameter's "alias" key is the one exact lookup by alias.
// The full representation is asked for: the brief one has no attributes.
func (c *Client) FindOrganization(ctx context.Context, realm, alias string) (Organization, bool, error) {
	q := url.Values{"q": {searchTerm("alias", alias)}, "briefRepresentation": {"false"}, "max": {"2"}}
	return findOne(ctx, c, realmPath(realm, "organizations")+"?"+q.Encode(),
		func(o Organization) bool { return o.Alias == alias })
}

// GetOrganization returns an organization by id; a missing one is an
// error wrapping ErrNotFound, as is any organization call in a realm
// without organizations enabled.
func (c *Client) GetOrganization(ctx context.Context, realm, id string) (Organization, error) {
	return get[Organization](ctx, c, realmPath(realm, "organizations", id))
}

// CreateOrganization creates an organization and returns its id; one with
// the same name or alias is an error wrapping ErrConflict.
func (c *Client) CreateOrganization(ctx context.Context, realm string, o Organization) (string, error) {
	return c.create(ctx, realmPath(realm, "organizations"), o)
}

// UpdateOrganization replaces the organization o.ID with o (send the whole
// representation, read back from Keycloak).
func (c *Client) UpdateOrganization(ctx context.Context, realm string, o Organization) error {
	return c.send(ctx, http.MethodPut, realmPath(realm, "organizations", o.ID), o)
}

// DeleteOrganization deletes an organization, ending its memberships (its
// members stay users of the realm); a missing one is an error wrapping
// ErrNotFound.
func (c *Client) DeleteOrganization(ctx context.Context, realm, id string) error {
	return c.send(ctx, http.MethodDelete, realmPath(realm, "organizations", id), nil)
}

// RemoveOrganizationMember ends a user's membership of the organization
// (the user stays a user of the realm); one that is no member is an error
// wrapping ErrNotFound.
func (c *Client) RemoveOrganizationMember(ctx context.Context, realm, orgID, userID string) error {
	return c.send(ctx, http.MethodDelete, realmPath(realm, "organizations", orgID, "members", userID), nil)
}

// AddOrganizationMember makes a user of the realm a member of the
// organization. A user who already is one is an error wrapping
// ErrConflict; an unknown user is a 400.
func (c *Client) AddOrganizationMember(ctx context.Context, realm, orgID, userID string) error {
	// The body is the user id as a JSON string.
	return c.send(ctx, http.MethodPost, realmPath(realm, "organizations", orgID, "members"), userID)
}
