package delivery

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/egress"
)

// TestDescribeHidesAddresses checks that a failed attempt's stored text
// never carries the URL or the addresses its host resolved to, whatever
// failed.
func TestDescribeHidesAddresses(t *testing.T) {
	const secretURL = "https://hooks.example.com/in?token=s3cret"
	blocked := fmt.Errorf("%w: 10.1.2.3 is private, in 10.0.0.0/8", egress.ErrBlocked)
	cases := map[string]struct {
		err  error
		want string
	}{
		"refused address": {&url.Error{Op: "Post", URL: secretURL, Err: &net.OpError{Op: "dial", Net: "tcp",
			Addr: net.TCPAddrFromAddrPort(netip.MustParseAddrPort("10.1.2.3:443")), Err: blocked}}, "WEBHOOK_ALLOW_CIDRS"},
		"unknown host": {&url.Error{Op: "Post", URL: secretURL, Err: &net.OpError{Op: "dial", Net: "tcp",
			Err: &net.DNSError{Err: "no such host", Name: "hooks.example.com", Server: "10.0.0.2:53", IsNotFound: true}}}, "does not resolve"},
		"refused connection": {&url.Error{Op: "Post", URL: secretURL, Err: &net.OpError{Op: "dial", Net: "tcp",
			Addr: net.TCPAddrFromAddrPort(netip.MustParseAddrPort("10.1.2.3:443")), Err: syscall.ECONNREFUSED}}, "refused"},
		"timeout": {&url.Error{Op: "Post", URL: secretURL, Err: context.DeadlineExceeded}, "timed out"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := describe(tc.err)
			if !strings.Contains(got, tc.want) || strings.Contains(got, "10.") || strings.Contains(got, "s3cret") || strings.Contains(got, "hooks.example.com") {
				t.Fatalf("describe(%v) = %q", tc.err, got)
			}
		})
	}
	// A real refused dial, through the policy's client.
	p, err := egress.NewPolicy(nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Client(time.Second).Post("http://127.0.0.1:9/x?token=s3cret", "application/json", nil)
	if got := describe(err); strings.Contains(got, "127.0.0.1") || strings.Contains(got, "s3cret") || !strings.Contains(got, "refused") {
		t.Fatalf("a real refused delivery is described as %q (%v)", got, err)
	}
}
