// Package systest runs Tenancy as users deploy it: a three-node JetStream
// cluster built from the nats-server version in go.mod, and every service as
// its own processes (two of each), under a scripted workload while a NATS
// node and one instance of each service are killed and brought back.
package systest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/billing/billingfake"
	"github.com/tenancyhq/tenancy/internal/catalog"
	"github.com/tenancyhq/tenancy/internal/keycloak/keycloakfake"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/run/boot"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/internal/testrig"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// TestClusterSurvivesNodeAndInstanceLoss is the system test: three NATS
// nodes, two API instances, two projectors, two provisioners and two
// webhookers, each a process; tenants are created, activated, suspended and
// resumed while two webhook subscribers (one flaky) receive the log. Midway
// the stream's leader node and one instance of every service are killed
// with SIGKILL and restarted. Afterwards every acknowledged command must be
// in the log, the log must verify, the read model must equal a fresh
// replay, every subscriber must have every event in order, and every saga
// must have finished with its effects in Keycloak and billing.
func TestClusterSurvivesNodeAndInstanceLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and starts a cluster of processes")
	}
	ctx := testenv.Context(t, 12*time.Minute)
	bin := buildBinaries(t)
	logDir := t.TempDir()
	cl := startCluster(t, bin, logDir, 3)
	t.Logf("3-node JetStream cluster up: %s", cl.URL())

	// External systems: fakes that follow Keycloak's and billing's
	// contracts, and an OIDC issuer for operator tokens.
	kc := keycloakfake.New(keycloakfake.Options{ClientID: "tenancy-provisioner", ClientSecret: "kc-secret"})
	t.Cleanup(kc.Close)
	bf := billingfake.New(billingfake.Options{Token: "billing-token"})
	t.Cleanup(bf.Close)
	_, issKey, _ := ed25519.GenerateKey(rand.Reader)
	issMux := http.NewServeMux()
	issSrv := httptest.NewServer(issMux)
	t.Cleanup(issSrv.Close)
	iss := auth.NewDevIssuer(issSrv.URL+auth.DevIssuerPath, "tenancy", issKey)
	issMux.Handle("/", iss.Handler())
	token, err := iss.Mint(auth.TokenRequest{Subject: "systest", Roles: []string{auth.RolePlatformAdmin}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	_, signKey, _ := ed25519.GenerateKey(rand.Reader)
	master := make([]byte, 32)
	_, _ = rand.Read(master)
	dbURL := testenv.NewDatabase(t)
	common := append(os.Environ(), "NATS_URL="+cl.URL(), "NATS_USER=tenancy", "NATS_PASSWORD="+cl.Service, "TENANCY_REPLICAS=3", "DATABASE_URL="+dbURL, "LOG_LEVEL=info",
		"TENANCY_SIGNING_KEY="+base64.RawURLEncoding.EncodeToString(signKey.Seed()), "TENANCY_MASTER_KEY="+base64.RawURLEncoding.EncodeToString(master),
		"WEBHOOK_ALLOW_CIDRS=127.0.0.0/8", "WEBHOOK_ALLOW_HTTP=true", "WEBHOOK_TIMEOUT=2s",
		// Enough quick attempts that the flaky subscriber never dead-letters.
		"WEBHOOK_RETRY_SCHEDULE=0s,50ms,100ms,200ms,300ms,500ms,500ms,1s,1s,1s,1s,1s,2s,2s,2s,2s,2s,2s,2s,2s",
		"KEYCLOAK_URL="+kc.URL(), "KEYCLOAK_CLIENT_ID=tenancy-provisioner", "KEYCLOAK_CLIENT_SECRET=kc-secret",
		"BILLING_URL="+bf.URL(), "BILLING_TOKEN=billing-token", "OIDC_ISSUER_URL="+iss.Issuer())

	ports := freePorts(t, 8)
	type svc struct {
		p    *proc
		addr string
	}
	var svcs []svc
	for i, name := range []string{"api-1", "api-2", "projector-1", "projector-2", "provisioner-1", "provisioner-2", "webhooker-1", "webhooker-2"} {
		addr := "127.0.0.1:" + strconv.Itoa(ports[i])
		kind, _, _ := strings.Cut(name, "-")
		var args []string
		if kind == "projector" {
			args = []string{"run"}
		}
		svcs = append(svcs, svc{newProc(t, logDir, name, filepath.Join(bin, kind), append(slices.Clone(common), "TENANCY_HTTP_ADDR="+addr), args...), addr})
	}
	for _, s := range svcs {
		s.p.start(t)
	}
	for _, s := range svcs {
		waitReady(t, s.p, "http://"+s.addr+"/readyz", 60*time.Second)
	}
	t.Cleanup(func() {
		if t.Failed() {
			// The temporary directory goes with the test: keep the logs.
			keep := filepath.Join(os.TempDir(), fmt.Sprintf("tenancy-systest-logs-%d", time.Now().Unix()))
			if err := os.CopyFS(keep, os.DirFS(logDir)); err == nil {
				t.Logf("every process's log is kept in %s", keep)
			}
			for _, p := range append(slices.Clone(cl.nodes), func() []*proc {
				var ps []*proc
				for _, s := range svcs {
					ps = append(ps, s.p)
				}
				return ps
			}()...) {
				t.Logf("--- %s (end of log)\n%s", p.name, p.tail(3000))
			}
		}
	})
	t.Log("2 API instances, 2 projectors, 2 provisioners and 2 webhookers are ready")
	api := &apiClient{urls: []string{"http://" + svcs[0].addr, "http://" + svcs[1].addr}, token: token, client: &http.Client{Timeout: 5 * time.Second}}

	// Subscribers: one reliable, one that fails a third of the time.
	steady, flaky := newReceiver(t, nil), newReceiver(t, func(n int) bool { return n%3 == 0 })
	for _, rc := range []*receiver{steady, flaky} {
		status, h, body, err := api.command(ctx, "POST", "/v1/webhooks", `{"url":"`+rc.srv.URL+`/hook","event_types":["tenancy.tenant.*"]}`, "")
		if err != nil || status != http.StatusCreated {
			t.Fatalf("create webhook: %d %v %s", status, err, body)
		}
		// Deliveries start after the subscription: bootstrap's platform
		// tenants' earlier events are not its.
		if rc.from, err = strconv.ParseUint(h.Get("Tenancy-Sequence"), 10, 64); err != nil {
			t.Fatalf("the webhook's Tenancy-Sequence: %v", err)
		}
		var w struct {
			Secret string `json:"secret"`
		}
		if err := json.Unmarshal(body, &w); err != nil || w.Secret == "" {
			t.Fatalf("no secret in the create answer: %s", body)
		}
		rc.setSecret(t, w.Secret)
	}

	// The workload.
	// Stopping the load lets every command in flight finish: a command
	// whose answer was cut off would leave its outcome unknown.
	wl := &workload{api: api, tenants: map[string]*tenantRec{}, customer: verifiedCustomer(t, ctx, api)}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(2)
		go func() { defer wg.Done(); wl.run(ctx, w) }()
		go func() { defer wg.Done(); wl.edit(ctx, w) }()
	}
	stopLoad := func() { wl.stopped.Store(true) }
	time.Sleep(8 * time.Second)

	// Kill the stream's leader node and one instance of every service.
	nc, err := nats.Connect(cl.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.UserInfo("tenancy", cl.Service))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	victim := 0
	if st, err := js.Stream(ctx, "TENANCY"); err == nil && st.CachedInfo().Cluster != nil {
		for i, n := range cl.nodes {
			if n.name == st.CachedInfo().Cluster.Leader {
				victim = i
			}
		}
	}
	before := wl.acked()
	killed := []*proc{cl.nodes[victim], svcs[0].p, svcs[2].p, svcs[4].p, svcs[6].p}
	for _, p := range killed {
		p.kill()
	}
	names := make([]string, len(killed))
	for i, p := range killed {
		names[i] = p.name
	}
	t.Logf("after %d acknowledged commands, killed with SIGKILL: %s (%s was the TENANCY stream leader)", before, strings.Join(names, ", "), cl.nodes[victim].name)
	// The survivors must take over while the victims stay down: wait for
	// the first acknowledgements (JetStream elects new leaders within
	// seconds), then keep the victims down a little longer under load.
	killedAt := time.Now()
	var tookOver time.Duration
	for deadline := killedAt.Add(60 * time.Second); wl.acked() < before+20; {
		if time.Now().After(deadline) {
			t.Fatalf("only %d commands acknowledged in the 60 s after the kill: the surviving instances did not take over", wl.acked()-before)
		}
		time.Sleep(50 * time.Millisecond)
	}
	tookOver = time.Since(killedAt)
	time.Sleep(3 * time.Second)
	during := wl.acked() - before
	for _, p := range killed {
		p.start(t)
	}
	cl.waitHealthy(t, victim, 90*time.Second)
	for _, i := range []int{0, 2, 4, 6} {
		waitReady(t, svcs[i].p, "http://"+svcs[i].addr+"/readyz", 90*time.Second)
	}
	t.Logf("the survivors took over: 20 commands acknowledged %s after the kill, %d before the restart; all restarted", tookOver.Round(100*time.Millisecond), during)
	time.Sleep(6 * time.Second)
	stopLoad()
	wg.Wait()

	acks, recs := wl.snapshot()
	if len(acks) < 40 {
		t.Fatalf("only %d commands acknowledged: the workload did not run", len(acks))
	}
	t.Logf("workload done: %d acknowledged commands on %d tenants", len(acks), len(recs))
	core, err := boot.OpenCore(ctx, nc, js, boot.CoreOptions{Stream: "TENANCY", Replicas: 3, SigningKey: signKey, MasterKey: master,
		Catalog: mustCatalog(t), Log: logging.Discard()})
	if err != nil {
		t.Fatal(err)
	}

	// 1. Every acknowledged command is in the log, at the sequence the API
	// answered with.
	for _, a := range acks {
		m, err := core.Store.Get(ctx, a.seq)
		if err != nil {
			t.Fatalf("acknowledged %s on %s (seq %d) is not in the log: %v", a.what, a.tenant, a.seq, err)
		}
		env, err := events.Parse(m.Data)
		if err != nil {
			t.Fatalf("seq %d: %v", a.seq, err)
		}
		if _, _, agg, _ := events.ParseSubject(m.Subject); agg != a.tenant || env.AggVersion != a.version {
			t.Fatalf("seq %d holds %s v%d, but %s on %s v%d was acknowledged there", a.seq, m.Subject, env.AggVersion, a.what, a.tenant, a.version)
		}
	}
	t.Logf("verified: all %d acknowledged commands are in the log where the API said", len(acks))

	// 2. Every saga finished, with its effects in Keycloak and billing.
	sagas, uncertain := 0, 0
	for id, r := range recs {
		if r.want == "draft" && !r.uncertain {
			continue
		}
		tn := waitTenant(t, api, id, 120*time.Second, func(tn tenantView) bool {
			if tn.State == "draft" {
				return r.uncertain
			}
			return (r.uncertain || tn.State == r.want) && tn.Provisioning != nil && tn.Provisioning.Status == "completed"
		})
		if tn.State == "draft" {
			continue
		}
		sagas++
		if r.uncertain {
			uncertain++
		}
		realm, ok := kc.Realm(r.slug)
		if !ok || realm.Enabled != (tn.State == "active") {
			t.Fatalf("tenant %s is %s but its realm exists=%v enabled=%v", r.slug, tn.State, ok, realm.Enabled)
		}
		acct, ok := bf.Account(id)
		wantStatus := map[string]string{"active": "active", "suspended": "paused"}[tn.State]
		if !ok || acct.Status != wantStatus {
			t.Fatalf("tenant %s is %s but its billing account exists=%v status=%q", r.slug, tn.State, ok, acct.Status)
		}
	}
	t.Logf("verified: %d tenants' sagas completed; realms and billing accounts match their states (%d tenants had a command whose answer was lost: checked against the state they reached)", sagas, uncertain)

	// 3. The log verifies (signatures, versions, hash chains), read by the
	// read-only user, which cannot write to it; nobody else gets in.
	reader := append(slices.Clone(common), "NATS_USER=reader", "NATS_PASSWORD="+cl.Reader, "NATS_INBOX_PREFIX=_INBOX_reader")
	out, err := runCLI(ctx, bin, reader, "verify")
	if err != nil || !strings.Contains(out, "OK:") {
		t.Fatalf("tenancy verify: %v\n%s", err, out)
	}
	t.Logf("verified: %s", strings.TrimSpace(out[strings.Index(out, "OK:"):]))
	checkPermissions(t, ctx, cl)

	// 4. Every subscriber has every tenant event, in log order.
	for name, rc := range map[string]*receiver{"steady": steady, "flaky": flaky} {
		want := tenantEventIDs(t, ctx, core, rc.from+1)
		got := rc.waitAll(t, want, 120*time.Second)
		if !slices.Equal(got, want) {
			t.Fatalf("%s subscriber: deliveries out of order or missing (%d delivered, %d in the log)", name, len(got), len(want))
		}
		t.Logf("verified: %s subscriber received all %d tenant events in log order (%d requests, %d refused on purpose)", name, len(want), rc.calls.Load(), rc.refused.Load())
	}

	// 5. The read model equals a fresh replay of the log.
	compareWithReplay(t, ctx, core, dbURL)
}

