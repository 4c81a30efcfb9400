package egress_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/egress"
)

// countingServer is an httptest server that records how many connections
// it accepted and requests it served, so a test can prove a refused
// delivery never reached it.
type countingServer struct {
	*httptest.Server
	conns, requests atomic.Int64
}

func newCountingServer(t *testing.T, ln net.Listener, h http.HandlerFunc) *countingServer {
	t.Helper()
	s := &countingServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if h != nil {
			h(w, r)
		}
	}))
	if ln != nil {
		s.Listener.Close()
		s.Listener = ln
	}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func (s *countingServer) assertUntouched(t *testing.T) {
	t.Helper()
	if n := s.conns.Load(); n != 0 {
		t.Errorf("server accepted %d connections, want none", n)
	}
	if n := s.requests.Load(); n != 0 {
		t.Errorf("server saw %d requests, want none", n)
	}
}

// assertBlocked checks that the GET of u failed with ErrBlocked and never
// reached the server.
func (s *countingServer) assertBlocked(t *testing.T, u string, err error) {
	t.Helper()
	if !errors.Is(err, egress.ErrBlocked) {
		t.Fatalf("GET %s: err = %v, want ErrBlocked", u, err)
	}
	s.assertUntouched(t)
}

// get performs a GET and returns the status and body, closing the body.
func get(t *testing.T, c *http.Client, u string) (int, string, error) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestClientLoopbackServer(t *testing.T) {
	tests := []struct {
		name    string
		allow   []string
		blocked bool
	}{
		{name: "default policy", blocked: true},
		{name: "other loopback host allowed", allow: []string{"127.0.0.2/32"}, blocked: true},
		{name: "IPv6 loopback only", allow: []string{"::1/128"}, blocked: true},
		{name: "allowlisted", allow: []string{"127.0.0.1/32"}},
		{name: "dev allowlist", allow: []string{"127.0.0.0/8", "::1/128"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newCountingServer(t, nil, func(w http.ResponseWriter, _ *http.Request) {
				io.WriteString(w, "delivered")
			})
			c := mustPolicy(t, tt.allow...).Client(5 * time.Second)
			status, body, err := get(t, c, srv.URL)
			if tt.blocked {
				srv.assertBlocked(t, srv.URL, err)
				if !strings.Contains(err.Error(), "127.0.0.1") || !strings.Contains(err.Error(), "loopback") {
					t.Errorf("error %q does not name the address and range", err)
				}
				return
			}
			if err != nil || status != http.StatusOK || body != "delivered" {
				t.Fatalf("GET %s = %d %q, %v; want 200 delivered", srv.URL, status, body, err)
			}
			if n := srv.requests.Load(); n != 1 {
				t.Errorf("server saw %d requests, want 1", n)
			}
		})
	}
}

func TestClientHostnameResolvingToLoopback(t *testing.T) {
	tests := []struct {
		name    string
		allow   []string
		blocked bool
	}{
		{name: "default policy", blocked: true},
		{name: "unrelated range allowed", allow: []string{"10.0.0.0/8"}, blocked: true},
		{name: "loopback allowed", allow: []string{"127.0.0.0/8", "::1/128"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newCountingServer(t, nil, nil)
			_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			u := "http://" + net.JoinHostPort("localhost", port) + "/hook"
			status, _, err := get(t, mustPolicy(t, tt.allow...).Client(5*time.Second), u)
			if tt.blocked {
				srv.assertBlocked(t, u, err)
				return
			}
			if err != nil || status != http.StatusOK {
				t.Fatalf("GET %s = %d, %v; want 200", u, status, err)
			}
		})
	}
}

func TestClientDoesNotFollowRedirects(t *testing.T) {
	for _, code := range []int{
		http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect,
	} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			target := newCountingServer(t, nil, nil)
			origin := newCountingServer(t, nil, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target.URL+"/internal", code)
			})
			c := mustPolicy(t, "127.0.0.1/32").Client(5 * time.Second)
			resp, err := c.Post(origin.URL, "application/json", strings.NewReader(`{}`))
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != code {
				t.Errorf("status = %d, want %d returned as is", resp.StatusCode, code)
			}
			if loc := resp.Header.Get("Location"); loc != target.URL+"/internal" {
				t.Errorf("Location = %q, want the redirect target", loc)
			}
			target.assertUntouched(t)
		})
	}
}

func TestClientTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := newCountingServer(t, nil, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	// Registered after the server's Close so it runs first and Close does
	// not wait on a handler that is still blocked.
	t.Cleanup(func() { close(release) })

	const timeout = 200 * time.Millisecond
	c := mustPolicy(t, "127.0.0.1/32").Client(timeout)
	// The guard only stops a broken client from hanging the test; it is
	// far longer than the elapsed-time bound below.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := c.Do(req)
	elapsed := time.Since(start)
	if resp != nil {
		resp.Body.Close()
	}
	var ue *url.Error
	if !errors.As(err, &ue) || !ue.Timeout() {
		t.Fatalf("GET against slow handler: err = %v, want a timeout", err)
	}
	if errors.Is(err, egress.ErrBlocked) {
		t.Fatalf("timeout reported as a policy refusal: %v", err)
	}
	if elapsed > 5*time.Second {
		t.Errorf("request took %v, want about %v", elapsed, timeout)
	}
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("server saw %d requests, want 1 (the timeout must be on the request, not the dial)", n)
	}
}

