package keycloakfake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/faultinject"
	"github.com/tenancyhq/tenancy/internal/keycloak/keycloakfake"
)

const (
	clientID     = "provisioner"
	clientSecret = "s3cret"
)

// clock is a settable time source shared between the test and the fake's
// request goroutines.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type fixture struct {
	t     *testing.T
	srv   *keycloakfake.Server
	clock *clock
	http  *http.Client
	token string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	c := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	srv := keycloakfake.New(keycloakfake.Options{
		ClientID:     clientID,
		ClientSecret: clientSecret,
		Now:          c.Now,
	})
	t.Cleanup(srv.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	f := &fixture{t: t, srv: srv, clock: c, http: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	f.token = f.getToken()
	return f
}

type result struct {
	status int
	header http.Header
	body   []byte
}

func (f *fixture) getToken() string {
	f.t.Helper()
	res := f.form("/realms/master/protocol/openid-connect/token", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {clientSecret},
	})
	res.wantStatus(f.t, http.StatusOK)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	res.decode(f.t, &tok)
	if tok.AccessToken == "" {
		f.t.Fatal("token response has no access_token")
	}
	return tok.AccessToken
}

func (f *fixture) form(path string, v url.Values) result {
	f.t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.srv.URL()+path, strings.NewReader(v.Encode()))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return f.send(req)
}

// do sends an authenticated admin request; body is JSON-encoded unless it is
// already a string.
func (f *fixture) do(method, path string, body any) result {
	f.t.Helper()
	res, err := f.try(context.Background(), method, path, f.token, body)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	return res
}

func (f *fixture) try(ctx context.Context, method, path, token string, body any) (result, error) {
	f.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			f.t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	target := path
	if !strings.HasPrefix(path, "http") {
		target = f.srv.URL() + path
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := f.http.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, err
	}
	return result{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

func (f *fixture) send(req *http.Request) result {
	f.t.Helper()
	resp, err := f.http.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: b}
}

func (r result) wantStatus(t *testing.T, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status = %d, want %d; body %s", r.status, want, r.body)
	}
}

func (r result) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %q: %v", r.body, err)
	}
}

// wantBody compares the JSON body with want as generic values, so key order
// and whitespace do not matter but every key and value does.
func (r result) wantBody(t *testing.T, want string) {
	t.Helper()
	var got, exp any
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("body %q is not JSON: %v", r.body, err)
	}
	if err := json.Unmarshal([]byte(want), &exp); err != nil {
		t.Fatalf("bad expectation %q: %v", want, err)
	}
	gb, _ := json.Marshal(got)
	eb, _ := json.Marshal(exp)
	if !bytes.Equal(gb, eb) {
		t.Fatalf("body = %s, want %s", gb, eb)
	}
}

func (r result) wantError(t *testing.T, status int, body string) {
	t.Helper()
	r.wantStatus(t, status)
	r.wantBody(t, body)
}

// created checks a 201 and returns the Location header's path after base.
func (r result) created(t *testing.T, base, prefix string) string {
	t.Helper()
	r.wantStatus(t, http.StatusCreated)
	loc := r.header.Get("Location")
	if !strings.HasPrefix(loc, base+prefix) {
		t.Fatalf("Location = %q, want prefix %q", loc, base+prefix)
	}
	if len(r.body) != 0 {
		t.Fatalf("201 has body %q", r.body)
	}
	return strings.TrimPrefix(loc, base+prefix)
}

func (f *fixture) createRealm(name string, extra map[string]any) {
	f.t.Helper()
	body := map[string]any{"realm": name}
	for k, v := range extra {
		body[k] = v
	}
	f.do(http.MethodPost, "/admin/realms", body).created(f.t, f.srv.URL(), "/admin/realms/"+name)
}

func (f *fixture) createUser(realm string, body map[string]any) string {
	f.t.Helper()
	return f.do(http.MethodPost, "/admin/realms/"+realm+"/users", body).
		created(f.t, f.srv.URL(), "/admin/realms/"+realm+"/users/")
}

func (f *fixture) createClient(realm string, body map[string]any) string {
	f.t.Helper()
	return f.do(http.MethodPost, "/admin/realms/"+realm+"/clients", body).
		created(f.t, f.srv.URL(), "/admin/realms/"+realm+"/clients/")
}

func (f *fixture) role(realm, name string) keycloakfake.Role {
	f.t.Helper()
	var r keycloakfake.Role
	f.get(f.t, "/admin/realms/"+realm+"/roles/"+url.PathEscape(name), &r)
	return r
}

// wantCreates checks how many objects of a kind the fake has created.
func (f *fixture) wantCreates(t *testing.T, kind string, want int) {
	t.Helper()
	if got := f.srv.Creates(kind); got != want {
		t.Fatalf("Creates(%s) = %d, want %d", kind, got, want)
	}
}

// get fetches path, checks the 200 and decodes the body into v.
func (f *fixture) get(t *testing.T, path string, v any) {
	t.Helper()
	res := f.do(http.MethodGet, path, nil)
	res.wantStatus(t, http.StatusOK)
	res.decode(t, v)
}

// errCase is a request and the error Keycloak answers it with.
type errCase struct {
	name, method, path string
	body               any
	status             int
	want               string
}

// wantErrors sends each case's request in a subtest and checks its error.
func (f *fixture) wantErrors(t *testing.T, cases []errCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.do(tc.method, tc.path, tc.body).wantError(t, tc.status, tc.want)
		})
	}
}

// listCase is a query on a collection and the names it lists, in order.
type listCase struct {
	query string
	want  []string
}

// wantLists runs each query on the collection at path in a subtest named
// prefix+query and compares the names listed. An empty result must still
// be a JSON array, as Keycloak's is.
func wantLists[T any](t *testing.T, f *fixture, prefix, path string, name func(T) string, cases []listCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(prefix+tc.query, func(t *testing.T) {
			var list []T
			f.get(t, path+tc.query, &list)
			var got []string
			for _, v := range list {
				got = append(got, name(v))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("%s = %v, want %v", prefix, got, tc.want)
			}
			if list == nil {
				t.Fatal("an empty list must be [], not null")
			}
		})
	}
}

