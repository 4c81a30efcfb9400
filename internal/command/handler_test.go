package command_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/keyring"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

type env struct {
	store  *eventstore.Store
	signer *events.Signer
	ring   *keyring.Keyring
	deps   command.Deps
	cat    *domain.Catalog
}

func setup(t *testing.T) *env {
	t.Helper()
	n := testenv.StartNATS(t)
	ctx := testenv.Context(t, time.Minute)
	if _, err := eventstore.EnsureStream(ctx, n.JS, eventstore.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := events.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	master := make([]byte, keyring.MasterKeySize)
	_, _ = rand.Read(master)
	ring, err := keyring.Open(ctx, n.JS, master, 1)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := domain.NewCatalog(
		[]domain.Region{{Code: "eu-west-1"}, {Code: "eu-central-1"}},
		[]domain.Plan{{Code: "standard", Isolation: []domain.IsolationMode{domain.IsolationShared}}},
	)
	if err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(n.JS, "")
	// The readers trust the keys registered in the log: register this one.
	deps := command.Deps{Store: store, Signer: signer, Cipher: ring, NewID: func() string { return uuid.Must(uuid.NewV7()).String() }}
	if err := app.NewSigningKeys(deps).Register(ctx, signer); err != nil {
		t.Fatal(err)
	}
	return &env{store: store, signer: signer, ring: ring, deps: deps, cat: cat}
}

func (e *env) handler() *command.Handler[domain.Tenant, domain.TenantCommand] {
	return command.NewHandler[domain.Tenant, domain.TenantCommand](domain.TenantDecider{Catalog: e.cat}, e.deps)
}

func createCmd(id, slug string, extIDs map[string]string) domain.CreateTenant {
	return domain.CreateTenant{
		ID: id, Slug: slug, DisplayName: "Tenant " + slug, Plan: "standard", Isolation: "shared",
		Regions:     domain.Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"},
		Contacts:    []events.Contact{{Role: "technical", Name: "Tech", Email: "tech@" + slug + ".test"}},
		ExternalIDs: extIDs,
	}
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

func (e *env) verify(t *testing.T) *events.ChainVerifier {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	keys := events.NewKeySet(events.PublicKey{Key: e.signer.PublicKey()})
	v := events.NewChainVerifier(keys)
	// The tenants' events: the signing key's registration is the setup's.
	msgs, err := e.store.ReadAll(ctx, events.Subject("*", events.AggregateTenant, "*"), 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := v.Next(m.Seq, m.Subject, m.Data); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

func TestCreateLoadAndPersonalData(t *testing.T) {
	e := setup(t)
	ctx := testenv.Context(t, time.Minute)
	h := e.handler()
	id := newID()
	res, err := h.Execute(ctx, id, id, createCmd(id, "acme", map[string]string{"billing": "cus_1"}), command.Meta{Actor: "alice", CorrelationID: "req-1"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Seq == 0 || len(res.Events) != 1 || res.State.Version != 1 || res.State.ID != id {
		t.Fatalf("result %+v", res)
	}
	// A second handler (another API instance) folds the same state from the log.
	got, seq, err := e.handler().Load(ctx, id, id)
	if err != nil {
		t.Fatal(err)
	}
	if seq != res.Seq || got.Slug != "acme" || got.Contacts[0].Email != "tech@acme.test" || got.ExternalIDs["billing"] != "cus_1" {
		t.Fatalf("loaded %+v at %d", got, seq)
	}
	// The stored event carries the contact only sealed.
	msg, err := e.store.Get(ctx, res.Seq)
	if err != nil {
		t.Fatal(err)
	}
	env, _ := events.Parse(msg.Data)
	if env.Actor != "alice" || env.CorrelationID != "req-1" || env.TenantID != id {
		t.Fatalf("envelope %+v", env)
	}
	for _, secret := range []string{"tech@acme.test", "Tech"} {
		if containsString(msg.Data, secret) {
			t.Fatalf("stored event contains personal data %q: %s", secret, msg.Data)
		}
	}
	// Destroying the tenant's key erases the personal data everywhere.
	if err := e.ring.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	erased, _, err := e.handler().Load(ctx, id, id)
	if err != nil {
		t.Fatal(err)
	}
	if erased.Contacts != nil || !erased.PIIErased || erased.Slug != "acme" {
		t.Fatalf("after erasure %+v", erased)
	}
	e.verify(t)
}

func containsString(b []byte, s string) bool {
	return len(s) > 0 && len(b) >= len(s) && string(b) != "" && (func() bool {
		for i := 0; i+len(s) <= len(b); i++ {
			if string(b[i:i+len(s)]) == s {
				return true
			}
		}
		return false
	})()
}

// TestConcurrentUpdatesLoseNothing runs 50 concurrent label updates on one
// tenant through two handlers (two API instances sharing the log): every
// one must land, with a gap-free version sequence.
func TestConcurrentUpdatesLoseNothing(t *testing.T) {
	e := setup(t)
	ctx := testenv.Context(t, 2*time.Minute)
	a, b := e.handler(), e.handler()
	id := newID()
	if _, err := a.Execute(ctx, id, id, createCmd(id, "busy", nil), command.Meta{Actor: "t"}); err != nil {
		t.Fatal(err)
	}
	const n = 50
	errs := testenv.Parallel(n, func(i int) error {
		h := a
		if i%2 == 1 {
			h = b
		}
		v := "x"
		_, err := h.Execute(ctx, id, id, domain.UpdateTenant{Labels: &domain.MapPatch{Values: map[string]*string{fmt.Sprintf("k%02d", i): &v}}}, command.Meta{Actor: "t"})
		return err
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, _, err := e.handler().Load(ctx, id, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != n+1 || len(got.Labels) != n {
		t.Fatalf("version %d, %d labels; want %d and %d", got.Version, len(got.Labels), n+1, n)
	}
	if v := e.verify(t); v.Count() != n+1 {
		t.Fatalf("verified %d events", v.Count())
	}
}

// TestSlugIsClaimedOnce races creates of one slug from two handlers: exactly
// one wins, the rest get a conflict naming the slug.
func TestSlugIsClaimedOnce(t *testing.T) {
	e := setup(t)
	ctx := testenv.Context(t, time.Minute)
	hs := []*command.Handler[domain.Tenant, domain.TenantCommand]{e.handler(), e.handler()}
	const n = 10
	results := testenv.Parallel(n, func(i int) error {
		id := newID()
		_, err := hs[i%2].Execute(ctx, id, id, createCmd(id, "same", nil), command.Meta{Actor: "t"})
		return err
	})
	won := 0
	for _, err := range results {
		var ce *domain.ConflictError
		switch {
		case err == nil:
			won++
		case errors.As(err, &ce) && ce.Field == "slug":
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d creates of one slug succeeded", won)
	}
	if v := e.verify(t); v.Count() != 1 {
		t.Fatalf("%d events stored; the losers must append nothing", v.Count())
	}
}

func TestExternalIDsAreClaimedAndReleased(t *testing.T) {
	e := setup(t)
	ctx := testenv.Context(t, time.Minute)
	h := e.handler()
	a, b := newID(), newID()
	if _, err := h.Execute(ctx, a, a, createCmd(a, "alpha", map[string]string{"billing": "cus_1"}), command.Meta{Actor: "t"}); err != nil {
		t.Fatal(err)
	}
	_, err := h.Execute(ctx, b, b, createCmd(b, "beta", map[string]string{"billing": "cus_1"}), command.Meta{Actor: "t"})
	var ce *domain.ConflictError
	if !errors.As(err, &ce) || ce.Field != "external_ids.billing" {
		t.Fatalf("second claim of billing:cus_1: %v", err)
	}
	if _, err := h.Execute(ctx, b, b, createCmd(b, "beta", nil), command.Meta{Actor: "t"}); err != nil {
		t.Fatal(err)
	}
	// alpha moves to cus_2, releasing cus_1 for beta.
	cus2 := "cus_2"
	if _, err := h.Execute(ctx, a, a, domain.UpdateTenant{ExternalIDs: &domain.MapPatch{Values: map[string]*string{"billing": &cus2}}}, command.Meta{Actor: "t"}); err != nil {
		t.Fatal(err)
	}
	cus1 := "cus_1"
	if _, err := h.Execute(ctx, b, b, domain.UpdateTenant{ExternalIDs: &domain.MapPatch{Values: map[string]*string{"billing": &cus1}}}, command.Meta{Actor: "t"}); err != nil {
		t.Fatalf("cus_1 was not released: %v", err)
	}
	owner, err := e.store.ClaimOwner(ctx, domain.Claim{Kind: domain.ClaimExternalID, System: "billing", Value: "cus_1"})
	if err != nil || owner != b {
		t.Fatalf("owner of cus_1 = %q, %v", owner, err)
	}
	// Deleting a tenant releases its slug.
	if _, err := h.Execute(ctx, a, a, domain.Delete{Confirm: "alpha"}, command.Meta{Actor: "t"}); err != nil {
		t.Fatal(err)
	}
	c := newID()
	if _, err := h.Execute(ctx, c, c, createCmd(c, "alpha", map[string]string{"billing": "cus_2"}), command.Meta{Actor: "t"}); err != nil {
		t.Fatalf("slug and external id of a deleted tenant were not released: %v", err)
	}
	e.verify(t)
}

func TestIfVersionAndNoops(t *testing.T) {
	e := setup(t)
	ctx := testenv.Context(t, time.Minute)
	h := e.handler()
	id := newID()
	res, err := h.Execute(ctx, id, id, createCmd(id, "vers", nil), command.Meta{Actor: "t"})
	if err != nil {
		t.Fatal(err)
	}
	name := "New name"
	_, err = h.Execute(ctx, id, id, domain.UpdateTenant{DisplayName: &name}, command.Meta{Actor: "t", IfVersion: 7})
	if !errors.Is(err, domain.ErrVersionMismatch) {
		t.Fatalf("stale If-Match: %v", err)
	}
	upd, err := h.Execute(ctx, id, id, domain.UpdateTenant{DisplayName: &name}, command.Meta{Actor: "t", IfVersion: 1})
	if err != nil || upd.State.Version != 2 {
		t.Fatalf("If-Match 1: %v %+v", err, upd.State)
	}
	again, err := h.Execute(ctx, id, id, domain.UpdateTenant{DisplayName: &name}, command.Meta{Actor: "t"})
	if err != nil || len(again.Events) != 0 || again.Seq != upd.Seq || again.State.Version != 2 {
		t.Fatalf("repeat: %v %+v", err, again)
	}
	_, err = h.Execute(ctx, id, id, domain.Suspend{Reason: "payment"}, command.Meta{Actor: "t"})
	if !errors.Is(err, domain.ErrPrecondition) {
		t.Fatalf("suspend a draft: %v", err)
	}
	last, _ := e.store.LastSeq(ctx)
	if last != upd.Seq || res.Seq >= upd.Seq {
		t.Fatalf("refused commands appended: last seq %d, want %d", last, upd.Seq)
	}
}

// TestStaleCacheIsRefreshed: an instance whose cached state is behind must
// not refuse a command the current state allows.
func TestStaleCacheIsRefreshed(t *testing.T) {
	e := setup(t)
	ctx := testenv.Context(t, time.Minute)
	a, b := e.handler(), e.handler()
	id := newID()
	if _, err := a.Execute(ctx, id, id, createCmd(id, "stale", nil), command.Meta{Actor: "t"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Load(ctx, id, id); err != nil { // b caches the draft
		t.Fatal(err)
	}
	if _, err := a.Execute(ctx, id, id, domain.RequestActivation{}, command.Meta{Actor: "t"}); err != nil {
		t.Fatal(err)
	}
	// b still believes the tenant is a draft; cancel-activation is a no-op
	// there but a real transition in the log.
	res, err := b.Execute(ctx, id, id, domain.CancelActivation{}, command.Meta{Actor: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if res.State.State != domain.StateDraft || res.State.Version != 3 {
		t.Fatalf("state %s version %d", res.State.State, res.State.Version)
	}
	_ = context.Background
}
