package command_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/metrics"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// histogramCount is how many observations a histogram series has.
func histogramCount(t *testing.T, name string, label string) uint64 {
	t.Helper()
	mfs, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

// TestMetricsCountOutcomes runs commands with every outcome and checks the
// counters, the histograms and what /metrics shows.
func TestMetricsCountOutcomes(t *testing.T) {
	e := setup(t)
	ctx := testenv.Context(t, time.Minute)
	h := e.handler()
	id, other := newID(), newID()
	name := "Renamed"
	steps := []struct {
		name    string
		run     func() error
		command string
		outcome string
	}{
		{"create", func() error {
			_, err := h.Execute(ctx, id, id, createCmd(id, "metrics-a", nil), command.Meta{Actor: "t"})
			return err
		}, "CreateTenant", command.OutcomeOK},
		{"slug taken", func() error {
			_, err := h.Execute(ctx, other, other, createCmd(other, "metrics-a", nil), command.Meta{Actor: "t"})
			return err
		}, "CreateTenant", command.OutcomeRejected},
		{"update", func() error {
			_, err := h.Execute(ctx, id, id, domain.UpdateTenant{DisplayName: &name}, command.Meta{Actor: "t"})
			return err
		}, "UpdateTenant", command.OutcomeOK},
		{"repeat", func() error {
			_, err := h.Execute(ctx, id, id, domain.UpdateTenant{DisplayName: &name}, command.Meta{Actor: "t"})
			return err
		}, "UpdateTenant", command.OutcomeUnchanged},
		{"wrong state", func() error {
			_, err := h.Execute(ctx, id, id, domain.Resume{}, command.Meta{Actor: "t"})
			return err
		}, "Resume", command.OutcomeRejected},
		{"if-match", func() error {
			_, err := h.Execute(ctx, id, id, domain.UpdateTenant{DisplayName: &name}, command.Meta{Actor: "t", IfVersion: 99})
			return err
		}, "UpdateTenant", command.OutcomeRejected},
		{"cancelled", func() error {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			_, err := e.handler().Execute(cctx, id, id, domain.Resume{}, command.Meta{Actor: "t"})
			return err
		}, "Resume", command.OutcomeError},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			c := metrics.Commands.WithLabelValues(s.command, s.outcome)
			before := testutil.ToFloat64(c)
			durBefore := histogramCount(t, "tenancy_command_duration_seconds", s.command)
			err := s.run()
			if (err == nil) != (s.outcome == command.OutcomeOK || s.outcome == command.OutcomeUnchanged) {
				t.Fatalf("error %v for outcome %s", err, s.outcome)
			}
			if got := testutil.ToFloat64(c); got != before+1 {
				t.Fatalf("tenancy_commands_total{%s,%s} %v -> %v", s.command, s.outcome, before, got)
			}
			if got := histogramCount(t, "tenancy_command_duration_seconds", s.command); got != durBefore+1 {
				t.Fatalf("duration observations %d -> %d", durBefore, got)
			}
		})
	}

	// A second instance whose cached state is behind loses the race once:
	// a conflict, then a retry on the caught-up state.
	stale := e.handler()
	if _, _, err := stale.Load(ctx, id, id); err != nil {
		t.Fatal(err)
	}
	label := "racer"
	if _, err := h.Execute(ctx, id, id, domain.UpdateTenant{Labels: &domain.MapPatch{Values: map[string]*string{"a": &label}}}, command.Meta{Actor: "t"}); err != nil {
		t.Fatal(err)
	}
	conflicts := testutil.ToFloat64(metrics.AppendConflicts.WithLabelValues("UpdateTenant"))
	retries := testutil.ToFloat64(metrics.CommandRetries.WithLabelValues("UpdateTenant"))
	decided := histogramCount(t, "tenancy_policy_evaluation_duration_seconds", "UpdateTenant")
	if _, err := stale.Execute(ctx, id, id, domain.UpdateTenant{Labels: &domain.MapPatch{Values: map[string]*string{"b": &label}}}, command.Meta{Actor: "t"}); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(metrics.AppendConflicts.WithLabelValues("UpdateTenant")); got != conflicts+1 {
		t.Errorf("conflicts %v -> %v", conflicts, got)
	}
	if got := testutil.ToFloat64(metrics.CommandRetries.WithLabelValues("UpdateTenant")); got != retries+1 {
		t.Errorf("retries %v -> %v", retries, got)
	}
	// Decided twice: on the stale state, then on the caught-up one.
	if got := histogramCount(t, "tenancy_policy_evaluation_duration_seconds", "UpdateTenant"); got != decided+2 {
		t.Errorf("policy evaluations %d -> %d", decided, got)
	}

	srv := httptest.NewServer(metrics.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`tenancy_commands_total{command="CreateTenant",outcome="ok"}`,
		`tenancy_commands_total{command="CreateTenant",outcome="rejected"}`,
		`tenancy_append_conflicts_total{command="UpdateTenant"}`,
		`tenancy_policy_evaluation_duration_seconds_count{command="UpdateTenant"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestCommandName(t *testing.T) {
	for _, tc := range []struct {
		cmd  any
		want string
	}{
		{domain.Suspend{}, "Suspend"},
		{&domain.Suspend{}, "Suspend"},
		{domain.TenantCommand(domain.Resume{}), "Resume"},
		{nil, "unknown"},
	} {
		if got := command.CommandName(tc.cmd); got != tc.want {
			t.Errorf("CommandName(%T) = %q, want %q", tc.cmd, got, tc.want)
		}
	}
}

// TestEventsRecordTheTrace: an event records the traceparent of the span
// its command ran in, and only when there is one.
func TestEventsRecordTheTrace(t *testing.T) {
	e := setup(t)
	ctx := testenv.Context(t, time.Minute)
	h := e.handler()
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	spanCtx, span := tp.Tracer("test").Start(ctx, "request")
	defer span.End()
	sc := span.SpanContext()
	fromSpan := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
	given := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for _, tc := range []struct {
		name string
		ctx  context.Context
		meta string
		want string
	}{
		{"no span", ctx, "", ""},
		{"span", spanCtx, "", fromSpan},
		{"the span wins over the caller's", spanCtx, given, fromSpan},
		{"the caller's without a span", ctx, given, given},
		{"an invalid span context", trace.ContextWithSpanContext(ctx, trace.SpanContext{}), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := newID()
			res, err := h.Execute(tc.ctx, id, id, createCmd(id, "trace-"+id[len(id)-8:], nil), command.Meta{Actor: "t", TraceParent: tc.meta})
			if err != nil {
				t.Fatal(err)
			}
			msg, err := e.store.Get(ctx, res.Seq)
			if err != nil {
				t.Fatal(err)
			}
			env, err := events.Parse(msg.Data)
			if err != nil {
				t.Fatal(err)
			}
			if env.TraceParent != tc.want {
				t.Fatalf("traceparent %q, want %q", env.TraceParent, tc.want)
			}
			// It is signed: the chain still verifies.
			e.verify(t)
		})
	}
}
