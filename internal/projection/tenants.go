package projection

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Tenants is the tenant directory: one row per tenant with every field of
// the record, indexed for the console's search and the integrations'
// lookups. Each row also keeps the folded aggregate (state_doc), so the
// read model folds events with the domain's own Evolve and cannot drift from
// the write side.
type Tenants struct{}

// Name implements Projection.
func (Tenants) Name() string { return "tenants" }

// SchemaVersion implements Projection.
// Version 3 added the customer_id column and the customer members of the
// stored document (holds, customer, platform role, realm placement).
func (Tenants) SchemaVersion() int { return 3 }

// Tables implements Projection.
func (Tenants) Tables() []string { return []string{"tenants"} }

// Create implements Projection.
func (Tenants) Create(ctx context.Context, tx pgx.Tx, gen int) error {
	_, err := tx.Exec(ctx, `CREATE TABLE `+Ident(Table("tenants", gen))+` (
		id                  uuid PRIMARY KEY,
		slug                text        NOT NULL,
		display_name        text        NOT NULL,
		state               text        NOT NULL,
		version             bigint      NOT NULL,
		plan                text        NOT NULL,
		regions             text[]      NOT NULL,
		preferred_region    text        NOT NULL,
		isolation           text        NOT NULL,
		labels              jsonb       NOT NULL,
		external_ids        jsonb       NOT NULL,
		customer_ref        text,
		customer_id         uuid,
		provisioning_status text,
		created_at          timestamptz NOT NULL,
		updated_at          timestamptz NOT NULL,
		last_event_seq      bigint      NOT NULL,
		last_event_at       timestamptz NOT NULL,
		state_doc           jsonb       NOT NULL,
		integrity_broken_seq bigint
	)`)
	return err
}

// Indexes implements Projection.
func (Tenants) Indexes(ctx context.Context, tx pgx.Tx, gen int) error {
	return createIndexes(ctx, tx, Table("tenants", gen), []index{
		{"slug", "(slug)"},
		{"state", "(state, id)"},
		{"plan", "(plan, id)"},
		{"isolation", "(isolation, id)"},
		{"customer", "(customer_id, id)"},
		{"regions", "USING gin (regions)"},
		{"labels", "USING gin (labels jsonb_path_ops)"},
		{"extids", "USING gin (external_ids jsonb_path_ops)"},
		{"name_trgm", "USING gin (display_name gin_trgm_ops)"},
		{"slug_trgm", "USING gin (slug gin_trgm_ops)"},
	})
}

// tenantRow is one row of the tenants table.
type tenantRow struct {
	state   domain.Tenant
	lastSeq uint64
	lastAt  time.Time
}

// foldTenants applies batch's tenant events to rows, loading rows it has
// not seen through load, and returns the ids of the rows it changed.
func foldTenants(ctx context.Context, batch []Event, rows map[string]*tenantRow, load func(ctx context.Context, ids []string) (map[string]*tenantRow, error)) ([]string, error) {
	var evs []Event
	for _, e := range batch {
		if e.Envelope.Aggregate() == events.AggregateTenant {
			evs = append(evs, e)
		}
	}
	if err := loadMissing(ctx, evs, rows, load); err != nil {
		return nil, err
	}
	var touched []string
	changed := map[string]bool{}
	for _, e := range evs {
		id := e.Envelope.Subject
		r := rows[id]
		if r == nil {
			r = &tenantRow{}
			rows[id] = r
		}
		if r.lastSeq >= e.Seq {
			continue // already folded: a replay overlapping what is stored
		}
		r.state = domain.EvolveTenant(r.state, domain.RecordedFrom(id, e.Seq, e.Envelope, e.Payload))
		r.lastSeq, r.lastAt = e.Seq, e.Envelope.Time
		if !changed[id] {
			changed[id] = true
			touched = append(touched, id)
		}
	}
	return touched, nil
}

// loadMissing adds to rows, through load, the rows of the tenants of evs
// that it lacks, in one query.
func loadMissing(ctx context.Context, evs []Event, rows map[string]*tenantRow, load func(ctx context.Context, ids []string) (map[string]*tenantRow, error)) error {
	if load == nil {
		return nil
	}
	var missing []string
	seen := map[string]bool{}
	for _, e := range evs {
		id := e.Envelope.Subject
		if _, ok := rows[id]; !ok && !seen[id] {
			missing = append(missing, id)
		}
		seen[id] = true
	}
	if len(missing) == 0 {
		return nil
	}
	loaded, err := load(ctx, missing)
	if err != nil {
		return err
	}
	maps.Copy(rows, loaded)
	return nil
}

// querier runs a query: a connection, a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// loadRows reads the stored rows of ids (those that exist) from a read
// model's table, each made by row from its state_doc and the sequence and
// time of its last event.
func loadRows[R any](ctx context.Context, q querier, table string, ids []string, row func(id string, doc []byte, seq uint64, at time.Time) (R, error)) (map[string]R, error) {
	rows, err := q.Query(ctx, "SELECT id::text, state_doc, last_event_seq, last_event_at FROM "+Ident(table)+" WHERE id = ANY($1::uuid[])", ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]R{}
	for rows.Next() {
		var id string
		var doc []byte
		var seq int64
		var at time.Time
		if err := rows.Scan(&id, &doc, &seq, &at); err != nil {
			return nil, err
		}
		r, err := row(id, doc, uint64(seq), at)
		if err != nil {
			return nil, err
		}
		out[id] = r
	}
	return out, rows.Err()
}

