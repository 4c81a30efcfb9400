package domain

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tenancyhq/tenancy/pkg/events"
)

// IsolationMode is how a tenant's resources are separated from others'.
type IsolationMode string

// Isolation modes.
const (
	IsolationShared    IsolationMode = "shared"
	IsolationDedicated IsolationMode = "dedicated"
	IsolationHybrid    IsolationMode = "hybrid"
)

// IsolationModes lists every isolation mode.
var IsolationModes = []IsolationMode{IsolationShared, IsolationDedicated, IsolationHybrid}

// ParseIsolationMode parses an isolation mode, rejecting unknown strings.
func ParseIsolationMode(s string) (IsolationMode, error) {
	for _, m := range IsolationModes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown isolation mode %q", s)
}

// RegionStatus says whether new tenants may be placed in a region.
type RegionStatus string

// Region statuses.
const (
	RegionAvailable RegionStatus = "available"
	// RegionClosed regions keep serving existing tenants but accept no new
	// placements.
	RegionClosed RegionStatus = "closed"
)

// Region is one entry of the topology inventory.
type Region struct {
	Code         string
	Name         string
	Jurisdiction string
	Status       RegionStatus
}

// Plan is one commercial plan: what it enables and what it limits.
type Plan struct {
	Code     string
	Name     string
	Features []string
	Quotas   map[string]int64
	// Isolation lists the isolation modes the plan allows.
	Isolation []IsolationMode
	// MaxRegions bounds len(regions.allowed); 0 means no bound.
	MaxRegions int
	// Customer is what the plan asks of a tenant's customer before
	// activation.
	Customer CustomerPolicy
}

// CustomerPolicy is a plan's demand on the customer owning a tenant.
type CustomerPolicy struct {
	// Required: a tenant is activated only with a customer.
	Required bool
	// Verified: only with a customer whose KYC/KYB is completed (or
	// partial, with AcceptPartial).
	Verified      bool
	AcceptPartial bool
}

// DefaultRekycGrace is how long a customer due for re-KYC keeps its tenants
// active when the catalog does not say.
const DefaultRekycGrace = 30 * 24 * time.Hour

// Catalog is the policy tenants are decided against: the topology inventory
// and the plan catalog.
type Catalog struct {
	regions map[string]Region
	plans   map[string]Plan
	// rekycGrace is how long a customer due for re-KYC keeps its tenants
	// active.
	rekycGrace time.Duration
}

// RekycGrace is how long a customer due for re-KYC keeps its tenants
// active.
func (c *Catalog) RekycGrace() time.Duration {
	if c.rekycGrace <= 0 {
		return DefaultRekycGrace
	}
	return c.rekycGrace
}

// SetRekycGrace sets the re-KYC grace period (the catalog's compliance
// settings).
func (c *Catalog) SetRekycGrace(d time.Duration) { c.rekycGrace = d }

// WithoutCustomerPolicy returns a copy of c whose plans ask nothing of a
// tenant's customer: for the tests and benchmarks of behaviour that is not
// the customer policy (which its own tests check with the real catalog).
func (c *Catalog) WithoutCustomerPolicy() *Catalog {
	out := &Catalog{regions: c.regions, plans: map[string]Plan{}, rekycGrace: c.rekycGrace}
	for code, p := range c.plans {
		p.Customer = CustomerPolicy{}
		out.plans[code] = p
	}
	return out
}

// NewCatalog validates and indexes regions and plans.
func NewCatalog(regions []Region, plans []Plan) (*Catalog, error) {
	c := &Catalog{regions: map[string]Region{}, plans: map[string]Plan{}}
	var problems []string
	for _, r := range regions {
		if !regionCodeRE.MatchString(r.Code) {
			problems = append(problems, fmt.Sprintf("region code %q must match %s", r.Code, regionCodeRE))
		}
		if _, dup := c.regions[r.Code]; dup {
			problems = append(problems, fmt.Sprintf("region %q listed twice", r.Code))
		}
		switch r.Status {
		case "":
			r.Status = RegionAvailable
		case RegionAvailable, RegionClosed:
		default:
			problems = append(problems, fmt.Sprintf("region %q: status %q is not available or closed", r.Code, r.Status))
		}
		c.regions[r.Code] = r
	}
	for _, p := range plans {
		if !planCodeRE.MatchString(p.Code) {
			problems = append(problems, fmt.Sprintf("plan code %q must match %s", p.Code, planCodeRE))
		}
		if _, dup := c.plans[p.Code]; dup {
			problems = append(problems, fmt.Sprintf("plan %q listed twice", p.Code))
		}
		if len(p.Isolation) == 0 {
			problems = append(problems, fmt.Sprintf("plan %q allows no isolation mode", p.Code))
		}
		for _, m := range p.Isolation {
			if _, err := ParseIsolationMode(string(m)); err != nil {
				problems = append(problems, fmt.Sprintf("plan %q: %v", p.Code, err))
			}
		}
		if p.Quotas == nil {
			p.Quotas = map[string]int64{}
		}
		p.Features = slices.Clone(p.Features)
		sort.Strings(p.Features)
		c.plans[p.Code] = p
	}
	if len(c.regions) == 0 {
		problems = append(problems, "the catalog lists no region")
	}
	if len(c.plans) == 0 {
		problems = append(problems, "the catalog lists no plan")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("invalid catalog: %s", strings.Join(problems, "; "))
	}
	return c, nil
}

