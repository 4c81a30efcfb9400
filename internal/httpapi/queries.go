package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/readmodel"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// ReadSequenceHeader carries the stream sequence the read model had reached
// when it answered.
const ReadSequenceHeader = "Tenancy-Read-Sequence"

func invalid(field, msg string, allowed ...string) error {
	return &domain.ValidationError{Fields: []domain.FieldError{{Field: field, Message: msg, Allowed: allowed}}}
}

// checkParams refuses query parameters a route does not know: a misspelt
// filter would otherwise silently widen the result.
func checkParams(c echo.Context, allowed ...string) error {
	for k := range c.QueryParams() {
		if !slices.Contains(allowed, k) {
			return invalid(k, "unknown query parameter", allowed...)
		}
	}
	return nil
}

// reads returns the queries, or an error if this API has no read side.
func (s *Server) reads() (*app.Reads, error) {
	if s.deps.Reads == nil {
		return nil, fmt.Errorf("%w: this API instance has no read model configured (DATABASE_URL)", domain.ErrUnavailable)
	}
	return s.deps.Reads, nil
}

// consistent waits, bounded, until projection has applied the request's
// min_seq, and sets the header saying how far it had got.
func (s *Server) consistent(c echo.Context, reads *app.Reads, projectionName string) error {
	minSeq, err := seqQuery(c, "min_seq", "must be a stream sequence: the Tenancy-Sequence header of a write")
	if err != nil {
		return err
	}
	reached, err := reads.Wait(c.Request().Context(), projectionName, minSeq)
	c.Response().Header().Set(ReadSequenceHeader, strconv.FormatUint(reached, 10))
	return err
}

var listParams = []string{"state", "plan", "region", "isolation", "label", "external_id", "customer_id", "q", "page_size", "page_token", "min_seq"}

// TenantList is a page of tenants.
type TenantList struct {
	Items         []TenantView `json:"items"`
	NextPageToken string       `json:"next_page_token"`
}

func pairs(values []string, field, example string) ([]readmodel.Pair, error) {
	var out []readmodel.Pair
	for _, v := range values {
		k, val, ok := strings.Cut(v, ":")
		if !ok || k == "" || val == "" {
			return nil, invalid(field, fmt.Sprintf("%q must look like %s", v, example))
		}
		out = append(out, readmodel.Pair{Key: k, Value: val})
	}
	return out, nil
}

func (s *Server) listTenants(c echo.Context) error {
	if err := checkParams(c, listParams...); err != nil {
		return err
	}
	qp := c.QueryParams()
	f := readmodel.TenantFilter{States: qp["state"], Plans: qp["plan"], Regions: qp["region"], Isolations: qp["isolation"], Query: strings.TrimSpace(c.QueryParam("q"))}
	var err error
	if f.CustomerID, err = customerIDParam(c); err != nil {
		return err
	}
	return s.listTenantsWhere(c, f)
}

// tenantPage answers a tenant listing filtered by f, which it checks,
// narrowed to what the caller may read.
func (s *Server) tenantPage(c echo.Context, f readmodel.TenantFilter) (TenantList, error) {
	reads, err := s.reads()
	if err != nil {
		return TenantList{}, err
	}
	qp := c.QueryParams()
	for _, st := range f.States {
		if _, err := domain.ParseState(st); err != nil {
			return TenantList{}, invalid("state", err.Error(), stateStrings()...)
		}
	}
	for _, iso := range f.Isolations {
		if _, err := domain.ParseIsolationMode(iso); err != nil {
			return TenantList{}, invalid("isolation", err.Error(), "shared", "dedicated", "hybrid")
		}
	}
	if len(f.Query) > 200 {
		return TenantList{}, invalid("q", "must be at most 200 characters")
	}
	if f.Labels, err = pairs(qp["label"], "label", "key:value"); err != nil {
		return TenantList{}, err
	}
	if f.ExternalIDs, err = pairs(qp["external_id"], "external_id", "system:id"); err != nil {
		return TenantList{}, err
	}
	p := principal(c)
	if !p.ReadsDirectory() {
		if !p.CanRead(p.TenantID) {
			return TenantList{}, fmt.Errorf("%w: listing tenants needs the %s role, or a tenant role for your own tenant", domain.ErrForbidden, auth.RolePlatformAdmin)
		}
		f.OnlyID = p.TenantID
	}
	size, err := pageSize(c)
	if err != nil {
		return TenantList{}, err
	}
	if err := s.consistent(c, reads, "tenants"); err != nil {
		return TenantList{}, err
	}
	page, err := reads.Tenants(c.Request().Context(), f, readmodel.Page{Size: size, Token: c.QueryParam("page_token")})
	if err != nil {
		return TenantList{}, err
	}
	out := TenantList{Items: make([]TenantView, 0, len(page.Items)), NextPageToken: page.NextPageToken}
	for _, t := range page.Items {
		out.Items = append(out.Items, ViewTenant(t.Tenant, brokenAt(t.BrokenSeq)))
	}
	return out, nil
}

