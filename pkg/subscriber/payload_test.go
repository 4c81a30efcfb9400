package subscriber_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"

	"github.com/tenancyhq/tenancy/pkg/events"
	"github.com/tenancyhq/tenancy/pkg/subscriber"
)

// rawPayload is event data given as JSON, to deliver data no Go type
// produces: a golden file, another version's shape, a broken one.
type rawPayload struct {
	typ  string
	data json.RawMessage
}

func (p rawPayload) EventType() string { return p.typ }

func (p rawPayload) MarshalJSON() ([]byte, error) { return p.data, nil }

// mustDelivered returns the event a verifier hands over for a delivery of
// an event with payload p.
func mustDelivered(t *testing.T, p events.Payload) event.Event {
	t.Helper()
	secret := mustSecret(t)
	signer := mustSigner(t, 1)
	body := mustEvent(t, signer, p)
	v := mustVerifier(t, subscriber.Config{Secrets: []string{secret}, EventKeys: subscriber.StaticKeys(keysOf(signer))})
	d, err := v.Verify(context.Background(), headers(t, eventID, now, body, secret), body)
	if err != nil {
		t.Fatal(err)
	}
	return d.Event
}

func TestPayload(t *testing.T) {
	// The frozen contract of tenancy.tenant.created.v1, as pkg/events'
	// golden file holds it: a delivery of it must decode to this.
	golden, err := os.ReadFile("../events/testdata/payloads/tenancy.tenant.created.v1.json")
	if err != nil {
		t.Fatal(err)
	}
	created := &events.TenantCreated{
		Slug: "acme", DisplayName: "Acme Corp", Plan: "standard",
		Regions:     events.Regions{Allowed: []string{"eu-west-1", "eu-central-1"}, Preferred: "eu-west-1"},
		Isolation:   "shared",
		ExternalIDs: map[string]string{"billing": "cus_123"},
		Labels:      map[string]string{"env": "prod"},
		CustomerRef: "cust-42",
		PII:         "v1.k1.c2VhbGVk",
	}
	for _, tc := range []struct {
		name    string
		payload events.Payload
		want    events.Payload
		wantErr error
	}{
		{"tenant created, golden data", rawPayload{events.TypeTenantCreated, golden}, created, nil},
		{"tenant suspended", &events.TenantSuspended{Reason: "payment", Note: "invoice 42"}, &events.TenantSuspended{Reason: "payment", Note: "invoice 42"}, nil},
		{
			// A type newer than this build: kept verbatim, not an error,
			// so an old receiver keeps working.
			"unknown type", rawPayload{"tenancy.tenant.teleported.v9", json.RawMessage(`{"to":"mars"}`)},
			&events.Unknown{Type: "tenancy.tenant.teleported.v9", Data: json.RawMessage(`{"to":"mars"}`)}, nil,
		},
		{"data not matching its type", rawPayload{events.TypeTenantSuspended, json.RawMessage(`{"reason":5}`)}, nil, events.ErrBadPayload},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := subscriber.Payload(mustDelivered(t, tc.payload))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !errors.Is(err, subscriber.ErrMalformed) {
					t.Fatalf("error %v, want ErrMalformed wrapping %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("payload (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAs(t *testing.T) {
	ev := mustDelivered(t, &events.TenantSuspended{Reason: "payment"})
	p, err := subscriber.As[*events.TenantSuspended](ev)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&events.TenantSuspended{Reason: "payment"}, p); diff != "" {
		t.Errorf("payload (-want +got):\n%s", diff)
	}
	other, err := subscriber.As[*events.TenantCreated](ev)
	if !errors.Is(err, subscriber.ErrPayloadType) || other != nil {
		t.Fatalf("As of another type: %v, %v; want ErrPayloadType", other, err)
	}
}

func TestExtensionsOf(t *testing.T) {
	ev := mustDelivered(t, &events.TenantResumed{})
	got, err := subscriber.ExtensionsOf(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := subscriber.Extensions{
		TenantID: tenantID, AggVersion: 3, Actor: "user-1", CorrelationID: "req-1", SigKeyID: mustSigner(t, 1).KeyID(),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("extensions (-want +got):\n%s", diff)
	}

	for name, set := range map[string]func(e *event.Event){
		"no aggversion":         func(e *event.Event) { e.SetExtension("aggversion", nil) },
		"aggversion 0":          func(e *event.Event) { e.SetExtension("aggversion", 0) },
		"tenantid not a string": func(e *event.Event) { e.SetExtension("tenantid", 7) },
		"truncated not a bool":  func(e *event.Event) { e.SetExtension("tenancytruncated", "maybe"); e.SetExtension("dataref", "/x") },
	} {
		t.Run(name, func(t *testing.T) {
			e := ev.Clone()
			set(&e)
			if _, err := subscriber.ExtensionsOf(e); !errors.Is(err, subscriber.ErrMalformed) {
				t.Fatalf("error %v, want ErrMalformed", err)
			}
		})
	}
}
