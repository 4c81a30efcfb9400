package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/keyfile"
	"github.com/tenancyhq/tenancy/internal/natsembed"
	"github.com/tenancyhq/tenancy/internal/run/dev"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// TestDevNATSRequiresCredentials checks the embedded server of `tenancy
// dev`: a connection without the data directory's credentials is refused,
// the read-only user reads but cannot append, and the service user
// appends.
func TestDevNATSRequiresCredentials(t *testing.T) {
	dir, p, _, _ := startDevTest(t)
	defer stopDev(t, p)
	url, err := os.ReadFile(filepath.Join(dir, dev.NATSURLFile))
	if err != nil {
		t.Fatal(err)
	}
	users, err := natsembed.LoadUsers(filepath.Join(dir, dev.NATSUsersFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, dev.NATSUsersFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the users file: %v %v", fi.Mode(), err)
	}
	addr := strings.TrimSpace(string(url))
	if nc, err := nats.Connect(addr); err == nil {
		defer nc.Close()
		// Should the server let it in, it must at least not append.
		js, _ := jetstream.New(nc)
		if _, err := js.Publish(t.Context(), "tenancy.evt.x.tenant.x", []byte("forged")); err == nil {
			t.Fatal("a connection without credentials appended to the log")
		}
		t.Fatal("a connection without credentials was accepted")
	}

	rd, err := nats.Connect(addr, nats.UserInfo(natsembed.ReaderUser, users.Reader), nats.CustomInboxPrefix(natsembed.ReaderInboxPrefix))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	rjs, _ := jetstream.New(rd)
	store := eventstore.New(rjs, "")
	before, err := store.LastSeq(t.Context())
	if err != nil || before == 0 {
		t.Fatalf("the reader cannot read the log: %d %v", before, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if _, err := rjs.Publish(ctx, "tenancy.evt.x.tenant.x", []byte("forged")); err == nil {
		t.Fatal("the read-only user appended to the log")
	}
	// The log itself moves (bootstrap's sagas run in the background):
	// what must not be there is the forged message.
	if forged, _, err := store.Read(t.Context(), "tenancy.evt.x.tenant.x", before, 10); err != nil || len(forged) != 0 {
		t.Fatalf("the read-only user's message is in the log (%d, %v)", len(forged), err)
	}

	svc, err := nats.Connect(addr, nats.UserInfo(natsembed.ServiceUser, users.Service))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	sjs, _ := jetstream.New(svc)
	if _, err := eventstore.New(sjs, "").LastSeq(t.Context()); err != nil {
		t.Fatalf("the service user: %v", err)
	}
}

// TestLostRecordsAreNoticed removes records from a stopped store's files:
// a block in the middle (a gap: `tenancy verify` and dev's start-up check
// fail) and, on a copy, the last block (the log is shorter than the
// checkpoint an earlier verify recorded).
func TestLostRecordsAreNoticed(t *testing.T) {
	dir, p, token, client := startDevTest(t)
	if s, _, b, err := call(client, p.api, token, "POST", "/v1/tenants",
		`{"slug":"kept","display_name":"K","plan":"standard","regions":{"allowed":["eu-west-1"],"preferred":"eu-west-1"},"isolation":"shared"}`); err != nil || s != 201 {
		t.Fatalf("create: %d %v %s", s, err, b)
	}
	stopDev(t, p)
	fillLog(t, dir, 30)

	env := map[string]string{"TENANCY_DATA_DIR": dir}
	get := func(k string) string { return env[k] }
	cp := filepath.Join(t.TempDir(), "verify.checkpoint")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"tenancy", "verify", "--checkpoint", cp}, get, &out, io.Discard); err != nil {
		t.Fatalf("verify of the whole store: %v\n%s", err, out.String())
	}
	copyDir := t.TempDir()
	if err := exec.Command("cp", "-a", dir+"/.", copyDir).Run(); err != nil {
		t.Fatal(err)
	}

	blocks := storeBlocks(t, dir)
	if len(blocks) < 3 {
		t.Fatalf("the filler made %d blocks; the test needs a middle one", len(blocks))
	}
	if err := os.Remove(blocks[1]); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err := run(context.Background(), []string{"tenancy", "verify"}, get, &out, io.Discard)
	if err == nil || !strings.Contains(out.String(), "missing from the log") {
		t.Fatalf("verify of a store with a block removed: %v\n%s", err, out.String())
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(devEnv(t, dir), "TENANCY_TEST_MAIN=dev")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), "lost records") || !strings.Contains(stderr.String(), "refusing to start") {
		t.Fatalf("tenancy dev on a store with a block removed: %v\n%s", err, stderr.String())
	}

	// The copy loses its tail and the index that remembered it: no gap to
	// see, but the checkpoint knows.
	tail := storeBlocks(t, copyDir)
	if err := os.Remove(tail[len(tail)-1]); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(filepath.Dir(tail[0]), "index.db")); err != nil {
		t.Fatal(err)
	}
	env["TENANCY_DATA_DIR"] = copyDir
	out.Reset()
	err = run(context.Background(), []string{"tenancy", "verify", "--checkpoint", cp}, get, &out, io.Discard)
	if err == nil || !strings.Contains(out.String(), "shorter than a checkpoint") {
		t.Fatalf("verify of a store that lost its tail: %v\n%s", err, out.String())
	}
	t.Log(strings.TrimSpace(out.String()))
}

// fillLog appends n genuine, signed events of about 900 KiB each to the
// stopped data directory's log, so that its store spans several block
// files.
func fillLog(t *testing.T, dir string, n int) {
	t.Helper()
	key, err := keyfile.LoadOrCreateSigningKey(filepath.Join(dir, dev.SigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := events.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	l, err := dev.OpenLog(t.Context(), func(string) string { return "" }, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	name := strings.Repeat("n", 900<<10)
	data, _ := json.Marshal(events.TenantUpdated{Changed: []string{"display_name"}, DisplayName: &name})
	for range n {
		id := uuid.NewString()
		raw, _, err := signer.Sign(&events.Envelope{SpecVersion: "1.0", ID: uuid.NewString(), Source: "/tenancy/test", Type: events.TypeTenantUpdated,
			Subject: id, Time: time.Now().UTC(), DataContentType: "application/json", TenantID: id, Actor: "test", AggVersion: 1, Data: data})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.JS.Publish(t.Context(), events.Subject(id, events.AggregateTenant, id), raw); err != nil {
			t.Fatal(err)
		}
	}
}

// storeBlocks lists the event stream's block files in order.
func storeBlocks(t *testing.T, dir string) []string {
	t.Helper()
	blocks, err := filepath.Glob(filepath.Join(dir, dev.NATSDir, "jetstream", "*", "streams", eventstore.DefaultStream, "msgs", "*.blk"))
	if err != nil {
		t.Fatal(err)
	}
	// Block files are numbered from 1: order by number, not by name.
	num := func(p string) int {
		n, _ := strconv.Atoi(strings.TrimSuffix(filepath.Base(p), ".blk"))
		return n
	}
	slices.SortFunc(blocks, func(a, b string) int { return num(a) - num(b) })
	return blocks
}
