package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/readmodel"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// CustomerView is a customer as the API shows it. Lists leave out the
// personal data kept only sealed in the log (address, fiscal ids,
// contacts): GET one customer shows them.
type CustomerView struct {
	ID                 string            `json:"id"`
	Kind               string            `json:"kind"`
	LegalName          string            `json:"legal_name"`
	DisplayName        string            `json:"display_name"`
	Email              string            `json:"email,omitempty"`
	Phone              string            `json:"phone,omitempty"`
	Address            *events.Address   `json:"address,omitempty"`
	FiscalIDs          *events.FiscalIDs `json:"fiscal_ids,omitempty"`
	Contacts           []events.Contact  `json:"contacts,omitempty"`
	ExternalIDs        map[string]string `json:"external_ids"`
	Labels             map[string]string `json:"labels"`
	RealmMode          string            `json:"realm_mode"`
	Verification       VerificationView  `json:"verification"`
	Root               bool              `json:"root"`
	Version            int64             `json:"version"`
	CreatedAt          time.Time         `json:"created_at"`
	UpdatedAt          time.Time         `json:"updated_at"`
	PersonalDataErased bool              `json:"personal_data_erased"`
}

// VerificationView is a customer's KYC (individual) or KYB (business)
// status.
type VerificationView struct {
	Type       string            `json:"type"`
	Status     string            `json:"status"`
	Evidence   []events.Evidence `json:"evidence,omitempty"`
	Note       string            `json:"note,omitempty"`
	UpdatedAt  *time.Time        `json:"updated_at"`
	UpdatedBy  string            `json:"updated_by,omitempty"`
	GraceUntil *time.Time        `json:"grace_until,omitempty"`
	// GraceExpired is true once a re-KYC grace period ran out (its
	// tenants are suspended for compliance until verified again).
	GraceExpired bool `json:"grace_expired,omitempty"`
}

// ViewCustomer renders a customer; withPersonal adds the personal data
// (a single customer read from the log).
func ViewCustomer(cu domain.Customer, withPersonal bool) CustomerView {
	v := CustomerView{
		ID: cu.ID, Kind: cu.Kind, LegalName: cu.LegalName, DisplayName: cu.DisplayName, Email: cu.Email, Phone: cu.Phone,
		ExternalIDs: nonNilMap(cu.ExternalIDs), Labels: nonNilMap(cu.Labels), RealmMode: cu.RealmMode, Root: cu.Root,
		Version: cu.Version, CreatedAt: cu.CreatedAt, UpdatedAt: cu.UpdatedAt, PersonalDataErased: cu.PIIErased,
	}
	vr := cu.Verification
	v.Verification = VerificationView{Type: vr.Type, Status: vr.Status, Evidence: vr.Evidence, Note: vr.Note,
		UpdatedAt: optTime(vr.UpdatedAt), UpdatedBy: vr.UpdatedBy, GraceUntil: optTime(vr.GraceUntil), GraceExpired: vr.GraceExpired}
	if withPersonal {
		f := cu.FiscalIDs
		v.Address, v.FiscalIDs, v.Contacts = cu.Address, &f, cu.Contacts
	}
	return v
}

// customersConfigured answers 503 on the customer routes of an instance
// without customers.
func (s *Server) customersConfigured(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.deps.Customers == nil {
			return fmt.Errorf("%w: customers are not configured on this API instance", domain.ErrUnavailable)
		}
		return next(c)
	}
}

func (s *Server) writeCustomer(c echo.Context, status int, cu domain.Customer, seq uint64) error {
	// A stored (idempotent) response holds the customer's personal data:
	// sealed under the customer's key, it is erased with it.
	c.Set(sealScopeKey, events.CustomerPIIScope(cu.ID))
	h := c.Response().Header()
	h.Set("ETag", etag(cu.Version))
	h.Set(SequenceHeader, strconv.FormatUint(seq, 10))
	// Fiscal ids and addresses are not for shared caches.
	h.Set("Cache-Control", "no-store")
	return writeJSON(c, status, ViewCustomer(cu, true))
}

// CreateCustomerRequest is the body of POST /v1/customers.
type CreateCustomerRequest struct {
	Kind        string            `json:"kind"`
	LegalName   string            `json:"legal_name"`
	DisplayName string            `json:"display_name"`
	Email       string            `json:"email"`
	Phone       string            `json:"phone"`
	Address     *events.Address   `json:"address"`
	FiscalIDs   events.FiscalIDs  `json:"fiscal_ids"`
	Contacts    []events.Contact  `json:"contacts"`
	ExternalIDs map[string]string `json:"external_ids"`
	Labels      map[string]string `json:"labels"`
	RealmMode   string            `json:"realm_mode"`
}

