package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// SequenceHeader carries the stream sequence a write reached (a consistency
// token for reads).
const SequenceHeader = "Tenancy-Sequence"

// TenantView is a tenant as the API shows it.
type TenantView struct {
	ID                 string            `json:"id"`
	Slug               string            `json:"slug"`
	DisplayName        string            `json:"display_name"`
	State              string            `json:"state"`
	Version            int64             `json:"version"`
	Plan               string            `json:"plan"`
	Regions            domain.Regions    `json:"regions"`
	Isolation          string            `json:"isolation"`
	Contacts           []events.Contact  `json:"contacts"`
	ExternalIDs        map[string]string `json:"external_ids"`
	Labels             map[string]string `json:"labels"`
	CustomerRef        *string           `json:"customer_ref"`
	Customer           *TenantCustomer   `json:"customer"`
	PlatformRole       string            `json:"platform_role,omitempty"`
	Realm              *RealmView        `json:"realm,omitempty"`
	CreatedAt          time.Time         `json:"created_at"`
	UpdatedAt          time.Time         `json:"updated_at"`
	ArchivedAt         *time.Time        `json:"archived_at,omitempty"`
	DeletedAt          *time.Time        `json:"deleted_at,omitempty"`
	Suspension         *SuspensionView   `json:"suspension"`
	Holds              []HoldView        `json:"holds"`
	Activation         *ActivationView   `json:"activation"`
	Provisioning       *ProvisioningView `json:"provisioning"`
	PersonalDataErased bool              `json:"personal_data_erased"`
	AllowedActions     []string          `json:"allowed_actions"`
	Integrity          IntegrityView     `json:"integrity"`
}

// IntegrityView says whether the tenant's hash chain is intact. A broken
// one shows the tenant as it stood at its last valid event, and names the
// message that broke it.
type IntegrityView struct {
	// Status is "ok" or "broken".
	Status    string `json:"status"`
	StreamSeq uint64 `json:"stream_seq,omitempty"`
	Violation string `json:"violation,omitempty"`
}

func viewIntegrity(broken *domain.IntegrityError) IntegrityView {
	if broken == nil {
		return IntegrityView{Status: "ok"}
	}
	return IntegrityView{Status: "broken", StreamSeq: broken.Seq, Violation: broken.Violation}
}

// TenantCustomer is the customer that owns a tenant, as the tenant view
// shows it (null: none yet). GET of a single tenant adds the customer's
// name and verification; command answers and lists carry the id only.
type TenantCustomer struct {
	ID           string `json:"id"`
	DisplayName  string `json:"display_name,omitempty"`
	Kind         string `json:"kind,omitempty"`
	Verification string `json:"verification_status,omitempty"`
}

// HoldView is one reason a suspended tenant stays suspended.
type HoldView struct {
	Reason string    `json:"reason"`
	Note   string    `json:"note,omitempty"`
	Since  time.Time `json:"since"`
	By     string    `json:"placed_by,omitempty"`
}

// RealmView is where a tenant's identity lives when it is not a realm of
// its own: an organization in the shared tenant's realm.
type RealmView struct {
	Mode         string `json:"mode"`
	Realm        string `json:"realm"`
	Organization string `json:"organization,omitempty"`
}

// SuspensionView says why a tenant is suspended.
type SuspensionView struct {
	Reason string    `json:"reason"`
	Note   string    `json:"note,omitempty"`
	Since  time.Time `json:"since"`
}

// ActivationView is what was decided at activation.
type ActivationView struct {
	Placement   events.Placement     `json:"placement"`
	Features    []string             `json:"features"`
	Quotas      map[string]int64     `json:"quotas"`
	Policy      []events.PolicyCheck `json:"policy"`
	Admin       *events.Admin        `json:"admin,omitempty"`
	RequestedAt time.Time            `json:"requested_at"`
	ActivatedAt *time.Time           `json:"activated_at,omitempty"`
}