type ack struct {
	tenant  string
	what    string
	version int64
	seq     uint64
}

type tenantRec struct {
	slug string
	// want is the state the acknowledged commands lead to.
	want string
	// uncertain is set when a command on the tenant got no answer: it may
	// or may not have been applied, so want is unknown.
	uncertain bool
}

// workload creates, activates, suspends and resumes tenants through the API.
type workload struct {
	api *apiClient
	// customer owns the workload's tenants: a verified business, as the
	// standard plan asks.
	customer string
	stopped  atomic.Bool
	mu       sync.Mutex
	acks     []ack
	tenants  map[string]*tenantRec
}

func (w *workload) acked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acks)
}

func (w *workload) snapshot() ([]ack, map[string]*tenantRec) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acks), w.tenants
}

func (w *workload) record(a ack, slug, want string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.acks = append(w.acks, a)
	r := w.tenants[a.tenant]
	if r == nil {
		r = &tenantRec{slug: slug}
		w.tenants[a.tenant] = r
	}
	r.want = want
}

// do runs one command and records it if acknowledged.
func (w *workload) do(ctx context.Context, id, slug, what, method, path, body, want string) (string, bool) {
	status, h, resp, err := w.api.command(ctx, method, path, body, what+"-"+slug)
	if err != nil || status < 200 || status > 299 {
		if id != "" && err != nil {
			w.mu.Lock()
			if r := w.tenants[id]; r != nil {
				r.uncertain = true
			}
			w.mu.Unlock()
		}
		return "", false
	}
	var v struct {
		ID      string `json:"id"`
		Version int64  `json:"version"`
	}
	seq, serr := strconv.ParseUint(h.Get("Tenancy-Sequence"), 10, 64)
	if json.Unmarshal(resp, &v) != nil || serr != nil {
		return "", false
	}
	if id == "" {
		id = v.ID
	}
	w.record(ack{tenant: id, what: what, version: v.Version, seq: seq}, slug, want)
	return id, true
}

