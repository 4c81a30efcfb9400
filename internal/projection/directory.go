package projection

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/pkg/events"
)

// Directory is what lives inside each tenant, as the console searches and
// lists it: users, non-browser clients, the org unit tree and the
// memberships joining them. The aggregate (one per tenant) stays the
// authority for single reads and for decisions; these tables answer the
// searches and listings a large tenant needs indexes for.
//
// A user's personal data (username, email, names, attributes) is here in
// the clear so that it can be searched; it was opened with the user's own
// key, and the row goes when the user is deleted. A rebuild after that
// cannot bring it back: the key is destroyed and the created event opens
// to nothing.
//
// Each tenant's last applied sequence is kept in directory_tenants and
// events at or below it are skipped, so a replay overlapping what is
// stored changes nothing, as for the other projections.
type Directory struct{}

// Name implements Projection.
func (Directory) Name() string { return "directory" }

// SchemaVersion implements Projection.
func (Directory) SchemaVersion() int { return 1 }

// directoryTables are the tables' base names, the guard first.
var directoryTables = []string{"directory_tenants", "directory_users", "directory_clients", "directory_org_units", "directory_memberships"}

// Tables implements Projection.
func (Directory) Tables() []string { return directoryTables }

// directoryDDL is each table's definition, in directoryTables' order.
var directoryDDL = []string{
	`tenant_id      uuid   PRIMARY KEY,
	last_event_seq bigint NOT NULL`,
	`tenant_id        uuid        NOT NULL,
	id               uuid        NOT NULL,
	username         text        NOT NULL,
	email            text        NOT NULL,
	first_name       text        NOT NULL,
	last_name        text        NOT NULL,
	attributes       jsonb       NOT NULL,
	enabled          boolean     NOT NULL,
	roles            text[]      NOT NULL,
	break_glass      boolean     NOT NULL,
	source           text        NOT NULL,
	required_actions text[]      NOT NULL,
	version          bigint      NOT NULL,
	created_at       timestamptz NOT NULL,
	updated_at       timestamptz NOT NULL,
	last_event_seq   bigint      NOT NULL,
	PRIMARY KEY (tenant_id, id)`,
	`tenant_id      uuid        NOT NULL,
	id             uuid        NOT NULL,
	client_id      text        NOT NULL,
	name           text        NOT NULL,
	roles          text[]      NOT NULL,
	enabled        boolean     NOT NULL,
	secret_version integer     NOT NULL,
	version        bigint      NOT NULL,
	created_at     timestamptz NOT NULL,
	updated_at     timestamptz NOT NULL,
	last_event_seq bigint      NOT NULL,
	PRIMARY KEY (tenant_id, id)`,
	// parent_id is "" for a unit at the top of the tree.
	`tenant_id      uuid        NOT NULL,
	id             uuid        NOT NULL,
	name           text        NOT NULL,
	description    text        NOT NULL,
	parent_id      text        NOT NULL,
	version        bigint      NOT NULL,
	created_at     timestamptz NOT NULL,
	updated_at     timestamptz NOT NULL,
	last_event_seq bigint      NOT NULL,
	PRIMARY KEY (tenant_id, id)`,
	`tenant_id  uuid        NOT NULL,
	user_id    uuid        NOT NULL,
	ou_id      uuid        NOT NULL,
	roles      text[]      NOT NULL,
	updated_at timestamptz NOT NULL,
	PRIMARY KEY (tenant_id, user_id, ou_id)`,
}

// Create implements Projection.
func (Directory) Create(ctx context.Context, tx pgx.Tx, gen int) error {
	for i, base := range directoryTables {
		if _, err := tx.Exec(ctx, "CREATE TABLE "+Ident(Table(base, gen))+" ("+directoryDDL[i]+")"); err != nil {
			return err
		}
	}
	return nil
}

