package projection

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/pkg/events"
)

// Audit is the audit trail: one row per event, with who did what to which
// aggregate, correlated to the request that caused it, and a short summary.
// Each row points at the signed event it summarizes (its stream sequence).
// An event about an org unit (the unit itself, or a membership of it)
// names the unit in org_unit_id, so that the unit's auditors can read its
// part of the trail without the rest of the tenant's.
type Audit struct{}

// Name implements Projection.
func (Audit) Name() string { return "audit_log" }

// SchemaVersion implements Projection.
func (Audit) SchemaVersion() int { return 2 }

// Tables implements Projection.
func (Audit) Tables() []string { return []string{"audit_log"} }

// Create implements Projection.
func (Audit) Create(ctx context.Context, tx pgx.Tx, gen int) error {
	_, err := tx.Exec(ctx, `CREATE TABLE `+Ident(Table("audit_log", gen))+` (
		seq            bigint PRIMARY KEY,
		event_id       text        NOT NULL,
		time           timestamptz NOT NULL,
		tenant_id      uuid        NOT NULL,
		aggregate      text        NOT NULL,
		aggregate_id   text        NOT NULL,
		type           text        NOT NULL,
		actor          text        NOT NULL,
		correlation_id text,
		causation_id   text,
		summary        text        NOT NULL,
		org_unit_id    uuid
	)`)
	return err
}

// Indexes implements Projection.
func (Audit) Indexes(ctx context.Context, tx pgx.Tx, gen int) error {
	return createIndexes(ctx, tx, Table("audit_log", gen), []index{
		{"tenant", "(tenant_id, seq DESC)"},
		{"tenant_time", "(tenant_id, time DESC)"},
		{"actor", "(actor, seq DESC)"},
		{"type", "(type, seq DESC)"},
		{"time", "(time DESC)"},
		{"correlation", "(correlation_id)"},
		{"org_unit", "(tenant_id, org_unit_id, seq DESC) WHERE org_unit_id IS NOT NULL"},
	})
}

var auditColumns = []string{"seq", "event_id", "time", "tenant_id", "aggregate", "aggregate_id", "type", "actor", "correlation_id", "causation_id", "summary", "org_unit_id"}

func auditRows(batch []Event) [][]any {
	out := make([][]any, 0, len(batch))
	for _, e := range batch {
		env := e.Envelope
		summary := env.Type
		if s, ok := e.Payload.(events.Summarizer); ok {
			summary = s.Summary()
		}
		out = append(out, []any{int64(e.Seq), env.ID, env.Time, env.TenantID, env.Aggregate(), env.Subject, env.Type, env.Actor,
			nullable(env.CorrelationID), nullable(env.CausationID), summary, nullable(OrgUnitOf(e.Payload))})
	}
	return out
}

// OrgUnitOf returns the org unit an event is about ("" for none): the unit
// created, changed or deleted, or the unit of a membership.
func OrgUnitOf(p events.Payload) string {
	switch p := p.(type) {
	case *events.OrgUnitCreated:
		return p.ID
	case *events.OrgUnitUpdated:
		return p.ID
	case *events.OrgUnitDeleted:
		return p.ID
	case *events.MembershipSet:
		return p.OUID
	case *events.MembershipRemoved:
		return p.OUID
	}
	return ""
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Apply implements Projection.
func (Audit) Apply(ctx context.Context, tx pgx.Tx, gen int, batch []Event) error {
	_, err := tx.CopyFrom(ctx, pgx.Identifier{Table("audit_log", gen)}, auditColumns, pgx.CopyFromRows(auditRows(batch)))
	return err
}

// NewBulk implements Projection.
func (Audit) NewBulk(gen int) Bulk { return auditBulk{table: Table("audit_log", gen)} }

type auditBulk struct{ table string }

func (b auditBulk) Load(ctx context.Context, conn *pgx.Conn, batch []Event) error {
	_, err := conn.CopyFrom(ctx, pgx.Identifier{b.table}, auditColumns, pgx.CopyFromRows(auditRows(batch)))
	return err
}