// listTenantsWhere answers a tenant listing filtered by f.
func (s *Server) listTenantsWhere(c echo.Context, f readmodel.TenantFilter) error {
	out, err := s.tenantPage(c, f)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, out)
}

func stateStrings() []string {
	out := make([]string, len(domain.States))
	for i, st := range domain.States {
		out[i] = string(st)
	}
	return out
}

// readTenantFrom serves a lookup from the read model, hiding tenants the
// caller may not read.
func (s *Server) readTenantFrom(c echo.Context, what string, lookup func(ctx context.Context, r *app.Reads) (readmodel.Tenant, error)) error {
	if err := checkParams(c, "min_seq"); err != nil {
		return err
	}
	reads, err := s.reads()
	if err != nil {
		return err
	}
	if err := s.consistent(c, reads, "tenants"); err != nil {
		return err
	}
	t, err := lookup(c.Request().Context(), reads)
	if errors.Is(err, domain.ErrNotFound) || (err == nil && !principal(c).CanReadTenant(t.ID)) {
		return fmt.Errorf("no tenant with %s: %w", what, domain.ErrNotFound)
	}
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", etag(t.Version))
	return writeJSON(c, http.StatusOK, ViewTenant(t.Tenant, brokenAt(t.BrokenSeq)))
}

func (s *Server) tenantBySlug(c echo.Context) error {
	slug := c.Param("slug")
	return s.readTenantFrom(c, fmt.Sprintf("slug %q", slug), func(ctx context.Context, r *app.Reads) (readmodel.Tenant, error) {
		return r.TenantBySlug(ctx, slug)
	})
}

func (s *Server) tenantByExternalID(c echo.Context) error {
	system, err := url.PathUnescape(c.Param("system"))
	if err != nil {
		return invalid("system", "is not a valid path segment")
	}
	id, err := url.PathUnescape(c.Param("id"))
	if err != nil {
		return invalid("id", "is not a valid path segment")
	}
	return s.readTenantFrom(c, fmt.Sprintf("external id %s:%s", system, id), func(ctx context.Context, r *app.Reads) (readmodel.Tenant, error) {
		return r.TenantByExternalID(ctx, system, id)
	})
}

// AuditEntryView is one entry of the audit trail.
type AuditEntryView struct {
	Seq           uint64    `json:"seq"`
	EventID       string    `json:"event_id"`
	Time          time.Time `json:"time"`
	TenantID      string    `json:"tenant_id"`
	Aggregate     string    `json:"aggregate"`
	AggregateID   string    `json:"aggregate_id"`
	Type          string    `json:"type"`
	Actor         string    `json:"actor"`
	CorrelationID string    `json:"correlation_id,omitempty"`
	CausationID   string    `json:"causation_id,omitempty"`
	Summary       string    `json:"summary"`
	// EventURL is where the signed event itself can be fetched.
	EventURL string `json:"event_url"`
}

// AuditList is a page of the audit trail.
type AuditList struct {
	Items         []AuditEntryView `json:"items"`
	NextPageToken string           `json:"next_page_token"`
}

func timeParam(c echo.Context, name string) (time.Time, error) {
	raw := c.QueryParam(name)
	if raw == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		return time.Time{}, invalid(name, "must be an RFC 3339 time like 2026-11-01T00:00:00Z")
	}
	return t, nil
}

// auditFilter reads the filters every audit listing has.
func auditFilter(c echo.Context) (readmodel.AuditFilter, error) {
	f := readmodel.AuditFilter{Actor: c.QueryParam("actor"), Type: c.QueryParam("type")}
	var err error
	if f.From, err = timeParam(c, "from"); err != nil {
		return f, err
	}
	f.To, err = timeParam(c, "to")
	return f, err
}

