// Package httpapi is Tenancy's HTTP API: the command and query routes under
// /v1, health checks, and the error contract (every error is
// application/problem+json).
package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/health"
	"github.com/tenancyhq/tenancy/internal/idempotency"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/metrics"
	"github.com/tenancyhq/tenancy/internal/tracing"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// Deps are the server's collaborators: the use cases it calls, and what
// HTTP itself needs.
type Deps struct {
	Tenants *app.Tenants
	// Customers manages customers; nil disables the customer routes (503).
	Customers *app.Customers
	// Directory manages users, clients, org units and memberships inside
	// tenants; nil disables those routes (503).
	Directory   *app.Directory
	SigningKeys *app.SigningKeys
	// Webhooks manages subscriptions and dead letters; nil disables the
	// webhook routes (503).
	Webhooks *app.Webhooks
	// Reads answers queries from the read models; nil without a database
	// (the query routes answer 503).
	Reads *app.Reads
	// Projections reports the read models (GET /v1/admin/projections); nil
	// without a database.
	Projections *app.Projections
	// Integrity lists and resolves quarantined messages.
	Integrity *app.Integrity
	// Mail queues Tenancy's own mail; nil answers 503.
	Mail        *app.Mail
	Auth        *auth.Authenticator
	Idempotency *idempotency.Store
	// Checks run on /readyz.
	Checks []health.Check
	Logger *slog.Logger
	// NewID generates request ids.
	NewID func() string
	// Mounts serve extra handlers under path prefixes (the dev issuer).
	Mounts map[string]http.Handler
	// BodyLimit bounds request bodies (default 1 MiB).
	BodyLimit int64
}

// Server is the HTTP API.
type Server struct {
	deps Deps
	log  *slog.Logger
	e    *echo.Echo
}

// New builds the server and its routes.
func New(d Deps) *Server {
	if d.BodyLimit <= 0 {
		d.BodyLimit = 1 << 20
	}
	if d.Logger == nil {
		d.Logger = logging.Discard()
	}
	s := &Server{deps: d, log: d.Logger, e: echo.New()}
	e := s.e
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	// Panics are recovered inside the access log, so that a panic is logged,
	// counted and traced as the 500 it becomes.
	e.Use(s.trace, s.requestContext, s.accessLog, s.recoverPanics, s.checkInput)

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	// Unauthenticated like the health checks: scrapers hold no tokens, and
	// the series carry no tenant data.
	e.GET(MetricsPath, echo.WrapHandler(metrics.Handler()))
	e.GET(ProblemTypeBase+":name", s.problemDoc)
	e.GET("/.well-known/tenancy/event-keys.json", s.eventKeys)
	for prefix, h := range d.Mounts {
		e.Any(prefix, echo.WrapHandler(h))
		e.Any(prefix+"/*", echo.WrapHandler(h))
	}

	// Authentication is route middleware rather than group middleware: a
	// group's middleware would also answer unknown routes and methods, as
	// 401s or 404s instead of 404s and 405s.
	v1 := e.Group("/v1")
	authn, admin, adminOrBilling := s.authenticate, s.platformAdmin, s.adminOrBilling
	v1.GET("/event-keys", s.eventKeys, authn)
	v1.GET("/catalog", s.catalog, authn)
	v1.POST("/tenants", s.createTenant, authn, admin, s.idempotent)
	v1.GET("/tenants", s.listTenants, authn)
	v1.GET("/tenants/by-slug/:slug", s.tenantBySlug, authn)
	v1.GET("/tenants/by-external-id/:system/:id", s.tenantByExternalID, authn)
	v1.GET("/tenants/:id", s.getTenant, authn)
	v1.GET("/tenants/:id/events/:seq", s.tenantEvent, authn)
	v1.GET("/events/:seq", s.anyEvent, authn, admin)
	v1.GET("/audit", s.audit, authn)
	v1.GET("/admin/projections", s.projections, authn, admin)
	v1.GET("/admin/quarantine", s.listQuarantine, authn, admin)
	v1.GET("/admin/quarantine/:seq", s.getQuarantine, authn, admin)
	v1.POST("/admin/quarantine/:seq/resolve", s.resolveQuarantine, authn, admin, s.idempotent)
	v1.POST("/admin/mail/test", s.testMail, authn, admin, s.idempotent)
	v1.PATCH("/tenants/:id", s.patchTenant, authn, admin)
	v1.DELETE("/tenants/:id", s.deleteTenant, authn, admin)
	v1.GET("/tenants/:id/events", s.tenantEvents, authn)
	for _, action := range []string{"activate", "archive", "restore", "cancel-activation"} {
		v1.POST("/tenants/:id/"+action, s.lifecycle(action), authn, admin, s.idempotent)
	}
	// Billing suspends for payment and lifts its own payment holds.
	for _, action := range []string{"suspend", "resume"} {
		v1.POST("/tenants/:id/"+action, s.lifecycle(action), authn, adminOrBilling, s.idempotent)
	}

	v1.POST("/tenants/:id/provisioning/retry", s.retryProvisioning, authn, admin, s.idempotent)
	v1.POST("/tenants/:id/admin-password", s.adminPassword, authn, admin, s.idempotent)

	s.customerRoutes(v1)
	s.directoryRoutes(v1)
	s.webhookRoutes(v1)
	// Every route's series exists from start, at 0 (with the status a
	// success answers).
	for _, r := range e.Routes() {
		if !strings.Contains(r.Path, "*") {
			metrics.HTTPRequests.WithLabelValues(r.Path, methodLabel(r.Method), strconv.Itoa(successStatus(r.Method, r.Path)))
		}
	}
	return s
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.e }

