package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// BootstrapOptions say what the platform's own records are called.
type BootstrapOptions struct {
	// RootSlug and SharedSlug name the root tenant and the shared tenant
	// (TENANCY_ROOT_TENANT, TENANCY_SHARED_TENANT; default root, shared).
	RootSlug   string
	SharedSlug string
	// AdminEmail is the root tenant's default administrator
	// (TENANCY_ROOT_ADMIN_EMAIL).
	AdminEmail string
}

// bootstrapActor is who the bootstrap events are recorded as.
const bootstrapActor = "system:bootstrap"

// Bootstrap makes sure the platform's own records exist, through the log
// like every other change: the root customer (a business, verified), the
// root tenant with its default administrator, and the shared tenant whose
// realm `shared` customers' tenants join. It is idempotent and safe when
// several instances start at once: the records have fixed ids, so a
// racing instance's create loses on the aggregate's expected version and
// finds what the winner made.
func Bootstrap(ctx context.Context, customers *Customers, tenants *Tenants, o BootstrapOptions) error {
	if o.RootSlug == "" {
		o.RootSlug = "root"
	}
	if o.SharedSlug == "" {
		o.SharedSlug = "shared"
	}
	if o.RootSlug == o.SharedSlug {
		return fmt.Errorf("bootstrap: the root and shared tenants need different slugs (both are %q)", o.RootSlug)
	}
	meta := command.Meta{Actor: bootstrapActor, CorrelationID: NewID()}
	if err := EnsureRootCustomer(ctx, customers, meta); err != nil {
		return err
	}
	if err := ensurePlatformTenant(ctx, tenants, domain.RootTenantID, o.RootSlug, domain.RoleRootTenant, "Platform (root)", o.AdminEmail, meta); err != nil {
		return err
	}
	return ensurePlatformTenant(ctx, tenants, domain.SharedTenantID, o.SharedSlug, domain.RoleSharedTenant, "Shared realm", o.AdminEmail, meta)
}

// EnsureRootCustomer makes sure the root customer exists and is verified.
func EnsureRootCustomer(ctx context.Context, customers *Customers, meta command.Meta) error {
	if meta.Actor == "" {
		meta = command.Meta{Actor: bootstrapActor, CorrelationID: NewID()}
	}
	_, err := customers.Create(ctx, domain.CreateCustomer{
		ID: domain.RootCustomerID, Kind: domain.CustomerBusiness, LegalName: "Tenancy platform operator", DisplayName: "Platform",
		RealmMode: domain.RealmOwn, Root: true,
	}, meta)
	var ce *domain.ConflictError
	if err != nil && !(errors.As(err, &ce) && ce.Field == "id") {
		return fmt.Errorf("bootstrap: root customer: %w", err)
	}
	root, _, err := customers.Get(ctx, domain.RootCustomerID)
	if err != nil {
		return fmt.Errorf("bootstrap: root customer: %w", err)
	}
	if root.Verification.Status == domain.VerificationCompleted {
		return nil // verified, by bootstrap or since by an operator: left as it is
	}
	if _, err := customers.Do(ctx, domain.RootCustomerID, domain.RecordVerification{
		Status: domain.VerificationCompleted, Note: "the platform operator's own customer, verified at bootstrap",
	}, meta); err != nil {
		return fmt.Errorf("bootstrap: verifying the root customer: %w", err)
	}
	return nil
}

// ensurePlatformTenant makes sure one of the platform's tenants exists,
// owned by the root customer, and is active or on its way (activation is
// requested; the provisioner carries it out).
func ensurePlatformTenant(ctx context.Context, tenants *Tenants, id, slug, role, name, adminEmail string, meta command.Meta) error {
	t, _, err := tenants.Get(ctx, id)
	switch {
	case errors.Is(err, domain.ErrNotFound):
		create, cerr := platformTenant(tenants.Catalog(), id, slug, role, name, adminEmail)
		if cerr != nil {
			return cerr
		}
		res, cerr := tenants.Create(ctx, create, meta)
		if cerr != nil {
			return fmt.Errorf("bootstrap: %s tenant %q: %w", role, slug, cerr)
		}
		t = res.State
	case err != nil:
		return fmt.Errorf("bootstrap: %s tenant: %w", role, err)
	}
	if t.Slug != slug {
		return fmt.Errorf("bootstrap: the %s tenant exists as %q, not %q; set TENANCY_%s_TENANT=%s (a platform tenant's slug names its realm and cannot change)",
			role, t.Slug, slug, strings.ToUpper(role), t.Slug)
	}
	if t.State != domain.StateDraft {
		return nil
	}
	if _, err := tenants.Do(ctx, id, domain.RequestActivation{}, meta); err != nil {
		return fmt.Errorf("bootstrap: activating the %s tenant: %w", role, err)
	}
	return nil
}

// platformTenant is the create command of a platform tenant: the
// catalog's richest plan, in its first open region.
func platformTenant(cat *domain.Catalog, id, slug, role, name, adminEmail string) (domain.CreateTenant, error) {
	plans := cat.Plans()
	if len(plans) == 0 {
		return domain.CreateTenant{}, errors.New("bootstrap: the catalog has no plan")
	}
	plan := plans[0]
	for _, p := range plans {
		if len(p.Features) > len(plan.Features) {
			plan = p
		}
	}
	iso := domain.IsolationShared
	if !slices.Contains(plan.Isolation, iso) {
		iso = plan.Isolation[0]
	}
	var region string
	for _, r := range cat.Regions() {
		if r.Status == domain.RegionAvailable {
			region = r.Code
			break
		}
	}
	if region == "" {
		return domain.CreateTenant{}, errors.New("bootstrap: the catalog has no available region for the platform's tenants")
	}
	c := domain.CreateTenant{
		ID: id, Slug: slug, DisplayName: name, Plan: plan.Code, Isolation: string(iso),
		Regions:    domain.Regions{Allowed: []string{region}, Preferred: region},
		CustomerID: domain.RootCustomerID, Customer: &domain.CustomerFacts{ID: domain.RootCustomerID, Exists: true, Verification: domain.VerificationCompleted, RealmMode: domain.RealmOwn},
		Platform: role, Labels: map[string]string{"tenancy-platform": role},
	}
	if adminEmail != "" {
		c.Contacts = []events.Contact{{Role: string(domain.ContactTechnical), Name: "Platform administrator", Email: adminEmail}}
	}
	return c, nil
}
