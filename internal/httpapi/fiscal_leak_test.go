package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/testenv"
)

// TestFiscalIDsNeverInTheClear: a customer's fiscal ids, created, changed,
// looked up and refused, appear in the clear in no event, no stream of any
// kind (idempotency records included), no read-model row and no log line:
// only sealed, or as keyed hashes.
func TestFiscalIDsNeverInTheClear(t *testing.T) {
	logs := &testenv.SyncBuffer{}
	h := newHarness(t, options{projections: true, logs: logs})
	secrets := []string{testPAN, gstin(t), "MUMA12345B", "AAACZ9876Q", "MUMZ99999Z"}

	body := businessCustomer(t, "Leaky")
	r := h.do(t, req{method: "POST", path: "/v1/customers", token: h.admin, body: body, header: map[string]string{"Idempotency-Key": "leak-1"}})
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	id := r.json(t)["id"].(string)
	// The same key again: the stored response is replayed.
	if r := h.do(t, req{method: "POST", path: "/v1/customers", token: h.admin, body: body, header: map[string]string{"Idempotency-Key": "leak-1"}}); r.Status != http.StatusCreated {
		t.Fatalf("replay: %d %s", r.Status, r.Body)
	}
	r = h.do(t, req{method: "PATCH", path: "/v1/customers/" + id, token: h.admin, contentType: "application/merge-patch+json",
		body: map[string]any{"fiscal_ids": map[string]any{"tan": "MUMZ99999Z"}}})
	if r.Status != http.StatusOK {
		t.Fatalf("patch: %d %s", r.Status, r.Body)
	}
	r = h.do(t, req{method: "POST", path: "/v1/customers/" + id + "/verification", token: h.admin, body: map[string]any{"status": "completed"},
		header: map[string]string{"Idempotency-Key": "leak-2"}})
	if r.Status != http.StatusOK {
		t.Fatalf("verify: %d %s", r.Status, r.Body)
	}
	// A refused one: its values must not reach the logs either.
	bad := businessCustomer(t, "Refused")
	bad["fiscal_ids"] = map[string]any{"pan": "AAACZ9876Q", "gstin": gstin(t)}
	if r := h.do(t, req{method: "POST", path: "/v1/customers", token: h.admin, body: bad}); r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("refused: %d %s", r.Status, r.Body)
	}
	if r := h.do(t, req{method: "POST", path: "/v1/customers/lookup", token: h.admin,
		body: map[string]string{"kind": "pan", "value": testPAN}}); r.Status != http.StatusOK {
		t.Fatalf("lookup: %d %s", r.Status, r.Body)
	}
	// Let the read models catch up.
	if r := h.do(t, req{method: "GET", path: fmt.Sprintf("/v1/customers?min_seq=%d", h.lastSeq(t)), token: h.admin}); r.Status != http.StatusOK {
		t.Fatalf("list: %d %s", r.Status, r.Body)
	}
	if r := h.do(t, req{method: "GET", path: fmt.Sprintf("/v1/audit?min_seq=%d", h.lastSeq(t)), token: h.admin}); r.Status != http.StatusOK {
		t.Fatalf("audit: %d %s", r.Status, r.Body)
	}

	var places []string
	check := func(where, text string) {
		t.Helper()
		places = append(places, where)
		upper := strings.ToUpper(text)
		for _, s := range secrets {
			if strings.Contains(upper, s) {
				t.Errorf("%s holds fiscal id %s in the clear", where, s)
			}
		}
	}
	ctx := testenv.Context(t, time.Minute)
	for name, text := range allStreams(t, ctx, h.nats.JS) {
		check("stream "+name, text)
	}
	tables, err := h.rs.Pool.Query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for tables.Next() {
		var n string
		if err := tables.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	tables.Close()
	for _, n := range names {
		var dump string
		if err := h.rs.Pool.QueryRow(ctx, fmt.Sprintf(`SELECT coalesce(string_agg(t::text, E'\n'), '') FROM %q t`, n)).Scan(&dump); err != nil {
			t.Fatalf("table %s: %v", n, err)
		}
		check("table "+n, dump)
	}
	check("the logs", logs.String())
	if !strings.Contains(logs.String(), "/v1/customers/lookup") {
		t.Fatal("the logs were not captured")
	}
	t.Logf("no fiscal id in the clear in: %s", strings.Join(places, ", "))
}

// allStreams returns every message (subject, headers and data) of every
// stream, as text per stream.
func allStreams(t *testing.T, ctx context.Context, js jetstream.JetStream) map[string]string {
	t.Helper()
	out := map[string]string{}
	names := js.StreamNames(ctx)
	var streams []string
	for n := range names.Name() {
		streams = append(streams, n)
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	for _, name := range streams {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				t.Fatalf("%s seq %d: %v", name, seq, err)
			}
			fmt.Fprintf(&b, "%s %v %s\n", m.Subject, m.Header, m.Data)
		}
		out[name] = b.String()
	}
	if len(out) < 3 {
		t.Fatalf("only the streams %v", streams)
	}
	return out
}
