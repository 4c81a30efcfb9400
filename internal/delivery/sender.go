package delivery

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tenancyhq/tenancy/internal/delivery/attempts"
	"github.com/tenancyhq/tenancy/internal/egress"
	"github.com/tenancyhq/tenancy/internal/tracing"
)

// Delivery headers beyond the Standard Webhooks ones.
const (
	HeaderSequence = "tenancy-sequence"
	HeaderAttempt  = "tenancy-attempt"
	HeaderReplay   = "tenancy-replay"
	// ContentType is the body's media type: a CloudEvent in structured mode.
	ContentType = "application/cloudevents+json"
)

// ResponseCap bounds how much of a receiver's response is read and kept.
const ResponseCap = 4 << 10

// AttemptResult is what one attempt produced.
type AttemptResult struct {
	Outcome    attempts.Outcome
	Status     int
	Latency    time.Duration
	Response   string
	Error      string
	RetryAfter time.Duration
}

// Request is one delivery attempt.
type Request struct {
	URL      string
	Keys     [][]byte
	EventID  string
	Seq      uint64
	Attempt  int
	Replay   bool
	Body     []byte
	TenantID string
}

// Sender makes delivery attempts.
type Sender struct {
	Client *http.Client
	Clock  func() time.Time
	// UserAgent identifies Tenancy to receivers.
	UserAgent string
}

// NewSender returns a sender whose connections obey policy.
func NewSender(policy *egress.Policy, timeout time.Duration) *Sender {
	return &Sender{Client: policy.Client(timeout), Clock: time.Now, UserAgent: "Tenancy-Webhooks/1"}
}

// Send makes one attempt.
func (s *Sender) Send(ctx context.Context, r Request) AttemptResult {
	now := s.Clock()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		return AttemptResult{Outcome: attempts.Failed, Error: "cannot build the request: " + err.Error()}
	}
	h := req.Header
	h.Set("content-type", ContentType)
	h.Set("user-agent", s.UserAgent)
	h.Set("webhook-id", r.EventID)
	h.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	h.Set("webhook-signature", Sign(r.Keys, r.EventID, now, r.Body))
	h.Set(HeaderSequence, strconv.FormatUint(r.Seq, 10))
	h.Set(HeaderAttempt, strconv.Itoa(r.Attempt))
	if r.Replay {
		h.Set(HeaderReplay, "true")
	}
	// With tracing on, the receiver can continue the delivery's trace.
	tracing.Inject(ctx, h)
	start := time.Now()
	resp, err := s.Client.Do(req)
	if err != nil {
		res := AttemptResult{Outcome: attempts.Failed, Latency: time.Since(start), Error: describe(err)}
		if errors.Is(err, egress.ErrBlocked) {
			res.Outcome = attempts.Refused
		}
		return res
	}
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, ResponseCap))
	// Drain a little more so the connection can be reused, but never
	// without bound.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
	res := AttemptResult{Status: resp.StatusCode, Latency: time.Since(start), Response: string(bytes.ToValidUTF8(body, []byte("?")))}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		res.Outcome = attempts.Delivered
		if readErr != nil {
			// The receiver said yes; a broken body afterwards does not
			// change that.
			res.Error = "reading the response: " + readErr.Error()
		}
	case resp.StatusCode == http.StatusGone:
		res.Outcome, res.Error = attempts.Gone, "the endpoint answered 410 Gone"
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		res.Outcome, res.Error = attempts.Failed, fmt.Sprintf("the endpoint answered %d (a redirect, which is never followed); register the final URL", resp.StatusCode)
	default:
		res.Outcome, res.Error = attempts.Failed, fmt.Sprintf("the endpoint answered %d", resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			res.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), now)
		}
	}
	return res
}

// maxRetryAfter bounds how long a receiver can postpone its deliveries.
const maxRetryAfter = 24 * time.Hour

func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0
		}
		d = time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// describe says why an attempt failed in words safe to store and show:
// without the URL (a subscriber may keep a token in its query string) and
// without the addresses the host resolved to (the API must not be a way
// to map internal DNS). This text is stored, shown by the API and put on
// spans.
func describe(err error) string {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var hostErr x509.HostnameError
	var recErr tls.RecordHeaderError
	var ne net.Error
	switch {
	case errors.Is(err, egress.ErrBlocked):
		return "refused: the host resolves to an address webhooks may not reach (loopback, private, link-local or otherwise internal); an operator can allow it with WEBHOOK_ALLOW_CIDRS"
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return "the host name does not resolve"
	case errors.As(err, &dnsErr):
		return "the host name could not be resolved"
	case errors.As(err, &ne) && ne.Timeout():
		return "timed out: no answer within the delivery timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "the connection was refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "the connection was reset"
	case errors.As(err, &certErr), errors.As(err, &hostErr):
		return "the endpoint's TLS certificate does not verify for its host name"
	case errors.As(err, &recErr):
		return "the endpoint does not speak TLS on that port"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the connection closed before a response"
	}
	return "the connection failed"
}

// RetryDelay returns the delay before attempt n+1 after attempt n (1-based)
// failed, as the retry schedule says, with ±20% jitter; false when the
// schedule is exhausted.
func RetryDelay(schedule []time.Duration, n int) (time.Duration, bool) {
	if n >= len(schedule) {
		return 0, false
	}
	d := schedule[n]
	if d <= 0 {
		return 0, true
	}
	j := 0.8 + 0.4*rand.Float64()
	return time.Duration(float64(d) * j), true
}

// thin replaces an oversized event's data with a dataref to it: the
// documented rule for bodies over the limit. The event's own signature then
// no longer verifies; the receiver fetches the full event from dataref.
func thin(body []byte, dataref string) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	delete(m, "data")
	delete(m, "data_base64")
	ref, _ := json.Marshal(dataref)
	m["dataref"] = ref
	m["tenancytruncated"] = json.RawMessage("true")
	return json.Marshal(m)
}

// Sign returns the webhook-signature header value: one "v1,<base64>" per
// key, space-separated, each an HMAC-SHA256 of "id.timestamp.body".
func Sign(keys [][]byte, msgID string, ts time.Time, body []byte) string {
	var b strings.Builder
	unix := strconv.FormatInt(ts.Unix(), 10)
	for i, k := range keys {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(msgID))
		m.Write([]byte{'.'})
		m.Write([]byte(unix))
		m.Write([]byte{'.'})
		m.Write(body)
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(m.Sum(nil)))
	}
	return b.String()
}
