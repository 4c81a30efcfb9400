package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/backoff"
	"github.com/tenancyhq/tenancy/internal/httpapi"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/projection"
	"github.com/tenancyhq/tenancy/internal/run/api"
	"github.com/tenancyhq/tenancy/internal/run/boot"
	"github.com/tenancyhq/tenancy/internal/run/projector"
	"github.com/tenancyhq/tenancy/internal/run/provisioner"
	"github.com/tenancyhq/tenancy/internal/saga"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/internal/testrig"
)

var (
	specOnce   sync.Once
	specRouter routers.Router
	specDoc    *openapi3.T
	specErr    error
)

// spec loads openapi.yaml once; every response the tests see is checked
// against it.
func spec(t testing.TB) (*openapi3.T, routers.Router) {
	t.Helper()
	specOnce.Do(func() {
		openapi3filter.RegisterBodyDecoder(httpapi.ProblemContentType, openapi3filter.JSONBodyDecoder)
		openapi3filter.RegisterBodyDecoder("application/jwk-set+json", openapi3filter.JSONBodyDecoder)
		openapi3filter.RegisterBodyDecoder("application/merge-patch+json", openapi3filter.JSONBodyDecoder)
		openapi3filter.RegisterBodyDecoder("application/openmetrics-text", func(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
			b, err := io.ReadAll(body)
			return string(b), err
		})
		loader := openapi3.NewLoader()
		specDoc, specErr = loader.LoadFromFile(filepath.Join("..", "..", "openapi.yaml"))
		if specErr != nil {
			return
		}
		if specErr = specDoc.Validate(context.Background()); specErr != nil {
			return
		}
		specDoc.Servers = nil
		specRouter, specErr = gorillamux.NewRouter(specDoc)
	})
	if specErr != nil {
		t.Fatalf("openapi.yaml: %v", specErr)
	}
	return specDoc, specRouter
}

type harness struct {
	srv    *httptest.Server
	core   *boot.Core
	api    *api.API
	rs     *boot.ReadSide
	issuer *auth.DevIssuer
	admin  string
	nats   *testenv.NATS
	// realms are stand-ins for tenants' Keycloak realms, each an issuer
	// with a key of its own.
	realms *realmIssuers
}

// realmIssuers serves one dev issuer per realm under /realms/<realm>.
type realmIssuers struct {
	base    string
	mu      sync.Mutex
	issuers map[string]*auth.DevIssuer
}

// issuer returns realm's issuer, making it (and its key) on first use.
func (r *realmIssuers) issuer(realm string) *auth.DevIssuer {
	r.mu.Lock()
	defer r.mu.Unlock()
	if is, ok := r.issuers[realm]; ok {
		return is
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	is := auth.NewDevIssuer(r.base+"/realms/"+realm, "account", key)
	r.issuers[realm] = is
	return is
}

func (r *realmIssuers) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	realm, _, _ := strings.Cut(strings.TrimPrefix(req.URL.Path, "/realms/"), "/")
	r.issuer(realm).Handler().ServeHTTP(w, req)
}

type options struct {
	provisioner bool
	// integrations are the provisioner's (and the admin password route's).
	integrations saga.Integrations
	// projections runs the read side's projections.
	projections bool
	readWait    time.Duration
	// logs, when set, receives every service's JSON log lines.
	logs io.Writer
	// customerPolicy keeps the default catalog's customer policy (the
	// standard plan activates only tenants of a verified customer);
	// bootstrap makes the root customer and the platform tenants.
	customerPolicy, bootstrap bool
	// compliance runs the provisioner's compliance reactor and timers,
	// with this re-KYC grace period.
	compliance time.Duration
	// realms makes the API accept tokens of tenants' own realms, served by
	// h.realms under /realms/<slug>.
	realms bool
}

