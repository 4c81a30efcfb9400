package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/trace"

	"github.com/tenancyhq/tenancy/internal/logging"
)

func TestContextAttributes(t *testing.T) {
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	withSpan := func(ctx context.Context) context.Context {
		return trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled}))
	}
	request := func(ctx context.Context) context.Context {
		return logging.With(ctx, slog.String("request_id", "r-1"), slog.String("correlation_id", "r-1"), slog.String("tenant_id", "t-1"))
	}
	for _, tc := range []struct {
		name string
		ctx  func(context.Context) context.Context
		want map[string]any
	}{
		{"plain", func(ctx context.Context) context.Context { return ctx },
			map[string]any{"service": "api", "msg": "hello", "level": "INFO"}},
		{"request attributes", request,
			map[string]any{"service": "api", "msg": "hello", "level": "INFO", "request_id": "r-1", "correlation_id": "r-1", "tenant_id": "t-1"}},
		{"span", withSpan,
			map[string]any{"service": "api", "msg": "hello", "level": "INFO", "trace_id": traceID.String(), "span_id": spanID.String()}},
		{"both", func(ctx context.Context) context.Context { return withSpan(request(ctx)) },
			map[string]any{"service": "api", "msg": "hello", "level": "INFO", "request_id": "r-1", "correlation_id": "r-1", "tenant_id": "t-1",
				"trace_id": traceID.String(), "span_id": spanID.String()}},
		{"invalid span context", func(ctx context.Context) context.Context {
			return trace.ContextWithSpanContext(ctx, trace.SpanContext{})
		},
			map[string]any{"service": "api", "msg": "hello", "level": "INFO"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := logging.New(&buf, "api", slog.LevelInfo)
			log.InfoContext(tc.ctx(context.Background()), "hello")
			var got map[string]any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("not one JSON object: %v: %s", err, buf.Bytes())
			}
			delete(got, "time")
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("record (-want +got):\n%s", diff)
			}
		})
	}
}
