package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/projection"
	"github.com/tenancyhq/tenancy/internal/run/webhooker"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/internal/tracing"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// sample returns the value of one series in a Prometheus text scrape (0
// when absent).
func sample(t *testing.T, scrape []byte, series string) float64 {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(scrape))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			if err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			return v
		}
	}
	return 0
}

// TestMetricsRoute: /metrics answers without a token, per openapi.yaml, and
// its series move with the requests and commands the API serves.
func TestMetricsRoute(t *testing.T) {
	h := newHarness(t, options{})
	scrape := func() []byte {
		r := h.do(t, req{method: "GET", path: "/metrics"})
		if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("/metrics: %d %s", r.Status, r.Header.Get("Content-Type"))
		}
		return r.Body
	}
	series := []string{
		`tenancy_http_requests_total{method="POST",route="/v1/tenants",status="201"}`,
		`tenancy_commands_total{command="CreateTenant",outcome="ok"}`,
		`tenancy_commands_total{command="CreateTenant",outcome="rejected"}`,
		`tenancy_command_duration_seconds_count{command="CreateTenant"}`,
		`tenancy_policy_evaluation_duration_seconds_count{command="CreateTenant"}`,
		`tenancy_http_requests_total{method="GET",route="unmatched",status="404"}`,
	}
	before := scrape()
	h.create(t, tenantBody("metered"))
	if r := h.do(t, req{method: "POST", path: "/v1/tenants", token: h.admin, body: tenantBody("metered")}); r.Status != http.StatusConflict {
		t.Fatalf("second create: %d", r.Status)
	}
	h.do(t, req{method: "GET", path: "/no-such-route-0123456789", token: h.admin})
	after := scrape()
	for _, s := range series {
		want := 1.0
		if strings.Contains(s, "_count{") {
			want = 2 // both creates were decided and timed
		}
		if got := sample(t, after, s) - sample(t, before, s); got != want {
			t.Errorf("%s moved by %v, want %v", s, got, want)
		}
	}
	if bytes.Contains(after, []byte("no-such-route")) {
		t.Error("an unmatched path became a label")
	}
	if !bytes.Contains(after, []byte("go_goroutines ")) {
		t.Error("no Go runtime series")
	}
}

// logBuffer collects log lines written concurrently.
type logBuffer struct{ testenv.SyncBuffer }

