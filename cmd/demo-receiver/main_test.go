package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/tenancyhq/tenancy/internal/delivery"
	"github.com/tenancyhq/tenancy/internal/delivery/attempts"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/pkg/events"
	"github.com/tenancyhq/tenancy/pkg/subscriber"
)

// mustSecret returns a fresh whsec_ secret and its HMAC key.
func mustSecret(t *testing.T) (string, []byte) {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(k), k
}

// mustSign signs like any Standard Webhooks sender, using the reference
// library rather than the code under test, so that a shared misreading of
// the scheme cannot make both sides agree.
func mustSign(t *testing.T, secret, id string, ts time.Time, body []byte) string {
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

// mustVerifier returns the verifier run would build for secrets.
func mustVerifier(t *testing.T, secrets []string, keys *subscriber.KeyFetcher, now func() time.Time) *subscriber.Verifier {
	t.Helper()
	v, err := newVerifier(secrets, keys, now)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// logLines decodes the JSON log lines written to buf.
func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	return logLinesOf(t, buf.String())
}

// logLinesOf decodes JSON log lines.
func logLinesOf(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

// body is an unsigned Tenancy event: pkg/subscriber requires the tenantid
// and aggversion extensions every Tenancy event has.
const body = `{"specversion":"1.0","id":"01970000-0000-7000-8000-000000000001","type":"tenancy.tenant.created.v1",` +
	`"source":"tenancy","subject":"t-1","tenantid":"0197aaaa-0000-7000-8000-000000000009","aggversion":1,"data":{}}`

func TestDeliveries(t *testing.T) {
	oldSecret, _ := mustSecret(t)
	newSecret, _ := mustSecret(t)
	otherSecret, _ := mustSecret(t)
	now := time.Unix(1_760_000_000, 0)
	tolerance := subscriber.DefaultTolerance
	const id = "01970000-0000-7000-8000-000000000001"

	for _, tc := range []struct {
		name       string
		secrets    []string
		headers    map[string]string
		wantStatus int
		wantLog    map[string]any
	}{
		{
			name:       "good signature",
			secrets:    []string{newSecret},
			headers:    map[string]string{"webhook-signature": mustSign(t, newSecret, id, now, []byte(body))},
			wantStatus: http.StatusNoContent,
			wantLog: map[string]any{"msg": "delivery", "signature": "verified", "event_id": id, "type": "tenancy.tenant.created.v1",
				"tenant_id": "0197aaaa-0000-7000-8000-000000000009", "sequence": "42", "webhook_id": id},
		},
		{
			name:       "signed with another secret",
			secrets:    []string{newSecret},
			headers:    map[string]string{"webhook-signature": mustSign(t, otherSecret, id, now, []byte(body))},
			wantStatus: http.StatusUnauthorized,
			wantLog:    map[string]any{"msg": "delivery rejected", "reason": subscriber.ErrBadSignature.Error()},
		},
		{
			name:    "signature over another body",
			secrets: []string{newSecret},
			headers: map[string]string{"webhook-signature": mustSign(t, newSecret, id, now,
				[]byte(strings.Replace(body, "created", "deleted", 1)))},
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:       "signature for another id",
			secrets:    []string{newSecret},
			headers:    map[string]string{"webhook-signature": mustSign(t, newSecret, "other-id", now, []byte(body))},
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:       "garbage signature",
			secrets:    []string{newSecret},
			headers:    map[string]string{"webhook-signature": "v1,not-base64!! v2,abc"},
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:       "missing signature",
			secrets:    []string{newSecret},
			headers:    map[string]string{"webhook-signature": ""},
			wantStatus: http.StatusUnauthorized,
			wantLog:    map[string]any{"reason": subscriber.ErrMissingHeaders.Error()},
		},
		{
			name:    "stale timestamp, correctly signed",
			secrets: []string{newSecret},
			headers: map[string]string{
				"webhook-timestamp": strconv.FormatInt(now.Add(-tolerance-time.Second).Unix(), 10),
				"webhook-signature": mustSign(t, newSecret, id, now.Add(-tolerance-time.Second), []byte(body)),
			},
			wantStatus: http.StatusUnauthorized,
			wantLog:    map[string]any{"reason": subscriber.ErrStale.Error()},
		},
		{
			name:    "timestamp too far ahead",
			secrets: []string{newSecret},
			headers: map[string]string{
				"webhook-timestamp": strconv.FormatInt(now.Add(tolerance+time.Second).Unix(), 10),
				"webhook-signature": mustSign(t, newSecret, id, now.Add(tolerance+time.Second), []byte(body)),
			},
			wantStatus: http.StatusUnauthorized,
			wantLog:    map[string]any{"reason": subscriber.ErrStale.Error()},
		},
		{
			name:    "timestamp just inside the tolerance",
			secrets: []string{newSecret},
			headers: map[string]string{
				"webhook-timestamp": strconv.FormatInt(now.Add(-tolerance+time.Second).Unix(), 10),
				"webhook-signature": mustSign(t, newSecret, id, now.Add(-tolerance+time.Second), []byte(body)),
			},
			wantStatus: http.StatusNoContent,
		},
		{
			name:       "timestamp not a number",
			secrets:    []string{newSecret},
			headers:    map[string]string{"webhook-timestamp": "yesterday", "webhook-signature": mustSign(t, newSecret, id, now, []byte(body))},
			wantStatus: http.StatusUnauthorized,
			wantLog:    map[string]any{"reason": subscriber.ErrBadTimestamp.Error()},
		},
		{
			// The receiver was given both secrets while the sender still
			// signs with the old one only.
			name:       "rotation: receiver holds old and new, sender signs with old",
			secrets:    []string{newSecret, oldSecret},
			headers:    map[string]string{"webhook-signature": mustSign(t, oldSecret, id, now, []byte(body))},
			wantStatus: http.StatusNoContent,
		},
		{
			// During the grace period the sender signs with both; a
			// receiver already moved to the new secret must accept.
			name:    "rotation: sender signs with old and new, receiver holds new",
			secrets: []string{newSecret},
			headers: map[string]string{"webhook-signature": mustSign(t, oldSecret, id, now, []byte(body)) + " " +
				mustSign(t, newSecret, id, now, []byte(body))},
			wantStatus: http.StatusNoContent,
		},
		{
			name:    "rotation: neither signature matches",
			secrets: []string{newSecret, oldSecret},
			headers: map[string]string{"webhook-signature": mustSign(t, otherSecret, id, now, []byte(body)) + " " +
				mustSign(t, otherSecret, id, now.Add(time.Second), []byte(body))},
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:       "no secret configured: accepted unchecked",
			secrets:    nil,
			headers:    map[string]string{"webhook-signature": "v1,anything"},
			wantStatus: http.StatusNoContent,
			wantLog:    map[string]any{"msg": "delivery", "signature": "unchecked", "event_id": id},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			h := newHandler(mustVerifier(t, tc.secrets, nil, func() time.Time { return now }), slog.New(slog.NewJSONHandler(&logs, nil)))
			req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
			req.Header.Set("webhook-id", id)
			req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
			req.Header.Set("tenancy-sequence", "42")
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tc.wantStatus, rec.Body)
			}
			lines := logLines(t, &logs)
			if len(lines) != 1 {
				t.Fatalf("want one log line per delivery, got %d: %s", len(lines), logs.String())
			}
			for k, want := range tc.wantLog {
				if got := lines[0][k]; got != want {
					t.Errorf("log %s = %v, want %v", k, got, want)
				}
			}
			for _, s := range []string{oldSecret, newSecret, otherSecret} {
				if strings.Contains(logs.String(), strings.TrimPrefix(s, "whsec_")) {
					t.Fatal("a secret was logged")
				}
			}
		})
	}
}

