package egress_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/tenancyhq/tenancy/internal/egress"
)

func TestCheckURL(t *testing.T) {
	tests := []struct {
		name      string
		raw       string
		allowHTTP bool
		allow     []string
		// wantErr lists substrings of the refusal; empty means accepted.
		wantErr     []string
		wantBlocked bool
	}{
		{name: "https hostname", raw: "https://hooks.example.com/tenancy?x=1"},
		{name: "https hostname with port", raw: "https://hooks.example.com:8443/t"},
		{name: "https public IPv4", raw: "https://8.8.8.8/hook"},
		{name: "https public IPv6", raw: "https://[2606:4700:4700::1111]/hook"},
		{name: "trailing-dot hostname", raw: "https://hooks.example.com./t"},
		{name: "hostname resolving privately is not resolved here", raw: "https://internal.corp.example/hook"},
		{name: "upper-case scheme", raw: "HTTPS://hooks.example.com/"},
		{name: "http refused", raw: "http://hooks.example.com/", wantErr: []string{"plain http", "https"}},
		{name: "http allowed", raw: "http://hooks.example.com/", allowHTTP: true},
		{name: "empty", raw: "", wantErr: []string{"empty"}},
		{name: "blank", raw: "   ", wantErr: []string{"empty"}},
		{name: "surrounding spaces", raw: " https://hooks.example.com/ ", wantErr: []string{"spaces"}},
		{name: "relative path", raw: "/hooks/tenancy", wantErr: []string{"not absolute"}},
		{name: "scheme-relative", raw: "//hooks.example.com/x", wantErr: []string{"not absolute"}},
		{name: "no host", raw: "https:///path", wantErr: []string{"no host"}},
		{name: "opaque", raw: "https:hooks.example.com", wantErr: []string{"no host"}},
		{name: "port only", raw: "https://:443/", wantErr: []string{"no host"}},
		{name: "user info", raw: "https://user:secret@hooks.example.com/", wantErr: []string{"user info"}},
		{name: "user info in bad URL", raw: "https://user:secret@hooks.example.com:port/", wantErr: []string{"not a valid URL"}},
		{name: "user info over http", raw: "http://user:secret@hooks.example.com/", wantErr: []string{"plain http"}},
		{name: "user only", raw: "https://user@hooks.example.com/", wantErr: []string{"user info"}},
		{name: "fragment", raw: "https://hooks.example.com/#frag", wantErr: []string{"fragment"}},
		{name: "empty fragment", raw: "https://hooks.example.com/#", wantErr: []string{"fragment"}},
		{name: "ftp", raw: "ftp://files.example.com/", wantErr: []string{`"ftp"`, "https"}},
		{name: "ftp with allowHTTP", raw: "ftp://files.example.com/", allowHTTP: true, wantErr: []string{`"ftp"`}},
		{name: "javascript", raw: "javascript:alert(1)", wantErr: []string{`"javascript"`}},
		{name: "unparseable", raw: "https://hooks.example.com:port/", wantErr: []string{"not a valid URL"}},
		{name: "port zero", raw: "https://hooks.example.com:0/", wantErr: []string{"port"}},
		{name: "port too large", raw: "https://hooks.example.com:70000/", wantErr: []string{"port"}},
		{name: "loopback literal", raw: "https://127.0.0.1/hook", wantErr: []string{"loopback", "WEBHOOK_ALLOW_CIDRS"}, wantBlocked: true},
		{name: "metadata literal", raw: "http://169.254.169.254/latest/meta-data/", allowHTTP: true, wantErr: []string{"cloud metadata"}, wantBlocked: true},
		{name: "private literal with port", raw: "https://10.1.2.3:8443/", wantErr: []string{"private", "10.0.0.0/8"}, wantBlocked: true},
		{name: "IPv6 loopback literal", raw: "https://[::1]:8080/", wantErr: []string{"loopback"}, wantBlocked: true},
		{name: "mapped loopback literal", raw: "https://[::ffff:127.0.0.1]/", wantErr: []string{"loopback"}, wantBlocked: true},
		{name: "NAT64 private literal", raw: "https://[64:ff9b::a00:1]/", wantErr: []string{"NAT64", "private"}, wantBlocked: true},
		{name: "zoned link-local literal", raw: "https://[fe80::1%25eth0]/", wantErr: []string{"link-local"}, wantBlocked: true},
		{name: "unique local metadata literal", raw: "https://[fd00:ec2::254]/", wantErr: []string{"cloud metadata"}, wantBlocked: true},
		{name: "allowlisted loopback literal", raw: "http://127.0.0.1:9000/hook", allowHTTP: true, allow: []string{"127.0.0.1/32"}},
		{name: "shorthand IPv4", raw: "https://127.1/", wantErr: []string{"non-standard form"}},
		{name: "decimal IPv4", raw: "https://2130706433/", wantErr: []string{"non-standard form"}},
		{name: "hex IPv4", raw: "https://0x7f000001/", wantErr: []string{"non-standard form"}},
		{name: "leading zeros IPv4", raw: "https://127.000.000.001/", wantErr: []string{"non-standard form"}},
		{name: "hostname with digits", raw: "https://1password.example.com/"},
		{name: "localhost", raw: "https://localhost:8443/", wantErr: []string{"localhost", "loopback"}, wantBlocked: true},
		{name: "subdomain of localhost", raw: "https://hooks.LOCALHOST./", wantErr: []string{"localhost"}, wantBlocked: true},
		{name: "allowlisted localhost", raw: "http://localhost:9000/", allowHTTP: true, allow: []string{"127.0.0.0/8", "::1/128"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := mustPolicy(t, tt.allow...).CheckURL(tt.raw, tt.allowHTTP)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("CheckURL(%q) = %v, want accepted", tt.raw, err)
				}
				if u == nil || u.Host == "" {
					t.Fatalf("CheckURL(%q) returned URL %v without a host", tt.raw, u)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckURL(%q) accepted, want refusal mentioning %q", tt.raw, tt.wantErr)
			}
			if u != nil {
				t.Errorf("CheckURL(%q) returned URL %v with an error", tt.raw, u)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("CheckURL(%q) = %q, missing %q", tt.raw, err, w)
				}
			}
			// Refusals are logged and shown to API callers, so a password
			// in the submitted URL must not be echoed.
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("CheckURL(%q) = %q, leaks the password", tt.raw, err)
			}
			if got := errors.Is(err, egress.ErrBlocked); got != tt.wantBlocked {
				t.Errorf("CheckURL(%q) errors.Is(ErrBlocked) = %v, want %v", tt.raw, got, tt.wantBlocked)
			}
		})
	}
}
