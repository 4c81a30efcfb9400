// Package tracing sets up OpenTelemetry traces exported over OTLP/HTTP, and
// the helpers the services use to start spans and to carry a trace through
// the event log: an event records the traceparent of the span that appended
// it, and whatever handles the event later (projection, saga step, webhook
// delivery) starts its span as that span's child. One trace thus runs from
// an HTTP request through the append to every effect of its events.
//
// Tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set. Off, Start returns a no-op span
// after one atomic load, so untraced processes pay nothing measurable.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ScopeName names the instrumentation scope of Tenancy's spans.
const ScopeName = "github.com/tenancyhq/tenancy"

// enabled is set while a Setup's provider is installed.
var enabled atomic.Bool

// setupMu serialises Setup and shutdown, which swap the OTel globals.
var setupMu sync.Mutex

// Enabled reports whether spans are being recorded and exported.
func Enabled() bool { return enabled.Load() }

// Configured reports whether getenv configures an OTLP trace exporter: an
// endpoint is set and OTEL_SDK_DISABLED does not turn it off.
func Configured(getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup installs a tracer provider exporting to the OTLP/HTTP endpoint the
// standard OTEL_* environment variables configure, with service as
// service.name (OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override),
// and the W3C trace context propagator. Exporter errors are logged to log.
// Without an endpoint it installs nothing and tracing stays a no-op.
//
// shutdown flushes the spans still buffered and restores the previous
// globals; call it on exit.
func Setup(ctx context.Context, service string, log *slog.Logger) (shutdown func(context.Context) error, err error) {
	if !Configured(os.Getenv) {
		return func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithAttributes(attribute.String("service.name", service)),
		// Last, so that the operator's settings win.
		resource.WithFromEnv(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	// The sampler (OTEL_TRACES_SAMPLER, default parent-based always-on) and
	// the batcher's limits (OTEL_BSP_*) come from the environment too.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))

	setupMu.Lock()
	prevTP, prevProp, prevErr := otel.GetTracerProvider(), otel.GetTextMapPropagator(), otel.GetErrorHandler()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if log != nil {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			log.Warn("tracing: exporting spans failed", "error", err)
		}))
	}
	enabled.Store(true)
	setupMu.Unlock()

	var once sync.Once
	return func(ctx context.Context) error {
		var err error
		once.Do(func() {
			err = tp.Shutdown(ctx)
			setupMu.Lock()
			defer setupMu.Unlock()
			enabled.Store(false)
			otel.SetTracerProvider(prevTP)
			otel.SetTextMapPropagator(prevProp)
			otel.SetErrorHandler(prevErr)
		})
		return err
	}, nil
}

// Tracer returns the tracer of Tenancy's spans. It is looked up on each
// use: a tracer kept from before Setup would stay bound to the provider it
// came from.
func Tracer() trace.Tracer { return otel.Tracer(ScopeName) }

var noopSpan trace.Span = noop.Span{}

// Start starts a span as a child of ctx's span. With tracing off it returns
// ctx and a no-op span, without allocating.
func Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !enabled.Load() {
		return ctx, noopSpan
	}
	return Tracer().Start(ctx, name, opts...)
}

// StartFromTraceParent starts a span as a child of the span a W3C
// traceparent names (an event's), or as a root when it names none. With
// tracing off it returns ctx and a no-op span.
func StartFromTraceParent(ctx context.Context, traceparent, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !enabled.Load() {
		return ctx, noopSpan
	}
	return Tracer().Start(WithTraceParent(ctx, traceparent), name, opts...)
}

// WithTraceParent returns ctx carrying the remote span context traceparent
// names, so that the next span started from it is that span's child. A
// malformed or empty traceparent leaves ctx without one.
func WithTraceParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		// A new root: the caller's own span, if any, is not the parent.
		return trace.ContextWithSpanContext(ctx, trace.SpanContext{})
	}
	return propagation.TraceContext{}.Extract(trace.ContextWithSpanContext(ctx, trace.SpanContext{}),
		propagation.MapCarrier{"traceparent": traceparent})
}

// TraceParent returns the W3C traceparent of ctx's span, or "" when ctx has
// no valid span context.
func TraceParent(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
}

// Extract returns ctx with the trace context of incoming HTTP headers
// (nothing with tracing off).
func Extract(ctx context.Context, h http.Header) context.Context {
	if !enabled.Load() {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, propagation.HeaderCarrier(h))
}

// Inject writes ctx's trace context into outgoing HTTP headers (nothing
// with tracing off).
func Inject(ctx context.Context, h http.Header) {
	if !enabled.Load() {
		return
	}
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(h))
}

// Fail marks span failed with err (a no-op on a no-op span).
func Fail(span trace.Span, err error) {
	if err == nil || !span.IsRecording() {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}
