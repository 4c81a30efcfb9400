// Package egress keeps webhook deliveries from reaching internal networks
// (SSRF). Addresses are judged at connect time, on the IP actually dialled
// after DNS resolution, so hostnames that resolve to internal addresses and
// DNS rebinding between validation and delivery are both caught.
package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
)

// ErrBlocked is wrapped by every error that refuses a destination address,
// so callers can tell a policy refusal from a network failure with
// errors.Is.
var ErrBlocked = errors.New("destination address not allowed")

// allowEnv is named in refusals because an operator reading a failed
// delivery needs to know the knob that changes the outcome.
const allowEnv = "WEBHOOK_ALLOW_CIDRS"

// Policy decides which IP addresses outgoing webhook connections may reach.
// Internal, special-purpose and non-routable ranges are denied unless an
// allowlist entry covers the address. A nil *Policy denies the same ranges
// with an empty allowlist.
type Policy struct {
	allow []netip.Prefix
}

// NewPolicy returns the default-deny-internal policy plus the allowlist
// (CIDRs or single IPs, IPv4 or IPv6). The error names the bad entry.
func NewPolicy(allow []string) (*Policy, error) {
	p := &Policy{}
	for _, entry := range allow {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		pfx, err := parseAllowEntry(entry)
		if err != nil {
			return nil, err
		}
		p.allow = append(p.allow, pfx)
	}
	return p, nil
}

// ParseAllowList parses a comma and/or space separated list, as in
// WEBHOOK_ALLOW_CIDRS="10.0.0.0/8, 127.0.0.1/32", validating every entry so
// a typo fails at startup rather than as a refused delivery later.
func ParseAllowList(s string) ([]string, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	for _, f := range fields {
		if _, err := parseAllowEntry(f); err != nil {
			return nil, err
		}
	}
	return fields, nil
}

