// Package billingfake is an in-process billing system implementing
// Tenancy's billing HTTP contract (../CONTRACT.md) for tests: the token,
// idempotency keys, problem+json errors and the Location header, plus
// injected faults (errors, latency, dropped connections, lost responses)
// and ways to inspect and change its state behind Tenancy's back.
package billingfake

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tenancyhq/tenancy/internal/billing"
	"github.com/tenancyhq/tenancy/internal/faultinject"
)

// DefaultToken is the token a Server accepts when Options.Token is empty.
const DefaultToken = "billingfake-token"

// maxBody is the largest request body the fake accepts.
const maxBody = 1 << 20

// Options configure a Server.
type Options struct {
	// Token is the bearer token every request must carry; empty means
	// DefaultToken.
	Token string
	// Plans are the plans accounts may have; empty means starter, standard
	// and enterprise.
	Plans []string
	// Now is the clock for created_at and updated_at; nil means time.Now.
	Now func() time.Time
}

// Fault makes matching requests fail (see faultinject.Fault). Here a
// Status is answered with a problem+json body; with AfterHandling, the
// account changes and the response is remembered under its idempotency key
// before the Latency, and a fault with neither Status nor Drop drops the
// connection.
type Fault = faultinject.Fault

// Server is a fake billing system listening on a loopback port.
type Server struct {
	ts       *httptest.Server
	token    string
	plans    []string
	now      func() time.Time
	done     chan struct{}
	doneOnce sync.Once

	faults faultinject.Set
	hook   faultinject.Hook

	mu       sync.Mutex
	accounts map[string]billing.Account
	keys     map[string]record
	creates  int
	writes   int
}

// record is a remembered response to a write.
type record struct {
	fingerprint [sha256.Size]byte
	resp        response
}

// response is built in full before it is written, so that it can be
// remembered, replayed, or withheld by an AfterHandling fault.
type response struct {
	status int
	header http.Header
	body   []byte
}

// New starts a Server; Close it when done.
func New(o Options) *Server {
	s := &Server{
		token:    o.Token,
		plans:    slices.Clone(o.Plans),
		now:      o.Now,
		done:     make(chan struct{}),
		accounts: map[string]billing.Account{},
		keys:     map[string]record{},
	}
	if s.token == "" {
		s.token = DefaultToken
	}
	if len(s.plans) == 0 {
		s.plans = []string{"starter", "standard", "enterprise"}
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.ts = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	// A fresh connection per request keeps faults deterministic: Go's
	// transport silently resends a request carrying an Idempotency-Key
	// when a reused connection drops, which would eat Drop faults.
	s.ts.Config.SetKeepAlivesEnabled(false)
	s.ts.Start()
	return s
}

// URL is the base URL to give the client.
func (s *Server) URL() string { return s.ts.URL }

// Close stops the server, cutting short any injected latency, and waits
// for requests in progress.
func (s *Server) Close() {
	s.doneOnce.Do(func() { close(s.done) })
	s.ts.Close()
}

// Account returns the account of a tenant, and whether there is one.
func (s *Server) Account(tenantID string) (billing.Account, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[tenantID]
	return a, ok
}

// Accounts returns every account, sorted by tenant id.
func (s *Server) Accounts() []billing.Account {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]billing.Account, 0, len(s.accounts))
	for _, a := range s.accounts {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b billing.Account) int { return strings.Compare(a.TenantID, b.TenantID) })
	return out
}

// Creates counts the accounts actually created; replays do not count.
func (s *Server) Creates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.creates
}

// Writes counts the writes (create, plan, status, delete) actually
// executed with success, whether or not they changed anything; replays and
// refused requests do not count.
func (s *Server) Writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

// SetStatus changes an account's status as billing's own operators might,
// to test drift. Any string is accepted, so that tests can also simulate
// statuses Tenancy does not know. It panics when the tenant has no account:
// that is a mistake in the test.
func (s *Server) SetStatus(tenantID, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[tenantID]
	if !ok {
		panic(fmt.Sprintf("billingfake: SetStatus: no account for tenant %q", tenantID))
	}
	a.Status = status
	a.UpdatedAt = s.stamp()
	s.accounts[tenantID] = a
}

