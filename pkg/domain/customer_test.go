package domain

import (
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/pkg/events"
)

// index is a stand-in blind index (the real one is a keyed HMAC).
func index(kind, v string) string {
	if v == "" {
		return ""
	}
	return "idx:" + kind + ":" + v
}

func acmeBusiness() CreateCustomer {
	return CreateCustomer{ID: "c1", Kind: CustomerBusiness, LegalName: "Acme Private Limited", DisplayName: "Acme", Email: "accounts@acme.example",
		Address:   &events.Address{Line1: "1 MG Road", City: "Mumbai", State: "MH", PostalCode: "400001", Country: "IN"},
		FiscalIDs: events.FiscalIDs{PAN: "AAPFU0939F", GSTIN: "27AAPFU0939F1ZV"}, Index: index}
}

func acmeCreated() *events.CustomerCreated {
	return &events.CustomerCreated{Kind: CustomerBusiness, LegalName: "Acme Private Limited", DisplayName: "Acme", Email: "accounts@acme.example",
		RealmMode: RealmOwn,
		Personal: &events.CustomerPII{Address: &events.Address{Line1: "1 MG Road", City: "Mumbai", State: "MH", PostalCode: "400001", Country: "IN"},
			FiscalIDs: events.FiscalIDs{PAN: "AAPFU0939F", GSTIN: "27AAPFU0939F1ZV"}, FiscalIndex: events.FiscalIndex{PAN: "idx:pan:AAPFU0939F", GSTIN: "idx:gstin:27AAPFU0939F1ZV"}}}
}

func foldCustomer(given []events.Payload) Customer {
	var c Customer
	for i, p := range given {
		c = CustomerDecider{}.Evolve(c, Recorded{AggregateID: "c1", Time: t0.Add(time.Duration(i) * time.Minute), Version: int64(i + 1), Payload: p, Actor: "admin-1"})
	}
	return c
}

