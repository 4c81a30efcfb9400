package catalog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tenancyhq/tenancy/pkg/domain"
)

func TestDefaultAcceptsTheDocumentedExample(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	p, ok := c.Plan("standard")
	if !ok {
		t.Fatal("the default catalog has no standard plan")
	}
	_, problems := c.Evaluate(domain.Placement{
		Plan: p.Code, Isolation: domain.IsolationShared,
		Regions: domain.Regions{Allowed: []string{"eu-west-1", "eu-central-1"}, Preferred: "eu-west-1"},
	}, true)
	if len(problems) != 0 {
		t.Fatalf("the README example is refused: %+v", problems)
	}
	if len(p.Features) == 0 || p.Quotas["users"] == 0 {
		t.Fatalf("standard plan derives nothing: %+v", p)
	}
}

func TestUnknownKeysAreRefused(t *testing.T) {
	_, err := Load(filepath.Join("testdata", "typo.yaml"))
	if err == nil || !strings.Contains(err.Error(), "isolaton") {
		t.Fatalf("a misspelt key must be reported, got %v", err)
	}
}

func TestLoadFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	body := "regions:\n  - {code: r-1}\n  - {code: r-2, status: closed}\nplans:\n  - {code: p, isolation: [dedicated]}\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := c.Region("r-2"); r.Status != domain.RegionClosed {
		t.Fatalf("region r-2 = %+v", r)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("a missing file must be an error")
	}
}
