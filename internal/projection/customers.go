package projection

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Customers is the customer directory: one row per customer with the
// members the console lists, searches and filters by, and the blind indexes
// of the fiscal ids for exact lookups. Each row keeps the folded aggregate
// (state_doc, a CustomerDoc) so the read model folds with the domain's own
// Evolve, like the tenants directory.
//
// No fiscal id, address or contact is ever written here: they stay sealed
// in the log under the customer's own key. A deleted customer's row keeps
// no personal data at all (the fold blanks an individual's names and
// contact details; the projection drops the blind indexes too, which would
// otherwise confirm a guessed fiscal id to whoever holds the index key).
type Customers struct{}

// Name implements Projection.
func (Customers) Name() string { return "customers" }

// SchemaVersion implements Projection.
func (Customers) SchemaVersion() int { return 1 }

// Tables implements Projection.
func (Customers) Tables() []string { return []string{"customers"} }

// Create implements Projection.
func (Customers) Create(ctx context.Context, tx pgx.Tx, gen int) error {
	_, err := tx.Exec(ctx, `CREATE TABLE `+Ident(Table("customers", gen))+` (
		id                      uuid PRIMARY KEY,
		kind                    text        NOT NULL,
		legal_name              text        NOT NULL,
		display_name            text        NOT NULL,
		email                   text        NOT NULL,
		realm_mode              text        NOT NULL,
		verification_type       text        NOT NULL,
		verification_status     text        NOT NULL,
		verification_updated_at timestamptz,
		root                    boolean     NOT NULL,
		deleted                 boolean     NOT NULL,
		labels                  jsonb       NOT NULL,
		external_ids            jsonb       NOT NULL,
		pan_idx                 text,
		tan_idx                 text,
		gstin_idx               text,
		version                 bigint      NOT NULL,
		created_at              timestamptz NOT NULL,
		updated_at              timestamptz NOT NULL,
		last_event_seq          bigint      NOT NULL,
		last_event_at           timestamptz NOT NULL,
		state_doc               jsonb       NOT NULL
	)`)
	return err
}

// Indexes implements Projection.
func (Customers) Indexes(ctx context.Context, tx pgx.Tx, gen int) error {
	return createIndexes(ctx, tx, Table("customers", gen), []index{
		{"kind", "(kind, id)"},
		{"verification", "(verification_status, id)"},
		{"pan", "(pan_idx)"},
		{"tan", "(tan_idx)"},
		{"gstin", "(gstin_idx)"},
		{"name_trgm", "USING gin (display_name gin_trgm_ops)"},
		{"legal_trgm", "USING gin (legal_name gin_trgm_ops)"},
	})
}

// customerRow is one row of the customers table.
type customerRow struct {
	state   domain.Customer
	lastSeq uint64
	lastAt  time.Time
}

// customerColumns are the table's columns in the order values returns them.
var customerColumns = []string{"id", "kind", "legal_name", "display_name", "email", "realm_mode", "verification_type", "verification_status",
	"verification_updated_at", "root", "deleted", "labels", "external_ids", "pan_idx", "tan_idx", "gstin_idx", "version", "created_at",
	"updated_at", "last_event_seq", "last_event_at", "state_doc"}

// stored returns what the read model keeps of c: never the personal data
// the log alone keeps (CustomerDocOf leaves it out), and for a deleted
// customer not even the blind indexes.
func stored(c domain.Customer) domain.Customer {
	c.Address, c.FiscalIDs, c.Contacts = nil, events.FiscalIDs{}, nil
	if c.Deleted {
		c.FiscalIndex = events.FiscalIndex{}
	}
	return c
}

