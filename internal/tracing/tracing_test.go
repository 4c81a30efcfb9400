package tracing_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/internal/tracing"
)

func TestConfigured(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"nothing set", nil, false},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, true},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, true},
		{"disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, false},
		{"not disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "false"}, true},
		{"only a service name", map[string]string{"OTEL_SERVICE_NAME": "x"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tracing.Configured(func(k string) string { return tc.env[k] }); got != tc.want {
				t.Fatalf("Configured = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestOffIsNoop: without an endpoint nothing is installed, spans are no-ops
// and nothing is propagated.
func TestOffIsNoop(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	shutdown, err := tracing.Setup(context.Background(), "test", logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())
	if tracing.Enabled() {
		t.Fatal("enabled without an endpoint")
	}
	ctx, span := tracing.Start(context.Background(), "x")
	defer span.End()
	if span.IsRecording() || tracing.TraceParent(ctx) != "" {
		t.Fatalf("a span was recorded (traceparent %q)", tracing.TraceParent(ctx))
	}
	h := http.Header{}
	tracing.Inject(ctx, h)
	if len(h) != 0 {
		t.Fatalf("headers injected while off: %v", h)
	}
	allocs := testing.AllocsPerRun(100, func() {
		_, s := tracing.Start(ctx, "x")
		s.End()
	})
	if allocs != 0 {
		t.Fatalf("Start allocates %v times per call while off", allocs)
	}
}

// TestExportAndPropagate runs Setup against an in-process collector: a span
// started from another span's traceparent (as the workers do from an
// event's) is exported as its child, with the service's name.
func TestExportAndPropagate(t *testing.T) {
	col := testenv.StartOTLP(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", col.URL)
	t.Setenv("OTEL_SERVICE_NAME", "")
	shutdown, err := tracing.Setup(context.Background(), "tenancy-test", logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	if !tracing.Enabled() {
		t.Fatal("not enabled with an endpoint")
	}
	ctx, parent := tracing.Start(context.Background(), "append")
	tp := tracing.TraceParent(ctx)
	psc := parent.SpanContext()
	if want := "00-" + psc.TraceID().String() + "-" + psc.SpanID().String() + "-01"; tp != want {
		t.Fatalf("traceparent %q, want %q", tp, want)
	}
	parent.End()

	// A worker, later, with nothing but the event's traceparent.
	_, child := tracing.StartFromTraceParent(context.Background(), tp, "deliver")
	child.End()
	// A malformed traceparent starts a new trace rather than failing.
	_, orphan := tracing.StartFromTraceParent(context.Background(), "garbage", "orphan")
	orphan.End()
	// Outgoing headers carry the context.
	h := http.Header{}
	tracing.Inject(trace.ContextWithSpan(context.Background(), child), h)
	if got := h.Get("traceparent"); !strings.Contains(got, psc.TraceID().String()) {
		t.Fatalf("injected traceparent %q lacks the trace id", got)
	}
	back := trace.SpanContextFromContext(tracing.Extract(context.Background(), h))
	if back.TraceID() != psc.TraceID() || back.SpanID() != child.SpanContext().SpanID() || !back.IsRemote() {
		t.Fatalf("extracted %v", back)
	}

	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tracing.Enabled() {
		t.Fatal("still enabled after shutdown")
	}
	spans := col.WaitFor(t, 10*time.Second, func(s []testenv.Span) bool { return len(s) >= 3 })
	byName := map[string]testenv.Span{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	a, d, o := byName["append"], byName["deliver"], byName["orphan"]
	if a.Service != "tenancy-test" {
		t.Errorf("service.name %q", a.Service)
	}
	if d.TraceID != a.TraceID || d.ParentSpanID != a.SpanID {
		t.Errorf("deliver is not append's child: %+v vs %+v", d, a)
	}
	if o.TraceID == a.TraceID || o.ParentSpanID != "" {
		t.Errorf("orphan joined a trace: %+v", o)
	}
	// After shutdown, spans are no-ops again.
	if _, s := tracing.Start(context.Background(), "late"); s.IsRecording() {
		t.Fatal("recording after shutdown")
	}
}