// Inject adds a fault after those already injected.
func (s *Server) Inject(f Fault) { s.faults.Inject(f) }

// ClearFaults removes every fault.
func (s *Server) ClearFaults() { s.faults.Clear() }

// SetHook sets a function called at the start of every request, before
// faults and authentication; nil removes it. It may read the request's
// body (the fake has its own copy) and may block, e.g. to hold a request
// while a test does something else.
func (s *Server) SetHook(hook func(r *http.Request)) { s.hook.Set(hook) }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	// Reading the body first lets net/http notice a client that hangs up
	// during a delay, and gives the hook a copy of its own.
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		faultinject.Drop(w)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	s.hook.Call(r)
	f := s.faults.Take(r)
	if f != nil && !f.AfterHandling {
		if !faultinject.Wait(r, f.Latency, s.done) {
			faultinject.Drop(w)
			return
		}
		switch {
		case f.Drop:
			faultinject.Drop(w)
			return
		case f.Status != 0:
			faultResponse(f).write(w)
			return
		}
	}
	resp := s.handle(r, body)
	if f != nil && f.AfterHandling {
		if !faultinject.Wait(r, f.Latency, s.done) || f.Drop || f.Status == 0 {
			faultinject.Drop(w)
			return
		}
		faultResponse(f).write(w)
		return
	}
	resp.write(w)
}

// segments splits the escaped path, so that an escaped "/" stays inside
// its segment, and unescapes each segment.
func segments(r *http.Request) []string {
	parts := strings.Split(r.URL.EscapedPath(), "/")
	for i, p := range parts {
		if u, err := url.PathUnescape(p); err == nil {
			parts[i] = u
		}
	}
	return parts
}

func faultResponse(f *Fault) response {
	resp := problem(f.Status, "injected-fault", http.StatusText(f.Status), "a fault injected by the test")
	faultinject.SetRetryAfter(resp.header, f.RetryAfter)
	return resp
}

// operation is what a route does.
type operation int

const (
	opCreate operation = iota
	opGet
	opSetPlan
	opSetStatus
	opDelete
)

// route maps a request to its operation and tenant id, or to a 404 or 405.
func route(r *http.Request) (operation, string, *response) {
	seg := segments(r)
	if len(seg) < 3 || seg[0] != "" || seg[1] != "v1" || seg[2] != "accounts" {
		return 0, "", noRoute()
	}
	type allowed map[string]operation
	var ops allowed
	var id string
	switch {
	case len(seg) == 3:
		ops = allowed{http.MethodPost: opCreate}
	case len(seg) == 4 && seg[3] != "":
		id, ops = seg[3], allowed{http.MethodGet: opGet, http.MethodDelete: opDelete}
	case len(seg) == 5 && seg[3] != "" && seg[4] == "plan":
		id, ops = seg[3], allowed{http.MethodPut: opSetPlan}
	case len(seg) == 5 && seg[3] != "" && seg[4] == "status":
		id, ops = seg[3], allowed{http.MethodPut: opSetStatus}
	default:
		return 0, "", noRoute()
	}
	if op, ok := ops[r.Method]; ok {
		return op, id, nil
	}
	methods := make([]string, 0, len(ops))
	for m := range ops {
		methods = append(methods, m)
	}
	slices.Sort(methods)
	resp := problem(http.StatusMethodNotAllowed, "method-not-allowed", "Method not allowed",
		fmt.Sprintf("%s is not allowed here; use %s", r.Method, strings.Join(methods, ", ")))
	resp.header.Set("Allow", strings.Join(methods, ", "))
	return 0, "", &resp
}

func noRoute() *response {
	resp := problem(http.StatusNotFound, "no-such-route", "Not found", "no such route; see the billing contract v1")
	return &resp
}

