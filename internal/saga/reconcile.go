package saga

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/billing"
	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/keycloak"
	"github.com/tenancyhq/tenancy/internal/metrics"

	"github.com/tenancyhq/tenancy/internal/realmsync"
	"github.com/tenancyhq/tenancy/internal/tracing"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// ReconcileActor is the actor recorded on repairs.
const ReconcileActor = "system:reconciler"

// Reconciler compares what the log says active and suspended tenants should
// have in Keycloak and billing with what those systems have, and repairs
// the differences, recording each repair as an event. It is how drift (a
// realm re-enabled by hand, a user profile that no longer declares the
// attributes Tenancy writes) is undone, and how plan changes reach the
// realm's token claims and the billing account.
type Reconciler struct {
	Tenants *app.Tenants
	In      Integrations
	// List returns the ids of the tenants to look at (the read model's
	// active and suspended tenants); nil disables periodic runs.
	List func(ctx context.Context) ([]string, error)
	Log  *slog.Logger
	// Observe, if set, is told about every pass.
	Observe func(took time.Duration, tenants, repairs int)
}

// Tenant reconciles one tenant and returns the repairs it made.
func (r *Reconciler) Tenant(ctx context.Context, id string) (repaired []events.TenantDriftRepaired, err error) {
	ctx, span := tracing.Start(ctx, "reconcile tenant")
	defer func() {
		result := "ok"
		if err != nil {
			result = "error"
			tracing.Fail(span, err)
		}
		metrics.ReconcileTenants.WithLabelValues(result).Inc()
		if span.IsRecording() {
			span.SetAttributes(attribute.String("tenancy.tenant_id", id), attribute.Int("tenancy.repairs", len(repaired)))
		}
		span.End()
	}()
	t, _, err := r.Tenants.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.State != domain.StateActive && t.State != domain.StateSuspended {
		return nil, nil
	}
	if t.Provisioning.Status == domain.SagaRunning {
		// A saga is bringing the systems in line; it is in charge.
		return nil, nil
	}
	var repairs []events.TenantDriftRepaired
	if r.In.Keycloak != nil {
		identity := r.realm
		if inSharedRealm(t) {
			identity = r.organization
		}
		found, err := identity(ctx, t)
		repairs = append(repairs, found...)
		if err != nil {
			return r.record(ctx, t, repairs, err)
		}
		if found, err = r.directory(ctx, t); err != nil {
			return r.record(ctx, t, append(repairs, found...), err)
		}
		repairs = append(repairs, found...)
	}
	if r.In.Billing != nil {
		found, err := r.billing(ctx, t)
		repairs = append(repairs, found...)
		if err != nil {
			return r.record(ctx, t, repairs, err)
		}
	}
	return r.record(ctx, t, repairs, nil)
}

func (r *Reconciler) record(ctx context.Context, t domain.Tenant, repairs []events.TenantDriftRepaired, cause error) ([]events.TenantDriftRepaired, error) {
	for _, rep := range repairs {
		if _, err := r.Tenants.Do(ctx, t.ID, domain.RecordRepair{Repair: rep}, command.Meta{Actor: ReconcileActor}); err != nil {
			return repairs, errors.Join(cause, err)
		}
		metrics.ReconcileRepairs.WithLabelValues(rep.System).Inc()
		r.Log.WarnContext(ctx, "repaired drift", "tenant_id", t.ID, "system", rep.System, "resource", rep.Resource, "found", rep.Found, "expected", rep.Expected)
	}
	return repairs, cause
}

// directory repairs the realm's users and clients that differ from the
// tenant's directory (changed, re-enabled or deleted in Keycloak behind
// Tenancy's back): the realm sync converges each, and every one that was
// not already right is a repair.
func (r *Reconciler) directory(ctx context.Context, t domain.Tenant) ([]events.TenantDriftRepaired, error) {
	if r.In.Directory == nil {
		return nil, nil
	}
	d, _, err := r.In.Directory.Load(ctx, t.ID)
	if err != nil {
		return nil, err
	}
	sync := realmsync.Syncer{Keycloak: r.In.Keycloak, Secrets: r.In.ClientSecrets}
	changes, err := sync.SyncAll(ctx, realmsync.Target(t), d)
	var out []events.TenantDriftRepaired
	for _, c := range changes {
		if c.Action == "unchanged" || strings.HasPrefix(c.Action, "left alone") || c.Action == "already gone" {
			continue
		}
		out = append(out, events.TenantDriftRepaired{System: "keycloak", Resource: c.Entity + " " + c.ID,
			Found: "differs from the directory", Expected: "as the directory has it", Action: c.Action})
	}
	return out, err
}

