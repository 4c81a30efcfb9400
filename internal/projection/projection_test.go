package projection_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/integrity"
	"github.com/tenancyhq/tenancy/internal/projection"
	"github.com/tenancyhq/tenancy/internal/run/boot"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/internal/testrig"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

type env struct {
	core  *boot.Core
	pool  *pgxpool.Pool
	dbURL string
	nats  *testenv.NATS
}

func setup(t *testing.T) *env {
	t.Helper()
	r := testrig.New(t, testrig.Options{Database: true})
	core, pool, dbURL, n := r.Core, r.ReadSide.Pool, r.ReadSide.URL, r.NATS
	return &env{core: core, pool: pool, dbURL: dbURL, nats: n}
}

func (e *env) deps() projection.Deps {
	return projection.Deps{DatabaseURL: e.dbURL, JS: e.core.JS, Store: e.core.Store, Opener: e.core.Keyring, MaxBatch: 50, ControlInterval: 50 * time.Millisecond,
		Quarantine: func(ctx context.Context, v *integrity.Violation) {
			_ = e.core.Quarantine.Record(ctx, v, "projection test")
		}}
}

// start runs a runner until the test ends.
func (e *env) start(t *testing.T, p projection.Projection) (stop func()) {
	t.Helper()
	return testrig.Run(t, projection.NewRunner(p, e.deps()).Run)
}

