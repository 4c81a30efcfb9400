package readmodel

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/internal/postgres"
	"github.com/tenancyhq/tenancy/internal/projection"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// CustomerFilter selects customers. Values of one field are alternatives;
// fields combine with AND. Deleted customers are never listed.
type CustomerFilter struct {
	// Query matches display and legal names, by substring or similarity;
	// results are then ranked by similarity.
	Query                string
	Kinds                []string
	VerificationStatuses []string
}

// CustomerPage is one page of customers. Each is as the read model holds
// it: without address, fiscal ids and contacts, which only the log keeps
// (read one customer from the log for them).
type CustomerPage struct {
	Items         []domain.Customer
	NextPageToken string
}

// ListCustomers returns a page of customers in a stable order: by id
// (creation order) or, with a query, by similarity then id. Page tokens
// work as ListTenants' do.
func (r *Reader) ListCustomers(ctx context.Context, f CustomerFilter, p Page) (CustomerPage, error) {
	q, score := customerQuery(f)
	items, next, err := listPage(ctx, r, "customers", "state_doc", q, score, p, scanCustomers, func(c domain.Customer) string { return c.ID })
	return CustomerPage{Items: items, NextPageToken: next}, err
}

// scanCustomers reads the customers rows holds and, withScore, the score
// that follows each.
func scanCustomers(rows pgx.Rows, withScore bool) ([]domain.Customer, []float32, error) {
	var items []domain.Customer
	var scores []float32
	for rows.Next() {
		var doc []byte
		var s float32
		dest := []any{&doc}
		if withScore {
			dest = append(dest, &s)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, nil, postgres.ReadErr(err)
		}
		c, err := projection.UnmarshalCustomer(doc)
		if err != nil {
			return nil, nil, fmt.Errorf("customer row: %w", err)
		}
		items = append(items, c)
		scores = append(scores, s)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, postgres.ReadErr(err)
	}
	return items, scores, nil
}

// customerQuery returns the conditions f sets and, when f has a query, the
// similarity score expression its results are ranked by ("" otherwise).
func customerQuery(f CustomerFilter) (q *query, score string) {
	q = &query{}
	q.add("NOT deleted")
	if len(f.Kinds) > 0 {
		q.add("kind = ANY(" + q.arg(f.Kinds) + ")")
	}
	if len(f.VerificationStatuses) > 0 {
		q.add("verification_status = ANY(" + q.arg(f.VerificationStatuses) + ")")
	}
	if f.Query != "" {
		qa := q.arg(f.Query)
		like := q.arg("%" + likeEscape(f.Query) + "%")
		q.add("(display_name ILIKE " + like + " OR legal_name ILIKE " + like + " OR display_name % " + qa + " OR legal_name % " + qa + ")")
		score = "GREATEST(similarity(display_name, " + qa + "), similarity(legal_name, " + qa + "))"
	}
	return q, score
}

// fiscalIndexColumns maps each fiscal id kind to the column of its blind
// index: the kind comes from callers, so only these names ever reach SQL.
var fiscalIndexColumns = map[string]string{"pan": "pan_idx", "tan": "tan_idx", "gstin": "gstin_idx"}

// CustomerByFiscalIndex returns the live customer whose fiscal id of kind
// (pan, tan or gstin) has the blind index (ErrNotFound when none). Fiscal
// ids are not unique across customers (a business may be two customers
// under one PAN); the oldest such customer is returned.
func (r *Reader) CustomerByFiscalIndex(ctx context.Context, kind, index string) (domain.Customer, error) {
	col, ok := fiscalIndexColumns[kind]
	if !ok {
		return domain.Customer{}, &domain.ValidationError{Fields: []domain.FieldError{{Field: "kind",
			Message: fmt.Sprintf("unknown fiscal id kind %q", kind), Allowed: domain.FiscalKinds}}}
	}
	if index == "" {
		return domain.Customer{}, ErrNotFound
	}
	var doc []byte
	err := r.pool.QueryRow(ctx, "SELECT state_doc FROM customers WHERE "+col+" = $1 AND NOT deleted ORDER BY id LIMIT 1", index).Scan(&doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return domain.Customer{}, ErrNotFound
	}
	if err != nil {
		return domain.Customer{}, postgres.ReadErr(err)
	}
	c, err := projection.UnmarshalCustomer(doc)
	if err != nil {
		return domain.Customer{}, fmt.Errorf("customer row: %w", err)
	}
	return c, nil
}

// OpenTenantsOfCustomer returns, in id order, the ids of the customer's
// tenants that are not deleted: a customer is deleted only when there are
// none, and the compliance reactor suspends these. It reads the tenants
// read model, so it is as recent as that (wait for a min_seq first to see
// a write). An id that is not a UUID names no customer: it has none.
func (r *Reader) OpenTenantsOfCustomer(ctx context.Context, customerID string) ([]string, error) {
	id, err := uuid.Parse(customerID)
	if err != nil {
		return nil, nil
	}
	rows, err := r.pool.Query(ctx, "SELECT id::text FROM tenants WHERE customer_id = $1::uuid AND state <> 'deleted' ORDER BY id", id.String())
	if err != nil {
		return nil, postgres.ReadErr(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return ids, postgres.ReadErr(err)
}

// customerUUID returns a customer id filter in the form PostgreSQL reads,
// refusing one that is not a UUID (it would otherwise reach PostgreSQL as a
// cast error, an unexpected failure).
func customerUUID(id string) (string, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return "", &domain.ValidationError{Fields: []domain.FieldError{{Field: "customer_id",
			Message: fmt.Sprintf("%q is not a customer id (a UUID)", id)}}}
	}
	return u.String(), nil
}

// CustomersPastGrace returns the ids of the live customers whose re-KYC
// grace period ended without a new verification: the compliance sweep
// holds their tenants suspended.
func (r *Reader) CustomersPastGrace(ctx context.Context) ([]string, error) {
	rows, err := r.pool.Query(ctx, `SELECT id::text FROM customers
		WHERE NOT deleted AND coalesce((state_doc->'Verification'->>'GraceExpired')::boolean, false) ORDER BY id`)
	if err != nil {
		return nil, postgres.ReadErr(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, postgres.ReadErr(err)
	}
	return ids, nil
}