// TestTenancySenderInterop sends through the webhooker's own sender, headers
// and all, during a rotation (two keys, two signatures).
func TestTenancySenderInterop(t *testing.T) {
	oldSecret, oldKey := mustSecret(t)
	newSecret, newKey := mustSecret(t)
	for _, tc := range []struct {
		name         string
		receiverEnv  string
		senderKeys   [][]byte
		wantOutcome  attempts.Outcome
		wantSequence string
	}{
		{"one secret", newSecret, [][]byte{newKey}, attempts.Delivered, "7"},
		{"sender mid-rotation, receiver on the new secret", newSecret, [][]byte{oldKey, newKey}, attempts.Delivered, "7"},
		{"sender on the new secret, receiver still on the old", oldSecret, [][]byte{newKey}, attempts.Failed, ""},
		{"receiver holds both", oldSecret + ", " + newSecret, [][]byte{newKey}, attempts.Delivered, "7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			secrets, err := parseSecrets(tc.receiverEnv)
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			srv := httptest.NewServer(newHandler(mustVerifier(t, secrets, nil, time.Now), slog.New(slog.NewJSONHandler(&logs, nil))))
			defer srv.Close()
			sender := &delivery.Sender{Client: srv.Client(), Clock: time.Now, UserAgent: "test"}
			res := sender.Send(context.Background(), delivery.Request{
				URL: srv.URL + "/hooks", Keys: tc.senderKeys, EventID: "01970000-0000-7000-8000-000000000001", Seq: 7, Attempt: 1, Body: []byte(body),
			})
			if res.Outcome != tc.wantOutcome {
				t.Fatalf("outcome %s (status %d, %s), want %s", res.Outcome, res.Status, res.Response, tc.wantOutcome)
			}
			if tc.wantOutcome == attempts.Failed && res.Status != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", res.Status)
			}
			srv.Close() // waits for the handler, so its log line is complete (and race-free) to read
			lines := logLines(t, &logs)
			if len(lines) != 1 {
				t.Fatalf("want one log line, got %s", logs.String())
			}
			if tc.wantSequence != "" && lines[0]["sequence"] != tc.wantSequence {
				t.Errorf("sequence %v, want %s", lines[0]["sequence"], tc.wantSequence)
			}
		})
	}
}

