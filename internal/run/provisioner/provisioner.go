// Package provisioner wires the saga worker and the reconciler with the
// configured identity provider and billing system: what cmd/provisioner
// runs, what `tenancy dev` runs in process, and what `tenancy reconcile`
// calls.
package provisioner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/backoff"
	"github.com/tenancyhq/tenancy/internal/billing"
	"github.com/tenancyhq/tenancy/internal/compliance"
	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/health"
	"github.com/tenancyhq/tenancy/internal/keycloak"
	"github.com/tenancyhq/tenancy/internal/mail"
	"github.com/tenancyhq/tenancy/internal/readmodel"
	"github.com/tenancyhq/tenancy/internal/realmsync"
	"github.com/tenancyhq/tenancy/internal/run/boot"
	"github.com/tenancyhq/tenancy/internal/saga"
	"github.com/tenancyhq/tenancy/internal/timer"
)

// Integrations builds the clients of the configured external systems.
func Integrations(c config.Integrations, core *boot.Core) (saga.Integrations, error) {
	in := saga.Integrations{Keys: core.Keyring, Catalog: core.Catalog, Directory: core.Directory, ClientSecrets: core.ClientSecrets}
	if c.KeycloakURL != "" {
		kc, err := keycloak.New(keycloak.Config{URL: c.KeycloakURL, Realm: c.KeycloakRealm, ClientID: c.KeycloakClientID, ClientSecret: c.KeycloakClientSecret})
		if err != nil {
			return in, err
		}
		in.Keycloak = kc
		if c.KeycloakRealmSMTP != "" {
			if err := json.Unmarshal([]byte(c.KeycloakRealmSMTP), &in.RealmSMTP); err != nil {
				return in, fmt.Errorf("KEYCLOAK_REALM_SMTP must be a JSON object of strings: %w", err)
			}
		}
	}
	if c.BillingURL != "" {
		b, err := billing.New(billing.Config{URL: c.BillingURL, Token: c.BillingToken})
		if err != nil {
			return in, fmt.Errorf("BILLING_URL: %w", err)
		}
		in.Billing = b
	}
	return in, nil
}

// MailSender is the relay of c's TENANCY_SMTP_URL, or nil without one.
func MailSender(c config.Integrations) (mail.Sender, error) {
	if c.Mail.SMTPURL == "" {
		return nil, nil
	}
	s, err := mail.NewSMTP(c.Mail.SMTPURL, c.Mail.From)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Options configure the saga worker.
type Options struct {
	Integrations saga.Integrations
	// ReadSide lists the tenants periodic reconciliation looks at; without
	// it only plan changes and `tenancy reconcile --tenant` reconcile.
	ReadSide          *boot.ReadSide
	ReconcileInterval time.Duration
	Concurrency       int
	Backoff           saga.Backoff
	RetryDelay        time.Duration
	// ComplianceSweep is how often the compliance sweep runs
	// (compliance.DefaultSweepEvery when 0).
	ComplianceSweep time.Duration
	// MailSender, when set, drains the mail outbox: the relay of
	// TENANCY_SMTP_URL, or dev's sink. Without it mail stays queued.
	MailSender mail.Sender
}

// Provisioner is the saga worker, the reconciler and, with a read side,
// the compliance reactor and the timers it sets.
type Provisioner struct {
	Worker     *saga.Worker
	Reconciler *saga.Reconciler
	Compliance *compliance.Reactor
	// RealmSync keeps tenants' realms in step with their directories
	// (without Keycloak it only erases deleted users' keys).
	RealmSync *realmsync.Reactor
	timers    *timer.Timers
	waiter    *readmodel.Waiter
	interval  time.Duration
	// mail and mailSender send Tenancy's own mail (both nil without a
	// sender).
	mail       *mail.Outbox
	mailSender mail.Sender
	log        *slog.Logger
}

// TimerConsumer is the durable consumer every provisioner shares to handle
// timer firings.
const TimerConsumer = "provisioner-timers"

// Run runs them all until ctx ends.
func (p *Provisioner) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.Reconciler.Run(gctx, p.interval) })
	g.Go(func() error { return p.Worker.Run(gctx) })
	if p.RealmSync != nil {
		g.Go(func() error { return p.RealmSync.Run(gctx) })
	}
	if p.mailSender != nil {
		g.Go(func() error { return p.mail.Run(gctx, p.mailSender, p.log) })
	}
	if p.Compliance != nil {
		g.Go(func() error { return p.waiter.Run(gctx) })
		g.Go(func() error { return p.Compliance.Run(gctx) })
		g.Go(func() error {
			return p.timers.Run(gctx, TimerConsumer, p.Compliance.Log, compliance.Timers(p.Compliance))
		})
	}
	return g.Wait()
}

