package delivery_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Customer events are subscribable like tenants' (CRM follows customers),
// signed and verifiable by the outside libraries the receiver uses, and
// carry the customer's personal data sealed only: no fiscal id in the
// clear in a delivery.
func TestCustomerEventsAreDelivered(t *testing.T) {
	cfg := loopbackConfig()
	r := newRig(t, cfg)
	ctx := context.Background()
	rc := newReceiver(t, r)
	_, secret, err := r.svc.Create(ctx, domain.CreateWebhook{URL: rc.srv.URL, EventTypes: []string{"tenancy.customer.*"}}, admin)
	if err != nil {
		t.Fatal(err)
	}
	rc.setSecrets(secret)
	rc.respond = func(int, http.ResponseWriter) int { return http.StatusOK }
	r.webhooker(t, cfg)

	c, err := r.core.Customers.Create(ctx, domain.CreateCustomer{Kind: domain.CustomerBusiness, LegalName: "Hooked Private Limited", DisplayName: "Hooked",
		FiscalIDs: events.FiscalIDs{PAN: "AAACH1234K"}}, admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.core.Customers.Do(ctx, c.State.ID, domain.RecordVerification{Status: domain.VerificationCompleted}, admin); err != nil {
		t.Fatal(err)
	}
	// A tenant event, which this subscription does not take.
	if _, err := r.core.Tenants.Create(ctx, domain.CreateTenant{Slug: "not-hooked", DisplayName: "N", Plan: "standard", Isolation: "shared",
		Regions: domain.Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"}}, admin); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, "the customer's two events", 20*time.Second, func(ds []received) bool { return len(ds) >= 2 })
	time.Sleep(300 * time.Millisecond) // anything else would arrive now
	got := rc.deliveries()
	want := []string{events.TypeCustomerCreated, events.TypeCustomerVerificationRecorded}
	if len(got) != len(want) {
		t.Fatalf("%d deliveries, want %v", len(got), want)
	}
	for i, d := range got {
		if d.typ != want[i] {
			t.Errorf("delivery %d is %s, want %s", i, d.typ, want[i])
		}
		if bytes.Contains(bytes.ToUpper(d.body), []byte("AAACH1234K")) {
			t.Errorf("delivery %d carries the PAN in the clear: %s", i, d.body)
		}
	}
}