// handle answers a request that no fault stopped.
func (s *Server) handle(r *http.Request, body []byte) response {
	if !s.authorized(r) {
		resp := problem(http.StatusUnauthorized, "unauthenticated", "Unauthorized", "send Authorization: Bearer <token>")
		resp.header.Set("WWW-Authenticate", `Bearer realm="billing"`)
		return resp
	}
	op, id, refused := route(r)
	if refused != nil {
		return *refused
	}
	if op == opGet {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.get(id)
	}
	key := r.Header.Get("Idempotency-Key")
	if key == "" || len(key) > 255 || !visibleASCII(key) {
		return problem(http.StatusBadRequest, "idempotency-key", "Idempotency-Key required",
			"every write needs an Idempotency-Key header of 1-255 visible ASCII characters")
	}
	if len(body) > maxBody {
		return problem(http.StatusRequestEntityTooLarge, "too-large", "Request body too large", fmt.Sprintf("the body exceeds %d bytes", maxBody))
	}
	if op != opDelete {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			return problem(http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type", "send the body as application/json")
		}
	}
	fp := sha256.Sum256([]byte(r.Method + "\x00" + r.URL.EscapedPath() + "\x00" + string(body)))

	// One lock over the key check and the change makes concurrent requests
	// with one key act once: the later ones find the first one's record.
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec, ok := s.keys[key]; ok {
		if rec.fingerprint != fp {
			return problem(http.StatusUnprocessableEntity, "idempotency-key-reused", "Idempotency-Key reused",
				"this Idempotency-Key was used for a different request (method, path or body)")
		}
		return rec.resp.replay()
	}
	var resp response
	switch op {
	case opCreate:
		resp = s.create(body)
	case opSetPlan:
		resp = s.setPlan(id, body)
	case opSetStatus:
		resp = s.setStatus(id, body)
	case opDelete:
		resp = s.delete(id)
	}
	// Only writes that acted are remembered: a refused one may be retried
	// with the same key once its cause is fixed (e.g. a plan added).
	if resp.status >= 200 && resp.status <= 299 {
		s.keys[key] = record{fingerprint: fp, resp: resp}
		s.writes++
	}
	return resp
}

func (s *Server) authorized(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	return ok && strings.EqualFold(scheme, "Bearer") &&
		subtle.ConstantTimeCompare([]byte(tok), []byte(s.token)) == 1
}

func (s *Server) get(id string) response {
	a, ok := s.accounts[id]
	if !ok {
		return notFound(id)
	}
	return jsonResponse(http.StatusOK, a)
}

func (s *Server) create(body []byte) response {
	var in billing.NewAccount
	if resp, ok := decode(body, &in); !ok {
		return resp
	}
	var bad []string
	for _, f := range []struct{ name, value string }{
		{"tenant_id", in.TenantID}, {"slug", in.Slug}, {"display_name", in.DisplayName}, {"plan", in.Plan},
	} {
		if strings.TrimSpace(f.value) == "" {
			bad = append(bad, f.name+": required")
		}
	}
	if in.Plan != "" && !slices.Contains(s.plans, in.Plan) {
		bad = append(bad, s.unknownPlan(in.Plan))
	}
	if len(bad) > 0 {
		return invalid(bad...)
	}
	if a, ok := s.accounts[in.TenantID]; ok {
		return problem(http.StatusConflict, "account-exists", "Account exists",
			fmt.Sprintf("tenant %q already has account %s", in.TenantID, a.AccountID))
	}
	now := s.stamp()
	a := billing.Account{
		TenantID: in.TenantID, AccountID: newAccountID(), Slug: in.Slug, DisplayName: in.DisplayName,
		Plan: in.Plan, Status: billing.StatusActive, CustomerRef: in.CustomerRef, CreatedAt: now, UpdatedAt: now,
	}
	s.accounts[a.TenantID] = a
	s.creates++
	resp := jsonResponse(http.StatusCreated, a)
	resp.header.Set("Location", "/v1/accounts/"+url.PathEscape(a.TenantID))
	return resp
}

