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
	"io"
	"os"

	"github.com/tenancyhq/tenancy/internal/run/boot"
	"github.com/tenancyhq/tenancy/internal/run/projector"
)

func main() {
	boot.Exit("projector", func(ctx context.Context) error { return run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr) })
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return projector.Main(ctx, getenv, args[1:], "cli:"+getenv("USER"), stdout, stderr)
}