func TestTokenEndpoint(t *testing.T) {
	f := newFixture(t) // issues one token
	const path = "/realms/master/protocol/openid-connect/token"
	creds := func(id, secret, grant string) url.Values {
		v := url.Values{}
		for k, val := range map[string]string{"client_id": id, "client_secret": secret, "grant_type": grant} {
			if val != "" {
				v.Set(k, val)
			}
		}
		return v
	}
	tests := []struct {
		name     string
		path     string
		form     url.Values
		status   int
		wantBody string // exact body for errors; empty for success
	}{
		{"good credentials", path, creds(clientID, clientSecret, "client_credentials"), 200, ""},
		{"wrong secret", path, creds(clientID, "nope", "client_credentials"), 401,
			`{"error":"unauthorized_client","error_description":"Invalid client or Invalid client credentials"}`},
		{"unknown client", path, creds("stranger", clientSecret, "client_credentials"), 401,
			`{"error":"invalid_client","error_description":"Invalid client or Invalid client credentials"}`},
		{"missing client_id", path, creds("", clientSecret, "client_credentials"), 400,
			`{"error":"invalid_client","error_description":"Missing client_id parameter"}`},
		{"password grant", path, creds(clientID, clientSecret, "password"), 400,
			`{"error":"unsupported_grant_type","error_description":"Unsupported grant_type"}`},
		{"missing grant", path, creds(clientID, clientSecret, ""), 400,
			`{"error":"invalid_request","error_description":"Missing form parameter: grant_type"}`},
		{"unknown realm", "/realms/nowhere/protocol/openid-connect/token", creds(clientID, clientSecret, "client_credentials"), 404,
			`{"error":"Realm does not exist"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := f.form(tc.path, tc.form)
			if tc.wantBody != "" {
				res.wantError(t, tc.status, tc.wantBody)
				return
			}
			res.wantStatus(t, tc.status)
			var tok struct {
				AccessToken string `json:"access_token"`
				ExpiresIn   int    `json:"expires_in"`
				TokenType   string `json:"token_type"`
			}
			res.decode(t, &tok)
			if tok.AccessToken == "" || tok.AccessToken == f.token || tok.ExpiresIn != 60 || tok.TokenType != "Bearer" {
				t.Fatalf("token response = %+v", tok)
			}
		})
	}

	t.Run("basic auth", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL()+path, strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(clientID, clientSecret)
		f.send(req).wantStatus(t, http.StatusOK)
	})
	t.Run("token in another realm", func(t *testing.T) {
		f.createRealm("acme", map[string]any{"enabled": true})
		f.form("/realms/acme/protocol/openid-connect/token", creds(clientID, clientSecret, "client_credentials")).
			wantError(t, 401, `{"error":"invalid_client","error_description":"Invalid client or Invalid client credentials"}`)
	})
	t.Run("GET is not allowed", func(t *testing.T) {
		f.do(http.MethodGet, path, nil).wantStatus(t, http.StatusMethodNotAllowed)
	})

	// newFixture's token, "good credentials" and "basic auth".
	if got := f.srv.TokensIssued(); got != 3 {
		t.Fatalf("TokensIssued = %d, want 3", got)
	}
}

func TestAdminAuthAndExpiry(t *testing.T) {
	f := newFixture(t)
	unauthorized := `{"error":"HTTP 401 Unauthorized"}`
	for _, tc := range []struct {
		name  string
		token string
	}{
		{"no token", ""},
		{"unknown token", "forged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := f.try(context.Background(), http.MethodGet, "/admin/realms/master", tc.token, nil)
			if err != nil {
				t.Fatal(err)
			}
			res.wantError(t, http.StatusUnauthorized, unauthorized)
		})
	}

	f.do(http.MethodGet, "/admin/realms/master", nil).wantStatus(t, http.StatusOK)
	f.clock.Advance(59 * time.Second)
	f.do(http.MethodGet, "/admin/realms/master", nil).wantStatus(t, http.StatusOK)
	f.clock.Advance(time.Second)
	f.do(http.MethodGet, "/admin/realms/master", nil).wantError(t, http.StatusUnauthorized, unauthorized)
	// Authentication comes before routing, so even an unknown admin path is a 401.
	f.do(http.MethodGet, "/admin/realms/master/nonsense", nil).wantError(t, http.StatusUnauthorized, unauthorized)
	f.do(http.MethodGet, "/admin/serverinfo", nil).wantError(t, http.StatusUnauthorized, unauthorized)

	f.token = f.getToken()
	f.do(http.MethodGet, "/admin/realms/master", nil).wantStatus(t, http.StatusOK)
}

func TestCustomTokenTTL(t *testing.T) {
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	srv := keycloakfake.New(keycloakfake.Options{ClientID: "a", ClientSecret: "b", TokenTTL: 5 * time.Minute, Now: c.Now})
	defer srv.Close()
	resp, err := http.PostForm(srv.URL()+"/realms/master/protocol/openid-connect/token",
		url.Values{"grant_type": {"client_credentials"}, "client_id": {"a"}, "client_secret": {"b"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		ExpiresIn int `json:"expires_in"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		t.Fatal(err)
	}
	if tok.ExpiresIn != 300 {
		t.Fatalf("expires_in = %d, want 300", tok.ExpiresIn)
	}
}

func TestRealmCreateGetConflict(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", map[string]any{"displayName": "Acme", "smtpServer": map[string]string{"host": "mail"}})

	var got keycloakfake.Realm
	f.get(t, "/admin/realms/acme", &got)
	if got.Realm != "acme" || got.ID == "" || got.DisplayName != "Acme" || got.SMTPServer["host"] != "mail" {
		t.Fatalf("realm = %+v", got)
	}
	// Keycloak's defaults for a realm created with a minimal body.
	if got.Enabled || got.SSLRequired != "external" || !got.LoginWithEmailAllowed || got.AccessTokenLifespan != 300 {
		t.Fatalf("defaults not applied: %+v", got)
	}
	if inspected, ok := f.srv.Realm("acme"); !ok || inspected.ID != got.ID {
		t.Fatalf("Realm(acme) = %+v, %v", inspected, ok)
	}

	f.wantErrors(t, []errCase{
		{"duplicate", "POST", "/admin/realms", map[string]any{"realm": "acme"}, 409,
			`{"errorMessage":"Conflict detected. See logs for details"}`},
		{"no name", "POST", "/admin/realms", map[string]any{"displayName": "x"}, 400,
			`{"errorMessage":"Realm name cannot be empty"}`},
		{"not JSON", "POST", "/admin/realms", "{", 400,
			`{"error":"invalid_request","error_description":"Cannot parse the JSON"}`},
		{"get missing", "GET", "/admin/realms/ghost", nil, 404, `{"error":"Realm not found."}`},
		{"put missing", "PUT", "/admin/realms/ghost", map[string]any{"enabled": true}, 404, `{"error":"Realm not found."}`},
		{"delete missing", "DELETE", "/admin/realms/ghost", nil, 404, `{"error":"Realm not found."}`},
		{"clients of missing", "GET", "/admin/realms/ghost/clients", nil, 404, `{"error":"Realm not found."}`},
		{"users of missing", "POST", "/admin/realms/ghost/users", map[string]any{"username": "x"}, 404, `{"error":"Realm not found."}`},
		{"roles of missing", "GET", "/admin/realms/ghost/roles", nil, 404, `{"error":"Realm not found."}`},
		{"logout-all of missing", "POST", "/admin/realms/ghost/logout-all", nil, 404, `{"error":"Realm not found."}`},
		{"delete master", "DELETE", "/admin/realms/master", nil, 400, `{"errorMessage":"Can't remove master realm"}`},
	})

	f.wantCreates(t, "realm", 1)
	if got := f.srv.RealmNames(); !slices.Equal(got, []string{"acme", "master"}) {
		t.Fatalf("RealmNames = %v", got)
	}
	var list []keycloakfake.Realm
	f.get(t, "/admin/realms", &list)
	if len(list) != 2 || list[0].Realm != "acme" || list[1].Realm != "master" {
		t.Fatalf("GET /admin/realms = %+v", list)
	}
}

func TestRealmPutIsPartial(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", map[string]any{
		"enabled": true, "displayName": "Acme", "registrationAllowed": true,
		"smtpServer": map[string]string{"host": "mail", "from": "a@b.c"},
		"attributes": map[string]string{"tier": "gold"},
	})
	before, _ := f.srv.Realm("acme")

	f.do(http.MethodPut, "/admin/realms/acme", map[string]any{"displayName": "Acme Corp"}).wantStatus(t, http.StatusNoContent)
	after, _ := f.srv.Realm("acme")
	want := before
	want.DisplayName = "Acme Corp"
	if fmt.Sprint(after) != fmt.Sprint(want) {
		t.Fatalf("after partial PUT:\n got %+v\nwant %+v", after, want)
	}

	// Explicit null is "leave alone", an explicit false is a change.
	f.do(http.MethodPut, "/admin/realms/acme", `{"displayName":null,"enabled":false}`).wantStatus(t, http.StatusNoContent)
	after, _ = f.srv.Realm("acme")
	if after.DisplayName != "Acme Corp" || after.Enabled || !after.RegistrationAllowed || after.SMTPServer["host"] != "mail" {
		t.Fatalf("after null/false PUT: %+v", after)
	}

	// Maps that are present are replaced, not merged.
	f.do(http.MethodPut, "/admin/realms/acme", map[string]any{"attributes": map[string]string{"region": "eu"}}).
		wantStatus(t, http.StatusNoContent)
	after, _ = f.srv.Realm("acme")
	if len(after.Attributes) != 1 || after.Attributes["region"] != "eu" {
		t.Fatalf("attributes = %v", after.Attributes)
	}

	t.Run("rename", func(t *testing.T) {
		f.createRealm("other", nil)
		f.do(http.MethodPut, "/admin/realms/acme", map[string]any{"realm": "other"}).
			wantError(t, http.StatusConflict, `{"errorMessage":"Realm with same name exists"}`)
		f.do(http.MethodPut, "/admin/realms/acme", map[string]any{"realm": "acme2"}).wantStatus(t, http.StatusNoContent)
		if _, ok := f.srv.Realm("acme"); ok {
			t.Fatal("old name still resolves")
		}
		if r, ok := f.srv.Realm("acme2"); !ok || r.ID != before.ID {
			t.Fatalf("renamed realm = %+v, %v", r, ok)
		}
	})
}