func TestParseSecrets(t *testing.T) {
	a, ka := mustSecret(t)
	_, kb := mustSecret(t)
	b := base64.StdEncoding.EncodeToString(kb) // the whsec_ prefix is optional
	for _, tc := range []struct {
		name    string
		in      string
		want    [][]byte
		wantErr string
	}{
		{"empty", "", nil, ""},
		{"blank entries", " , ", nil, ""},
		{"one", a, [][]byte{ka}, ""},
		{"two with spaces", a + " , " + b, [][]byte{ka, kb}, ""},
		{"not base64", a + ",whsec_???", nil, "entry 2"},
		{"prefix only", "whsec_", nil, "entry 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSecrets(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "???") {
					t.Fatal("the error repeats the secret")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d keys, want %d", len(got), len(tc.want))
			}
			// The secrets are kept as given; what counts is the key each
			// decodes to, which is what deliveries are checked with.
			for i := range got {
				k, err := subscriber.ParseSecret(got[i])
				if err != nil || !bytes.Equal(k, tc.want[i]) {
					t.Errorf("key %d differs (%v)", i, err)
				}
			}
		})
	}
}

// listeningAddr waits for run to log the address it listens on.
func listeningAddr(t *testing.T, logs *testenv.SyncBuffer) string {
	t.Helper()
	var addr string
	for deadline := time.Now().Add(5 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "listening" {
				addr, _ = m["addr"].(string)
			}
		}
	}
	if addr == "" {
		t.Fatalf("run did not report its address: %s", logs.String())
	}
	return addr
}

// TestRun starts the binary's run on a free port, checks /healthz and an
// unchecked delivery, and that cancelling the context stops it cleanly.
func TestRun(t *testing.T) {
	var logs testenv.SyncBuffer
	env := map[string]string{"RECEIVER_ADDR": "127.0.0.1:0"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, func(k string) string { return env[k] }, &logs) }()

	addr := listeningAddr(t, &logs)
	if !strings.Contains(logs.String(), "WEBHOOK_SECRET is empty") {
		t.Errorf("no warning that signatures are unchecked: %s", logs.String())
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %d", resp.StatusCode)
	}
	resp, err = http.Post("http://"+addr+"/", "application/cloudevents+json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delivery: %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop after cancel")
	}
}

