package egress_test

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tenancyhq/tenancy/internal/egress"
)

func mustPolicy(t *testing.T, allow ...string) *egress.Policy {
	t.Helper()
	p, err := egress.NewPolicy(allow)
	if err != nil {
		t.Fatalf("NewPolicy(%q): %v", allow, err)
	}
	return p
}

// assertCheck checks ip against p; want lists substrings the refusal must
// contain, and none means ip must be allowed.
func assertCheck(t *testing.T, p *egress.Policy, addr string, want ...string) {
	t.Helper()
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		t.Fatalf("bad test address %q: %v", addr, err)
	}
	err = p.Check(ip)
	if len(want) == 0 {
		if err != nil {
			t.Errorf("Check(%s) = %v, want allowed", addr, err)
		}
		return
	}
	if err == nil {
		t.Errorf("Check(%s) = nil, want blocked (%q)", addr, want)
		return
	}
	if !errors.Is(err, egress.ErrBlocked) {
		t.Errorf("Check(%s) = %v, does not wrap ErrBlocked", addr, err)
	}
	msg := err.Error()
	for _, w := range append(want, ip.String(), "WEBHOOK_ALLOW_CIDRS") {
		if !strings.Contains(msg, w) {
			t.Errorf("Check(%s) = %q, missing %q", addr, msg, w)
		}
	}
}