func TestRealmDeleteCascades(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", nil)
	f.createClient("acme", map[string]any{"clientId": "app"})
	f.createUser("acme", map[string]any{"username": "ann"})
	f.do(http.MethodPost, "/admin/realms/acme/roles", map[string]any{"name": "tenant-admin"}).wantStatus(t, http.StatusCreated)

	f.do(http.MethodDelete, "/admin/realms/acme", nil).wantStatus(t, http.StatusNoContent)
	f.do(http.MethodGet, "/admin/realms/acme", nil).wantError(t, http.StatusNotFound, `{"error":"Realm not found."}`)

	f.createRealm("acme", nil)
	if n := len(f.srv.Clients("acme")) + len(f.srv.Users("acme")); n != 0 {
		t.Fatalf("recreated realm kept %d clients/users", n)
	}
	for _, r := range f.srv.Roles("acme") {
		if r.Name == "tenant-admin" {
			t.Fatal("recreated realm kept role tenant-admin")
		}
	}
}

func TestDriftAndLogoutAll(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", nil)
	f.srv.SetRealmEnabled("acme", true)
	var r keycloakfake.Realm
	res := f.do(http.MethodGet, "/admin/realms/acme", nil)
	res.decode(t, &r)
	if !r.Enabled {
		t.Fatal("SetRealmEnabled not visible through the API")
	}

	for range 2 {
		res := f.do(http.MethodPost, "/admin/realms/acme/logout-all", nil)
		res.wantStatus(t, http.StatusOK)
		res.wantBody(t, `{}`)
	}
	f.do(http.MethodGet, "/admin/realms/acme/logout-all", nil).wantStatus(t, http.StatusMethodNotAllowed)
	if got := f.srv.LogoutAlls("acme"); got != 2 {
		t.Fatalf("LogoutAlls = %d, want 2", got)
	}
}