// newCompliance returns the compliance reactor and its timers on core, or
// nil without a read side (it finds a customer's tenants there).
func newCompliance(ctx context.Context, core *boot.Core, rs *boot.ReadSide, sweepEvery time.Duration) (*compliance.Reactor, *timer.Timers, *readmodel.Waiter, error) {
	if rs == nil {
		return nil, nil, nil, nil
	}
	timers, err := boot.Await(ctx, core.Log, "timers", func(ctx context.Context) (*timer.Timers, error) {
		return timer.Open(ctx, core.JS, core.Opts.Replicas)
	})
	if err != nil {
		return nil, nil, nil, err
	}
	waiter := readmodel.NewWaiter(rs.URL, rs.Pool, core.Log)
	reader := readmodel.NewReader(rs.Pool)
	reads := app.NewReads(reader, waiter, core.Store, 10*time.Second)
	r := &compliance.Reactor{JS: core.JS, Stream: core.Opts.Stream, Customers: core.Customers, Tenants: core.Tenants, Directory: reads.Directory(),
		Timers: timers, Keys: core.Keyring, PastGrace: reader.CustomersPastGrace, SweepEvery: sweepEvery, Reader: core.Reader(), Poison: core.Quarantined("compliance"), Log: core.Log}
	return r, timers, waiter, nil
}

// NewReconciler returns a reconciler on core; rs, when set, lists the
// tenants a periodic pass looks at.
func NewReconciler(core *boot.Core, in saga.Integrations, rs *boot.ReadSide) *saga.Reconciler {
	r := &saga.Reconciler{Tenants: core.Tenants, In: in, Log: core.Log}
	if rs != nil {
		r.List = readmodel.NewReader(rs.Pool).TenantIDsInStates("active", "suspended")
	}
	return r
}

// New returns the saga worker on core.
func New(ctx context.Context, core *boot.Core, o Options) (*Provisioner, error) {
	if o.Backoff.Attempts == 0 {
		o.Backoff = saga.Backoff{Attempts: 5, Pause: backoff.Policy{Base: 200 * time.Millisecond, Max: 10 * time.Second}}
	}
	if o.Integrations.Keys == nil {
		o.Integrations.Keys = core.Keyring
	}
	if o.Integrations.Catalog == nil {
		o.Integrations.Catalog = core.Catalog
	}
	if o.Integrations.Directory == nil {
		o.Integrations.Directory, o.Integrations.ClientSecrets = core.Directory, core.ClientSecrets
	}
	runner := &saga.Runner{Tenants: core.Tenants, Plan: saga.NewPlan(o.Integrations), Backoff: o.Backoff, Log: core.Log, Clock: core.Opts.Clock}
	rec := NewReconciler(core, o.Integrations, o.ReadSide)
	host, _ := os.Hostname()
	w, err := boot.Await(ctx, core.Log, "saga leases", func(ctx context.Context) (*saga.Worker, error) {
		return saga.NewWorker(ctx, core.JS, runner, rec, saga.WorkerConfig{
			Stream: core.Opts.Stream, Concurrency: o.Concurrency, Instance: host + "/" + app.NewID(),
			Replicas: core.Opts.Replicas, RetryDelay: o.RetryDelay, Reader: core.Reader(), Poison: core.Quarantined("provisioner"),
		}, core.Log)
	})
	if err != nil {
		return nil, err
	}
	comp, timers, waiter, err := newCompliance(ctx, core, o.ReadSide, o.ComplianceSweep)
	if err != nil {
		return nil, err
	}
	p := &Provisioner{Worker: w, Reconciler: rec, Compliance: comp, timers: timers, waiter: waiter, interval: o.ReconcileInterval, log: core.Log}
	if o.MailSender != nil {
		p.mailSender = o.MailSender
		if p.mail, err = boot.Await(ctx, core.Log, "mail outbox", func(ctx context.Context) (*mail.Outbox, error) {
			return mail.Ensure(ctx, core.JS, core.Opts.Replicas, core.Keyring)
		}); err != nil {
			return nil, err
		}
	} else {
		core.Log.WarnContext(ctx, "no TENANCY_SMTP_URL: Tenancy's own mail (invitations, sign-up codes) stays queued until a provisioner has one")
	}
	in := o.Integrations
	p.RealmSync = &realmsync.Reactor{JS: core.JS, Stream: core.Opts.Stream, Events: core.Store, Directory: in.Directory, Tenants: core.Tenants, Keys: core.Keyring,
		Reader: core.Reader(), Poison: core.Quarantined("realm-sync"), Log: core.Log}
	if in.Keycloak != nil {
		p.RealmSync.Syncer = &realmsync.Syncer{Keycloak: in.Keycloak, Secrets: in.ClientSecrets, EmailNewUsers: in.RealmSMTP["host"] != "", Log: core.Log}
	}
	return p, nil
}

// Main runs the provisioner as the environment configures it until ctx
// ends.
func Main(ctx context.Context, getenv config.Getenv, stderr io.Writer) error {
	cfg, err := config.LoadProvisioner(getenv)
	if err != nil {
		return err
	}
	svc, err := boot.Start(ctx, stderr, "provisioner", cfg.Service, nil)
	if err != nil {
		return err
	}
	defer svc.Close()
	in, err := Integrations(cfg.Integrations, svc.Core)
	if err != nil {
		return err
	}
	rs, err := boot.OpenReadSide(ctx, cfg.DatabaseURL, false, false)
	if err != nil {
		return err
	}
	defer rs.Close()
	sender, err := MailSender(cfg.Integrations)
	if err != nil {
		return err
	}
	p, err := New(ctx, svc.Core, Options{Integrations: in, ReadSide: rs, ReconcileInterval: cfg.Integrations.ReconcileInterval, MailSender: sender})
	if err != nil {
		return err
	}
	return boot.RunWorker(ctx, cfg.HTTPAddr, svc.Log, p.Run, health.Check{Name: "nats", Check: svc.Core.CheckNATS})
}
