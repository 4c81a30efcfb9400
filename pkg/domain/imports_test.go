package domain_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPureImports enforces the design's arrows: the domain and the event
// contract import no IO libraries, transitively.
func TestPureImports(t *testing.T) {
	forbidden := []string{"net/http", "database/sql", "github.com/nats-io/", "github.com/jackc/", "github.com/labstack/", "github.com/tenancyhq/tenancy/internal/", "github.com/tenancyhq/tenancy/cmd/", "os/exec"}
	for _, pkg := range []string{"github.com/tenancyhq/tenancy/pkg/domain", "github.com/tenancyhq/tenancy/pkg/events"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				if dep == strings.TrimSuffix(f, "/") || strings.HasPrefix(dep, f) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