// Indexes implements Projection. Searches are by substring or similarity
// (trigrams) on the names a person is known by, within a tenant; listings
// are by id within a tenant, which the primary keys serve.
func (Directory) Indexes(ctx context.Context, tx pgx.Tx, gen int) error {
	for base, indexes := range map[string][]index{
		// Led by the tenant (btree_gin): a search reads one tenant's
		// entries, however many tenants share a name.
		"directory_users": {
			{"username_trgm", "USING gin (tenant_id, username gin_trgm_ops)"},
			{"email_trgm", "USING gin (tenant_id, email gin_trgm_ops)"},
			{"name_trgm", "USING gin (tenant_id, (first_name || ' ' || last_name) gin_trgm_ops)"},
		},
		"directory_clients":     {{"client_id", "(tenant_id, client_id)"}},
		"directory_org_units":   {{"parent", "(tenant_id, parent_id, id)"}},
		"directory_memberships": {{"ou", "(tenant_id, ou_id, user_id)"}},
	} {
		if err := createIndexes(ctx, tx, Table(base, gen), indexes); err != nil {
			return err
		}
	}
	return nil
}

// Apply implements Projection: each directory event becomes one or two
// statements, sent together; a tenant's events at or below its stored
// sequence are skipped.
func (Directory) Apply(ctx context.Context, tx pgx.Tx, gen int, batch []Event) error {
	var evs []Event
	var tenants []string
	seen := map[string]bool{}
	for _, e := range batch {
		_, deleted := e.Payload.(*events.TenantDeleted)
		if !deleted && !isDirectory(e) {
			continue
		}
		evs = append(evs, e)
		if t := e.Envelope.TenantID; !seen[t] {
			seen[t] = true
			tenants = append(tenants, t)
		}
	}
	if len(evs) == 0 {
		return nil
	}
	t := directoryNamesOf(gen)
	applied, err := appliedSeqs(ctx, tx, t.tenants, tenants)
	if err != nil {
		return err
	}
	b := &pgx.Batch{}
	last := map[string]uint64{}
	for _, e := range evs {
		tenant := e.Envelope.TenantID
		if _, ok := e.Payload.(*events.TenantDeleted); ok {
			// Nothing of a deleted tenant's directory is kept (its users'
			// keys are destroyed too, so a rebuild has nothing to show
			// either), not even its sequence: no event can follow.
			for _, table := range []string{t.tenants, t.users, t.clients, t.units, t.members} {
				b.Queue("DELETE FROM "+table+" WHERE tenant_id = $1", tenant)
			}
			delete(last, tenant)
			continue
		}
		if e.Seq <= applied[tenant] {
			continue // already applied: a replay overlapping what is stored
		}
		if err := t.queue(b, tenant, e); err != nil {
			return fmt.Errorf("directory of %s, event %d: %w", tenant, e.Seq, err)
		}
		last[tenant] = e.Seq
	}
	for tenant, seq := range last {
		b.Queue("INSERT INTO "+t.tenants+" (tenant_id, last_event_seq) VALUES ($1, $2) ON CONFLICT (tenant_id) DO UPDATE SET last_event_seq = EXCLUDED.last_event_seq",
			tenant, int64(seq))
	}
	return tx.SendBatch(ctx, b).Close()
}

// isDirectory reports whether e is on a directory's subject (its type
// names the entity, user or org_unit, not the aggregate).
func isDirectory(e Event) bool {
	_, agg, _, err := events.ParseSubject(e.Subject)
	return err == nil && agg == events.AggregateDirectory
}

// appliedSeqs reads the last applied sequence of each of tenants that has
// one.
func appliedSeqs(ctx context.Context, tx pgx.Tx, table string, tenants []string) (map[string]uint64, error) {
	rows, err := tx.Query(ctx, "SELECT tenant_id::text, last_event_seq FROM "+table+" WHERE tenant_id = ANY($1::uuid[])", tenants)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for rows.Next() {
		var id string
		var seq int64
		if err := rows.Scan(&id, &seq); err != nil {
			return nil, err
		}
		out[id] = uint64(seq)
	}
	return out, rows.Err()
}

