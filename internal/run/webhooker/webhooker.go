// Package webhooker wires webhook delivery: the delivery worker with its
// sender, dead letters and attempt log. It is what cmd/webhooker runs, and
// what `tenancy dev` runs in process.
package webhooker

import (
	"context"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/consume"
	"github.com/tenancyhq/tenancy/internal/delivery"
	"github.com/tenancyhq/tenancy/internal/delivery/attempts"
	"github.com/tenancyhq/tenancy/internal/health"
	"github.com/tenancyhq/tenancy/internal/run/boot"
)

// Webhooker is the delivery worker and its attempt log.
type Webhooker struct {
	Webhooks *app.Webhooks
	worker   *delivery.Webhooker
	attempts *attempts.Log
}

// New builds the delivery service on core; rs records the attempts.
func New(ctx context.Context, core *boot.Core, cfg config.Webhooks, rs *boot.ReadSide) (*Webhooker, error) {
	if len(cfg.Schedule) == 0 {
		cfg.Schedule = config.DefaultRetrySchedule
	}
	hooks, err := boot.OpenWebhooks(ctx, core, cfg, nil)
	if err != nil {
		return nil, err
	}
	state, err := boot.Await(ctx, core.Log, "webhook endpoint health", func(ctx context.Context) (jetstream.KeyValue, error) {
		return delivery.EnsureState(ctx, core.JS, core.Opts.Replicas)
	})
	if err != nil {
		return nil, err
	}
	log := attempts.NewLog(rs.Pool, core.Log)
	w := delivery.New(delivery.Options{
		JS: core.JS, Store: core.Store, Secrets: hooks.Secrets, Queues: hooks.Queues, Sender: delivery.NewSender(hooks.Policy, cfg.Timeout),
		Disable: hooks.App.Disable, Attempts: log, State: state, Schedule: cfg.Schedule, MaxBody: cfg.MaxBody,
		DisableAfter: cfg.DisableAfter, EventURL: app.EventURL, AckWait: cfg.Timeout + 5*time.Second,
		Clock: core.Opts.Clock, Log: core.Log, Reader: core.Reader,
		Poison: func(ctx context.Context, reader string, m *consume.Message, err error) error {
			return core.Quarantined(reader)(ctx, m, err)
		},
	})
	return &Webhooker{Webhooks: hooks.App, worker: w, attempts: log}, nil
}

// Run delivers until ctx ends.
func (w *Webhooker) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.attempts.Run(gctx) })
	g.Go(func() error { return w.worker.Run(gctx) })
	return g.Wait()
}

// Main runs the webhooker as the environment configures it until ctx
// ends.
func Main(ctx context.Context, getenv config.Getenv, stderr io.Writer) error {
	cfg, err := config.LoadWebhooker(getenv)
	if err != nil {
		return err
	}
	svc, err := boot.Start(ctx, stderr, "webhooker", cfg.Service, nil)
	if err != nil {
		return err
	}
	defer svc.Close()
	// Attempts are recorded in PostgreSQL; the projector owns the schema,
	// but a webhooker started first must not fail on a missing table.
	rs, err := boot.OpenReadSide(ctx, cfg.DatabaseURL, false, true)
	if err != nil {
		return err
	}
	defer rs.Close()
	w, err := New(ctx, svc.Core, cfg.Webhooks, rs)
	if err != nil {
		return err
	}
	return boot.RunWorker(ctx, cfg.HTTPAddr, svc.Log, w.Run,
		health.Check{Name: "nats", Check: svc.Core.CheckNATS}, health.Check{Name: "postgres", Check: rs.Check})
}
