package services

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/egress"
	"github.com/tenancyhq/tenancy/internal/httpapi"
	"github.com/tenancyhq/tenancy/internal/webhooks"
)

// NewWebhookService returns the subscriptions and dead-letter service,
// creating the streams and buckets webhooks need.
func NewWebhookService(ctx context.Context, core *Core, cfg config.Webhooks) (*webhooks.Service, error) {
	svc, _, _, err := openWebhooks(ctx, core, cfg)
	return svc, err
}

// openWebhooks sets up what both the API and the webhooker need, once.
func openWebhooks(ctx context.Context, core *Core, cfg config.Webhooks) (*webhooks.Service, *egress.Policy, jetstream.KeyValue, error) {
	policy, err := egress.NewPolicy(cfg.AllowCIDRs)
	if err != nil {
		return nil, nil, nil, err
	}
	state, err := awaitJetStream(ctx, core.Log, "webhook streams", func(ctx context.Context) (jetstream.KeyValue, error) {
		return webhooks.EnsureStreams(ctx, core.JS, core.opts.Replicas)
	})
	if err != nil {
		return nil, nil, nil, err
	}
	secrets, err := awaitJetStream(ctx, core.Log, "webhook secrets", func(ctx context.Context) (*webhooks.Secrets, error) {
		return webhooks.OpenSecrets(ctx, core.JS, core.Keyring, core.opts.Replicas)
	})
	if err != nil {
		return nil, nil, nil, err
	}
	svc := webhooks.NewService(webhooks.ServiceOptions{
		Deps: core.CommandDeps(), JS: core.JS, Secrets: secrets, Policy: policy, AllowHTTP: cfg.AllowHTTP, Log: core.Log,
		TenantExists: func(ctx context.Context, id string) error {
			_, _, err := core.Tenants.Get(ctx, id)
			return err
		},
	})
	return svc, policy, state, nil
}

// Webhooker is the delivery service: the webhooker and its attempt log.
type Webhooker struct {
	Service  *webhooks.Service
	worker   *webhooks.Webhooker
	attempts *webhooks.AttemptLog
}

// NewWebhooker builds the delivery service; rs records attempts.
func NewWebhooker(ctx context.Context, core *Core, cfg config.Webhooks, rs *ReadSide) (*Webhooker, error) {
	if len(cfg.Schedule) == 0 {
		cfg.Schedule = config.DefaultRetrySchedule
	}
	svc, policy, state, err := openWebhooks(ctx, core, cfg)
	if err != nil {
		return nil, err
	}
	attempts := webhooks.NewAttemptLog(rs.Pool, core.Log)
	w := webhooks.New(webhooks.Options{
		JS: core.JS, Store: core.Store, Secrets: svc.Secrets(), Sender: webhooks.NewSender(policy, cfg.Timeout),
		Disable: svc.Disable, Attempts: attempts, State: state, Schedule: cfg.Schedule, MaxBody: cfg.MaxBody,
		DisableAfter: cfg.DisableAfter, EventURL: httpapi.EventURL, AckWait: cfg.Timeout + 5*time.Second,
		Clock: core.opts.Clock, Log: core.Log,
	})
	return &Webhooker{Service: svc, worker: w, attempts: attempts}, nil
}

// Run delivers until ctx ends.
func (w *Webhooker) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.attempts.Run(gctx) })
	g.Go(func() error { return w.worker.Run(gctx) })
	return g.Wait()
}
