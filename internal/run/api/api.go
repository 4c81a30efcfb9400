// Package api wires the command and query HTTP API: the use cases on the
// core, the read side's queries, the idempotency store and the HTTP layer.
// It is what cmd/api runs, and what `tenancy dev` runs in process.
package api

import (
	"context"
	"io"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/delivery/attempts"
	"github.com/tenancyhq/tenancy/internal/health"
	"github.com/tenancyhq/tenancy/internal/httpapi"
	"github.com/tenancyhq/tenancy/internal/idempotency"
	"github.com/tenancyhq/tenancy/internal/keycloak"
	"github.com/tenancyhq/tenancy/internal/mail"
	"github.com/tenancyhq/tenancy/internal/readmodel"
	"github.com/tenancyhq/tenancy/internal/run/boot"
)

// Options configure the HTTP API.
type Options struct {
	Auth      *auth.Authenticator
	BodyLimit int64
	// Mounts serve extra handlers under path prefixes.
	Mounts map[string]http.Handler
	// Checks are extra readiness checks.
	Checks []health.Check
	// ReadSide serves queries; without it the query routes answer 503.
	ReadSide *boot.ReadSide
	// ReadWait bounds how long a read waits for its min_seq.
	ReadWait time.Duration
	// Webhooks configure subscriptions (URL policy).
	Webhooks config.Webhooks
	// Bootstrap, when set, makes the platform's own customer and tenants
	// before the API serves.
	Bootstrap *app.BootstrapOptions
}

// API is the HTTP API and what runs behind it.
type API struct {
	Server *httpapi.Server
	waiter *readmodel.Waiter
}

// Handler returns the HTTP handler.
func (a *API) Handler() http.Handler { return a.Server.Handler() }

// Run runs the API's background work (following projection progress) until
// ctx ends.
func (a *API) Run(ctx context.Context) error {
	if a.waiter == nil {
		<-ctx.Done()
		return nil
	}
	return a.waiter.Run(ctx)
}

// New builds the HTTP API on core.
func New(ctx context.Context, core *boot.Core, o Options) (*API, error) {
	idem, err := boot.Await(ctx, core.Log, "idempotency keys", func(ctx context.Context) (*idempotency.Store, error) {
		return idempotency.Open(ctx, core.JS, core.Opts.Replicas, core.Opts.Clock, core.Keyring, app.NewID)
	})
	if err != nil {
		return nil, err
	}
	mailbox, err := boot.Await(ctx, core.Log, "mail outbox", func(ctx context.Context) (*mail.Outbox, error) {
		return mail.Ensure(ctx, core.JS, core.Opts.Replicas, core.Keyring)
	})
	if err != nil {
		return nil, err
	}
	if o.Bootstrap != nil {
		if _, err := boot.Await(ctx, core.Log, "bootstrap", func(ctx context.Context) (struct{}, error) {
			return struct{}{}, app.Bootstrap(ctx, core.Customers, core.Tenants, *o.Bootstrap)
		}); err != nil {
			return nil, err
		}
	}
	deps := httpapi.Deps{
		Tenants: core.Tenants, Customers: core.Customers, Directory: core.Directory, SigningKeys: core.SigningKeys, Integrity: core.Integrity, Auth: o.Auth, Idempotency: idem,
		Logger: core.Log, NewID: app.NewID, Mounts: o.Mounts, BodyLimit: o.BodyLimit,
		Mail:   &app.Mail{Queue: mailbox, NewID: app.NewID, Now: core.Opts.Clock},
		Checks: append([]health.Check{{Name: "nats", Check: core.CheckNATS}}, o.Checks...),
	}
	if o.Auth != nil {
		// Not ready until the issuer's keys were fetched once; ready from
		// then on, through issuer outages (the keys are kept).
		deps.Checks = append(deps.Checks, health.Check{Name: "issuer", Check: o.Auth.Ready})
	}
	a := &API{}
	var reader *attempts.Reader
	if rs := o.ReadSide; rs != nil {
		deps.Checks = append(deps.Checks, health.Check{Name: "postgres", Check: rs.Check})
		a.waiter = readmodel.NewWaiter(rs.URL, rs.Pool, core.Log)
		reads := readmodel.NewReader(rs.Pool)
		deps.Reads = app.NewReads(reads, a.waiter, core.Store, o.ReadWait)
		deps.Customers = core.Customers.WithDirectory(deps.Reads.Directory())
		deps.Projections = boot.Projections(core, rs)
		reader = &attempts.Reader{Pool: rs.Pool}
	}
	hooks, err := boot.OpenWebhooks(ctx, core, o.Webhooks, reader)
	if err != nil {
		return nil, err
	}
	deps.Webhooks = hooks.App
	a.Server = httpapi.New(deps)
	return a, nil
}

// Accounts returns the administrator accounts of the configured identity
// provider, or nil when none is configured.
func Accounts(in config.Integrations) (app.AdminAccounts, error) {
	if in.KeycloakURL == "" {
		return nil, nil
	}
	return keycloak.New(keycloak.Config{URL: in.KeycloakURL, Realm: in.KeycloakRealm, ClientID: in.KeycloakClientID, ClientSecret: in.KeycloakClientSecret})
}

// Main runs the API as the environment configures it until ctx
// ends.
func Main(ctx context.Context, getenv config.Getenv, stderr io.Writer) error {
	cfg, err := config.LoadAPI(getenv)
	if err != nil {
		return err
	}
	accounts, err := Accounts(cfg.Integrations)
	if err != nil {
		return err
	}
	svc, err := boot.Start(ctx, stderr, "api", cfg.Service, accounts)
	if err != nil {
		return err
	}
	defer svc.Close()
	authn, err := auth.New(auth.Config{IssuerURL: cfg.OIDCIssuer, DiscoveryURL: cfg.OIDCDiscovery, Audience: cfg.OIDCAudience, Log: svc.Log,
		RealmIssuerBase: cfg.RealmIssuerBase, RealmDiscoveryBase: cfg.RealmDiscoveryBase, Realms: svc.Core.Tenants, RealmClientID: keycloak.TenantAppClientID})
	if err != nil {
		return err
	}
	rs, err := boot.OpenReadSide(ctx, cfg.DatabaseURL, false, false)
	if err != nil {
		return err
	}
	defer rs.Close()
	b := cfg.Bootstrap
	if b.AdminEmail == "" {
		b.AdminEmail = "admin@tenancy.invalid"
		svc.Log.Warn("TENANCY_ROOT_ADMIN_EMAIL is not set; the root tenant's administrator is admin@tenancy.invalid until you set it")
	}
	a, err := New(ctx, svc.Core, Options{Auth: authn, BodyLimit: cfg.BodyLimit, ReadSide: rs, ReadWait: cfg.ReadWait, Webhooks: cfg.Webhooks,
		Bootstrap: &app.BootstrapOptions{RootSlug: b.RootSlug, SharedSlug: b.SharedSlug, AdminEmail: b.AdminEmail}})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.Run(gctx) })
	g.Go(func() error { return boot.ListenAndServe(gctx, cfg.HTTPAddr, a.Handler(), svc.Log) })
	return g.Wait()
}