func onOff(b bool) string {
	if b {
		return "enabled"
	}
	return "disabled"
}

func (r *Reconciler) realm(ctx context.Context, t domain.Tenant) ([]events.TenantDriftRepaired, error) {
	kc := r.In.Keycloak
	var out []events.TenantDriftRepaired
	realm, _, err := r.In.ownRealm(ctx, t, false)
	if errors.Is(err, keycloak.ErrNotFound) {
		if _, provisioned := t.Provisioning.ExternalIDs["keycloak_realm"]; !provisioned {
			return nil, nil // identity was never provisioned for this tenant
		}
		for _, step := range []func(context.Context, domain.Tenant) (Outcome, error){r.In.ensureRealm, r.In.ensureClient, r.In.ensureRoles} {
			if _, err := step(ctx, t); err != nil {
				return out, err
			}
		}
		out = append(out, events.TenantDriftRepaired{System: "keycloak", Resource: "realm " + t.Slug, Found: "missing", Expected: "present",
			Action: "recreated the realm with its client and roles (users are not recreated)"})
		if realm, _, err = r.In.ownRealm(ctx, t, false); err != nil {
			return out, err
		}
	} else if err != nil {
		return nil, err
	}
	want := t.State == domain.StateActive
	if realm.IsEnabled() != want {
		if err := kc.UpdateRealm(ctx, t.Slug, keycloak.Realm{Enabled: keycloak.Bool(want)}); err != nil {
			return out, err
		}
		action := onOff(want) + " the realm"
		if !want {
			if err := kc.LogoutAll(ctx, t.Slug); err != nil {
				return out, err
			}
			action += " and ended its sessions"
		}
		out = append(out, events.TenantDriftRepaired{System: "keycloak", Resource: "realm " + t.Slug, Found: onOff(realm.IsEnabled()),
			Expected: onOff(want) + " (tenant " + string(t.State) + ")", Action: action})
	}
	found, err := r.attributes(ctx, t, t.Slug)
	out = append(out, found...)
	if err != nil {
		return out, err
	}
	cl, ok, err := kc.FindClient(ctx, t.Slug, AppClientID)
	if err != nil {
		return out, err
	}
	if !ok {
		if _, err := r.In.ensureClient(ctx, t); err != nil {
			return out, err
		}
		return append(out, events.TenantDriftRepaired{System: "keycloak", Resource: "client " + AppClientID, Found: "missing", Expected: "present", Action: "recreated the client"}), nil
	}
	changed, err := r.In.EnsureMappers(ctx, t, cl.ID)
	if err != nil {
		return out, err
	}
	if len(changed) > 0 {
		out = append(out, events.TenantDriftRepaired{System: "keycloak", Resource: "client " + AppClientID + " token claims", Found: "out of date",
			Expected: "plan " + t.Plan, Action: "updated mappers " + strings.Join(changed, ", ")})
	}
	return out, nil
}