// edit creates tenants and changes their labels: commands that need no
// saga, so that their rate shows the command path's availability.
func (w *workload) edit(ctx context.Context, worker int) {
	for i := 0; ctx.Err() == nil && !w.stopped.Load(); i++ {
		slug := fmt.Sprintf("edit-%d-%d", worker, i)
		id, ok := w.do(ctx, "", slug, "create", "POST", "/v1/tenants",
			`{"slug":"`+slug+`","display_name":"Edit `+slug+`","plan":"standard","regions":{"allowed":["eu-west-1"],"preferred":"eu-west-1"},"isolation":"shared","contacts":[{"role":"technical","name":"T","email":"t@`+slug+`.test"}]}`, "draft")
		for j := 0; ok && j < 5 && !w.stopped.Load(); j++ {
			_, ok = w.do(ctx, id, slug, fmt.Sprintf("patch%d", j), "PATCH", "/v1/tenants/"+id, fmt.Sprintf(`{"labels":{"n":"%d"}}`, j), "draft")
		}
	}
}

// verifiedCustomer creates a business customer through the API and
// records its KYB as completed, as the standard plan asks before activation.
func verifiedCustomer(t *testing.T, ctx context.Context, api *apiClient) string {
	t.Helper()
	status, _, body, err := api.command(ctx, "POST", "/v1/customers",
		`{"kind":"business","legal_name":"System Test Pvt Ltd","display_name":"System Test","fiscal_ids":{"pan":"AAACS1234A"},"address":{"line1":"1 MG Road","city":"Bengaluru","country":"IN"}}`, "customer")
	var c struct {
		ID string `json:"id"`
	}
	if err != nil || status != http.StatusCreated || json.Unmarshal(body, &c) != nil {
		t.Fatalf("creating the workload's customer: %d %v %s", status, err, body)
	}
	status, _, body, err = api.command(ctx, "POST", "/v1/customers/"+c.ID+"/verification", `{"status":"completed","evidence":[{"kind":"certificate-of-incorporation","reference":"dms://kyb/1"}]}`, "verify")
	if err != nil || status != http.StatusOK {
		t.Fatalf("verifying the workload's customer: %d %v %s", status, err, body)
	}
	return c.ID
}