func (s *Server) setPlan(id string, body []byte) response {
	var in struct {
		Plan string `json:"plan"`
	}
	a, refused := s.changing(id, body, &in)
	if refused != nil {
		return *refused
	}
	switch {
	case in.Plan == "":
		return invalid("plan: required")
	case !slices.Contains(s.plans, in.Plan):
		return invalid(s.unknownPlan(in.Plan))
	}
	if a.Plan != in.Plan {
		a.Plan, a.UpdatedAt = in.Plan, s.stamp()
		s.accounts[id] = a
	}
	return jsonResponse(http.StatusOK, a)
}

func (s *Server) setStatus(id string, body []byte) response {
	var in struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	}
	a, refused := s.changing(id, body, &in)
	if refused != nil {
		return *refused
	}
	switch in.Status {
	case billing.StatusActive, billing.StatusPaused, billing.StatusClosed:
	case "":
		return invalid("status: required")
	default:
		return invalid(fmt.Sprintf("status: %q is not one of active, paused, closed", in.Status))
	}
	if a.Status != in.Status {
		a.Status, a.UpdatedAt = in.Status, s.stamp()
		s.accounts[id] = a
	}
	return jsonResponse(http.StatusOK, a)
}

// changing decodes the body of a change to a tenant's account into in and
// returns the account, or the response refusing the change: a body error
// comes before a missing account.
func (s *Server) changing(id string, body []byte, in any) (billing.Account, *response) {
	if resp, ok := decode(body, in); !ok {
		return billing.Account{}, &resp
	}
	a, ok := s.accounts[id]
	if !ok {
		resp := notFound(id)
		return billing.Account{}, &resp
	}
	return a, nil
}

func (s *Server) delete(id string) response {
	if _, ok := s.accounts[id]; !ok {
		return notFound(id)
	}
	delete(s.accounts, id)
	return response{status: http.StatusNoContent, header: http.Header{}}
}

func (s *Server) unknownPlan(plan string) string {
	return fmt.Sprintf("plan: %q is not a known plan (%s)", plan, strings.Join(s.plans, ", "))
}

// stamp is the time of a change, without the monotonic reading, so that
// accounts compare equal after a JSON round trip.
func (s *Server) stamp() time.Time { return s.now().UTC().Round(0) }

// decode reads a JSON object body; a value of the wrong type is a 422
// naming the field, anything else unreadable a 400.
func decode(body []byte, v any) (response, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("data after the JSON object")
	}
	if err == nil {
		return response{}, true
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return invalid(te.Field + ": must be a " + te.Type.String()), false
	}
	return problem(http.StatusBadRequest, "malformed-request", "Malformed request", "the body is not a JSON object: "+err.Error()), false
}

func invalid(fields ...string) response {
	return problem(http.StatusUnprocessableEntity, "validation-failed", "Invalid request", strings.Join(fields, "; "))
}

func notFound(id string) response {
	return problem(http.StatusNotFound, "account-not-found", "Account not found", fmt.Sprintf("tenant %q has no account", id))
}

func problem(status int, slug, title, detail string) response {
	body, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}{"/problems/" + slug, title, status, detail})
	return response{status: status, header: http.Header{"Content-Type": {"application/problem+json"}}, body: append(body, '\n')}
}

func jsonResponse(status int, v any) response {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err) // only ever called with accounts, which always marshal
	}
	return response{status: status, header: http.Header{"Content-Type": {"application/json"}}, body: append(body, '\n')}
}

// replay is the remembered response again, marked so tests and operators
// can tell.
func (r response) replay() response {
	h := r.header.Clone()
	h.Set("Idempotent-Replayed", "true")
	return response{status: r.status, header: h, body: r.body}
}

func (r response) write(w http.ResponseWriter) {
	for k, v := range r.header {
		w.Header()[k] = v
	}
	w.WriteHeader(r.status)
	_, _ = w.Write(r.body)
}

func newAccountID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "acct_" + hex.EncodeToString(b[:])
}

func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
