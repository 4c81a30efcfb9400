// Package billing is Tenancy's client of the billing system. Billing is
// external: Tenancy defines a small HTTP contract (CONTRACT.md, next to this
// file) that a billing team implements, and the provisioner's sagas call it
// when a tenant is activated, suspended, resumed, archived or deleted.
//
// Every write carries an idempotency key chosen by the caller. A saga keeps
// the key of a step stable across its retries, so that a retry after a
// timeout or a lost response gets billing's first answer instead of acting
// twice.
package billing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Account statuses the contract defines.
const (
	StatusActive = "active"
	StatusPaused = "paused"
	StatusClosed = "closed"
)

// DefaultTimeout bounds each request when Config.HTTPClient is nil. Sagas
// retry, so a short bound only costs a retry, while a hung billing system
// must not hold a saga worker.
const DefaultTimeout = 10 * time.Second

// maxBody bounds what is read of a response: a misbehaving billing system
// must not be able to exhaust the provisioner's memory.
const maxBody = 1 << 20

// Config says where billing is and how to authenticate to it.
type Config struct {
	// URL is billing's base URL (BILLING_URL), e.g.
	// https://billing.example.com or https://example.com/billing; the
	// contract's paths (/v1/...) are appended to it.
	URL string
	// Token is sent as a bearer token on every request (BILLING_TOKEN).
	Token string
	// HTTPClient sends the requests. Nil means a client with DefaultTimeout
	// that does not follow redirects.
	HTTPClient *http.Client
}

// Client calls billing's HTTP contract. It is safe for concurrent use.
type Client struct {
	base  string // scheme://host[/prefix], without a trailing slash
	token string
	hc    *http.Client
}

// New returns a client. It fails when the URL is not an absolute http(s)
// URL or the token is missing.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		// url's error quotes the URL, which may carry credentials.
		return nil, errors.New("billing: BILLING_URL is not a valid URL")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("billing: BILLING_URL %q is not an absolute http(s) URL", u.Redacted())
	}
	if u.User != nil {
		// Credentials in the URL end up in logs and error messages.
		return nil, fmt.Errorf("billing: BILLING_URL %q must not carry credentials; use BILLING_TOKEN", u.Redacted())
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, fmt.Errorf("billing: BILLING_URL %q must not have a query or fragment", u.Redacted())
	}
	if cfg.Token == "" {
		return nil, errors.New("billing: BILLING_TOKEN is required with BILLING_URL")
	}
	if !visibleASCII(cfg.Token) {
		// Do not quote the token: it is a secret even when malformed.
		return nil, errors.New("billing: BILLING_TOKEN must be visible ASCII characters")
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{
			Timeout: DefaultTimeout,
			// The contract has no redirects; following one could turn a write
			// into a GET or send the token somewhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return &Client{
		base:  u.Scheme + "://" + u.Host + strings.TrimRight(u.EscapedPath(), "/"),
		token: cfg.Token,
		hc:    hc,
	}, nil
}