func TestRunRejectsBadSecret(t *testing.T) {
	env := map[string]string{"WEBHOOK_SECRET": "whsec_not base64", "RECEIVER_ADDR": "127.0.0.1:0"}
	var logs bytes.Buffer
	err := run(context.Background(), func(k string) string { return env[k] }, &logs)
	if err == nil || !strings.Contains(err.Error(), "WEBHOOK_SECRET") {
		t.Fatalf("err %v, want a WEBHOOK_SECRET error", err)
	}
	if strings.Contains(err.Error()+logs.String(), "not base64") {
		t.Fatal("the secret was repeated")
	}
}

func TestRunRejectsBadKeysURL(t *testing.T) {
	for _, u := range []string{"ftp://api/keys.json", "api:8080/keys.json", "http://"} {
		env := map[string]string{"EVENT_KEYS_URL": u, "RECEIVER_ADDR": "127.0.0.1:0"}
		err := run(context.Background(), func(k string) string { return env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "EVENT_KEYS_URL") {
			t.Errorf("%s: err %v, want an EVENT_KEYS_URL error", u, err)
		}
	}
}

// mustSignedEvent returns a Tenancy event signed by the Ed25519 key derived
// from seed, as stored in the log and delivered.
func mustSignedEvent(t *testing.T, seed byte) (*events.Signer, []byte) {
	t.Helper()
	s, err := events.NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := s.Sign(&events.Envelope{
		SpecVersion: events.SpecVersion, ID: "01970000-0000-7000-8000-000000000002", Source: events.Source,
		Type: events.TypeTenantSuspended, Subject: "0197aaaa-0000-7000-8000-000000000009", Time: time.Now(),
		DataContentType: events.ContentType, TenantID: "0197aaaa-0000-7000-8000-000000000009", Actor: "user-1",
		AggVersion: 5, Data: json.RawMessage(`{"reason":"payment"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, raw
}

// TestRunWithEventKeys runs the receiver with EVENT_KEYS_URL: an event
// signed by a published key is logged as verified, one signed by another
// key is refused, and a truncated one is accepted with its dataref.
func TestRunWithEventKeys(t *testing.T) {
	published, good := mustSignedEvent(t, 1)
	_, forged := mustSignedEvent(t, 2)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(events.NewKeySet(events.PublicKey{Key: published.PublicKey()}).JWKS())
	}))
	defer jwks.Close()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(good, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "data")
	m["dataref"], m["tenancytruncated"] = json.RawMessage(`"/v1/tenants/0197aaaa-0000-7000-8000-000000000009/events/9"`), json.RawMessage("true")
	truncated, _ := json.Marshal(m)

	secret, _ := mustSecret(t)
	var logs testenv.SyncBuffer
	env := map[string]string{"RECEIVER_ADDR": "127.0.0.1:0", "WEBHOOK_SECRET": secret, "EVENT_KEYS_URL": jwks.URL + "/.well-known/tenancy/event-keys.json"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, func(k string) string { return env[k] }, &logs) }()
	addr := listeningAddr(t, &logs)

	for i, tc := range []struct {
		body       []byte
		wantStatus int
		wantLog    map[string]any
	}{
		{good, http.StatusNoContent, map[string]any{"msg": "delivery", "signature": "verified", "event_signature": "verified", "aggversion": 5.0, "truncated": false}},
		{forged, http.StatusUnauthorized, map[string]any{"msg": "delivery rejected", "status": 401.0}},
		{truncated, http.StatusNoContent, map[string]any{"msg": "delivery", "event_signature": "unchecked", "truncated": true,
			"dataref": "/v1/tenants/0197aaaa-0000-7000-8000-000000000009/events/9"}},
	} {
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/", bytes.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		const id = "01970000-0000-7000-8000-000000000002"
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(time.Now().Unix(), 10))
		req.Header.Set("webhook-signature", mustSign(t, secret, id, time.Now(), tc.body))
		req.Header.Set("tenancy-sequence", strconv.Itoa(10+i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != tc.wantStatus {
			t.Fatalf("delivery %d: status %d, want %d", i, resp.StatusCode, tc.wantStatus)
		}
		var line map[string]any
		for _, l := range logLinesOf(t, logs.String()) {
			if l["sequence"] == strconv.Itoa(10+i) {
				line = l
			}
		}
		for k, want := range tc.wantLog {
			if line[k] != want {
				t.Errorf("delivery %d: log %s = %v, want %v (%v)", i, k, line[k], want, line)
			}
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}