// organization is realm's counterpart for a tenant in the shared realm:
// its organization must exist (if it ever did) and be enabled while the
// tenant is active, the realm must have organizations enabled and declare
// Tenancy's user attributes, and the tenant's administrator must carry its
// mark. The shared realm itself is the shared tenant's, reconciled as that
// tenant.
func (r *Reconciler) organization(ctx context.Context, t domain.Tenant) ([]events.TenantDriftRepaired, error) {
	realm := t.Realm.Realm
	found, enabledOrgs, err := r.In.sharedRealm(ctx, t)
	if err != nil || !found {
		return nil, err
	}
	var out []events.TenantDriftRepaired
	if enabledOrgs {
		out = append(out, events.TenantDriftRepaired{System: "keycloak", Resource: "realm " + realm + " organizations", Found: "disabled",
			Expected: "enabled (the realm holds tenants as organizations)", Action: "enabled organizations in the realm"})
	}
	o, ok, err := r.In.tenantOrg(ctx, t)
	if err != nil {
		return out, err
	}
	resource := "organization " + t.Realm.Organization + " in realm " + realm
	if !ok {
		if _, provisioned := t.Provisioning.ExternalIDs["keycloak_organization"]; !provisioned {
			return out, nil // identity was never provisioned for this tenant
		}
		if o, _, err = r.In.createOrg(ctx, t); err != nil {
			return out, err
		}
		out = append(out, events.TenantDriftRepaired{System: "keycloak", Resource: resource, Found: "missing", Expected: "present",
			Action: "recreated the organization (its members are not added again)"})
	}
	if want := t.State == domain.StateActive; o.Enabled != want {
		found := o.Enabled
		o.Enabled = want
		if err := r.In.Keycloak.UpdateOrganization(ctx, realm, o); err != nil {
			return out, err
		}
		out = append(out, events.TenantDriftRepaired{System: "keycloak", Resource: resource, Found: onOff(found),
			Expected: onOff(want) + " (tenant " + string(t.State) + ")", Action: onOff(want) + " the organization"})
	}
	marked, err := r.attributes(ctx, t, realm)
	return append(out, marked...), err
}

// adminKept reports whether the shared realm's account u, of the tenant's
// administrator's username, is still the tenant's administrator to mark:
// not if it has since become someone else's (see adminAccount), nor once
// the tenant's directory let the administrator go.
func (r *Reconciler) adminKept(ctx context.Context, t domain.Tenant, u keycloak.User) (bool, error) {
	if !adminAccount(u, t) {
		return false, nil
	}
	if r.In.Directory == nil {
		return true, nil
	}
	d, _, err := r.In.Directory.Load(ctx, t.ID)
	if err != nil {
		return false, err
	}
	_, ok := d.User(AdoptedUserID(t, "admin"))
	return ok, nil
}

// marked is one of the tenant's users that Tenancy marks with attributes.
type marked struct {
	// who names the user in repair records, with its id: never by its
	// username, which is an email address.
	who      string
	username string
	want     map[string][]string
}

// markedUsers lists the tenant's users that carry Tenancy's attributes:
// its administrator, while one is recorded, and in a realm of its own the
// break-glass administrator.
func markedUsers(t domain.Tenant) []marked {
	var out []marked
	if _, none := noAdmin(t); !none {
		a := adminUser(t)
		if !inSharedRealm(t) {
			a = ownAdminUser(t)
		}
		out = append(out, marked{who: "administrator", username: a.Username, want: a.Attributes})
	}
	if !inSharedRealm(t) {
		out = append(out, marked{who: "break-glass administrator", username: BreakGlassUsername, want: breakGlassMarks(t)})
	}
	return out
}

// attributes repairs what keeps the tenant's users marked in realm: the
// declarations of Tenancy's attributes in the realm's user profile (without
// which Keycloak drops them from every write), and the marks on the users
// themselves, lost by tenants provisioned before the declarations existed.
// A user who is no longer there is left alone.
func (r *Reconciler) attributes(ctx context.Context, t domain.Tenant, realm string) ([]events.TenantDriftRepaired, error) {
	var out []events.TenantDriftRepaired
	declared, err := r.In.declareAttributes(ctx, realm)
	if err != nil {
		return nil, err
	}
	if len(declared) > 0 {
		out = append(out, events.TenantDriftRepaired{System: "keycloak", Resource: "realm " + realm + " user profile",
			Found: "no administrator-only declaration of " + strings.Join(declared, ", "), Expected: "declared, seen and edited by administrators only",
			Action: "declared " + strings.Join(declared, ", ")})
	}
	for _, m := range markedUsers(t) {
		u, found, err := r.In.Keycloak.FindUser(ctx, realm, m.username)
		if err != nil {
			return out, err
		}
		if !found {
			continue
		}
		if inSharedRealm(t) {
			keep, err := r.adminKept(ctx, t, u)
			if err != nil {
				return out, err
			}
			if !keep {
				continue
			}
		}
		set, err := r.In.markUser(ctx, realm, u, m.want)
		if err != nil {
			return out, err
		}
		if len(set) > 0 {
			out = append(out, events.TenantDriftRepaired{System: "keycloak", Resource: m.who + " " + u.ID + " in realm " + realm,
				Found: "without " + strings.Join(set, ", "), Expected: "marked as the tenant's", Action: "set " + strings.Join(set, ", ")})
		}
	}
	return out, nil
}