// run takes tenants through their lifecycle: create, activate (a saga),
// suspend and, for every other tenant, resume.
func (w *workload) run(ctx context.Context, worker int) {
	for i := 0; ctx.Err() == nil && !w.stopped.Load(); i++ {
		slug := fmt.Sprintf("sys-%d-%d", worker, i)
		id, ok := w.do(ctx, "", slug, "create", "POST", "/v1/tenants",
			`{"slug":"`+slug+`","display_name":"System `+slug+`","plan":"standard","regions":{"allowed":["eu-west-1"],"preferred":"eu-west-1"},"isolation":"shared","customer_id":"`+w.customer+`","contacts":[{"role":"technical","name":"T","email":"t@`+slug+`.test"}]}`, "draft")
		if !ok {
			continue
		}
		if _, ok := w.do(ctx, id, slug, "activate", "POST", "/v1/tenants/"+id+"/activate", `{"admin":{"email":"admin@`+slug+`.test","name":"Ada Admin"}}`, "active"); !ok {
			continue
		}
		// Suspending needs the activation saga to have finished.
		if !w.api.await(ctx, id, 20*time.Second, func(tn tenantView) bool { return tn.State == "active" }) || w.stopped.Load() {
			continue
		}
		if _, ok := w.do(ctx, id, slug, "suspend", "POST", "/v1/tenants/"+id+"/suspend", `{"reason":"payment"}`, "suspended"); !ok || i%2 == 1 || w.stopped.Load() {
			continue
		}
		w.do(ctx, id, slug, "resume", "POST", "/v1/tenants/"+id+"/resume", "", "active")
	}
}