func (s *Server) createCustomer(c echo.Context) error {
	req, err := bindJSON[CreateCustomerRequest](s, c)
	if err != nil {
		return err
	}
	res, err := s.deps.Customers.Create(c.Request().Context(), domain.CreateCustomer{
		ID: idempotentID(c), Kind: req.Kind, LegalName: req.LegalName, DisplayName: req.DisplayName, Email: req.Email, Phone: req.Phone,
		Address: req.Address, FiscalIDs: req.FiscalIDs, Contacts: req.Contacts, ExternalIDs: req.ExternalIDs, Labels: req.Labels,
		RealmMode: req.RealmMode,
	}, actorMeta(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/customers/"+res.State.ID)
	return s.writeCustomer(c, http.StatusCreated, res.State, res.Seq)
}

func (s *Server) getCustomer(c echo.Context) error {
	cu, seq, err := s.deps.Customers.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return s.writeCustomer(c, http.StatusOK, cu, seq)
}

// readOnlyCustomerMembers cannot be patched.
var readOnlyCustomerMembers = map[string]string{
	"id": "is immutable", "kind": "is immutable; create a new customer of the other kind",
	"verification": "changes only through POST /v1/customers/{id}/verification", "root": "is set by bootstrap",
	"version": "is maintained by the server", "created_at": "is maintained by the server", "updated_at": "is maintained by the server",
	"personal_data_erased": "is maintained by the server",
}

// parseCustomerPatch turns a JSON merge patch into an update command.
func parseCustomerPatch(body []byte) (domain.UpdateCustomer, error) {
	var cmd domain.UpdateCustomer
	p, err := parseMergePatch(body)
	if err != nil {
		return cmd, err
	}
	p.each(readOnlyCustomerMembers, func(key string, raw json.RawMessage) {
		switch key {
		case "legal_name":
			cmd.LegalName = p.str(key, raw, false)
		case "display_name":
			cmd.DisplayName = p.str(key, raw, false)
		case "email":
			cmd.Email = p.str(key, raw, true)
		case "phone":
			cmd.Phone = p.str(key, raw, true)
		case "realm_mode":
			cmd.RealmMode = p.str(key, raw, false)
		case "address":
			if isNull(raw) {
				cmd.ClearAddress = true
				return
			}
			var a events.Address
			if p.strictly(key, raw, &a, "must be an object {line1, line2, city, state, postal_code, country} (the whole address: merge patch replaces it)") {
				cmd.Address = &a
			}
		case "fiscal_ids":
			cmd.FiscalIDs = fiscalPatch(p, raw)
		case "contacts":
			contacts := []events.Contact{}
			if isNull(raw) || p.strictly(key, raw, &contacts, "must be an array of {role, name, email, phone}") {
				cmd.Contacts = &contacts
			}
		case "labels":
			cmd.Labels = p.mapPatch(key, raw)
		case "external_ids":
			cmd.ExternalIDs = p.mapPatch(key, raw)
		default:
			p.unknown(key, "a customer")
		}
	})
	return cmd, p.err()
}

// fiscalPatch reads the fiscal_ids member: each id set, or removed with
// null (null for the whole member removes them all).
func fiscalPatch(p *mergePatch, raw json.RawMessage) *domain.FiscalIDsPatch {
	empty := ""
	if isNull(raw) {
		return &domain.FiscalIDsPatch{PAN: &empty, TAN: &empty, GSTIN: &empty}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		p.bad("fiscal_ids", "must be an object with pan, tan and gstin")
		return nil
	}
	fp := &domain.FiscalIDsPatch{}
	for k, v := range m {
		switch k {
		case "pan":
			fp.PAN = p.str("fiscal_ids.pan", v, true)
		case "tan":
			fp.TAN = p.str("fiscal_ids.tan", v, true)
		case "gstin":
			fp.GSTIN = p.str("fiscal_ids.gstin", v, true)
		default:
			p.bad("fiscal_ids."+k, "unknown field; fiscal ids are pan, tan and gstin")
		}
	}
	return fp
}

func (s *Server) patchCustomer(c echo.Context) error {
	body, err := s.readBody(c, "application/merge-patch+json", echo.MIMEApplicationJSON)
	if err != nil {
		return err
	}
	cmd, err := parseCustomerPatch(body)
	if err != nil {
		return err
	}
	return s.runCustomer(c, cmd, http.StatusOK)
}

func (s *Server) runCustomer(c echo.Context, cmd domain.CustomerCommand, status int) error {
	return execute(s, c, s.deps.Customers.Do, cmd, s.writeCustomer, status)
}

func (s *Server) deleteCustomer(c echo.Context) error {
	return s.runCustomer(c, domain.DeleteCustomer{Confirm: c.QueryParam("confirm")}, http.StatusOK)
}

// VerificationRequest is the body of POST /v1/customers/{id}/verification.
type VerificationRequest struct {
	Status   string            `json:"status"`
	Evidence []events.Evidence `json:"evidence"`
	Note     string            `json:"note"`
}

func (s *Server) verifyCustomer(c echo.Context) error {
	req, err := bindJSON[VerificationRequest](s, c)
	if err != nil {
		return err
	}
	return s.runCustomer(c, domain.RecordVerification{Status: req.Status, Evidence: req.Evidence, Note: req.Note}, http.StatusOK)
}

// LookupRequest is the body of POST /v1/customers/lookup: a fiscal id is
// looked up in a body, never in a URL that access logs keep.
type LookupRequest struct {
	Kind  string `json:"kind"`
	Value string `json:"value"`
}

func (s *Server) lookupCustomer(c echo.Context) error {
	if err := checkParams(c); err != nil {
		return err
	}
	req, err := bindJSON[LookupRequest](s, c)
	if err != nil {
		return err
	}
	cu, seq, err := s.deps.Customers.Lookup(c.Request().Context(), req.Kind, req.Value)
	if err != nil {
		return err
	}
	return s.writeCustomer(c, http.StatusOK, cu, seq)
}

// CustomerList is a page of customers.
type CustomerList struct {
	Items         []CustomerView `json:"items"`
	NextPageToken string         `json:"next_page_token"`
}

var customerListParams = []string{"q", "kind", "verification_status", "page_size", "page_token", "min_seq"}

func (s *Server) listCustomers(c echo.Context) error {
	if err := checkParams(c, customerListParams...); err != nil {
		return err
	}
	qp := c.QueryParams()
	f := readmodel.CustomerFilter{Query: c.QueryParam("q"), Kinds: qp["kind"], VerificationStatuses: qp["verification_status"]}
	for _, k := range f.Kinds {
		if k != domain.CustomerIndividual && k != domain.CustomerBusiness {
			return invalid("kind", fmt.Sprintf("unknown kind %q", k), domain.CustomerKinds...)
		}
	}
	for _, st := range f.VerificationStatuses {
		if !isVerificationStatus(st) {
			return invalid("verification_status", fmt.Sprintf("unknown status %q", st), domain.VerificationStatuses...)
		}
	}
	size, err := pageSize(c)
	if err != nil {
		return err
	}
	reads, err := s.reads()
	if err != nil {
		return err
	}
	if err := s.consistent(c, reads, "customers"); err != nil {
		return err
	}
	page, err := reads.Customers(c.Request().Context(), f, readmodel.Page{Size: size, Token: c.QueryParam("page_token")})
	if err != nil {
		return err
	}
	out := CustomerList{Items: make([]CustomerView, 0, len(page.Items)), NextPageToken: page.NextPageToken}
	for _, cu := range page.Items {
		out.Items = append(out.Items, ViewCustomer(cu, false))
	}
	return writeJSON(c, http.StatusOK, out)
}

func isVerificationStatus(s string) bool {
	for _, v := range domain.VerificationStatuses {
		if v == s {
			return true
		}
	}
	return false
}

// customerTenants lists the tenants a customer owns (GET /v1/tenants with
// customer_id, under the customer's path).
func (s *Server) customerTenants(c echo.Context) error {
	if err := checkParams(c, "state", "page_size", "page_token", "min_seq"); err != nil {
		return err
	}
	id := c.Param("id")
	f := readmodel.TenantFilter{States: c.QueryParams()["state"]}
	if app.ValidID(id) {
		f.CustomerID = id
	} else {
		f.OnlyID = "00000000-0000-0000-0000-000000000000" // matches nothing; 404 below
	}
	// The parameters are checked (by the listing) before the customer is
	// looked up, so that a bad one is named whether or not it exists.
	out, err := s.tenantPage(c, f)
	if err != nil {
		return err
	}
	if _, _, err := s.deps.Customers.Get(c.Request().Context(), id); err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, out)
}

// customerIDParam reads the customer_id filter of GET /v1/tenants.
func customerIDParam(c echo.Context) (string, error) {
	id := c.QueryParam("customer_id")
	if id == "" {
		return "", nil
	}
	if !app.ValidID(id) {
		return "", invalid("customer_id", "must be a customer id (a UUID)")
	}
	return id, nil
}
