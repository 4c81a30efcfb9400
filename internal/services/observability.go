package services

import (
	"context"
	"log/slog"
	"time"

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
