package readmodel

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/internal/postgres"
	"github.com/tenancyhq/tenancy/internal/projection"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// Reader answers queries from the read models.
type Reader struct {
	pool *pgxpool.Pool
}

// NewReader returns a reader on pool.
func NewReader(pool *pgxpool.Pool) *Reader { return &Reader{pool: pool} }

// Pool returns the reader's pool.
func (r *Reader) Pool() *pgxpool.Pool { return r.pool }

// TenantFilter selects tenants. Values of one field are alternatives; fields
// combine with AND.
type TenantFilter struct {
	States     []string
	Plans      []string
	Regions    []string
	Isolations []string
	// Labels and ExternalIDs must all match.
	Labels      []Pair
	ExternalIDs []Pair
	Query       string
	// OnlyID restricts the result to one tenant (tenant-scoped callers).
	OnlyID string
	// CustomerID restricts the result to the tenants that customer owns.
	CustomerID string
}

// Pair is a key and its value.
type Pair struct{ Key, Value string }

// Page bounds a listing.
type Page struct {
	Size  int
	Token string
}

// ErrBadToken reports a page token this API did not issue.
var ErrBadToken error = &domain.ValidationError{Fields: []domain.FieldError{{Field: "page_token",
	Message: "is not a token this API issued; pass next_page_token from the previous page"}}}

// cursor is where a page of a listing ordered by id, or by a similarity
// score then id, ended (tenants and customers share it).
type cursor struct {
	ID    string   `json:"i"`
	Score *float64 `json:"s,omitempty"`
}

