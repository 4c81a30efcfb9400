package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
)

// recorded is one request the fake API received.
type recorded struct {
	method, path string
	query        url.Values
	header       http.Header
	body         []byte
}

// fakeAPI records requests and answers them with canned JSON.
type fakeAPI struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

// answer is a canned response; nil answers 200 with a body naming the route.
type answer func(r *http.Request, body []byte) (status int, contentType, out string)

func newFakeAPI(t *testing.T, ans answer) *fakeAPI {
	f := &fakeAPI{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{r.Method, r.URL.Path, r.URL.Query(), r.Header.Clone(), body})
		f.mu.Unlock()
		status, ct, out := http.StatusOK, "application/json", `{"route":"`+r.Method+` `+r.URL.Path+`","url":"https://x.example/a?b=1&c=2"}`
		if ans != nil {
			status, ct, out = ans(r, body)
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, out)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

// wantReq is what one request must look like.
type wantReq struct {
	method, path string
	query        url.Values // nil: no query parameters
	contentType  string     // "": no body
	body         string     // JSON, compared structurally
}

const (
	whID     = "7f1c2a8e-0000-4000-8000-000000000001"
	whTenant = "5b0e2a8e-0000-4000-8000-000000000002"
)

func TestWebhooksCommands(t *testing.T) {
	deadLetterPages := func(r *http.Request, _ []byte) (int, string, string) {
		if r.URL.Query().Get("page_token") == "" {
			return 200, "application/json", `{"items":[{"seq":3,"webhook_id":"a"},{"seq":5,"webhook_id":"a"}],"next_page_token":"tok2"}`
		}
		return 200, "application/json", `{"items":[{"seq":9,"webhook_id":"a"}],"next_page_token":""}`
	}
	problem422 := func(*http.Request, []byte) (int, string, string) {
		return 422, "application/problem+json", `{"type":"https://tenancy.dev/problems/validation-failed","title":"Validation failed","status":422,` +
			`"detail":"2 fields are invalid","request_id":"req-77","errors":[{"field":"url","message":"must be an https URL"},` +
			`{"field":"event_types","message":"unknown event type","allowed":["tenancy.tenant.*"]}]}`
	}
	noContent := func(*http.Request, []byte) (int, string, string) { return 204, "application/json", "" }

	cases := []struct {
		name       string
		args       []string
		ans        answer
		want       []wantReq
		wantOut    []string // substrings of stdout
		wantErrOut []string // substrings of stderr
		wantErr    bool
	}{
		{name: "list", args: []string{"list"},
			want:    []wantReq{{method: "GET", path: "/v1/webhooks"}},
			wantOut: []string{`"route": "GET /v1/webhooks"`}},
		{name: "create", args: []string{"create", "--url", "https://hooks.example/in", "--types", "tenancy.tenant.*, tenancy.webhook.*", "--tenant", whTenant, "--description", "CRM sync", "--disabled"},
			ans: func(*http.Request, []byte) (int, string, string) {
				return 201, "application/json", `{"id":"` + whID + `","secret":"whsec_c2VjcmV0"}`
			},
			want: []wantReq{{method: "POST", path: "/v1/webhooks", contentType: "application/json",
				body: `{"url":"https://hooks.example/in","event_types":["tenancy.tenant.*","tenancy.webhook.*"],"tenant_id":"` + whTenant + `","description":"CRM sync","enabled":false}`}},
			wantOut:    []string{`"secret": "whsec_c2VjcmV0"`},
			wantErrOut: []string{"Store the secret now", "never shown again"}},
		{name: "create minimal", args: []string{"create", "--types=tenancy.tenant.*", "--url=https://hooks.example/in"},
			want: []wantReq{{method: "POST", path: "/v1/webhooks", contentType: "application/json",
				body: `{"url":"https://hooks.example/in","event_types":["tenancy.tenant.*"]}`}}},
		{name: "show", args: []string{"show", whID},
			want:    []wantReq{{method: "GET", path: "/v1/webhooks/" + whID}},
			wantOut: []string{`"route": "GET /v1/webhooks/` + whID + `"`, `"url": "https://x.example/a?b=1&c=2"`}},
		{name: "update", args: []string{"update", whID, "--url", "https://new.example/hook", "--types", "tenancy.tenant.created", "--description", "", "--enable"},
			want: []wantReq{{method: "PATCH", path: "/v1/webhooks/" + whID, contentType: "application/merge-patch+json",
				body: `{"url":"https://new.example/hook","event_types":["tenancy.tenant.created"],"description":"","enabled":true}`}},
			wantOut: []string{`"route": "PATCH /v1/webhooks/` + whID + `"`}},
		{name: "update flags first", args: []string{"update", "--disable", whID},
			want: []wantReq{{method: "PATCH", path: "/v1/webhooks/" + whID, contentType: "application/merge-patch+json", body: `{"enabled":false}`}}},
		{name: "delete", args: []string{"delete", whID},
			want: []wantReq{{method: "DELETE", path: "/v1/webhooks/" + whID}}},
		{name: "rotate-secret", args: []string{"rotate-secret", whID, "--grace", "24h"},
			want:       []wantReq{{method: "POST", path: "/v1/webhooks/" + whID + "/rotate-secret", contentType: "application/json", body: `{"grace":"24h"}`}},
			wantErrOut: []string{"never shown again"}},
		{name: "rotate-secret default grace", args: []string{"rotate-secret", whID},
			want: []wantReq{{method: "POST", path: "/v1/webhooks/" + whID + "/rotate-secret"}}},
		{name: "attempts", args: []string{"attempts", whID, "--event-seq", "42", "--page-size", "10"},
			want: []wantReq{{method: "GET", path: "/v1/webhooks/" + whID + "/attempts", query: url.Values{"event_seq": {"42"}, "page_size": {"10"}}}}},
		{name: "dead-letters follows pages", args: []string{"dead-letters", "--webhook", whID, "--type", "tenancy.tenant.created", "--from", "2026-01-01T00:00:00Z", "--to", "2026-02-01T00:00:00Z"},
			ans: deadLetterPages,
			want: []wantReq{
				{method: "GET", path: "/v1/dead-letters", query: url.Values{"webhook_id": {whID}, "type": {"tenancy.tenant.created"},
					"from": {"2026-01-01T00:00:00Z"}, "to": {"2026-02-01T00:00:00Z"}, "page_size": {"500"}}},
				{method: "GET", path: "/v1/dead-letters", query: url.Values{"webhook_id": {whID}, "type": {"tenancy.tenant.created"},
					"from": {"2026-01-01T00:00:00Z"}, "to": {"2026-02-01T00:00:00Z"}, "page_size": {"500"}, "page_token": {"tok2"}}},
			},
			wantOut: []string{`"seq": 3`, `"seq": 5`, `"seq": 9`}},
		{name: "dead-letter", args: []string{"dead-letter", "17"},
			want: []wantReq{{method: "GET", path: "/v1/dead-letters/17"}}},
		{name: "requeue one", args: []string{"requeue", "17"},
			want: []wantReq{{method: "POST", path: "/v1/dead-letters/17/requeue"}}},
		{name: "requeue all", args: []string{"requeue", "--all", "--webhook", whID},
			want: []wantReq{{method: "POST", path: "/v1/webhooks/" + whID + "/dead-letters/requeue"}}},
		{name: "discard", args: []string{"discard", "17", "--reason", "receiver retired"}, ans: noContent,
			want:       []wantReq{{method: "POST", path: "/v1/dead-letters/17/discard", contentType: "application/json", body: `{"reason":"receiver retired"}`}},
			wantErrOut: []string{"discarded dead letter 17"}},
		{name: "replay by seq", args: []string{"replay", whID, "--from-seq", "10", "--to-seq", "20", "--types", "tenancy.tenant.*", "--tenant", whTenant},
			want: []wantReq{{method: "POST", path: "/v1/webhooks/" + whID + "/replay", contentType: "application/json",
				body: `{"from_seq":10,"to_seq":20,"types":["tenancy.tenant.*"],"tenant_id":"` + whTenant + `"}`}}},
		{name: "replay by time", args: []string{"replay", whID, "--from-time", "2026-01-01T00:00:00Z", "--to-time", "2026-01-02T00:00:00Z"},
			want: []wantReq{{method: "POST", path: "/v1/webhooks/" + whID + "/replay", contentType: "application/json",
				body: `{"from_time":"2026-01-01T00:00:00Z","to_time":"2026-01-02T00:00:00Z"}`}}},
		{name: "problem 422", args: []string{"create", "--url", "http://nope", "--types", "nope.*"}, ans: problem422, wantErr: true,
			want: []wantReq{{method: "POST", path: "/v1/webhooks", contentType: "application/json", body: `{"url":"http://nope","event_types":["nope.*"]}`}},
			wantErrOut: []string{"Validation failed: 2 fields are invalid", "url: must be an https URL",
				"event_types: unknown event type (allowed: tenancy.tenant.*)", "req-77"}},
		{name: "problem on a list", args: []string{"dead-letters"}, ans: problem422, wantErr: true,
			want:       []wantReq{{method: "GET", path: "/v1/dead-letters", query: url.Values{"page_size": {"500"}}}},
			wantErrOut: []string{"2 fields are invalid"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeAPI(t, tc.ans)
			env := map[string]string{"TENANCY_API_URL": api.URL, "TENANCY_TOKEN": "tok-from-env", "TENANCY_DATA_DIR": t.TempDir()}
			var out, errOut bytes.Buffer
			err := run(context.Background(), append([]string{"tenancy", "webhooks"}, tc.args...), func(k string) string { return env[k] }, &out, &errOut)
			if tc.wantErr {
				var ue usageError
				if err == nil || errors.As(err, &ue) {
					t.Fatalf("error %v, want a non-usage error", err)
				}
				if out.Len() != 0 {
					t.Errorf("stdout of a failed call: %q", out.String())
				}
			} else if err != nil {
				t.Fatalf("run: %v\nstderr: %s", err, errOut.String())
			}
			reqs := api.requests()
			if len(reqs) != len(tc.want) {
				t.Fatalf("%d requests, want %d: %+v", len(reqs), len(tc.want), reqs)
			}
			for i, w := range tc.want {
				checkRequest(t, reqs[i], w, "tok-from-env")
			}
			for _, s := range tc.wantOut {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, out.String())
				}
			}
			for _, s := range tc.wantErrOut {
				if !strings.Contains(errOut.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, errOut.String())
				}
			}
			if !tc.wantErr && out.Len() > 0 && !json.Valid(out.Bytes()) {
				t.Errorf("stdout is not JSON:\n%s", out.String())
			}
			if strings.Contains(out.String()+errOut.String(), "tok-from-env") {
				t.Error("the token was printed")
			}
		})
	}
}