// Account is billing's account for one tenant.
type Account struct {
	TenantID string `json:"tenant_id"`
	// AccountID is billing's own id, e.g. "acct_3f9c...".
	AccountID   string    `json:"account_id"`
	Slug        string    `json:"slug"`
	DisplayName string    `json:"display_name"`
	Plan        string    `json:"plan"`
	Status      string    `json:"status"`
	CustomerRef string    `json:"customer_ref"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// NewAccount is the body of a create request.
type NewAccount struct {
	TenantID    string `json:"tenant_id"`
	Slug        string `json:"slug"`
	DisplayName string `json:"display_name"`
	Plan        string `json:"plan"`
	// CustomerRef is the tenant's customer in billing's own terms, if known.
	CustomerRef string `json:"customer_ref,omitempty"`
}

// Create creates the account of a.TenantID. An existing account (under a
// key billing has not seen) is an error wrapping ErrExists; a repeated key
// returns the first response again.
func (c *Client) Create(ctx context.Context, a NewAccount, idempotencyKey string) (Account, error) {
	const p = "/v1/accounts"
	var out Account
	if err := checkKey(http.MethodPost, p, idempotencyKey); err != nil {
		return out, err
	}
	if err := c.do(ctx, http.MethodPost, p, idempotencyKey, a, &out); err != nil {
		return Account{}, err
	}
	return out, sameTenant(http.MethodPost, p, a.TenantID, out)
}

// Get returns the account of a tenant; a missing one is an error wrapping
// ErrNotFound.
func (c *Client) Get(ctx context.Context, tenantID string) (Account, error) {
	p := accountPath(tenantID, "")
	if err := checkTenant(http.MethodGet, p, tenantID); err != nil {
		return Account{}, err
	}
	var out Account
	if err := c.do(ctx, http.MethodGet, p, "", nil, &out); err != nil {
		return Account{}, err
	}
	return out, sameTenant(http.MethodGet, p, tenantID, out)
}

// SetPlan changes an account's plan and returns the account.
func (c *Client) SetPlan(ctx context.Context, tenantID, plan, idempotencyKey string) (Account, error) {
	body := struct {
		Plan string `json:"plan"`
	}{plan}
	return c.put(ctx, tenantID, "/plan", idempotencyKey, body)
}

// SetStatus changes an account's status (StatusActive, StatusPaused or
// StatusClosed) and returns the account. reason is shown to billing's
// operators; empty means none.
func (c *Client) SetStatus(ctx context.Context, tenantID, status, reason, idempotencyKey string) (Account, error) {
	body := struct {
		Status string `json:"status"`
		Reason string `json:"reason,omitempty"`
	}{status, reason}
	return c.put(ctx, tenantID, "/status", idempotencyKey, body)
}

// Delete removes an account, to compensate an activation that was
// cancelled; a missing one is an error wrapping ErrNotFound.
func (c *Client) Delete(ctx context.Context, tenantID, idempotencyKey string) error {
	p := accountPath(tenantID, "")
	if err := checkTenant(http.MethodDelete, p, tenantID); err != nil {
		return err
	}
	if err := checkKey(http.MethodDelete, p, idempotencyKey); err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, p, idempotencyKey, nil, nil)
}

func (c *Client) put(ctx context.Context, tenantID, sub, key string, body any) (Account, error) {
	p := accountPath(tenantID, sub)
	if err := checkTenant(http.MethodPut, p, tenantID); err != nil {
		return Account{}, err
	}
	if err := checkKey(http.MethodPut, p, key); err != nil {
		return Account{}, err
	}
	var out Account
	if err := c.do(ctx, http.MethodPut, p, key, body, &out); err != nil {
		return Account{}, err
	}
	return out, sameTenant(http.MethodPut, p, tenantID, out)
}

func accountPath(tenantID, sub string) string {
	return "/v1/accounts/" + url.PathEscape(tenantID) + sub
}

// do sends one request. in, if not nil, is sent as JSON; out, if not nil,
// receives the JSON response of a 2xx.
func (c *Client) do(ctx context.Context, method, p, key string, in, out any) error {
	var body io.Reader
	if in != nil {
		// Marshalling a struct is deterministic, so a retry sends the same
		// bytes and billing recognises it as the same request.
		raw, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("billing: %s %s: %w", method, p, err)
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+p, body)
	if err != nil {
		return fmt.Errorf("billing: %s %s: %w", method, p, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json, application/problem+json")
	req.Header.Set("User-Agent", "tenancy-billing-client/1")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("billing: %s %s: %w", method, p, err)
	}
	raw, rerr := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// What was read of an error body is enough to describe it.
		return newError(method, p, resp, raw)
	}
	if rerr != nil {
		return fmt.Errorf("billing: %s %s: reading the response: %w", method, p, rerr)
	}
	if len(raw) > maxBody {
		return fmt.Errorf("billing: %s %s: the response is larger than %d bytes", method, p, maxBody)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("billing: %s %s: unreadable %d response: %w", method, p, resp.StatusCode, err)
	}
	return nil
}

// sameTenant guards against acting on a response meant for another tenant,
// e.g. a billing system replaying the wrong stored response.
func sameTenant(method, p, want string, got Account) error {
	if got.TenantID != want {
		return fmt.Errorf("billing: %s %s: the response is for tenant %q, not %q", method, p, got.TenantID, want)
	}
	return nil
}

// checkTenant refuses tenant ids that cannot name an account in a path: an
// empty id would address the collection, and its 404 or 405 would read as
// "no such account".
func checkTenant(method, p, tenantID string) error {
	if tenantID == "" || tenantID == "." || tenantID == ".." {
		return &Error{Method: method, Path: p, Title: "Invalid argument", Detail: fmt.Sprintf("tenant id %q cannot name an account", tenantID)}
	}
	return nil
}

// checkKey refuses keys the contract does not allow. They are checked here
// because net/http would refuse some of them with an error that reads like
// a transport failure, which callers retry for ever.
func checkKey(method, p, key string) error {
	if key == "" || len(key) > 255 || !visibleASCII(key) {
		return &Error{Method: method, Path: p, Title: "Invalid argument", Detail: "the idempotency key must be 1-255 visible ASCII characters"}
	}
	return nil
}

func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
