package events

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

var t0 = time.Date(2026, 11, 1, 10, 0, 0, 123456000, time.UTC)

func ptr[T any](v T) *T { return &v }

// samples holds one representative payload per event type. The golden file
// of each freezes its JSON shape: changing a shape breaks the test, which is
// the point — shapes are permanent; add a new versioned type instead.
var samples = map[string]Payload{
	TypeTenantCreated: &TenantCreated{
		Slug: "acme", DisplayName: "Acme Corp", Plan: "standard",
		Regions:     Regions{Allowed: []string{"eu-west-1", "eu-central-1"}, Preferred: "eu-west-1"},
		Isolation:   "shared",
		ExternalIDs: map[string]string{"billing": "cus_123"},
		Labels:      map[string]string{"env": "prod"},
		CustomerRef: "cust-42",
		PII:         "v1.k1.c2VhbGVk",
	},
	TypeTenantUpdated: &TenantUpdated{
		Changed: []string{"contacts", "customer_ref", "display_name", "external_ids", "isolation", "labels", "regions"}, DisplayName: ptr("Acme GmbH"),
		Regions: &Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"}, Isolation: ptr("hybrid"),
		ExternalIDs: map[string]string{"crm": "0012"}, Labels: map[string]string{"tier": "gold"}, CustomerRef: ptr(""),
		PII: "v1.k1.c2VhbGVk",
	},
	TypeTenantPlanChanged: &TenantPlanChanged{From: "standard", To: "enterprise", Features: []string{"audit-export", "sso"}, Quotas: map[string]int64{"users": 10000}},
	TypeTenantActivationRequested: &TenantActivationRequested{
		Placement: Placement{Region: "eu-west-1", Isolation: "shared"}, Plan: "standard",
		Features: []string{"sso"}, Quotas: map[string]int64{"users": 100},
		Policy: []PolicyCheck{{Name: "plan.exists", Outcome: "passed", Detail: "standard"}},
		PII:    "v1.k1.c2VhbGVk",
	},
	TypeTenantActivationCancelled: &TenantActivationCancelled{Reason: "wrong region"},
	TypeTenantStepRecorded: &TenantStepRecorded{SagaID: "0193a0c0-0000-7000-8000-000000000002", Saga: "activate", Step: "realm", Outcome: StepCompleted, Attempt: 2,
		StartedAt: t0, FinishedAt: t0.Add(time.Second), Detail: "created", ExternalIDs: map[string]string{"realm_id": "r-1"}},
	TypeTenantProvisioningFailed:  &TenantProvisioningFailed{SagaID: "0193a0c0-0000-7000-8000-000000000002", Saga: "activate", Step: "billing", Attempt: 3, Reason: "billing rejected plan"},
	TypeTenantProvisioningRetried: &TenantProvisioningRetried{SagaID: "0193a0c0-0000-7000-8000-000000000002", Saga: "activate", Step: "billing"},
	TypeTenantActivated:           &TenantActivated{SagaID: "0193a0c0-0000-7000-8000-000000000002", Region: "eu-west-1"},
	TypeTenantSuspended:           &TenantSuspended{Reason: "payment", Note: "invoice 42 overdue"},
	TypeTenantResumed:             &TenantResumed{},
	TypeTenantArchived:            &TenantArchived{},
	TypeTenantRestored:            &TenantRestored{},
	TypeTenantDeleted:             &TenantDeleted{Slug: "acme"},
	TypeTenantDriftRepaired:       &TenantDriftRepaired{System: "keycloak", Resource: "realm acme", Found: "enabled", Expected: "disabled", Action: "disabled the realm"},
	TypeTenantSagaCompleted:       &TenantSagaCompleted{SagaID: "0193a0c0-0000-7000-8000-000000000004", Saga: "suspend"},
	TypeSigningKeyRegistered:      &SigningKeyRegistered{PublicKey: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", Algorithm: "Ed25519"},
	TypeSigningKeyRetired:         &SigningKeyRetired{Reason: "scheduled rotation"},
	TypeWebhookCreated: &WebhookCreated{URL: "https://billing.example.com/hooks/tenancy", EventTypes: []string{"tenancy.tenant.*"},
		Description: "billing sync", Enabled: true, SecretVersion: 1},
	TypeWebhookUpdated:            &WebhookUpdated{Changed: []string{"url", "enabled"}, URL: "https://billing.example.com/v2/hooks", Enabled: new(true)},
	TypeWebhookSecretRotated:      &WebhookSecretRotated{SecretVersion: 2, PreviousValidUntil: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)},
	TypeWebhookDisabled:           &WebhookDisabled{Reason: "the endpoint answered 410 Gone"},
	TypeWebhookDeleted:            &WebhookDeleted{},
	TypeWebhookDeadLetterRequeue:  &WebhookDeadLettersRequeued{DeadLetters: []uint64{12, 13}},
	TypeWebhookDeadLetterDiscard:  &WebhookDeadLetterDiscarded{DeadLetter: 14, EventID: "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b44", Reason: "customer cancelled"},
	TypeWebhookReplayRequested:    &WebhookReplayRequested{FromSeq: 100, ToSeq: 250, Types: []string{"tenancy.tenant.suspended.v1"}},
	TypeTenantAdminPasswordIssued: &TenantAdminPasswordIssued{},
	TypeProjectionEventSkipped:    &ProjectionEventSkipped{Projection: "tenants", Seq: 42, Reason: "written by hand in an incident", Error: "malformed event"},
	TypeQuarantineResolved: &QuarantineResolved{Seq: 77, Subject: "tenancy.evt.0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b44.tenant.0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b44",
		Violation: "bad-signature", Reason: "published by hand with a test key"},
	TypeCustomerCreated: &CustomerCreated{Kind: "business", LegalName: "Acme Private Limited", DisplayName: "Acme", Email: "accounts@acme.example",
		Phone: "+912212345678", RealmMode: "own", ExternalIDs: map[string]string{"billing": "cus_9"}, Labels: map[string]string{"segment": "smb"},
		PII: "v1.k1.c2VhbGVk"},
	TypeCustomerUpdated: &CustomerUpdated{Changed: []string{"display_name", "fiscal_ids", "labels", "realm_mode"}, DisplayName: ptr("Acme India"),
		RealmMode: ptr("shared"), Labels: map[string]string{"segment": "mid"}, PII: "v1.k1.c2VhbGVk"},
	TypeCustomerVerificationRecorded: &CustomerVerificationRecorded{Type: "kyb", Status: "due_for_rekyc",
		Evidence: []Evidence{{Kind: "certificate_of_incorporation", Reference: "dms://kyb/acme/coi-2026"}}, Note: "annual review", GraceUntil: "2026-12-31T00:00:00Z"},
	TypeCustomerRekycGraceExpired: &CustomerRekycGraceExpired{GraceUntil: "2026-12-31T00:00:00Z"},
	TypeCustomerDeleted:           &CustomerDeleted{},
	TypeTenantCustomerAssigned:    &TenantCustomerAssigned{CustomerID: "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b45"},
	TypeTenantHoldAdded:           &TenantHoldAdded{Reason: "compliance", Note: "re-KYC grace ended"},
	TypeTenantHoldLifted:          &TenantHoldLifted{Reason: "payment"},
	TypeTenantRealmPlaced:         &TenantRealmPlaced{Mode: "shared", Realm: "shared", Organization: "acme"},
	TypeTenantMarkedRoot:          &TenantMarkedRoot{Role: "root"},
	TypeUserCreated: &UserCreated{UserID: "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b50", UsernameIndex: "hmac-username", EmailIndex: "hmac-email", Enabled: true,
		Roles: []string{"tenant-admin"}, Source: "tenancy", RequiredActions: []string{"UPDATE_PASSWORD", "VERIFY_EMAIL"}, PII: "v1.k1.c2VhbGVk"},
	TypeUserUpdated: &UserUpdated{UserID: "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b50", Changed: []string{"email", "roles"}, EmailIndex: ptr("hmac-email-2"),
		Roles: &[]string{"tenant-viewer"}, PII: "v1.k1.c2VhbGVk"},
	TypeUserDisabled:        &UserDisabled{UserID: "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b50", Reason: "left the company"},
	TypeUserEnabled:         &UserEnabled{UserID: "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b50", Reason: "rehired"},
	TypeUserDeleted:         &UserDeleted{UserID: "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b50"},
	TypeUserPasswordIssued:  &UserPasswordIssued{UserID: "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b50"},
	TypeClientCreated:       &ClientCreated{ID: "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b51", ClientID: "billing-sync", Name: "Billing sync", Roles: []string{"tenant-viewer"}, Enabled: true, SecretVersion: 1},
	TypeClientUpdated:       &ClientUpdated{ID: "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b51", Changed: []string{"enabled", "name"}, Name: ptr("Billing"), Enabled: new(false)},
	TypeClientSecretRotated: &ClientSecretRotated{ID: "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b51", SecretVersion: 2},
	TypeClientDeleted:       &ClientDeleted{ID: "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b51", ClientID: "billing-sync"},
	TypeOrgUnitCreated:      &OrgUnitCreated{ID: "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b52", Name: "North", Description: "northern sales", ParentID: "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b53"},
	TypeOrgUnitUpdated:      &OrgUnitUpdated{ID: "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b52", Changed: []string{"name", "parent_id"}, Name: ptr("North-East"), ParentID: ptr("")},
	TypeOrgUnitDeleted:      &OrgUnitDeleted{ID: "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b52"},
	TypeMembershipSet:       &MembershipSet{UserID: "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b50", OUID: "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b52", Roles: []string{"admin", "auditor"}},
	TypeMembershipRemoved:   &MembershipRemoved{UserID: "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b50", OUID: "0195f1c2-7d4e-7a10-8c3b-5f0e2a9d1b52"},
}

