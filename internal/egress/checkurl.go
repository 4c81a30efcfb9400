package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// CheckURL validates a webhook URL at subscription time: absolute, scheme
// https (or http when allowHTTP), a host, no user info, no fragment; an IP
// literal host must pass Check. Hostnames are not resolved here, because
// what they resolve to can change before delivery; the dialer judges them
// at connect time. The errors are sentences meant for whoever registers the
// URL.
func (p *Policy) CheckURL(raw string, allowHTTP bool) (*url.URL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, errors.New("webhook URL is empty; give an absolute URL such as https://hooks.example.com/tenancy")
	}
	if strings.TrimSpace(raw) != raw {
		return nil, errors.New("webhook URL has leading or trailing spaces; remove them")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// The text is not echoed: it may hold a password we cannot find
		// to redact.
		return nil, fmt.Errorf("webhook URL is not a valid URL (%v); give an absolute URL such as https://hooks.example.com/tenancy", unwrapURLError(err))
	}
	// Errors quote the URL without its password, since they are logged
	// and returned to API callers.
	shown := u.Redacted()
	if !u.IsAbs() {
		return nil, fmt.Errorf("webhook URL %q is not absolute; give the full URL starting with https://", shown)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !allowHTTP {
			return nil, fmt.Errorf("webhook URL %q uses plain http; use https so deliveries cannot be read or altered in transit", shown)
		}
	default:
		return nil, fmt.Errorf("webhook URL %q has scheme %q; only https is supported", shown, u.Scheme)
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return nil, fmt.Errorf("webhook URL %q has no host; write it as %s://host/path", shown, u.Scheme)
	}
	if u.User != nil {
		// Credentials in the URL end up in logs and delivery records.
		return nil, fmt.Errorf("webhook URL %q contains user info; remove the user name and password and authenticate deliveries by their signature instead", shown)
	}
	// "https://host/#" parses with an empty Fragment, so look at the text.
	if strings.Contains(raw, "#") {
		return nil, fmt.Errorf("webhook URL %q has a #fragment, which is never sent to the server; remove it", shown)
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return nil, fmt.Errorf("webhook URL %q has port %s; a port must be between 1 and 65535", shown, port)
		}
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		if err := p.Check(ip); err != nil {
			return nil, fmt.Errorf("webhook URL %q cannot be delivered to: %w", shown, err)
		}
		return u, nil
	}
	if numericHost(host) {
		// Resolvers disagree on shorthand like 127.1, 0x7f000001 or
		// leading zeros; refusing them keeps what was validated and what
		// is dialled the same thing, and the connect-time check still
		// stands behind this.
		return nil, fmt.Errorf("webhook URL %q has host %q, which looks like an IP address in a non-standard form; write it as a plain dotted-quad or bracketed IPv6 address, or use a hostname", shown, host)
	}
	if isLocalhost(host) {
		// RFC 6761 guarantees localhost names are loopback without any
		// lookup, so refusing them here is early, not a resolution.
		if err := p.Check(netip.AddrFrom4([4]byte{127, 0, 0, 1})); err != nil {
			return nil, fmt.Errorf("webhook URL %q names a localhost host, which is always loopback: %w", shown, err)
		}
	}
	return u, nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// numericHost reports whether host's last label is all digits or a 0x hex
// number: no DNS name has a numeric top-level label, but inet_aton-style
// parsers read such hosts as IPv4 addresses.
func numericHost(host string) bool {
	host = strings.TrimSuffix(host, ".")
	label := host[strings.LastIndexByte(host, '.')+1:]
	if label == "" {
		return false
	}
	if h, ok := strings.CutPrefix(strings.ToLower(label), "0x"); ok {
		return strings.Trim(h, "0123456789abcdef") == ""
	}
	return strings.Trim(label, "0123456789") == ""
}

func isLocalhost(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}