func TestClients(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", nil)
	id := f.createClient("acme", map[string]any{
		"clientId":     "app",
		"redirectUris": []string{"https://app/*"},
		"protocolMappers": []map[string]any{
			{"name": "tenant", "protocol": "openid-connect", "protocolMapper": "oidc-hardcoded-claim-mapper",
				"config": map[string]string{"claim.name": "tenant", "claim.value": "acme"}},
		},
	})
	f.createClient("acme", map[string]any{"clientId": "app-2", "publicClient": true})

	var c keycloakfake.Client
	f.get(t, "/admin/realms/acme/clients/"+id, &c)
	if c.ID != id || c.ClientID != "app" || !c.Enabled || c.Protocol != "openid-connect" || !c.StandardFlowEnabled {
		t.Fatalf("client defaults = %+v", c)
	}
	if len(c.ProtocolMappers) != 1 || c.ProtocolMappers[0].ID == "" || c.ProtocolMappers[0].Config["claim.value"] != "acme" {
		t.Fatalf("embedded mappers = %+v", c.ProtocolMappers)
	}

	wantLists(t, f, "list", "/admin/realms/acme/clients", func(c keycloakfake.Client) string { return c.ClientID }, []listCase{
		{"?clientId=app", []string{"app"}},
		{"?clientId=app-2", []string{"app-2"}},
		{"?clientId=ap", nil},
		{"?clientId=AP&search=true", []string{"app", "app-2"}},
		{"", []string{"app", "app-2"}},
		{"?first=1&max=5", []string{"app-2"}},
	})

	f.wantErrors(t, []errCase{
		{"duplicate", "POST", "/admin/realms/acme/clients", map[string]any{"clientId": "app"}, 409,
			`{"errorMessage":"Client app already exists"}`},
		{"no clientId", "POST", "/admin/realms/acme/clients", map[string]any{"name": "x"}, 400,
			`{"errorMessage":"Client ID is missing"}`},
		{"get unknown", "GET", "/admin/realms/acme/clients/nope", nil, 404, `{"error":"Could not find client"}`},
		{"put unknown", "PUT", "/admin/realms/acme/clients/nope", map[string]any{}, 404, `{"error":"Could not find client"}`},
		{"delete unknown", "DELETE", "/admin/realms/acme/clients/nope", nil, 404, `{"error":"Could not find client"}`},
		{"mappers of unknown", "GET", "/admin/realms/acme/clients/nope/protocol-mappers/models", nil, 404,
			`{"error":"Could not find client"}`},
		{"rename onto another", "PUT", "/admin/realms/acme/clients/" + id, map[string]any{"clientId": "app-2"}, 409,
			`{"errorMessage":"Client app-2 already exists"}`},
	})

	t.Run("PUT merges and leaves mappers alone", func(t *testing.T) {
		f.do(http.MethodPut, "/admin/realms/acme/clients/"+id, map[string]any{
			"webOrigins": []string{"https://app"}, "protocolMappers": []any{}, "attributes": map[string]string{"pkce.code.challenge.method": "S256"},
		}).wantStatus(t, http.StatusNoContent)
		var after keycloakfake.Client
		f.do(http.MethodGet, "/admin/realms/acme/clients/"+id, nil).decode(t, &after)
		if !slices.Equal(after.RedirectURIs, []string{"https://app/*"}) || !slices.Equal(after.WebOrigins, []string{"https://app"}) {
			t.Fatalf("uris after PUT = %v / %v", after.RedirectURIs, after.WebOrigins)
		}
		if !after.Enabled || after.Attributes["pkce.code.challenge.method"] != "S256" {
			t.Fatalf("client after PUT = %+v", after)
		}
		if len(after.ProtocolMappers) != 1 {
			t.Fatalf("PUT touched mappers: %+v", after.ProtocolMappers)
		}
	})

	t.Run("delete", func(t *testing.T) {
		f.do(http.MethodDelete, "/admin/realms/acme/clients/"+id, nil).wantStatus(t, http.StatusNoContent)
		f.do(http.MethodGet, "/admin/realms/acme/clients/"+id, nil).wantStatus(t, http.StatusNotFound)
	})
	f.wantCreates(t, "client", 2)
	if got := f.srv.Clients("acme"); len(got) != 1 || got[0].ClientID != "app-2" || !got[0].PublicClient {
		t.Fatalf("Clients = %+v", got)
	}
}

// TestServiceAccounts: a client with service accounts enabled gets a
// service-account user, which field searches find and other listings leave
// out, and which goes with the client; a client without answers 400.
func TestServiceAccounts(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", nil)
	bot := f.createClient("acme", map[string]any{"clientId": "Export-Bot", "serviceAccountsEnabled": true, "publicClient": false})
	app := f.createClient("acme", map[string]any{"clientId": "app"})

	var sa keycloakfake.User
	f.get(t, "/admin/realms/acme/clients/"+bot+"/service-account-user", &sa)
	if sa.ID == "" || sa.Username != "service-account-export-bot" || !sa.Enabled || sa.ServiceAccountClientID != "Export-Bot" {
		t.Fatalf("service account = %+v", sa)
	}
	// Keycloak shows service accounts to a search by field, not to an
	// unfiltered listing or a free-text search.
	for _, tc := range []struct {
		query string
		want  int
	}{{"", 0}, {"?search=service", 0}, {"?username=service-account", 1}, {"?username=service-account-export-bot&exact=true", 1}} {
		var users []keycloakfake.User
		f.get(t, "/admin/realms/acme/users"+tc.query, &users)
		var n int
		f.get(t, "/admin/realms/acme/users/count"+tc.query, &n)
		if len(users) != tc.want || n != tc.want {
			t.Errorf("users%s: %d listed, %d counted; want %d", tc.query, len(users), n, tc.want)
		}
	}
	f.wantErrors(t, []errCase{
		{"no service account", "GET", "/admin/realms/acme/clients/" + app + "/service-account-user", nil, 400,
			`{"errorMessage":"Service account not enabled for the client 'app'"}`},
	})
	// Enabling the flag later makes the account; the account's own URL
	// serves it like any user's.
	f.do(http.MethodPut, "/admin/realms/acme/clients/"+app, map[string]any{"serviceAccountsEnabled": true}).wantStatus(t, http.StatusNoContent)
	var later keycloakfake.User
	f.get(t, "/admin/realms/acme/clients/"+app+"/service-account-user", &later)
	f.do(http.MethodGet, "/admin/realms/acme/users/"+later.ID, nil).wantStatus(t, http.StatusOK)
	f.do(http.MethodDelete, "/admin/realms/acme/clients/"+bot, nil).wantStatus(t, http.StatusNoContent)
	f.do(http.MethodGet, "/admin/realms/acme/users/"+sa.ID, nil).wantStatus(t, http.StatusNotFound)
}

func TestProtocolMappers(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", nil)
	cid := f.createClient("acme", map[string]any{"clientId": "app"})
	base := "/admin/realms/acme/clients/" + cid + "/protocol-mappers/models"

	var empty []keycloakfake.ProtocolMapper
	f.get(t, base, &empty)
	if empty == nil || len(empty) != 0 {
		t.Fatalf("mappers of a new client = %#v, want []", empty)
	}

	mapper := map[string]any{"name": "aud", "protocol": "openid-connect", "protocolMapper": "oidc-audience-mapper",
		"config": map[string]string{"included.client.audience": "api", "access.token.claim": "true"}}
	mid := f.do(http.MethodPost, base, mapper).created(t, f.srv.URL(), base+"/")
	f.do(http.MethodPost, base, mapper).wantError(t, http.StatusConflict, `{"errorMessage":"Protocol mapper exists with same name"}`)
	f.do(http.MethodPost, base, map[string]any{"name": "typeless"}).
		wantError(t, http.StatusNotFound, `{"error":"ProtocolMapper provider not found"}`)

	// PUT replaces the mapper: a config key not resent is gone.
	f.do(http.MethodPut, base+"/"+mid, map[string]any{"name": "aud", "protocol": "openid-connect",
		"protocolMapper": "oidc-audience-mapper", "config": map[string]string{"included.client.audience": "api2"}}).
		wantStatus(t, http.StatusNoContent)
	var got keycloakfake.ProtocolMapper
	f.do(http.MethodGet, base+"/"+mid, nil).decode(t, &got)
	if got.ID != mid || len(got.Config) != 1 || got.Config["included.client.audience"] != "api2" {
		t.Fatalf("mapper after PUT = %+v", got)
	}

	f.do(http.MethodPut, base+"/nope", mapper).wantError(t, http.StatusNotFound, `{"error":"Model not found"}`)
	f.do(http.MethodDelete, base+"/"+mid, nil).wantStatus(t, http.StatusNoContent)
	f.do(http.MethodDelete, base+"/"+mid, nil).wantError(t, http.StatusNotFound, `{"error":"Model not found"}`)
	if cs := f.srv.Clients("acme"); len(cs[0].ProtocolMappers) != 0 {
		t.Fatalf("mapper survived delete: %+v", cs[0].ProtocolMappers)
	}
	f.wantCreates(t, "mapper", 1)
}