func TestDecideCustomer(t *testing.T) {
	live := []events.Payload{acmeCreated()}
	due := []events.Payload{acmeCreated(), &events.CustomerVerificationRecorded{Type: "kyb", Status: VerificationDueForRekyc, GraceUntil: "2026-12-01T10:00:00Z"}}
	expired := append(due[:2:2], &events.CustomerRekycGraceExpired{GraceUntil: "2026-12-01T10:00:00Z"})
	deleted := []events.Payload{acmeCreated(), &events.CustomerDeleted{}}
	individual := acmeBusiness()
	individual.Kind, individual.FiscalIDs = CustomerIndividual, events.FiscalIDs{PAN: "ABCPE1234F"}
	individual.LegalName, individual.DisplayName, individual.Email = "Asha Rao", "Asha", "asha@example.in"
	graceEnd, _ := time.Parse(time.RFC3339, "2026-12-01T10:00:00Z")
	cases := []struct {
		name  string
		given []events.Payload
		when  CustomerCommand
		then  []events.Payload
		err   error
		msg   string
	}{
		{name: "create a business", when: acmeBusiness(), then: []events.Payload{acmeCreated()}},
		{name: "create an individual: names and email are sealed", when: individual, then: []events.Payload{&events.CustomerCreated{
			Kind: CustomerIndividual, RealmMode: RealmOwn,
			Personal: &events.CustomerPII{LegalName: "Asha Rao", DisplayName: "Asha", Email: "asha@example.in", Address: individual.Address,
				FiscalIDs: events.FiscalIDs{PAN: "ABCPE1234F"}, FiscalIndex: events.FiscalIndex{PAN: "idx:pan:ABCPE1234F"}}}}},
		{name: "create twice", given: live, when: acmeBusiness(), err: ErrConflict},
		{name: "an individual with a company PAN", when: func() CreateCustomer { c := individual; c.FiscalIDs.PAN = "AAACB1234C"; return c }(),
			err: ErrInvalid, msg: "fiscal_ids.pan"},
		{name: "GSTIN of another PAN", when: func() CreateCustomer { c := acmeBusiness(); c.FiscalIDs.PAN = "AAPFU0939G"; return c }(),
			err: ErrInvalid, msg: "embeds another PAN"},
		{name: "every failing field at once", when: CreateCustomer{ID: "c1", Kind: "robot", Address: &events.Address{Country: "India"}, RealmMode: "solo"},
			err: ErrInvalid, msg: "kind"},
		{name: "fiscal ids are normalised", when: func() CreateCustomer { c := acmeBusiness(); c.FiscalIDs.PAN = " aapfu0939f "; return c }(),
			then: []events.Payload{acmeCreated()}},
		{name: "rename a business", given: live, when: UpdateCustomer{DisplayName: ptr("Acme India")},
			then: []events.Payload{&events.CustomerUpdated{Changed: []string{"display_name"}, DisplayName: ptr("Acme India")}}},
		{name: "the same values change nothing", given: live, when: UpdateCustomer{DisplayName: ptr("Acme"), RealmMode: ptr(RealmOwn)}},
		{name: "add a TAN: the personal data and its index are recorded", given: live, when: UpdateCustomer{FiscalIDs: &FiscalIDsPatch{TAN: ptr("MUMA12345B")}, Index: index},
			then: []events.Payload{&events.CustomerUpdated{Changed: []string{"fiscal_ids"},
				Personal: &events.CustomerPII{Address: acmeCreated().Personal.Address, FiscalIDs: events.FiscalIDs{PAN: "AAPFU0939F", TAN: "MUMA12345B", GSTIN: "27AAPFU0939F1ZV"},
					FiscalIndex: events.FiscalIndex{PAN: "idx:pan:AAPFU0939F", TAN: "idx:tan:MUMA12345B", GSTIN: "idx:gstin:27AAPFU0939F1ZV"}}}}},
		{name: "a bad TAN", given: live, when: UpdateCustomer{FiscalIDs: &FiscalIDsPatch{TAN: ptr("MUM1")}, Index: index}, err: ErrInvalid, msg: "fiscal_ids.tan"},
		{name: "verify", given: live, when: RecordVerification{Status: VerificationCompleted, Evidence: []events.Evidence{{Kind: "gst_certificate", Reference: "dms://1"}}},
			then: []events.Payload{&events.CustomerVerificationRecorded{Type: "kyb", Status: VerificationCompleted, Evidence: []events.Evidence{{Kind: "gst_certificate", Reference: "dms://1"}}}}},
		{name: "verify twice the same way changes nothing", given: append(live[:1:1], &events.CustomerVerificationRecorded{Type: "kyb", Status: VerificationCompleted}),
			when: RecordVerification{Status: VerificationCompleted}},
		{name: "an unknown status", given: live, when: RecordVerification{Status: "done"}, err: ErrInvalid, msg: "status"},
		{name: "due for re-KYC starts the grace period", given: live, when: RecordVerification{Status: VerificationDueForRekyc, Now: graceEnd.Add(-time.Hour), Grace: time.Hour},
			then: []events.Payload{&events.CustomerVerificationRecorded{Type: "kyb", Status: VerificationDueForRekyc, GraceUntil: "2026-12-01T10:00:00Z"}}},
		{name: "due again keeps the grace running", given: due, when: RecordVerification{Status: VerificationDueForRekyc, Note: "reminder", Now: graceEnd, Grace: time.Hour},
			then: []events.Payload{&events.CustomerVerificationRecorded{Type: "kyb", Status: VerificationDueForRekyc, Note: "reminder", GraceUntil: "2026-12-01T10:00:00Z"}}},
		{name: "the grace runs out", given: due, when: ExpireRekycGrace{GraceUntil: graceEnd},
			then: []events.Payload{&events.CustomerRekycGraceExpired{GraceUntil: "2026-12-01T10:00:00Z"}}},
		{name: "a timer of another grace period changes nothing", given: due, when: ExpireRekycGrace{GraceUntil: graceEnd.Add(time.Hour)}},
		{name: "the grace ran out already", given: expired, when: ExpireRekycGrace{GraceUntil: graceEnd}},
		{name: "verified again before the timer fired", given: append(due[:2:2], &events.CustomerVerificationRecorded{Type: "kyb", Status: VerificationCompleted}),
			when: ExpireRekycGrace{GraceUntil: graceEnd}},
		{name: "delete needs the id repeated", given: live, when: DeleteCustomer{Confirm: "acme"}, err: ErrInvalid, msg: "confirm=c1"},
		{name: "delete with open tenants", given: live, when: DeleteCustomer{Confirm: "c1", OpenTenants: 2}, err: ErrPrecondition, msg: "2 tenant"},
		{name: "delete", given: live, when: DeleteCustomer{Confirm: "c1"}, then: []events.Payload{&events.CustomerDeleted{}}},
		{name: "delete twice is a repeat (so that erasure can be retried)", given: deleted, when: DeleteCustomer{Confirm: "c1"}},
		{name: "a deleted customer takes no other command", given: deleted, when: RecordVerification{Status: VerificationCompleted}, err: ErrNotFound},
		{name: "a GSTIN alone must embed a PAN that fits the kind", given: nil,
			when: CreateCustomer{ID: "c1", Kind: CustomerIndividual, LegalName: "A", DisplayName: "A", FiscalIDs: events.FiscalIDs{GSTIN: "27AAPFU0939F1ZV"}},
			err:  ErrInvalid, msg: "an individual's PAN has P"},
		{name: "the root customer stays", given: []events.Payload{&events.CustomerCreated{Kind: CustomerBusiness, RealmMode: RealmOwn, Root: true}},
			when: DeleteCustomer{Confirm: "c1"}, err: ErrPrecondition, msg: "root customer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CustomerDecider{}.Decide(foldCustomer(tc.given), tc.when)
			checkDecision(t, got, err, tc.err, tc.msg, tc.then)
		})
	}
}