func encodeCursor(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(tok string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || json.Unmarshal(b, v) != nil {
		return ErrBadToken
	}
	return nil
}

// query accumulates a WHERE clause and its arguments.
type query struct {
	where []string
	args  []any
}

func (q *query) arg(v any) string {
	q.args = append(q.args, v)
	return "$" + strconv.Itoa(len(q.args))
}

func (q *query) add(cond string) { q.where = append(q.where, cond) }

func (q *query) clause() string {
	if len(q.where) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(q.where, " AND ")
}

func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// TenantPage is one page of tenants.
type TenantPage struct {
	Items         []Tenant
	NextPageToken string
}

// Tenant is a tenant as the directory holds it.
type Tenant struct {
	domain.Tenant
	// BrokenSeq is the stream sequence of a quarantined message on the
	// tenant's subject, unresolved (0 while its chain is intact).
	BrokenSeq uint64
}

// ListTenants returns a page of tenants in a stable order: by id (creation
// order) or, with a query, by similarity then id.
func (r *Reader) ListTenants(ctx context.Context, f TenantFilter, p Page) (TenantPage, error) {
	q, score, err := tenantQuery(f)
	if err != nil {
		return TenantPage{}, err
	}
	items, next, err := listPage(ctx, r, "tenants", "state_doc, coalesce(integrity_broken_seq, 0)", q, score, p, scanTenants,
		func(t Tenant) string { return t.ID })
	return TenantPage{Items: items, NextPageToken: next}, err
}

// listPage runs a listing of table: the rows q selects after p's token, in
// the order score gives (by id when ""), p.Size of them, each read by scan
// from cols (and the score). It returns them and the next page's token.
func listPage[T any](ctx context.Context, r *Reader, table, cols string, q *query, score string, p Page,
	scan func(pgx.Rows, bool) ([]T, []float32, error), id func(T) string) ([]T, string, error) {
	if p.Token != "" {
		if err := q.after(p.Token, score); err != nil {
			return nil, "", err
		}
	}
	order := "id"
	if score != "" {
		cols += ", " + score
		order = score + " DESC, id"
	}
	sql := "SELECT " + cols + " FROM " + table + q.clause() + " ORDER BY " + order + " LIMIT " + strconv.Itoa(p.Size+1)
	rows, err := r.pool.Query(ctx, sql, q.args...)
	if err != nil {
		return nil, "", postgres.ReadErr(err)
	}
	defer rows.Close()
	items, scores, err := scan(rows, score != "")
	if err != nil || len(items) <= p.Size {
		return items, "", err
	}
	items = items[:p.Size]
	c := cursor{ID: id(items[p.Size-1])}
	if score != "" {
		v := float64(scores[p.Size-1])
		c.Score = &v
	}
	return items, encodeCursor(c), nil
}

// tenantQuery returns the conditions f sets and, when f has a query, the
// similarity score expression its results are ranked by ("" otherwise).
func tenantQuery(f TenantFilter) (q *query, score string, err error) {
	q = &query{}
	if len(f.States) > 0 {
		q.add("state = ANY(" + q.arg(f.States) + ")")
	} else {
		q.add("state <> 'deleted'")
	}
	if len(f.Plans) > 0 {
		q.add("plan = ANY(" + q.arg(f.Plans) + ")")
	}
	if len(f.Isolations) > 0 {
		q.add("isolation = ANY(" + q.arg(f.Isolations) + ")")
	}
	if len(f.Regions) > 0 {
		q.add("regions && " + q.arg(f.Regions) + "::text[]")
	}
	for _, l := range f.Labels {
		b, _ := json.Marshal(map[string]string{l.Key: l.Value})
		q.add("labels @> " + q.arg(string(b)) + "::jsonb")
	}
	for _, x := range f.ExternalIDs {
		b, _ := json.Marshal(map[string]string{x.Key: x.Value})
		q.add("external_ids @> " + q.arg(string(b)) + "::jsonb")
	}
	if f.OnlyID != "" {
		q.add("id = " + q.arg(f.OnlyID) + "::uuid")
	}
	if f.CustomerID != "" {
		id, err := customerUUID(f.CustomerID)
		if err != nil {
			return nil, "", err
		}
		q.add("customer_id = " + q.arg(id) + "::uuid")
	}
	if f.Query != "" {
		qa := q.arg(f.Query)
		like := q.arg("%" + likeEscape(f.Query) + "%")
		q.add("(display_name ILIKE " + like + " OR slug ILIKE " + like + " OR display_name % " + qa + " OR slug % " + qa + ")")
		score = "GREATEST(similarity(display_name, " + qa + "), similarity(slug, " + qa + "))"
	}
	return q, score, nil
}

// after restricts q to the rows after the cursor in token, in the order
// score (or, when "", the id) gives. A token from a listing with a query is
// refused without one, and the other way round.
func (q *query) after(token, score string) error {
	var c cursor
	if err := decodeCursor(token, &c); err != nil {
		return err
	}
	// A token is the caller's to send back unchanged, but nothing stops it
	// being edited: its contents are checked before they reach SQL.
	if _, err := uuid.Parse(c.ID); err != nil || (c.Score != nil && (math.IsNaN(*c.Score) || math.IsInf(*c.Score, 0))) {
		return ErrBadToken
	}
	if (c.Score != nil) != (score != "") {
		return ErrBadToken
	}
	id := q.arg(c.ID) + "::uuid"
	if c.Score == nil {
		q.add("id > " + id)
	} else {
		s := q.arg(*c.Score) + "::real"
		q.add("(" + score + " < " + s + " OR (" + score + " = " + s + " AND id > " + id + "))")
	}
	return nil
}

// scanTenants reads the tenants rows holds and, withScore, the score that
// follows each.
func scanTenants(rows pgx.Rows, withScore bool) ([]Tenant, []float32, error) {
	var items []Tenant
	var scores []float32
	for rows.Next() {
		var doc []byte
		var s float32
		var broken int64
		dest := []any{&doc, &broken}
		if withScore {
			dest = append(dest, &s)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, nil, postgres.ReadErr(err)
		}
		t, err := projection.UnmarshalTenant(doc)
		if err != nil {
			return nil, nil, fmt.Errorf("tenant row: %w", err)
		}
		items = append(items, Tenant{Tenant: t, BrokenSeq: uint64(broken)})
		scores = append(scores, s)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, postgres.ReadErr(err)
	}
	return items, scores, nil
}

// ErrNotFound reports no matching row.
var ErrNotFound = fmt.Errorf("no matching row: %w", domain.ErrNotFound)

func (r *Reader) oneTenant(ctx context.Context, where string, args ...any) (Tenant, error) {
	var doc []byte
	var broken int64
	err := r.pool.QueryRow(ctx, "SELECT state_doc, coalesce(integrity_broken_seq, 0) FROM tenants WHERE "+where+" ORDER BY (state = 'deleted'), updated_at DESC LIMIT 1", args...).Scan(&doc, &broken)
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, ErrNotFound
	}
	if err != nil {
		return Tenant{}, postgres.ReadErr(err)
	}
	t, err := projection.UnmarshalTenant(doc)
	if err != nil {
		return Tenant{}, fmt.Errorf("tenant row: %w", err)
	}
	return Tenant{Tenant: t, BrokenSeq: uint64(broken)}, nil
}

// TenantBySlug returns the tenant holding slug (a live one before a deleted
// one that once held it).
func (r *Reader) TenantBySlug(ctx context.Context, slug string) (Tenant, error) {
	return r.oneTenant(ctx, "slug = $1", slug)
}