func wantStatus(s domain.State) string {
	if s == domain.StateActive {
		return "active"
	}
	return "paused"
}

func (r *Reconciler) billing(ctx context.Context, t domain.Tenant) ([]events.TenantDriftRepaired, error) {
	b := r.In.Billing
	key := func(what string) string {
		return "reconcile-" + t.ID + "-" + strconv.FormatInt(t.Version, 10) + "-" + what
	}
	acct, err := b.Get(ctx, t.ID)
	if errors.Is(err, billing.ErrNotFound) {
		if _, provisioned := t.Provisioning.ExternalIDs["billing_account"]; !provisioned {
			return nil, nil
		}
		if _, err := b.Create(ctx, billing.NewAccount{TenantID: t.ID, Slug: t.Slug, DisplayName: t.DisplayName, Plan: t.Plan, CustomerRef: t.CustomerRef}, key("create")); err != nil && !errors.Is(err, billing.ErrExists) {
			return nil, err
		}
		if acct, err = b.Get(ctx, t.ID); err != nil {
			return nil, err
		}
		return append(r.billingState(ctx, t, acct, key), events.TenantDriftRepaired{System: "billing", Resource: "account", Found: "missing", Expected: "present", Action: "recreated the account"}), nil
	}
	if err != nil {
		return nil, err
	}
	return r.billingState(ctx, t, acct, key), nil
}

func (r *Reconciler) billingState(ctx context.Context, t domain.Tenant, acct billing.Account, key func(string) string) []events.TenantDriftRepaired {
	var out []events.TenantDriftRepaired
	if acct.Plan != t.Plan {
		if _, err := r.In.Billing.SetPlan(ctx, t.ID, t.Plan, key("plan")); err != nil {
			r.Log.WarnContext(ctx, "reconcile: setting the billing plan failed", "tenant_id", t.ID, "error", err)
		} else {
			out = append(out, events.TenantDriftRepaired{System: "billing", Resource: "account plan", Found: acct.Plan, Expected: t.Plan, Action: "set the plan"})
		}
	}
	if want := wantStatus(t.State); acct.Status != want {
		if _, err := r.In.Billing.SetStatus(ctx, t.ID, want, "reconcile: tenant "+string(t.State), key("status")); err != nil {
			r.Log.WarnContext(ctx, "reconcile: setting the billing status failed", "tenant_id", t.ID, "error", err)
		} else {
			out = append(out, events.TenantDriftRepaired{System: "billing", Resource: "account status", Found: acct.Status, Expected: want, Action: "set the status"})
		}
	}
	return out
}

// All reconciles every listed tenant and returns how many repairs it made.
func (r *Reconciler) All(ctx context.Context) (int, error) {
	if r.List == nil {
		return 0, errors.New("reconcile needs the read model to list tenants")
	}
	start := time.Now()
	ctx, span := tracing.Start(ctx, "reconcile")
	defer span.End()
	ids, err := r.List(ctx)
	if err != nil {
		tracing.Fail(span, err)
		return 0, err
	}
	total, failed := 0, 0
	for _, id := range ids {
		repairs, err := r.Tenant(ctx, id)
		total += len(repairs)
		if err != nil {
			failed++
			r.Log.WarnContext(ctx, "reconcile failed for a tenant", "tenant_id", id, "error", err)
		}
	}
	metrics.ReconcileDuration.Observe(metrics.Since(start))
	if r.Observe != nil {
		r.Observe(time.Since(start), len(ids), total)
	}
	if failed > 0 {
		return total, fmt.Errorf("%d of %d tenants could not be reconciled (see the log)", failed, len(ids))
	}
	return total, nil
}

// Run reconciles every interval until ctx ends.
func (r *Reconciler) Run(ctx context.Context, interval time.Duration) error {
	if r.List == nil || interval <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if n, err := r.All(ctx); err != nil && ctx.Err() == nil {
			r.Log.WarnContext(ctx, "reconcile pass incomplete", "repairs", n, "error", err)
		}
	}
}
