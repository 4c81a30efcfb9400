// Command webhooker delivers the event log to webhook subscribers: signed
// (Standard Webhooks), sequenced and in order per endpoint, with retries on
// a schedule, a dead-letter stream, operator requeue and replay. Any number
// of instances share the work.
package main

import (
	"context"
	"io"
	"os"

	"github.com/tenancyhq/tenancy/internal/run/boot"
	"github.com/tenancyhq/tenancy/internal/run/webhooker"
)

func main() {
	boot.Exit("webhooker", func(ctx context.Context) error { return run(ctx, os.Getenv, os.Stderr) })
}

func run(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	return webhooker.Main(ctx, getenv, stderr)
}
