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

	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/run/provisioner"
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
	cfg, err := config.LoadProvisioner(getenv)
	if err != nil {
		return err
	}
	return provisioner.Main(ctx, cfg, stderr)
}
