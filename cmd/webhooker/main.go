// Command webhooker delivers the event log to webhook subscribers: signed
// (Standard Webhooks), sequenced and in order per endpoint, with retries on
// a schedule, a dead-letter stream, operator requeue and replay. Any number
// of instances share the work.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/services"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Getenv, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhooker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	cfg, err := config.LoadWorker(getenv, ":8083")
	if err != nil {
		return err
	}
	svc, err := services.StartService(ctx, stderr, "webhooker", cfg.LogLevel, cfg.NATS, services.Secrets{SigningKey: cfg.SigningKey, MasterKey: cfg.MasterKey, Catalog: cfg.Catalog})
	if err != nil {
		return err
	}
	defer svc.Close()
	log, core := svc.Log, svc.Core
	// Attempts are recorded in PostgreSQL; the projector owns the schema,
	// but a webhooker started first must not fail on a missing table.
	rs, err := services.OpenReadSide(ctx, cfg.DatabaseURL, false, true)
	if err != nil {
		return err
	}
	defer rs.Close()
	w, err := services.NewWebhooker(ctx, core, cfg.Webhooks, rs)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.Run(gctx) })
	g.Go(func() error {
		return services.ListenAndServe(gctx, cfg.HTTPAddr, services.HealthHandler(
			services.HealthCheck{Name: "nats", Check: core.CheckNATS}, services.HealthCheck{Name: "postgres", Check: rs.Check}), log)
	})
	return g.Wait()
}