func (s *Server) audit(c echo.Context) error {
	if err := checkParams(c, "tenant_id", "actor", "type", "from", "to", "page_size", "page_token", "min_seq"); err != nil {
		return err
	}
	f, err := auditFilter(c)
	if err != nil {
		return err
	}
	f.TenantID = c.QueryParam("tenant_id")
	if f.TenantID != "" && !app.ValidID(f.TenantID) {
		return invalid("tenant_id", "must be a tenant id")
	}
	p := principal(c)
	if !p.IsPlatformAdmin() {
		switch {
		case !p.CanRead(p.TenantID):
			return fmt.Errorf("%w: the audit trail needs the %s role, or a tenant role for your own tenant", domain.ErrForbidden, auth.RolePlatformAdmin)
		case f.TenantID != "" && f.TenantID != p.TenantID:
			return fmt.Errorf("no tenant with id %q: %w", f.TenantID, domain.ErrNotFound)
		}
		f.TenantID = p.TenantID
	}
	return s.auditPage(c, f)
}

// auditPage answers a page of the audit trail filtered by f.
func (s *Server) auditPage(c echo.Context, f readmodel.AuditFilter) error {
	reads, err := s.reads()
	if err != nil {
		return err
	}
	size, err := pageSize(c)
	if err != nil {
		return err
	}
	if err := s.consistent(c, reads, "audit_log"); err != nil {
		return err
	}
	page, err := reads.Audit(c.Request().Context(), f, readmodel.Page{Size: size, Token: c.QueryParam("page_token")})
	if err != nil {
		return err
	}
	out := AuditList{Items: make([]AuditEntryView, 0, len(page.Items)), NextPageToken: page.NextPageToken}
	for _, e := range page.Items {
		out.Items = append(out.Items, AuditEntryView{
			Seq: e.Seq, EventID: e.EventID, Time: e.Time, TenantID: e.TenantID, Aggregate: e.Aggregate, AggregateID: e.AggregateID,
			Type: e.Type, Actor: e.Actor, CorrelationID: e.CorrelationID, CausationID: e.CausationID, Summary: e.Summary,
			EventURL: app.EventURL(e.TenantID, e.Seq),
		})
	}
	return writeJSON(c, http.StatusOK, out)
}

// writeEvent writes one stored event exactly as signed.
func writeEvent(c echo.Context, raw []byte) error {
	c.Response().Header().Set(echo.HeaderContentType, "application/cloudevents+json")
	c.Response().WriteHeader(http.StatusOK)
	_, err := c.Response().Write(raw)
	return err
}

func (s *Server) tenantEvent(c echo.Context) error {
	if err := s.eventsReadable(c); err != nil {
		return err
	}
	seq, err := seqParam(c, "seq", "event at")
	if err != nil {
		return err
	}
	raw, err := s.deps.Tenants.Event(c.Request().Context(), seq, events.TenantSubjects(c.Param("id")))
	if err != nil {
		return err
	}
	return writeEvent(c, raw)
}

func (s *Server) anyEvent(c echo.Context) error {
	seq, err := seqParam(c, "seq", "event at")
	if err != nil {
		return err
	}
	raw, err := s.deps.Tenants.Event(c.Request().Context(), seq, events.AllSubjects)
	if err != nil {
		return err
	}
	return writeEvent(c, raw)
}

// ProjectionList lists the projections' statuses.
type ProjectionList struct {
	Items         []json.RawMessage `json:"items"`
	NextPageToken string            `json:"next_page_token"`
}

func (s *Server) projections(c echo.Context) error {
	if s.deps.Projections == nil {
		return fmt.Errorf("%w: this API instance has no read model configured (DATABASE_URL)", domain.ErrUnavailable)
	}
	items, err := s.deps.Projections.Status(c.Request().Context())
	if err != nil {
		return err
	}
	out := ProjectionList{Items: make([]json.RawMessage, 0, len(items))}
	for _, it := range items {
		b, err := json.Marshal(it)
		if err != nil {
			return err
		}
		out.Items = append(out.Items, b)
	}
	return writeJSON(c, http.StatusOK, out)
}

// brokenAt is the read model's integrity mark as an error (nil for 0).
func brokenAt(seq uint64) *domain.IntegrityError {
	if seq == 0 {
		return nil
	}
	return &domain.IntegrityError{Seq: seq}
}
