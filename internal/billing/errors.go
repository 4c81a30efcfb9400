package billing

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Error kinds that callers act on; test with errors.Is.
var (
	// ErrNotFound: billing has no account for the tenant (a 404 problem).
	ErrNotFound = errors.New("billing: account not found")
	// ErrExists: a create found an account for the tenant (a 409 problem).
	ErrExists = errors.New("billing: account already exists")
)

// Error is a request billing refused or failed (a non-2xx response), or
// one the client refused to send. Transport failures are not *Error: they
// are returned wrapped as they come, and are worth retrying.
type Error struct {
	// Status is billing's HTTP status, or 0 when the client did not send
	// the request because an argument cannot be sent (an empty tenant id,
	// an invalid idempotency key).
	Status int
	// Type, Title and Detail come from billing's problem object. Type is
	// empty when the body was not a problem (e.g. a proxy's HTML page);
	// Title is then the status text and Detail the start of the body.
	Type, Title, Detail string
	// RetryAfter is the wait billing asked for in Retry-After, if any.
	RetryAfter time.Duration
	// Method and Path are the request's, Path relative to the base URL.
	Method, Path string
}

// Error says what was refused and why, never the token.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "billing: %s %s: ", e.Method, e.Path)
	if e.Status == 0 {
		b.WriteString("not sent:")
	} else {
		b.WriteString(strconv.Itoa(e.Status))
	}
	if e.Title != "" {
		b.WriteString(" " + e.Title)
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	return b.String()
}

// Temporary reports whether retrying the same request may succeed.
func (e *Error) Temporary() bool {
	return e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// RetryAfterDuration is the wait billing asked for, or 0.
func (e *Error) RetryAfterDuration() time.Duration { return e.RetryAfter }

// Unwrap returns ErrNotFound for a 404 and ErrExists for a 409 to a create
// (the only POST). Only problem responses (Type set) count: a 404 page from
// a proxy or a wrong BILLING_URL says nothing about the account, and
// reading it as "no account" would let a saga skip billing silently.
func (e *Error) Unwrap() error {
	if e.Type == "" {
		return nil
	}
	switch {
	case e.Status == http.StatusNotFound:
		return ErrNotFound
	case e.Status == http.StatusConflict && e.Method == http.MethodPost:
		return ErrExists
	}
	return nil
}

// maxDetail bounds the part of a non-problem body kept as the detail: it
// ends up in logs and in the saga's recorded reason.
const maxDetail = 256

// newError describes a non-2xx response from its (already read) body.
func newError(method, p string, resp *http.Response, body []byte) *Error {
	e := &Error{Status: resp.StatusCode, Method: method, Path: p, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var prob struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if json.Unmarshal(body, &prob) == nil && (prob.Type != "" || prob.Title != "" || prob.Detail != "" || prob.Status != 0) {
		// RFC 9457: a problem without a type is "about:blank".
		e.Type = prob.Type
		if e.Type == "" {
			e.Type = "about:blank"
		}
		e.Title, e.Detail = prob.Title, prob.Detail
		if e.Title == "" {
			e.Title = http.StatusText(resp.StatusCode)
		}
		return e
	}
	e.Title = http.StatusText(resp.StatusCode)
	e.Detail = excerpt(body)
	return e
}

// excerpt makes the start of a body fit for one log line.
func excerpt(body []byte) string {
	s := strings.ToValidUTF8(string(body), "\uFFFD")
	s = strings.Join(strings.FieldsFunc(s, unicode.IsSpace), " ")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
	if len(s) <= maxDetail {
		return s
	}
	cut := maxDetail
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// maxRetryAfter keeps an absurd Retry-After from overflowing a Duration.
const maxRetryAfter = 1 << 31 // seconds, about 68 years

// retryAfter parses Retry-After: delay-seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	secs, err := strconv.ParseInt(v, 10, 64)
	if err == nil || errors.Is(err, strconv.ErrRange) {
		// On overflow ParseInt returns the extreme of the sign given.
		return time.Duration(min(max(secs, 0), maxRetryAfter)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}
