package testenv

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
)

// OTLP is an in-process OpenTelemetry collector: it accepts OTLP/HTTP
// protobuf trace exports on POST /v1/traces and keeps the spans, so tests
// can check what a traced process exported. Point OTEL_EXPORTER_OTLP_ENDPOINT
// at URL.
type OTLP struct {
	URL string

	mu    sync.Mutex
	spans []Span
}

// Span is one exported span, its ids in hex.
type Span struct {
	TraceID, SpanID, ParentSpanID string
	Name                          string
	// Service is the service.name of its resource.
	Service string
	Attrs   map[string]string
	// Error says the span's status is an error.
	Error bool
}

// StartOTLP runs a collector until the test ends.
func StartOTLP(tb testing.TB) *OTLP {
	tb.Helper()
	o := &OTLP{}
	srv := httptest.NewServer(http.HandlerFunc(o.serve))
	tb.Cleanup(srv.Close)
	o.URL = srv.URL
	return o
}

func (o *OTLP) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.Error(w, "only POST /v1/traces", http.StatusNotFound)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		defer gz.Close()
		body = gz
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var got []Span
	for _, rs := range req.GetResourceSpans() {
		service := attrs(rs.GetResource().GetAttributes())["service.name"]
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				got = append(got, Span{
					TraceID: hex.EncodeToString(s.GetTraceId()), SpanID: hex.EncodeToString(s.GetSpanId()),
					ParentSpanID: hex.EncodeToString(s.GetParentSpanId()), Name: s.GetName(), Service: service,
					Attrs: attrs(s.GetAttributes()), Error: s.GetStatus().GetCode() == 2,
				})
			}
		}
	}
	o.mu.Lock()
	o.spans = append(o.spans, got...)
	o.mu.Unlock()
	resp, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp)
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		v := kv.GetValue()
		switch v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			out[kv.GetKey()] = v.GetStringValue()
		case *commonpb.AnyValue_IntValue:
			out[kv.GetKey()] = fmt.Sprint(v.GetIntValue())
		case *commonpb.AnyValue_BoolValue:
			out[kv.GetKey()] = fmt.Sprint(v.GetBoolValue())
		case *commonpb.AnyValue_DoubleValue:
			out[kv.GetKey()] = fmt.Sprint(v.GetDoubleValue())
		}
	}
	return out
}

// Spans returns the spans received so far.
func (o *OTLP) Spans() []Span {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Span(nil), o.spans...)
}

// WaitFor polls the received spans until done holds, failing the test after
// d with what arrived.
func (o *OTLP) WaitFor(tb testing.TB, d time.Duration, done func([]Span) bool) []Span {
	tb.Helper()
	spans, ok := Poll(d, 20*time.Millisecond, o.Spans, done)
	if !ok {
		for _, s := range spans {
			tb.Logf("span %q trace %s id %s parent %s attrs %v", s.Name, s.TraceID, s.SpanID, s.ParentSpanID, s.Attrs)
		}
		tb.Fatalf("the expected spans did not arrive within %s (%d spans arrived)", d, len(spans))
	}
	return spans
}
