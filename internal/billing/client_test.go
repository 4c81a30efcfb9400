package billing_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/billing"
	"github.com/tenancyhq/tenancy/internal/billing/billingfake"
	"github.com/tenancyhq/tenancy/internal/faultinject"
)

// start is the fake clock's first reading; each reading is a second later,
// so that updated_at visibly moves.
var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func ticker() func() time.Time {
	var n atomic.Int64
	return func() time.Time { return start.Add(time.Duration(n.Add(1)-1) * time.Second) }
}

// setup starts a fake and a client of it.
func setup(t *testing.T, o billingfake.Options) (*billingfake.Server, *billing.Client) {
	t.Helper()
	if o.Now == nil {
		o.Now = ticker()
	}
	srv := billingfake.New(o)
	t.Cleanup(srv.Close)
	tok := o.Token
	if tok == "" {
		tok = billingfake.DefaultToken
	}
	return srv, newClient(t, srv.URL(), tok, nil)
}

func newClient(t *testing.T, url, token string, hc *http.Client) *billing.Client {
	t.Helper()
	c, err := billing.New(billing.Config{URL: url, Token: token, HTTPClient: hc})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func newAccount(tenantID string) billing.NewAccount {
	return billing.NewAccount{TenantID: tenantID, Slug: "acme", DisplayName: "Acme Corp", Plan: "standard", CustomerRef: "cus_123"}
}

func mustCreate(t *testing.T, c *billing.Client, tenantID string) billing.Account {
	t.Helper()
	a, err := c.Create(context.Background(), newAccount(tenantID), "seed-"+tenantID)
	if err != nil {
		t.Fatalf("Create %s: %v", tenantID, err)
	}
	return a
}

// billingError returns err as *billing.Error, failing the test otherwise.
func billingError(t *testing.T, err error) *billing.Error {
	t.Helper()
	var be *billing.Error
	if !errors.As(err, &be) {
		t.Fatalf("error %v (%T) is not a *billing.Error", err, err)
	}
	return be
}

func TestNew(t *testing.T) {
	tests := []struct {
		name, url, token string
		wantErr          string // empty: no error
	}{
		{"http", "http://billing.internal:8080", "tok", ""},
		{"https with prefix and slash", "https://example.com/billing/", "tok", ""},
		{"upper-case scheme", "HTTPS://example.com", "tok", ""},
		{"empty", "", "tok", "absolute http(s)"},
		{"relative", "/v1", "tok", "absolute http(s)"},
		{"no host", "http://", "tok", "absolute http(s)"},
		{"other scheme", "ftp://example.com", "tok", "absolute http(s)"},
		{"opaque", "http:example.com", "tok", "absolute http(s)"},
		{"unparsable", "http://exa mple.com/%zz", "tok", "not a valid URL"},
		{"credentials", "https://bob:hunter2@example.com", "tok", "must not carry credentials"},
		{"query", "https://example.com/?x=1", "tok", "query"},
		{"fragment", "https://example.com/#f", "tok", "fragment"},
		{"no token", "https://example.com", "", "BILLING_TOKEN is required"},
		{"token with a newline", "https://example.com", "secret\nX-Evil: 1", "visible ASCII"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := billing.New(billing.Config{URL: tt.url, Token: tt.token})
			if tt.wantErr == "" {
				if err != nil || c == nil {
					t.Fatalf("New(%q) = %v, %v; want a client", tt.url, c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New(%q) error = %v; want one containing %q", tt.url, err, tt.wantErr)
			}
			for _, secret := range []string{"hunter2", "secret"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q reveals a secret", err)
				}
			}
		})
	}
}

func TestMethods(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// call runs against a fake holding the account of tenant t-1.
		call  func(c *billing.Client) (billing.Account, error)
		check func(t *testing.T, srv *billingfake.Server, seeded, got billing.Account)
	}{
		{"create", func(c *billing.Client) (billing.Account, error) {
			return c.Create(ctx, newAccount("t-2"), "k-create")
		}, func(t *testing.T, srv *billingfake.Server, _, got billing.Account) {
			want := billing.Account{TenantID: "t-2", AccountID: got.AccountID, Slug: "acme", DisplayName: "Acme Corp",
				Plan: "standard", Status: billing.StatusActive, CustomerRef: "cus_123", CreatedAt: start.Add(time.Second), UpdatedAt: start.Add(time.Second)}
			if got != want || !strings.HasPrefix(got.AccountID, "acct_") {
				t.Errorf("got %+v; want %+v with an acct_ id", got, want)
			}
			if stored, _ := srv.Account("t-2"); stored != got {
				t.Errorf("fake holds %+v; client got %+v", stored, got)
			}
		}},
		{"create without customer ref", func(c *billing.Client) (billing.Account, error) {
			a := newAccount("t-2")
			a.CustomerRef = ""
			return c.Create(ctx, a, "k-create")
		}, func(t *testing.T, srv *billingfake.Server, _, got billing.Account) {
			if got.CustomerRef != "" || got.TenantID != "t-2" {
				t.Errorf("got %+v; want t-2 without a customer ref", got)
			}
		}},
		{"get", func(c *billing.Client) (billing.Account, error) {
			return c.Get(ctx, "t-1")
		}, func(t *testing.T, _ *billingfake.Server, seeded, got billing.Account) {
			if got != seeded {
				t.Errorf("got %+v; want %+v", got, seeded)
			}
		}},
		{"set plan", func(c *billing.Client) (billing.Account, error) {
			return c.SetPlan(ctx, "t-1", "enterprise", "k-plan")
		}, func(t *testing.T, srv *billingfake.Server, seeded, got billing.Account) {
			if got.Plan != "enterprise" || got.AccountID != seeded.AccountID || !got.UpdatedAt.After(seeded.UpdatedAt) || got.CreatedAt != seeded.CreatedAt {
				t.Errorf("got %+v; want enterprise, same account, later updated_at", got)
			}
			if stored, _ := srv.Account("t-1"); stored.Plan != "enterprise" {
				t.Errorf("fake has plan %q", stored.Plan)
			}
		}},
		{"pause", func(c *billing.Client) (billing.Account, error) {
			return c.SetStatus(ctx, "t-1", billing.StatusPaused, "payment overdue", "k-pause")
		}, func(t *testing.T, srv *billingfake.Server, seeded, got billing.Account) {
			if got.Status != billing.StatusPaused || !got.UpdatedAt.After(seeded.UpdatedAt) {
				t.Errorf("got %+v; want paused with a later updated_at", got)
			}
			if stored, _ := srv.Account("t-1"); stored.Status != billing.StatusPaused {
				t.Errorf("fake has status %q", stored.Status)
			}
		}},
		{"close then reopen", func(c *billing.Client) (billing.Account, error) {
			if _, err := c.SetStatus(ctx, "t-1", billing.StatusClosed, "", "k-close"); err != nil {
				return billing.Account{}, err
			}
			return c.SetStatus(ctx, "t-1", billing.StatusActive, "", "k-reopen")
		}, func(t *testing.T, srv *billingfake.Server, _, got billing.Account) {
			if got.Status != billing.StatusActive || srv.Writes() != 3 {
				t.Errorf("got %+v after %d writes; want active after 3", got, srv.Writes())
			}
		}},
		{"delete", func(c *billing.Client) (billing.Account, error) {
			return billing.Account{}, c.Delete(ctx, "t-1", "k-delete")
		}, func(t *testing.T, srv *billingfake.Server, _, _ billing.Account) {
			if a, ok := srv.Account("t-1"); ok {
				t.Errorf("account %+v still there", a)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c := setup(t, billingfake.Options{})
			seeded := mustCreate(t, c, "t-1")
			got, err := tt.call(c)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			tt.check(t, srv, seeded, got)
		})
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	const secret = "s3cr3t-token"
	type call func(c *billing.Client) error
	get := func(id string) call {
		return func(c *billing.Client) error { _, err := c.Get(ctx, id); return err }
	}
	create := func(a billing.NewAccount, key string) call {
		return func(c *billing.Client) error { _, err := c.Create(ctx, a, key); return err }
	}
	tests := []struct {
		name    string
		faults  []billingfake.Fault
		token   string        // the client's; empty: the right one
		timeout time.Duration // the client's; 0: the default
		call    call

		wantStatus     int // 0 with wantTransport
		wantTransport  bool
		wantIs         error
		wantTemporary  bool
		wantRetryAfter time.Duration
		wantDetail     string
		// after checks the fake once it has stopped, if set.
		after func(t *testing.T, srv *billingfake.Server)
	}{
		{name: "get missing", call: get("t-404"), wantStatus: 404, wantIs: billing.ErrNotFound, wantDetail: "t-404"},
		{name: "set plan missing", call: func(c *billing.Client) error { _, err := c.SetPlan(ctx, "t-404", "starter", "k"); return err },
			wantStatus: 404, wantIs: billing.ErrNotFound},
		{name: "set status missing", call: func(c *billing.Client) error {
			_, err := c.SetStatus(ctx, "t-404", billing.StatusPaused, "", "k")
			return err
		}, wantStatus: 404, wantIs: billing.ErrNotFound},
		{name: "delete missing", call: func(c *billing.Client) error { return c.Delete(ctx, "t-404", "k") },
			wantStatus: 404, wantIs: billing.ErrNotFound},
		{name: "create existing", call: create(newAccount("t-1"), "another-key"), wantStatus: 409, wantIs: billing.ErrExists, wantDetail: "t-1"},
		{name: "create invalid", call: create(billing.NewAccount{TenantID: "t-2", Plan: "gold"}, "k"), wantStatus: 422,
			wantDetail: `slug: required; display_name: required; plan: "gold" is not a known plan`},
		{name: "unknown plan", call: func(c *billing.Client) error { _, err := c.SetPlan(ctx, "t-1", "gold", "k"); return err },
			wantStatus: 422, wantDetail: `"gold"`},
		{name: "unknown status", call: func(c *billing.Client) error { _, err := c.SetStatus(ctx, "t-1", "frozen", "", "k"); return err },
			wantStatus: 422, wantDetail: `"frozen"`},
		{name: "wrong token", token: "not-the-token", call: get("t-1"), wantStatus: 401},
		{name: "overloaded", faults: []billingfake.Fault{{Method: "GET", Path: "/v1/accounts/*", Status: 429, RetryAfter: 3 * time.Second}},
			call: get("t-1"), wantStatus: 429, wantTemporary: true, wantRetryAfter: 3 * time.Second},
		{name: "retry-after rounded up", faults: []billingfake.Fault{{Status: 503, RetryAfter: 1500 * time.Millisecond}},
			call: get("t-1"), wantStatus: 503, wantTemporary: true, wantRetryAfter: 2 * time.Second},
		{name: "server error", faults: []billingfake.Fault{{Method: "PUT", Path: "/v1/accounts/*/status", Status: 500}},
			call: func(c *billing.Client) error {
				_, err := c.SetStatus(ctx, "t-1", billing.StatusPaused, "", "k")
				return err
			}, wantStatus: 500, wantTemporary: true,
			after: func(t *testing.T, srv *billingfake.Server) {
				if a, _ := srv.Account("t-1"); a.Status != billing.StatusActive {
					t.Errorf("status %q; a fault before handling must not act", a.Status)
				}
			}},
		{name: "request timeout", faults: []billingfake.Fault{{Status: 408}}, call: get("t-1"), wantStatus: 408, wantTemporary: true},
		{name: "dropped connection", faults: []billingfake.Fault{{Method: "POST", Drop: true}},
			call: create(newAccount("t-2"), "k"), wantTransport: true, wantDetail: "POST /v1/accounts",
			after: func(t *testing.T, srv *billingfake.Server) {
				if _, ok := srv.Account("t-2"); ok || srv.Creates() != 1 {
					t.Errorf("%d creates; a drop before handling must not act", srv.Creates())
				}
			}},
		{name: "latency beyond the client's timeout", timeout: 100 * time.Millisecond,
			faults: []billingfake.Fault{{Method: "POST", Latency: 5 * time.Second}},
			call:   create(newAccount("t-2"), "k"), wantTransport: true, wantDetail: "POST /v1/accounts",
			after: func(t *testing.T, srv *billingfake.Server) {
				if _, ok := srv.Account("t-2"); ok {
					t.Error("the account exists; a request abandoned during the delay must not act")
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := setup(t, billingfake.Options{Token: secret})
			mustCreate(t, newClient(t, srv.URL(), secret, nil), "t-1")
			for _, f := range tt.faults {
				srv.Inject(f)
			}
			tok := tt.token
			if tok == "" {
				tok = secret
			}
			var hc *http.Client
			if tt.timeout > 0 {
				hc = &http.Client{Timeout: tt.timeout}
			}
			started := time.Now()
			err := tt.call(newClient(t, srv.URL(), tok, hc))
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q reveals the token", err)
			}
			if !strings.Contains(err.Error(), tt.wantDetail) {
				t.Errorf("error %q does not mention %q", err, tt.wantDetail)
			}
			if tt.wantTransport {
				var be *billing.Error
				if errors.As(err, &be) {
					t.Fatalf("got *billing.Error %v; want a transport error", be)
				}
				if tt.timeout > 0 {
					var ne net.Error
					if !errors.As(err, &ne) || !ne.Timeout() {
						t.Errorf("error %v is not a timeout", err)
					}
					if d := time.Since(started); d > 2*time.Second {
						t.Errorf("took %v; the client's timeout is %v", d, tt.timeout)
					}
				}
			} else {
				be := billingError(t, err)
				if be.Status != tt.wantStatus || be.Temporary() != tt.wantTemporary || be.RetryAfterDuration() != tt.wantRetryAfter {
					t.Errorf("status %d, temporary %v, retry after %v; want %d, %v, %v",
						be.Status, be.Temporary(), be.RetryAfterDuration(), tt.wantStatus, tt.wantTemporary, tt.wantRetryAfter)
				}
				if be.Type == "" || be.Title == "" || be.Method == "" || !strings.HasPrefix(be.Path, "/v1/accounts") {
					t.Errorf("incomplete error %+v", be)
				}
			}
			for _, kind := range []error{billing.ErrNotFound, billing.ErrExists} {
				if got, want := errors.Is(err, kind), kind == tt.wantIs; got != want {
					t.Errorf("errors.Is(err, %v) = %v; want %v", kind, got, want)
				}
			}
			if tt.after != nil {
				srv.Close()
				tt.after(t, srv)
			}
		})
	}
}

// TestRefusedArguments: arguments that cannot be sent fail at once,
// permanently, without a request.
func TestRefusedArguments(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		call func(c *billing.Client) error
	}{
		{"get empty tenant", func(c *billing.Client) error { _, err := c.Get(ctx, ""); return err }},
		{"delete dot-dot tenant", func(c *billing.Client) error { return c.Delete(ctx, "..", "k") }},
		{"set plan empty tenant", func(c *billing.Client) error { _, err := c.SetPlan(ctx, "", "starter", "k"); return err }},
		{"create without key", func(c *billing.Client) error { _, err := c.Create(ctx, newAccount("t-1"), ""); return err }},
		{"key with a space", func(c *billing.Client) error { _, err := c.SetPlan(ctx, "t-1", "starter", "a b"); return err }},
		{"key with a newline", func(c *billing.Client) error {
			_, err := c.SetStatus(ctx, "t-1", billing.StatusPaused, "", "a\nb")
			return err
		}},
		{"key too long", func(c *billing.Client) error { return c.Delete(ctx, "t-1", strings.Repeat("k", 256)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c := setup(t, billingfake.Options{})
			var requests atomic.Int32
			srv.SetHook(func(*http.Request) { requests.Add(1) })
			be := billingError(t, tt.call(c))
			if be.Status != 0 || be.Temporary() || errors.Is(be, billing.ErrNotFound) || !strings.Contains(be.Error(), "not sent") {
				t.Errorf("got %v (status %d, temporary %v); want a permanent refusal to send", be, be.Status, be.Temporary())
			}
			if n := requests.Load(); n != 0 {
				t.Errorf("%d requests reached billing", n)
			}
		})
	}
	t.Run("255-character key is fine", func(t *testing.T) {
		_, c := setup(t, billingfake.Options{})
		if _, err := c.Create(ctx, newAccount("t-1"), strings.Repeat("k", 255)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestIdempotentReplay(t *testing.T) {
	ctx := context.Background()
	srv, c := setup(t, billingfake.Options{})

	first, err := c.Create(ctx, newAccount("t-1"), "key-1")
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Create(ctx, newAccount("t-1"), "key-1")
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	if again != first || srv.Creates() != 1 || srv.Writes() != 1 {
		t.Errorf("replay got %+v (creates %d, writes %d); want %+v from one create", again, srv.Creates(), srv.Writes(), first)
	}

	other := newAccount("t-1")
	other.DisplayName = "Acme Inc"
	_, err = c.Create(ctx, other, "key-1")
	if be := billingError(t, err); be.Status != 422 || be.Temporary() || errors.Is(err, billing.ErrExists) {
		t.Errorf("same key, other body: got %v; want a permanent 422", err)
	}
	_, err = c.SetPlan(ctx, "t-1", "starter", "key-1")
	if be := billingError(t, err); be.Status != 422 {
		t.Errorf("same key, other path: got %v; want 422", err)
	}

	// A replay answers with the first response even when the account has
	// changed since: billing does not act again.
	paused, err := c.SetStatus(ctx, "t-1", billing.StatusPaused, "", "pause-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetStatus(ctx, "t-1", billing.StatusActive, "", "resume-1"); err != nil {
		t.Fatal(err)
	}
	replayed, err := c.SetStatus(ctx, "t-1", billing.StatusPaused, "", "pause-1")
	if err != nil || replayed != paused {
		t.Errorf("replayed pause = %+v, %v; want the first response %+v", replayed, err, paused)
	}
	if a, _ := srv.Account("t-1"); a.Status != billing.StatusActive || srv.Writes() != 3 {
		t.Errorf("status %q after %d writes; want active after 3", a.Status, srv.Writes())
	}

	// A replayed delete succeeds again instead of finding nothing.
	for i := range 2 {
		if err := c.Delete(ctx, "t-1", "delete-1"); err != nil {
			t.Fatalf("delete %d: %v", i, err)
		}
	}
	if srv.Writes() != 4 {
		t.Errorf("%d writes; want 4", srv.Writes())
	}
}

func TestConcurrentRetriesActOnce(t *testing.T) {
	srv, c := setup(t, billingfake.Options{})
	const n = 8
	got := make([]billing.Account, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i], errs[i] = c.Create(context.Background(), newAccount("t-1"), "same-key") })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || got[i] != got[0] {
			t.Errorf("call %d: %+v, %v; want %+v", i, got[i], errs[i], got[0])
		}
	}
	if srv.Creates() != 1 {
		t.Errorf("%d creates; want 1", srv.Creates())
	}
}

// TestLostResponse: billing acted but the client never heard; a retry with
// the same key returns the stored success, and a new key finds the account.
func TestLostResponse(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name          string
		fault         billingfake.Fault
		timeout       time.Duration
		wantTemporary bool // a *billing.Error; otherwise a transport error
	}{
		{"5xx after acting", billingfake.Fault{Method: "POST", Path: "/v1/accounts", Times: 1, Status: 502, AfterHandling: true}, 0, true},
		{"connection dropped after acting", billingfake.Fault{Method: "POST", Times: 1, Drop: true, AfterHandling: true}, 0, false},
		{"no status means dropped", billingfake.Fault{Method: "POST", Times: 1, AfterHandling: true}, 0, false},
		{"timeout after acting", billingfake.Fault{Method: "POST", Times: 1, Latency: 5 * time.Second, AfterHandling: true}, 100 * time.Millisecond, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c := setup(t, billingfake.Options{})
			srv.Inject(tt.fault)
			lossy := c
			if tt.timeout > 0 {
				lossy = newClient(t, srv.URL(), billingfake.DefaultToken, &http.Client{Timeout: tt.timeout})
			}
			_, err := lossy.Create(ctx, newAccount("t-1"), "activate-t-1")
			if err == nil {
				t.Fatal("no error")
			}
			var be *billing.Error
			if isBE := errors.As(err, &be); isBE != tt.wantTemporary || (isBE && !be.Temporary()) {
				t.Fatalf("error %v; want temporary *billing.Error: %v", err, tt.wantTemporary)
			}
			stored, ok := srv.Account("t-1")
			if !ok || srv.Creates() != 1 {
				t.Fatalf("account present %v after %d creates; want it created once", ok, srv.Creates())
			}

			got, err := c.Create(ctx, newAccount("t-1"), "activate-t-1")
			if err != nil || got != stored {
				t.Errorf("retry = %+v, %v; want the stored %+v", got, err, stored)
			}
			if _, err := c.Create(ctx, newAccount("t-1"), "another-key"); !errors.Is(err, billing.ErrExists) {
				t.Errorf("new key: %v; want ErrExists", err)
			}
			if srv.Creates() != 1 {
				t.Errorf("%d creates; want 1", srv.Creates())
			}
		})
	}
}

func TestFaults(t *testing.T) {
	status := func(err error) int {
		if err == nil {
			return 200
		}
		var be *billing.Error
		if errors.As(err, &be) {
			return be.Status
		}
		return -1
	}
	tests := []struct {
		name   string
		faults []billingfake.Fault
		calls  []func(c *billing.Client) error
		want   []int // per call: 200 for success, -1 for a transport error
	}{
		{"times", []billingfake.Fault{{Status: 503, Times: 2}}, repeat(3, getT1), []int{503, 503, 200}},
		{"forever", []billingfake.Fault{{Status: 500}}, repeat(3, getT1), []int{500, 500, 500}},
		{"first match wins, then the next",
			[]billingfake.Fault{{Method: "GET", Path: "/v1/accounts/*", Status: 503, Times: 1}, {Method: "*", Status: 500, Times: 1}},
			repeat(3, getT1), []int{503, 500, 200}},
		{"method must match", []billingfake.Fault{{Method: "PUT", Status: 500}}, repeat(1, getT1), []int{200}},
		{"path segments must match",
			[]billingfake.Fault{{Path: "/v1/accounts/*/status", Status: 500}},
			[]func(*billing.Client) error{setPlanT1, setStatusT1, getT1}, []int{200, 500, 200}},
		{"literal path", []billingfake.Fault{{Path: "/v1/accounts/t-2", Status: 500}},
			[]func(*billing.Client) error{getT1, getT2}, []int{200, 500}},
		{"drop then recover", []billingfake.Fault{{Drop: true, Times: 1}}, repeat(2, getT1), []int{-1, 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c := setup(t, billingfake.Options{})
			mustCreate(t, c, "t-1")
			for _, f := range tt.faults {
				srv.Inject(f)
			}
			for i, call := range tt.calls {
				err := call(c)
				if got := status(err); got != tt.want[i] {
					t.Errorf("call %d: %v (%d); want %d", i, err, got, tt.want[i])
				}
			}
		})
	}

	t.Run("clear", func(t *testing.T) {
		srv, c := setup(t, billingfake.Options{})
		mustCreate(t, c, "t-1")
		srv.Inject(billingfake.Fault{Status: 500})
		if status(getT1(c)) != 500 {
			t.Fatal("fault not applied")
		}
		srv.ClearFaults()
		if err := getT1(c); err != nil {
			t.Fatalf("after ClearFaults: %v", err)
		}
	})
	t.Run("latency only", func(t *testing.T) {
		srv, c := setup(t, billingfake.Options{})
		mustCreate(t, c, "t-1")
		srv.Inject(billingfake.Fault{Latency: 200 * time.Millisecond, Times: 1})
		began := time.Now()
		if err := getT1(c); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(began); d < 200*time.Millisecond {
			t.Errorf("took %v; want at least the latency", d)
		}
	})
}

func repeat(n int, f func(*billing.Client) error) []func(*billing.Client) error {
	out := make([]func(*billing.Client) error, n)
	for i := range out {
		out[i] = f
	}
	return out
}

func getT1(c *billing.Client) error {
	_, err := c.Get(context.Background(), "t-1")
	return err
}

func getT2(c *billing.Client) error {
	_, err := c.Get(context.Background(), "t-2")
	return err
}

func setPlanT1(c *billing.Client) error {
	_, err := c.SetPlan(context.Background(), "t-1", "enterprise", "plan-key")
	return err
}

func setStatusT1(c *billing.Client) error {
	_, err := c.SetStatus(context.Background(), "t-1", billing.StatusPaused, "", "status-key")
	return err
}

// TestRequests checks what the client sends.
func TestRequests(t *testing.T) {
	ctx := context.Background()
	srv, c := setup(t, billingfake.Options{})
	type seen struct {
		method, path, auth, key, contentType, body string
	}
	rec := faultinject.Record(srv.SetHook, func(r *http.Request) seen {
		b, _ := io.ReadAll(r.Body)
		return seen{r.Method, r.URL.EscapedPath(), r.Header.Get("Authorization"), r.Header.Get("Idempotency-Key"),
			r.Header.Get("Content-Type"), string(b)}
	})
	const odd = "tenant/with space"
	a := newAccount(odd)
	a.CustomerRef = ""
	if _, err := c.Create(ctx, a, "k1"); err != nil {
		t.Fatal(err)
	}
	if acct, err := c.Get(ctx, odd); err != nil || acct.TenantID != odd {
		t.Fatalf("Get = %+v, %v", acct, err)
	}
	if _, err := c.SetPlan(ctx, odd, "starter", "k2"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetStatus(ctx, odd, billing.StatusPaused, "overdue", "k3"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetStatus(ctx, odd, billing.StatusActive, "", "k4"); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, odd, "k5"); err != nil {
		t.Fatal(err)
	}
	const p = "/v1/accounts/tenant%2Fwith%20space"
	bearer := "Bearer " + billingfake.DefaultToken
	want := []seen{
		{"POST", "/v1/accounts", bearer, "k1", "application/json", `{"tenant_id":"tenant/with space","slug":"acme","display_name":"Acme Corp","plan":"standard"}`},
		{"GET", p, bearer, "", "", ""},
		{"PUT", p + "/plan", bearer, "k2", "application/json", `{"plan":"starter"}`},
		{"PUT", p + "/status", bearer, "k3", "application/json", `{"status":"paused","reason":"overdue"}`},
		{"PUT", p + "/status", bearer, "k4", "application/json", `{"status":"active"}`},
		{"DELETE", p, bearer, "k5", "", ""},
	}
	got := rec.Seen()
	if len(got) != len(want) {
		t.Fatalf("got %d requests; want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

// TestResponses covers responses the fake never sends: non-problem
// errors, odd successes, a base path and redirects.
func TestResponses(t *testing.T) {
	ctx := context.Background()
	account := `{"tenant_id":"t-1","account_id":"acct_1","slug":"acme","display_name":"Acme","plan":"starter","status":"active","customer_ref":"","created_at":"2026-03-01T12:00:00Z","updated_at":"2026-03-01T12:00:00Z"}`
	tests := []struct {
		name    string
		base    string // appended to the server's URL
		handler http.HandlerFunc
		check   func(t *testing.T, acct billing.Account, err error)
	}{
		{"html error page", "", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(502)
			fmt.Fprint(w, "<html>\n<body>upstream\tdown</body></html>")
		}, func(t *testing.T, _ billing.Account, err error) {
			be := billingError(t, err)
			if be.Type != "" || be.Title != "Bad Gateway" || be.Detail != "<html> <body>upstream down</body></html>" || !be.Temporary() {
				t.Errorf("got %+v", be)
			}
		}},
		{"404 page is not a missing account", "", func(w http.ResponseWriter, r *http.Request) {
			http.NotFound(w, r)
		}, func(t *testing.T, _ billing.Account, err error) {
			if be := billingError(t, err); be.Status != 404 || errors.Is(err, billing.ErrNotFound) {
				t.Errorf("got %v, ErrNotFound %v; want a 404 that is not ErrNotFound", err, errors.Is(err, billing.ErrNotFound))
			}
		}},
		{"problem without a type or title", "", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(404)
			fmt.Fprint(w, `{"status":404,"detail":"no such account"}`)
		}, func(t *testing.T, _ billing.Account, err error) {
			be := billingError(t, err)
			if be.Type != "about:blank" || be.Title != "Not Found" || be.Detail != "no such account" || !errors.Is(err, billing.ErrNotFound) {
				t.Errorf("got %+v", be)
			}
		}},
		{"long body truncated", "", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(500)
			fmt.Fprint(w, strings.Repeat("é", 4000))
		}, func(t *testing.T, _ billing.Account, err error) {
			be := billingError(t, err)
			if len(be.Detail) > 260 || !strings.HasSuffix(be.Detail, "é…") {
				t.Errorf("detail of %d bytes: %q", len(be.Detail), be.Detail)
			}
		}},
		{"retry-after date", "", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
			w.WriteHeader(503)
		}, func(t *testing.T, _ billing.Account, err error) {
			if d := billingError(t, err).RetryAfterDuration(); d < 58*time.Minute || d > time.Hour {
				t.Errorf("retry after %v; want about an hour", d)
			}
		}},
		{"another tenant's account", "", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, strings.Replace(account, `"t-1"`, `"t-2"`, 1))
		}, func(t *testing.T, _ billing.Account, err error) {
			var be *billing.Error
			if err == nil || errors.As(err, &be) || !strings.Contains(err.Error(), `"t-2"`) {
				t.Errorf("got %v; want an error naming t-2", err)
			}
		}},
		{"unreadable success", "", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "<html>")
		}, func(t *testing.T, _ billing.Account, err error) {
			if err == nil || !strings.Contains(err.Error(), "unreadable") {
				t.Errorf("got %v", err)
			}
		}},
		{"response over 1 MiB", "", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, account[:len(account)-1]+`,"pad":"`+strings.Repeat("x", 1<<20)+`"}`)
		}, func(t *testing.T, _ billing.Account, err error) {
			if err == nil || !strings.Contains(err.Error(), "larger than") {
				t.Errorf("got %v", err)
			}
		}},
		{"base path", "/billing/", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/billing/v1/accounts/t-1" {
				http.Error(w, "wrong path "+r.URL.Path, 400)
				return
			}
			fmt.Fprint(w, account)
		}, func(t *testing.T, acct billing.Account, err error) {
			if err != nil || acct.AccountID != "acct_1" || !acct.CreatedAt.Equal(start) {
				t.Errorf("got %+v, %v", acct, err)
			}
		}},
		{"redirects are not followed", "", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/elsewhere" {
				fmt.Fprint(w, account)
				return
			}
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}, func(t *testing.T, _ billing.Account, err error) {
			if be := billingError(t, err); be.Status != 302 || be.Temporary() {
				t.Errorf("got %v; want a permanent 302", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewServer(tt.handler)
			t.Cleanup(ts.Close)
			acct, err := newClient(t, ts.URL+tt.base, "tok", nil).Get(ctx, "t-1")
			tt.check(t, acct, err)
		})
	}
}

func TestConnectionRefused(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL
	ts.Close()
	_, err := newClient(t, url, "tok", nil).Get(context.Background(), "t-1")
	var be *billing.Error
	if err == nil || errors.As(err, &be) || !strings.Contains(err.Error(), "GET /v1/accounts/t-1") {
		t.Fatalf("got %v; want a transport error naming the request", err)
	}
}

func TestContextCancelled(t *testing.T) {
	srv, c := setup(t, billingfake.Options{})
	srv.Inject(billingfake.Fault{Latency: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Get(ctx, "t-1")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v; want context.DeadlineExceeded", err)
	}
}
