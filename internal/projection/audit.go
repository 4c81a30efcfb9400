package projection

import (
	"context"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Audit is the audit trail: one row per event, with who did what to which
// aggregate, correlated to the request that caused it, and a short summary.
// Each row points at the signed event it summarizes (its stream sequence).
//
// An event about an org unit (the unit itself, or a membership of it)
// records in org_unit_path the unit and the units above it when it
// happened, so that a unit's auditors read the part of the trail that was
// theirs at the time: a unit moved in brings no history from elsewhere,
// one moved or deleted away leaves its history behind. The projection
// keeps the tree it needs for that in audit_org_units.
type Audit struct{}

// Name implements Projection.
func (Audit) Name() string { return "audit_log" }

// SchemaVersion implements Projection.
func (Audit) SchemaVersion() int { return 2 }

// Tables implements Projection.
func (Audit) Tables() []string { return []string{"audit_log", "audit_org_units"} }

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
		org_unit_path  uuid[]
	)`)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `CREATE TABLE `+Ident(Table("audit_org_units", gen))+` (
		tenant_id uuid NOT NULL,
		id        uuid NOT NULL,
		parent_id text NOT NULL,
		PRIMARY KEY (tenant_id, id)
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
		{"org_unit", "USING gin (org_unit_path) WHERE org_unit_path IS NOT NULL"},
	})
}

var auditColumns = []string{"seq", "event_id", "time", "tenant_id", "aggregate", "aggregate_id", "type", "actor", "correlation_id", "causation_id", "summary", "org_unit_path"}

// auditRows returns the batch's rows, placing org unit events in tree (the
// tree as of the event before the batch's first, which it moves on).
func auditRows(batch []Event, tree ouTree) [][]any {
	out := make([][]any, 0, len(batch))
	for _, e := range batch {
		env := e.Envelope
		summary := env.Type
		if s, ok := e.Payload.(events.Summarizer); ok {
			summary = s.Summary()
		}
		var path any
		if p := tree.apply(env.TenantID, e.Payload); p != nil {
			path = p
		}
		out = append(out, []any{int64(e.Seq), env.ID, env.Time, env.TenantID, env.Aggregate(), env.Subject, env.Type, env.Actor,
			nullable(env.CorrelationID), nullable(env.CausationID), summary, path})
	}
	return out
}

// ouTree is each org unit's parent ("" at the top), by tenant and unit,
// and which entries a batch changed.
type ouTree struct {
	parent  map[[2]string]string
	changed map[[2]string]bool
}

// path returns ou and the units above it, nearest first.
func (t ouTree) path(tenant, ou string) []string {
	var out []string
	for id := ou; id != "" && len(out) <= domain.MaxOUDepth; id = t.parent[[2]string{tenant, id}] {
		out = append(out, id)
	}
	return out
}

func (t ouTree) set(tenant, ou string, parent *string) {
	k := [2]string{tenant, ou}
	if parent == nil {
		delete(t.parent, k)
	} else {
		t.parent[k] = *parent
	}
	t.changed[k] = true
}

// apply moves the tree on by p and returns the path p is recorded under
// (nil for an event about no unit): a new unit's own, a moved unit's
// before and after the move, a deleted unit's before it went.
func (t ouTree) apply(tenant string, p events.Payload) []string {
	switch p := p.(type) {
	case *events.OrgUnitCreated:
		t.set(tenant, p.ID, &p.ParentID)
		return t.path(tenant, p.ID)
	case *events.OrgUnitUpdated:
		before := t.path(tenant, p.ID)
		if p.ParentID == nil {
			return before
		}
		t.set(tenant, p.ID, p.ParentID)
		out := before
		for _, id := range t.path(tenant, p.ID) {
			if !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
		return out
	case *events.OrgUnitDeleted:
		out := t.path(tenant, p.ID)
		t.set(tenant, p.ID, nil)
		return out
	case *events.MembershipSet:
		return t.path(tenant, p.OUID)
	case *events.MembershipRemoved:
		return t.path(tenant, p.OUID)
	}
	return nil
}

// isOrgUnitEvent reports whether p is about an org unit.
func isOrgUnitEvent(p events.Payload) bool {
	switch p.(type) {
	case *events.OrgUnitCreated, *events.OrgUnitUpdated, *events.OrgUnitDeleted, *events.MembershipSet, *events.MembershipRemoved:
		return true
	}
	return false
}

// pgxConn is what the audit projection needs of a transaction (live) or a
// connection (rebuild).
type pgxConn interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
}

// loadTree reads the tree of the tenants whose org units batch is about.
func loadTree(ctx context.Context, c pgxConn, table string, batch []Event) (ouTree, error) {
	t := ouTree{parent: map[[2]string]string{}, changed: map[[2]string]bool{}}
	var tenants []string
	for _, e := range batch {
		if isOrgUnitEvent(e.Payload) && !slices.Contains(tenants, e.Envelope.TenantID) {
			tenants = append(tenants, e.Envelope.TenantID)
		}
	}
	if len(tenants) == 0 {
		return t, nil
	}
	rows, err := c.Query(ctx, "SELECT tenant_id::text, id::text, parent_id FROM "+Ident(table)+" WHERE tenant_id = ANY($1::uuid[])", tenants)
	if err != nil {
		return t, err
	}
	defer rows.Close()
	for rows.Next() {
		var tenant, id, parent string
		if err := rows.Scan(&tenant, &id, &parent); err != nil {
			return t, err
		}
		t.parent[[2]string{tenant, id}] = parent
	}
	return t, rows.Err()
}

// writeAudit appends batch's rows and stores the tree entries it changed.
func writeAudit(ctx context.Context, c pgxConn, gen int, batch []Event) error {
	treeTable := Table("audit_org_units", gen)
	tree, err := loadTree(ctx, c, treeTable, batch)
	if err != nil {
		return err
	}
	if _, err := c.CopyFrom(ctx, pgx.Identifier{Table("audit_log", gen)}, auditColumns, pgx.CopyFromRows(auditRows(batch, tree))); err != nil {
		return err
	}
	if len(tree.changed) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for k := range tree.changed {
		if parent, ok := tree.parent[k]; ok {
			b.Queue("INSERT INTO "+Ident(treeTable)+" (tenant_id, id, parent_id) VALUES ($1, $2, $3) ON CONFLICT (tenant_id, id) DO UPDATE SET parent_id = EXCLUDED.parent_id",
				k[0], k[1], parent)
		} else {
			b.Queue("DELETE FROM "+Ident(treeTable)+" WHERE tenant_id = $1 AND id = $2", k[0], k[1])
		}
	}
	return c.SendBatch(ctx, b).Close()
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Apply implements Projection.
func (Audit) Apply(ctx context.Context, tx pgx.Tx, gen int, batch []Event) error {
	return writeAudit(ctx, tx, gen, batch)
}

// NewBulk implements Projection.
func (Audit) NewBulk(gen int) Bulk { return auditBulk{gen: gen} }

type auditBulk struct{ gen int }

func (b auditBulk) Load(ctx context.Context, conn *pgx.Conn, batch []Event) error {
	return writeAudit(ctx, conn, b.gen, batch)
}
