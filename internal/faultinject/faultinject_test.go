package faultinject_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/faultinject"
)

func TestTakeMatchesAndCountsDown(t *testing.T) {
	var s faultinject.Set
	s.Inject(faultinject.Fault{Method: "post", Path: "/admin/realms/*/roles/*", Times: 2, Status: 503})
	s.Inject(faultinject.Fault{Method: "*", Path: "/v1/accounts", Status: 500})
	for _, tc := range []struct {
		method, target string
		want           int // the Status of the fault taken; 0 for none
	}{
		{"POST", "/admin/realms/acme/roles/a%2Fb", 503}, // an escaped "/" stays in its segment
		{"GET", "/admin/realms/acme/roles/x", 0},
		{"POST", "/admin/realms/acme/roles/a/b", 0},
		{"POST", "/admin/realms/acme/roles/x", 503},
		{"POST", "/admin/realms/acme/roles/x", 0}, // Times is spent
		{"DELETE", "/v1/accounts/", 500},
		{"GET", "/v1/accounts", 500}, // Times 0 is forever
	} {
		f := s.Take(httptest.NewRequest(tc.method, tc.target, nil))
		got := 0
		if f != nil {
			got = f.Status
		}
		if got != tc.want {
			t.Fatalf("%s %s took status %d, want %d", tc.method, tc.target, got, tc.want)
		}
	}
	s.Clear()
	if f := s.Take(httptest.NewRequest("GET", "/v1/accounts", nil)); f != nil {
		t.Fatalf("a cleared set still has %+v", f)
	}
}

func TestSetRetryAfterRoundsUp(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "", time.Millisecond: "1", 1500 * time.Millisecond: "2", 3 * time.Second: "3"} {
		h := http.Header{}
		faultinject.SetRetryAfter(h, d)
		if got := h.Get("Retry-After"); got != want {
			t.Fatalf("Retry-After for %v = %q, want %q", d, got, want)
		}
	}
}

func TestWaitEndsWithTheClientOrTheServer(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	if !faultinject.Wait(r, time.Millisecond, nil) {
		t.Fatal("a short delay did not complete")
	}
	closing := make(chan struct{})
	close(closing)
	if faultinject.Wait(r, time.Minute, closing) {
		t.Fatal("a closing server did not cut the delay short")
	}
}
