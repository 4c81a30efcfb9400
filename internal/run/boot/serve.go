package boot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/health"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/tracing"
)

// Serve serves h on ln until ctx ends, then shuts down gracefully, letting
// requests in flight finish.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("serving HTTP", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("HTTP shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ListenAndServe listens on addr and serves h there until ctx ends.
func ListenAndServe(ctx context.Context, addr string, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return Serve(ctx, ln, h, log)
}

// StartTracing sets up trace export for service (see tracing.Setup: only
// when OTEL_EXPORTER_OTLP_ENDPOINT is set). stop flushes the spans still
// buffered, waiting at most 5 seconds: a collector that is down must not
// hold up the exit.
func StartTracing(ctx context.Context, service string, log *slog.Logger) (stop func(), err error) {
	shutdown, err := tracing.Setup(ctx, service, log)
	if err != nil {
		return nil, err
	}
	if tracing.Enabled() {
		log.Info("exporting traces over OTLP", "service_name", service)
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			log.Warn("flushing traces failed", "error", err)
		}
	}, nil
}

// Started is what a service binary begins with: its JSON logger, trace
// export and the core on the configured NATS.
type Started struct {
	Log  *slog.Logger
	Core *Core
	stop func()
}

// Start sets up the logger (service field = name), tracing (service name
// "tenancy-"+name) and the core, in that order. Close undoes it.
func Start(ctx context.Context, stderr io.Writer, name string, cfg config.Service, accounts app.AdminAccounts) (*Started, error) {
	log := logging.New(stderr, name, logging.ParseLevel(cfg.LogLevel))
	stopTracing, err := StartTracing(ctx, "tenancy-"+name, log)
	if err != nil {
		return nil, err
	}
	core, err := Connect(ctx, cfg, "tenancy-"+name, accounts, log)
	if err != nil {
		stopTracing()
		return nil, err
	}
	return &Started{Log: log, Core: core, stop: func() { core.Close(); stopTracing() }}, nil
}

// Close closes the core, then flushes the traces.
func (s *Started) Close() { s.stop() }

// Exit runs a binary: run gets a context that SIGINT or SIGTERM ends, and
// the process exits 1, printing the error after the binary's name, when run
// fails.
func Exit(name string, run func(ctx context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// RunWorker runs work next to the worker's /healthz, /readyz (checks) and
// /metrics on addr, until ctx ends or either fails.
func RunWorker(ctx context.Context, addr string, log *slog.Logger, work func(context.Context) error, checks ...health.Check) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return work(gctx) })
	g.Go(func() error { return ListenAndServe(gctx, addr, health.Handler(checks...), log) })
	return g.Wait()
}
