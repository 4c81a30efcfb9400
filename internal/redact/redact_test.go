package redact

import "testing"

func TestText(t *testing.T) {
	cases := map[string]string{
		`OIDC discovery at http://keycloak:8080/realms/x failed`:                        `OIDC discovery at <url> failed`,
		`Post "https://hooks.example.com/in?token=abc": dial tcp 10.1.2.3:443: refused`: `Post "<url>": dial tcp <address>: refused`,
		`failed to connect to host=127.0.0.1 user=postgres`:                             `failed to connect to host=<address> user=postgres`,
		`dial tcp [fd00::1]:5432: connection refused`:                                   `dial tcp <address>: connection refused`,
		`lookup db on fd00:ab::53: no such host`:                                        `lookup db on <address>: no such host`,
		`deadline 2026-12-01 13:40:21.635614859 +0000 UTC m=+12.345678901 passed`:       `deadline 2026-12-01 13:40:21.635614859 +0000 UTC passed`,
		`the tenant is in state active; allowed: suspend, archive`:                      `the tenant is in state active; allowed: suspend, archive`,
		`version 3.1.4 at 12:30:00`:                                                     `version 3.1.4 at 12:30:00`,
	}
	for in, want := range cases {
		if got := Text(in); got != want {
			t.Errorf("Text(%q)\n = %q\nwant %q", in, got, want)
		}
	}
}