func (e *env) checkpoint(t *testing.T, name string) uint64 {
	t.Helper()
	var cp int64
	err := e.pool.QueryRow(context.Background(), "SELECT checkpoint FROM projection_state WHERE name = $1", name).Scan(&cp)
	if err == pgx.ErrNoRows {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return uint64(cp)
}

// waitCaughtUp waits until the projection has applied every event.
func (e *env) waitCaughtUp(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for {
		first, _, err := e.core.Store.Pending(ctx, events.AllSubjects, e.checkpoint(t, name)+1)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not catch up: checkpoint %d, next event %d", name, e.checkpoint(t, name), first.Seq)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rebuild asks for a rebuild of projection name and waits, up to d, until
// its new generation serves.
func (e *env) rebuild(t *testing.T, name string, d time.Duration) {
	t.Helper()
	gen := states(t, e)[name].Generation
	if err := projection.RequestRebuild(context.Background(), e.pool, name, "tester"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(d); states(t, e)[name].Generation == gen; {
		if time.Now().After(deadline) {
			t.Fatalf("the rebuild of %s did not finish: %+v", name, states(t, e)[name])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func meta() command.Meta { return command.Meta{Actor: "tester", CorrelationID: "corr-1"} }

func create(t *testing.T, e *env, slug string, extra func(*domain.CreateTenant)) string {
	t.Helper()
	c := domain.CreateTenant{
		Slug: slug, DisplayName: "Tenant " + slug, Plan: "standard", Isolation: "shared",
		Regions:  domain.Regions{Allowed: []string{"eu-west-1", "eu-central-1"}, Preferred: "eu-west-1"},
		Contacts: []events.Contact{{Role: "technical", Name: "Tech", Email: "tech@" + slug + ".test"}},
		Labels:   map[string]string{"env": "prod"},
	}
	if extra != nil {
		extra(&c)
	}
	res, err := e.core.Tenants.Create(context.Background(), c, meta())
	if err != nil {
		t.Fatal(err)
	}
	return res.State.ID
}

func do(t *testing.T, e *env, id string, cmd domain.TenantCommand) {
	t.Helper()
	if _, err := e.core.Tenants.Do(context.Background(), id, cmd, meta()); err != nil {
		t.Fatalf("%s on %s: %v", cmd.Action(), id, err)
	}
}

// workload writes a mix of commands on n tenants.
func workload(t *testing.T, e *env, prefix string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		id := create(t, e, fmt.Sprintf("%s-%d", prefix, i), func(c *domain.CreateTenant) {
			c.ExternalIDs = map[string]string{"billing": fmt.Sprintf("cus_%s_%d", prefix, i)}
		})
		ids = append(ids, id)
		v := fmt.Sprintf("v%d", i)
		do(t, e, id, domain.UpdateTenant{Labels: &domain.MapPatch{Values: map[string]*string{"n": &v}}})
		switch i % 3 {
		case 1:
			do(t, e, id, domain.RequestActivation{})
		case 2:
			do(t, e, id, domain.Delete{Confirm: fmt.Sprintf("%s-%d", prefix, i)})
		}
	}
	return ids
}

func TestProjectionsFollowTheLog(t *testing.T) {
	e := setup(t)
	e.start(t, projection.Tenants{})
	e.start(t, projection.Audit{})
	ids := workload(t, e, "live", 12)
	e.waitCaughtUp(t, "tenants")
	e.waitCaughtUp(t, "audit_log")

	var state, slug string
	var version int64
	var labels []byte
	if err := e.pool.QueryRow(context.Background(), "SELECT state, slug, version, labels FROM tenants WHERE id = $1", ids[1]).Scan(&state, &slug, &version, &labels); err != nil {
		t.Fatal(err)
	}
	if state != "provisioning" || slug != "live-1" || version != 3 || string(labels) != `{"n": "v1", "env": "prod"}` {
		t.Fatalf("row: %s %s %d %s", state, slug, version, labels)
	}
	var deleted bool
	var doc []byte
	if err := e.pool.QueryRow(context.Background(), "SELECT state = 'deleted', state_doc FROM tenants WHERE id = $1", ids[2]).Scan(&deleted, &doc); err != nil {
		t.Fatal(err)
	}
	var st domain.Tenant
	_ = json.Unmarshal(doc, &st)
	if !deleted || len(st.Contacts) != 0 || !st.PIIErased {
		t.Fatalf("a deleted tenant keeps personal data in the read model: %s", doc)
	}
	var n int
	var actor, summary string
	if err := e.pool.QueryRow(context.Background(), "SELECT count(*) FROM audit_log WHERE tenant_id = $1", ids[1]).Scan(&n); err != nil || n != 3 {
		t.Fatalf("audit rows of one tenant: %d %v", n, err)
	}
	if err := e.pool.QueryRow(context.Background(), "SELECT actor, summary FROM audit_log WHERE tenant_id = $1 ORDER BY seq LIMIT 1", ids[0]).Scan(&actor, &summary); err != nil {
		t.Fatal(err)
	}
	if actor != "tester" || summary == "" {
		t.Fatalf("audit row: %q %q", actor, summary)
	}
	testrig.CheckReplay(t, testenv.Context(t, 2*time.Minute), e.core, e.pool, "live", "tenants", "audit_log")
}

func TestStandbyTakesOver(t *testing.T) {
	e := setup(t)
	stopFirst := e.start(t, projection.Tenants{})
	workload(t, e, "a", 3)
	e.waitCaughtUp(t, "tenants")
	e.start(t, projection.Tenants{}) // waits: the first holds the projection
	stopFirst()
	workload(t, e, "b", 3)
	e.waitCaughtUp(t, "tenants")
	var n int
	if err := e.pool.QueryRow(context.Background(), "SELECT count(*) FROM tenants").Scan(&n); err != nil || n != 6 {
		t.Fatalf("%d rows after takeover: %v", n, err)
	}
}

// TestRecoversFromLostConnections kills the runner's database sessions
// under load, as a PostgreSQL restart would: it reconnects, resumes from its
// checkpoint, and nothing is lost or doubled.
func TestRecoversFromLostConnections(t *testing.T) {
	e := setup(t)
	e.start(t, projection.Tenants{})
	e.start(t, projection.Audit{})
	ctx := context.Background()
	stop := make(chan struct{})
	killed := make(chan int, 1)
	go func() {
		total := 0
		for {
			select {
			case <-stop:
				killed <- total
				return
			case <-time.After(30 * time.Millisecond):
			}
			var n int
			_ = e.pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = ''`).Scan(&n)
			total += n
		}
	}()
	workload(t, e, "flaky", 30)
	close(stop)
	if n := <-killed; n == 0 {
		t.Fatal("no session was killed; the test did not test anything")
	}
	e.waitCaughtUp(t, "tenants")
	e.waitCaughtUp(t, "audit_log")
	testrig.CheckReplay(t, testenv.Context(t, 2*time.Minute), e.core, e.pool, "after outages", "tenants", "audit_log")
}

// TestPoisonEventStopsAndCanBeSkipped appends an event the projection cannot
// read: the projection stops on it with a clear error instead of skipping
// it, and resumes only when an operator skips it, which is recorded.
// signed appends an event signed with the core's registered key as the
// next of tenant id's chain (or its first), with payload p as it is (no
// sealing): a genuine event the writer did not decide.
func signed(t *testing.T, e *env, id string, p events.Payload) uint64 {
	t.Helper()
	ctx := context.Background()
	subject := events.Subject(id, events.AggregateTenant, id)
	prior, err := e.core.Store.ReadAll(ctx, subject, 1)
	if err != nil {
		t.Fatal(err)
	}
	env := &events.Envelope{SpecVersion: events.SpecVersion, ID: app.NewID(), Source: events.Source, Type: p.EventType(), Subject: id,
		Time: time.Now().UTC().Truncate(time.Microsecond), DataContentType: events.ContentType, TenantID: id, Actor: "test",
		AggVersion: int64(len(prior)) + 1}
	if n := len(prior); n > 0 {
		env.PrevHash = events.PrevHash(events.HashCanonical(prior[n-1].Data))
	}
	if env.Data, err = json.Marshal(p); err != nil {
		t.Fatal(err)
	}
	raw, _, err := e.core.Signer.Sign(env)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := e.core.Store.Append(ctx, []eventstore.Outgoing{{Subject: subject, Data: raw, MsgID: env.ID}})
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// TestPoisonEventStopsAndCanBeSkipped: a genuine event the projection
// cannot apply (its personal data does not open) stops it until an
// operator skips it.
func TestPoisonEventStopsAndCanBeSkipped(t *testing.T) {
	e := setup(t)
	e.start(t, projection.Audit{})
	ctx := context.Background()
	create(t, e, "before", nil)
	e.waitCaughtUp(t, "audit_log")
	seq := signed(t, e, "01a20000-0000-7000-8000-000000000001", &events.TenantCreated{Slug: "poison", DisplayName: "Poison", Plan: "standard",
		Regions: events.Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"}, Isolation: "shared", PII: "v1.not.sealed"})
	after := create(t, e, "after", nil)
	deadline := time.Now().Add(30 * time.Second)
	var st projection.State
	for {
		states, err := projection.States(ctx, e.pool)
		if err != nil {
			t.Fatal(err)
		}
		if len(states) > 0 && states[0].Status == projection.StatusStopped {
			st = states[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the projection did not stop on the poison event: %+v", states)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.PoisonSeq != seq || st.Checkpoint != seq-1 || st.Error == "" {
		t.Fatalf("stopped state: %+v (poison at %d)", st, seq)
	}
	if err := projection.RequestSkip(ctx, e.pool, "audit_log", seq+1, "wrong seq", "op"); err == nil {
		t.Fatal("skipping another event than the poison one must be refused")
	}
	if err := projection.RequestSkip(ctx, e.pool, "audit_log", seq, "garbage written by a test", "op"); err != nil {
		t.Fatal(err)
	}
	e.waitCaughtUp(t, "audit_log")
	var n int
	if err := e.pool.QueryRow(ctx, "SELECT count(*) FROM audit_log WHERE tenant_id = $1", after).Scan(&n); err != nil || n != 1 {
		t.Fatalf("events after the skipped one: %d %v", n, err)
	}
	var reason, actor string
	if err := e.pool.QueryRow(ctx, "SELECT reason, actor FROM projection_skips WHERE seq = $1", int64(seq)).Scan(&reason, &actor); err != nil || actor != "op" {
		t.Fatalf("the skip was not recorded: %v %q", err, actor)
	}
	// A rebuild skips the skipped event again instead of stopping on it.
	e.rebuild(t, "audit_log", 30*time.Second)
	if err := e.pool.QueryRow(ctx, "SELECT count(*) FROM audit_log").Scan(&n); err != nil || n != 3 {
		t.Fatalf("rows after rebuild: %d %v (want the signing key, before and after)", n, err)
	}
}

// TestRebuildUnderLoad rebuilds while commands keep landing and readers keep
// reading: no read fails or sees a half-built table, and the new generation
// equals a fresh replay.
func TestRebuildUnderLoad(t *testing.T) {
	e := setup(t)
	e.start(t, projection.Tenants{})
	e.start(t, projection.Audit{})
	workload(t, e, "base", 40)
	e.waitCaughtUp(t, "tenants")
	ctx := context.Background()

	var readErrs []error
	var mu sync.Mutex
	reads := 0
	stopWriter := testenv.Load(t, 1, func(_, i int) { create(t, e, fmt.Sprintf("during-%d", i), nil) })
	// One reader: the count it reads must never go down (no half-built
	// table). last is its own, so it needs no lock.
	last := 0
	stopReader := testenv.Load(t, 1, func(int, int) {
		var n int
		err := e.pool.QueryRow(ctx, "SELECT count(*) FROM tenants").Scan(&n)
		mu.Lock()
		reads++
		if err != nil {
			readErrs = append(readErrs, err)
		} else if n < last {
			readErrs = append(readErrs, fmt.Errorf("read %d tenants after %d: saw a partial table", n, last))
		}
		mu.Unlock()
		last = max(last, n)
	})
	time.Sleep(100 * time.Millisecond)
	before := states(t, e)
	e.rebuild(t, "tenants", 60*time.Second)
	time.Sleep(100 * time.Millisecond)
	stopWriter()
	stopReader()
	if len(readErrs) > 0 || reads < 10 {
		t.Fatalf("%d reads, errors: %v", reads, readErrs)
	}
	e.waitCaughtUp(t, "tenants")
	after := states(t, e)["tenants"]
	if after.Generation != before["tenants"].Generation+1 || after.RebuildingGeneration != 0 {
		t.Fatalf("state after rebuild: %+v", after)
	}
	var old bool
	if err := e.pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", projection.Table("tenants", before["tenants"].Generation)).Scan(&old); err != nil || old {
		t.Fatalf("the old generation was not dropped: %v", err)
	}
	testrig.CheckReplay(t, testenv.Context(t, 2*time.Minute), e.core, e.pool, "in the rebuilt generation", "tenants")
}

func states(t *testing.T, e *env) map[string]projection.State {
	t.Helper()
	ss, err := projection.States(context.Background(), e.pool)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]projection.State{}
	for _, s := range ss {
		out[s.Name] = s
	}
	return out
}

func TestStatus(t *testing.T) {
	e := setup(t)
	stop := e.start(t, projection.Tenants{})
	workload(t, e, "s", 2)
	e.waitCaughtUp(t, "tenants")
	stop()
	create(t, e, "late", nil)
	ss, err := projection.Statuses(context.Background(), e.pool, e.core.Store, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 1 || ss[0].State != "running" || ss[0].Active || ss[0].LagEvents != 1 || ss[0].LagSeconds <= 0 || ss[0].Generation != 1 {
		t.Fatalf("status: %+v", ss)
	}
}
