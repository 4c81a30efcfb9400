// Command api serves Tenancy's command and query HTTP API against an
// external NATS JetStream (NATS_URL). Any number of instances can run side by
// side: they share nothing but the log.
package main

import (
	"context"
	"io"
	"os"

	"github.com/tenancyhq/tenancy/internal/run/api"
	"github.com/tenancyhq/tenancy/internal/run/boot"
)

func main() {
	boot.Exit("api", func(ctx context.Context) error { return run(ctx, os.Getenv, os.Stderr) })
}

func run(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	return api.Main(ctx, getenv, stderr)
}