func TestRoles(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", nil)

	var names []string
	for _, r := range f.srv.Roles("acme") {
		names = append(names, r.Name)
	}
	if !slices.Equal(names, []string{"default-roles-acme", "offline_access", "uma_authorization"}) {
		t.Fatalf("roles of a new realm = %v", names)
	}

	name := f.do(http.MethodPost, "/admin/realms/acme/roles", map[string]any{"name": "tenant admin", "description": "Admins"}).
		created(t, f.srv.URL(), "/admin/realms/acme/roles/")
	if name != "tenant%20admin" {
		t.Fatalf("Location role segment = %q, want it path-escaped", name)
	}
	r := f.role("acme", "tenant admin")
	if r.ID == "" || r.Description != "Admins" || r.Composite {
		t.Fatalf("role = %+v", r)
	}

	f.wantErrors(t, []errCase{
		{"duplicate", "POST", "/admin/realms/acme/roles", map[string]any{"name": "tenant admin"}, 409,
			`{"errorMessage":"Role with name tenant admin already exists"}`},
		{"no name", "POST", "/admin/realms/acme/roles", map[string]any{"description": "x"}, 400,
			`{"errorMessage":"Role name is missing"}`},
		{"get unknown", "GET", "/admin/realms/acme/roles/ghost", nil, 404, `{"error":"Could not find role"}`},
	})

	var list []keycloakfake.Role
	f.do(http.MethodGet, "/admin/realms/acme/roles", nil).decode(t, &list)
	if len(list) != 4 || list[3].Name != "uma_authorization" {
		t.Fatalf("GET roles = %+v", list)
	}
	f.wantCreates(t, "role", 1)
}

func TestUsersCreateAndSearch(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", nil)
	id := f.createUser("acme", map[string]any{"username": "Ann.Admin", "email": "Ann@Example.com", "enabled": true})
	f.createUser("acme", map[string]any{"username": "annabel", "email": "bel@example.com"})
	f.createUser("acme", map[string]any{"username": "bob"})

	var u keycloakfake.User
	f.get(t, "/admin/realms/acme/users/"+id, &u)
	if u.Username != "ann.admin" || u.Email != "ann@example.com" || !u.Enabled {
		t.Fatalf("user = %+v", u)
	}
	if u.CreatedTimestamp != f.clock.Now().UnixMilli() {
		t.Fatalf("createdTimestamp = %d, want the injected clock's %d", u.CreatedTimestamp, f.clock.Now().UnixMilli())
	}

	f.wantErrors(t, []errCase{
		{"duplicate username differs in case", "POST", "/admin/realms/acme/users", map[string]any{"username": "ANN.ADMIN"}, 409,
			`{"errorMessage":"User exists with same username"}`},
		{"duplicate email", "POST", "/admin/realms/acme/users", map[string]any{"username": "x", "email": "ann@example.COM"}, 409,
			`{"errorMessage":"User exists with same email"}`},
		{"no username", "POST", "/admin/realms/acme/users", map[string]any{"email": "y@example.com"}, 400,
			`{"errorMessage":"User name is missing"}`},
		{"short inline password", "POST", "/admin/realms/acme/users",
			map[string]any{"username": "z", "credentials": []map[string]any{{"type": "password", "value": "short"}}}, 400,
			`{"error":"invalidPasswordMinLengthMessage","error_description":"Invalid password: minimum length 8."}`},
		{"get unknown", "GET", "/admin/realms/acme/users/nope", nil, 404, `{"error":"User not found"}`},
		{"put unknown", "PUT", "/admin/realms/acme/users/nope", map[string]any{"username": "q"}, 404, `{"error":"User not found"}`},
		{"delete unknown", "DELETE", "/admin/realms/acme/users/nope", nil, 404, `{"error":"User not found"}`},
	})

	wantLists(t, f, "search", "/admin/realms/acme/users", func(u keycloakfake.User) string { return u.Username }, []listCase{
		{"?username=ann&exact=true", nil},
		{"?username=ANN.ADMIN&exact=true", []string{"ann.admin"}},
		{"?username=ANN", []string{"ann.admin", "annabel"}},
		{"?email=ann@example.com&exact=true", []string{"ann.admin"}},
		{"?email=example.com", []string{"ann.admin", "annabel"}},
		{"?search=ann", []string{"ann.admin", "annabel"}},
		{"?search=nn", nil},
		{"?search=*nn*", []string{"ann.admin", "annabel"}},
		{"?enabled=true", []string{"ann.admin"}},
		{"?max=2", []string{"ann.admin", "annabel"}},
		{"", []string{"ann.admin", "annabel", "bob"}},
	})

	var count int
	f.do(http.MethodGet, "/admin/realms/acme/users/count?username=ann", nil).decode(t, &count)
	if count != 2 {
		t.Fatalf("count = %d, want 2", count)
	}
	f.wantCreates(t, "user", 3)

	f.do(http.MethodDelete, "/admin/realms/acme/users/"+id, nil).wantStatus(t, http.StatusNoContent)
	if n := len(f.srv.Users("acme")); n != 2 {
		t.Fatalf("Users after delete = %d, want 2", n)
	}
}

