package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresURL is the server tests create their databases on:
// TEST_DATABASE_URL, or the local PostgreSQL.
func PostgresURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// NewDatabase creates a throwaway database for one test and returns its URL.
// It is dropped (with its connections) when the test ends.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, PostgresURL())
	if err != nil {
		tb.Fatalf("PostgreSQL is required for this test (%s): %v", PostgresURL(), err)
	}
	defer admin.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "tenancy_test_" + strings.ToLower(sanitize(tb.Name())) + "_" + hex.EncodeToString(b)
	if len(name) > 63 {
		name = name[:50] + "_" + hex.EncodeToString(b)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, PostgresURL())
		if err != nil {
			tb.Logf("dropping %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			tb.Logf("dropping %s: %v", name, err)
		}
	})
	u, _ := url.Parse(PostgresURL())
	u.Path = "/" + name
	return u.String()
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		if (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 30 {
			break
		}
	}
	return b.String()
}

// Querier is what DumpTable reads through: a connection, a pool or a
// transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// DumpTable reads a table or view as rows of column -> value, ordered by
// key, with JSON documents re-encoded so that key order does not matter:
// what tests compare a read model with a fresh replay by.
func DumpTable(tb testing.TB, q Querier, table, key string) []map[string]any {
	tb.Helper()
	rows, err := q.Query(context.Background(), "SELECT * FROM "+pgx.Identifier{table}.Sanitize()+" ORDER BY "+pgx.Identifier{key}.Sanitize())
	if err != nil {
		tb.Fatal(err)
	}
	maps, err := pgx.CollectRows(rows, pgx.RowToMap)
	if err != nil {
		tb.Fatal(err)
	}
	for _, m := range maps {
		for k, v := range m {
			if b, ok := v.(map[string]any); ok {
				raw, _ := json.Marshal(b)
				m[k] = string(raw)
			}
		}
	}
	return maps
}