// ProvisioningView is the state of the tenant's latest saga.
type ProvisioningView struct {
	Saga        string            `json:"saga"`
	SagaID      string            `json:"saga_id"`
	Status      string            `json:"status"`
	Steps       []StepView        `json:"steps"`
	FailedStep  string            `json:"failed_step,omitempty"`
	LastError   string            `json:"last_error,omitempty"`
	StartedAt   time.Time         `json:"started_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
	ExternalIDs map[string]string `json:"external_ids"`
	Repairs     int               `json:"drift_repairs"`
}

// StepView is one saga step's latest outcome.
type StepView struct {
	Name       string    `json:"name"`
	Outcome    string    `json:"outcome"`
	Attempt    int       `json:"attempt"`
	Detail     string    `json:"detail,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func nonNilMap[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return m
}

// ViewTenant renders a tenant; broken says where its chain breaks (nil
// when intact).
func ViewTenant(t domain.Tenant, broken *domain.IntegrityError) TenantView {
	v := TenantView{
		ID: t.ID, Slug: t.Slug, DisplayName: t.DisplayName, State: string(t.State), Version: t.Version,
		Plan: t.Plan, Regions: t.Regions, Isolation: string(t.Isolation),
		Contacts: t.Contacts, ExternalIDs: nonNilMap(t.ExternalIDs), Labels: nonNilMap(t.Labels),
		CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, ArchivedAt: optTime(t.ArchivedAt), DeletedAt: optTime(t.DeletedAt),
		PersonalDataErased: t.PIIErased, AllowedActions: domain.Actions(t.State), Integrity: viewIntegrity(broken),
	}
	if v.Contacts == nil {
		v.Contacts = []events.Contact{}
	}
	if v.Regions.Allowed == nil {
		v.Regions.Allowed = []string{}
	}
	if v.AllowedActions == nil {
		v.AllowedActions = []string{}
	}
	if t.CustomerRef != "" {
		ref := t.CustomerRef
		v.CustomerRef = &ref
	}
	if s := t.Suspension; s != nil && (t.State == domain.StateSuspended || t.State == domain.StateArchived) {
		v.Suspension = &SuspensionView{Reason: string(s.Reason), Note: s.Note, Since: s.Since}
	}
	v.Holds = []HoldView{}
	for _, h := range t.Holds {
		v.Holds = append(v.Holds, HoldView{Reason: string(h.Reason), Note: h.Note, Since: h.Since, By: h.By})
	}
	if t.CustomerID != "" {
		v.Customer = &TenantCustomer{ID: t.CustomerID}
	}
	v.PlatformRole = t.Root
	if r := t.Realm; r != nil {
		v.Realm = &RealmView{Mode: r.Mode, Realm: r.Realm, Organization: r.Organization}
	}
	if a := t.Activation; a != nil {
		v.Activation = &ActivationView{
			Placement: a.Placement, Features: a.Features, Quotas: nonNilMap(a.Quotas), Policy: a.Policy,
			Admin: a.Admin, RequestedAt: a.RequestedAt, ActivatedAt: optTime(a.ActivatedAt),
		}
	}
	if p := t.Provisioning; p.SagaID != "" {
		pv := &ProvisioningView{
			Saga: p.Saga, SagaID: p.SagaID, Status: string(p.Status), FailedStep: p.FailedStep, LastError: p.LastError,
			StartedAt: p.StartedAt, UpdatedAt: p.UpdatedAt, ExternalIDs: nonNilMap(p.ExternalIDs), Repairs: p.Repairs,
			Steps: []StepView{},
		}
		for _, st := range p.Steps {
			pv.Steps = append(pv.Steps, StepView{Name: st.Name, Outcome: st.Outcome, Attempt: st.Attempt, Detail: st.Detail, StartedAt: st.StartedAt, FinishedAt: st.FinishedAt})
		}
		v.Provisioning = pv
	}
	return v
}