func TestUserPutReplaces(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", nil)
	id := f.createUser("acme", map[string]any{
		"username": "ann", "email": "ann@example.com", "firstName": "Ann", "enabled": true, "emailVerified": true,
		"requiredActions": []string{"VERIFY_EMAIL", "NOT_AN_ACTION"},
		"attributes":      map[string][]string{"tenant": {"acme"}},
	})
	orig := f.srv.Users("acme")[0]
	if !slices.Equal(orig.RequiredActions, []string{"VERIFY_EMAIL"}) {
		t.Fatalf("unknown required action not dropped: %v", orig.RequiredActions)
	}

	f.clock.Advance(time.Hour) // createdTimestamp must not follow the clock
	f.token = f.getToken()
	f.do(http.MethodPut, "/admin/realms/acme/users/"+id, map[string]any{"email": "ann@example.com", "lastName": "Admin"}).
		wantStatus(t, http.StatusNoContent)
	var got keycloakfake.User
	f.do(http.MethodGet, "/admin/realms/acme/users/"+id, nil).decode(t, &got)
	want := keycloakfake.User{
		ID: id, Username: "ann", Email: "ann@example.com", LastName: "Admin",
		RequiredActions: []string{}, CreatedTimestamp: orig.CreatedTimestamp,
	}
	if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
		t.Fatalf("after partial PUT:\n got %#v\nwant %#v", got, want)
	}

	// The pattern clients must use: GET, modify, PUT everything back.
	got.Enabled = true
	got.FirstName = "Ann"
	f.do(http.MethodPut, "/admin/realms/acme/users/"+id, got).wantStatus(t, http.StatusNoContent)
	var again keycloakfake.User
	f.do(http.MethodGet, "/admin/realms/acme/users/"+id, nil).decode(t, &again)
	if !again.Enabled || again.FirstName != "Ann" || again.LastName != "Admin" {
		t.Fatalf("after full PUT = %+v", again)
	}

	f.createUser("acme", map[string]any{"username": "bob", "email": "bob@example.com"})
	f.wantErrors(t, []errCase{
		{"username taken", "PUT", "/admin/realms/acme/users/" + id, map[string]any{"username": "bob"}, 409,
			`{"errorMessage":"User exists with same username"}`},
		{"email taken", "PUT", "/admin/realms/acme/users/" + id, map[string]any{"username": "ann", "email": "BOB@example.com"}, 409,
			`{"errorMessage":"User exists with same email"}`},
	})
	// A free username is accepted but not applied: editUsernameAllowed is off.
	f.do(http.MethodPut, "/admin/realms/acme/users/"+id, map[string]any{"username": "annie"}).wantStatus(t, http.StatusNoContent)
	f.do(http.MethodGet, "/admin/realms/acme/users/"+id, nil).decode(t, &again)
	if again.Username != "ann" {
		t.Fatalf("username changed to %q", again.Username)
	}
}

