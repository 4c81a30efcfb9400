package testenv

import (
	"compress/gzip"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
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
	got, err := decodeExport(raw)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	o.spans = append(o.spans, got...)
	o.mu.Unlock()
	// An empty ExportTraceServiceResponse encodes as no bytes.
	w.Header().Set("Content-Type", "application/x-protobuf")
}

// The collector reads the OTLP trace export (opentelemetry-proto's
// collector/trace/v1 ExportTraceServiceRequest) straight from the protobuf
// wire format, for the few fields the tests look at: like the Keycloak and
// billing fakes, it follows the published contract, and it keeps the
// protobuf runtime out of the module's requirements. Field numbers are the
// schema's.

// decodeExport reads an ExportTraceServiceRequest.
func decodeExport(b []byte) ([]Span, error) {
	var out []Span
	err := eachField(b, func(num int, v field) error {
		if num != 1 { // resource_spans
			return nil
		}
		spans, err := decodeResourceSpans(v.bytes)
		out = append(out, spans...)
		return err
	})
	return out, err
}

func decodeResourceSpans(b []byte) ([]Span, error) {
	var service string
	var spans []Span
	err := eachField(b, func(num int, v field) error {
		switch num {
		case 1: // resource
			return eachField(v.bytes, func(num int, v field) error {
				if num != 1 { // attributes
					return nil
				}
				k, val, err := decodeKeyValue(v.bytes)
				if k == "service.name" {
					service = val
				}
				return err
			})
		case 2: // scope_spans
			return eachField(v.bytes, func(num int, v field) error {
				if num != 2 { // spans
					return nil
				}
				s, err := decodeSpan(v.bytes)
				spans = append(spans, s)
				return err
			})
		}
		return nil
	})
	for i := range spans {
		spans[i].Service = service
	}
	return spans, err
}

func decodeSpan(b []byte) (Span, error) {
	s := Span{Attrs: map[string]string{}}
	err := eachField(b, func(num int, v field) error {
		switch num {
		case 1:
			s.TraceID = hex.EncodeToString(v.bytes)
		case 2:
			s.SpanID = hex.EncodeToString(v.bytes)
		case 4:
			s.ParentSpanID = hex.EncodeToString(v.bytes)
		case 5:
			s.Name = string(v.bytes)
		case 9: // attributes
			k, val, err := decodeKeyValue(v.bytes)
			s.Attrs[k] = val
			return err
		case 15: // status: code is field 3, 2 = error
			return eachField(v.bytes, func(num int, v field) error {
				if num == 3 && v.varint == 2 {
					s.Error = true
				}
				return nil
			})
		}
		return nil
	})
	return s, err
}

// decodeKeyValue reads a KeyValue whose AnyValue is a string, bool, int or
// double, as text.
func decodeKeyValue(b []byte) (key, value string, err error) {
	err = eachField(b, func(num int, v field) error {
		switch num {
		case 1:
			key = string(v.bytes)
		case 2:
			return eachField(v.bytes, func(num int, v field) error {
				switch num {
				case 1:
					value = string(v.bytes)
				case 2:
					value = fmt.Sprint(v.varint != 0)
				case 3:
					value = fmt.Sprint(int64(v.varint))
				case 4:
					value = fmt.Sprint(math.Float64frombits(v.fixed))
				}
				return nil
			})
		}
		return nil
	})
	return key, value, err
}

// field is one field's value: bytes for length-delimited ones, varint or
// fixed for the others.
type field struct {
	bytes  []byte
	varint uint64
	fixed  uint64
}

// eachField calls fn with every field of a protobuf message.
func eachField(b []byte, fn func(num int, v field) error) error {
	for len(b) > 0 {
		tag, n := binary.Uvarint(b)
		if n <= 0 {
			return errors.New("protobuf: bad tag")
		}
		b = b[n:]
		var v field
		switch tag & 7 {
		case 0:
			if v.varint, n = binary.Uvarint(b); n <= 0 {
				return errors.New("protobuf: bad varint")
			}
			b = b[n:]
		case 1, 5:
			size := map[uint64]int{1: 8, 5: 4}[tag&7]
			if len(b) < size {
				return errors.New("protobuf: short fixed field")
			}
			if size == 8 {
				v.fixed = binary.LittleEndian.Uint64(b)
			} else {
				v.fixed = uint64(binary.LittleEndian.Uint32(b))
			}
			b = b[size:]
		case 2:
			l, n := binary.Uvarint(b)
			if n <= 0 || uint64(len(b)-n) < l {
				return errors.New("protobuf: bad length")
			}
			v.bytes, b = b[n:n+int(l)], b[n+int(l):]
		default:
			return fmt.Errorf("protobuf: wire type %d not supported", tag&7)
		}
		if err := fn(int(tag>>3), v); err != nil {
			return err
		}
	}
	return nil
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