// nonLoopbackListener listens on an address of this host outside
// 127.0.0.0/8 when there is one, because net/http never proxies requests
// to loopback hosts and so only such an address shows the environment's
// proxy being ignored.
func nonLoopbackListener(t *testing.T) net.Listener {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil || ipn.IP.IsLoopback() {
			continue
		}
		ln, err := net.Listen("tcp4", net.JoinHostPort(ipn.IP.String(), "0"))
		if err == nil {
			return ln
		}
	}
	return nil
}

func TestClientIgnoresProxyEnvironment(t *testing.T) {
	proxy := newCountingServer(t, nil, func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "via proxy")
	})
	for _, k := range []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"} {
		t.Setenv(k, proxy.URL)
	}
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")

	ln := nonLoopbackListener(t)
	if ln == nil {
		t.Log("no non-loopback IPv4 address; falling back to loopback, which net/http would not proxy anyway")
	}
	target := newCountingServer(t, ln, func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "direct")
	})
	host, _, err := net.SplitHostPort(target.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	// The proxy is allowlisted too, so using it would succeed and be seen
	// rather than fail on the policy.
	c := mustPolicy(t, host, "127.0.0.1/32").Client(5 * time.Second)

	// http.ProxyFromEnvironment reads the environment once per process, so
	// if an earlier test ran first the request below could go direct even
	// with it configured; the field is what guarantees no proxy.
	tr, ok := c.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("Transport is %T, want *http.Transport", c.Transport)
	}
	if tr.Proxy != nil {
		t.Error("Transport.Proxy is set; a proxy would dial on the policy's behalf")
	}

	status, body, err := get(t, c, target.URL)
	if err != nil || status != http.StatusOK || body != "direct" {
		t.Fatalf("GET %s = %d %q, %v; want 200 direct", target.URL, status, body, err)
	}
	if n := target.requests.Load(); n != 1 {
		t.Errorf("target saw %d requests, want 1", n)
	}
	proxy.assertUntouched(t)
}

func TestClientSettings(t *testing.T) {
	const timeout = 7 * time.Second
	c := mustPolicy(t).Client(timeout)
	if c.Timeout != timeout {
		t.Errorf("Timeout = %v, want %v", c.Timeout, timeout)
	}
	if c.CheckRedirect == nil || !errors.Is(c.CheckRedirect(nil, nil), http.ErrUseLastResponse) {
		t.Error("CheckRedirect does not return http.ErrUseLastResponse")
	}
	tr, ok := c.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("Transport is %T, want *http.Transport", c.Transport)
	}
	if tr.TLSClientConfig == nil || tr.TLSClientConfig.MinVersion != tls.VersionTLS12 {
		t.Errorf("TLS MinVersion is not TLS 1.2: %+v", tr.TLSClientConfig)
	}
	if !tr.ForceAttemptHTTP2 {
		t.Error("ForceAttemptHTTP2 is false")
	}
	if tr.MaxIdleConnsPerHost != 4 {
		t.Errorf("MaxIdleConnsPerHost = %d, want 4", tr.MaxIdleConnsPerHost)
	}
	if tr.IdleConnTimeout != 90*time.Second {
		t.Errorf("IdleConnTimeout = %v, want 90s", tr.IdleConnTimeout)
	}
	// Any other dial hook would take precedence over the policy's.
	//lint:ignore SA1019 the deprecated hooks still bypass DialContext if set
	if tr.DialContext == nil || tr.DialTLSContext != nil || tr.Dial != nil || tr.DialTLS != nil {
		t.Error("dialing does not go only through the policy's DialContext")
	}
}

func TestDialer(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	tests := []struct {
		name, network, addr string
		allow               []string
		blocked             bool
	}{
		{name: "loopback refused", network: "tcp", addr: ln.Addr().String(), blocked: true},
		{name: "loopback allowlisted", network: "tcp", addr: ln.Addr().String(), allow: []string{"127.0.0.1/32"}},
		{name: "metadata refused", network: "tcp", addr: "169.254.169.254:80", blocked: true},
		{name: "udp checked too", network: "udp", addr: "10.0.0.1:53", blocked: true},
		{name: "unix socket refused", network: "unix", addr: "/var/run/docker.sock", allow: []string{"0.0.0.0/0", "::/0"}, blocked: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := mustPolicy(t, tt.allow...).Dialer(2*time.Second).Dial(tt.network, tt.addr)
			if conn != nil {
				conn.Close()
			}
			if tt.blocked != errors.Is(err, egress.ErrBlocked) {
				t.Fatalf("Dial(%s, %s) = %v, want blocked=%v", tt.network, tt.addr, err, tt.blocked)
			}
			if !tt.blocked && err != nil {
				t.Fatalf("Dial(%s, %s): %v", tt.network, tt.addr, err)
			}
		})
	}
}
