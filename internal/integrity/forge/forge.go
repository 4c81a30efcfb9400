// Package forge makes the messages the integrity tests put on the log: what
// someone with publish rights on the stream but without Tenancy's signing
// key (or with it, to test the chain checks alone) could append to a
// tenant's subject. Tests only.
package forge

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"

	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// ForgedName is the display name every forged update sets: a test looks
// for it in read models and deliveries, where it must never appear.
const ForgedName = "FORGED"

// Fixture is what forging needs: the log, Tenancy's genuine signer, and a
// way to create another tenant (for a genuine event of someone else).
type Fixture struct {
	Log       eventstore.Log
	Signer    *events.Signer
	NewTenant func(t testing.TB, slug string) string
}

// Attack is one message put on a tenant's subject, and the reason every
// reader must give for refusing it.
type Attack struct {
	Name   string
	Reason string
	Forge  func(t testing.TB, ctx context.Context, f Fixture, tenantID string) (subject string, data []byte)
}

// TenantSubject is the subject of the tenant aggregate id.
func TenantSubject(id string) string { return events.Subject(id, events.AggregateTenant, id) }

// Events returns the stored messages of a tenant aggregate.
func Events(t testing.TB, ctx context.Context, log eventstore.Log, id string) []eventstore.Message {
	t.Helper()
	msgs, err := log.ReadAll(ctx, TenantSubject(id), 1)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// Next returns an unsigned envelope that would follow the tenant's last
// event: an update to ForgedName at the next version, chained to it.
func Next(t testing.TB, ctx context.Context, log eventstore.Log, id string) *events.Envelope {
	t.Helper()
	msgs := Events(t, ctx, log, id)
	last := msgs[len(msgs)-1]
	e, err := events.Parse(last.Data)
	if err != nil {
		t.Fatal(err)
	}
	name := ForgedName
	data, _ := json.Marshal(events.TenantUpdated{Changed: []string{"display_name"}, DisplayName: &name})
	return &events.Envelope{SpecVersion: "1.0", ID: "forged-" + id, Source: e.Source, Type: events.TypeTenantUpdated, Subject: id,
		Time: e.Time, DataContentType: "application/json", TenantID: id, Actor: "attacker", AggVersion: e.AggVersion + 1,
		PrevHash: events.PrevHash(events.HashCanonical(last.Data)), Data: data}
}

// Sign signs e with s.
func Sign(t testing.TB, s *events.Signer, e *events.Envelope) []byte {
	t.Helper()
	raw, _, err := s.Sign(e)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// NewSigner returns a signer with a fresh key, unknown to the log.
func NewSigner(t testing.TB) *events.Signer {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := events.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Attacks are the messages the integrity checks must refuse, one per
// reason.
func Attacks() []Attack {
	return []Attack{
		{"bad signature", "bad-signature", func(t testing.TB, ctx context.Context, f Fixture, id string) (string, []byte) {
			// Signed by another key but naming the genuine one.
			raw := Sign(t, NewSigner(t), Next(t, ctx, f.Log, id))
			var m map[string]any
			_ = json.Unmarshal(raw, &m)
			m["sigkeyid"] = f.Signer.KeyID()
			b, _ := json.Marshal(m)
			canon, err := events.Canonical(b)
			if err != nil {
				t.Fatal(err)
			}
			return TenantSubject(id), canon
		}},
		{"unknown key", "unknown-key", func(t testing.TB, ctx context.Context, f Fixture, id string) (string, []byte) {
			return TenantSubject(id), Sign(t, NewSigner(t), Next(t, ctx, f.Log, id))
		}},
		{"genuine event again", "replayed", func(t testing.TB, ctx context.Context, f Fixture, id string) (string, []byte) {
			return TenantSubject(id), Events(t, ctx, f.Log, id)[0].Data
		}},
		{"skipped version", "version-gap", func(t testing.TB, ctx context.Context, f Fixture, id string) (string, []byte) {
			e := Next(t, ctx, f.Log, id)
			e.AggVersion++
			return TenantSubject(id), Sign(t, f.Signer, e)
		}},
		{"prevhash elsewhere", "broken-chain", func(t testing.TB, ctx context.Context, f Fixture, id string) (string, []byte) {
			e := Next(t, ctx, f.Log, id)
			e.PrevHash = strings.Repeat("ab", 32)
			return TenantSubject(id), Sign(t, f.Signer, e)
		}},
		{"another tenant's event", "subject-mismatch", func(t testing.TB, ctx context.Context, f Fixture, id string) (string, []byte) {
			other := f.NewTenant(t, "other-"+id[len(id)-6:])
			return TenantSubject(id), Events(t, ctx, f.Log, other)[0].Data
		}},
		{"not a CloudEvent", "not-an-event", func(t testing.TB, ctx context.Context, f Fixture, id string) (string, []byte) {
			return TenantSubject(id), []byte("hello " + ForgedName)
		}},
		{"not canonical", "not-canonical", func(t testing.TB, ctx context.Context, f Fixture, id string) (string, []byte) {
			return TenantSubject(id), append([]byte(" "), Sign(t, f.Signer, Next(t, ctx, f.Log, id))...)
		}},
	}
}
