package subscriber_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/pkg/events"
	"github.com/tenancyhq/tenancy/pkg/subscriber"
)

// onlyReader hides a body's length, as a chunked request does.
type onlyReader struct{ io.Reader }

// handlerCase is one request to Handler and what must come of it.
type handlerCase struct {
	name       string
	method     string
	body       io.Reader
	header     http.Header
	config     subscriber.Config
	fnErr      error
	wantStatus int
	wantCalled bool
	// wantText must be in the response; hide must not.
	wantText, hide string
	// wantErr is what OnError must be told.
	wantErr error
}

func TestHandler(t *testing.T) {
	secret := mustSecret(t)
	body := mustEvent(t, mustSigner(t, 1), suspended)
	big := bytes.Repeat([]byte(" "), 2048)
	signed := headers(t, eventID, now, body, secret)
	for _, tc := range []handlerCase{
		{name: "delivered", body: bytes.NewReader(body), header: signed, wantStatus: http.StatusNoContent, wantCalled: true},
		{name: "wrong secret", body: bytes.NewReader(body), header: headers(t, eventID, now, body, mustSecret(t)),
			wantStatus: http.StatusUnauthorized, wantText: subscriber.ErrBadSignature.Error(), wantErr: subscriber.ErrBadSignature},
		{name: "stale", body: bytes.NewReader(body), header: headers(t, eventID, now.Add(-time.Hour), body, secret),
			wantStatus: http.StatusUnauthorized, wantText: subscriber.ErrStale.Error(), wantErr: subscriber.ErrStale},
		{name: "no headers", body: bytes.NewReader(body), header: http.Header{},
			wantStatus: http.StatusUnauthorized, wantErr: subscriber.ErrMissingHeaders},
		{name: "authentic, not an event", body: strings.NewReader("[1]"), header: headers(t, eventID, now, []byte("[1]"), secret),
			wantStatus: http.StatusBadRequest, wantErr: subscriber.ErrMalformed},
		{name: "too large, length announced", body: bytes.NewReader(big), header: headers(t, eventID, now, big, secret),
			config: subscriber.Config{MaxBody: 1024}, wantStatus: http.StatusRequestEntityTooLarge, wantErr: subscriber.ErrTooLarge},
		{name: "too large, length not announced", body: onlyReader{bytes.NewReader(big)}, header: headers(t, eventID, now, big, secret),
			config: subscriber.Config{MaxBody: 1024}, wantStatus: http.StatusRequestEntityTooLarge, wantErr: subscriber.ErrTooLarge},
		{name: "event keys unavailable", body: bytes.NewReader(body), header: signed,
			config: subscriber.Config{EventKeys: failingKeys{}}, wantStatus: http.StatusServiceUnavailable, wantErr: subscriber.ErrKeysUnavailable},
		{name: "receiver fails", body: bytes.NewReader(body), header: signed,
			fnErr: errors.New("db at 10.0.0.7 refused"), wantStatus: http.StatusInternalServerError, wantCalled: true, hide: "10.0.0.7"},
		{name: "receiver refuses the payload", body: bytes.NewReader(body), header: signed,
			fnErr:      fmt.Errorf("table billing_7: %w", subscriber.ErrPayloadType),
			wantStatus: http.StatusBadRequest, wantCalled: true, wantText: subscriber.ErrPayloadType.Error(), hide: "billing_7"},
		{name: "GET", method: http.MethodGet, body: http.NoBody, header: http.Header{}, wantStatus: http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) { checkHandler(t, secret, tc) })
	}
}

