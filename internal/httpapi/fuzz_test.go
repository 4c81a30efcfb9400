package httpapi

import (
	"errors"
	"testing"

	"github.com/tenancyhq/tenancy/internal/catalog"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// knownKind reports whether err is one of the kinds the error table maps
// to a 4xx: anything else would be a 500.
func knownKind(err error) bool {
	p, unexpected := problemFor(err)
	return !unexpected && p.Status < 500
}

func fuzzState(t testing.TB) (domain.TenantDecider, domain.Tenant) {
	cat, err := catalog.Load("")
	if err != nil {
		t.Fatal(err)
	}
	d := domain.TenantDecider{Catalog: cat}
	var s domain.Tenant
	s = domain.EvolveTenant(s, domain.Recorded{AggregateID: "t1", ID: "e1", Version: 1, Payload: &events.TenantCreated{
		Slug: "acme", DisplayName: "Acme", Plan: "standard", Isolation: "shared",
		Regions:     domain.Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"},
		ExternalIDs: map[string]string{"billing": "cus_1"}, Labels: map[string]string{"env": "prod"},
	}})
	return d, s
}

// FuzzCreateInput: any body sent to POST /v1/tenants is either decided into
// a valid created event or refused with a 4xx kind, never a panic or a 500.
func FuzzCreateInput(f *testing.F) {
	for _, seed := range []string{
		`{"slug":"acme","display_name":"Acme Corp","plan":"standard","regions":{"allowed":["eu-west-1","eu-central-1"],"preferred":"eu-west-1"},"isolation":"shared","contacts":[{"role":"billing","name":"A. Person","email":"billing@acme.test"}],"external_ids":{"billing":"cus_123"},"labels":{"env":"prod"}}`,
		`{"slug":"a","regions":null}`, `[]`, `{"contacts":[{"role":1}]}`, `{"labels":{"":""}}`, `{"slug":"\u0000"}`, `{"regions":{"allowed":[null]}}`,
	} {
		f.Add([]byte(seed))
	}
	d, _ := fuzzState(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		var req CreateTenantRequest
		if err := decodeStrict(body, &req); err != nil {
			if !knownKind(err) {
				t.Fatalf("decode error of unknown kind: %v", err)
			}
			return
		}
		cmd := domain.CreateTenant{ID: "t1", Slug: req.Slug, DisplayName: req.DisplayName, Plan: req.Plan, Isolation: req.Isolation,
			Contacts: req.Contacts, ExternalIDs: req.ExternalIDs, Labels: req.Labels, CustomerRef: req.CustomerRef}
		if req.Regions != nil {
			cmd.Regions = *req.Regions
		}
		evs, err := d.Decide(domain.Tenant{}, cmd)
		if err != nil {
			if !knownKind(err) {
				t.Fatalf("decide error of unknown kind: %v", err)
			}
			return
		}
		if len(evs) != 1 {
			t.Fatalf("create decided %d events", len(evs))
		}
		if err := domain.ValidateSlug(req.Slug); err != nil {
			t.Fatalf("accepted an invalid slug %q", req.Slug)
		}
	})
}

// FuzzPatchInput: any merge patch is either decided or refused with a 4xx
// kind, and a decided update folds into a state that still validates.
func FuzzPatchInput(f *testing.F) {
	for _, seed := range []string{
		`{"display_name":"Acme GmbH","labels":{"tier":"gold","env":null}}`, `{"labels":null}`, `{"external_ids":{"billing":null,"crm":"x"}}`,
		`{"regions":{"preferred":"eu-central-1","allowed":["eu-central-1"]}}`, `{"contacts":null}`, `{"customer_ref":null}`, `{"slug":"x"}`,
		`{"regions":{"allowed":null}}`, `{"plan":"enterprise","isolation":"dedicated"}`, `{"contacts":[{"role":"technical","name":"T","email":"t@x.io","extra":1}]}`,
	} {
		f.Add([]byte(seed))
	}
	d, s := fuzzState(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		cmd, err := parsePatch(body)
		if err != nil {
			if !knownKind(err) {
				t.Fatalf("patch parse error of unknown kind: %v", err)
			}
			return
		}
		evs, err := d.Decide(s, cmd)
		if err != nil {
			if !knownKind(err) && !errors.Is(err, domain.ErrInvalid) {
				t.Fatalf("decide error of unknown kind: %v", err)
			}
			return
		}
		next := s
		for i, e := range evs {
			next = domain.EvolveTenant(next, domain.Recorded{AggregateID: "t1", ID: "x", Version: s.Version + int64(i) + 1, Payload: e})
		}
		if next.DisplayName == "" || next.Plan == "" || len(next.Regions.Allowed) == 0 {
			t.Fatalf("a patch produced an invalid tenant: %+v", next)
		}
	})
}