func TestRealmRoleMappings(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", nil)
	uid := f.createUser("acme", map[string]any{"username": "ann"})
	f.do(http.MethodPost, "/admin/realms/acme/roles", map[string]any{"name": "tenant-admin"}).wantStatus(t, http.StatusCreated)
	f.do(http.MethodPost, "/admin/realms/acme/roles", map[string]any{"name": "billing"}).wantStatus(t, http.StatusCreated)
	admin, billing := f.role("acme", "tenant-admin"), f.role("acme", "billing")
	path := "/admin/realms/acme/users/" + uid + "/role-mappings/realm"
	wantRoles := func(what string, want ...string) {
		t.Helper()
		if got := f.srv.UserRoles("acme", uid); !slices.Equal(got, want) {
			t.Fatalf("%s = %v", what, got)
		}
	}

	wantRoles("roles of a new user", "default-roles-acme")

	ref := func(r keycloakfake.Role) map[string]string { return map[string]string{"id": r.ID, "name": r.Name} }
	for range 2 { // the second POST proves it is idempotent
		f.do(http.MethodPost, path, []any{ref(admin), ref(billing)}).wantStatus(t, http.StatusNoContent)
	}
	wantRoles("UserRoles", "billing", "default-roles-acme", "tenant-admin")
	var mapped []keycloakfake.Role
	f.do(http.MethodGet, path, nil).decode(t, &mapped)
	if len(mapped) != 3 || mapped[2].ID != admin.ID {
		t.Fatalf("GET role-mappings = %+v", mapped)
	}

	f.do(http.MethodDelete, path, []any{ref(billing)}).wantStatus(t, http.StatusNoContent)
	wantRoles("UserRoles after delete", "default-roles-acme", "tenant-admin")

	notFound := `{"error":"Role not found"}`
	for _, tc := range []struct {
		name string
		body []any
	}{
		{"unknown role after a good one", []any{ref(billing), map[string]string{"id": "x", "name": "ghost"}}},
		{"name without id", []any{map[string]string{"name": "billing"}}},
		{"id with the wrong name", []any{map[string]string{"id": billing.ID, "name": "tenant-admin"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.do(http.MethodPost, path, tc.body).wantError(t, http.StatusNotFound, notFound)
			// The batch is validated before anything is applied.
			if got := f.srv.UserRoles("acme", uid); slices.Contains(got, "billing") {
				t.Fatalf("a refused batch was partly applied: %v", got)
			}
		})
	}
	f.do(http.MethodGet, "/admin/realms/acme/users/nope/role-mappings/realm", nil).
		wantError(t, http.StatusNotFound, `{"error":"User not found"}`)

	// Deleting a role removes it from the users holding it.
	f.do(http.MethodDelete, "/admin/realms/acme/roles/tenant-admin", nil).wantStatus(t, http.StatusNoContent)
	wantRoles("UserRoles after role delete", "default-roles-acme")
}

func TestResetPassword(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", nil)
	uid := f.createUser("acme", map[string]any{"username": "ann"})
	path := "/admin/realms/acme/users/" + uid + "/reset-password"

	if _, _, ok := f.srv.Password("acme", uid); ok {
		t.Fatal("a new user has a password")
	}
	for _, tc := range []struct {
		name string
		body any
		want string
	}{
		{"too short", map[string]any{"type": "password", "value": "1234567", "temporary": true},
			`{"error":"invalidPasswordMinLengthMessage","error_description":"Invalid password: minimum length 8."}`},
		{"no value", map[string]any{"type": "password"}, `{"error":"No password provided"}`},
		{"blank", map[string]any{"type": "password", "value": "   "}, `{"error":"Empty password not allowed"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.do(http.MethodPut, path, tc.body).wantError(t, http.StatusBadRequest, tc.want)
			if _, _, ok := f.srv.Password("acme", uid); ok {
				t.Fatal("a refused password was stored")
			}
		})
	}

	f.do(http.MethodPut, path, map[string]any{"type": "password", "value": "12345678", "temporary": true}).
		wantStatus(t, http.StatusNoContent)
	if v, tmp, ok := f.srv.Password("acme", uid); !ok || v != "12345678" || !tmp {
		t.Fatalf("Password = %q, %v, %v", v, tmp, ok)
	}
	if u := f.srv.Users("acme")[0]; !slices.Equal(u.RequiredActions, []string{"UPDATE_PASSWORD"}) {
		t.Fatalf("temporary password did not require UPDATE_PASSWORD: %v", u.RequiredActions)
	}

	f.do(http.MethodPut, path, map[string]any{"type": "password", "value": "correct horse", "temporary": false}).
		wantStatus(t, http.StatusNoContent)
	if v, tmp, ok := f.srv.Password("acme", uid); !ok || v != "correct horse" || tmp {
		t.Fatalf("Password = %q, %v, %v", v, tmp, ok)
	}
	if u := f.srv.Users("acme")[0]; len(u.RequiredActions) != 0 {
		t.Fatalf("permanent password left required actions %v", u.RequiredActions)
	}
	f.do(http.MethodGet, path, nil).wantStatus(t, http.StatusMethodNotAllowed)
}

func TestExecuteActionsEmail(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", nil)
	uid := f.createUser("acme", map[string]any{"username": "ann", "email": "ann@example.com", "enabled": true})
	noMail := f.createUser("acme", map[string]any{"username": "bob", "enabled": true})
	disabled := f.createUser("acme", map[string]any{"username": "cy", "email": "cy@example.com"})
	f.createClient("acme", map[string]any{"clientId": "app", "redirectUris": []string{"https://app/*"}})
	path := func(id string) string { return "/admin/realms/acme/users/" + id + "/execute-actions-email" }
	actions := []string{"VERIFY_EMAIL", "UPDATE_PASSWORD"}

	f.do(http.MethodPut, path(uid), actions).wantError(t, http.StatusInternalServerError,
		`{"errorMessage":"Failed to send execute actions email: Please provide a valid address"}`)

	f.do(http.MethodPut, "/admin/realms/acme", map[string]any{"smtpServer": map[string]string{"host": "smtp.example.com", "from": "no-reply@example.com"}}).
		wantStatus(t, http.StatusNoContent)

	f.wantErrors(t, []errCase{
		{"no email", "PUT", path(noMail), actions, 400, `{"errorMessage":"User email missing"}`},
		{"disabled user", "PUT", path(disabled), actions, 400, `{"errorMessage":"User is disabled"}`},
		{"unknown action", "PUT", path(uid), []string{"MAKE_COFFEE"}, 400, `{"errorMessage":"Provided invalid required actions"}`},
		{"redirect without client", "PUT", path(uid) + "?redirect_uri=https://app/x", actions, 400, `{"errorMessage":"Client id missing"}`},
		{"unknown client", "PUT", path(uid) + "?client_id=ghost", actions, 400, `{"errorMessage":"Client doesn't exist"}`},
		{"bad redirect", "PUT", path(uid) + "?client_id=app&redirect_uri=https://evil/", actions, 400, `{"errorMessage":"Invalid redirect uri."}`},
		{"unknown user", "PUT", path("nope"), actions, 404, `{"error":"User not found"}`},
	})

	f.do(http.MethodPut, path(uid)+"?client_id=app&redirect_uri=https://app/done&lifespan=3600", actions).wantStatus(t, http.StatusNoContent)
	f.do(http.MethodPut, path(uid), []string{"UPDATE_PASSWORD"}).wantStatus(t, http.StatusNoContent)
	got := f.srv.ActionEmails("acme", uid)
	if len(got) != 2 || !slices.Equal(got[0], actions) || !slices.Equal(got[1], []string{"UPDATE_PASSWORD"}) {
		t.Fatalf("ActionEmails = %v", got)
	}
	if n := len(f.srv.ActionEmails("acme", noMail)); n != 0 {
		t.Fatalf("a refused call was recorded %d times", n)
	}
}

func TestRouting(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", nil)
	noRoute := `{"errorMessage":"Unable to find matching target resource method"}`
	methodNotAllowed := `{"error":"HTTP 405 Method Not Allowed"}`
	for _, tc := range []struct {
		name, method, path string
		status             int
		want, allow        string
	}{
		{"unknown top-level path", "GET", "/nope", 404, noRoute, ""},
		{"unknown admin sub-resource", "GET", "/admin/realms/acme/components", 404, noRoute, ""},
		{"unknown path under a user", "GET", "/admin/realms/acme/users/count/extra", 404, `{"error":"User not found"}`, ""},
		{"PATCH a realm", "PATCH", "/admin/realms/acme", 405, methodNotAllowed, "GET, PUT, DELETE"},
		{"DELETE the realm collection", "DELETE", "/admin/realms", 405, methodNotAllowed, "GET, POST"},
		{"PUT a role collection", "PUT", "/admin/realms/acme/roles", 405, methodNotAllowed, "GET, POST"},
		// Like Keycloak's resource locators, the user is resolved before the method.
		{"POST reset-password of a missing user", "POST", "/admin/realms/acme/users/x/reset-password", 404,
			`{"error":"User not found"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.do(tc.method, tc.path, nil)
			res.wantError(t, tc.status, tc.want)
			if got := res.header.Get("Allow"); got != tc.allow {
				t.Fatalf("Allow = %q, want %q", got, tc.allow)
			}
		})
	}
}

func TestFaultStatusRetryAfterAndTimes(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", nil)
	f.srv.Inject(keycloakfake.Fault{Method: http.MethodGet, Path: "/admin/realms/*", Times: 2,
		Status: http.StatusServiceUnavailable, RetryAfter: 1500 * time.Millisecond})

	for i := range 2 {
		res := f.do(http.MethodGet, "/admin/realms/acme", nil)
		res.wantError(t, http.StatusServiceUnavailable, `{"errorMessage":"Service Unavailable"}`)
		if got := res.header.Get("Retry-After"); got != "2" {
			t.Fatalf("request %d: Retry-After = %q, want 2 (rounded up)", i, got)
		}
	}
	// Other methods and deeper paths never matched, and Times is now spent.
	f.do(http.MethodGet, "/admin/realms/acme/users", nil).wantStatus(t, http.StatusOK)
	f.do(http.MethodPut, "/admin/realms/acme", map[string]any{}).wantStatus(t, http.StatusNoContent)
	res := f.do(http.MethodGet, "/admin/realms/acme", nil)
	res.wantStatus(t, http.StatusOK)
	if res.header.Get("Retry-After") != "" {
		t.Fatal("Retry-After on a normal response")
	}
}

func TestFaultOrderAndClear(t *testing.T) {
	f := newFixture(t)
	f.srv.Inject(keycloakfake.Fault{Path: "/admin/realms/master", Times: 1, Status: http.StatusBadGateway})
	f.srv.Inject(keycloakfake.Fault{Status: http.StatusInternalServerError}) // any request, forever

	f.do(http.MethodGet, "/admin/realms/master", nil).wantStatus(t, http.StatusBadGateway)
	f.do(http.MethodGet, "/admin/realms/master", nil).wantStatus(t, http.StatusInternalServerError)
	f.do(http.MethodGet, "/admin/realms/master", nil).wantStatus(t, http.StatusInternalServerError)
	// The token endpoint is not special: a forever fault covers it too.
	f.form("/realms/master/protocol/openid-connect/token", url.Values{}).wantStatus(t, http.StatusInternalServerError)

	f.srv.ClearFaults()
	f.do(http.MethodGet, "/admin/realms/master", nil).wantStatus(t, http.StatusOK)
}

func TestFaultLatency(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", nil)
	const delay = 150 * time.Millisecond
	f.srv.Inject(keycloakfake.Fault{Method: http.MethodGet, Times: 1, Latency: delay})
	start := time.Now()
	f.do(http.MethodGet, "/admin/realms/acme", nil).wantStatus(t, http.StatusOK)
	if el := time.Since(start); el < delay {
		t.Fatalf("request took %v, want at least %v", el, delay)
	}

	t.Run("client gives up", func(t *testing.T) {
		f.srv.Inject(keycloakfake.Fault{Method: http.MethodPost, Times: 1, Latency: time.Minute})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := f.try(ctx, http.MethodPost, "/admin/realms/acme/users", f.token, map[string]any{"username": "late"})
		if err == nil {
			t.Fatal("expected the client's deadline to fail the request")
		}
		if el := time.Since(start); el > 10*time.Second {
			t.Fatalf("latency did not respect cancellation (%v)", el)
		}
		// The abandoned request is never handled; give the server a moment
		// to notice the closed connection, then confirm nothing was created.
		time.Sleep(100 * time.Millisecond)
		if n := len(f.srv.Users("acme")); n != 0 {
			t.Fatalf("abandoned request created %d users", n)
		}
	})
}

func TestFaultDrop(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", nil)
	f.srv.Inject(keycloakfake.Fault{Method: http.MethodPost, Path: "/admin/realms/*/users", Times: 1, Drop: true})

	_, err := f.try(context.Background(), http.MethodPost, "/admin/realms/acme/users", f.token, map[string]any{"username": "ann"})
	if err == nil {
		t.Fatal("a dropped connection produced a response")
	}
	if n := len(f.srv.Users("acme")); n != 0 || f.srv.Creates("user") != 0 {
		t.Fatalf("a request dropped before handling created %d users", n)
	}
	// Times was 1, so the retry goes through.
	f.createUser("acme", map[string]any{"username": "ann"})
}

func TestFaultAfterHandling(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault keycloakfake.Fault
	}{
		{"drop", keycloakfake.Fault{Drop: true}},
		{"status", keycloakfake.Fault{Status: http.StatusGatewayTimeout}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.createRealm("acme", nil)
			fault := tc.fault
			fault.Method, fault.Path, fault.Times, fault.AfterHandling = http.MethodPost, "/admin/realms/acme/users", 1, true
			f.srv.Inject(fault)

			res, err := f.try(context.Background(), http.MethodPost, "/admin/realms/acme/users", f.token, map[string]any{"username": "ann"})
			switch {
			case tc.fault.Drop && err == nil:
				t.Fatalf("dropped response arrived: %d %s", res.status, res.body)
			case !tc.fault.Drop && err != nil:
				t.Fatal(err)
			case !tc.fault.Drop:
				res.wantError(t, http.StatusGatewayTimeout, `{"errorMessage":"Gateway Timeout"}`)
				if res.header.Get("Location") != "" {
					t.Fatal("the lost response leaked its Location")
				}
			}
			// The server acted even though the client never learned of it.
			if users := f.srv.Users("acme"); len(users) != 1 || users[0].Username != "ann" {
				t.Fatalf("Users = %+v", users)
			}
			f.wantCreates(t, "user", 1)
			// A retry by the client now meets Keycloak's 409.
			f.do(http.MethodPost, "/admin/realms/acme/users", map[string]any{"username": "ann"}).
				wantError(t, http.StatusConflict, `{"errorMessage":"User exists with same username"}`)
		})
	}
}

