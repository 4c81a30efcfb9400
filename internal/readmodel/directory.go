package readmodel

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/internal/postgres"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// UserFilter selects users of one tenant. Fields combine with AND.
type UserFilter struct {
	// TenantID is the tenant whose users are listed: always set, a listing
	// never spans tenants.
	TenantID string
	// Query matches usernames, emails and full names by substring or
	// similarity; results are then ranked by similarity.
	Query   string
	Enabled *bool
	// OU keeps the members of that org unit.
	OU string
	// Roles must all be held.
	Roles []string
}

// UserPage is one page of a tenant's users.
type UserPage struct {
	Items         []domain.User
	NextPageToken string
}

// userColumns are what a listing reads of each user, in scanUsers' order.
const userColumns = `id::text, username, email, first_name, last_name, attributes, enabled, roles, break_glass, source, required_actions,
	version, created_at, updated_at`

// ListUsers returns a page of a tenant's users in a stable order: by id
// (creation order) or, with a query, by similarity then id.
func (r *Reader) ListUsers(ctx context.Context, f UserFilter, p Page) (UserPage, error) {
	q, score, err := userQuery(f)
	if err != nil {
		return UserPage{}, err
	}
	items, next, err := listPage(ctx, r, "directory_users", userColumns, q, score, p, scanUsers, func(u domain.User) string { return u.ID })
	return UserPage{Items: items, NextPageToken: next}, err
}

// userQuery returns the conditions f sets and, when f has a query, the
// similarity score expression its results are ranked by ("" otherwise).
func userQuery(f UserFilter) (q *query, score string, err error) {
	if _, err := uuid.Parse(f.TenantID); err != nil {
		return nil, "", fmt.Errorf("%w: no tenant %q", domain.ErrNotFound, f.TenantID)
	}
	q = &query{}
	q.add("tenant_id = " + q.arg(f.TenantID) + "::uuid")
	if f.Enabled != nil {
		q.add("enabled = " + q.arg(*f.Enabled))
	}
	if len(f.Roles) > 0 {
		q.add("roles @> " + q.arg(f.Roles) + "::text[]")
	}
	if f.OU != "" {
		if _, err := uuid.Parse(f.OU); err != nil {
			return nil, "", &domain.ValidationError{Fields: []domain.FieldError{{Field: "ou", Message: "must be the id of one of the tenant's org units"}}}
		}
		q.add("EXISTS (SELECT 1 FROM directory_memberships m WHERE m.tenant_id = directory_users.tenant_id AND m.user_id = directory_users.id AND m.ou_id = " +
			q.arg(f.OU) + "::uuid)")
	}
	if f.Query != "" {
		qa := q.arg(f.Query)
		like := q.arg("%" + likeEscape(f.Query) + "%")
		const name = "(first_name || ' ' || last_name)"
		q.add("(username ILIKE " + like + " OR email ILIKE " + like + " OR " + name + " ILIKE " + like +
			" OR username % " + qa + " OR email % " + qa + " OR " + name + " % " + qa + ")")
		score = "GREATEST(similarity(username, " + qa + "), similarity(email, " + qa + "), similarity(" + name + ", " + qa + "))"
	}
	return q, score, nil
}

// scanUsers reads the users rows holds and, withScore, the score that
// follows each.
func scanUsers(rows pgx.Rows, withScore bool) ([]domain.User, []float32, error) {
	var items []domain.User
	var scores []float32
	for rows.Next() {
		var u domain.User
		var attrs []byte
		var s float32
		dest := []any{&u.ID, &u.Username, &u.Email, &u.FirstName, &u.LastName, &attrs, &u.Enabled, &u.Roles, &u.BreakGlass, &u.Source,
			&u.RequiredActions, &u.Version, &u.CreatedAt, &u.UpdatedAt}
		if withScore {
			dest = append(dest, &s)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, nil, postgres.ReadErr(err)
		}
		if err := json.Unmarshal(attrs, &u.Attributes); err != nil {
			return nil, nil, fmt.Errorf("user %s: unreadable attributes: %w", u.ID, err)
		}
		items = append(items, u)
		scores = append(scores, s)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, postgres.ReadErr(err)
	}
	return items, scores, nil
}