// TenantByExternalID returns the tenant an external system knows by id.
func (r *Reader) TenantByExternalID(ctx context.Context, system, id string) (Tenant, error) {
	b, _ := json.Marshal(map[string]string{system: id})
	return r.oneTenant(ctx, "external_ids @> $1::jsonb AND state <> 'deleted'", string(b))
}

// AuditFilter selects audit entries.
type AuditFilter struct {
	TenantID string
	Actor    string
	// Type is an exact event type or a prefix ending in "*".
	Type string
	From time.Time
	To   time.Time
	// OrgUnit, when set, keeps the entries about that org unit and the
	// units that were under it at the time (the units themselves and their
	// memberships) alone.
	OrgUnit string
}

// AuditEntry is one row of the audit trail.
type AuditEntry struct {
	Seq           uint64
	EventID       string
	Time          time.Time
	TenantID      string
	Aggregate     string
	AggregateID   string
	Type          string
	Actor         string
	CorrelationID string
	CausationID   string
	Summary       string
}

// AuditPage is one page of the audit trail, newest first.
type AuditPage struct {
	Items         []AuditEntry
	NextPageToken string
}

type auditCursor struct {
	Seq uint64 `json:"q"`
}

// Audit returns a page of the audit trail, newest first.
func (r *Reader) Audit(ctx context.Context, f AuditFilter, p Page) (AuditPage, error) {
	q := &query{}
	if f.TenantID != "" {
		q.add("tenant_id = " + q.arg(f.TenantID) + "::uuid")
	}
	if f.Actor != "" {
		q.add("actor = " + q.arg(f.Actor))
	}
	if prefix, ok := strings.CutSuffix(f.Type, "*"); ok {
		q.add("type LIKE " + q.arg(likeEscape(prefix)+"%"))
	} else if f.Type != "" {
		q.add("type = " + q.arg(f.Type))
	}
	if f.OrgUnit != "" {
		if _, err := uuid.Parse(f.OrgUnit); err != nil {
			return AuditPage{}, fmt.Errorf("%w: no org unit %q", domain.ErrNotFound, f.OrgUnit)
		}
		q.add("org_unit_path @> ARRAY[" + q.arg(f.OrgUnit) + "::uuid]")
	}
	if !f.From.IsZero() {
		q.add("time >= " + q.arg(f.From))
	}
	if !f.To.IsZero() {
		q.add("time < " + q.arg(f.To))
	}
	if p.Token != "" {
		var c auditCursor
		if err := decodeCursor(p.Token, &c); err != nil || c.Seq == 0 || c.Seq > math.MaxInt64 {
			return AuditPage{}, ErrBadToken
		}
		q.add("seq < " + q.arg(int64(c.Seq)))
	}
	sql := `SELECT seq, event_id, time, tenant_id::text, aggregate, aggregate_id, type, actor, coalesce(correlation_id, ''),
		coalesce(causation_id, ''), summary FROM audit_log` + q.clause() + " ORDER BY seq DESC LIMIT " + strconv.Itoa(p.Size+1)
	rows, err := r.pool.Query(ctx, sql, q.args...)
	if err != nil {
		return AuditPage{}, postgres.ReadErr(err)
	}
	defer rows.Close()
	var out AuditPage
	for rows.Next() {
		var e AuditEntry
		var seq int64
		if err := rows.Scan(&seq, &e.EventID, &e.Time, &e.TenantID, &e.Aggregate, &e.AggregateID, &e.Type, &e.Actor, &e.CorrelationID, &e.CausationID, &e.Summary); err != nil {
			return AuditPage{}, postgres.ReadErr(err)
		}
		e.Seq = uint64(seq)
		out.Items = append(out.Items, e)
	}
	if err := rows.Err(); err != nil {
		return AuditPage{}, postgres.ReadErr(err)
	}
	if len(out.Items) > p.Size {
		out.Items = out.Items[:p.Size]
		out.NextPageToken = encodeCursor(auditCursor{Seq: out.Items[p.Size-1].Seq})
	}
	return out, nil
}

// TenantIDsInStates returns a function listing the ids of the tenants in
// the given states (for periodic reconciliation).
func (r *Reader) TenantIDsInStates(states ...string) func(context.Context) ([]string, error) {
	return func(ctx context.Context) ([]string, error) {
		rows, err := r.pool.Query(ctx, "SELECT id::text FROM tenants WHERE state = ANY($1) ORDER BY id", states)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, pgx.RowTo[string])
	}
}
