package saga

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/google/uuid"
	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/command"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tenancyhq/tenancy/internal/billing"
	"github.com/tenancyhq/tenancy/internal/keycloak"
	"github.com/tenancyhq/tenancy/internal/realmsync"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// Step names.
const (
	StepPolicy     = "policy"
	StepRealm      = "realm"
	StepClient     = "client"
	StepRoles      = "roles"
	StepAdmin      = "admin"
	StepBreakGlass = "break_glass_admin"
	// StepDirectory takes the administrators into the tenant's directory and
	// syncs the directory's users and clients into the realm.
	StepDirectory       = realmsync.ActivationStep
	StepBillingAccount  = "billing_account"
	StepRealmDisable    = "realm_disable"
	StepRealmEnable     = "realm_enable"
	StepRealmDelete     = "realm_delete"
	StepBillingPause    = "billing_pause"
	StepBillingResume   = "billing_resume"
	StepBillingClose    = "billing_close"
	StepBillingRemove   = "billing_remove"
	StepErasePersonal   = "personal_data_erase"
	StepCompensateRealm = "realm_remove"
)

// Step names of a tenant placed in the shared realm, which has an
// organization there instead of a realm, client and roles of its own.
const (
	StepOrganization  = "organization"
	StepOrgAdmin      = "org_admin"
	StepOrgDisable    = "organization_disable"
	StepOrgEnable     = "organization_enable"
	StepOrgDelete     = "organization_delete"
	StepCompensateOrg = "organization_remove"
)

// Names of what the provisioner creates in each tenant realm.
const (
	// AppClientID is the controller client whose tokens carry the tenant's
	// identity, plan and features.
	AppClientID = keycloak.TenantAppClientID
	// BreakGlassUsername is the emergency administrator.
	BreakGlassUsername = "break-glass"
	// AttrTenantID marks a realm (and its users) as this tenant's.
	AttrTenantID = realmsync.AttrTenantID
	// AttrBreakGlass marks the break-glass administrator.
	AttrBreakGlass = realmsync.AttrBreakGlass
)

// userAttributes are the declarations, for a realm's user profile, of
// every user attribute Tenancy writes. Keycloak 24 and later drop an
// attribute the profile does not declare from user writes, answering 2xx,
// so each must be declared before a user can carry it. Administrators (the
// provisioner, through the Admin API) see and write them; users do
// neither, since they say whose a user is and must not be forged from the
// account console. tenancy.tenant_id is multivalued because an
// administrator in the shared realm lists every tenant it administers.
func userAttributes() []keycloak.ProfileAttribute {
	adminOnly := func() *keycloak.AttributePermissions {
		return &keycloak.AttributePermissions{View: []string{keycloak.ProfileAdmin}, Edit: []string{keycloak.ProfileAdmin}}
	}
	return []keycloak.ProfileAttribute{
		{Name: AttrTenantID, DisplayName: "Tenancy tenant", Multivalued: true, Permissions: adminOnly()},
		{Name: AttrBreakGlass, DisplayName: "Tenancy break-glass administrator", Permissions: adminOnly()},
		// Several in the shared realm: an account of several tenants.
		{Name: realmsync.AttrUserID, DisplayName: "Tenancy user", Multivalued: true, Permissions: adminOnly()},
		{Name: realmsync.AttrMemberships, DisplayName: "Tenancy org-unit memberships", Permissions: adminOnly()},
		{Name: realmsync.AttrGrants, DisplayName: "Tenancy grants (shared realm)", Multivalued: true, Permissions: adminOnly()},
	}
}

// declaredAsWanted reports whether have, a declaration in a realm's user
// profile, gives administrators what want does and users nothing; what
// else it says (display name, validations, group, ...) is the realm's own.
func declaredAsWanted(have, want keycloak.ProfileAttribute) bool {
	p := have.Permissions
	return p != nil && slices.Contains(p.Edit, keycloak.ProfileAdmin) &&
		!slices.Contains(p.Edit, keycloak.ProfileUser) && !slices.Contains(p.View, keycloak.ProfileUser) &&
		(have.Multivalued || !want.Multivalued)
}

// declareAttributes makes the realm's user profile declare every attribute
// of userAttributes as wanted, leaving the rest of the profile as it is,
// and returns the names it declared or corrected. Keycloak has no
// conditional update of the profile: a change made by someone else between
// the read and the write is lost, which is why it writes only when
// something is missing.
func (in Integrations) declareAttributes(ctx context.Context, realm string) ([]string, error) {
	p, err := in.Keycloak.GetUserProfile(ctx, realm)
	if err != nil {
		return nil, err
	}
	var changed []string
	for _, want := range userAttributes() {
		i := slices.IndexFunc(p.Attributes, func(a keycloak.ProfileAttribute) bool { return a.Name == want.Name })
		switch {
		case i < 0:
			p.Attributes = append(p.Attributes, want)
		case !declaredAsWanted(p.Attributes[i], want):
			p.Attributes[i].Permissions = want.Permissions
			p.Attributes[i].Multivalued = p.Attributes[i].Multivalued || want.Multivalued
		default:
			continue
		}
		changed = append(changed, want.Name)
	}
	if p.UnmanagedAttributePolicy == "" {
		// Tenants' own user attributes are not known in advance: let the
		// Admin API (Tenancy) write and read them, and users neither.
		p.UnmanagedAttributePolicy = keycloak.UnmanagedAdminEdit
		changed = append(changed, "unmanagedAttributePolicy")
	}
	if len(changed) == 0 {
		return nil, nil
	}
	_, err = in.Keycloak.UpdateUserProfile(ctx, realm, p)
	return changed, err
}