// Routes lists every route as "METHOD /path/{param}" (for the OpenAPI
// contract test).
func (s *Server) Routes() []string {
	var out []string
	for _, r := range s.e.Routes() {
		if r.Method == echo.RouteNotFound || r.Method == "echo_route_any" {
			continue
		}
		out = append(out, r.Method+" "+echoPathToOpenAPI(r.Path))
	}
	return out
}

var echoParam = regexp.MustCompile(`:([a-zA-Z_]+)`)

func echoPathToOpenAPI(p string) string { return echoParam.ReplaceAllString(p, "{$1}") }

// tenantKey holds the tenant a request is about (withTenant).
const tenantKey = "tenant-id"

func principal(c echo.Context) auth.Principal {
	p, _ := c.Get("principal").(auth.Principal)
	return p
}

// MetricsPath serves the Prometheus metrics.
const MetricsPath = "/metrics"

// untraced routes are called by probes and scrapers every few seconds: a
// span each would bury the requests worth tracing.
var untraced = map[string]bool{MetricsPath: true, "/healthz": true, "/readyz": true}

// trace runs the request in a server span (with tracing on), continuing the
// caller's trace when it sent a traceparent header. Commands the request
// runs become child spans, and their events carry the trace on.
func (s *Server) trace(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !tracing.Enabled() || untraced[c.Path()] {
			return next(c)
		}
		req := c.Request()
		route := routeLabel(c)
		ctx := tracing.Extract(req.Context(), req.Header)
		ctx, span := tracing.Start(ctx, req.Method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", req.Method), attribute.String("http.route", route),
				attribute.String("url.path", req.URL.Path)))
		defer span.End()
		c.SetRequest(req.WithContext(ctx))
		err := next(c)
		status := c.Response().Status
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
		return err
	}
}

// routeLabel is the request's route template ("/v1/tenants/:id"): a
// bounded set, unlike paths.
func routeLabel(c echo.Context) string {
	if p := c.Path(); p != "" && c.Response().Status != http.StatusNotFound && c.Response().Status != http.StatusMethodNotAllowed {
		return p
	}
	return "unmatched"
}