// writeTenant writes a command's or a read's tenant with its ETag and
// consistency token.
func (s *Server) writeTenant(c echo.Context, status int, t domain.Tenant, seq uint64) error {
	h := c.Response().Header()
	h.Set("ETag", etag(t.Version))
	h.Set(SequenceHeader, strconv.FormatUint(seq, 10))
	return writeJSON(c, status, ViewTenant(t, s.deps.Tenants.Integrity(t.ID)))
}

func (s *Server) meta(c echo.Context) (command.Meta, error) {
	v, err := ifMatch(c)
	if err != nil {
		return command.Meta{}, err
	}
	meta := actorMeta(c)
	meta.IfVersion = v
	return meta, nil
}

// actorMeta is the metadata of a command that takes no If-Match (creating
// or requesting something rather than changing a versioned resource).
func actorMeta(c echo.Context) command.Meta {
	return command.Meta{Actor: principal(c).Subject, CorrelationID: requestID(c)}
}

// CreateTenantRequest is the body of POST /v1/tenants.
type CreateTenantRequest struct {
	Slug        string            `json:"slug"`
	DisplayName string            `json:"display_name"`
	Plan        string            `json:"plan"`
	Regions     *domain.Regions   `json:"regions"`
	Isolation   string            `json:"isolation"`
	Contacts    []events.Contact  `json:"contacts"`
	ExternalIDs map[string]string `json:"external_ids"`
	Labels      map[string]string `json:"labels"`
	CustomerRef string            `json:"customer_ref"`
	CustomerID  string            `json:"customer_id"`
}

func (s *Server) createTenant(c echo.Context) error {
	req, err := bindJSON[CreateTenantRequest](s, c)
	if err != nil {
		return err
	}
	cmd := domain.CreateTenant{
		ID:   idempotentID(c),
		Slug: req.Slug, DisplayName: req.DisplayName, Plan: req.Plan, Isolation: req.Isolation,
		Contacts: req.Contacts, ExternalIDs: req.ExternalIDs, Labels: req.Labels, CustomerRef: req.CustomerRef, CustomerID: req.CustomerID,
	}
	if req.Regions != nil {
		cmd.Regions = *req.Regions
	}
	res, err := s.deps.Tenants.Create(c.Request().Context(), cmd, actorMeta(c))
	if err != nil {
		return err
	}
	withTenant(c, res.State.ID)
	c.Response().Header().Set(echo.HeaderLocation, "/v1/tenants/"+res.State.ID)
	return s.writeTenant(c, http.StatusCreated, res.State, res.Seq)
}

// readableTenant loads a tenant the caller may read; others' tenants look
// like missing ones so that their existence does not leak.
func (s *Server) readableTenant(c echo.Context) (domain.Tenant, uint64, error) {
	id := c.Param("id")
	p := principal(c)
	if !p.CanReadTenant(id) {
		return domain.Tenant{}, 0, fmt.Errorf("no tenant with id %q: %w", id, domain.ErrNotFound)
	}
	return s.deps.Tenants.Get(c.Request().Context(), id)
}

// getTenant reads one tenant. Its view adds the customer's name and
// verification to the customer's id (a read of the customer's log), which
// command answers and lists leave out: they stay one aggregate's work.
func (s *Server) getTenant(c echo.Context) error {
	t, seq, err := s.readableTenant(c)
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", etag(t.Version))
	c.Response().Header().Set(SequenceHeader, strconv.FormatUint(seq, 10))
	v := ViewTenant(t, s.deps.Tenants.Integrity(t.ID))
	if v.Customer != nil && s.deps.Customers != nil {
		// A customer that cannot be read now still leaves its id.
		if cu, _, err := s.deps.Customers.Get(c.Request().Context(), t.CustomerID); err == nil {
			v.Customer.DisplayName, v.Customer.Kind, v.Customer.Verification = cu.DisplayName, cu.Kind, cu.Verification.Status
		}
	}
	return writeJSON(c, http.StatusOK, v)
}

