package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestUsersImportFromFakeAPI(t *testing.T) {
	dir := t.TempDir()
	csvFile := filepath.Join(dir, "people.csv")
	if err := os.WriteFile(csvFile, []byte("username,email,first_name,roles,enabled,attr.team\nasha,asha@x.test,Asha,tenant-admin;tenant-viewer,true,blue\nravi,,Ravi,,false,\n\"bad name\",,,,,\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	batchAnswer := func(r *http.Request, body []byte) (int, string, string) {
		var req struct {
			Users []map[string]any `json:"users"`
		}
		_ = json.Unmarshal(body, &req)
		var results []string
		for i, u := range req.Users {
			status := `"created","id":"u` + fmt.Sprint(i) + `"`
			if strings.Contains(u["username"].(string), " ") {
				status = `"failed","problem":{"type":"/problems/validation-failed","title":"bad","status":422,"detail":"username: bad"}`
			}
			results = append(results, fmt.Sprintf(`{"row":%d,"status":%s}`, i, status))
		}
		return 200, "application/json", `{"results":[` + strings.Join(results, ",") + `]}`
	}
	api := newFakeAPI(t, batchAnswer)
	env := map[string]string{"TENANCY_API_URL": api.URL, "TENANCY_TOKEN": "tok", "TENANCY_DATA_DIR": dir}
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"tenancy", "users", "import", "--tenant", "me", "--batch", "2", "--quiet", csvFile}, func(k string) string { return env[k] }, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "1 of 3 rows failed") {
		t.Fatalf("err = %v, stderr %s", err, errOut.String())
	}
	reqs := api.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2 batches", len(reqs))
	}
	checkRequest(t, reqs[0], wantReq{method: "POST", path: "/v1/tenants/me/users/batch", contentType: "application/json",
		body: `{"users":[{"username":"asha","email":"asha@x.test","first_name":"Asha","roles":["tenant-admin","tenant-viewer"],"enabled":true,"attributes":{"team":"blue"}},` +
			`{"username":"ravi","first_name":"Ravi","enabled":false}]}`}, "tok")
	var sum importSummary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil || sum != (importSummary{Rows: 3, Created: 2, Failed: 1}) {
		t.Fatalf("summary %+v (%v): %s", sum, err, out.String())
	}
	if !strings.Contains(errOut.String(), `"row":3`) || !strings.Contains(errOut.String(), "username: bad") {
		t.Fatalf("the failed row is not reported: %s", errOut.String())
	}
}

func TestUsersUsage(t *testing.T) {
	for _, args := range [][]string{
		{"users", "import", "people.csv"},
		{"users", "import", "--tenant", "me"},
		{"users", "import", "--tenant", "me", "--batch", "501", "people.csv"},
		{"users", "list"},
		{"users", "frobnicate"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"tenancy"}, args...), func(string) string { return "" }, &out, &errOut)
		var ue usageError
		if !errorsAs(err, &ue) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
}

func errorsAs(err error, ue *usageError) bool {
	u, ok := err.(usageError)
	if ok {
		*ue = u
	}
	return ok
}

// countUsers counts a tenant's users through the API, all pages, as the
// users read model has them (it follows the log; while it is first built
// the API answers 503, which is waited out).
func countUsers(t *testing.T, client *http.Client, api, token, tenant string) int {
	t.Helper()
	n, path := 0, "/v1/tenants/"+tenant+"/users?page_size=500"
	deadline := time.Now().Add(time.Minute)
	for path != "" {
		status, _, body, err := call(client, api, token, "GET", path, "")
		if status == http.StatusServiceUnavailable && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if err != nil || status != 200 {
			t.Fatalf("list users: %d %v %s", status, err, body)
		}
		var page struct {
			Items []json.RawMessage `json:"items"`
			Next  string            `json:"next_page_token"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		n += len(page.Items)
		path = ""
		if page.Next != "" {
			path = "/v1/tenants/" + tenant + "/users?page_size=500&page_token=" + url.QueryEscape(page.Next)
		}
	}
	return n
}

// TestImportKilledHalfwayAndRerun imports 10,000 users, kills the importer
// with SIGKILL part of the way through, and runs it again: the tenant ends
// with exactly 10,000 users, the rerun creating only what was missing.
func TestImportKilledHalfwayAndRerun(t *testing.T) {
	dir, p, token, client := startDevTest(t)
	status, _, body, err := call(client, p.api, token, "POST", "/v1/tenants",
		`{"slug":"import","display_name":"Import","plan":"standard","regions":{"allowed":["eu-west-1"],"preferred":"eu-west-1"},"isolation":"shared","contacts":[{"role":"technical","name":"T","email":"t@x.test"}]}`)
	if err != nil || status != 201 {
		t.Fatalf("create tenant: %d %v %s", status, err, body)
	}
	var tnt map[string]any
	_ = json.Unmarshal(body, &tnt)
	tenant := tnt["id"].(string)
	const total = 10000
	var file strings.Builder
	file.WriteString("username,email,first_name,last_name,roles\n")
	for i := range total {
		fmt.Fprintf(&file, "user%05d,user%05d@import.test,First%d,Last%d,tenant-viewer\n", i, i, i, i)
	}
	csvFile := filepath.Join(t.TempDir(), "directory.csv")
	if err := os.WriteFile(csvFile, []byte(file.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "TENANCY_TEST_MAIN=users import --tenant "+tenant+" --batch 100 --quiet "+csvFile,
		"TENANCY_API_URL="+p.api, "TENANCY_TOKEN="+token, "TENANCY_DATA_DIR="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for n := 0; n < total/4; n = countUsers(t, client, p.api, token, tenant) {
		if time.Now().After(deadline) {
			t.Fatalf("the import made only %d users in 2 minutes", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	before := countUsers(t, client, p.api, token, tenant)
	if before >= total {
		t.Fatalf("the import finished (%d users) before it could be killed; the test proves nothing", before)
	}
	t.Logf("killed the importer with %d of %d users in", before, total)

	env := map[string]string{"TENANCY_API_URL": p.api, "TENANCY_TOKEN": token, "TENANCY_DATA_DIR": dir}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"tenancy", "users", "import", "--tenant", tenant, "--quiet", csvFile}, func(k string) string { return env[k] }, &out, &errOut); err != nil {
		t.Fatalf("rerun: %v\n%s", err, errOut.String())
	}
	var sum importSummary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Created+sum.Unchanged != total || sum.Failed != 0 || sum.Unchanged < before {
		t.Fatalf("rerun summary %+v with %d users in before it", sum, before)
	}
	// The read model follows the log: wait for it to hold every user, and
	// never more.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		n := countUsers(t, client, p.api, token, tenant)
		if n > total || (n < total && time.Now().After(deadline)) {
			t.Fatalf("the tenant has %d users, want exactly %d", n, total)
		}
		if n == total {
			break
		}
	}
}
