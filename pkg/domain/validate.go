package domain

import (
	"fmt"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tenancyhq/tenancy/pkg/events"
)

var (
	slugRE        = regexp.MustCompile(`^[a-z][a-z0-9-]{1,61}[a-z0-9]$`)
	regionCodeRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,30}[a-z0-9]$`)
	planCodeRE    = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	systemRE      = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	labelKeyRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$`)
	labelValueRE  = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$`)
	phoneRE       = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	customerRefRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$`)
)

// ReservedSlugs cannot name a tenant: each tenant's slug names its identity
// realm and subdomain, and these collide with Keycloak's or the platform's.
var ReservedSlugs = []string{"admin", "api", "auth", "cloud", "console", "default", "keycloak", "master", "platform", "root", "shared", "system", "tenancy", "www"}

// Limits on tenant records.
const (
	MaxDisplayName   = 200
	MaxContacts      = 12
	MaxExternalIDs   = 16
	MaxExternalIDLen = 256
	MaxLabels        = 64
	MaxNote          = 1000
)

// ValidateSlug checks a tenant slug.
func ValidateSlug(slug string) error {
	var fe fieldErrors
	checkSlug(&fe, "slug", slug)
	return fe.err()
}

func checkSlug(fe *fieldErrors, field, slug string) {
	if checkSlugShape(fe, field, slug) && slices.Contains(ReservedSlugs, slug) {
		fe.add(field, fmt.Sprintf("%q is reserved; choose another slug", slug))
	}
}

// checkSlugShape checks a slug's pattern, reporting whether it passed;
// the platform's own tenants may take the reserved slugs.
func checkSlugShape(fe *fieldErrors, field, slug string) bool {
	switch {
	case slug == "":
		fe.add(field, "is required")
	case !slugRE.MatchString(slug):
		fe.add(field, "must be 3-63 characters of lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen (pattern ^[a-z][a-z0-9-]{1,61}[a-z0-9]$)")
	default:
		return true
	}
	return false
}

func checkText(fe *fieldErrors, field, s string, required bool, max int) {
	switch {
	case s == "" && required:
		fe.add(field, "is required")
	case !utf8.ValidString(s):
		fe.add(field, "must be valid UTF-8")
	case strings.TrimSpace(s) != s:
		fe.add(field, "must not start or end with whitespace")
	case utf8.RuneCountInString(s) > max:
		fe.add(field, fmt.Sprintf("must be at most %d characters", max))
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		fe.add(field, "must not contain control characters")
	case strings.IndexFunc(s, invisible) >= 0:
		r, _ := utf8.DecodeRuneInString(s[strings.IndexFunc(s, invisible):])
		fe.add(field, fmt.Sprintf("must not contain the invisible character U+%04X: bidirectional embeddings, overrides and isolates, zero-width spaces and byte-order marks make text display as something else", r))
	}
}

// invisible reports characters refused in display text: the bidirectional
// embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069), which
// reorder what follows them on screen, the zero-width space (U+200B) and
// the byte-order mark (U+FEFF). The zero-width joiner and non-joiner
// (U+200C, U+200D) stay allowed: Indic and Arabic scripts need them.
func invisible(r rune) bool {
	return (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) || r == 0x200B || r == 0xFEFF
}

func checkEmail(fe *fieldErrors, field, s string) {
	if s == "" {
		fe.add(field, "is required")
		return
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Address != s || len(s) > 254 || !strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".") {
		fe.add(field, "must be a plain email address like name@example.com")
	}
}

func checkContacts(fe *fieldErrors, contacts []events.Contact) {
	if len(contacts) > MaxContacts {
		fe.add("contacts", fmt.Sprintf("at most %d contacts", MaxContacts))
		return
	}
	seen := map[string]bool{}
	for i, c := range contacts {
		f := fmt.Sprintf("contacts[%d]", i)
		if _, err := ParseContactRole(c.Role); err != nil {
			fe.add(f+".role", fmt.Sprintf("unknown contact role %q", c.Role), contactRoleStrings()...)
		}
		checkText(fe, f+".name", c.Name, true, MaxDisplayName)
		checkEmail(fe, f+".email", c.Email)
		if c.Phone != "" && !phoneRE.MatchString(c.Phone) {
			fe.add(f+".phone", "must be in E.164 form, e.g. +4915112345678")
		}
		key := c.Role + "\x00" + strings.ToLower(c.Email)
		if seen[key] {
			fe.add(f, "the same person is listed twice for this role")
		}
		seen[key] = true
	}
}

func checkExternalIDs(fe *fieldErrors, ids map[string]string) {
	checkEntries(fe, "external_ids", "external ids", ids, MaxExternalIDs, func(f, sys, id string) {
		if !systemRE.MatchString(sys) {
			fe.add(f, "the system name must be 1-32 lowercase letters, digits, '-' or '_', starting with a letter")
		}
		checkText(fe, f, id, true, MaxExternalIDLen)
	})
}

func checkLabels(fe *fieldErrors, labels map[string]string) {
	checkEntries(fe, "labels", "labels", labels, MaxLabels, func(f, k, v string) {
		if !labelKeyRE.MatchString(k) {
			fe.add(f, "a label key must be 1-63 lowercase letters, digits, '.', '_', '/' or '-', starting and ending with a letter or digit")
		}
		if !labelValueRE.MatchString(v) {
			fe.add(f, "a label value must be empty or 1-63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit")
		}
	})
}

// checkEntries refuses a map of more than limit entries (named noun in the
// message) as a whole; otherwise it checks each entry in key order, as
// field "<field>.<key>", so that errors come out in a stable order.
func checkEntries(fe *fieldErrors, field, noun string, m map[string]string, limit int, check func(f, k, v string)) {
	if len(m) > limit {
		fe.add(field, fmt.Sprintf("at most %d %s", limit, noun))
		return
	}
	for _, k := range sortedKeys(m) {
		check(field+"."+k, k, m[k])
	}
}

func checkCustomerRef(fe *fieldErrors, ref string) {
	if ref != "" && !customerRefRE.MatchString(ref) {
		fe.add("customer_ref", "must be 1-128 letters, digits, '.', '_', ':', '/' or '-', starting with a letter or digit")
	}
}

func checkRegionsShape(fe *fieldErrors, r events.Regions) {
	seen := map[string]bool{}
	for i, code := range r.Allowed {
		if seen[code] {
			fe.add(fmt.Sprintf("regions.allowed[%d]", i), fmt.Sprintf("region %q listed twice", code))
		}
		seen[code] = true
	}
	if r.Preferred == "" {
		fe.add("regions.preferred", "is required")
	}
}