func TestCustomerEvolve(t *testing.T) {
	c := foldCustomer([]events.Payload{acmeCreated(),
		&events.CustomerVerificationRecorded{Type: "kyb", Status: VerificationDueForRekyc, GraceUntil: "2026-12-01T10:00:00Z"},
		&events.CustomerDeleted{}})
	if c.Exists() || !c.Deleted || !c.PIIErased || c.Address != nil || c.FiscalIDs != (events.FiscalIDs{}) {
		t.Fatalf("deleted customer %+v", c)
	}
	if c.Verification.UpdatedBy != "admin-1" || c.Verification.GraceUntil.IsZero() {
		t.Fatalf("verification %+v", c.Verification)
	}
}

// TestGraceStaysEnded: once a re-KYC grace period ended, the customer stays
// blocked through any other status until it is verified again.
func TestGraceStaysEnded(t *testing.T) {
	expired := []events.Payload{acmeCreated(), &events.CustomerVerificationRecorded{Type: "kyb", Status: VerificationDueForRekyc, GraceUntil: "2026-12-01T10:00:00Z"},
		&events.CustomerRekycGraceExpired{GraceUntil: "2026-12-01T10:00:00Z"}}
	for _, status := range []string{VerificationPending, VerificationPartial, VerificationDueForRekyc} {
		c := foldCustomer(append(append([]events.Payload{}, expired...), &events.CustomerVerificationRecorded{Type: "kyb", Status: status, Note: "again"}))
		if !c.Verification.GraceExpired {
			t.Errorf("%s after the grace ended cleared it", status)
		}
	}
	c := foldCustomer(append(append([]events.Payload{}, expired...), &events.CustomerVerificationRecorded{Type: "kyb", Status: VerificationCompleted}))
	if c.Verification.GraceExpired {
		t.Error("completed did not clear the ended grace")
	}
}