// readOnlyMembers cannot be patched.
var readOnlyMembers = map[string]string{
	"id": "is immutable", "slug": "is immutable; create a new tenant to use another slug",
	"state": "changes only through the lifecycle actions (activate, suspend, ...)", "version": "is maintained by the server",
	"created_at": "is maintained by the server", "updated_at": "is maintained by the server",
	"archived_at": "is maintained by the server", "deleted_at": "is maintained by the server",
	"suspension": "changes only through suspend and resume", "activation": "changes only through activate",
	"provisioning": "is maintained by the provisioner", "personal_data_erased": "is maintained by the server",
	"allowed_actions": "is derived from the state", "holds": "change only through suspend and resume",
	"customer": "set customer_id to attach the tenant to a customer", "platform_role": "is set by bootstrap",
	"realm": "is decided at activation from the customer's realm_mode", "integrity": "is derived from the log",
}

// parsePatch turns a JSON merge patch document into an update command.
func parsePatch(body []byte) (domain.UpdateTenant, error) {
	var cmd domain.UpdateTenant
	p, err := parseMergePatch(body)
	if err != nil {
		return cmd, err
	}
	p.each(readOnlyMembers, func(key string, raw json.RawMessage) {
		switch key {
		case "display_name":
			cmd.DisplayName = p.str(key, raw, false)
		case "plan":
			cmd.Plan = p.str(key, raw, false)
		case "isolation":
			cmd.Isolation = p.str(key, raw, false)
		case "customer_ref":
			cmd.CustomerRef = p.str(key, raw, true)
		case "customer_id":
			cmd.CustomerID = p.str(key, raw, true)
		case "labels":
			cmd.Labels = p.mapPatch(key, raw)
		case "external_ids":
			cmd.ExternalIDs = p.mapPatch(key, raw)
		case "contacts":
			contacts := []events.Contact{}
			if isNull(raw) || p.strictly(key, raw, &contacts, "must be an array of {role, name, email, phone}") {
				cmd.Contacts = &contacts
			}
		case "regions":
			cmd.Regions = regionsPatch(p, raw)
		default:
			p.unknown(key, "a tenant")
		}
	})
	return cmd, p.err()
}

// regionsPatch reads the regions member of a tenant patch.
func regionsPatch(p *mergePatch, raw json.RawMessage) *domain.RegionsPatch {
	if isNull(raw) {
		p.bad("regions", "cannot be removed; a tenant always has a residency")
		return nil
	}
	var r map[string]json.RawMessage
	if err := json.Unmarshal(raw, &r); err != nil {
		p.bad("regions", "must be an object with allowed and preferred")
		return nil
	}
	rp := &domain.RegionsPatch{}
	for _, rk := range slices.Sorted(maps.Keys(r)) {
		switch rk {
		case "allowed":
			rp.Allowed = p.strings("regions.allowed", r[rk], "must be an array of region codes")
		case "preferred":
			rp.Preferred = p.str("regions.preferred", r[rk], false)
		default:
			p.bad("regions."+rk, "unknown field")
		}
	}
	return rp
}

func (s *Server) patchTenant(c echo.Context) error {
	body, err := s.readBody(c, "application/merge-patch+json", echo.MIMEApplicationJSON)
	if err != nil {
		return err
	}
	cmd, err := parsePatch(body)
	if err != nil {
		return err
	}
	return s.run(c, cmd, http.StatusOK)
}

func (s *Server) run(c echo.Context, cmd domain.TenantCommand, status int) error {
	return execute(s, c, s.deps.Tenants.Do, cmd, s.writeTenant, status)
}

