package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/testenv"
)

// The test binary doubles as the tenancy binary: with TENANCY_TEST_MAIN set
// it runs main's run with its arguments, so tests can start, kill -9 and
// restart real processes.
func TestMain(m *testing.M) {
	testenv.RunAsMain(m, "TENANCY_TEST_MAIN", "tenancy", func(args string) error {
		ctx, stop := signalContext()
		defer stop()
		return run(ctx, append([]string{"tenancy"}, strings.Fields(args)...), os.Getenv, os.Stdout, os.Stderr)
	})
}

type proc struct {
	cmd    *exec.Cmd
	api    string
	stderr *bytes.Buffer
	done   chan error
	// root is what the start-up banner says of the platform's tenants.
	root string
}

// databases gives each data directory its own throwaway database.
var databases sync.Map

func devEnv(t *testing.T, dir string) []string {
	db, ok := databases.Load(dir)
	if !ok {
		db = testenv.NewDatabase(t)
		databases.Store(dir, db)
	}
	return append(os.Environ(), "TENANCY_DATA_DIR="+dir, "TENANCY_HTTP_ADDR=127.0.0.1:0", "TENANCY_DEV_NATS_ADDR=127.0.0.1:0", "LOG_LEVEL=warn",
		"DATABASE_URL="+db.(string))
}

// startDev runs `tenancy dev` in a child process and waits until it serves.
func startDev(t *testing.T, dir string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(devEnv(t, dir), "TENANCY_TEST_MAIN=dev")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	apiCh, rootCh := make(chan string, 1), make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if rest, ok := strings.CutPrefix(line, "API:"); ok {
				apiCh <- strings.TrimSpace(rest)
			}
			if rest, ok := strings.CutPrefix(line, "Root tenant:"); ok {
				rootCh <- strings.TrimSpace(rest)
			}
		}
	}()
	go func() { p.done <- cmd.Wait() }()
	select {
	case p.api = <-apiCh:
		select {
		case p.root = <-rootCh:
		case <-time.After(5 * time.Second):
		}
	case err := <-p.done:
		t.Fatalf("tenancy dev exited: %v\n%s", err, p.stderr)
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("tenancy dev did not start\n%s", p.stderr)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return p
}

// startDevTest starts `tenancy dev` on a fresh data directory, for a test
// that needs real processes (skipped with -short), and returns the
// directory, the process, its admin token and an API client.
func startDevTest(t *testing.T) (dir string, p *proc, token string, client *http.Client) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir = t.TempDir()
	p = startDev(t, dir)
	return dir, p, readToken(t, dir), &http.Client{Timeout: 10 * time.Second}
}

