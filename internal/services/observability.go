package services

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/tracing"
)

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

// StartService sets up the logger (service field = name), tracing (service
// name "tenancy-"+name) and the core, in that order, for the service
// binaries. Close undoes it.
func StartService(ctx context.Context, stderr io.Writer, name, logLevel string, n config.NATS, s Secrets) (*Started, error) {
	log := logging.New(stderr, name, logging.ParseLevel(logLevel))
	stopTracing, err := StartTracing(ctx, "tenancy-"+name, log)
	if err != nil {
		return nil, err
	}
	core, err := ConnectCore(ctx, n, s, "tenancy-"+name, log)
	if err != nil {
		stopTracing()
		return nil, err
	}
	return &Started{Log: log, Core: core, stop: func() { core.Close(); stopTracing() }}, nil
}

// Close closes the core, then flushes the traces.
func (s *Started) Close() { s.stop() }
