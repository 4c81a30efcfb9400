package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/internal/idempotency"
	"github.com/tenancyhq/tenancy/internal/redact"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// ProblemContentType is the media type of every error response (RFC 9457).
const ProblemContentType = "application/problem+json"

// Problem is an RFC 9457 problem details object with Tenancy's extension
// members.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// RequestID is the request's correlation id, to quote to operators.
	RequestID string `json:"request_id,omitempty"`
	// Errors lists every invalid field of a 422.
	Errors []domain.FieldError `json:"errors,omitempty"`
	// Field names the member a 409 conflict is about.
	Field string `json:"field,omitempty"`
	// State and AllowedActions explain a refused lifecycle action.
	State          string   `json:"state,omitempty"`
	AllowedActions []string `json:"allowed_actions,omitempty"`
	// CurrentVersion is the aggregate's version after a 412.
	CurrentVersion int64 `json:"current_version,omitempty"`
	// StreamSeq names the message that broke an aggregate's chain (409
	// integrity-broken).
	StreamSeq uint64 `json:"stream_seq,omitempty"`
	// Checks are the readiness checks of a 503 from /readyz.
	Checks map[string]string `json:"checks,omitempty"`
}

// HTTP-level error kinds, alongside the domain's.
var (
	errMalformed        = errors.New("malformed request")
	errTooLarge         = errors.New("request body too large")
	errMediaType        = errors.New("unsupported media type")
	errMethodNotAllowed = errors.New("method not allowed")
	errRouteNotFound    = errors.New("no such route")
	errNotAcceptable    = errors.New("not acceptable")
)

// problemKind is one row of the error table.
type problemKind struct {
	err    error
	status int
	slug   string
	title  string
}

// kinds maps every error kind to its HTTP status and problem type: the one
// place where errors become HTTP.
var kinds = []problemKind{
	{domain.ErrInvalid, http.StatusUnprocessableEntity, "validation-failed", "The request is not valid"},
	{errMalformed, http.StatusBadRequest, "malformed-request", "The request could not be read"},
	{domain.ErrNotFound, http.StatusNotFound, "not-found", "Not found"},
	{errRouteNotFound, http.StatusNotFound, "not-found", "Not found"},
	{domain.ErrVersionMismatch, http.StatusPreconditionFailed, "version-mismatch", "The resource changed since you read it"},
	{domain.ErrCustomerRequired, http.StatusConflict, "customer-required", "The plan needs a customer for this tenant"},
	{domain.ErrCustomerNotVerified, http.StatusConflict, "customer-not-verified", "The plan needs a verified customer"},
	{domain.ErrPlatformTenant, http.StatusConflict, "platform-tenant", "The platform's own tenant cannot be changed this way"},
	{domain.ErrPrecondition, http.StatusConflict, "invalid-state", "Not allowed in the current state"},
	{domain.ErrConflict, http.StatusConflict, "conflict", "Conflicts with existing data"},
	{domain.ErrIntegrityBroken, http.StatusConflict, "integrity-broken", "The aggregate's hash chain is broken"},
	{idempotency.ErrErased, http.StatusGone, "response-erased", "The stored response was erased"},
	{domain.ErrUnauthenticated, http.StatusUnauthorized, "unauthenticated", "Authentication required"},
	{domain.ErrForbidden, http.StatusForbidden, "forbidden", "Not allowed for this caller"},
	{errTooLarge, http.StatusRequestEntityTooLarge, "too-large", "Request body too large"},
	{errMediaType, http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type"},
	{errMethodNotAllowed, http.StatusMethodNotAllowed, "method-not-allowed", "Method not allowed"},
	{errNotAcceptable, http.StatusNotAcceptable, "not-acceptable", "Not acceptable"},
	{domain.ErrUnavailable, http.StatusServiceUnavailable, "unavailable", "Temporarily unavailable"},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, "unavailable", "Temporarily unavailable"},
}

// ProblemTypeBase prefixes every problem type; GET on a type URI explains it.
const ProblemTypeBase = "/problems/"

// problemFor builds the problem for err, and whether it is unexpected (a 500).
func problemFor(err error) (Problem, bool) {
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			p := Problem{Type: ProblemTypeBase + k.slug, Title: k.title, Status: k.status, Detail: err.Error()}
			if p.Status >= 500 {
				// A server-side failure's text may name internal addresses
				// (the log keeps them).
				p.Detail = redact.Text(p.Detail)
			}
			var ve *domain.ValidationError
			if errors.As(err, &ve) {
				p.Errors = ve.Fields
				p.Detail = "fix the fields listed in errors and retry"
				if len(ve.Fields) == 1 {
					p.Detail = ve.Fields[0].Field + ": " + ve.Fields[0].Message
				}
			}
			var te *domain.TransitionError
			if errors.As(err, &te) {
				p.State = string(te.State)
				p.AllowedActions = te.Allowed
				if p.AllowedActions == nil {
					p.AllowedActions = []string{}
				}
			}
			var ce *domain.ConflictError
			if errors.As(err, &ce) {
				p.Field = ce.Field
			}
			var nr *notReadyError
			if errors.As(err, &nr) {
				p.Checks = nr.checks
			}
			var vm *domain.VersionMismatchError
			if errors.As(err, &vm) {
				p.CurrentVersion = vm.Actual
			}
			var ie *domain.IntegrityError
			if errors.As(err, &ie) {
				p.StreamSeq = ie.Seq
			}
			return p, false
		}
	}
	return Problem{
		Type: ProblemTypeBase + "internal", Title: "Internal error", Status: http.StatusInternalServerError,
		Detail: "the server failed unexpectedly; the failure is logged under this request_id",
	}, true
}

