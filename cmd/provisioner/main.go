// Command provisioner runs tenant lifecycle sagas: it turns lifecycle events
// into calls to the identity provider and to billing, recording each step on
// the tenant's stream. Instances share the work through one durable
// consumer and per-tenant leases.
package main

import (
	"context"
	"io"
	"os"

	"github.com/tenancyhq/tenancy/internal/run/boot"
	"github.com/tenancyhq/tenancy/internal/run/provisioner"
)

func main() {
	boot.Exit("provisioner", func(ctx context.Context) error { return run(ctx, os.Getenv, os.Stderr) })
}

func run(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	return provisioner.Main(ctx, getenv, stderr)
}