func newHarness(t testing.TB, o options) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	_, issuerKey, _ := ed25519.GenerateKey(rand.Reader)
	ro := testrig.Options{Database: true, CustomerPolicy: o.customerPolicy, RekycGrace: o.compliance}
	if o.logs != nil {
		ro.Log = logging.New(o.logs, "test", logging.ParseLevel("debug"))
	}
	if o.integrations.Keycloak != nil {
		ro.Accounts = o.integrations.Keycloak
	}
	r := testrig.New(t, ro)
	core, rs, n := r.Core, r.ReadSide, r.NATS
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	issuer := auth.NewDevIssuer(base+auth.DevIssuerPath, "tenancy", issuerKey)
	ac := auth.Config{IssuerURL: issuer.Issuer(), Audience: "tenancy"}
	realms := &realmIssuers{base: base, issuers: map[string]*auth.DevIssuer{}}
	if o.realms {
		ac.RealmIssuerBase, ac.Realms, ac.RealmClientID = base, core.Tenants, "tenancy-app"
	}
	authn, err := auth.New(ac)
	if err != nil {
		t.Fatal(err)
	}
	ao := api.Options{Auth: authn, BodyLimit: 64 << 10, Mounts: map[string]http.Handler{auth.DevIssuerPath: issuer.Handler(), "/realms": realms},
		ReadSide: rs, ReadWait: o.readWait}
	if o.bootstrap {
		ao.Bootstrap = &app.BootstrapOptions{AdminEmail: "root-admin@platform.test"}
	}
	a, err := api.New(ctx, core, ao)
	if err != nil {
		t.Fatal(err)
	}
	var workers sync.WaitGroup
	workers.Add(1)
	go func() { defer workers.Done(); _ = a.Run(ctx) }()
	if o.projections {
		workers.Add(1)
		go func() { defer workers.Done(); _ = projector.Run(ctx, r.Projections()) }()
	}
	t.Cleanup(func() { cancel(); workers.Wait() })
	srv.Config.Handler = a.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	h := &harness{srv: srv, core: core, api: a, rs: rs, issuer: issuer, nats: n, realms: realms}
	if o.projections {
		h.awaitReadModels(t)
	}
	h.admin = h.token(t, auth.TokenRequest{Subject: "admin-1", Roles: []string{auth.RolePlatformAdmin}})
	if o.provisioner {
		po := provisioner.Options{Integrations: o.integrations, Backoff: saga.Backoff{Attempts: 3, Pause: backoff.Policy{Base: time.Millisecond, Max: 10 * time.Millisecond}}, RetryDelay: 100 * time.Millisecond}
		if o.compliance > 0 {
			po.ReadSide, po.ComplianceSweep = rs, 200*time.Millisecond
		}
		w, err := provisioner.New(ctx, core, po)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { defer close(done); _ = w.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	return h
}

// awaitReadModels waits until every projection has built its first
// generation: before that, read-model queries answer 503.
func (h *harness) awaitReadModels(t testing.TB) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var live int
		if err := h.rs.Pool.QueryRow(context.Background(), "SELECT count(*) FROM projection_state WHERE generation > 0").Scan(&live); err != nil {
			t.Fatal(err)
		}
		if live >= len(projection.All()) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d read models built in 30s", live, len(projection.All()))
		}
	}
}

func (h *harness) token(t testing.TB, req auth.TokenRequest) string {
	t.Helper()
	tok, err := h.issuer.Mint(req, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

// req describes one request.
type req struct {
	method, path, token string
	body                any // string (sent verbatim), []byte, or a value encoded as JSON
	contentType         string
	header              map[string]string
}

// do sends a request and checks the response against openapi.yaml.
func (h *harness) do(t testing.TB, r req) response {
	t.Helper()
	var body []byte
	switch b := r.body.(type) {
	case nil:
	case string:
		body = []byte(b)
	case []byte:
		body = b
	default:
		var err error
		if body, err = json.Marshal(b); err != nil {
			t.Fatal(err)
		}
	}
	hreq, err := http.NewRequest(r.method, h.srv.URL+r.path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		ct := r.contentType
		if ct == "" {
			ct = "application/json"
		}
		hreq.Header.Set("Content-Type", ct)
	}
	if r.token != "" {
		hreq.Header.Set("Authorization", "Bearer "+r.token)
	}
	for k, v := range r.header {
		hreq.Header.Set(k, v)
	}
	hresp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer hresp.Body.Close()
	respBody, err := io.ReadAll(hresp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := response{Status: hresp.StatusCode, Header: hresp.Header, Body: respBody}
	if hresp.StatusCode >= 500 && hresp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("%s %s answered %d: %s", r.method, r.path, hresp.StatusCode, respBody)
	}
	if hresp.StatusCode >= 400 && !strings.HasPrefix(hresp.Header.Get("Content-Type"), httpapi.ProblemContentType) {
		t.Errorf("%s %s: error %d with Content-Type %q, want %s", r.method, r.path, hresp.StatusCode, hresp.Header.Get("Content-Type"), httpapi.ProblemContentType)
	}
	h.checkSpec(t, hreq, body, out)
	return out
}

func (h *harness) checkSpec(t testing.TB, hreq *http.Request, reqBody []byte, out response) {
	t.Helper()
	_, router := spec(t)
	vreq := hreq.Clone(context.Background())
	vreq.URL.Scheme, vreq.URL.Host = "", ""
	vreq.Host = ""
	vreq.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := router.FindRoute(vreq)
	if err != nil {
		if out.Status == http.StatusNotFound || out.Status == http.StatusMethodNotAllowed {
			return // a route the API does not have either
		}
		t.Errorf("openapi.yaml has no route for %s %s (answered %d)", hreq.Method, hreq.URL.Path, out.Status)
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}},
		Status: out.Status, Header: out.Header, Body: io.NopCloser(bytes.NewReader(out.Body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s -> %d does not match openapi.yaml: %v\nbody: %s", hreq.Method, hreq.URL.Path, out.Status, err, out.Body)
	}
}

// lastSeq is the event stream's last sequence.
func (h *harness) lastSeq(t testing.TB) uint64 {
	t.Helper()
	seq, err := h.core.Store.LastSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// waitFor polls the tenant until cond holds (the provisioner works in the
// background), failing after d.
func (h *harness) waitFor(t testing.TB, id string, d time.Duration, cond func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		r := h.do(t, req{method: "GET", path: "/v1/tenants/" + id, token: h.admin})
		m := r.json(t)
		if cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("tenant %s did not reach the expected state within %s: %s", id, d, r.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tokenFor(role, tenant string) auth.TokenRequest {
	return auth.TokenRequest{Subject: "user-" + role, Roles: []string{role}, TenantID: tenant}
}