// execute runs cmd on the aggregate the path's id names, honouring the
// request's If-Match, and writes the state it led to with write.
func execute[S domain.Aggregate, C any](s *Server, c echo.Context, do func(context.Context, string, C, command.Meta) (command.Result[S], error),
	cmd C, write func(echo.Context, int, S, uint64) error, status int) error {
	meta, err := s.meta(c)
	if err != nil {
		return err
	}
	res, err := do(c.Request().Context(), c.Param("id"), cmd, meta)
	if err != nil {
		return err
	}
	return write(c, status, res.State, res.Seq)
}

func (s *Server) deleteTenant(c echo.Context) error {
	return s.run(c, domain.Delete{Confirm: c.QueryParam("confirm")}, http.StatusOK)
}

// ActivateRequest is the optional body of POST .../activate.
type ActivateRequest struct {
	Admin *events.Admin `json:"admin"`
}

// SuspendRequest is the body of POST .../suspend.
type SuspendRequest struct {
	Reason string `json:"reason"`
	Note   string `json:"note"`
}

// ResumeRequest is the optional body of POST .../resume: which hold to
// lift (optional while there is only one).
type ResumeRequest struct {
	Reason string `json:"reason"`
}

// CancelActivationRequest is the optional body of POST .../cancel-activation.
type CancelActivationRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) lifecycle(action string) echo.HandlerFunc {
	return func(c echo.Context) error {
		body, err := s.readBody(c, echo.MIMEApplicationJSON)
		if err != nil {
			return err
		}
		optional := func(v any) error {
			if body == nil {
				return nil
			}
			return decodeStrict(body, v)
		}
		var cmd domain.TenantCommand
		switch action {
		case "activate":
			var req ActivateRequest
			if err := optional(&req); err != nil {
				return err
			}
			cmd = domain.RequestActivation{Admin: req.Admin}
		case "suspend":
			var req SuspendRequest
			if body == nil {
				return &domain.ValidationError{Fields: []domain.FieldError{{Field: "reason", Message: "is required", Allowed: reasons()}}}
			}
			if err := decodeStrict(body, &req); err != nil {
				return err
			}
			cmd = domain.Suspend(req)
		case "cancel-activation":
			var req CancelActivationRequest
			if err := optional(&req); err != nil {
				return err
			}
			cmd = domain.CancelActivation(req)
		case "resume":
			var req ResumeRequest
			if err := optional(&req); err != nil {
				return err
			}
			cmd = domain.Resume{Reason: req.Reason}
		default:
			var req struct{}
			if err := optional(&req); err != nil {
				return err
			}
			switch action {
			case "archive":
				cmd = domain.Archive{}
			case "restore":
				cmd = domain.Restore{}
			}
		}
		if cmd, err = narrowForBilling(principal(c), cmd); err != nil {
			return err
		}
		return s.run(c, cmd, http.StatusOK)
	}
}

// narrowForBilling holds billing to its part of the lifecycle: suspending
// for payment, and lifting the payment holds it placed itself.
func narrowForBilling(p auth.Principal, cmd domain.TenantCommand) (domain.TenantCommand, error) {
	if !p.IsBillingOnly() {
		return cmd, nil
	}
	payment := string(domain.SuspendPayment)
	switch c := cmd.(type) {
	case domain.Suspend:
		if c.Reason == payment {
			return c, nil
		}
	case domain.Resume:
		if c.Reason == "" || c.Reason == payment {
			return domain.Resume{Reason: payment, PlacedBy: p.Subject}, nil
		}
	}
	return nil, fmt.Errorf("%w: the %s role may only suspend with reason %q and resume the payment holds it placed", domain.ErrForbidden, auth.RoleBilling, payment)
}

func reasons() []string {
	out := make([]string, len(domain.SuspensionReasons))
	for i, r := range domain.SuspensionReasons {
		out[i] = string(r)
	}
	return out
}

// EventPage is a page of a tenant's signed events.
type EventPage struct {
	Items         []json.RawMessage `json:"items"`
	NextPageToken string            `json:"next_page_token"`
}

