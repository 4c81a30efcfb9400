package delivery_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/pkg/domain"
)

// A subscription scoped to one tenant receives that tenant's events only,
// live and replayed, and cannot be made to replay another tenant's.
func TestTenantScopedSubscriptionSeesOnlyItsTenant(t *testing.T) {
	cfg := loopbackConfig()
	r := newRig(t, cfg)
	ctx := context.Background()
	create := func(slug string) string {
		res, err := r.core.Tenants.Create(ctx, domain.CreateTenant{Slug: slug, DisplayName: slug, Plan: "standard",
			Regions: domain.Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"}, Isolation: "shared"}, admin)
		if err != nil {
			t.Fatal(err)
		}
		return res.State.ID
	}
	a, b := create("tenant-a"), create("tenant-b")
	rc := newReceiver(t, r)
	res, secret, err := r.svc.Create(ctx, domain.CreateWebhook{URL: rc.srv.URL, EventTypes: []string{"*"}, TenantID: a}, admin)
	if err != nil {
		t.Fatal(err)
	}
	w := res.State
	rc.setSecrets(secret)
	rc.respond = func(int, http.ResponseWriter) int { return http.StatusOK }
	r.webhooker(t, cfg)
	for i := range 4 {
		for _, id := range []string{a, b} {
			name := fmt.Sprintf("renamed %d", i)
			if _, err := r.core.Tenants.Do(ctx, id, domain.UpdateTenant{DisplayName: &name}, admin); err != nil {
				t.Fatal(err)
			}
		}
	}
	rc.waitFor(t, "tenant a's four renames", 20*time.Second, func(ds []received) bool { return len(ds) >= 4 })
	if _, err := r.svc.Replay(ctx, w.ID, domain.RequestReplay{FromSeq: 1, ToSeq: 1000, TenantID: b}, admin); !errorsIsInvalid(err) {
		t.Fatalf("replaying another tenant's events to a tenant-scoped endpoint: %v", err)
	}
	head, err := r.core.Store.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.Replay(ctx, w.ID, domain.RequestReplay{FromSeq: 1, ToSeq: head}, admin); err != nil {
		t.Fatal(err)
	}
	got := rc.waitFor(t, "the replay", 20*time.Second, func(ds []received) bool { return len(ds) >= 8 })
	time.Sleep(300 * time.Millisecond) // anything else would arrive now
	for _, d := range rc.deliveries() {
		var env struct {
			TenantID string `json:"tenantid"`
		}
		if err := jsonUnmarshal(d.body, &env); err != nil {
			t.Fatal(err)
		}
		if env.TenantID != a {
			t.Fatalf("an endpoint scoped to tenant %s received tenant %s's event %s", a, env.TenantID, d.typ)
		}
	}
	if len(got) < 8 {
		t.Fatalf("got %d deliveries, want 4 live and 4 replayed", len(got))
	}
}