// methodLabel bounds the method label to the methods the API knows.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete, http.MethodHead, http.MethodOptions:
		return m
	}
	return "other"
}

// withTenant names the tenant a request is about in its log lines and span.
func withTenant(c echo.Context, id string) {
	if !app.ValidID(id) {
		return
	}
	c.Set(tenantKey, id)
	ctx := logging.With(c.Request().Context(), slog.String("tenant_id", id))
	trace.SpanFromContext(ctx).SetAttributes(attribute.String("tenancy.tenant_id", id))
	c.SetRequest(c.Request().WithContext(ctx))
}

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// RequestIDHeader carries the correlation id in and out.
const RequestIDHeader = "X-Request-Id"

func requestID(c echo.Context) string {
	id, _ := c.Get("request_id").(string)
	return id
}

// requestContext assigns the request id (the caller's X-Request-Id when it
// is well-formed) and puts it in the context every log line is written with.
func (s *Server) requestContext(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(RequestIDHeader)
		if !requestIDRE.MatchString(id) {
			id = s.deps.NewID()
		}
		c.Set("request_id", id)
		c.Response().Header().Set(RequestIDHeader, id)
		ctx := logging.With(c.Request().Context(), slog.String("request_id", id), slog.String("correlation_id", id))
		trace.SpanFromContext(ctx).SetAttributes(attribute.String("tenancy.request_id", id))
		c.SetRequest(c.Request().WithContext(ctx))
		return next(c)
	}
}

func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				s.log.ErrorContext(c.Request().Context(), "panic serving request", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		return next(c)
	}
}

func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		req := c.Request()
		took := time.Since(start)
		status := c.Response().Status
		route, method := routeLabel(c), methodLabel(req.Method)
		metrics.HTTPRequests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
		metrics.HTTPDuration.WithLabelValues(route, method).Observe(took.Seconds())
		s.log.LogAttrs(req.Context(), slog.LevelInfo, "request",
			slog.String("method", req.Method), slog.String("route", c.Path()),
			slog.Int("status", status), slog.Duration("duration", took))
		return nil
	}
}

func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, err := s.deps.Auth.Authenticate(c.Request().Context(), auth.BearerToken(c.Request().Header.Get(echo.HeaderAuthorization)))
		if err != nil {
			return err
		}
		c.Set("principal", p)
		ctx := logging.With(c.Request().Context(), slog.String("actor", p.Subject))
		c.SetRequest(c.Request().WithContext(ctx))
		if strings.HasPrefix(c.Path(), "/v1/tenants/:id") {
			withTenant(c, c.Param("id"))
		}
		return next(c)
	}
}

func (s *Server) platformAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !principal(c).IsPlatformAdmin() {
			return fmt.Errorf("%w: this operation needs the %s role", domain.ErrForbidden, auth.RolePlatformAdmin)
		}
		return next(c)
	}
}

// webhookRoutes registers the webhook and dead-letter routes (platform
// administrators only).
func (s *Server) webhookRoutes(v1 *echo.Group) {
	authn, admin, hooks := s.authenticate, s.platformAdmin, s.webhooksConfigured
	v1.POST("/webhooks", s.createWebhook, authn, admin, hooks, s.idempotent)
	v1.GET("/webhooks", s.listWebhooks, authn, admin, hooks)
	v1.GET("/webhooks/:id", s.getWebhook, authn, admin, hooks)
	v1.PATCH("/webhooks/:id", s.patchWebhook, authn, admin, hooks)
	v1.DELETE("/webhooks/:id", s.deleteWebhook, authn, admin, hooks)
	v1.POST("/webhooks/:id/rotate-secret", s.rotateWebhookSecret, authn, admin, hooks, s.idempotent)
	v1.GET("/webhooks/:id/attempts", s.webhookAttempts, authn, admin, hooks)
	v1.POST("/webhooks/:id/replay", s.replayWebhook, authn, admin, hooks, s.idempotent)
	v1.POST("/webhooks/:id/dead-letters/requeue", s.requeueAll, authn, admin, hooks, s.idempotent)
	v1.GET("/dead-letters", s.deadLetters, authn, admin, hooks)
	v1.GET("/dead-letters/:seq", s.deadLetter, authn, admin, hooks)
	v1.POST("/dead-letters/:seq/requeue", s.requeueDeadLetter, authn, admin, hooks, s.idempotent)
	v1.POST("/dead-letters/:seq/discard", s.discardDeadLetter, authn, admin, hooks, s.idempotent)
}