// eventsReadable checks that the caller may read the signed events of the
// tenant the path names: its own tenant's roles and platform
// administrators may; billing, which reads tenants' records, may not.
func (s *Server) eventsReadable(c echo.Context) error {
	if !principal(c).CanRead(c.Param("id")) {
		return fmt.Errorf("no tenant with id %q: %w", c.Param("id"), domain.ErrNotFound)
	}
	_, _, err := s.readableTenant(c)
	return err
}

func (s *Server) tenantEvents(c echo.Context) error {
	if err := s.eventsReadable(c); err != nil {
		return err
	}
	size, err := pageSize(c)
	if err != nil {
		return err
	}
	from, err := parseSeqToken(c.QueryParam("page_token"))
	if err != nil {
		return err
	}
	items, next, err := s.deps.Tenants.Events(c.Request().Context(), c.Param("id"), from, size)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, EventPage{Items: items, NextPageToken: seqToken(next)})
}

// CatalogView lists the regions and plans tenants can use.
type CatalogView struct {
	Regions []RegionView `json:"regions"`
	Plans   []PlanView   `json:"plans"`
}

// RegionView is one region of the inventory.
type RegionView struct {
	Code         string `json:"code"`
	Name         string `json:"name,omitempty"`
	Jurisdiction string `json:"jurisdiction,omitempty"`
	Status       string `json:"status"`
}

// PlanView is one plan of the catalog.
type PlanView struct {
	Code       string           `json:"code"`
	Name       string           `json:"name,omitempty"`
	Features   []string         `json:"features"`
	Quotas     map[string]int64 `json:"quotas"`
	Isolation  []string         `json:"isolation"`
	MaxRegions int              `json:"max_regions,omitempty"`
}

func (s *Server) catalog(c echo.Context) error {
	cat := s.deps.Tenants.Catalog()
	v := CatalogView{Regions: []RegionView{}, Plans: []PlanView{}}
	for _, r := range cat.Regions() {
		v.Regions = append(v.Regions, RegionView{Code: r.Code, Name: r.Name, Jurisdiction: r.Jurisdiction, Status: string(r.Status)})
	}
	for _, p := range cat.Plans() {
		iso := make([]string, len(p.Isolation))
		for i, m := range p.Isolation {
			iso[i] = string(m)
		}
		features := p.Features
		if features == nil {
			features = []string{}
		}
		v.Plans = append(v.Plans, PlanView{Code: p.Code, Name: p.Name, Features: features, Quotas: nonNilMap(p.Quotas), Isolation: iso, MaxRegions: p.MaxRegions})
	}
	return writeJSON(c, http.StatusOK, v)
}

func (s *Server) retryProvisioning(c echo.Context) error {
	body, err := s.readBody(c, echo.MIMEApplicationJSON)
	if err != nil {
		return err
	}
	if body != nil {
		var none struct{}
		if err := decodeStrict(body, &none); err != nil {
			return err
		}
	}
	return s.run(c, domain.RetrySaga{}, http.StatusOK)
}

// AdminPasswordView is the one time a temporary administrator password is
// shown.
type AdminPasswordView struct {
	Username          string `json:"username"`
	TemporaryPassword string `json:"temporary_password"`
	Note              string `json:"note"`
}

// adminPassword issues the tenant's administrator a temporary password. It
// is deliberately not idempotent: a replay would have to store the
// password.
func (s *Server) adminPassword(c echo.Context) error {
	meta, err := s.meta(c)
	if err != nil {
		return err
	}
	user, password, err := s.deps.Tenants.IssueAdminPassword(c.Request().Context(), c.Param("id"), meta)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return writeJSON(c, http.StatusOK, AdminPasswordView{Username: user, TemporaryPassword: password,
		Note: "shown once and not stored; the administrator must change it at first login"})
}
