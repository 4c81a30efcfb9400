package subscriber_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/tenancyhq/tenancy/pkg/events"
	"github.com/tenancyhq/tenancy/pkg/subscriber"
)

const (
	eventID  = "01970000-0000-7000-8000-000000000001"
	tenantID = "0197aaaa-0000-7000-8000-000000000009"
)

// now is the receiver's clock in every test.
var now = time.Unix(1_760_000_000, 0)

// mustSecret returns a fresh whsec_ secret.
func mustSecret(t testing.TB) string {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(k)
}

// mustSign signs like any Standard Webhooks sender, with the official
// library rather than the code under test, so that a shared misreading of
// the scheme cannot make both sides agree.
func mustSign(t testing.TB, secret, id string, ts time.Time, body []byte) string {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := wh.Sign(id, ts, body)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// mustSigner returns an event signer with a key derived from seed.
func mustSigner(t testing.TB, seed byte) *events.Signer {
	t.Helper()
	s, err := events.NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// keysOf returns a key set holding the signers' public keys.
func keysOf(signers ...*events.Signer) *events.KeySet {
	ks := events.NewKeySet()
	for _, s := range signers {
		ks.Add(events.PublicKey{Key: s.PublicKey(), CreatedAt: now})
	}
	return ks
}

// suspended is the payload of the events most tests deliver.
var suspended = &events.TenantSuspended{Reason: "payment"}

// mustEvent returns the stored bytes of an event signed by s, as the
// webhooker sends them.
func mustEvent(t testing.TB, s *events.Signer, p events.Payload) []byte {
	t.Helper()
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := s.Sign(&events.Envelope{
		SpecVersion: events.SpecVersion, ID: eventID, Source: events.Source, Type: p.EventType(),
		Subject: tenantID, Time: now.Add(-time.Minute), DataContentType: events.ContentType,
		TenantID: tenantID, Actor: "user-1", CorrelationID: "req-1", AggVersion: 3,
		PrevHash: strings.Repeat("ab", 32), Data: data,
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// edit changes members of a JSON object and returns it canonical again, as
// someone altering a stored event would.
func edit(t testing.TB, raw []byte, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	c, err := events.Canonical(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// thin does what the webhooker does to an event over its body limit
// (internal/webhooks/deliver.go): data out, dataref and tenancytruncated in.
func thin(t testing.TB, raw []byte, dataref string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "data")
	ref, _ := json.Marshal(dataref)
	m["dataref"] = ref
	m["tenancytruncated"] = json.RawMessage("true")
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// headers returns a delivery's headers, signed with secrets over body.
func headers(t testing.TB, id string, ts time.Time, body []byte, secrets ...string) http.Header {
	t.Helper()
	sigs := make([]string, len(secrets))
	for i, s := range secrets {
		sigs[i] = mustSign(t, s, id, ts, body)
	}
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set("webhook-signature", strings.Join(sigs, " "))
	h.Set("tenancy-sequence", "42")
	h.Set("tenancy-attempt", "3")
	return h
}

// mustVerifier returns a verifier for c on the test clock.
func mustVerifier(t testing.TB, c subscriber.Config) *subscriber.Verifier {
	t.Helper()
	c.Now = func() time.Time { return now }
	v, err := subscriber.NewVerifier(c)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// failingKeys is a key source whose endpoint is down.
type failingKeys struct{}

func (failingKeys) KeySet(context.Context, string) (*events.KeySet, error) {
	return nil, errors.New("connection refused")
}

// fixture is what the Verify tests share: secrets, event keys, a signed
// event and the delivery a verifier should make of it.
type fixture struct {
	oldSecret, newSecret, otherSecret string
	signer, stranger                  *events.Signer
	keys                              subscriber.KeySource
	body, altered                     []byte
	base                              subscriber.Delivery
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{
		oldSecret: mustSecret(t), newSecret: mustSecret(t), otherSecret: mustSecret(t),
		signer: mustSigner(t, 1), stranger: mustSigner(t, 2),
	}
	f.keys = subscriber.StaticKeys(keysOf(f.signer))
	f.body = mustEvent(t, f.signer, suspended)
	f.altered = edit(t, f.body, func(m map[string]any) { m["data"].(map[string]any)["reason"] = "fraud" })
	f.base = subscriber.Delivery{
		ID: eventID, Timestamp: now, Sequence: 42, Attempt: 3, SignatureVerified: true,
		Extensions: subscriber.Extensions{
			TenantID: tenantID, AggVersion: 3, Actor: "user-1", CorrelationID: "req-1", SigKeyID: f.signer.KeyID(),
		},
	}
	return f
}

// with returns the fixture's delivery changed by change.
func (f *fixture) with(change func(d *subscriber.Delivery)) *subscriber.Delivery {
	d := f.base
	change(&d)
	return &d
}

// signed returns headers signed with newSecret over body, changed by change.
func (f *fixture) signed(t *testing.T, body []byte, change func(h http.Header)) http.Header {
	h := headers(t, eventID, now, body, f.newSecret)
	change(h)
	return h
}

// verifyCase is one delivery and what Verify must make of it: want, or
// an error wrapping wantErr (and wantAlso, its cause, when set).
type verifyCase struct {
	name              string
	config            subscriber.Config
	body              []byte
	header            http.Header
	want              *subscriber.Delivery
	wantErr, wantAlso error
}

func runVerify(t *testing.T, cases []verifyCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := mustVerifier(t, tc.config)
			got, err := v.Verify(context.Background(), tc.header, tc.body)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || (tc.wantAlso != nil && !errors.Is(err, tc.wantAlso)) {
					t.Fatalf("error %v, want %v (and %v)", err, tc.wantErr, tc.wantAlso)
				}
				if got != nil {
					t.Fatalf("a refused delivery was returned: %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.IgnoreFields(subscriber.Delivery{}, "Event", "Body")); diff != "" {
				t.Errorf("delivery (-want +got):\n%s", diff)
			}
			if got.Event.ID() != eventID || got.Event.Type() != events.TypeTenantSuspended || got.Event.Subject() != tenantID {
				t.Errorf("event attributes: %s %s %s", got.Event.ID(), got.Event.Type(), got.Event.Subject())
			}
			if !bytes.Equal(got.Body, tc.body) {
				t.Error("Body is not the body received")
			}
		})
	}
}

func TestVerifySignature(t *testing.T) {
	f := newFixture(t)
	newOnly := subscriber.Config{Secrets: []string{f.newSecret}}
	both := subscriber.Config{Secrets: []string{f.newSecret, f.oldSecret}}
	without := func(name string) http.Header { return f.signed(t, f.body, func(h http.Header) { h.Del(name) }) }
	runVerify(t, []verifyCase{
		{name: "valid", config: newOnly, body: f.body, header: headers(t, eventID, now, f.body, f.newSecret), want: &f.base},
		{name: "wrong secret", config: newOnly, body: f.body, header: headers(t, eventID, now, f.body, f.otherSecret), wantErr: subscriber.ErrBadSignature},
		{name: "rotation: receiver holds old and new, sender signs with old", config: both,
			body: f.body, header: headers(t, eventID, now, f.body, f.oldSecret), want: &f.base},
		{name: "rotation: sender signs with old and new, receiver holds new", config: newOnly,
			body: f.body, header: headers(t, eventID, now, f.body, f.oldSecret, f.newSecret), want: &f.base},
		{name: "rotation: neither of two signatures matches either secret", config: both,
			body: f.body, header: headers(t, eventID, now, f.body, f.otherSecret, mustSecret(t)), wantErr: subscriber.ErrBadSignature},
		{name: "only a scheme other than v1", config: newOnly, body: f.body,
			header: f.signed(t, f.body, func(h http.Header) {
				h.Set("webhook-signature", strings.Replace(h.Get("webhook-signature"), "v1,", "v1a,", 1))
			}),
			wantErr: subscriber.ErrBadSignature},
		{name: "tampered body", config: newOnly, body: f.altered, header: headers(t, eventID, now, f.body, f.newSecret), wantErr: subscriber.ErrBadSignature},
		{name: "signed for another id", config: newOnly, body: f.body,
			header:  f.signed(t, f.body, func(h http.Header) { h.Set("webhook-signature", mustSign(t, f.newSecret, "other-id", now, f.body)) }),
			wantErr: subscriber.ErrBadSignature},
		{name: "missing webhook-id", config: newOnly, body: f.body, header: without("webhook-id"), wantErr: subscriber.ErrMissingHeaders},
		{name: "missing webhook-timestamp", config: newOnly, body: f.body, header: without("webhook-timestamp"), wantErr: subscriber.ErrMissingHeaders},
		{name: "missing webhook-signature", config: newOnly, body: f.body, header: without("webhook-signature"), wantErr: subscriber.ErrMissingHeaders},
		{name: "unsigned, accepted only under InsecureSkipSignature", config: subscriber.Config{InsecureSkipSignature: true},
			body: f.body, header: http.Header{},
			want: f.with(func(d *subscriber.Delivery) {
				d.SignatureVerified, d.Timestamp, d.Sequence, d.Attempt = false, time.Time{}, 0, 0
			})},
	})
}

func TestVerifyTimestamp(t *testing.T) {
	f := newFixture(t)
	newOnly := subscriber.Config{Secrets: []string{f.newSecret}}
	tol := subscriber.DefaultTolerance
	at := func(ts time.Time) http.Header { return headers(t, eventID, ts, f.body, f.newSecret) }
	runVerify(t, []verifyCase{
		{name: "stale, correctly signed", config: newOnly, body: f.body, header: at(now.Add(-tol - time.Second)), wantErr: subscriber.ErrStale},
		{name: "future, correctly signed", config: newOnly, body: f.body, header: at(now.Add(tol + time.Second)), wantErr: subscriber.ErrStale},
		{name: "just inside the tolerance", config: newOnly, body: f.body, header: at(now.Add(-tol + time.Second)),
			want: f.with(func(d *subscriber.Delivery) { d.Timestamp = now.Add(-tol + time.Second) })},
		{name: "configured tolerance is narrower", config: subscriber.Config{Secrets: []string{f.newSecret}, Tolerance: 30 * time.Second},
			body: f.body, header: at(now.Add(-31 * time.Second)), wantErr: subscriber.ErrStale},
		{name: "not a number", config: newOnly, body: f.body,
			header: f.signed(t, f.body, func(h http.Header) { h.Set("webhook-timestamp", "yesterday") }), wantErr: subscriber.ErrBadTimestamp},
	})
}

func TestVerifyEvent(t *testing.T) {
	f := newFixture(t)
	newOnly := subscriber.Config{Secrets: []string{f.newSecret}}
	checked := subscriber.Config{Secrets: []string{f.newSecret}, EventKeys: f.keys}
	strangers := mustEvent(t, f.stranger, suspended)
	notEvent := []byte(`{"hello":"world"}`)
	noTenant := edit(t, f.body, func(m map[string]any) { delete(m, "tenantid") })
	runVerify(t, []verifyCase{
		{name: "event signature checked", config: checked, body: f.body, header: f.signed(t, f.body, func(http.Header) {}),
			want: f.with(func(d *subscriber.Delivery) { d.EventVerified = true })},
		{name: "event signed by an unknown key", config: checked, body: strangers, header: f.signed(t, strangers, func(http.Header) {}),
			wantErr: subscriber.ErrEventSignature, wantAlso: events.ErrUnknownKey},
		// The delivery is authentic (the HMAC is over the altered bytes),
		// but the event is not the one Tenancy signed.
		{name: "event altered after signing", config: checked, body: f.altered, header: f.signed(t, f.altered, func(http.Header) {}),
			wantErr: subscriber.ErrEventSignature, wantAlso: events.ErrBadSignature},
		{name: "altered event passes when its signature is not checked", config: newOnly, body: f.altered,
			header: f.signed(t, f.altered, func(http.Header) {}), want: &f.base},
		{name: "event keys unavailable", config: subscriber.Config{Secrets: []string{f.newSecret}, EventKeys: failingKeys{}},
			body: f.body, header: f.signed(t, f.body, func(http.Header) {}), wantErr: subscriber.ErrKeysUnavailable},
		{name: "too large", config: subscriber.Config{Secrets: []string{f.newSecret}, MaxBody: int64(len(f.body) - 1)},
			body: f.body, header: f.signed(t, f.body, func(http.Header) {}), wantErr: subscriber.ErrTooLarge},
		{name: "webhook-id is not the event id", config: newOnly, body: f.body,
			header: headers(t, "01970000-0000-7000-8000-0000000000ff", now, f.body, f.newSecret), wantErr: subscriber.ErrMalformed},
		{name: "authentic but not a CloudEvent", config: newOnly, body: notEvent, header: f.signed(t, notEvent, func(http.Header) {}),
			wantErr: subscriber.ErrMalformed},
		{name: "authentic CloudEvent without tenantid", config: newOnly, body: noTenant, header: f.signed(t, noTenant, func(http.Header) {}),
			wantErr: subscriber.ErrMalformed},
		{name: "tenancy-sequence not a number", config: newOnly, body: f.body,
			header: f.signed(t, f.body, func(h http.Header) { h.Set("tenancy-sequence", "-1") }), wantErr: subscriber.ErrMalformed},
		{name: "replayed", config: newOnly, body: f.body,
			header: f.signed(t, f.body, func(h http.Header) { h.Set("tenancy-replay", "true") }),
			want:   f.with(func(d *subscriber.Delivery) { d.Replay = true })},
	})
}

// TestVerifyAgreesWithTheOfficialLibrary checks the verdicts against the
// official library's own Verify, on its default tolerance, for deliveries
// it signed: accepting what it rejects (or the reverse) is a bug here.
func TestVerifyAgreesWithTheOfficialLibrary(t *testing.T) {
	secret := mustSecret(t)
	body := mustEvent(t, mustSigner(t, 1), suspended)
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	v, err := subscriber.NewVerifier(subscriber.Config{Secrets: []string{secret}})
	if err != nil {
		t.Fatal(err)
	}
	real := time.Now()
	for _, tc := range []struct {
		name string
		h    http.Header
		body []byte
	}{
		{"fresh", headers(t, eventID, real, body, secret), body},
		{"ten minutes old", headers(t, eventID, real.Add(-10*time.Minute), body, secret), body},
		{"ten minutes ahead", headers(t, eventID, real.Add(10*time.Minute), body, secret), body},
		{"other secret", headers(t, eventID, real, body, mustSecret(t)), body},
		{"two signatures, second matches", headers(t, eventID, real, body, mustSecret(t), secret), body},
		{"body changed", headers(t, eventID, real, body, secret), append([]byte(" "), body...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			theirs := wh.Verify(tc.body, tc.h)
			_, ours := v.Verify(context.Background(), tc.h, tc.body)
			if (theirs == nil) != (ours == nil) {
				t.Fatalf("official library says %v, subscriber says %v", theirs, ours)
			}
		})
	}
}

func TestNewVerifierRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    subscriber.Config
		want string
	}{
		{"no secret", subscriber.Config{}, "no secret"},
		{"secret and insecure", subscriber.Config{Secrets: []string{mustSecret(t)}, InsecureSkipSignature: true}, "choose one"},
		{"second secret not base64", subscriber.Config{Secrets: []string{mustSecret(t), "whsec_???"}}, "secret 2"},
		{"prefix only", subscriber.Config{Secrets: []string{"whsec_"}}, "secret 1"},
		{"negative tolerance", subscriber.Config{Secrets: []string{mustSecret(t)}, Tolerance: -time.Second}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := subscriber.NewVerifier(tc.c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "???") {
				t.Fatal("the error repeats the secret")
			}
		})
	}
}

func TestParseSecret(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	b64 := base64.StdEncoding.EncodeToString(key)
	for _, in := range []string{"whsec_" + b64, b64, " whsec_" + b64 + " "} {
		got, err := subscriber.ParseSecret(in)
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("ParseSecret(%q) = %x, %v; want %x", in, got, err, key)
		}
	}
}

// TestTruncated delivers an event over the webhooker's limit: accepted and
// flagged, its signature unchecked (its data is gone), its payload refused
// until fetched from dataref, and the fetched event then verifies.
func TestTruncated(t *testing.T) {
	secret := mustSecret(t)
	signer := mustSigner(t, 1)
	full := mustEvent(t, signer, suspended)
	const ref = "/v1/tenants/" + tenantID + "/events/42"
	body := thin(t, full, ref)
	v := mustVerifier(t, subscriber.Config{Secrets: []string{secret}, EventKeys: subscriber.StaticKeys(keysOf(signer))})

	d, err := v.Verify(context.Background(), headers(t, eventID, now, body, secret), body)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Truncated || d.DataRef != ref || d.EventVerified || d.TenantID != tenantID {
		t.Fatalf("truncated %v dataref %q event verified %v tenant %q", d.Truncated, d.DataRef, d.EventVerified, d.TenantID)
	}
	if _, err := subscriber.Payload(d.Event); !errors.Is(err, subscriber.ErrTruncated) {
		t.Fatalf("Payload of a truncated event: %v, want ErrTruncated", err)
	}
	if _, err := subscriber.As[*events.TenantSuspended](d.Event); !errors.Is(err, subscriber.ErrTruncated) {
		t.Fatalf("As on a truncated event: %v, want ErrTruncated", err)
	}

	// What the receiver fetched from dataref.
	ev, err := v.Event(context.Background(), full)
	if err != nil {
		t.Fatal(err)
	}
	p, err := subscriber.As[*events.TenantSuspended](ev)
	if err != nil || p.Reason != "payment" {
		t.Fatalf("fetched payload %+v, %v", p, err)
	}
	if _, err := v.Event(context.Background(), body); !errors.Is(err, subscriber.ErrMalformed) {
		t.Fatalf("a truncated event passed as a stored one: %v", err)
	}
	forged := edit(t, full, func(m map[string]any) { m["data"].(map[string]any)["reason"] = "fraud" })
	if _, err := v.Event(context.Background(), forged); !errors.Is(err, subscriber.ErrEventSignature) {
		t.Fatalf("an altered fetched event: %v, want ErrEventSignature", err)
	}
}

func TestTruncatedWithoutDataref(t *testing.T) {
	secret := mustSecret(t)
	body := edit(t, thin(t, mustEvent(t, mustSigner(t, 1), suspended), "x"), func(m map[string]any) { delete(m, "dataref") })
	v := mustVerifier(t, subscriber.Config{Secrets: []string{secret}})
	if _, err := v.Verify(context.Background(), headers(t, eventID, now, body, secret), body); !errors.Is(err, subscriber.ErrMalformed) {
		t.Fatalf("error %v, want ErrMalformed", err)
	}
}
