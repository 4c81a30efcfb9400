package projection_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tenancyhq/tenancy/internal/projection"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// fullCustomer has every field of domain.Customer set, its personal data
// included.
func fullCustomer() domain.Customer {
	t0 := time.Date(2026, 11, 1, 9, 30, 0, 0, time.UTC)
	return domain.Customer{
		ID: "0194f5d2-6a4e-7c3b-9f00-0000000000c1", Kind: domain.CustomerBusiness, LegalName: "Acme Private Limited", DisplayName: "Acme",
		Email: "accounts@acme.test", Phone: "+912212345678",
		Address:     &events.Address{Line1: "1 Marine Drive", City: "Mumbai", State: "MH", PostalCode: "400002", Country: "IN"},
		FiscalIDs:   events.FiscalIDs{PAN: "AAACA1234C", TAN: "MUMA12345B", GSTIN: "27AAACA1234C1Z5"},
		FiscalIndex: events.FiscalIndex{PAN: "idx-pan", TAN: "idx-tan", GSTIN: "idx-gstin"},
		Contacts:    []events.Contact{{Role: "billing", Name: "B. Person", Email: "billing@acme.test", Phone: "+912299999999"}},
		ExternalIDs: map[string]string{"crm": "acc-7"}, Labels: map[string]string{"segment": "enterprise"},
		RealmMode: domain.RealmShared, Root: true,
		Verification: domain.Verification{Type: "kyb", Status: domain.VerificationDueForRekyc,
			Evidence: []events.Evidence{{Kind: "certificate_of_incorporation", Reference: "doc-42"}}, Note: "annual review",
			UpdatedAt: t0.Add(time.Hour), UpdatedBy: "compliance-officer", GraceUntil: t0.Add(30 * 24 * time.Hour), GraceExpired: true},
		Version: 7, CreatedAt: t0, UpdatedAt: t0.Add(2 * time.Hour), Deleted: true, DeletedAt: t0.Add(3 * time.Hour), PIIErased: true,
	}
}

// TestCustomerDocGolden pins the stored form of a customer, as
// TestTenantDocGolden does a tenant's, and that it never holds the personal
// data only the log keeps: address, fiscal ids, contacts. Refresh with
// -update only for a change that comes with a new SchemaVersion.
func TestCustomerDocGolden(t *testing.T) {
	c := fullCustomer()
	got, err := projection.MarshalCustomer(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{c.FiscalIDs.PAN, c.FiscalIDs.TAN, c.FiscalIDs.GSTIN, c.Address.Line1, c.Address.PostalCode,
		c.Contacts[0].Name, c.Contacts[0].Email, c.Contacts[0].Phone} {
		if strings.Contains(string(got), secret) {
			t.Errorf("the stored form of a customer holds %q, which only the log may keep:\n%s", secret, got)
		}
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, got, "", "  "); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "customer_doc.golden.json")
	if *update {
		if err := os.WriteFile(path, append(pretty.Bytes(), '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), pretty.String()+"\n"); diff != "" {
		t.Errorf("the stored form of a customer changed (-golden +now):\n%s", diff)
	}
	back, err := projection.UnmarshalCustomer(want)
	if err != nil {
		t.Fatal(err)
	}
	c.Address, c.FiscalIDs, c.Contacts = nil, events.FiscalIDs{}, nil
	if diff := cmp.Diff(c, back); diff != "" {
		t.Errorf("a stored customer does not read back as itself less its personal data (-want +got):\n%s", diff)
	}
}
