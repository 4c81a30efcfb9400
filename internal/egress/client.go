package egress

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// Dialer returns a *net.Dialer whose Control function enforces the policy
// on the resolved address of every connection attempt. Control runs after
// DNS resolution and before connect, once per candidate address, so a name
// that resolves (or rebinds) to an internal address is refused without a
// packet reaching it.
func (p *Policy) Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{
		Timeout:   timeout,
		KeepAlive: 30 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error {
			return p.checkDial(network, address)
		},
	}
}

func (p *Policy) checkDial(network, address string) error {
	// Only IP networks carry an address this policy can judge; anything
	// else (unix sockets) would sidestep it, so fail closed.
	if !strings.HasPrefix(network, "tcp") && !strings.HasPrefix(network, "udp") {
		return fmt.Errorf("%w: network %q is not an IP network", ErrBlocked, network)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot judge dial address %q: %v", ErrBlocked, address, err)
	}
	return p.Check(ap.Addr())
}

// Client returns an *http.Client for webhook delivery: the policy enforced
// at dial time, no proxy, redirects never followed, timeout as the overall
// limit per request, TLS 1.2 minimum and bounded keep-alive pools.
func (p *Policy) Client(timeout time.Duration) *http.Client {
	tr := &http.Transport{
		// No proxy: a proxy would do the dialling, so HTTP(S)_PROXY in the
		// environment would let every delivery bypass the address check.
		Proxy:       nil,
		DialContext: p.Dialer(timeout).DialContext,
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
		},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		// A redirect is a second destination chosen by the receiver; the
		// 3xx is reported as the delivery's outcome instead of followed.
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
