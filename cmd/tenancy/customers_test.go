package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
)

const custID = "7f1c2a8e-0000-4000-8000-0000000000c1"

func TestCustomersCommands(t *testing.T) {
	file := filepath.Join(t.TempDir(), "customer.json")
	if err := os.WriteFile(file, []byte(`{"kind":"business","legal_name":"Acme Pvt Ltd","display_name":"Acme","fiscal_ids":{"pan":"AAACA1234C"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	onePage := func(*http.Request, []byte) (int, string, string) {
		return 200, "application/json", `{"items":[{"id":"` + custID + `"}],"next_page_token":""}`
	}
	cases := []struct {
		name string
		args []string
		ans  answer
		want []wantReq
	}{
		{name: "list with filters", args: []string{"list", "--q", "acme", "--kind", "business", "--status", "completed"}, ans: onePage,
			want: []wantReq{{method: "GET", path: "/v1/customers", query: url.Values{"q": {"acme"}, "kind": {"business"}, "verification_status": {"completed"}, "page_size": {"500"}}}}},
		{name: "get", args: []string{"get", custID},
			want: []wantReq{{method: "GET", path: "/v1/customers/" + custID}}},
		{name: "create from flags", args: []string{"create", "--kind", "individual", "--legal-name", "Asha Rao", "--display-name", "Asha", "--realm-mode", "shared"},
			want: []wantReq{{method: "POST", path: "/v1/customers", contentType: "application/json",
				body: `{"kind":"individual","legal_name":"Asha Rao","display_name":"Asha","realm_mode":"shared"}`}}},
		{name: "create from a file", args: []string{"create", "--from", file},
			want: []wantReq{{method: "POST", path: "/v1/customers", contentType: "application/json",
				body: `{"kind":"business","legal_name":"Acme Pvt Ltd","display_name":"Acme","fiscal_ids":{"pan":"AAACA1234C"}}`}}},
		{name: "verify", args: []string{"verify", custID, "--status", "completed", "--evidence", "gst-certificate=dms://kyb/1", "--evidence", "board-resolution=dms://kyb/2", "--note", "checked"},
			want: []wantReq{{method: "POST", path: "/v1/customers/" + custID + "/verification", contentType: "application/json",
				body: `{"status":"completed","evidence":[{"kind":"gst-certificate","reference":"dms://kyb/1"},{"kind":"board-resolution","reference":"dms://kyb/2"}],"note":"checked"}`}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeAPI(t, tc.ans)
			env := map[string]string{"TENANCY_API_URL": api.URL, "TENANCY_TOKEN": "tok", "TENANCY_DATA_DIR": t.TempDir()}
			var out, errOut bytes.Buffer
			if err := run(context.Background(), append([]string{"tenancy", "customers"}, tc.args...), func(k string) string { return env[k] }, &out, &errOut); err != nil {
				t.Fatalf("run: %v\nstderr: %s", err, errOut.String())
			}
			reqs := api.requests()
			if len(reqs) != len(tc.want) {
				t.Fatalf("%d requests, want %d: %+v", len(reqs), len(tc.want), reqs)
			}
			for i, w := range tc.want {
				checkRequest(t, reqs[i], w, "tok")
			}
		})
	}
}

func TestCustomersUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nope"},
		{"create", "--kind", "business"},
		{"create", "--from", "x.json", "--kind", "business"},
		{"verify", custID},
		{"verify", custID, "--status", "completed", "--evidence", "no-equals-sign"},
		{"get"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"tenancy", "customers"}, args...), func(string) string { return "" }, &out, &errOut)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("customers %v: error %v, want a usage error", args, err)
		}
	}
}