// values returns a row's column values in customerColumns' order.
func (r *customerRow) values() ([]any, error) {
	c := stored(r.state)
	doc, err := MarshalCustomer(c)
	if err != nil {
		return nil, err
	}
	labels, _ := json.Marshal(nonNil(c.Labels))
	extIDs, _ := json.Marshal(nonNil(c.ExternalIDs))
	var verifiedAt any
	if !c.Verification.UpdatedAt.IsZero() {
		verifiedAt = c.Verification.UpdatedAt
	}
	return []any{c.ID, c.Kind, c.LegalName, c.DisplayName, c.Email, c.RealmMode, c.Verification.Type, c.Verification.Status,
		verifiedAt, c.Root, c.Deleted, labels, extIDs, nullable(c.FiscalIndex.PAN), nullable(c.FiscalIndex.TAN), nullable(c.FiscalIndex.GSTIN),
		c.Version, c.CreatedAt, c.UpdatedAt, int64(r.lastSeq), r.lastAt, doc}, nil
}

// upsertCustomer writes a row whole, over any older version of it. It is
// made from customerColumns, so the two cannot drift apart.
var upsertCustomer = func() string {
	params := make([]string, len(customerColumns))
	var set []string
	for i, c := range customerColumns {
		params[i] = "$" + strconv.Itoa(i+1)
		if c != "id" {
			set = append(set, c+" = EXCLUDED."+c)
		}
	}
	return " (" + strings.Join(customerColumns, ", ") + ") VALUES (" + strings.Join(params, ", ") + ") ON CONFLICT (id) DO UPDATE SET " + strings.Join(set, ", ")
}()

// Apply implements Projection. Events at or below a row's last_event_seq
// are skipped, so a replay overlapping what is stored changes nothing.
func (Customers) Apply(ctx context.Context, tx pgx.Tx, gen int, batch []Event) error {
	var evs []Event
	for _, e := range batch {
		if e.Envelope.Aggregate() == events.AggregateCustomer {
			evs = append(evs, e)
		}
	}
	if len(evs) == 0 {
		return nil
	}
	table := Table("customers", gen)
	var ids []string
	seen := map[string]bool{}
	for _, e := range evs {
		if id := e.Envelope.Subject; !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	rows, err := loadCustomerRows(ctx, tx, table, ids)
	if err != nil {
		return err
	}
	var touched []string
	changed := map[string]bool{}
	for _, e := range evs {
		id := e.Envelope.Subject
		r := rows[id]
		if r == nil {
			r = &customerRow{}
			rows[id] = r
		}
		if r.lastSeq >= e.Seq {
			continue // already folded: a replay overlapping what is stored
		}
		r.state = domain.CustomerDecider{}.Evolve(r.state, domain.RecordedFrom(id, e.Seq, e.Envelope, e.Payload))
		r.lastSeq, r.lastAt = e.Seq, e.Envelope.Time
		if !changed[id] {
			changed[id] = true
			touched = append(touched, id)
		}
	}
	if len(touched) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	sql := "INSERT INTO " + Ident(table) + upsertCustomer
	for _, id := range touched {
		vals, err := rows[id].values()
		if err != nil {
			return fmt.Errorf("customer %s: %w", id, err)
		}
		b.Queue(sql, vals...)
	}
	return tx.SendBatch(ctx, b).Close()
}

// loadCustomerRows reads the stored rows of ids (those that exist).
func loadCustomerRows(ctx context.Context, tx pgx.Tx, table string, ids []string) (map[string]*customerRow, error) {
	return loadRows(ctx, tx, table, ids, func(id string, doc []byte, seq uint64, at time.Time) (*customerRow, error) {
		c, err := UnmarshalCustomer(doc)
		if err != nil {
			return nil, fmt.Errorf("customer %s: unreadable state_doc: %w", id, err)
		}
		return &customerRow{state: c, lastSeq: seq, lastAt: at}, nil
	})
}

// NewBulk implements Projection. Customers are few next to the events of
// their tenants, so a replay applies each batch as the live runner does,
// one transaction a batch, and skips the batches without customer events.
func (Customers) NewBulk(gen int) Bulk { return customersBulk{gen: gen} }

type customersBulk struct{ gen int }

func (b customersBulk) Load(ctx context.Context, conn *pgx.Conn, batch []Event) error {
	for _, e := range batch {
		if e.Envelope.Aggregate() == events.AggregateCustomer {
			return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return Customers{}.Apply(ctx, tx, b.gen, batch) })
		}
	}
	return nil
}