func TestHook(t *testing.T) {
	f := newFixture(t)
	rec := faultinject.Record(f.srv.SetHook, func(r *http.Request) string { return r.Method + " " + r.URL.Path })
	f.srv.Inject(keycloakfake.Fault{Times: 1, Drop: true, Method: http.MethodPost})

	if _, err := f.try(context.Background(), http.MethodPost, "/admin/realms", f.token, map[string]any{"realm": "x"}); err == nil {
		t.Fatal("expected the drop")
	}
	f.do(http.MethodGet, "/admin/realms/master", nil).wantStatus(t, http.StatusOK)
	f.srv.SetHook(nil)
	f.do(http.MethodGet, "/admin/realms/master", nil).wantStatus(t, http.StatusOK)

	// The hook runs before faults, so it saw the dropped request too.
	if seen, want := rec.Seen(), []string{"POST /admin/realms", "GET /admin/realms/master"}; !slices.Equal(seen, want) {
		t.Fatalf("hook saw %v, want %v", seen, want)
	}
}

// TestHookStopsClientMidSaga shows the intended use of the hook: cancel the
// client's context when a given step is reached, so the steps after it never
// reach the server.
func TestHookStopsClientMidSaga(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.srv.SetHook(func(r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/roles") {
			cancel()
			// Answer only once the client has given up (it closes the
			// connection), or a fast answer could beat the cancellation.
			select {
			case <-r.Context().Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	})
	if _, err := f.try(ctx, http.MethodPost, "/admin/realms/acme/users", f.token, map[string]any{"username": "ann"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.try(ctx, http.MethodPost, "/admin/realms/acme/roles", f.token, map[string]any{"name": "r"}); err == nil {
		t.Fatal("the hook's cancel did not reach the client")
	}
	if _, err := f.try(ctx, http.MethodPost, "/admin/realms/acme/clients", f.token, map[string]any{"clientId": "c"}); err == nil {
		t.Fatal("the saga went on after cancellation")
	}
	if n := len(f.srv.Clients("acme")); n != 0 {
		t.Fatalf("clients = %d, want 0", n)
	}
}

func TestInspectionReturnsCopies(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", map[string]any{"attributes": map[string]string{"k": "v"}})
	r, _ := f.srv.Realm("acme")
	r.Attributes["k"] = "mutated"
	if again, _ := f.srv.Realm("acme"); again.Attributes["k"] != "v" {
		t.Fatal("Realm returned an alias of internal state")
	}
	for _, got := range []int{
		len(f.srv.Clients("ghost")), len(f.srv.Roles("ghost")), len(f.srv.Users("ghost")),
		len(f.srv.UserRoles("acme", "ghost")), len(f.srv.ActionEmails("acme", "ghost")), f.srv.LogoutAlls("ghost"),
	} {
		if got != 0 {
			t.Fatalf("inspection of a missing realm or user returned %d items", got)
		}
	}
}

// TestConcurrentUse is for -race: requests, inspection and fault injection
// all at once.
func TestConcurrentUse(t *testing.T) {
	f := newFixture(t)
	f.createRealm("acme", nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 5 {
				res, err := f.try(context.Background(), http.MethodPost, "/admin/realms/acme/users", f.token,
					map[string]any{"username": fmt.Sprintf("u%d-%d", i, j)})
				if err != nil || res.status != http.StatusCreated {
					t.Errorf("create: %v %d", err, res.status)
				}
				_ = f.srv.Users("acme")
				_ = f.srv.Creates("user")
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			f.srv.Inject(keycloakfake.Fault{Path: "/never", Times: 1})
			f.srv.SetRealmEnabled("acme", true)
			_ = f.srv.RealmNames()
		}
	})
	wg.Wait()
	f.wantCreates(t, "user", 40)
}