// lines returns the JSON log records whose msg is msg.
func (b *logBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range bytes.Split(b.Bytes(), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestTraceFollowsAWrite runs the whole system traced against an in-process
// OTLP collector and checks that one trace goes from the caller's request
// through the command and its events to the projections, the saga's steps
// and the webhook deliveries, with the right parents, and that the log lines
// name the trace.
func TestTraceFollowsAWrite(t *testing.T) {
	col := testenv.StartOTLP(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", col.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	t.Setenv("OTEL_SERVICE_NAME", "")
	shutdown, err := tracing.Setup(context.Background(), "tenancy-test", logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the harness, so it runs after the workers stopped.
	t.Cleanup(func() { _ = shutdown(context.Background()) })

	logs := &logBuffer{}
	h := newHarness(t, options{provisioner: true, projections: true, logs: logs})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var mu sync.Mutex
	received := map[string]string{} // webhook-id (event id) -> traceparent header
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		received[r.Header.Get("webhook-id")] = r.Header.Get("traceparent")
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()
	cfg := config.Webhooks{AllowCIDRs: []string{"127.0.0.0/8"}, AllowHTTP: true, Timeout: 2 * time.Second, MaxBody: 256 << 10,
		Schedule: []time.Duration{0, 20 * time.Millisecond}}
	hooks, err := webhooker.New(ctx, h.core, cfg, h.rs)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := hooks.Webhooks.Create(ctx, domain.CreateWebhook{URL: receiver.URL, EventTypes: []string{"tenancy.tenant.*"}}, command.Meta{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = hooks.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// Rebuilds are not traced (a replay would add spans to every old
	// trace): let the projections build their first generation and go live.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var live int
		if err := h.rs.Pool.QueryRow(ctx, "SELECT count(*) FROM projection_state WHERE generation > 0").Scan(&live); err != nil {
			t.Fatal(err)
		}
		if live == len(projection.All()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the projections did not go live")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The caller traces too: the API continues its trace.
	const (
		createTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		createSpan  = "00f067aa0ba902b7"
		activTrace  = "0af7651916cd43dd8448eb211c80319c"
		activSpan   = "b7ad6b7169203331"
	)
	r := h.do(t, req{method: "POST", path: "/v1/tenants", token: h.admin, body: tenantBody("traced"),
		header: map[string]string{"traceparent": "00-" + createTrace + "-" + createSpan + "-01", "X-Request-Id": "req-traced-1"}})
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	id := r.json(t)["id"].(string)
	h.do(t, req{method: "POST", path: "/v1/tenants/" + id + "/activate", token: h.admin,
		header: map[string]string{"traceparent": "00-" + activTrace + "-" + activSpan + "-01"}})
	h.waitFor(t, id, 20*time.Second, func(m map[string]any) bool { return m["state"] == "active" })

	// The event as stored names the command's span.
	ev := h.do(t, req{method: "GET", path: "/v1/tenants/" + id + "/events", token: h.admin}).json(t)
	created := ev["items"].([]any)[0].(map[string]any)

	find := func(spans []testenv.Span, trace, name string) []testenv.Span {
		var out []testenv.Span
		for _, s := range spans {
			if s.TraceID == trace && s.Name == name {
				out = append(out, s)
			}
		}
		return out
	}
	spans := col.WaitFor(t, 30*time.Second, func(s []testenv.Span) bool {
		return len(find(s, createTrace, "webhook deliver")) > 0 && len(find(s, createTrace, "project tenants")) > 0 &&
			len(find(s, createTrace, "project audit_log")) > 0 && len(find(s, activTrace, "CompleteSaga")) > 0 &&
			// The saga's span ends after its last step's, so it is
			// exported after CompleteSaga: wait for it too.
			len(find(s, activTrace, "saga activate")) > 0 && len(find(s, activTrace, "webhook deliver")) >= 3
	})
	one := func(trace, name string) testenv.Span {
		t.Helper()
		got := find(spans, trace, name)
		if len(got) != 1 {
			t.Fatalf("%d spans %q in trace %s, want 1", len(got), name, trace)
		}
		return got[0]
	}
	childOf := func(child, parent testenv.Span) {
		t.Helper()
		if child.ParentSpanID != parent.SpanID {
			t.Errorf("span %q (parent %s) is not a child of %q (%s)", child.Name, child.ParentSpanID, parent.Name, parent.SpanID)
		}
	}

	// Request -> command -> projections and delivery of its event.
	req1 := one(createTrace, "POST /v1/tenants")
	if req1.ParentSpanID != createSpan || req1.Attrs["http.response.status_code"] != "201" || req1.Attrs["tenancy.tenant_id"] != id ||
		req1.Service != "tenancy-test" {
		t.Errorf("request span %+v", req1)
	}
	cmd1 := one(createTrace, "CreateTenant")
	childOf(cmd1, req1)
	if cmd1.Attrs["tenancy.outcome"] != "ok" || cmd1.Attrs["tenancy.tenant_id"] != id {
		t.Errorf("command span %+v", cmd1)
	}
	if want := "00-" + createTrace + "-" + cmd1.SpanID + "-01"; created["traceparent"] != want {
		t.Errorf("the event's traceparent is %v, want %s", created["traceparent"], want)
	}
	childOf(one(createTrace, "project tenants"), cmd1)
	childOf(one(createTrace, "project audit_log"), cmd1)
	deliver1 := one(createTrace, "webhook deliver")
	childOf(deliver1, cmd1)
	if deliver1.Attrs["tenancy.outcome"] != "delivered" || deliver1.Attrs["tenancy.event_type"] != events.TypeTenantCreated {
		t.Errorf("delivery span %+v", deliver1)
	}
	mu.Lock()
	header := received[created["id"].(string)]
	mu.Unlock()
	if want := "00-" + createTrace + "-" + deliver1.SpanID + "-01"; header != want {
		t.Errorf("the receiver got traceparent %q, want %q", header, want)
	}

	// Activation: request -> command -> saga -> steps -> the commands that
	// record them -> deliveries of those events.
	req2 := one(activTrace, "POST /v1/tenants/:id/activate")
	cmd2 := one(activTrace, "RequestActivation")
	childOf(cmd2, req2)
	saga := one(activTrace, "saga activate")
	childOf(saga, cmd2)
	childOf(one(activTrace, "CompleteSaga"), saga)
	step := one(activTrace, "saga step policy")
	childOf(step, saga)
	if step.Attrs["tenancy.outcome"] != "completed" || step.Attrs["tenancy.attempt"] != "1" {
		t.Errorf("step span %+v", step)
	}
	recorded := map[string]bool{}
	for _, s := range find(spans, activTrace, "RecordStep") {
		if s.ParentSpanID == "" {
			t.Errorf("RecordStep without a parent")
		}
		recorded[s.SpanID] = true
	}
	if len(recorded) < 2 {
		t.Errorf("%d RecordStep spans", len(recorded))
	}
	stepDeliveries := 0
	for _, d := range find(spans, activTrace, "webhook deliver") {
		if recorded[d.ParentSpanID] && d.Attrs["tenancy.event_type"] == events.TypeTenantStepRecorded {
			stepDeliveries++
		}
	}
	if stepDeliveries == 0 {
		t.Error("no delivery of a step event is a child of the command that recorded the step")
	}

	// The log lines name the request, the tenant and the trace.
	var access map[string]any
	for _, l := range logs.lines(t, "request") {
		if l["route"] == "/v1/tenants" && l["method"] == "POST" && l["request_id"] == "req-traced-1" {
			access = l
		}
	}
	if access == nil || access["trace_id"] != createTrace || access["span_id"] != req1.SpanID || access["tenant_id"] != id ||
		access["correlation_id"] != "req-traced-1" || access["service"] != "test" {
		t.Errorf("access log line %v", access)
	}
	stepLogs := logs.lines(t, "saga step done")
	if len(stepLogs) == 0 {
		t.Fatal("no saga step log lines")
	}
	for _, l := range stepLogs {
		if l["tenant_id"] != id || l["trace_id"] != activTrace || l["correlation_id"] == nil || l["saga"] != "activate" {
			t.Errorf("saga log line %v", l)
		}
	}
}

// TestOpenMetrics scrapes /metrics as an OpenMetrics scraper does, before
// anything happened: one family per name (OpenMetrics names a counter's
// family without _total, so a gauge and a counter may not share the rest),
// and every counter README.md documents present already, at 0.
func TestOpenMetrics(t *testing.T) {
	h := newHarness(t, options{})
	r := h.do(t, req{method: "GET", path: "/metrics", header: map[string]string{"Accept": "application/openmetrics-text; version=1.0.0"}})
	if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/openmetrics-text") {
		t.Fatalf("/metrics: %d %s", r.Status, r.Header.Get("Content-Type"))
	}
	if !bytes.HasSuffix(r.Body, []byte("# EOF\n")) {
		t.Fatal("the exposition does not end with # EOF")
	}
	families := map[string]string{}
	for _, line := range strings.Split(string(r.Body), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || f[0] != "#" || f[1] != "TYPE" {
			continue
		}
		if prev, dup := families[f[2]]; dup {
			t.Errorf("family %s appears twice (%s and %s)", f[2], prev, f[3])
		}
		families[f[2]] = f[3]
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := regexp.MustCompile("`(tenancy_[a-z_]+_total)`").FindAllStringSubmatch(string(readme), -1)
	if len(documented) < 10 {
		t.Fatalf("found %d documented counters in README.md", len(documented))
	}
	for _, m := range documented {
		family := strings.TrimSuffix(m[1], "_total")
		if families[family] != "counter" {
			t.Errorf("documented counter %s is not exposed from start (type %q)", m[1], families[family])
		}
	}
}
