package projection_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/projection"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// customerHandler decides customer commands on e's log with the generic
// command path, as the customer use cases do.
func customerHandler(e *env) *command.Handler[domain.Customer, domain.CustomerCommand] {
	return command.NewHandler[domain.Customer, domain.CustomerCommand](domain.CustomerDecider{}, e.core.CommandDeps())
}

func doCustomer(t *testing.T, h *command.Handler[domain.Customer, domain.CustomerCommand], id string, cmd domain.CustomerCommand) domain.Customer {
	t.Helper()
	res, err := h.Execute(context.Background(), events.PlatformTenantID, id, cmd, meta())
	if err != nil {
		t.Fatalf("%s on customer %s: %v", cmd.Action(), id, err)
	}
	return res.State
}

// gstinOf returns a valid GSTIN (Maharashtra, first registration) of pan.
func gstinOf(t *testing.T, pan string) string {
	t.Helper()
	first := "27" + pan + "1Z"
	check, ok := domain.GSTINCheck(first)
	if !ok {
		t.Fatalf("no GSTIN check character for %s", first)
	}
	return first + string(check)
}

// customerRow is what a test reads of a customers row.
type customerRow struct {
	Kind, LegalName, DisplayName, Email, RealmMode string
	VerificationType, VerificationStatus           string
	Verified, Root, Deleted                        bool
	Labels                                         string
	PAN, TAN, GSTIN                                string
	Version                                        int64
}

func readCustomer(t *testing.T, e *env, id string) (customerRow, domain.Customer) {
	t.Helper()
	var r customerRow
	var doc []byte
	err := e.pool.QueryRow(context.Background(), `SELECT kind, legal_name, display_name, email, realm_mode, verification_type,
		verification_status, verification_updated_at IS NOT NULL, root, deleted, labels::text, coalesce(pan_idx, ''), coalesce(tan_idx, ''),
		coalesce(gstin_idx, ''), version, state_doc FROM customers WHERE id = $1`, id).Scan(&r.Kind, &r.LegalName, &r.DisplayName, &r.Email,
		&r.RealmMode, &r.VerificationType, &r.VerificationStatus, &r.Verified, &r.Root, &r.Deleted, &r.Labels, &r.PAN, &r.TAN, &r.GSTIN,
		&r.Version, &doc)
	if err != nil {
		t.Fatalf("customer %s: %v", id, err)
	}
	c, err := projection.UnmarshalCustomer(doc)
	if err != nil {
		t.Fatal(err)
	}
	return r, c
}

