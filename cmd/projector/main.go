// Command projector builds the PostgreSQL read models (tenant directory,
// audit trail) from the event log, and rebuilds them by replay without
// downtime. Any number of instances may run: one is active per projection,
// the others stand by.
//
//	projector [run]                      keep the read models up to date
//	projector migrate                    apply the schema migrations and exit
//	projector status                     each projection's checkpoint, lag and state
//	projector rebuild <projection>       replay into a new generation and switch to it
//	projector skip <projection> --seq N --reason TEXT
//	                                     skip the poison event a projection stopped on
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
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/services"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "projector:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 1 {
		cmd = args[1]
	}
	cfg, err := config.LoadWorker(getenv, ":8081")
	if err != nil {
		return err
	}
	log := logging.New(stderr, "projector", logging.ParseLevel(cfg.LogLevel))
	if cmd == "migrate" {
		rs, err := services.OpenReadSide(ctx, cfg.DatabaseURL, false, true)
		if err != nil {
			return err
		}
		rs.Close()
		fmt.Fprintln(stdout, "migrations applied")
		return nil
	}
	core, err := services.ConnectCore(ctx, cfg.NATS, services.Secrets{SigningKey: cfg.SigningKey, MasterKey: cfg.MasterKey, Catalog: cfg.Catalog}, "tenancy-projector", log)
	if err != nil {
		return err
	}
	defer core.Close()
	rs, err := services.OpenReadSide(ctx, cfg.DatabaseURL, false, true)
	if err != nil {
		return err
	}
	defer rs.Close()
	if cmd != "run" {
		tools := services.ProjectionTools{JS: core.JS, Store: core.Store, Opener: core.Keyring, Signer: core.Signer, ReadSide: rs, Log: log}
		return tools.RunProjectionsCommand(ctx, args[1:], "cli:"+getenv("USER"), stdout)
	}
	stopTracing, err := services.StartTracing(ctx, "tenancy-projector", log)
	if err != nil {
		return err
	}
	defer stopTracing()
	defer services.WatchProjectionLag(core, rs)()
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range services.Projections(core, rs, nil) {
		g.Go(func() error { return p.Run(gctx) })
	}
	g.Go(func() error {
		return services.ListenAndServe(gctx, cfg.HTTPAddr, services.HealthHandler(
			services.HealthCheck{Name: "nats", Check: core.CheckNATS},
			services.HealthCheck{Name: "postgres", Check: rs.Check},
		), log)
	})
	return g.Wait()
}
