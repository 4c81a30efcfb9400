// Package catalog loads the policy catalog (topology inventory and plan
// catalog) from YAML, with an embedded default.
package catalog

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tenancyhq/tenancy/pkg/domain"
)

//go:embed default.yaml
var defaultYAML []byte

type file struct {
	Regions []struct {
		Code         string `yaml:"code"`
		Name         string `yaml:"name"`
		Jurisdiction string `yaml:"jurisdiction"`
		Status       string `yaml:"status"`
	} `yaml:"regions"`
	Plans []struct {
		Code       string           `yaml:"code"`
		Name       string           `yaml:"name"`
		Isolation  []string         `yaml:"isolation"`
		MaxRegions int              `yaml:"max_regions"`
		Features   []string         `yaml:"features"`
		Quotas     map[string]int64 `yaml:"quotas"`
		// The plan's customer policy, checked at activation.
		RequireCustomer         bool `yaml:"require_customer"`
		RequireVerifiedCustomer bool `yaml:"require_verified_customer"`
		AcceptPartial           bool `yaml:"accept_partial_verification"`
	} `yaml:"plans"`
	Compliance struct {
		RekycGrace string `yaml:"rekyc_grace"`
	} `yaml:"compliance"`
}

// Parse reads a catalog from YAML. Unknown keys are errors, so a typo in an
// operator's catalog is caught at start-up rather than silently ignored.
func Parse(data []byte) (*domain.Catalog, error) {
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	regions := make([]domain.Region, len(f.Regions))
	for i, r := range f.Regions {
		regions[i] = domain.Region{Code: r.Code, Name: r.Name, Jurisdiction: r.Jurisdiction, Status: domain.RegionStatus(r.Status)}
	}
	plans := make([]domain.Plan, len(f.Plans))
	for i, p := range f.Plans {
		iso := make([]domain.IsolationMode, len(p.Isolation))
		for j, m := range p.Isolation {
			iso[j] = domain.IsolationMode(m)
		}
		plans[i] = domain.Plan{Code: p.Code, Name: p.Name, Features: p.Features, Quotas: p.Quotas, Isolation: iso, MaxRegions: p.MaxRegions,
			Customer: domain.CustomerPolicy{Required: p.RequireCustomer || p.RequireVerifiedCustomer, Verified: p.RequireVerifiedCustomer, AcceptPartial: p.AcceptPartial}}
	}
	c, err := domain.NewCatalog(regions, plans)
	if err != nil {
		return nil, err
	}
	if g := f.Compliance.RekycGrace; g != "" {
		d, err := time.ParseDuration(g)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("catalog: compliance.rekyc_grace %q is not a positive duration like 720h", g)
		}
		c.SetRekycGrace(d)
	}
	return c, nil
}

// Load reads the catalog at path, or the embedded default when path is empty.
func Load(path string) (*domain.Catalog, error) {
	if path == "" {
		return Parse(defaultYAML)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