func checkRequest(t *testing.T, got recorded, w wantReq, token string) {
	t.Helper()
	if got.method != w.method || got.path != w.path {
		t.Errorf("request %s %s, want %s %s", got.method, got.path, w.method, w.path)
	}
	wantQ := w.query
	if wantQ == nil {
		wantQ = url.Values{}
	}
	if !reflect.DeepEqual(got.query, wantQ) {
		t.Errorf("%s %s: query %v, want %v", got.method, got.path, got.query, wantQ)
	}
	if a := got.header.Get("Authorization"); a != "Bearer "+token {
		t.Errorf("Authorization %q, want the bearer token %q", a, token)
	}
	if a := got.header.Get("Accept"); a != "application/json" {
		t.Errorf("Accept %q", a)
	}
	if key := got.header.Get("Idempotency-Key"); got.method == "POST" {
		if _, err := uuid.Parse(key); err != nil {
			t.Errorf("POST without a UUID Idempotency-Key: %q", key)
		}
	} else if key != "" {
		t.Errorf("%s with an Idempotency-Key", got.method)
	}
	if ct := got.header.Get("Content-Type"); ct != w.contentType {
		t.Errorf("%s %s: Content-Type %q, want %q", got.method, got.path, ct, w.contentType)
	}
	if w.body == "" {
		if len(got.body) != 0 {
			t.Errorf("%s %s: unexpected body %s", got.method, got.path, got.body)
		}
		return
	}
	var gotBody, wantBody any
	if err := json.Unmarshal(got.body, &gotBody); err != nil {
		t.Fatalf("body %q: %v", got.body, err)
	}
	if err := json.Unmarshal([]byte(w.body), &wantBody); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotBody, wantBody) {
		t.Errorf("%s %s: body %s, want %s", got.method, got.path, got.body, w.body)
	}
}

