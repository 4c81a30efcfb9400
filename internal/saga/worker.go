package saga

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/consume"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/integrity"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/metrics"
	"github.com/tenancyhq/tenancy/internal/natsconn"
	"github.com/tenancyhq/tenancy/internal/tracing"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Triggers are the event types that start or resume a saga.
var Triggers = map[string]bool{
	events.TypeTenantActivationRequested: true,
	events.TypeTenantActivationCancelled: true,
	events.TypeTenantSuspended:           true,
	events.TypeTenantResumed:             true,
	events.TypeTenantArchived:            true,
	events.TypeTenantRestored:            true,
	events.TypeTenantDeleted:             true,
	events.TypeTenantProvisioningRetried: true,
}

// LeaseBucket holds per-tenant leases: one saga runner per tenant at a time,
// across every provisioner instance.
const LeaseBucket = "TENANCY_SAGA_LEASES"

// LeaseTTL is how long a lease outlives its holder's last renewal.
const LeaseTTL = 30 * time.Second

// WorkerConfig configures a worker.
type WorkerConfig struct {
	Stream   string
	Consumer string
	// Concurrency is how many sagas one instance runs at once.
	Concurrency int
	// Instance names this process in leases.
	Instance string
	Replicas int
	// RetryDelay is how long a saga that failed transiently waits before its
	// message is redelivered.
	RetryDelay time.Duration
	// Reader checks every event the worker reads; Poison hears of those
	// that fail (quarantined: no saga acts on them).
	Reader *integrity.Reader
	Poison func(context.Context, *consume.Message, error) error
}

// Worker feeds lifecycle events from a durable consumer, shared by every
// provisioner instance as a work queue, to the runner.
type Worker struct {
	cfg       WorkerConfig
	js        jetstream.JetStream
	runner    *Runner
	reconcile *Reconciler
	leases    jetstream.KeyValue
	log       *slog.Logger
}

// NewWorker creates the lease bucket and returns a worker.
// A plan change reaches the realm's claims and the billing account through
// the reconciler, when one is given.
func NewWorker(ctx context.Context, js jetstream.JetStream, runner *Runner, reconcile *Reconciler, cfg WorkerConfig, log *slog.Logger) (*Worker, error) {
	if cfg.Consumer == "" {
		cfg.Consumer = "provisioner"
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 30 * time.Second
	}
	if cfg.Replicas < 1 {
		cfg.Replicas = 1
	}
	if cfg.Reader == nil {
		store := eventstore.New(js, cfg.Stream)
		cfg.Reader = integrity.NewReader(integrity.NewLogChecker(store), store, 0)
	}
	kv, err := natsconn.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket: LeaseBucket, Description: "Tenancy saga leases (one runner per tenant)",
		History: 1, TTL: LeaseTTL, Storage: jetstream.FileStorage, Replicas: cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("saga: lease bucket: %w", err)
	}
	return &Worker{cfg: cfg, js: js, runner: runner, reconcile: reconcile, leases: kv, log: log}, nil
}

// Run consumes until ctx ends.
func (w *Worker) Run(ctx context.Context) error {
	// The consumer's backlog is a metric while this worker consumes it.
	defer metrics.WatchConsumers(w.js, metrics.Consumers{Stream: w.cfg.Stream, Group: w.cfg.Consumer, Name: w.cfg.Consumer})()
	src := consume.Source{Stream: w.cfg.Stream, Durable: &jetstream.ConsumerConfig{
		Durable:        w.cfg.Consumer,
		Description:    "Tenancy provisioner: lifecycle events that start sagas",
		FilterSubjects: []string{events.Subject("*", events.AggregateTenant, "*")},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        LeaseTTL,
		MaxAckPending:  w.cfg.Concurrency * 4,
		MaxDeliver:     -1,
	}}
	o := consume.Options{Prefetch: w.cfg.Concurrency * 2, Concurrency: w.cfg.Concurrency, Reader: w.cfg.Reader, Poison: w.cfg.Poison, Log: w.log}
	err := consume.Run(ctx, w.js, src, o, w.handle)
	if err != nil {
		return fmt.Errorf("saga: %w", err)
	}
	return nil
}

func (w *Worker) handle(ctx context.Context, msg *consume.Message) {
	head := msg.Envelope
	planChange := head.Type == events.TypeTenantPlanChanged && w.reconcile != nil
	if !Triggers[head.Type] && !planChange {
		msg.Ack()
		return
	}
	l, ok := w.lease(ctx, head.TenantID)
	if !ok {
		// Another instance is running this tenant's saga; it will see the
		// newest state. Look again shortly.
		msg.Retry(2 * time.Second)
		return
	}
	// What the saga logs and traces hangs off the request that caused it.
	runCtx := logging.With(ctx, slog.String("correlation_id", head.CorrelationID), slog.String("event_id", head.ID))
	if tracing.Enabled() {
		runCtx = tracing.WithTraceParent(runCtx, head.TraceParent)
	}
	done := make(chan struct{})
	go w.keepAlive(ctx, msg, l, done)
	var err error
	if planChange {
		_, err = w.reconcile.Tenant(runCtx, head.TenantID)
	} else {
		err = w.runner.Run(runCtx, head.TenantID, head.ID)
	}
	close(done)
	l.release(ctx)
	switch {
	case err == nil:
		msg.Ack()
	case ctx.Err() != nil:
		msg.Retry(0)
	default:
		if !errors.Is(err, ErrRetryLater) {
			w.log.ErrorContext(runCtx, "saga: run failed; will retry", "tenant_id", head.TenantID, "error", err)
		}
		msg.Retry(w.cfg.RetryDelay)
	}
}

// lease is one tenant's saga lease, held while its saga runs.
type lease struct {
	kv  jetstream.KeyValue
	key string
	val []byte
	mu  sync.Mutex
	rev uint64
}

func (w *Worker) lease(ctx context.Context, tenantID string) (*lease, bool) {
	val := []byte(w.cfg.Instance)
	rev, err := w.leases.Create(ctx, tenantID, val)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			w.log.WarnContext(ctx, "saga: taking lease failed", "tenant_id", tenantID, "error", err)
		}
		return nil, false
	}
	return &lease{kv: w.leases, key: tenantID, val: val, rev: rev}, true
}

func (l *lease) renew(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	rev, err := l.kv.Update(ctx, l.key, l.val, l.rev)
	if err == nil {
		l.rev = rev
	}
	return err
}

func (l *lease) release(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = l.kv.Delete(rctx, l.key, jetstream.LastRevision(l.rev))
}

// keepAlive tells JetStream the message is being worked on and renews the
// lease until done closes.
func (w *Worker) keepAlive(ctx context.Context, msg *consume.Message, l *lease, done <-chan struct{}) {
	t := time.NewTicker(LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			msg.InProgress()
			if err := l.renew(ctx); err != nil {
				w.log.WarnContext(ctx, "saga: renewing lease failed", "tenant_id", l.key, "error", err)
			}
		}
	}
}