func TestCheckDefaultPolicy(t *testing.T) {
	p := mustPolicy(t)
	tests := []struct {
		addr string
		want []string // substrings of the refusal; empty means allowed
	}{
		// Public addresses.
		{"8.8.8.8", nil},
		{"1.1.1.1", nil},
		{"93.184.216.34", nil},
		{"2606:4700:4700::1111", nil},
		{"2001:4860:4860::8888", nil},
		// Just outside blocked ranges.
		{"9.255.255.255", nil},
		{"11.0.0.0", nil},
		{"172.15.255.255", nil},
		{"172.32.0.0", nil},
		{"100.63.255.255", nil},
		{"100.128.0.0", nil},
		{"223.255.255.255", nil},
		{"198.17.255.255", nil},
		{"198.20.0.0", nil},
		{"192.0.1.1", nil},
		{"192.88.98.1", nil},

		// IPv4 unspecified / this network.
		{"0.0.0.0", []string{"unspecified", "0.0.0.0/8"}},
		{"0.1.2.3", []string{"this network", "0.0.0.0/8"}},
		// Loopback.
		{"127.0.0.1", []string{"loopback", "127.0.0.0/8"}},
		{"127.255.255.254", []string{"loopback", "127.0.0.0/8"}},
		// Private.
		{"10.0.0.1", []string{"private", "10.0.0.0/8"}},
		{"10.255.255.255", []string{"private", "10.0.0.0/8"}},
		{"172.16.0.1", []string{"private", "172.16.0.0/12"}},
		{"172.31.255.255", []string{"private", "172.16.0.0/12"}},
		{"192.168.1.1", []string{"private", "192.168.0.0/16"}},
		// Link-local and cloud metadata.
		{"169.254.169.254", []string{"169.254.169.254 is link-local (cloud metadata)", "169.254.0.0/16"}},
		{"169.254.1.1", []string{"link-local", "169.254.0.0/16"}},
		// CGNAT.
		{"100.64.0.1", []string{"CGNAT", "100.64.0.0/10"}},
		{"100.127.255.255", []string{"CGNAT", "100.64.0.0/10"}},
		// Multicast.
		{"224.0.0.1", []string{"multicast", "224.0.0.0/4"}},
		{"239.255.255.250", []string{"multicast", "224.0.0.0/4"}},
		// Reserved and broadcast.
		{"240.0.0.1", []string{"reserved", "240.0.0.0/4"}},
		{"255.255.255.255", []string{"broadcast", "255.255.255.255/32"}},
		// IETF protocol assignments.
		{"192.0.0.8", []string{"IETF protocol assignments", "192.0.0.0/24"}},
		// Documentation and benchmarking.
		{"192.0.2.1", []string{"documentation", "192.0.2.0/24"}},
		{"198.51.100.7", []string{"documentation", "198.51.100.0/24"}},
		{"203.0.113.200", []string{"documentation", "203.0.113.0/24"}},
		{"198.18.0.1", []string{"benchmarking", "198.18.0.0/15"}},
		{"198.19.255.255", []string{"benchmarking", "198.18.0.0/15"}},
		// 6to4 relay anycast.
		{"192.88.99.1", []string{"6to4 relay anycast", "192.88.99.0/24"}},

		// IPv6 special addresses.
		{"::", []string{"unspecified", "::/128"}},
		{"::1", []string{"loopback", "::1/128"}},
		{"fc00::1", []string{"unique local", "fc00::/7"}},
		{"fd12:3456::1", []string{"unique local", "fc00::/7"}},
		{"fd00:ec2::254", []string{"cloud metadata", "fc00::/7"}},
		{"fe80::1", []string{"link-local", "fe80::/10"}},
		{"febf::1", []string{"link-local", "fe80::/10"}},
		{"fe80::1%eth0", []string{"link-local", "fe80::/10"}},
		{"fec0::1", []string{"site-local", "fec0::/10"}},
		{"ff02::1", []string{"multicast", "ff00::/8"}},
		{"ff0e::1", []string{"multicast", "ff00::/8"}},
		{"2001:db8::1", []string{"documentation", "2001:db8::/32"}},
		{"100::1", []string{"discard-only", "100::/64"}},
		{"2001::1", []string{"Teredo", "2001::/32"}},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", []string{"Teredo", "2001::/32"}},
		{"4000::1", []string{"global unicast", "2000::/3"}},
		{"2606:4700::1%eth0", []string{"zone-scoped", "link-local"}},

		// IPv4-mapped and IPv4-compatible forms are judged as IPv4.
		{"::ffff:127.0.0.1", []string{"IPv4-mapped", "loopback", "127.0.0.0/8"}},
		{"::ffff:7f00:1", []string{"IPv4-mapped", "loopback", "127.0.0.0/8"}},
		{"::ffff:169.254.169.254", []string{"cloud metadata"}},
		{"::ffff:10.1.2.3", []string{"private", "10.0.0.0/8"}},
		{"::ffff:8.8.8.8", nil},
		{"::127.0.0.1", []string{"IPv4-compatible", "loopback", "127.0.0.0/8"}},
		{"::10.0.0.1", []string{"IPv4-compatible", "private"}},
		// NAT64 embeds the IPv4 destination in the last 32 bits.
		{"64:ff9b::a00:1", []string{"NAT64", "10.0.0.1", "private", "10.0.0.0/8"}},
		{"64:ff9b::169.254.169.254", []string{"NAT64", "cloud metadata"}},
		{"64:ff9b::808:808", nil},
		{"64:ff9b:1::1", []string{"local-use NAT64", "64:ff9b:1::/48"}},
		// 6to4 embeds it in bits 16-47.
		{"2002:c0a8:101::1", []string{"6to4", "192.168.1.1", "private", "192.168.0.0/16"}},
		{"2002:7f00:1::", []string{"6to4", "127.0.0.1", "loopback"}},
		{"2002:808:808::1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			assertCheck(t, p, tt.addr, tt.want...)
		})
	}
}

func TestCheckInvalidAddress(t *testing.T) {
	err := mustPolicy(t).Check(netip.Addr{})
	if !errors.Is(err, egress.ErrBlocked) {
		t.Fatalf("Check(zero Addr) = %v, want ErrBlocked", err)
	}
}

func TestCheckNilPolicyDenies(t *testing.T) {
	var p *egress.Policy
	if err := p.Check(netip.MustParseAddr("127.0.0.1")); !errors.Is(err, egress.ErrBlocked) {
		t.Fatalf("nil Policy Check(127.0.0.1) = %v, want ErrBlocked", err)
	}
}

