package httpapi_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/tenancyhq/tenancy/internal/mail"
)

// TestTestMail: a platform admin queues a test message (202, its id);
// the outbox holds it; anyone else, or an address that is not one plain
// address, is refused before anything is queued.
func TestTestMail(t *testing.T) {
	h := newHarness(t, options{})
	tenant := h.create(t, tenantBody("mailer"))["id"].(string)
	for _, c := range []struct {
		token string
		body  any
		want  int
	}{
		{h.token(t, tokenFor("tenant-admin", tenant)), map[string]any{"to": "ops@example.com"}, http.StatusForbidden},
		{h.admin, map[string]any{"to": "Ops <ops@example.com>"}, http.StatusUnprocessableEntity},
		{h.admin, map[string]any{"to": "ops@example.com\r\nBcc: eve@example.com"}, http.StatusUnprocessableEntity},
		{h.admin, map[string]any{"to": "ops@example.com", "cc": "x@example.com"}, http.StatusUnprocessableEntity},
	} {
		if r := h.status(t, "POST", "/v1/admin/mail/test", c.token, c.body); r.Status != c.want {
			t.Errorf("%v: %d %s", c.body, r.Status, r.Body)
		}
	}
	s, err := h.nats.JS.Stream(context.Background(), mail.Stream)
	if err != nil || s.CachedInfo().State.Msgs != 0 {
		t.Fatalf("refused requests queued mail: %v", err)
	}
	r := h.status(t, "POST", "/v1/admin/mail/test", h.admin, map[string]any{"to": "ops@example.com"})
	if r.Status != http.StatusAccepted || r.json(t)["id"] == "" {
		t.Fatalf("queue: %d %s", r.Status, r.Body)
	}
	if s, _ = h.nats.JS.Stream(context.Background(), mail.Stream); s.CachedInfo().State.Msgs != 1 {
		t.Fatalf("%d messages queued", s.CachedInfo().State.Msgs)
	}
}
