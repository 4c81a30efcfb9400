package testenv

import (
	"fmt"
	"os"
	"testing"
)

// RunAsMain lets a test binary double as the binary under test, so that
// tests can start, kill -9 and restart real processes: when the variable
// env is set, it runs main with the variable's value and exits with its
// outcome (errors printed after name); otherwise it runs the tests.
func RunAsMain(m *testing.M, env, name string, main func(value string) error) {
	if v := os.Getenv(env); v != "" {
		if err := main(v); err != nil {
			fmt.Fprintln(os.Stderr, name+":", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