// Plan returns the plan with code.
func (c *Catalog) Plan(code string) (Plan, bool) {
	p, ok := c.plans[code]
	return p, ok
}

// Region returns the region with code.
func (c *Catalog) Region(code string) (Region, bool) {
	r, ok := c.regions[code]
	return r, ok
}

// PlanCodes returns every plan code, sorted.
func (c *Catalog) PlanCodes() []string { return sortedKeys(c.plans) }

// RegionCodes returns every region code, sorted.
func (c *Catalog) RegionCodes() []string { return sortedKeys(c.regions) }

// Regions returns the inventory, sorted by code.
func (c *Catalog) Regions() []Region {
	out := make([]Region, 0, len(c.regions))
	for _, k := range c.RegionCodes() {
		out = append(out, c.regions[k])
	}
	return out
}

// Plans returns the plans, sorted by code.
func (c *Catalog) Plans() []Plan {
	out := make([]Plan, 0, len(c.plans))
	for _, k := range c.PlanCodes() {
		out = append(out, c.plans[k])
	}
	return out
}

func (c *Catalog) availableRegionCodes() []string {
	var out []string
	for _, k := range c.RegionCodes() {
		if c.regions[k].Status == RegionAvailable {
			out = append(out, k)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Placement is what the policy checks: a plan, an isolation mode and a
// residency.
type Placement struct {
	Plan      string
	Isolation IsolationMode
	Regions   Regions
}

// Evaluate runs every policy check on p. It returns the record of each
// check (for the audit trail) and the field errors of those that failed.
// newPlacement says whether closed regions must be refused (new placements)
// or only tolerated for tenants already there.
func (c *Catalog) Evaluate(p Placement, newPlacement bool) ([]events.PolicyCheck, []FieldError) {
	var checks []events.PolicyCheck
	var fe fieldErrors
	record := func(name string, ok bool, detail string) {
		outcome := "passed"
		if !ok {
			outcome = "failed"
		}
		checks = append(checks, events.PolicyCheck{Name: name, Outcome: outcome, Detail: detail})
	}

	plan, planOK := c.plans[p.Plan]
	if !planOK {
		fe.add("plan", fmt.Sprintf("unknown plan %q", p.Plan), c.PlanCodes()...)
	}
	record("plan.exists", planOK, p.Plan)

	if planOK {
		ok := slices.Contains(plan.Isolation, p.Isolation)
		if !ok {
			fe.add("isolation", fmt.Sprintf("plan %q does not allow %s isolation", plan.Code, p.Isolation), isolationStrings(plan.Isolation)...)
		}
		record("plan.isolation", ok, fmt.Sprintf("%s on %s", p.Isolation, plan.Code))
	}

	allowedOK := len(p.Regions.Allowed) > 0
	if !allowedOK {
		fe.add("regions.allowed", "at least one region is required", c.availableRegionCodes()...)
	}
	for i, code := range p.Regions.Allowed {
		r, ok := c.regions[code]
		switch {
		case !ok:
			allowedOK = false
			fe.add(fmt.Sprintf("regions.allowed[%d]", i), fmt.Sprintf("region %q is not in the topology inventory", code), c.availableRegionCodes()...)
		case newPlacement && r.Status != RegionAvailable:
			allowedOK = false
			fe.add(fmt.Sprintf("regions.allowed[%d]", i), fmt.Sprintf("region %q is closed to new tenants", code), c.availableRegionCodes()...)
		}
	}
	record("residency.inventory", allowedOK, strings.Join(p.Regions.Allowed, ","))

	if planOK && plan.MaxRegions > 0 && len(p.Regions.Allowed) > plan.MaxRegions {
		fe.add("regions.allowed", fmt.Sprintf("plan %q allows at most %d regions, got %d", plan.Code, plan.MaxRegions, len(p.Regions.Allowed)))
		record("plan.max_regions", false, fmt.Sprintf("%d > %d", len(p.Regions.Allowed), plan.MaxRegions))
	}

	prefOK := slices.Contains(p.Regions.Allowed, p.Regions.Preferred)
	if !prefOK {
		fe.add("regions.preferred", fmt.Sprintf("preferred region %q must be one of the allowed regions", p.Regions.Preferred), p.Regions.Allowed...)
	}
	record("residency.preferred", prefOK, p.Regions.Preferred)
	return checks, fe
}

func isolationStrings(ms []IsolationMode) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m)
	}
	return out
}