// unmarked returns the names of the attributes of want of which u lacks a
// value, sorted.
func unmarked(u keycloak.User, want map[string][]string) []string {
	var out []string
	for name, values := range want {
		for _, v := range values {
			if !slices.Contains(u.Attributes[name], v) {
				out = append(out, name)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// markUser makes sure u, as read from realm, carries every value of want
// (keeping its other values), and returns the names of the attributes it
// had to set. It declares them in the realm's user profile first, and
// reads u again then, since values stored while undeclared show again once
// declared. It reads the user back after the write: Keycloak drops what
// its profile does not let administrators write without saying so, and a
// mark still missing is a failure, not a success.
func (in Integrations) markUser(ctx context.Context, realm string, u keycloak.User, want map[string][]string) ([]string, error) {
	missing := unmarked(u, want)
	if len(missing) == 0 {
		return nil, nil
	}
	kc := in.Keycloak
	declared, err := in.declareAttributes(ctx, realm)
	if err != nil {
		return nil, err
	}
	if len(declared) > 0 {
		if u, err = kc.GetUser(ctx, realm, u.ID); err != nil {
			return nil, err
		}
		if len(unmarked(u, want)) == 0 {
			return missing, nil
		}
	}
	for name, values := range want {
		have := u.Attributes[name]
		add := slices.DeleteFunc(slices.Clone(values), func(v string) bool { return slices.Contains(have, v) })
		if len(add) > 0 {
			u.Attributes = withAttr(u.Attributes, name, append(slices.Clone(have), add...))
		}
	}
	if err := kc.UpdateUser(ctx, realm, u); err != nil {
		return nil, err
	}
	back, err := kc.GetUser(ctx, realm, u.ID)
	if err != nil {
		return nil, err
	}
	if still := unmarked(back, want); len(still) > 0 {
		// The user id, not the username: reasons are recorded, and the
		// username is an email address.
		return nil, Permanent("Keycloak realm %q did not keep the attributes %s on user %s although they were written; its user profile must let administrators edit them (the provisioner declares them with view and edit for admin): fix the declarations, then retry",
			realm, strings.Join(still, ", "), u.ID)
	}
	return missing, nil
}

// RealmRoles are created in every tenant realm.
// They carry the tenant-wide roles of the tenant's users; org-unit roles
// are memberships (a token claim), never realm roles, so an org unit's
// admin is never an admin everywhere.
var RealmRoles = []keycloak.Role{
	{Name: domain.UserRoleTenantAdmin, Description: "Administers the tenant: its users, clients, org units and memberships"},
	{Name: domain.UserRoleTenantViewer, Description: "Reads all of the tenant"},
}

// KeyDestroyer erases a tenant's personal-data key.
type KeyDestroyer interface {
	Destroy(ctx context.Context, tenantID string) error
}

// Integrations are the external systems sagas act on. A nil system is not
// configured: its steps are recorded as skipped, with the reason.
type Integrations struct {
	Keycloak *keycloak.Client
	// RealmSMTP, when set, is the smtpServer configuration every tenant
	// realm gets, so that Keycloak can email users.
	RealmSMTP map[string]string
	Billing   *billing.Client
	Keys      KeyDestroyer
	Catalog   *domain.Catalog
	// Directory, when set, takes the activation's administrators into the
	// tenant's directory; ClientSecrets lets the realm sync give clients
	// their secrets.
	Directory     *app.Directory
	ClientSecrets realmsync.Secrets
}

const (
	noIdentity = "no identity provider configured (KEYCLOAK_URL is unset)"
	noBilling  = "no billing system configured (BILLING_URL is unset)"
)

func skip(name, why string) Step {
	return Step{Name: name, Run: func(context.Context, domain.Tenant) (Outcome, error) {
		return Outcome{Skipped: true, Detail: why}, nil
	}}
}

// NewPlan returns the steps of each saga for the configured integrations.
// Identity steps come in two kinds, each applying to the tenants of one
// placement (see Step.Applies): realm steps for a tenant in a realm of its
// own, organization steps for one in the shared realm.
func NewPlan(in Integrations) Plan {
	return func(saga string) []Step {
		switch saga {
		case domain.SagaActivate:
			return []Step{in.policy(), own(in.identity(StepRealm, in.ensureRealm)), own(in.identity(StepClient, in.ensureClient)),
				own(in.identity(StepRoles, in.ensureRoles)), own(in.identity(StepAdmin, in.ensureAdmin)), own(in.identity(StepBreakGlass, in.ensureBreakGlass)),
				org(in.identity(StepOrganization, in.ensureOrganization)), org(in.identity(StepOrgAdmin, in.ensureOrgAdmin)),
				in.directoryStep(), in.money(StepBillingAccount, in.ensureAccount)}
		case domain.SagaSuspend:
			return []Step{own(in.identity(StepRealmDisable, in.realmEnabled(false))), org(in.identity(StepOrgDisable, in.orgEnabled(false))),
				in.money(StepBillingPause, in.accountStatus("paused"))}
		case domain.SagaResume:
			return []Step{own(in.identity(StepRealmEnable, in.realmEnabled(true))), org(in.identity(StepOrgEnable, in.orgEnabled(true))),
				in.money(StepBillingResume, in.accountStatus("active"))}
		case domain.SagaArchive:
			return []Step{own(in.identity(StepRealmDisable, in.realmEnabled(false))), org(in.identity(StepOrgDisable, in.orgEnabled(false))),
				in.money(StepBillingClose, in.accountStatus("closed"))}
		case domain.SagaRestore:
			return []Step{in.money(StepBillingPause, in.accountStatus("paused"))}
		case domain.SagaCancel:
			return []Step{own(in.identity(StepCompensateRealm, in.removeRealm)), org(in.identity(StepCompensateOrg, in.removeOrganization)),
				in.money(StepBillingRemove, in.removeAccount)}
		case domain.SagaDelete:
			return []Step{own(in.identity(StepRealmDelete, in.removeRealm)), org(in.identity(StepOrgDelete, in.removeOrganization)),
				in.money(StepBillingClose, in.accountStatus("closed")), in.erase()}
		}
		return nil
	}
}

// inSharedRealm reports whether the tenant's identity lives as an
// organization in the shared tenant's realm; a tenant with no placement
// recorded (all of them before customers existed) has a realm of its own.
func inSharedRealm(t domain.Tenant) bool {
	return t.Realm != nil && t.Realm.Mode == domain.RealmShared
}

// own makes s a step for tenants in a realm of their own only.
func own(s Step) Step { return placed(false, s) }

// org makes s a step for tenants in the shared realm only.
func org(s Step) Step { return placed(true, s) }

// placed makes s apply only to tenants in the shared realm (shared) or
// only to the others. The runner does not run it for the others; a caller
// that runs steps directly gets a skip, so that a realm step can never
// make a realm named after a tenant that has none.
func placed(shared bool, s Step) Step {
	applies := func(t domain.Tenant) bool { return inSharedRealm(t) == shared }
	run := s.Run
	s.Applies = applies
	s.Run = func(ctx context.Context, t domain.Tenant) (Outcome, error) {
		if !applies(t) {
			return Outcome{Skipped: true, Detail: "not for this tenant's realm placement"}, nil
		}
		return run(ctx, t)
	}
	return s
}

// identity is a step against Keycloak, skipped when it is not configured.
func (in Integrations) identity(name string, run func(context.Context, domain.Tenant) (Outcome, error)) Step {
	return external(name, in.Keycloak != nil, noIdentity, "Keycloak", run)
}

// money is a step against billing, skipped when it is not configured.
func (in Integrations) money(name string, run func(context.Context, domain.Tenant) (Outcome, error)) Step {
	return external(name, in.Billing != nil, noBilling, "billing", run)
}

// external is a step against an external system: skipped with reason
// unless the system is configured, and with its errors classified as that
// system's.
func external(name string, configured bool, reason, system string, run func(context.Context, domain.Tenant) (Outcome, error)) Step {
	if !configured {
		return skip(name, reason)
	}
	return Step{Name: name, Run: func(ctx context.Context, t domain.Tenant) (Outcome, error) {
		out, err := run(ctx, t)
		return out, classify(system, err)
	}}
}

// temporary is implemented by the clients' errors.
type temporary interface {
	Temporary() bool
	RetryAfterDuration() time.Duration
}

// classify turns a client error into a retryable one, or a permanent one
// whose reason says what to fix.
func classify(system string, err error) error {
	if err == nil {
		return nil
	}
	var perm *PermanentError
	if errors.As(err, &perm) {
		return err
	}
	var t temporary
	if errors.As(err, &t) {
		if t.Temporary() {
			return &RetryAfterError{After: t.RetryAfterDuration(), Err: err}
		}
		var kc *keycloak.Error
		if errors.As(err, &kc) {
			switch kc.Status {
			case 401:
				return Permanent("Keycloak rejected the provisioner's credentials (%s); check KEYCLOAK_CLIENT_ID and KEYCLOAK_CLIENT_SECRET, then retry", kc.Message)
			case 403:
				return Permanent("Keycloak refused %s %s: the provisioner's service account lacks the admin roles it needs (create-realm, or admin of the realm); grant them, then retry", kc.Method, kc.Path)
			}
			return Permanent("Keycloak refused %s %s with %d: %s; fix the cause, then retry", kc.Method, kc.Path, kc.Status, kc.Message)
		}
		var be *billing.Error
		if errors.As(err, &be) {
			if be.Status == 401 || be.Status == 403 {
				return Permanent("billing refused the provisioner's token (%d %s); check BILLING_TOKEN, then retry", be.Status, be.Title)
			}
			return Permanent("billing refused %s %s with %d: %s; fix the cause, then retry", be.Method, be.Path, be.Status, strings.TrimSpace(be.Title+" "+be.Detail))
		}
		return Permanent("%s: %v", system, err)
	}
	// Transport failures (timeouts, refused or dropped connections) are
	// worth retrying; anything else is a bug worth a retry too, bounded.
	var netErr net.Error
	var urlErr *url.Error
	if errors.As(err, &netErr) || errors.As(err, &urlErr) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return err
}

// policy re-checks the policy the activation was decided under: the
// catalog may have changed since.
func (in Integrations) policy() Step {
	return Step{Name: StepPolicy, Run: func(ctx context.Context, t domain.Tenant) (Outcome, error) {
		if t.Activation == nil {
			return Outcome{}, Permanent("the tenant has no recorded activation")
		}
		for _, c := range t.Activation.Policy {
			if c.Outcome != "passed" {
				return Outcome{}, Permanent("policy check %s did not pass at activation (%s)", c.Name, c.Detail)
			}
		}
		if in.Catalog != nil {
			_, problems := in.Catalog.Evaluate(domain.Placement{Plan: t.Plan, Isolation: t.Isolation, Regions: t.Regions}, true)
			if len(problems) > 0 {
				var msgs []string
				for _, p := range problems {
					msgs = append(msgs, p.Field+": "+p.Message)
				}
				return Outcome{}, Permanent("the catalog changed since activation was requested and the tenant no longer passes: %s; cancel the activation or fix the catalog, then retry", strings.Join(msgs, "; "))
			}
		}
		return Outcome{Detail: fmt.Sprintf("%d checks passed", len(t.Activation.Policy))}, nil
	}}
}

func (in Integrations) realmSpec(t domain.Tenant) keycloak.Realm {
	return keycloak.Realm{
		Realm: t.Slug, DisplayName: t.DisplayName, Enabled: keycloak.Bool(true), SSLRequired: "external",
		BruteForceProtected: keycloak.Bool(true), RegistrationAllowed: keycloak.Bool(false), LoginWithEmailAllowed: keycloak.Bool(true),
		ResetPasswordAllowed: keycloak.Bool(true), AccessTokenLifespan: 300,
		Attributes: map[string]string{AttrTenantID: t.ID}, SMTPServer: in.RealmSMTP,
	}
}

// ownRealm returns the tenant's realm, creating it if needed, and refuses a
// realm of that name that belongs to someone else.
func (in Integrations) ownRealm(ctx context.Context, t domain.Tenant, create bool) (keycloak.Realm, bool, error) {
	kc := in.Keycloak
	r, err := kc.GetRealm(ctx, t.Slug)
	created := false
	if errors.Is(err, keycloak.ErrNotFound) && create {
		err = kc.CreateRealm(ctx, in.realmSpec(t))
		if err == nil || errors.Is(err, keycloak.ErrConflict) {
			// Created now, or by an earlier attempt whose response was lost:
			// read it back and check it is ours.
			created = err == nil
			r, err = kc.GetRealm(ctx, t.Slug)
		}
	}
	if err != nil {
		return r, false, err
	}
	if owner := r.Attributes[AttrTenantID]; owner != t.ID {
		return r, false, Permanent("Keycloak already has a realm %q that is not this tenant's (its %s is %q); remove or rename that realm, then retry", t.Slug, AttrTenantID, owner)
	}
	return r, created, nil
}

// ensureRealm makes the tenant's realm, enabled, with a user profile that
// declares the attributes the later steps write on its users. Declaring
// them belongs to this step rather than one of its own: a realm that cannot
// keep them is not ready, and the recorded step lists stay as they were.
func (in Integrations) ensureRealm(ctx context.Context, t domain.Tenant) (Outcome, error) {
	r, created, err := in.ownRealm(ctx, t, true)
	if err != nil {
		return Outcome{}, err
	}
	detail := "realm already present"
	if created {
		detail = "created realm " + t.Slug
	}
	if !r.IsEnabled() {
		if err := in.Keycloak.UpdateRealm(ctx, t.Slug, keycloak.Realm{Enabled: keycloak.Bool(true)}); err != nil {
			return Outcome{}, err
		}
		detail += "; enabled it"
	}
	declared, err := in.declareAttributes(ctx, t.Slug)
	if err != nil {
		return Outcome{}, err
	}
	if len(declared) > 0 {
		detail += "; declared " + strings.Join(declared, ", ") + " in its user profile"
	}
	return Outcome{Detail: detail, ExternalIDs: map[string]string{"keycloak_realm": t.Slug}}, nil
}

// features returns the plan's features now (the catalog) or as recorded at
// activation.
func (in Integrations) features(t domain.Tenant) []string {
	if in.Catalog != nil {
		if p, ok := in.Catalog.Plan(t.Plan); ok {
			return p.Features
		}
	}
	if t.Activation != nil {
		return t.Activation.Features
	}
	return nil
}

// Mappers returns the protocol mappers that put the tenant's identity, plan
// and features into every token of its realm.
func (in Integrations) Mappers(t domain.Tenant) []keycloak.ProtocolMapper {
	feats := in.features(t)
	if feats == nil {
		feats = []string{}
	}
	featJSON, _ := json.Marshal(feats)
	claim := func(name, value, typ string) keycloak.ProtocolMapper {
		return keycloak.ProtocolMapper{Name: "tenancy-" + strings.ReplaceAll(name, "_", "-"), Protocol: "openid-connect", ProtocolMapper: "oidc-hardcoded-claim-mapper",
			Config: map[string]string{"claim.name": name, "claim.value": value, "jsonType.label": typ, "access.token.claim": "true",
				"id.token.claim": "true", "userinfo.token.claim": "true", "introspection.token.claim": "true"}}
	}
	// memberships comes from the user: the attribute the realm sync keeps
	// holds the user's org units and roles there as JSON.
	fromUser := func(name, attribute, claim string, multi bool) keycloak.ProtocolMapper {
		return keycloak.ProtocolMapper{Name: name, Protocol: "openid-connect", ProtocolMapper: "oidc-usermodel-attribute-mapper",
			Config: map[string]string{"user.attribute": attribute, "claim.name": claim, "jsonType.label": "JSON", "multivalued": strconv.FormatBool(multi),
				"access.token.claim": "true", "id.token.claim": "true", "userinfo.token.claim": "true", "introspection.token.claim": "true"}}
	}
	memberships := fromUser("tenancy-memberships", realmsync.AttrMemberships, "memberships", false)
	if t.ID == domain.SharedTenantID {
		// The shared realm's users belong to the tenants placed in it, not
		// to the shared tenant: a fixed tenant_id, plan or features would
		// name the wrong tenant in all their tokens. Each carries its grants
		// instead (realmsync.AttrGrants), one per tenant, and a user of the
		// shared tenant itself none, its tenant_ids (its tenancy.tenant_id)
		// naming the shared tenant.
		ids := fromUser("tenancy-tenant-ids", AttrTenantID, "tenant_ids", true)
		ids.Config["jsonType.label"] = "String"
		return []keycloak.ProtocolMapper{memberships, fromUser("tenancy-grants", realmsync.AttrGrants, realmsync.GrantsClaim, true), ids}
	}
	return []keycloak.ProtocolMapper{
		claim("tenant_id", t.ID, "String"), claim("tenant_slug", t.Slug, "String"),
		claim("plan", t.Plan, "String"), claim("features", string(featJSON), "JSON"), memberships,
	}
}

// EnsureMappers makes the client's mappers the wanted ones and returns
// those it changed.
func (in Integrations) EnsureMappers(ctx context.Context, t domain.Tenant, clientUUID string) ([]string, error) {
	kc := in.Keycloak
	have, err := kc.Mappers(ctx, t.Slug, clientUUID)
	if err != nil {
		return nil, err
	}
	var changed []string
	wanted := in.Mappers(t)
	for _, want := range wanted {
		i := slices.IndexFunc(have, func(m keycloak.ProtocolMapper) bool { return m.Name == want.Name })
		switch {
		case i < 0:
			if err := kc.CreateMapper(ctx, t.Slug, clientUUID, want); err != nil && !errors.Is(err, keycloak.ErrConflict) {
				return changed, err
			}
			changed = append(changed, want.Name)
		case have[i].Config["claim.value"] != want.Config["claim.value"] || have[i].ProtocolMapper != want.ProtocolMapper:
			want.ID = have[i].ID
			if err := kc.UpdateMapper(ctx, t.Slug, clientUUID, want); err != nil {
				return changed, err
			}
			changed = append(changed, want.Name)
		}
	}
	// A Tenancy mapper no longer wanted (the shared realm's fixed claims,
	// from before it carried grants) would still put its claim in tokens.
	for _, m := range have {
		if strings.HasPrefix(m.Name, "tenancy-") && !slices.ContainsFunc(wanted, func(w keycloak.ProtocolMapper) bool { return w.Name == m.Name }) {
			if err := kc.DeleteMapper(ctx, t.Slug, clientUUID, m.ID); err != nil && !errors.Is(err, keycloak.ErrNotFound) {
				return changed, err
			}
			changed = append(changed, "removed "+m.Name)
		}
	}
	return changed, nil
}

func (in Integrations) ensureClient(ctx context.Context, t domain.Tenant) (Outcome, error) {
	kc := in.Keycloak
	cl, ok, err := kc.FindClient(ctx, t.Slug, AppClientID)
	if err != nil {
		return Outcome{}, err
	}
	detail := "client already present"
	if !ok {
		_, err := kc.CreateClient(ctx, t.Slug, keycloak.OIDCClient{
			ClientID: AppClientID, Name: t.DisplayName + " (Tenancy)", Enabled: keycloak.Bool(true), Protocol: "openid-connect",
			PublicClient: keycloak.Bool(false), StandardFlowEnabled: keycloak.Bool(true), DirectAccessGrantsEnabled: keycloak.Bool(false),
			ServiceAccountsEnabled: keycloak.Bool(false), Attributes: map[string]string{AttrTenantID: t.ID}, ProtocolMappers: in.Mappers(t),
		})
		if err != nil && !errors.Is(err, keycloak.ErrConflict) {
			return Outcome{}, err
		}
		if cl, ok, err = kc.FindClient(ctx, t.Slug, AppClientID); err != nil {
			return Outcome{}, err
		}
		if !ok {
			return Outcome{}, fmt.Errorf("client %s created but not found", AppClientID)
		}
		detail = "created client " + AppClientID
	}
	changed, err := in.EnsureMappers(ctx, t, cl.ID)
	if err != nil {
		return Outcome{}, err
	}
	if len(changed) > 0 {
		detail += "; set mappers " + strings.Join(changed, ", ")
	}
	return Outcome{Detail: detail, ExternalIDs: map[string]string{"keycloak_client": cl.ID}}, nil
}

func (in Integrations) ensureRoles(ctx context.Context, t domain.Tenant) (Outcome, error) {
	var created []string
	for _, r := range RealmRoles {
		_, err := in.Keycloak.GetRole(ctx, t.Slug, r.Name)
		if errors.Is(err, keycloak.ErrNotFound) {
			err = in.Keycloak.CreateRole(ctx, t.Slug, r)
			if err == nil {
				created = append(created, r.Name)
			} else if errors.Is(err, keycloak.ErrConflict) {
				err = nil
			}
		}
		if err != nil {
			return Outcome{}, err
		}
	}
	if len(created) == 0 {
		return Outcome{Detail: "roles already present"}, nil
	}
	return Outcome{Detail: "created roles " + strings.Join(created, ", ")}, nil
}

// findOrCreateUser finds the user of realm with u's username or creates
// it from u, and reports whether it created it.
func (in Integrations) findOrCreateUser(ctx context.Context, realm string, u keycloak.User) (keycloak.User, bool, error) {
	kc := in.Keycloak
	existing, ok, err := kc.FindUser(ctx, realm, u.Username)
	if err != nil || ok {
		return existing, false, err
	}
	_, err = kc.CreateUser(ctx, realm, u)
	if err != nil && !errors.Is(err, keycloak.ErrConflict) {
		return existing, false, err
	}
	created := err == nil
	if existing, ok, err = kc.FindUser(ctx, realm, u.Username); err != nil {
		return existing, false, err
	}
	if !ok {
		return existing, false, errors.New("the administrator was created but cannot be found by username yet")
	}
	return existing, created, nil
}

// ensureUser finds or creates a user of the tenant's realm, makes sure it
// carries u's attributes, and maps the admin role to it. It reports
// whether it created the user.
func (in Integrations) ensureUser(ctx context.Context, t domain.Tenant, u keycloak.User) (keycloak.User, bool, error) {
	existing, created, err := in.findOrCreateUser(ctx, t.Slug, u)
	if err != nil {
		return existing, created, err
	}
	if _, err := in.markUser(ctx, t.Slug, existing, u.Attributes); err != nil {
		return existing, created, err
	}
	admin, err := in.Keycloak.GetRole(ctx, t.Slug, domain.UserRoleTenantAdmin)
	if err != nil {
		return existing, created, err
	}
	return existing, created, in.Keycloak.AddRealmRoles(ctx, t.Slug, existing.ID, []keycloak.Role{admin})
}

// adminActions are what a new administrator must do before first use.
var adminActions = []string{"VERIFY_EMAIL", "UPDATE_PASSWORD"}

// adminUser is the tenant's first administrator, named at activation, as
// a new user (its username the email address, lowercased).
func adminUser(t domain.Tenant) keycloak.User {
	a := t.Activation.Admin
	first, last, _ := strings.Cut(a.Name, " ")
	return keycloak.User{
		Username: strings.ToLower(a.Email), Email: a.Email, FirstName: first, LastName: last, Enabled: true,
		RequiredActions: adminActions, Attributes: map[string][]string{AttrTenantID: {t.ID}},
	}
}

// ownAdminUser is the administrator of a tenant in a realm of its own,
// marked as the directory will have it once the directory step adopts it,
// so that the realm sync finds it done.
func ownAdminUser(t domain.Tenant) keycloak.User {
	a := adminUser(t)
	a.Attributes[realmsync.AttrUserID] = []string{AdoptedUserID(t, "admin")}
	a.Attributes[realmsync.AttrMemberships] = []string{"[]"}
	return a
}

// noAdmin is the outcome of an administrator step with no administrator
// to make.
func noAdmin(t domain.Tenant) (Outcome, bool) {
	if t.Activation == nil || t.Activation.Admin == nil {
		return Outcome{Skipped: true, Detail: "no administrator recorded (erased or never named)"}, true
	}
	return Outcome{}, false
}

// welcome tells a new administrator of realm what to do first, by email
// when the realm can send one, and says what it did.
func (in Integrations) welcome(ctx context.Context, realm string, t domain.Tenant, u keycloak.User, created bool) (string, error) {
	if !created {
		return "administrator already present", nil
	}
	if in.RealmSMTP["host"] == "" {
		return "created the administrator; no SMTP configured for the realm: issue a temporary password with POST /v1/tenants/" + t.ID + "/admin-password", nil
	}
	if err := in.Keycloak.ExecuteActionsEmail(ctx, realm, u.ID, adminActions); err != nil {
		return "", err
	}
	return "created the administrator and emailed them to verify their address and set a password", nil
}

func (in Integrations) ensureAdmin(ctx context.Context, t domain.Tenant) (Outcome, error) {
	if out, none := noAdmin(t); none {
		return out, nil
	}
	u, created, err := in.ensureUser(ctx, t, ownAdminUser(t))
	if err != nil {
		return Outcome{}, err
	}
	detail, err := in.welcome(ctx, t.Slug, t, u, created)
	if err != nil {
		return Outcome{}, err
	}
	return Outcome{Detail: detail, ExternalIDs: map[string]string{"keycloak_admin_user": u.ID}}, nil
}

// breakGlassMarks are the attributes of the tenant's break-glass
// administrator.
func breakGlassMarks(t domain.Tenant) map[string][]string {
	return map[string][]string{AttrTenantID: {t.ID}, AttrBreakGlass: {"true"}, realmsync.AttrUserID: {AdoptedUserID(t, "break-glass")},
		realmsync.AttrMemberships: {"[]"}}
}

func (in Integrations) ensureBreakGlass(ctx context.Context, t domain.Tenant) (Outcome, error) {
	u, created, err := in.ensureUser(ctx, t, keycloak.User{
		Username: BreakGlassUsername, FirstName: "Break", LastName: "Glass", Enabled: true,
		RequiredActions: []string{"UPDATE_PASSWORD"},
		Attributes:      breakGlassMarks(t),
	})
	if err != nil {
		return Outcome{}, err
	}
	detail := "break-glass administrator already present"
	if created {
		detail = "created the break-glass administrator (no password: set one through Keycloak's master realm when it is needed)"
	}
	return Outcome{Detail: detail, ExternalIDs: map[string]string{"keycloak_break_glass_user": u.ID}}, nil
}

// idemKey makes a billing idempotency key stable across retries of one step
// of one saga.
func idemKey(t domain.Tenant, step string) string {
	sum := sha256.Sum256([]byte(t.Provisioning.SagaID + "\x00" + step))
	return "tenancy-" + hex.EncodeToString(sum[:16])
}

func (in Integrations) ensureAccount(ctx context.Context, t domain.Tenant) (Outcome, error) {
	b := in.Billing
	acct, err := b.Create(ctx, billing.NewAccount{TenantID: t.ID, Slug: t.Slug, DisplayName: t.DisplayName, Plan: t.Plan, CustomerRef: t.CustomerRef}, idemKey(t, StepBillingAccount))
	detail := "created the billing account"
	if errors.Is(err, billing.ErrExists) {
		detail = "billing account already present"
		acct, err = b.Get(ctx, t.ID)
	}
	if err != nil {
		return Outcome{}, err
	}
	if acct.Plan != t.Plan {
		if acct, err = b.SetPlan(ctx, t.ID, t.Plan, idemKey(t, StepBillingAccount+":plan")); err != nil {
			return Outcome{}, err
		}
		detail += "; set plan " + t.Plan
	}
	if acct.Status != "active" {
		if acct, err = b.SetStatus(ctx, t.ID, "active", "tenant activated", idemKey(t, StepBillingAccount+":status")); err != nil {
			return Outcome{}, err
		}
		detail += "; made it active"
	}
	return Outcome{Detail: detail, ExternalIDs: map[string]string{"billing_account": acct.AccountID}}, nil
}

func (in Integrations) realmEnabled(enabled bool) func(context.Context, domain.Tenant) (Outcome, error) {
	return func(ctx context.Context, t domain.Tenant) (Outcome, error) {
		r, _, err := in.ownRealm(ctx, t, false)
		if errors.Is(err, keycloak.ErrNotFound) {
			return Outcome{Skipped: true, Detail: "the tenant has no realm (identity was not provisioned)"}, nil
		}
		if err != nil {
			return Outcome{}, err
		}
		state := map[bool]string{true: "enabled", false: "disabled"}[enabled]
		if r.IsEnabled() != enabled {
			if err := in.Keycloak.UpdateRealm(ctx, t.Slug, keycloak.Realm{Enabled: keycloak.Bool(enabled)}); err != nil {
				return Outcome{}, err
			}
		}
		if !enabled {
			// A disabled realm refuses new logins; existing sessions must end too.
			if err := in.Keycloak.LogoutAll(ctx, t.Slug); err != nil {
				return Outcome{}, err
			}
			return Outcome{Detail: "realm " + state + " and its sessions ended"}, nil
		}
		return Outcome{Detail: "realm " + state}, nil
	}
}

func (in Integrations) removeRealm(ctx context.Context, t domain.Tenant) (Outcome, error) {
	_, _, err := in.ownRealm(ctx, t, false)
	if errors.Is(err, keycloak.ErrNotFound) {
		return Outcome{Detail: "no realm to remove"}, nil
	}
	if err != nil {
		return Outcome{}, err
	}
	if err := in.Keycloak.DeleteRealm(ctx, t.Slug); err != nil && !errors.Is(err, keycloak.ErrNotFound) {
		return Outcome{}, err
	}
	return Outcome{Detail: "deleted realm " + t.Slug, ExternalIDs: map[string]string{"keycloak_realm": "", "keycloak_client": "",
		"keycloak_admin_user": "", "keycloak_break_glass_user": ""}}, nil
}

func (in Integrations) accountStatus(status string) func(context.Context, domain.Tenant) (Outcome, error) {
	return func(ctx context.Context, t domain.Tenant) (Outcome, error) {
		acct, err := in.Billing.Get(ctx, t.ID)
		if errors.Is(err, billing.ErrNotFound) {
			return Outcome{Skipped: true, Detail: "the tenant has no billing account"}, nil
		}
		if err != nil {
			return Outcome{}, err
		}
		if acct.Status == status {
			return Outcome{Detail: "billing account already " + status}, nil
		}
		if _, err := in.Billing.SetStatus(ctx, t.ID, status, "tenant "+string(t.State), idemKey(t, "status:"+status)); err != nil {
			return Outcome{}, err
		}
		return Outcome{Detail: "billing account " + status}, nil
	}
}

func (in Integrations) removeAccount(ctx context.Context, t domain.Tenant) (Outcome, error) {
	err := in.Billing.Delete(ctx, t.ID, idemKey(t, StepBillingRemove))
	if errors.Is(err, billing.ErrNotFound) {
		return Outcome{Detail: "no billing account to remove"}, nil
	}
	if err != nil {
		return Outcome{}, err
	}
	return Outcome{Detail: "removed the billing account", ExternalIDs: map[string]string{"billing_account": ""}}, nil
}

func (in Integrations) erase() Step {
	return Step{Name: StepErasePersonal, Run: func(ctx context.Context, t domain.Tenant) (Outcome, error) {
		if in.Keys == nil {
			return Outcome{Skipped: true, Detail: "no keyring configured"}, nil
		}
		if err := in.Keys.Destroy(ctx, t.ID); err != nil {
			return Outcome{}, err
		}
		detail := "personal data key destroyed"
		if in.Directory != nil {
			// Each user's data is sealed under a key of the user's own.
			n, err := in.Directory.EraseUsers(ctx, t.ID)
			if err != nil {
				return Outcome{}, err
			}
			detail += fmt.Sprintf("; the personal data keys of its %d users destroyed", n)
		}
		return Outcome{Detail: detail}, nil
	}}
}

// directoryStep adopts the activation's administrator and the break-glass
// administrator as users of the tenant's directory, then converges the
// realm to the directory (users and clients made while the tenant was a
// draft, and the two administrators' Tenancy marks).
func (in Integrations) directoryStep() Step {
	return Step{Name: StepDirectory, Run: func(ctx context.Context, t domain.Tenant) (Outcome, error) {
		if in.Directory == nil {
			return Outcome{Skipped: true, Detail: "no directory configured"}, nil
		}
		adopted, err := in.adopt(ctx, t)
		if err != nil {
			return Outcome{}, err
		}
		detail := "directory users: " + strings.Join(adopted, ", ")
		if in.Keycloak == nil {
			return Outcome{Detail: detail + "; realm sync skipped: " + noIdentity}, nil
		}
		d, seq, err := in.Directory.Load(ctx, t.ID)
		if err != nil {
			return Outcome{}, err
		}
		sync := realmsync.Syncer{Keycloak: in.Keycloak, Secrets: in.ClientSecrets, EmailNewUsers: in.RealmSMTP["host"] != ""}
		changes, err := sync.SyncAll(ctx, realmsync.Target(t), d)
		if err != nil {
			return Outcome{}, classify("Keycloak", err)
		}
		// What the directory changes after this, the realm-sync reactor
		// syncs once it reads this step's record.
		return Outcome{Detail: fmt.Sprintf("%s; synced %d users and clients into the realm", detail, len(changes)),
			ExternalIDs: map[string]string{realmsync.SyncedSeq: strconv.FormatUint(seq, 10)}}, nil
	}}
}

// AdoptedUserID is the directory id of an administrator the provisioner
// made (who: "admin" or "break-glass"): derived from the tenant, so that a
// retried step adopts it once.
func AdoptedUserID(t domain.Tenant, who string) string { return adoptedID(t.ID, who) }

// adoptedID is AdoptedUserID by tenant id; "" for one that is not a UUID.
func adoptedID(tenantID, who string) string {
	id, err := uuid.Parse(tenantID)
	if err != nil {
		return ""
	}
	return uuid.NewSHA1(id, []byte(who)).String()
}

func (in Integrations) adopt(ctx context.Context, t domain.Tenant) ([]string, error) {
	meta := command.Meta{Actor: Actor, CorrelationID: app.NewID()}
	var out []string
	if a := t.Activation; a != nil && a.Admin != nil {
		first, last, _ := strings.Cut(a.Admin.Name, " ")
		u, err := in.Directory.Adopt(ctx, t.ID, domain.CreateUser{ID: AdoptedUserID(t, "admin"), Username: a.Admin.Email, Email: a.Admin.Email,
			FirstName: first, LastName: last, Roles: []string{domain.UserRoleTenantAdmin}, RequiredActions: adminActions}, meta)
		if err != nil {
			return out, fmt.Errorf("adopting the administrator: %w", err)
		}
		out = append(out, "administrator "+u.ID)
	}
	if !inSharedRealm(t) {
		u, err := in.Directory.Adopt(ctx, t.ID, domain.CreateUser{ID: AdoptedUserID(t, "break-glass"), Username: BreakGlassUsername,
			FirstName: "Break", LastName: "Glass", Roles: []string{domain.UserRoleTenantAdmin}, BreakGlass: true,
			RequiredActions: []string{"UPDATE_PASSWORD"}}, meta)
		if err != nil {
			return out, fmt.Errorf("adopting the break-glass administrator: %w", err)
		}
		out = append(out, "break-glass "+u.ID)
	}
	return out, nil
}
