// Command projector builds the PostgreSQL read models (tenant search, lookups, audit trail) from the event log, and rebuilds them by replay without downtime.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

func main() {
	if err := run(context.Background(), os.Args, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "projector:", err)
		os.Exit(2)
	}
}

func run(_ context.Context, _ []string, stderr io.Writer) error {
	fmt.Fprintln(stderr, "projector builds the PostgreSQL read models (tenant search, lookups, audit trail) from the event log, and rebuilds them by replay without downtime.")
	return errors.New("not available in this build yet")
}
