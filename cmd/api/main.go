// Command api serves Tenancy's command and query HTTP API against an
// external NATS JetStream (NATS_URL). Any number of instances can run side by
// side: they share nothing but the log.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/services"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Getenv, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "api:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	cfg, err := config.LoadAPI(getenv)
	if err != nil {
		return err
	}
	svc, err := services.StartService(ctx, stderr, "api", cfg.LogLevel, cfg.NATS, services.Secrets{SigningKey: cfg.SigningKey, MasterKey: cfg.MasterKey, Catalog: cfg.Catalog})
	if err != nil {
		return err
	}
	defer svc.Close()
	log, core := svc.Log, svc.Core
	authn, err := auth.New(auth.Config{IssuerURL: cfg.OIDCIssuer, DiscoveryURL: cfg.OIDCDiscovery, Audience: cfg.OIDCAudience})
	if err != nil {
		return err
	}
	rs, err := services.OpenReadSide(ctx, cfg.DatabaseURL, false, false)
	if err != nil {
		return err
	}
	defer rs.Close()
	in, err := services.Integrations(cfg.Integrations, core)
	if err != nil {
		return err
	}
	api, err := services.NewAPI(ctx, core, services.APIOptions{Auth: authn, BodyLimit: cfg.BodyLimit, ReadSide: rs, ReadWait: cfg.ReadWait, Keycloak: in.Keycloak, Webhooks: cfg.Webhooks})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return api.Run(gctx) })
	g.Go(func() error { return services.ListenAndServe(gctx, cfg.HTTPAddr, api.Handler(), log) })
	return g.Wait()
}
