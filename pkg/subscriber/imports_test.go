package subscriber_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPublicImports keeps the package usable outside this module: it may
// depend on the public event contract, never on Tenancy's internals or on
// the servers' infrastructure libraries.
func TestPublicImports(t *testing.T) {
	const pkg = "github.com/tenancyhq/tenancy/pkg/subscriber"
	forbidden := []string{"github.com/tenancyhq/tenancy/internal/", "github.com/tenancyhq/tenancy/cmd/", "github.com/nats-io/", "github.com/jackc/", "github.com/labstack/"}
	out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	for _, dep := range deps {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
	// The CloudEvents SDK is what it hands receivers; if it stops being a
	// dependency the API has changed shape.
	if !strings.Contains(string(out), "github.com/cloudevents/sdk-go/v2/event\n") {
		t.Errorf("%s does not depend on the CloudEvents SDK", pkg)
	}
}