func TestPayloadGoldenFiles(t *testing.T) {
	for _, typ := range Types() {
		t.Run(typ, func(t *testing.T) {
			p, ok := samples[typ]
			if !ok {
				t.Fatalf("no sample for %s: add one and its golden file (go test -update)", typ)
			}
			got, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", "payloads", typ+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("missing golden file (run go test -update): %v", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Fatalf("%s changed shape; payloads are a permanent contract (-golden +now):\n%s", typ, diff)
			}
			// The frozen bytes still decode to the same payload.
			decoded, err := DecodePayload(typ, want)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(p, decoded); diff != "" {
				t.Fatalf("golden file does not round-trip (-sample +decoded):\n%s", diff)
			}
		})
	}
}

func newSigner(t testing.TB, seed byte) *Signer {
	t.Helper()
	s, err := NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func envelope(t testing.TB, id string, version int64, prev Hash, p Payload) *Envelope {
	t.Helper()
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return &Envelope{
		SpecVersion: SpecVersion, ID: id, Source: Source, Type: p.EventType(), Subject: "t1",
		Time: t0, DataContentType: ContentType, TenantID: "t1", Actor: "user-1",
		CorrelationID: "req-1", AggVersion: version, PrevHash: PrevHash(prev), Data: data,
	}
}

// chain returns n signed events of one aggregate.
func chain(t testing.TB, s *Signer, n int) [][]byte {
	t.Helper()
	var out [][]byte
	var prev Hash
	for i := 1; i <= n; i++ {
		var p Payload = &TenantSuspended{Reason: "payment"}
		if i == 1 {
			p = samples[TypeTenantCreated]
		}
		raw, h, err := s.Sign(envelope(t, "e"+string(rune('0'+i)), int64(i), prev, p))
		if err != nil {
			t.Fatal(err)
		}
		prev = h
		out = append(out, raw)
	}
	return out
}

const subj = "tenancy.evt.t1.tenant.t1"

func TestSignAndVerify(t *testing.T) {
	s := newSigner(t, 1)
	keys := NewKeySet(PublicKey{Key: s.PublicKey(), CreatedAt: t0})
	events := chain(t, s, 4)
	v := NewChainVerifier(keys)
	for i, raw := range events {
		if err := v.Next(uint64(i+1), subj, raw); err != nil {
			t.Fatalf("event %d: %v", i+1, err)
		}
	}
	if v.Count() != 4 || v.Aggregates() != 1 {
		t.Fatalf("count %d aggregates %d", v.Count(), v.Aggregates())
	}
	e, err := Parse(events[1])
	if err != nil {
		t.Fatal(err)
	}
	first, _ := Parse(events[0])
	if first.PrevHash != "" || e.PrevHash == "" || e.SigKeyID != s.KeyID() {
		t.Fatalf("prevhash %q/%q kid %q", first.PrevHash, e.PrevHash, e.SigKeyID)
	}
}

// TestReadableRefusesWhatDoesNotReadBack: an event whose payload would
// come back changed from canonical JSON (an integer beyond 2^53) or not at
// all is refused before it is appended; an ordinary one passes.
func TestReadableRefusesWhatDoesNotReadBack(t *testing.T) {
	s := newSigner(t, 1)
	sign := func(p Payload) []byte {
		data, _ := json.Marshal(p)
		raw, _, err := s.Sign(&Envelope{SpecVersion: "1.0", ID: "e1", Source: "/test", Type: p.EventType(), Subject: "w1", Time: t0,
			DataContentType: "application/json", TenantID: PlatformTenantID, Actor: "test", AggVersion: 1, Data: data})
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	for name, tc := range map[string]struct {
		p  Payload
		ok bool
	}{
		"within 2^53":      {&WebhookReplayRequested{FromSeq: 1, ToSeq: 1<<53 - 1}, true},
		"rounded silently": {&WebhookReplayRequested{FromSeq: 1, ToSeq: 1<<60 + 1}, false},
		"beyond uint64":    {&WebhookReplayRequested{FromSeq: 1, ToSeq: 1<<64 - 1}, false},
	} {
		t.Run(name, func(t *testing.T) {
			if err := Readable(sign(tc.p), tc.p); (err == nil) != tc.ok {
				t.Fatalf("Readable = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestVerifyDetectsTampering changes stored events in every way an attacker
// or a bug could and checks that verification names the broken event.
func TestVerifyDetectsTampering(t *testing.T) {
	s := newSigner(t, 1)
	other := newSigner(t, 2)
	keys := NewKeySet(PublicKey{Key: s.PublicKey(), CreatedAt: t0})
	// edit replaces event i with its JSON, changed, and canonical again, as
	// someone altering the stored event would.
	edit := func(ev [][]byte, i int, change func(m map[string]any)) [][]byte {
		var m map[string]any
		if err := json.Unmarshal(ev[i], &m); err != nil {
			t.Fatal(err)
		}
		change(m)
		ev[i] = genericCanonical(t, m)
		return ev
	}
	// resign replaces event i with its envelope, changed, and signed by
	// signer: what only a key holder could do.
	resign := func(signer *Signer, ev [][]byte, i int, change func(e *Envelope)) [][]byte {
		e, _ := Parse(ev[i])
		change(e)
		raw, _, err := signer.Sign(e)
		if err != nil {
			t.Fatal(err)
		}
		ev[i] = raw
		return ev
	}
	cases := map[string]struct {
		mutate func([][]byte) [][]byte
		at     uint64
		want   error
	}{
		"changed data": {func(ev [][]byte) [][]byte {
			return edit(ev, 2, func(m map[string]any) { m["data"].(map[string]any)["reason"] = "operator" })
		}, 3, ErrBadSignature},
		"changed actor": {func(ev [][]byte) [][]byte {
			return edit(ev, 1, func(m map[string]any) { m["actor"] = "someone-else" })
		}, 2, ErrBadSignature},
		"removed event":    {func(ev [][]byte) [][]byte { return append(ev[:1], ev[2:]...) }, 2, ErrVersionGap},
		"reordered":        {func(ev [][]byte) [][]byte { ev[1], ev[2] = ev[2], ev[1]; return ev }, 2, ErrVersionGap},
		"replayed event":   {func(ev [][]byte) [][]byte { return append(ev, ev[1]) }, 5, ErrReplayed},
		"last event again": {func(ev [][]byte) [][]byte { return append(ev, ev[3]) }, 5, ErrDuplicateEventID},
		"re-signed by an unknown key": {func(ev [][]byte) [][]byte {
			return resign(other, ev, 1, func(*Envelope) {})
		}, 2, ErrUnknownKey},
		"forged chain link": {func(ev [][]byte) [][]byte {
			// A validly signed event whose prevhash points elsewhere: only a
			// key holder could do this, and the chain still catches it.
			return resign(s, ev, 2, func(e *Envelope) { e.PrevHash = strings.Repeat("0", 64) })
		}, 3, ErrBrokenChain},
		"not canonical": {func(ev [][]byte) [][]byte {
			ev[0] = append([]byte(" "), ev[0]...)
			return ev
		}, 1, ErrNotCanonical},
		"wrong subject": {func(ev [][]byte) [][]byte {
			return edit(ev, 0, func(m map[string]any) { m["subject"] = "t2" })
		}, 1, ErrBadSignature},
		"garbage signature": {func(ev [][]byte) [][]byte {
			return edit(ev, 3, func(m map[string]any) { m["signature"] = "!!" })
		}, 4, ErrBadSignature},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			ev := tc.mutate(chain(t, s, 4))
			v := NewChainVerifier(keys)
			var err error
			for i, raw := range ev {
				if err = v.Next(uint64(i+1), subj, raw); err != nil {
					break
				}
			}
			var ve *VerifyError
			if !errors.As(err, &ve) || !errors.Is(err, tc.want) {
				t.Fatalf("error = %v, want a VerifyError wrapping %v", err, tc.want)
			}
			if ve.Seq != tc.at {
				t.Fatalf("failure reported at seq %d, want %d", ve.Seq, tc.at)
			}
		})
	}
}

func TestEnvelopeIsAValidCloudEvent(t *testing.T) {
	s := newSigner(t, 1)
	raw := chain(t, s, 1)[0]
	var ce cloudevents.Event
	if err := json.Unmarshal(raw, &ce); err != nil {
		t.Fatalf("sdk-go cannot parse our event: %v", err)
	}
	if err := ce.Validate(); err != nil {
		t.Fatalf("sdk-go says the event is invalid: %v", err)
	}
	if ce.Type() != TypeTenantCreated || ce.Subject() != "t1" || ce.SpecVersion() != "1.0" {
		t.Fatalf("attributes: %s %s %s", ce.Type(), ce.Subject(), ce.SpecVersion())
	}
	for _, ext := range []string{"tenantid", "actor", "correlationid", "aggversion", "sigkeyid", "signature"} {
		if _, ok := ce.Extensions()[ext]; !ok {
			t.Errorf("extension %s missing", ext)
		}
	}
	// Extension names must be lowercase alphanumerics (CloudEvents 1.0).
	for name := range ce.Extensions() {
		if strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
			t.Errorf("extension %q is not lowercase alphanumeric", name)
		}
	}
	var data TenantCreated
	if err := ce.DataAs(&data); err != nil || data.Slug != "acme" {
		t.Fatalf("data: %v %+v", err, data)
	}
}

func TestDecodeUnknownAndUpcast(t *testing.T) {
	p, err := DecodePayload("tenancy.tenant.teleported.v9", []byte(`{"to":"mars"}`))
	if err != nil {
		t.Fatal(err)
	}
	u, ok := p.(*Unknown)
	if !ok || u.Type != "tenancy.tenant.teleported.v9" || string(u.Data) != `{"to":"mars"}` {
		t.Fatalf("unknown type decoded to %#v", p)
	}
	registerUpcaster("tenancy.tenant.suspended.v0", func(raw json.RawMessage) (Payload, error) {
		var old struct {
			Why string `json:"why"`
		}
		if err := json.Unmarshal(raw, &old); err != nil {
			return nil, err
		}
		return &TenantSuspended{Reason: old.Why}, nil
	})
	defer delete(upcasters, "tenancy.tenant.suspended.v0")
	p, err = DecodePayload("tenancy.tenant.suspended.v0", []byte(`{"why":"payment"}`))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&TenantSuspended{Reason: "payment"}, p); diff != "" {
		t.Fatal(diff)
	}
	if _, err := DecodePayload(TypeTenantCreated, []byte(`{"slug":7}`)); !errors.Is(err, ErrBadPayload) {
		t.Fatalf("mistyped data: %v", err)
	}
}

type fakeCipher struct{ erased map[string]bool }

func (f fakeCipher) Seal(tenant string, plain []byte) (string, error) {
	return tenant + ":" + base64.StdEncoding.EncodeToString(plain), nil
}

func (f fakeCipher) Open(tenant, sealed string) ([]byte, error) {
	if f.erased[tenant] {
		return nil, ErrErased
	}
	rest, ok := strings.CutPrefix(sealed, tenant+":")
	if !ok {
		return nil, errors.New("sealed for another tenant")
	}
	return base64.StdEncoding.DecodeString(rest)
}

func TestPersonalDataIsOnlyStoredSealed(t *testing.T) {
	p := &TenantCreated{Slug: "acme", Contacts: []Contact{{Role: "billing", Name: "A. Person", Email: "a@acme.test"}}}
	if err := SealPII(p, "t1", nil); err == nil {
		t.Fatal("sealing without a cipher must fail rather than drop or leak data")
	}
	c := fakeCipher{erased: map[string]bool{}}
	if err := SealPII(p, "t1", c); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(p)
	if bytes.Contains(raw, []byte("a@acme.test")) || bytes.Contains(raw, []byte("A. Person")) {
		t.Fatalf("plaintext personal data in the encoded payload: %s", raw)
	}
	decoded, _ := DecodePayload(TypeTenantCreated, raw)
	if err := OpenPII(decoded, "t1", c); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p.Contacts, decoded.(*TenantCreated).Contacts); diff != "" {
		t.Fatal(diff)
	}
	c.erased["t1"] = true
	decoded, _ = DecodePayload(TypeTenantCreated, raw)
	if err := OpenPII(decoded, "t1", c); err != nil {
		t.Fatal(err)
	}
	if got := decoded.(*TenantCreated); got.Contacts != nil || !got.PIIErased {
		t.Fatalf("after erasure: %+v", got)
	}
}

// TestUserDataIsSealedUnderTheUsersOwnKey: erasing one user destroys that
// user's key alone; the tenant's key and the other users' stay.
func TestUserDataIsSealedUnderTheUsersOwnKey(t *testing.T) {
	c := fakeCipher{erased: map[string]bool{}}
	seal := func(id string) []byte {
		p := &UserCreated{UserID: id, UsernameIndex: "i-" + id, Personal: &UserPII{Username: "name-" + id, Email: id + "@acme.test"}}
		if err := SealPII(p, "t1", c); err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(p)
		if bytes.Contains(raw, []byte("name-"+id)) || bytes.Contains(raw, []byte("@acme.test")) {
			t.Fatalf("plaintext personal data in the encoded payload: %s", raw)
		}
		return raw
	}
	a, b := seal("a"), seal("b")
	c.erased[UserPIIScope("a")] = true
	for _, tc := range []struct {
		raw    []byte
		erased bool
	}{{a, true}, {b, false}} {
		p, _ := DecodePayload(TypeUserCreated, tc.raw)
		if err := OpenPII(p, "t1", c); err != nil {
			t.Fatal(err)
		}
		u := p.(*UserCreated)
		if u.PIIErased != tc.erased || (u.Personal == nil) != tc.erased {
			t.Fatalf("user %s: erased %v, personal %+v", u.UserID, u.PIIErased, u.Personal)
		}
	}
}

func TestJWKSRoundTrip(t *testing.T) {
	a, b := newSigner(t, 1), newSigner(t, 2)
	ks := NewKeySet(
		PublicKey{Key: a.PublicKey(), CreatedAt: t0, RetiredAt: t0.Add(time.Hour)},
		PublicKey{Key: b.PublicKey(), CreatedAt: t0.Add(time.Hour)},
	)
	raw, err := json.Marshal(ks.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseJWKS(raw)
	if err != nil {
		t.Fatal(err)
	}
	keys := back.Keys()
	if len(keys) != 2 || keys[0].ID != a.KeyID() || keys[0].RetiredAt.IsZero() || keys[1].ID != b.KeyID() {
		t.Fatalf("keys = %+v", keys)
	}
	set := ks.JWKS()
	if set.Keys[0].Status != "retired" || set.Keys[1].Status != "active" || set.Keys[1].Alg != "EdDSA" {
		t.Fatalf("jwks = %+v", set)
	}
	bad := strings.Replace(string(raw), a.KeyID(), b.KeyID(), 1)
	if _, err := ParseJWKS([]byte(bad)); err == nil {
		t.Fatal("a kid that is not the key's thumbprint must be refused")
	}
}

func TestSubjects(t *testing.T) {
	s := Subject("t1", AggregateTenant, "t1")
	tenant, agg, id, err := ParseSubject(s)
	if err != nil || tenant != "t1" || agg != "tenant" || id != "t1" {
		t.Fatalf("%s -> %s %s %s %v", s, tenant, agg, id, err)
	}
	for _, bad := range []string{"tenancy.claim.slug.x", "tenancy.evt.t1.tenant", "x.evt.a.b.c"} {
		if _, _, _, err := ParseSubject(bad); err == nil {
			t.Errorf("ParseSubject(%q) succeeded", bad)
		}
	}
	if AggregateOfType(TypeTenantCreated) != "tenant" || AggregateOfType("other.x") != "" {
		t.Fatal("AggregateOfType")
	}
}

// FuzzDecode feeds arbitrary bytes to everything that reads stored events:
// none of it may panic, and anything that verifies must be canonical.
func FuzzDecode(f *testing.F) {
	s := newSigner(f, 1)
	keys := NewKeySet(PublicKey{Key: s.PublicKey()})
	for _, raw := range chain(f, s, 2) {
		f.Add(raw)
	}
	seeds, _ := filepath.Glob(filepath.Join("testdata", "payloads", "*.json"))
	for _, p := range seeds {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte(`{"specversion":"1.0","data":[]}`))
	f.Add([]byte(`{"aggversion":1e400}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, _, _ = Decode(raw)
		e, _, err := keys.Verify(raw)
		if err == nil {
			c, cerr := Canonical(raw)
			if cerr != nil || !bytes.Equal(c, raw) {
				t.Fatalf("verified bytes are not canonical")
			}
			if _, err := DecodePayload(e.Type, e.Data); err != nil && !errors.Is(err, ErrBadPayload) {
				t.Fatalf("unexpected decode error kind: %v", err)
			}
		}
		v := NewChainVerifier(keys)
		_ = v.Next(1, subj, raw)
		for _, typ := range Types() {
			_, _ = DecodePayload(typ, raw)
		}
	})
}