// directoryNames are one generation's quoted table names.
type directoryNames struct{ tenants, users, clients, units, members string }

func directoryNamesOf(gen int) directoryNames {
	q := func(base string) string { return Ident(Table(base, gen)) }
	return directoryNames{q("directory_tenants"), q("directory_users"), q("directory_clients"), q("directory_org_units"), q("directory_memberships")}
}

// textArray is a list as a text[] parameter: never NULL.
func textArray(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

// optArray is an optional list as a parameter: NULL when absent, so that
// coalesce keeps the stored value.
func optArray(v *[]string) any {
	if v == nil {
		return nil
	}
	return textArray(*v)
}

// optText is an optional text parameter: NULL when absent.
func optText(v *string) any {
	if v == nil {
		return nil
	}
	return *v
}

// queue adds the statements applying e to tenant's directory.
func (t directoryNames) queue(b *pgx.Batch, tenant string, e Event) error {
	at, seq := e.Envelope.Time, int64(e.Seq)
	switch p := e.Payload.(type) {
	case *events.UserCreated:
		pii := p.Personal
		if pii == nil {
			pii = &events.UserPII{} // erased since: the row goes with the user's deletion
		}
		attrs, err := json.Marshal(nonNil(pii.Attributes))
		if err != nil {
			return err
		}
		b.Queue("INSERT INTO "+t.users+` (tenant_id, id, username, email, first_name, last_name, attributes, enabled, roles, break_glass,
			source, required_actions, version, created_at, updated_at, last_event_seq)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1, $13, $13, $14)
			ON CONFLICT (tenant_id, id) DO NOTHING`,
			tenant, p.UserID, pii.Username, pii.Email, pii.FirstName, pii.LastName, attrs, p.Enabled, textArray(p.Roles), p.BreakGlass,
			p.Source, textArray(p.RequiredActions), at, seq)
	case *events.UserUpdated:
		var username, email, first, last, attrs any
		if pii := p.Personal; pii != nil {
			a, err := json.Marshal(nonNil(pii.Attributes))
			if err != nil {
				return err
			}
			username, email, first, last, attrs = pii.Username, pii.Email, pii.FirstName, pii.LastName, a
		}
		b.Queue("UPDATE "+t.users+` SET username = coalesce($3::text, username), email = coalesce($4::text, email),
			first_name = coalesce($5::text, first_name), last_name = coalesce($6::text, last_name),
			attributes = coalesce($7::jsonb, attributes), roles = coalesce($8::text[], roles),
			required_actions = coalesce($9::text[], required_actions), version = version + 1, updated_at = $10, last_event_seq = $11
			WHERE tenant_id = $1 AND id = $2`,
			tenant, p.UserID, username, email, first, last, attrs, optArray(p.Roles), optArray(p.RequiredActions), at, seq)
	case *events.UserDisabled:
		t.setEnabled(b, t.users, tenant, p.UserID, false, at, seq)
	case *events.UserEnabled:
		t.setEnabled(b, t.users, tenant, p.UserID, true, at, seq)
	case *events.UserDeleted:
		b.Queue("DELETE FROM "+t.users+" WHERE tenant_id = $1 AND id = $2", tenant, p.UserID)
		b.Queue("DELETE FROM "+t.members+" WHERE tenant_id = $1 AND user_id = $2", tenant, p.UserID)
	default:
		t.queueOther(b, tenant, e)
	}
	return nil
}

func (directoryNames) setEnabled(b *pgx.Batch, table, tenant, id string, enabled bool, at time.Time, seq int64) {
	b.Queue("UPDATE "+table+" SET enabled = $3, version = version + 1, updated_at = $4, last_event_seq = $5 WHERE tenant_id = $1 AND id = $2",
		tenant, id, enabled, at, seq)
}

// queueOther adds the statements of the events that are not about users.
func (t directoryNames) queueOther(b *pgx.Batch, tenant string, e Event) {
	at, seq := e.Envelope.Time, int64(e.Seq)
	switch p := e.Payload.(type) {
	case *events.ClientCreated:
		b.Queue("INSERT INTO "+t.clients+` (tenant_id, id, client_id, name, roles, enabled, secret_version, version, created_at, updated_at,
			last_event_seq) VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8, $9) ON CONFLICT (tenant_id, id) DO NOTHING`,
			tenant, p.ID, p.ClientID, p.Name, textArray(p.Roles), p.Enabled, p.SecretVersion, at, seq)
	case *events.ClientUpdated:
		var enabled any
		if p.Enabled != nil {
			enabled = *p.Enabled
		}
		b.Queue("UPDATE "+t.clients+` SET name = coalesce($3::text, name), roles = coalesce($4::text[], roles),
			enabled = coalesce($5::boolean, enabled), version = version + 1, updated_at = $6, last_event_seq = $7
			WHERE tenant_id = $1 AND id = $2`, tenant, p.ID, optText(p.Name), optArray(p.Roles), enabled, at, seq)
	case *events.ClientSecretRotated:
		b.Queue("UPDATE "+t.clients+` SET secret_version = $3, version = version + 1, updated_at = $4, last_event_seq = $5
			WHERE tenant_id = $1 AND id = $2`, tenant, p.ID, p.SecretVersion, at, seq)
	case *events.ClientDeleted:
		b.Queue("DELETE FROM "+t.clients+" WHERE tenant_id = $1 AND id = $2", tenant, p.ID)
	case *events.OrgUnitCreated:
		b.Queue("INSERT INTO "+t.units+` (tenant_id, id, name, description, parent_id, version, created_at, updated_at, last_event_seq)
			VALUES ($1, $2, $3, $4, $5, 1, $6, $6, $7) ON CONFLICT (tenant_id, id) DO NOTHING`,
			tenant, p.ID, p.Name, p.Description, p.ParentID, at, seq)
	case *events.OrgUnitUpdated:
		b.Queue("UPDATE "+t.units+` SET name = coalesce($3::text, name), description = coalesce($4::text, description),
			parent_id = coalesce($5::text, parent_id), version = version + 1, updated_at = $6, last_event_seq = $7
			WHERE tenant_id = $1 AND id = $2`, tenant, p.ID, optText(p.Name), optText(p.Description), optText(p.ParentID), at, seq)
	case *events.OrgUnitDeleted:
		b.Queue("DELETE FROM "+t.units+" WHERE tenant_id = $1 AND id = $2", tenant, p.ID)
		b.Queue("DELETE FROM "+t.members+" WHERE tenant_id = $1 AND ou_id = $2", tenant, p.ID)
	case *events.MembershipSet:
		b.Queue("INSERT INTO "+t.members+` (tenant_id, user_id, ou_id, roles, updated_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (tenant_id, user_id, ou_id) DO UPDATE SET roles = EXCLUDED.roles, updated_at = EXCLUDED.updated_at`,
			tenant, p.UserID, p.OUID, textArray(p.Roles), at)
	case *events.MembershipRemoved:
		b.Queue("DELETE FROM "+t.members+" WHERE tenant_id = $1 AND user_id = $2 AND ou_id = $3", tenant, p.UserID, p.OUID)
	}
}

// NewBulk implements Projection: a replay applies each batch holding
// directory events as the live runner does, one transaction a batch.
func (Directory) NewBulk(gen int) Bulk { return directoryBulk{gen: gen} }

type directoryBulk struct{ gen int }

func (b directoryBulk) Load(ctx context.Context, conn *pgx.Conn, batch []Event) error {
	for _, e := range batch {
		if _, deleted := e.Payload.(*events.TenantDeleted); deleted || isDirectory(e) {
			return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return Directory{}.Apply(ctx, tx, b.gen, batch) })
		}
	}
	return nil
}
