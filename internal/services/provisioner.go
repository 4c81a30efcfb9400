package services

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/tenancyhq/tenancy/internal/billing"
	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/keycloak"
	"github.com/tenancyhq/tenancy/internal/readmodel"
	"github.com/tenancyhq/tenancy/internal/saga"
)

// Integrations builds the clients of the configured external systems.
func Integrations(c config.Integrations, core *Core) (saga.Integrations, error) {
	in := saga.Integrations{Keys: core.Keyring, Catalog: core.Catalog}
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

// ProvisionerOptions configure the saga worker.
type ProvisionerOptions struct {
	Integrations saga.Integrations
	// ReadSide lists the tenants periodic reconciliation looks at; without
	// it only plan changes and `tenancy reconcile --tenant` reconcile.
	ReadSide          *ReadSide
	ReconcileInterval time.Duration
	Concurrency       int
	Backoff           saga.Backoff
	RetryDelay        time.Duration
}

// Provisioner is the saga worker and the reconciler.
type Provisioner struct {
	Worker     *saga.Worker
	Reconciler *saga.Reconciler
	interval   time.Duration
}

// Run runs both until ctx ends.
func (p *Provisioner) Run(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- p.Reconciler.Run(ctx, p.interval) }()
	err := p.Worker.Run(ctx)
	if rerr := <-done; err == nil {
		err = rerr
	}
	return err
}

// NewReconciler returns a reconciler on core.
func NewReconciler(core *Core, in saga.Integrations, rs *ReadSide) *saga.Reconciler {
	r := &saga.Reconciler{Tenants: core.Tenants, In: in, Log: core.Log}
	if rs != nil {
		reader := readmodel.NewReader(rs.Pool)
		r.List = reader.TenantIDsInStates("active", "suspended")
	}
	return r
}

// NewProvisioner returns the saga worker on core.
func NewProvisioner(ctx context.Context, core *Core, o ProvisionerOptions) (*Provisioner, error) {
	if o.Backoff.Attempts == 0 {
		o.Backoff = saga.Backoff{Attempts: 5, Base: 200 * time.Millisecond, Max: 10 * time.Second}
	}
	if o.Integrations.Keys == nil {
		o.Integrations.Keys = core.Keyring
	}
	if o.Integrations.Catalog == nil {
		o.Integrations.Catalog = core.Catalog
	}
	runner := &saga.Runner{
		Tenants: core.Tenants,
		Plan:    saga.NewPlan(o.Integrations),
		Backoff: o.Backoff,
		Log:     core.Log,
		Clock:   core.opts.Clock,
	}
	rec := NewReconciler(core, o.Integrations, o.ReadSide)
	host, _ := os.Hostname()
	w, err := awaitJetStream(ctx, core.Log, "saga leases", func(ctx context.Context) (*saga.Worker, error) {
		return saga.NewWorker(ctx, core.JS, runner, rec, saga.WorkerConfig{
			Stream: core.opts.Stream, Concurrency: o.Concurrency, Instance: host + "/" + NewID(),
			Replicas: core.opts.Replicas, RetryDelay: o.RetryDelay,
		}, core.Log)
	})
	if err != nil {
		return nil, err
	}
	return &Provisioner{Worker: w, Reconciler: rec, interval: o.ReconcileInterval}, nil
}