// apiClient calls the API instances in turn, moving to the next one when
// an instance is unreachable or unavailable, with one Idempotency-Key per
// command so that a retry never does the command twice.
type apiClient struct {
	urls   []string
	token  string
	client *http.Client
	next   atomic.Uint64
}

func (a *apiClient) call(ctx context.Context, base, method, path, body, key string) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	switch {
	case method == "PATCH":
		req.Header.Set("Content-Type", "application/merge-patch+json")
	case body != "":
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// command sends a command until an instance decides it (any answer below
// 500 but 429) or 30 seconds pass.
func (a *apiClient) command(ctx context.Context, method, path, body, key string) (int, http.Header, []byte, error) {
	start := a.next.Add(1)
	// Longer than idempotency.PendingTimeout, after which a key held by a
	// dead instance is taken over.
	deadline := time.Now().Add(90 * time.Second)
	for i := uint64(0); ; i++ {
		status, h, b, err := a.call(ctx, a.urls[(start+i)%uint64(len(a.urls))], method, path, body, key)
		// A 409 with Retry-After is this key's request still running (or
		// held by an instance that died): retry; other answers below 500
		// are decisions.
		retry := status >= 500 || status == http.StatusTooManyRequests || (status == http.StatusConflict && h.Get("Retry-After") != "")
		if err == nil && !retry {
			return status, h, b, nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("status %d: %s", status, b)
			}
			return status, h, b, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type tenantView struct {
	ID           string `json:"id"`
	State        string `json:"state"`
	Provisioning *struct {
		Status    string `json:"status"`
		LastError string `json:"last_error"`
	} `json:"provisioning"`
}

func (a *apiClient) get(ctx context.Context, id string) (tenantView, bool) {
	var tn tenantView
	status, _, b, err := a.command(ctx, "GET", "/v1/tenants/"+id, "", "")
	if err != nil || status != http.StatusOK || json.Unmarshal(b, &tn) != nil {
		return tn, false
	}
	return tn, true
}

// await polls a tenant until ok holds or within passes.
func (a *apiClient) await(ctx context.Context, id string, within time.Duration, ok func(tenantView) bool) bool {
	for deadline := time.Now().Add(within); ctx.Err() == nil && time.Now().Before(deadline); {
		if tn, got := a.get(ctx, id); got && ok(tn) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

func waitTenant(t *testing.T, a *apiClient, id string, within time.Duration, ok func(tenantView) bool) tenantView {
	t.Helper()
	var last tenantView
	for deadline := time.Now().Add(within); ; {
		tn, got := a.get(context.Background(), id)
		if got {
			last = tn
			if ok(tn) {
				return tn
			}
		}
		if time.Now().After(deadline) {
			raw, _ := json.Marshal(last)
			t.Fatalf("tenant %s did not settle within %s: %s", id, within, raw)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// receiver is a webhook subscriber that checks every delivery's signature
// with the official Standard Webhooks library.
type receiver struct {
	srv *httptest.Server
	// from is the sequence its subscription was created at.
	from    uint64
	refuse  func(n int) bool
	calls   atomic.Int64
	refused atomic.Int64

	mu      sync.Mutex
	wh      *standardwebhooks.Webhook
	seen    map[string]bool
	order   []string
	badSigs int
}

func newReceiver(t *testing.T, refuse func(n int) bool) *receiver {
	rc := &receiver{refuse: refuse, seen: map[string]bool{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) setSecret(t *testing.T, secret string) {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	rc.wh = wh
	rc.mu.Unlock()
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	n := int(rc.calls.Add(1))
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.wh == nil || rc.wh.Verify(body, r.Header) != nil {
		rc.badSigs++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if rc.refuse != nil && rc.refuse(n) {
		rc.refused.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	id := r.Header.Get("webhook-id")
	if !rc.seen[id] {
		rc.seen[id] = true
		rc.order = append(rc.order, id)
	}
	w.WriteHeader(http.StatusNoContent)
}

// waitAll waits until every id in want was delivered and returns the
// first-delivery order.
func (rc *receiver) waitAll(t *testing.T, want []string, within time.Duration) []string {
	t.Helper()
	for deadline := time.Now().Add(within); ; {
		rc.mu.Lock()
		have, bad := len(rc.order), rc.badSigs
		missing := 0
		for _, id := range want {
			if !rc.seen[id] {
				missing++
			}
		}
		got := slices.Clone(rc.order)
		rc.mu.Unlock()
		if bad > 0 {
			t.Fatalf("%d deliveries had a signature that does not verify", bad)
		}
		if missing == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events never delivered (%d delivered)", missing, len(want), have)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tenantEventIDs reads every tenant event id from the log from sequence
// from on, in order, with
// the event store's batched direct gets (answered by any replica).
func tenantEventIDs(t *testing.T, ctx context.Context, core *boot.Core, from uint64) []string {
	t.Helper()
	msgs, err := core.Store.ReadAll(ctx, "tenancy.evt.*."+events.AggregateTenant+".>", from)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		env, err := events.Parse(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = env.ID
	}
	return ids
}

func mustCatalog(t *testing.T) *domain.Catalog {
	t.Helper()
	c, err := catalog.Load("")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// compareWithReplay waits for the projectors to reach the head of the log,
// replays the log into a fresh database and compares every row.
func compareWithReplay(t *testing.T, ctx context.Context, core *boot.Core, dbURL string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	head, err := core.Store.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(90 * time.Second); ; {
		var behind int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM projection_state WHERE generation > 0 AND name IN ('tenants','audit_log') AND checkpoint < $1", int64(head)).Scan(&behind); err != nil {
			t.Fatal(err)
		}
		first, _, err := core.Store.Pending(ctx, events.AllSubjects, head+1)
		if err != nil {
			t.Fatal(err)
		}
		if behind == 0 && first == nil {
			// The checkpoint can be below head when head is not an event the
			// projection reads; compare after both saw everything.
			break
		}
		if behind == 0 && first != nil {
			head = first.Seq
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("the projectors did not reach seq %d", head)
		}
		time.Sleep(100 * time.Millisecond)
	}
	testrig.CheckReplay(t, ctx, core, conn, "in the cluster")
}

// checkPermissions checks the cluster's users: no anonymous connection, and
// the reader's append refused.
func checkPermissions(t *testing.T, ctx context.Context, cl *cluster) {
	t.Helper()
	if nc, err := nats.Connect(cl.URL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("the cluster accepted a connection without credentials")
	}
	rd, err := nats.Connect(cl.URL(), nats.UserInfo("reader", cl.Reader), nats.CustomInboxPrefix("_INBOX_reader"))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	js, _ := jetstream.New(rd)
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := js.Publish(pctx, "tenancy.evt.x.tenant.x", []byte("forged")); err == nil {
		t.Fatal("the read-only user appended to the log")
	}
	t.Log("verified: anonymous connections refused, the read-only user cannot append")
}
