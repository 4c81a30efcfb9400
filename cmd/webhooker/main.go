// Command webhooker delivers signed, sequenced events to webhook subscribers with retries, a dead-letter stream and operator requeue.
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
		fmt.Fprintln(os.Stderr, "webhooker:", err)
		os.Exit(2)
	}
}

func run(_ context.Context, _ []string, stderr io.Writer) error {
	fmt.Fprintln(stderr, "webhooker delivers signed, sequenced events to webhook subscribers with retries, a dead-letter stream and operator requeue.")
	return errors.New("not available in this build yet")
}