// TestWebhooksConnection checks where the CLI finds the API and its token.
func TestWebhooksConnection(t *testing.T) {
	api := newFakeAPI(t, nil)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte("tok-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hostPort := strings.TrimPrefix(api.URL, "http://")
	cases := []struct {
		name      string
		env       map[string]string
		args      []string
		wantToken string
	}{
		{"admin.token file and TENANCY_HTTP_ADDR", map[string]string{"TENANCY_DATA_DIR": dir, "TENANCY_HTTP_ADDR": hostPort}, nil, "tok-from-file"},
		{"TENANCY_TOKEN beats the file", map[string]string{"TENANCY_DATA_DIR": dir, "TENANCY_API_URL": api.URL + "/", "TENANCY_TOKEN": "tok-from-env"}, nil, "tok-from-env"},
		{"flags beat the environment", map[string]string{"TENANCY_DATA_DIR": dir, "TENANCY_API_URL": "http://127.0.0.1:1", "TENANCY_TOKEN": "tok-from-env"},
			[]string{"--api", api.URL, "--token", "tok-from-flag"}, "tok-from-flag"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := len(api.requests())
			var out, errOut bytes.Buffer
			args := append([]string{"tenancy", "webhooks", "show", whID}, tc.args...)
			if err := run(context.Background(), args, func(k string) string { return tc.env[k] }, &out, &errOut); err != nil {
				t.Fatalf("run: %v\n%s", err, errOut.String())
			}
			reqs := api.requests()
			if len(reqs) != n+1 {
				t.Fatalf("%d requests, want 1", len(reqs)-n)
			}
			checkRequest(t, reqs[n], wantReq{method: "GET", path: "/v1/webhooks/" + whID}, tc.wantToken)
			if strings.Contains(out.String()+errOut.String(), tc.wantToken) {
				t.Error("the token was printed")
			}
		})
	}

	// No token anywhere: a plain error naming where to put one, no request.
	n := len(api.requests())
	env := map[string]string{"TENANCY_DATA_DIR": t.TempDir(), "TENANCY_API_URL": api.URL}
	err := run(context.Background(), []string{"tenancy", "webhooks", "list"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "TENANCY_TOKEN") {
		t.Fatalf("without a token: %v", err)
	}
	if len(api.requests()) != n {
		t.Error("a request was sent without a token")
	}
}

// TestWebhooksUsage checks that malformed command lines are usage errors
// and send nothing.
func TestWebhooksUsage(t *testing.T) {
	api := newFakeAPI(t, nil)
	env := map[string]string{"TENANCY_API_URL": api.URL, "TENANCY_TOKEN": "t", "TENANCY_DATA_DIR": t.TempDir()}
	get := func(k string) string { return env[k] }
	for _, args := range [][]string{
		{}, {"nope"}, {"list", "extra"}, {"show"}, {"show", "a", "b"}, {"delete"},
		{"create", "--types", "tenancy.tenant.*"}, {"create", "--url", "https://x.example"}, {"create", "--bogus"},
		{"update", whID}, {"update", whID, "--enable", "--disable"}, {"update", "--url", "https://x.example"},
		{"rotate-secret", whID, "--grace", "0s"}, {"rotate-secret", whID, "--grace", "soon"},
		{"attempts"}, {"attempts", whID, "--page-size", "0"}, {"attempts", whID, "--event-seq", "x"},
		{"dead-letters", "--from", "yesterday"}, {"dead-letters", "x"},
		{"dead-letter"}, {"dead-letter", "abc"}, {"dead-letter", "0"},
		{"requeue"}, {"requeue", "--all"}, {"requeue", "--all", "--webhook", whID, "17"}, {"requeue", "17", "--webhook", whID}, {"requeue", "-5"},
		{"discard", "17"}, {"discard", "--reason", "x"},
		{"replay", whID}, {"replay", whID, "--from-seq", "10"}, {"replay", whID, "--from-seq", "10", "--to-seq", "5"},
		{"replay", whID, "--from-seq", "1", "--to-seq", "2", "--from-time", "2026-01-01T00:00:00Z"},
		{"replay", whID, "--from-time", "2026-01-01", "--to-time", "2026-01-02"}, {"replay", "--from-seq", "1", "--to-seq", "2"},
	} {
		var errOut bytes.Buffer
		err := run(context.Background(), append([]string{"tenancy", "webhooks"}, args...), get, io.Discard, &errOut)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: error %v, want a usage error", args, err)
		}
	}
	if n := len(api.requests()); n != 0 {
		t.Errorf("usage errors sent %d requests", n)
	}
	err := run(context.Background(), []string{"tenancy", "webhooks", "frobnicate"}, get, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "dead-letters") || !strings.Contains(err.Error(), "rotate-secret") {
		t.Errorf("unknown command error does not list the commands: %v", err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"tenancy", "webhooks", "help"}, get, &out, io.Discard); err != nil || !strings.Contains(out.String(), "tenancy webhooks replay") {
		t.Errorf("help: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"tenancy", "help"}, get, &out, io.Discard); err != nil || !strings.Contains(out.String(), "tenancy webhooks") {
		t.Errorf("tenancy help does not mention webhooks: %v", err)
	}
}

// TestWebhookCommandsListed checks that the command list the usage errors
// print names exactly the commands of the table.
func TestWebhookCommandsListed(t *testing.T) {
	listed := strings.Split(webhookCommands, ", ")
	if len(listed) != len(webhookHandlers) {
		t.Errorf("webhookCommands lists %d commands, the table has %d", len(listed), len(webhookHandlers))
	}
	for _, name := range listed {
		if webhookHandlers[name] == nil {
			t.Errorf("webhookCommands lists %q, which the table lacks", name)
		}
		if !strings.Contains(webhooksUsage, "tenancy webhooks "+name+" ") && !strings.Contains(webhooksUsage, "tenancy webhooks "+name+"\n") {
			t.Errorf("the usage text lacks %q", name)
		}
	}
}
