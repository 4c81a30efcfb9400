// Package projection builds PostgreSQL read models from the event log.
//
// Each projection has one active runner at a time, chosen by a PostgreSQL
// advisory lock; standby runners wait for it. A runner reads the stream from
// its checkpoint + 1 and applies each batch of events together with the new
// checkpoint in one transaction, so a crash anywhere neither loses nor
// doubles a row. Tables are versioned by generation and read through views:
// a rebuild replays the log into a new generation while the live one keeps
// serving, then switches the views atomically.
package projection

import (
	"context"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/internal/integrity"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Event is one event as projections see it: decoded, personal data opened.
type Event struct {
	Seq      uint64
	Subject  string
	Envelope *events.Envelope
	Payload  events.Payload
}

// Projection builds one read model.
type Projection interface {
	// Name identifies the projection ("tenants").
	Name() string
	// SchemaVersion changes whenever the tables' shape or meaning changes; a
	// generation built by another schema version is rebuilt.
	SchemaVersion() int
	// Tables lists the tables' base names. Each is read through a view of
	// that name over the active generation's table.
	Tables() []string
	// Create creates generation gen's tables without secondary indexes.
	Create(ctx context.Context, tx pgx.Tx, gen int) error
	// Indexes creates generation gen's secondary indexes.
	Indexes(ctx context.Context, tx pgx.Tx, gen int) error
	// Apply applies a batch of events to generation gen inside tx. It must be
	// deterministic: a batch that fails fails again.
	Apply(ctx context.Context, tx pgx.Tx, gen int, batch []Event) error
	// NewBulk returns a loader for replaying the log into an empty
	// generation, allowed to use COPY.
	NewBulk(gen int) Bulk
}

// Quarantiner is a projection that marks the aggregates whose chain a
// quarantined message breaks (the tenants directory shows them as
// integrity: broken), and clears the mark when the message is resolved.
type Quarantiner interface {
	Quarantine(ctx context.Context, tx pgx.Tx, gen int, v *integrity.Violation) error
}

// Bulk loads a replay into a fresh generation batch by batch, in order.
type Bulk interface {
	Load(ctx context.Context, conn *pgx.Conn, batch []Event) error
}

// index is a secondary index: its name's suffix and its definition.
type index struct{ name, def string }

// createIndexes creates table's secondary indexes.
func createIndexes(ctx context.Context, tx pgx.Tx, table string, indexes []index) error {
	for _, s := range indexes {
		if _, err := tx.Exec(ctx, "CREATE INDEX "+Ident(table+"_"+s.name)+" ON "+Ident(table)+" "+s.def); err != nil {
			return err
		}
	}
	return nil
}

// Table returns the name of base's table in generation gen.
func Table(base string, gen int) string {
	return fmt.Sprintf("%s_g%d", base, gen)
}

// Ident quotes a table name for SQL.
func Ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// lockKey is the advisory lock that makes one runner per projection active.
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("tenancy.projection." + name))
	return int64(h.Sum64() >> 1)
}

// NotifyChannel is where runners announce each new checkpoint
// ("<name>:<checkpoint>"), for readers waiting on a min_seq.
const NotifyChannel = "tenancy_projection"
