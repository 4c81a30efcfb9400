// Package redact takes out of an error text what must not leave the
// process in an answer: URLs (an internal service's address, a token in a
// query string), IP addresses with or without ports (what a name resolved
// to), and the monotonic clock reading Go prints after a time. The full
// text still goes to the log; the answer gets the rest.
package redact

import (
	"net/netip"
	"regexp"
	"strings"
)

var (
	urlRE  = regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.-]*://[^\s"'<>]+`)
	ipv6RE = regexp.MustCompile(`\[[0-9a-fA-F:.]*:[0-9a-fA-F:.]*(%[^\]]+)?\](:\d+)?`)
	ipv4RE = regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(:\d+)?\b`)
	monoRE = regexp.MustCompile(` m=[+-]\d+\.\d+`)
	// v6Candidate finds what may be an unbracketed IPv6 address; netip
	// decides (a time like 13:40:21 is not one).
	v6Candidate = regexp.MustCompile(`[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*`)
)

// Text returns s with URLs, IP addresses (and ports) and monotonic clock
// readings replaced by placeholders.
func Text(s string) string {
	s = urlRE.ReplaceAllString(s, "<url>")
	s = ipv6RE.ReplaceAllString(s, "<address>")
	s = ipv4RE.ReplaceAllString(s, "<address>")
	s = v6Candidate.ReplaceAllStringFunc(s, func(m string) string {
		trimmed := strings.TrimRight(m, ":.")
		if a, err := netip.ParseAddr(trimmed); err == nil && a.Is6() {
			return "<address>" + m[len(trimmed):]
		}
		return m
	})
	return monoRE.ReplaceAllString(s, "")
}
