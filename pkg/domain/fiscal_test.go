package domain

import (
	"strings"
	"testing"
)

func TestPAN(t *testing.T) {
	cases := []struct {
		pan, kind string
		msg       string // "" when valid
	}{
		{"ABCPE1234F", CustomerIndividual, ""},
		{"AAACB1234C", CustomerBusiness, ""}, // company
		{"AAAFB1234C", CustomerBusiness, ""}, // firm
		{"ABCPE1234F", CustomerBusiness, ""}, // a sole proprietorship files under its owner's PAN
		{"AAACB1234C", CustomerIndividual, "P as its 4th character"},
		{"AAAXB1234C", CustomerBusiness, "no business PAN has"},
		{"ABCPE1234", CustomerIndividual, "must be a PAN"},
		{"abcpe1234f", CustomerIndividual, "must be a PAN"},
		{"ABCP51234F", CustomerIndividual, "must be a PAN"},
	}
	for _, tc := range cases {
		var fe fieldErrors
		checkPAN(&fe, "pan", tc.pan, tc.kind)
		checkResult(t, "PAN "+tc.pan+" ("+tc.kind+")", fe, tc.msg)
	}
}

func TestTAN(t *testing.T) {
	for tan, msg := range map[string]string{"MUMA12345B": "", "MUM12345B": "must be a TAN", "MUMA1234BB": "must be a TAN", "mumA12345B": "must be a TAN"} {
		var fe fieldErrors
		checkTAN(&fe, "tan", tan)
		checkResult(t, "TAN "+tan, fe, msg)
	}
}

func TestGSTIN(t *testing.T) {
	cases := []struct {
		gstin, pan string
		msg        string
	}{
		{"27AAPFU0939F1ZV", "AAPFU0939F", ""},
		{"29AAGCB7383J1Z4", "", ""},
		{"27AAPFU0939F1ZX", "", "check character"},                                  // wrong check character
		{"27AAPFU0939F1ZV", "AAPFU0939G", "embeds another PAN than fiscal_ids.pan"}, // PAN mismatch
		{"40AAPFU0939F1ZV", "", "state code 40"},
		{"97AAPFU0939F0ZV", "", "entity character"},
		{"27AAPFU0939F1YV", "", "Z as its 14th"},
		{"27AAPFU0939F1Z", "", "must be a GSTIN"},
	}
	for _, tc := range cases {
		var fe fieldErrors
		checkGSTIN(&fe, "gstin", tc.gstin, tc.pan)
		checkResult(t, "GSTIN "+tc.gstin, fe, tc.msg)
	}
	// The check character is the official algorithm's for any body.
	if c, ok := GSTINCheck("27AAPFU0939F1Z"); !ok || c != 'V' {
		t.Fatalf("GSTINCheck = %c %v", c, ok)
	}
}

func checkResult(t *testing.T, what string, fe fieldErrors, msg string) {
	t.Helper()
	switch {
	case msg == "" && len(fe) > 0:
		t.Errorf("%s refused: %v", what, fe)
	case msg != "" && (len(fe) != 1 || !strings.Contains(fe[0].Message, msg)):
		t.Errorf("%s: %v, want one error mentioning %q", what, fe, msg)
	}
}
