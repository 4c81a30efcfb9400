package testrig

import (
	"context"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/internal/postgres"
	"github.com/tenancyhq/tenancy/internal/projection"
	"github.com/tenancyhq/tenancy/internal/run/boot"
	"github.com/tenancyhq/tenancy/internal/testenv"
)

// readTables are the projected tables and the columns that order their
// rows.
var readTables = []struct{ name, key string }{{"tenants", "id"}, {"customers", "id"}, {"audit_log", "seq"}}

// CheckReplay fails the test unless the projected tables read through got
// hold the same rows as a replay of core's log from scratch into a new
// database: the read side's promise that it is only ever a function of the
// log. what names got in messages; tables limits the comparison (default:
// every projected table).
func CheckReplay(tb testing.TB, ctx context.Context, core *boot.Core, got testenv.Querier, what string, tables ...string) {
	tb.Helper()
	fresh := freshReplay(tb, ctx, core)
	for _, t := range readTables {
		if len(tables) > 0 && !slices.Contains(tables, t.name) {
			continue
		}
		want, rows := testenv.DumpTable(tb, fresh, t.name, t.key), testenv.DumpTable(tb, got, t.name, t.key)
		if diff := cmp.Diff(want, rows); diff != "" {
			tb.Fatalf("%s differs from a fresh replay (-replay +%s):\n%s", t.name, what, diff)
		}
		tb.Logf("%s: %d rows %s, equal to a fresh replay", t.name, len(rows), what)
	}
}

// freshReplay builds every projection of core's log from scratch in a new
// database and returns a pool on it, closed when the test ends.
func freshReplay(tb testing.TB, ctx context.Context, core *boot.Core) *pgxpool.Pool {
	tb.Helper()
	url := testenv.NewDatabase(tb)
	pool, err := postgres.Open(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	if _, err := postgres.Migrate(ctx, pool); err != nil {
		tb.Fatal(err)
	}
	for _, p := range projection.All() {
		deps := projection.Deps{DatabaseURL: url, JS: core.JS, Store: core.Store, Opener: core.Keyring}
		if err := projection.NewRunner(p, deps).RunUntilRebuilt(ctx, "test"); err != nil {
			tb.Fatal(err)
		}
	}
	return pool
}
