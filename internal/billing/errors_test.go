package billing

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestDefaultHTTPClient(t *testing.T) {
	c, err := New(Config{URL: "https://billing.example.com/", Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	if c.hc.Timeout != 10*time.Second || c.hc.CheckRedirect == nil {
		t.Errorf("default client: timeout %v, redirect check set %v; want 10s and set", c.hc.Timeout, c.hc.CheckRedirect != nil)
	}
	if c.base != "https://billing.example.com" {
		t.Errorf("base %q", c.base)
	}
	own := &http.Client{}
	if c, _ := New(Config{URL: "https://billing.example.com", Token: "tok", HTTPClient: own}); c.hc != own {
		t.Error("the configured HTTP client is not used")
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"7", 7 * time.Second},
		{" 7 ", 7 * time.Second},
		{"-3", 0},
		{"99999999999999999999", maxRetryAfter * time.Second},
		{"Sun, 01 Mar 2026 12:00:30 GMT", 30 * time.Second},
		{"Sun, 01 Mar 2026 11:00:00 GMT", 0},
		{"soon", 0},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.in, now); got != tt.want {
			t.Errorf("retryAfter(%q) = %v; want %v", tt.in, got, tt.want)
		}
	}
}

func TestErrorKinds(t *testing.T) {
	tests := []struct {
		name      string
		err       *Error
		notFound  bool
		exists    bool
		temporary bool
		text      string
	}{
		{"404 problem", &Error{Status: 404, Type: "/problems/account-not-found", Title: "Account not found", Detail: `tenant "t" has no account`, Method: "GET", Path: "/v1/accounts/t"},
			true, false, false, `billing: GET /v1/accounts/t: 404 Account not found: tenant "t" has no account`},
		{"404 page", &Error{Status: 404, Title: "Not Found", Method: "DELETE", Path: "/v1/accounts/t"}, false, false, false, "billing: DELETE /v1/accounts/t: 404 Not Found"},
		{"409 on create", &Error{Status: 409, Type: "about:blank", Title: "Conflict", Method: "POST", Path: "/v1/accounts"}, false, true, false, "billing: POST /v1/accounts: 409 Conflict"},
		{"409 elsewhere", &Error{Status: 409, Type: "about:blank", Title: "Conflict", Method: "PUT", Path: "/v1/accounts/t/plan"}, false, false, false, "billing: PUT /v1/accounts/t/plan: 409 Conflict"},
		{"408", &Error{Status: 408, Type: "about:blank"}, false, false, true, "billing:  : 408"},
		{"429", &Error{Status: 429}, false, false, true, "billing:  : 429"},
		{"502", &Error{Status: 502}, false, false, true, "billing:  : 502"},
		{"422", &Error{Status: 422}, false, false, false, "billing:  : 422"},
		{"not sent", &Error{Title: "Invalid argument", Detail: "x", Method: "GET", Path: "/v1/accounts/"}, false, false, false, "billing: GET /v1/accounts/: not sent: Invalid argument: x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errors.Is(tt.err, ErrNotFound); got != tt.notFound {
				t.Errorf("ErrNotFound: %v", got)
			}
			if got := errors.Is(tt.err, ErrExists); got != tt.exists {
				t.Errorf("ErrExists: %v", got)
			}
			if got := tt.err.Temporary(); got != tt.temporary {
				t.Errorf("Temporary: %v", got)
			}
			if got := tt.err.Error(); got != tt.text {
				t.Errorf("Error() = %q; want %q", got, tt.text)
			}
		})
	}
}

func TestExcerpt(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"  plain\r\n\ttext  ", "plain text"},
		{"bad \xff byte\x00", "bad \uFFFD byte"},
	}
	for _, tt := range tests {
		if got := excerpt([]byte(tt.in)); got != tt.want {
			t.Errorf("excerpt(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}
