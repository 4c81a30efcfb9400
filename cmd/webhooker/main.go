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

	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/run/webhooker"
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
	cfg, err := config.LoadWebhooker(getenv)
	if err != nil {
		return err
	}
	return webhooker.Main(ctx, cfg, stderr)
}