func TestAllowList(t *testing.T) {
	tests := []struct {
		name    string
		allow   []string
		allowed []string
		blocked []string
	}{
		{
			name:    "single loopback host",
			allow:   []string{"127.0.0.1/32"},
			allowed: []string{"127.0.0.1", "::ffff:127.0.0.1"},
			blocked: []string{"127.0.0.2", "::1", "10.0.0.1"},
		},
		{
			name:    "IPv6 loopback",
			allow:   []string{"::1/128"},
			allowed: []string{"::1"},
			blocked: []string{"127.0.0.1", "::2"},
		},
		{
			name:    "single IP without prefix",
			allow:   []string{"10.1.2.3"},
			allowed: []string{"10.1.2.3"},
			blocked: []string{"10.1.2.4"},
		},
		{
			name:    "single IPv6 without prefix",
			allow:   []string{"fd00::5"},
			allowed: []string{"fd00::5"},
			blocked: []string{"fd00::6"},
		},
		{
			name:    "private range",
			allow:   []string{" 10.0.0.0/8 ", ""},
			allowed: []string{"10.0.0.1", "10.255.0.1", "64:ff9b::a00:1"},
			blocked: []string{"127.0.0.1", "172.16.0.1", "192.168.0.1"},
		},
		{
			name:    "dev loopback",
			allow:   []string{"127.0.0.0/8", "::1/128"},
			allowed: []string{"127.0.0.1", "127.8.9.10", "::1"},
			blocked: []string{"169.254.169.254", "fe80::1"},
		},
		{
			name:    "link-local with zone",
			allow:   []string{"fe80::/10"},
			allowed: []string{"fe80::1%eth0", "fe80::1"},
			blocked: []string{"fec0::1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPolicy(t, tt.allow...)
			for _, a := range tt.allowed {
				assertCheck(t, p, a)
			}
			for _, a := range tt.blocked {
				if err := p.Check(netip.MustParseAddr(a)); !errors.Is(err, egress.ErrBlocked) {
					t.Errorf("Check(%s) = %v, want ErrBlocked", a, err)
				}
			}
		})
	}
}

func TestNewPolicyRejectsBadEntries(t *testing.T) {
	tests := []struct {
		entry string
		want  string
	}{
		{"10.0.0.0/33", "CIDR"},
		{"not-an-ip", "IP address"},
		{"10.0.0", "IP address"},
		{"10.0.0.5/8", "10.0.0.0/8"},
		{"fe80::1%eth0", "zone"},
		{"::ffff:10.0.0.0/104", "IPv4 form"},
		{"example.com", "IP address"},
	}
	for _, tt := range tests {
		t.Run(tt.entry, func(t *testing.T) {
			_, err := egress.NewPolicy([]string{"127.0.0.1/32", tt.entry})
			if err == nil {
				t.Fatalf("NewPolicy accepted %q", tt.entry)
			}
			for _, w := range []string{`"` + tt.entry + `"`, "WEBHOOK_ALLOW_CIDRS", tt.want} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestParseAllowList(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "", want: nil},
		{in: " , ,\t", want: nil},
		{in: "10.0.0.0/8", want: []string{"10.0.0.0/8"}},
		{in: "10.0.0.0/8, 127.0.0.1/32", want: []string{"10.0.0.0/8", "127.0.0.1/32"}},
		{in: "10.0.0.0/8 127.0.0.1/32\n::1/128", want: []string{"10.0.0.0/8", "127.0.0.1/32", "::1/128"}},
		{in: ",10.0.0.0/8,,::1,", want: []string{"10.0.0.0/8", "::1"}},
		{in: "10.0.0.0/8, bogus", wantErr: `"bogus"`},
		{in: "10.0.0.0/8;127.0.0.1/32", wantErr: `"10.0.0.0/8;127.0.0.1/32"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := egress.ParseAllowList(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseAllowList(%q) error = %v, want one naming %s", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAllowList(%q): %v", tt.in, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("ParseAllowList(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if _, err := egress.NewPolicy(got); err != nil {
				t.Fatalf("NewPolicy(ParseAllowList(%q)): %v", tt.in, err)
			}
		})
	}
}