// errorHandler writes every error as problem+json.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		err = fromEchoError(he)
	}
	p, unexpected := problemFor(err)
	p.Instance = c.Request().URL.Path
	p.RequestID = requestID(c)
	ctx := c.Request().Context()
	switch {
	case unexpected:
		s.log.ErrorContext(ctx, "request failed", "error", err, "status", p.Status)
	case p.Status >= 500:
		s.log.WarnContext(ctx, "request failed", "error", err, "status", p.Status)
	}
	h := c.Response().Header()
	switch p.Status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Bearer realm="tenancy"`)
	case http.StatusServiceUnavailable:
		h.Set("Retry-After", strconv.Itoa(1))
	case http.StatusConflict:
		if errors.Is(err, idempotency.ErrInProgress) {
			// The same request is running (or its instance died and the key
			// is taken over after idempotency.PendingTimeout): retrying is
			// right, unlike for other conflicts.
			h.Set("Retry-After", strconv.Itoa(1))
		}
	}
	h.Set(echo.HeaderContentType, ProblemContentType)
	c.Response().WriteHeader(p.Status)
	if c.Request().Method == http.MethodHead {
		return
	}
	if werr := jsonEncode(c.Response(), p); werr != nil {
		s.log.DebugContext(ctx, "writing problem failed", "error", werr)
	}
}

func fromEchoError(he *echo.HTTPError) error {
	msg := http.StatusText(he.Code)
	if m, ok := he.Message.(string); ok {
		msg = m
	}
	switch he.Code {
	case http.StatusNotFound:
		return errors.Join(errRouteNotFound, errors.New("no such route; see openapi.yaml for the API"))
	case http.StatusMethodNotAllowed:
		return errors.Join(errMethodNotAllowed, errors.New("this route does not accept that method"))
	case http.StatusRequestEntityTooLarge:
		return errors.Join(errTooLarge, errors.New(msg))
	case http.StatusUnsupportedMediaType:
		return errors.Join(errMediaType, errors.New(msg))
	case http.StatusUnauthorized:
		return errors.Join(domain.ErrUnauthenticated, errors.New(msg))
	case http.StatusForbidden:
		return errors.Join(domain.ErrForbidden, errors.New(msg))
	case http.StatusServiceUnavailable:
		return errors.Join(domain.ErrUnavailable, errors.New(msg))
	}
	if he.Code >= 400 && he.Code < 500 {
		return errors.Join(errMalformed, errors.New(msg))
	}
	return he
}

// problemDocs explains each problem type at its URI.
var problemDocs = map[string]string{
	"validation-failed":      "The request was well-formed but some fields are invalid. The errors member lists each field, what is wrong and, where it helps, the allowed values.",
	"malformed-request":      "The request body or parameters could not be parsed: fix the syntax the detail points at.",
	"not-found":              "No such resource, or no such route. Tenant-scoped callers also get this for tenants they may not see.",
	"version-mismatch":       "An If-Match precondition failed: the resource changed since you read it. Re-read it, re-apply your change and retry with the new ETag.",
	"invalid-state":          "The lifecycle action is not allowed in the tenant's current state. state and allowed_actions say what is possible.",
	"customer-required":      "The tenant's plan activates only tenants owned by a customer (the catalog's require_customer). Create one (POST /v1/customers), attach it (PATCH the tenant with customer_id) and retry.",
	"customer-not-verified":  "The tenant's plan activates only tenants of a customer whose KYC/KYB is completed (the catalog's require_verified_customer; some plans accept partial). Record the verification (POST /v1/customers/{id}/verification) and retry.",
	"platform-tenant":        "The root and shared tenants are the platform's own, made at start-up: they cannot be suspended, archived or deleted.",
	"response-erased":        "The request was sent again with the Idempotency-Key of an earlier one whose response concerned a tenant deleted since: the stored response went with the tenant's personal data, and the request is not run again. Use a new key for a new request.",
	"integrity-broken":       "A message on the aggregate's subject in the log failed the integrity checks (a forged, replayed or out-of-chain event). The aggregate takes no commands until an operator inspects it (GET /v1/admin/quarantine) and resolves it (POST /v1/admin/quarantine/{stream_seq}/resolve).",
	"conflict":               "The request conflicts with existing data, e.g. a slug or external id another tenant holds, or an Idempotency-Key still in use.",
	"unauthenticated":        "Send a valid bearer token from the configured OIDC issuer in the Authorization header.",
	"forbidden":              "The token is valid but lacks the role this operation needs.",
	"too-large":              "The request body exceeds the limit.",
	"unsupported-media-type": "Send the body as application/json (application/merge-patch+json for PATCH).",
	"method-not-allowed":     "The route exists but not with this method.",
	"not-acceptable":         "The server cannot produce a response in the requested media type.",
	"unavailable":            "A dependency is temporarily unavailable or overloaded. Retry after the Retry-After delay; with an Idempotency-Key a retry is safe.",
	"internal":               "An unexpected failure. It is logged with the request_id; report that id.",
}

func (s *Server) problemDoc(c echo.Context) error {
	doc, ok := problemDocs[c.Param("name")]
	if !ok {
		return errors.Join(errRouteNotFound, errors.New("no such problem type"))
	}
	return c.String(http.StatusOK, doc+"\n")
}
