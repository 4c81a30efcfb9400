package events

import (
	"encoding/json"
	"testing"
	"time"
)

// genericCanonical is v's JSON through the generic RFC 8785 transform.
func genericCanonical(t testing.TB, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Canonical(raw)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// FuzzCanonicalEnvelope checks that the hand-written canonical form of an
// envelope equals the generic RFC 8785 transform of its JSON, for any
// attribute values.
func FuzzCanonicalEnvelope(f *testing.F) {
	f.Add("user-1", "req-1", "", `{"b":1,"a":"x"}`, int64(1), "")
	f.Add("<script>&\u2028\u2029", "\x00\x1f\"\\/", "é漢字😀", `{"n":1e2,"s":"\u00e9"}`, int64(1<<40), "00-abc-01")
	f.Add("", "", "", `{}`, int64(0), "")
	f.Fuzz(func(t *testing.T, actor, corr, subject, data string, version int64, trace string) {
		if !json.Valid([]byte(data)) || len(data) == 0 || data[0] != '{' {
			return
		}
		e := &Envelope{
			SpecVersion: SpecVersion, ID: "id-1", Source: Source, Type: TypeTenantCreated, Subject: subject,
			Time: time.Date(2026, 1, 2, 3, 4, 5, 600700800, time.UTC), DataContentType: ContentType,
			TenantID: "t1", Actor: actor, CorrelationID: corr, AggVersion: version, TraceParent: trace,
			SigKeyID: "kid", Signature: corr, Data: json.RawMessage(data),
		}
		canonData, err := Canonical(e.Data)
		if err != nil {
			return
		}
		e.Data = canonData
		got, err := appendCanonical(nil, e)
		if err != nil {
			// Only invalid UTF-8 is refused, as the generic path would.
			return
		}
		if want := genericCanonical(t, e); string(got) != string(want) {
			t.Fatalf("hand-written canonical form differs:\n got %s\nwant %s", got, want)
		}
	})
}
