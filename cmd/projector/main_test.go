package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/postgres"
	"github.com/tenancyhq/tenancy/internal/projection"
	"github.com/tenancyhq/tenancy/internal/run/boot"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/internal/testrig"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// The test binary doubles as the projector: with PROJECTOR_TEST_MAIN set it
// runs main's run, so the test can kill -9 a real process.
func TestMain(m *testing.M) {
	testenv.RunAsMain(m, "PROJECTOR_TEST_MAIN", "projector", func(string) error {
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		return run(ctx, []string{"projector", "run"}, os.Getenv, os.Stdout, os.Stderr)
	})
}

type fixture struct {
	core  *boot.Core
	dbURL string
	env   []string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	r := testrig.New(t, testrig.Options{})
	dbURL := testenv.NewDatabase(t)
	return &fixture{core: r.Core, dbURL: dbURL, env: append(append(os.Environ(), r.Env()...),
		"PROJECTOR_TEST_MAIN=1", "DATABASE_URL="+dbURL, "TENANCY_HTTP_ADDR=127.0.0.1:0", "LOG_LEVEL=warn",
	)}
}

func (f *fixture) write(t *testing.T, prefix string, n int) {
	t.Helper()
	ctx := context.Background()
	meta := command.Meta{Actor: "writer"}
	for i := range n {
		slug := fmt.Sprintf("%s-%d", prefix, i)
		res, err := f.core.Tenants.Create(ctx, domain.CreateTenant{
			Slug: slug, DisplayName: "Tenant " + slug, Plan: "standard", Isolation: "shared",
			Regions:  domain.Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"},
			Contacts: []events.Contact{{Role: "technical", Name: "T", Email: "t@" + slug + ".test"}},
		}, meta)
		if err != nil {
			t.Fatal(err)
		}
		v := fmt.Sprint(i)
		if _, err := f.core.Tenants.Do(ctx, res.State.ID, domain.UpdateTenant{Labels: &domain.MapPatch{Values: map[string]*string{"n": &v}}}, meta); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *fixture) start(t *testing.T) (*exec.Cmd, *bytes.Buffer) { //nolint:unparam
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = f.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, &stderr
}

func (f *fixture) checkpoints(t *testing.T, conn *pgx.Conn) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	rows, err := conn.Query(context.Background(), "SELECT name, checkpoint FROM projection_state WHERE generation > 0")
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return out
		}
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var cp int64
		if err := rows.Scan(&name, &cp); err != nil {
			t.Fatal(err)
		}
		out[name] = uint64(cp)
	}
	return out
}

// TestKillMidBatchThenCompareWithReplay kills the projector with SIGKILL
// several times while it works through a backlog and new writes keep
// arriving, restarts it, and compares the read model row by row with one
// rebuilt from scratch.
func TestKillMidBatchThenCompareWithReplay(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	f := newFixture(t)
	f.write(t, "backlog", 600) // 1200 events before the projector starts
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	kill := func(cmd *exec.Cmd, what string) {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		t.Logf("killed the projector %s; checkpoints then: %v", what, f.checkpoints(t, conn))
	}
	// 1. Mid-build: the first start replays the backlog into generation 1.
	cmd, _ := f.start(t)
	time.Sleep(150 * time.Millisecond)
	kill(cmd, "while building the first generation")

	built := func() map[string]uint64 {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); ; {
			if cps := f.checkpoints(t, conn); len(cps) == len(projection.All()) {
				return cps
			}
			if time.Now().After(deadline) {
				t.Fatal("the projections were not built")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// 2. Mid-batch: live writes from several writers while it applies them.
	cmd, _ = f.start(t)
	startCP := built()["audit_log"]
	done := make(chan struct{})
	for w := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			f.write(t, fmt.Sprintf("burst%d", w), 60)
		}()
	}
	for deadline := time.Now().Add(30 * time.Second); f.checkpoints(t, conn)["audit_log"] < startCP+100 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	kill(cmd, "while applying live batches")
	for range 4 {
		<-done
	}

	// 3. Mid-rebuild: an operator asked for a rebuild.
	pool0, err := postgres.Open(ctx, f.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool0.Close()
	cmd, _ = f.start(t)
	built()
	if err := projection.RequestRebuild(ctx, pool0, "tenants", "test"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		var rebuilding int
		_ = conn.QueryRow(ctx, "SELECT coalesce(rebuilding_generation, 0) FROM projection_state WHERE name = 'tenants'").Scan(&rebuilding)
		if rebuilding != 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	kill(cmd, "while rebuilding tenants")
	kills := 3

	// Let it finish.
	f.start(t)
	head, err := f.core.Store.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		cps := f.checkpoints(t, conn)
		first, _, err := f.core.Store.Pending(ctx, events.AllSubjects, min(cps["tenants"], cps["audit_log"])+1)
		if err != nil {
			t.Fatal(err)
		}
		var rebuilding int
		_ = conn.QueryRow(ctx, "SELECT count(*) FROM projection_state WHERE rebuilding_generation IS NOT NULL OR rebuild_requested_at IS NOT NULL").Scan(&rebuilding)
		if len(cps) == len(projection.All()) && first == nil && rebuilding == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted projector did not catch up to %d: %v", head, cps)
		}
		time.Sleep(50 * time.Millisecond)
	}

	testrig.CheckReplay(t, ctx, f.core, conn, fmt.Sprintf("after %d kills", kills))
}