// customerRoutes registers the customer routes: platform administrators
// manage customers, billing reads them.
func (s *Server) customerRoutes(v1 *echo.Group) {
	authn, admin, adminOrBilling, customers := s.authenticate, s.platformAdmin, s.adminOrBilling, s.customersConfigured
	v1.POST("/customers", s.createCustomer, authn, admin, customers, s.idempotent)
	v1.GET("/customers", s.listCustomers, authn, adminOrBilling, customers)
	v1.POST("/customers/lookup", s.lookupCustomer, authn, adminOrBilling, customers)
	v1.GET("/customers/:id", s.getCustomer, authn, adminOrBilling, customers)
	v1.PATCH("/customers/:id", s.patchCustomer, authn, admin, customers)
	v1.DELETE("/customers/:id", s.deleteCustomer, authn, admin, customers)
	v1.POST("/customers/:id/verification", s.verifyCustomer, authn, admin, customers, s.idempotent)
	v1.GET("/customers/:id/tenants", s.customerTenants, authn, adminOrBilling, customers)
}

// adminOrBilling admits platform administrators and billing (whose
// handlers narrow what it may do).
func (s *Server) adminOrBilling(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if p := principal(c); !p.IsPlatformAdmin() && !p.HasRole(auth.RoleBilling) {
			return fmt.Errorf("%w: this operation needs the %s or %s role", domain.ErrForbidden, auth.RolePlatformAdmin, auth.RoleBilling)
		}
		return next(c)
	}
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(c echo.Context) error {
	results, ready := health.Ready(c.Request().Context(), s.deps.Checks)
	if !ready {
		return &notReadyError{checks: results}
	}
	return writeJSON(c, http.StatusOK, map[string]any{"ready": true, "checks": results})
}

// notReadyError reports failing readiness checks.
type notReadyError struct{ checks map[string]string }

func (e *notReadyError) Error() string {
	var failing []string
	for name, res := range e.checks {
		if res != "ok" {
			failing = append(failing, name+": "+res)
		}
	}
	slices.Sort(failing)
	return "not ready: " + strings.Join(failing, "; ")
}

func (e *notReadyError) Unwrap() error { return domain.ErrUnavailable }

func (s *Server) eventKeys(c echo.Context) error {
	ks, err := s.deps.SigningKeys.Keys(c.Request().Context())
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "max-age=60")
	c.Response().Header().Set(echo.HeaderContentType, "application/jwk-set+json")
	c.Response().WriteHeader(http.StatusOK)
	return jsonEncode(c.Response(), ks.JWKS())
}

func jsonEncode(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// writeJSON writes v with status.
func writeJSON(c echo.Context, status int, v any) error {
	c.Response().Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	c.Response().WriteHeader(status)
	return jsonEncode(c.Response(), v)
}

// successStatus is the status a route answers on success, for priming its
// series.
func successStatus(method, path string) int {
	switch {
	case method == http.MethodPost && (path == "/v1/tenants" || path == "/v1/webhooks"):
		return http.StatusCreated
	case method == http.MethodPost && (strings.HasSuffix(path, "/replay") || strings.Contains(path, "/requeue")):
		return http.StatusAccepted
	case method == http.MethodDelete && strings.HasPrefix(path, "/v1/webhooks/"):
		return http.StatusNoContent
	}
	return http.StatusOK
}