func readToken(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func call(client *http.Client, api, token, method, path, body string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(method, api+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

type ack struct {
	id      string
	version float64
}

// TestKillUnderLoadLosesNothing kills `tenancy dev` with SIGKILL while
// clients are creating and changing tenants, restarts it on the same data,
// and checks that every command that was acknowledged (2xx) is in the log
// and that the log still verifies.
func TestKillUnderLoadLosesNothing(t *testing.T) {
	dir, p, token, client := startDevTest(t)

	var mu sync.Mutex
	var acks []ack
	stop := testenv.Load(t, 8, func(w, i int) {
		slug := fmt.Sprintf("crash-%d-%d", w, i)
		status, _, body, err := call(client, p.api, token, "POST", "/v1/tenants",
			`{"slug":"`+slug+`","display_name":"Crash","plan":"standard","regions":{"allowed":["eu-west-1"],"preferred":"eu-west-1"},"isolation":"shared","contacts":[{"role":"technical","name":"T","email":"t@x.test"}]}`)
		if err != nil || status != 201 {
			return
		}
		var tnt map[string]any
		_ = json.Unmarshal(body, &tnt)
		id := tnt["id"].(string)
		mu.Lock()
		acks = append(acks, ack{id, 1})
		mu.Unlock()
		for j := range 3 {
			status, _, body, err := call(client, p.api, token, "PATCH", "/v1/tenants/"+id, fmt.Sprintf(`{"labels":{"n":"%d"}}`, j))
			if err != nil || status != 200 {
				break
			}
			_ = json.Unmarshal(body, &tnt)
			mu.Lock()
			acks = append(acks, ack{id, tnt["version"].(float64)})
			mu.Unlock()
		}
	})
	time.Sleep(1500 * time.Millisecond)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	stop()
	mu.Lock()
	defer mu.Unlock()
	if len(acks) < 20 {
		t.Fatalf("only %d commands were acknowledged before the kill; the load did not run", len(acks))
	}
	t.Logf("killed tenancy dev with SIGKILL after %d acknowledged commands", len(acks))

	p2 := startDev(t, dir)
	token = readToken(t, dir) // rewritten at start (its issuer names the new port)
	latest := map[string]float64{}
	for _, a := range acks {
		latest[a.id] = max(latest[a.id], a.version)
	}
	for id, v := range latest {
		status, _, body, err := call(client, p2.api, token, "GET", "/v1/tenants/"+id, "")
		if err != nil || status != 200 {
			t.Fatalf("acknowledged tenant %s is gone after the crash: %d %v %s", id, status, err, body)
		}
		var tnt map[string]any
		_ = json.Unmarshal(body, &tnt)
		if tnt["version"].(float64) < v {
			t.Fatalf("tenant %s is at version %v after the crash; version %v was acknowledged", id, tnt["version"], v)
		}
	}
	t.Logf("all %d acknowledged commands on %d tenants survived", len(acks), len(latest))
	// The read side rebuilt after the crash too: every acknowledged tenant
	// is in the directory.
	head := "0"
	if s, h, _, err := call(client, p2.api, token, "PATCH", "/v1/tenants/"+acks[0].id, `{"labels":{"after":"crash"}}`); err == nil && s == 200 {
		head = h.Get("Tenancy-Sequence")
	}
	listed := map[string]bool{}
	for tok := ""; ; {
		status, _, body, err := call(client, p2.api, token, "GET", "/v1/tenants?page_size=500&min_seq="+head+"&page_token="+tok, "")
		if err != nil || status != 200 {
			t.Fatalf("list after the crash: %d %v %s", status, err, body)
		}
		var page struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
			Next string `json:"next_page_token"`
		}
		_ = json.Unmarshal(body, &page)
		for _, it := range page.Items {
			listed[it.ID] = true
		}
		if tok = page.Next; tok == "" {
			break
		}
	}
	for id := range latest {
		if !listed[id] {
			t.Fatalf("acknowledged tenant %s is missing from the read model after the crash", id)
		}
	}

	// Stop cleanly, then verify the stopped data directory offline.
	stopDev(t, p2)
	var out bytes.Buffer
	env := map[string]string{"TENANCY_DATA_DIR": dir}
	if err := run(context.Background(), []string{"tenancy", "verify"}, func(k string) string { return env[k] }, &out, io.Discard); err != nil {
		t.Fatalf("verify after the crash: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "OK:") || !strings.Contains(out.String(), "offline") {
		t.Fatalf("verify output: %s", out.String())
	}
	t.Log(strings.TrimSpace(out.String()))
}

func TestTokenAndUsage(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"TENANCY_DATA_DIR": dir}
	get := func(k string) string { return env[k] }
	var out bytes.Buffer
	if err := run(context.Background(), []string{"tenancy", "token", "--role", "tenant-viewer", "--tenant", "t1"}, get, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if tok := strings.TrimSpace(out.String()); strings.Count(tok, ".") != 2 || strings.Contains(tok, "\n") {
		t.Fatalf("token output is not one JWT: %q", out.String())
	}
	for _, args := range [][]string{
		{"tenancy"}, {"tenancy", "nope"}, {"tenancy", "token", "--role", "king"}, {"tenancy", "token", "--role", "tenant-admin"},
		{"tenancy", "verify", "extra"},
	} {
		err := run(context.Background(), args, get, io.Discard, io.Discard)
		if _, ok := err.(usageError); !ok {
			t.Errorf("%v: error %v, want a usage error", args, err)
		}
	}
	if err := run(context.Background(), []string{"tenancy", "verify"}, get, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "no event log") {
		t.Fatalf("verify of an empty data dir: %v", err)
	}
}

func stopDev(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("tenancy dev did not stop cleanly: %v\n%s", err, p.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tenancy dev did not stop on SIGTERM")
	}
}

// TestSigningKeyRotation rotates the dev signing key: events signed by the
// old key still verify, the old key is listed as retired, and the API
// serves both public keys.
func TestSigningKeyRotation(t *testing.T) {
	dir, p, token, client := startDevTest(t)
	env := map[string]string{"TENANCY_DATA_DIR": dir}
	get := func(k string) string { return env[k] }
	body := func(slug string) string {
		return `{"slug":"` + slug + `","display_name":"R","plan":"standard","regions":{"allowed":["eu-west-1"],"preferred":"eu-west-1"},"isolation":"shared"}`
	}
	if s, _, b, err := call(client, p.api, token, "POST", "/v1/tenants", body("before")); err != nil || s != 201 {
		t.Fatalf("create: %d %v %s", s, err, b)
	}
	stopDev(t, p)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"tenancy", "keys", "list"}, get, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	oldKid := strings.Fields(out.String())[0]
	// Rotate: a new key file; the old one is kept nowhere but in the log.
	if err := os.Rename(filepath.Join(dir, "keys", "event-signing.key"), filepath.Join(dir, "keys", "old.key")); err != nil {
		t.Fatal(err)
	}
	p = startDev(t, dir)
	if s, _, b, err := call(client, p.api, readToken(t, dir), "POST", "/v1/tenants", body("after")); err != nil || s != 201 {
		t.Fatalf("create after rotation: %d %v %s", s, err, b)
	}
	out.Reset()
	if err := run(context.Background(), []string{"tenancy", "keys", "retire", oldKid, "--reason", "rotation"}, get, &out, io.Discard); err != nil {
		t.Fatalf("retire through the running dev: %v", err)
	}
	s, _, jwks, err := call(client, p.api, "", "GET", "/.well-known/tenancy/event-keys.json", "")
	if err != nil || s != 200 || strings.Count(string(jwks), `"kid"`) != 2 || !strings.Contains(string(jwks), `"retired"`) {
		t.Fatalf("JWKS after rotation: %d %s", s, jwks)
	}
	out.Reset()
	if err := run(context.Background(), []string{"tenancy", "verify"}, get, &out, io.Discard); err != nil {
		t.Fatalf("verify after rotation: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "with 2 keys") {
		t.Fatalf("verify output: %s", out.String())
	}
	stopDev(t, p)
}