func loadTenantRows(q querier, table string) func(ctx context.Context, ids []string) (map[string]*tenantRow, error) {
	return func(ctx context.Context, ids []string) (map[string]*tenantRow, error) {
		return loadRows(ctx, q, table, ids, func(id string, doc []byte, seq uint64, at time.Time) (*tenantRow, error) {
			t, err := UnmarshalTenant(doc)
			if err != nil {
				return nil, fmt.Errorf("tenant %s: unreadable state_doc: %w", id, err)
			}
			return &tenantRow{state: t, lastSeq: seq, lastAt: at}, nil
		})
	}
}

// values returns a row's column values in table order.
func (r *tenantRow) values() ([]any, error) {
	t := r.state
	doc, err := MarshalTenant(t)
	if err != nil {
		return nil, err
	}
	labels, _ := json.Marshal(nonNil(t.Labels))
	extIDs, _ := json.Marshal(nonNil(t.ExternalIDs))
	regions := t.Regions.Allowed
	if regions == nil {
		regions = []string{}
	}
	var ref, customer, prov any
	if t.CustomerRef != "" {
		ref = t.CustomerRef
	}
	if t.CustomerID != "" {
		customer = t.CustomerID
	}
	if t.Provisioning.Status != "" {
		prov = string(t.Provisioning.Status)
	}
	return []any{t.ID, t.Slug, t.DisplayName, string(t.State), t.Version, t.Plan, regions, t.Regions.Preferred, string(t.Isolation),
		labels, extIDs, ref, customer, prov, t.CreatedAt, t.UpdatedAt, int64(r.lastSeq), r.lastAt, doc}, nil
}

var tenantColumns = []string{"id", "slug", "display_name", "state", "version", "plan", "regions", "preferred_region", "isolation",
	"labels", "external_ids", "customer_ref", "customer_id", "provisioning_status", "created_at", "updated_at", "last_event_seq", "last_event_at", "state_doc"}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

const upsertTenant = ` (id, slug, display_name, state, version, plan, regions, preferred_region, isolation, labels, external_ids,
	customer_ref, customer_id, provisioning_status, created_at, updated_at, last_event_seq, last_event_at, state_doc)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
	ON CONFLICT (id) DO UPDATE SET slug = EXCLUDED.slug, display_name = EXCLUDED.display_name, state = EXCLUDED.state,
	version = EXCLUDED.version, plan = EXCLUDED.plan, regions = EXCLUDED.regions, preferred_region = EXCLUDED.preferred_region,
	isolation = EXCLUDED.isolation, labels = EXCLUDED.labels, external_ids = EXCLUDED.external_ids, customer_ref = EXCLUDED.customer_ref,
	customer_id = EXCLUDED.customer_id, provisioning_status = EXCLUDED.provisioning_status, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
	last_event_seq = EXCLUDED.last_event_seq, last_event_at = EXCLUDED.last_event_at, state_doc = EXCLUDED.state_doc`

func upsertRows(ctx context.Context, tx interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}, table string, rows map[string]*tenantRow, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	sql := "INSERT INTO " + Ident(table) + upsertTenant
	for _, id := range ids {
		vals, err := rows[id].values()
		if err != nil {
			return err
		}
		b.Queue(sql, vals...)
	}
	return tx.SendBatch(ctx, b).Close()
}

// Apply implements Projection.
func (Tenants) Apply(ctx context.Context, tx pgx.Tx, gen int, batch []Event) error {
	table := Table("tenants", gen)
	rows := map[string]*tenantRow{}
	touched, err := foldTenants(ctx, batch, rows, loadTenantRows(tx, table))
	if err != nil {
		return err
	}
	if err := upsertRows(ctx, tx, table, rows, touched); err != nil {
		return err
	}
	return clearResolved(ctx, tx, table, batch)
}

// NewBulk implements Projection.
func (Tenants) NewBulk(gen int) Bulk {
	return &tenantsBulk{table: Table("tenants", gen), written: map[string]bool{}}
}

// tenantsBulk replays into an empty table: tenants first seen in a batch are
// written with COPY; the few whose events span batches are read back and
// upserted.
type tenantsBulk struct {
	table   string
	written map[string]bool
}

func (b *tenantsBulk) Load(ctx context.Context, conn *pgx.Conn, batch []Event) error {
	rows := map[string]*tenantRow{}
	load := func(ctx context.Context, ids []string) (map[string]*tenantRow, error) {
		var known []string
		for _, id := range ids {
			if b.written[id] {
				known = append(known, id)
			}
		}
		if len(known) == 0 {
			return nil, nil
		}
		return loadTenantRows(conn, b.table)(ctx, known)
	}
	touched, err := foldTenants(ctx, batch, rows, load)
	if err != nil {
		return err
	}
	var fresh, again []string
	for _, id := range touched {
		if b.written[id] {
			again = append(again, id)
		} else {
			fresh = append(fresh, id)
		}
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if len(fresh) > 0 {
			src := make([][]any, 0, len(fresh))
			for _, id := range fresh {
				vals, err := rows[id].values()
				if err != nil {
					return err
				}
				src = append(src, vals)
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{b.table}, tenantColumns, pgx.CopyFromRows(src)); err != nil {
				return err
			}
		}
		if err := upsertRows(ctx, tx, b.table, rows, again); err != nil {
			return err
		}
		for _, id := range fresh {
			b.written[id] = true
		}
		return nil
	})
}