// checkHandler serves tc's request with a handler verifying with secret.
func checkHandler(t *testing.T, secret string, tc handlerCase) {
	type report struct {
		status int
		err    error
	}
	c := tc.config
	c.Secrets = []string{secret}
	var got *subscriber.Delivery
	var reports []report
	h := subscriber.Handler(mustVerifier(t, c),
		func(ctx context.Context, d *subscriber.Delivery) error {
			got = d
			return tc.fnErr
		},
		subscriber.OnError(func(r *http.Request, status int, err error) { reports = append(reports, report{status, err}) }))
	method := cmp.Or(tc.method, http.MethodPost)
	req := httptest.NewRequest(method, "/hooks", tc.body)
	for k, v := range tc.header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)

	if rec.Code != tc.wantStatus {
		t.Fatalf("status %d, want %d (%s)", rec.Code, tc.wantStatus, rec.Body)
	}
	if (got != nil) != tc.wantCalled {
		t.Fatalf("fn called: %v, want %v", got != nil, tc.wantCalled)
	}
	if tc.wantCalled && (got.ID != eventID || got.Sequence != 42 || got.TenantID != tenantID) {
		t.Errorf("fn got id %q seq %d tenant %q", got.ID, got.Sequence, got.TenantID)
	}
	if !strings.Contains(rec.Body.String(), tc.wantText) || (tc.hide != "" && strings.Contains(rec.Body.String(), tc.hide)) {
		t.Errorf("response %q: want it to say %q and not %q", rec.Body, tc.wantText, tc.hide)
	}
	if tc.wantStatus == http.StatusNoContent {
		if len(reports) != 0 {
			t.Errorf("OnError called for a success: %v", reports)
		}
		return
	}
	if len(reports) != 1 || reports[0].status != tc.wantStatus || (tc.wantErr != nil && !errors.Is(reports[0].err, tc.wantErr)) {
		t.Errorf("OnError calls %v, want one with %d and %v", reports, tc.wantStatus, tc.wantErr)
	}
}

func TestStatusCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, http.StatusNoContent},
		{subscriber.ErrMissingHeaders, http.StatusUnauthorized},
		{subscriber.ErrBadTimestamp, http.StatusUnauthorized},
		{subscriber.ErrStale, http.StatusUnauthorized},
		{subscriber.ErrBadSignature, http.StatusUnauthorized},
		{fmt.Errorf("%w: %w", subscriber.ErrEventSignature, events.ErrUnknownKey), http.StatusUnauthorized},
		{subscriber.ErrTooLarge, http.StatusRequestEntityTooLarge},
		{fmt.Errorf("x: %w", subscriber.ErrMalformed), http.StatusBadRequest},
		{subscriber.ErrTruncated, http.StatusBadRequest},
		{subscriber.ErrPayloadType, http.StatusBadRequest},
		{fmt.Errorf("%w: %w", subscriber.ErrKeysUnavailable, errors.New("dial")), http.StatusServiceUnavailable},
		{errors.New("anything else"), http.StatusInternalServerError},
	} {
		if got := subscriber.StatusCode(tc.err); got != tc.want {
			t.Errorf("StatusCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// unreadable fails the test if anything reads it.
type unreadable struct{ t *testing.T }

func (u unreadable) Read([]byte) (int, error) {
	u.t.Error("the body was read")
	return 0, io.EOF
}

// TestTooLargeIsNotRead checks that an announced oversized body is refused
// before it is read, so a stray client cannot make the receiver buffer it.
func TestTooLargeIsNotRead(t *testing.T) {
	secret := mustSecret(t)
	v := mustVerifier(t, subscriber.Config{Secrets: []string{secret}, MaxBody: 1024})
	r := httptest.NewRequest(http.MethodPost, "/", unreadable{t})
	r.ContentLength = 1025
	r.Header = headers(t, eventID, now, nil, secret)
	if _, err := v.VerifyRequest(r); !errors.Is(err, subscriber.ErrTooLarge) {
		t.Fatalf("error %v, want ErrTooLarge", err)
	}
}

// TestTooLargeClosesTheConnection sends an oversized body of undeclared
// length to a real server: the handler answers 413 and the server closes
// the connection instead of draining the rest.
func TestTooLargeClosesTheConnection(t *testing.T) {
	secret := mustSecret(t)
	big := bytes.Repeat([]byte(" "), 64<<10)
	v, err := subscriber.NewVerifier(subscriber.Config{Secrets: []string{secret}, MaxBody: 1024})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(subscriber.Handler(v, func(context.Context, *subscriber.Delivery) error { return nil }))
	defer srv.Close()
	req, err := http.NewRequest(http.MethodPost, srv.URL, onlyReader{bytes.NewReader(big)})
	if err != nil {
		t.Fatal(err)
	}
	req.Header = headers(t, eventID, time.Now(), big, secret)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Fatalf("status %d, connection closed %v; want 413 and closed", resp.StatusCode, resp.Close)
	}
}
