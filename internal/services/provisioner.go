package services

import (
	"context"
	"os"
	"time"

	"github.com/tenancyhq/tenancy/internal/saga"
)

// ProvisionerOptions configure the saga worker.
type ProvisionerOptions struct {
	Concurrency int
	Backoff     saga.Backoff
	RetryDelay  time.Duration
}

// NewProvisioner returns the saga worker on core.
func NewProvisioner(ctx context.Context, core *Core, o ProvisionerOptions) (*saga.Worker, error) {
	if o.Backoff.Attempts == 0 {
		o.Backoff = saga.Backoff{Attempts: 5, Base: 200 * time.Millisecond, Max: 10 * time.Second}
	}
	runner := &saga.Runner{
		Tenants: core.Tenants,
		Plan:    saga.NewPlan(saga.Integrations{Keys: core.Keyring}),
		Backoff: o.Backoff,
		Log:     core.Log,
		Clock:   core.opts.Clock,
	}
	host, _ := os.Hostname()
	return saga.NewWorker(ctx, core.JS, runner, saga.WorkerConfig{
		Stream: core.opts.Stream, Concurrency: o.Concurrency, Instance: host + "/" + NewID(),
		Replicas: core.opts.Replicas, RetryDelay: o.RetryDelay,
	}, core.Log)
}
