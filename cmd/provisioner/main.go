// Command provisioner runs tenant lifecycle sagas: it turns lifecycle events
// into calls to the identity provider and to billing, recording each step on
// the tenant's stream. Instances share the work through one durable
// consumer and per-tenant leases.
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
		fmt.Fprintln(os.Stderr, "provisioner:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	cfg, err := config.LoadWorker(getenv, ":8082")
	if err != nil {
		return err
	}
	svc, err := services.StartService(ctx, stderr, "provisioner", cfg.LogLevel, cfg.NATS, services.Secrets{SigningKey: cfg.SigningKey, MasterKey: cfg.MasterKey, Catalog: cfg.Catalog})
	if err != nil {
		return err
	}
	defer svc.Close()
	log, core := svc.Log, svc.Core
	in, err := services.Integrations(cfg.Integrations, core)
	if err != nil {
		return err
	}
	rs, err := services.OpenReadSide(ctx, cfg.DatabaseURL, false, false)
	if err != nil {
		return err
	}
	defer rs.Close()
	w, err := services.NewProvisioner(ctx, core, services.ProvisionerOptions{Integrations: in, ReadSide: rs, ReconcileInterval: cfg.Integrations.ReconcileInterval})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.Run(gctx) })
	g.Go(func() error {
		return services.ListenAndServe(gctx, cfg.HTTPAddr, services.HealthHandler(services.HealthCheck{Name: "nats", Check: core.CheckNATS}), log)
	})
	return g.Wait()
}