func parseAllowEntry(entry string) (netip.Prefix, error) {
	bad := func(why string) (netip.Prefix, error) {
		return netip.Prefix{}, fmt.Errorf("%s entry %q: %s", allowEnv, entry, why)
	}
	var pfx netip.Prefix
	if strings.Contains(entry, "/") {
		p, err := netip.ParsePrefix(entry)
		if err != nil {
			return bad("not a CIDR range; write it like 10.0.0.0/8 or fd00::/8")
		}
		pfx = p
	} else {
		a, err := netip.ParseAddr(entry)
		if err != nil {
			return bad("not an IP address or CIDR range; write it like 127.0.0.1, 10.0.0.0/8 or ::1/128")
		}
		if a.Zone() != "" {
			return bad("IPv6 zones are not allowed; list the address without %zone")
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	if pfx.Addr().Is4In6() {
		// Check judges IPv4-mapped addresses as IPv4, so a mapped range
		// would never match anything; say so rather than silently ignore it.
		return bad("IPv4-mapped ranges never match; write the range in IPv4 form")
	}
	if m := pfx.Masked(); m != pfx {
		// Host bits usually mean a slip (10.0.0.5/8 meant for one host), and
		// silently widening a security allowlist is the wrong way to guess.
		return bad(fmt.Sprintf("has host bits set; write %s for the whole range or %s for the one address",
			m, netip.PrefixFrom(pfx.Addr(), pfx.Addr().BitLen())))
	}
	return pfx, nil
}

// Check returns nil if ip may be reached, else an error wrapping ErrBlocked
// that names the address, the range it falls in and how to allow it.
func (p *Policy) Check(ip netip.Addr) error {
	if !ip.IsValid() {
		return fmt.Errorf("%w: the zero (invalid) IP address cannot be dialled", ErrBlocked)
	}
	why := p.judge(ip)
	if why == "" {
		return nil
	}
	return fmt.Errorf("%w: %s; if webhooks must reach it, add the address or its range to %s", ErrBlocked, why, allowEnv)
}

func (p *Policy) allows(a netip.Addr) bool {
	if p == nil {
		return false
	}
	for _, pfx := range p.allow {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// judge returns "" if a may be reached, else why not, as a clause naming the
// address and its range.
func (p *Policy) judge(ip netip.Addr) string {
	// Prefix.Contains never matches a zoned address, so match without the
	// zone; the zone only selects the interface, not the destination.
	a := ip.WithZone("")
	if p.allows(a) {
		return ""
	}
	if v4, via, ok := embeddedIPv4(a); ok {
		// These forms reach (or on a dual-stack socket, are) the embedded
		// IPv4 host, so that host is what gets judged, allowlist included.
		why := p.judge(v4)
		if why == "" {
			return ""
		}
		return fmt.Sprintf("%s is %s for %s, and %s", ip, via, v4, why)
	}
	table := blockedV6
	if a.Is4() {
		table = blockedV4
	}
	for _, r := range table {
		if r.prefix.Contains(a) {
			shown := r.shown
			if shown == "" {
				shown = r.prefix.String()
			}
			return fmt.Sprintf("%s is %s, in %s", ip, r.name, shown)
		}
	}
	if ip.Zone() != "" {
		// A zone only makes sense for link-scoped destinations, so treat it
		// as one rather than trust that the address part is global.
		return fmt.Sprintf("%s is zone-scoped, so treated as link-local", ip)
	}
	if a.Is6() && !globalUnicastV6.Contains(a) {
		// Everything allocated for the public IPv6 internet lies in
		// 2000::/3; the rest is special-purpose or unassigned, so deny it
		// rather than wait for a new special range to be abused.
		return fmt.Sprintf("%s is outside IPv6 global unicast space, %s", ip, globalUnicastV6)
	}
	return ""
}

var (
	ipv4Mapped      = netip.MustParsePrefix("::ffff:0:0/96")
	ipv4Compatible  = netip.MustParsePrefix("::/96")
	nat64           = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour       = netip.MustParsePrefix("2002::/16")
	globalUnicastV6 = netip.MustParsePrefix("2000::/3")
)

// embeddedIPv4 reports the IPv4 address an IPv6 address stands for or
// tunnels to.
func embeddedIPv4(a netip.Addr) (v4 netip.Addr, via string, ok bool) {
	if !a.Is6() {
		return netip.Addr{}, "", false
	}
	b := a.As16()
	switch {
	case ipv4Mapped.Contains(a):
		return a.Unmap(), "IPv4-mapped (" + ipv4Mapped.String() + ")", true
	case nat64.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), "NAT64 (" + nat64.String() + ")", true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), "6to4 (" + sixToFour.String() + ")", true
	case ipv4Compatible.Contains(a) && a != netip.IPv6Unspecified() && a != netip.IPv6Loopback():
		// :: and ::1 share the deprecated IPv4-compatible prefix but are
		// the IPv6 unspecified and loopback addresses, named as such below.
		return netip.AddrFrom4([4]byte(b[12:16])), "IPv4-compatible (" + ipv4Compatible.String() + ")", true
	}
	return netip.Addr{}, "", false
}

type blockedRange struct {
	prefix netip.Prefix
	name   string
	// shown is the range reported when prefix is a single address singled
	// out only to give it a more specific name than its enclosing range.
	shown string
}

func r(cidr, name string) blockedRange {
	return blockedRange{prefix: netip.MustParsePrefix(cidr), name: name}
}

// The first matching entry names the range, so specific addresses come
// before the ranges that contain them.
var blockedV4 = []blockedRange{
	{prefix: netip.MustParsePrefix("169.254.169.254/32"), name: "link-local (cloud metadata)", shown: "169.254.0.0/16"},
	r("0.0.0.0/8", `unspecified ("this network")`),
	r("127.0.0.0/8", "loopback"),
	r("10.0.0.0/8", "private"),
	r("172.16.0.0/12", "private"),
	r("192.168.0.0/16", "private"),
	r("169.254.0.0/16", "link-local"),
	r("100.64.0.0/10", "CGNAT shared address space"),
	r("224.0.0.0/4", "multicast"),
	r("255.255.255.255/32", "limited broadcast"),
	r("240.0.0.0/4", "reserved for future use"),
	r("192.0.0.0/24", "IETF protocol assignments"),
	r("192.0.2.0/24", "documentation (TEST-NET-1)"),
	r("198.51.100.0/24", "documentation (TEST-NET-2)"),
	r("203.0.113.0/24", "documentation (TEST-NET-3)"),
	r("198.18.0.0/15", "benchmarking"),
	r("192.88.99.0/24", "6to4 relay anycast"),
}

var blockedV6 = []blockedRange{
	r("::/128", "unspecified"),
	r("::1/128", "loopback"),
	{prefix: netip.MustParsePrefix("fd00:ec2::254/128"), name: "unique local (cloud metadata)", shown: "fc00::/7"},
	r("fc00::/7", "unique local (private)"),
	r("fe80::/10", "link-local"),
	r("fec0::/10", "site-local"),
	r("ff00::/8", "multicast"),
	r("100::/64", "discard-only"),
	// Teredo tunnels to an IPv4 host chosen by the address's obfuscated
	// bits and a relay, which no check here can see through.
	r("2001::/32", "Teredo (tunnels to arbitrary IPv4 hosts)"),
	r("2001:2::/48", "benchmarking"),
	r("2001:db8::/32", "documentation"),
	r("3fff::/20", "documentation"),
	// Local-use NAT64 (RFC 8215) translates into site-chosen networks and
	// its embedded address position depends on the prefix length.
	r("64:ff9b:1::/48", "local-use NAT64"),
}