// TestCustomersProjection projects a business (created, updated,
// verified) and an individual (created, due for re-KYC, grace expired,
// deleted, its key destroyed): the rows hold what the log says, no fiscal
// id, address or contact anywhere, and nothing personal once deleted; a
// replay over the stored rows changes nothing, and a rebuild from the log
// gives the same rows.
func TestCustomersProjection(t *testing.T) {
	e := setup(t)
	e.start(t, projection.Tenants{})
	stop := e.start(t, projection.Customers{})
	ctx := context.Background()
	h := customerHandler(e)
	index := e.core.Keyring.BlindIndex

	const pan, tan, personalPAN = "AAACA1234C", "MUMA12345B", "ABCPS1234K"
	gstin := gstinOf(t, pan)
	acme := app.NewID()
	doCustomer(t, h, acme, domain.CreateCustomer{ID: acme, Kind: domain.CustomerBusiness, LegalName: "Acme Private Limited", DisplayName: "Acme",
		Email: "accounts@acme.test", Address: &events.Address{Line1: "1 Marine Drive", City: "Mumbai", PostalCode: "400002", Country: "IN"},
		FiscalIDs: events.FiscalIDs{PAN: strings.ToLower(pan), GSTIN: gstin}, // looked up however it was typed
		Contacts:  []events.Contact{{Role: "billing", Name: "Bina Billing", Email: "bina@acme.test"}},
		Labels:    map[string]string{"segment": "smb"}, Index: index})
	newName, segment, newTAN := "Acme India", "enterprise", tan
	doCustomer(t, h, acme, domain.UpdateCustomer{DisplayName: &newName, Labels: &domain.MapPatch{Values: map[string]*string{"segment": &segment}},
		FiscalIDs: &domain.FiscalIDsPatch{TAN: &newTAN}, Index: index})
	doCustomer(t, h, acme, domain.RecordVerification{Status: domain.VerificationCompleted,
		Evidence: []events.Evidence{{Kind: "certificate_of_incorporation", Reference: "doc-1"}}, Now: time.Now()})

	priya := app.NewID()
	doCustomer(t, h, priya, domain.CreateCustomer{ID: priya, Kind: domain.CustomerIndividual, LegalName: "Priya Sharma", DisplayName: "Priya",
		Email: "priya@example.test", Phone: "+919812345678", FiscalIDs: events.FiscalIDs{PAN: personalPAN}, Index: index})
	due := doCustomer(t, h, priya, domain.RecordVerification{Status: domain.VerificationDueForRekyc, Now: time.Now(), Grace: 72 * time.Hour})
	doCustomer(t, h, priya, domain.ExpireRekycGrace{GraceUntil: due.Verification.GraceUntil})
	doCustomer(t, h, priya, domain.DeleteCustomer{Confirm: priya})
	if err := e.core.Keyring.Destroy(ctx, events.CustomerPIIScope(priya)); err != nil {
		t.Fatal(err)
	}
	e.waitCaughtUp(t, "customers")

	for _, tc := range []struct {
		name, id string
		want     customerRow
	}{
		{"business, updated and verified", acme, customerRow{Kind: "business", LegalName: "Acme Private Limited", DisplayName: "Acme India",
			Email: "accounts@acme.test", RealmMode: "own", VerificationType: "kyb", VerificationStatus: "completed", Verified: true,
			Labels: `{"segment": "enterprise"}`, PAN: index("pan", pan), TAN: index("tan", tan), GSTIN: index("gstin", gstin), Version: 3}},
		{"individual, deleted", priya, customerRow{Kind: "individual", RealmMode: "own", VerificationType: "kyc",
			VerificationStatus: "due_for_rekyc", Verified: true, Deleted: true, Labels: `{}`, Version: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := readCustomer(t, e, tc.id)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("row (-want +got):\n%s", diff)
			}
		})
	}
	_, gone := readCustomer(t, e, priya)
	if !gone.Deleted || !gone.PIIErased || !gone.Verification.GraceExpired || gone.Phone != "" || gone.FiscalIndex != (events.FiscalIndex{}) {
		t.Errorf("the deleted individual's state_doc: %+v", gone)
	}

	dump := func() string {
		t.Helper()
		var s string
		if err := e.pool.QueryRow(ctx, "SELECT coalesce(string_agg(row_to_json(c)::text, E'\\n' ORDER BY id), '') FROM customers c").Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	rows := dump()
	for _, secret := range []string{pan, tan, gstin, personalPAN, "Marine Drive", "400002", "Bina", "bina@acme.test",
		"Priya", "Sharma", "priya@example.test", "+919812345678"} {
		if strings.Contains(strings.ToUpper(rows), strings.ToUpper(secret)) {
			t.Errorf("the customers table holds %q:\n%s", secret, rows)
		}
	}

	// A replay overlapping what is stored (the checkpoint moved back, as
	// after a crash between apply and commit elsewhere) changes nothing.
	stop()
	if _, err := e.pool.Exec(ctx, "UPDATE projection_state SET checkpoint = 0 WHERE name = 'customers'"); err != nil {
		t.Fatal(err)
	}
	e.start(t, projection.Customers{})
	e.waitCaughtUp(t, "customers")
	if diff := cmp.Diff(rows, dump()); diff != "" {
		t.Errorf("replaying the log over the rows changed them (-before +after):\n%s", diff)
	}

	// A rebuild (bulk replay into a new generation, the individual's key
	// gone by now) gives the very same rows.
	before := testenv.DumpTable(t, e.pool, "customers", "id")
	e.rebuild(t, "customers", 30*time.Second)
	if diff := cmp.Diff(before, testenv.DumpTable(t, e.pool, "customers", "id")); diff != "" {
		t.Errorf("the rebuilt generation differs from the live one (-live +rebuilt):\n%s", diff)
	}
}

// TestTenantsKeepTheirCustomer: the tenants directory records the customer
// that owns a tenant in customer_id (NULL for none) and in state_doc.
func TestTenantsKeepTheirCustomer(t *testing.T) {
	e := setup(t)
	e.start(t, projection.Tenants{})
	h := customerHandler(e)
	owner := app.NewID()
	doCustomer(t, h, owner, domain.CreateCustomer{ID: owner, Kind: domain.CustomerBusiness, LegalName: "Owner Ltd", DisplayName: "Owner"})
	owned := create(t, e, "owned", func(c *domain.CreateTenant) { c.CustomerID = owner })
	alone := create(t, e, "alone", nil)
	e.waitCaughtUp(t, "tenants")
	for _, tc := range []struct{ id, want string }{{owned, owner}, {alone, ""}} {
		var col, doc string
		if err := e.pool.QueryRow(context.Background(), "SELECT coalesce(customer_id::text, ''), state_doc->>'CustomerID' FROM tenants WHERE id = $1",
			tc.id).Scan(&col, &doc); err != nil {
			t.Fatal(err)
		}
		if col != tc.want || doc != tc.want {
			t.Errorf("tenant %s: customer_id %q, state_doc %q; want %q", tc.id, col, doc, tc.want)
		}
	}
	var null bool
	if err := e.pool.QueryRow(context.Background(), "SELECT customer_id IS NULL FROM tenants WHERE id = $1", alone).Scan(&null); err != nil || !null {
		t.Errorf("a tenant without a customer has a customer_id: %v", err)
	}
}
