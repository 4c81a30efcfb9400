package domain

import (
	"fmt"
	"strings"
)

// Indian fiscal identifiers (seed 000: customers carry PAN, TAN and GSTIN).

// PANKinds are the entity characters (a PAN's 4th) a business may hold: a
// company, firm, HUF, association of persons, trust, body of individuals,
// local authority, artificial juridical person or government; and an
// individual's own, which a sole proprietorship files under.
const (
	individualPANKind = "P"
	businessPANKinds  = "CFHATBLJGP"
)

// gstinAlphabet is the GSTIN check algorithm's base-36 alphabet.
const gstinAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

func isUpper(b byte) bool { return b >= 'A' && b <= 'Z' }
func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// matches reports whether s has the shape pattern gives: A for an upper-case
// letter, 9 for a digit.
func matches(s, pattern string) bool {
	if len(s) != len(pattern) {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch pattern[i] {
		case 'A':
			if !isUpper(s[i]) {
				return false
			}
		case '9':
			if !isDigit(s[i]) {
				return false
			}
		}
	}
	return true
}

// checkPAN checks a PAN (AAAAA9999A) and that its 4th character fits kind.
func checkPAN(fe *fieldErrors, field, pan, kind string) {
	if !matches(pan, "AAAAA9999A") {
		fe.add(field, "must be a PAN: five capital letters, four digits, a capital letter (e.g. ABCPE1234F)")
		return
	}
	switch c := pan[3:4]; kind {
	case CustomerIndividual:
		if c != individualPANKind {
			fe.add(field, fmt.Sprintf("is a PAN of entity type %q; an individual's PAN has P as its 4th character", c))
		}
	case CustomerBusiness:
		if !strings.Contains(businessPANKinds, c) {
			fe.add(field, fmt.Sprintf("has %q as its 4th character, which no business PAN has (C, F, H, A, T, B, L, J, G, or P for a sole proprietorship)", c))
		}
	}
}

// checkTAN checks a TAN (AAAA99999A).
func checkTAN(fe *fieldErrors, field, tan string) {
	if !matches(tan, "AAAA99999A") {
		fe.add(field, "must be a TAN: four capital letters, five digits, a capital letter (e.g. MUMA12345B)")
	}
}

// GSTINCheck returns the check character of the first 14 characters of a
// GSTIN, by the official mod-36 algorithm: each character's value times
// its weight (1, 2, 1, 2, ...), each product's base-36 digits summed.
func GSTINCheck(first14 string) (byte, bool) {
	if len(first14) != 14 {
		return 0, false
	}
	sum := 0
	for i := 0; i < 14; i++ {
		v := strings.IndexByte(gstinAlphabet, first14[i])
		if v < 0 {
			return 0, false
		}
		p := v * (1 + i%2)
		sum += p/36 + p%36
	}
	return gstinAlphabet[(36-sum%36)%36], true
}

// checkGSTIN checks a GSTIN: a state code (01-38, 97, 99), the PAN (which
// must equal pan when given), an entity number (1-9, A-Z), Z, and the check
// character.
func checkGSTIN(fe *fieldErrors, field, gstin, pan string) {
	if len(gstin) != 15 || !matches(gstin[2:12], "AAAAA9999A") || !isDigit(gstin[0]) || !isDigit(gstin[1]) {
		fe.add(field, "must be a GSTIN: a two-digit state code, the PAN, an entity character, Z and a check character (15 characters, e.g. 27AAPFU0939F1ZV)")
		return
	}
	state := int(gstin[0]-'0')*10 + int(gstin[1]-'0')
	switch {
	case !(state >= 1 && state <= 38 || state == 97 || state == 99):
		fe.add(field, fmt.Sprintf("has state code %02d; state codes run 01-38, with 97 and 99", state))
	case !(isDigit(gstin[12]) && gstin[12] != '0' || isUpper(gstin[12])):
		fe.add(field, "has an entity character that is neither 1-9 nor A-Z (13th character)")
	case gstin[13] != 'Z':
		fe.add(field, "must have Z as its 14th character")
	case pan != "" && gstin[2:12] != pan:
		// Neither value is repeated: error messages reach logs.
		fe.add(field, "embeds another PAN than fiscal_ids.pan (characters 3 to 12 of a GSTIN are the holder's PAN)")
	default:
		if want, ok := GSTINCheck(gstin[:14]); !ok || gstin[14] != want {
			fe.add(field, fmt.Sprintf("has check character %c; the mod-36 check of the first 14 characters is %c", gstin[14], want))
		}
	}
}
