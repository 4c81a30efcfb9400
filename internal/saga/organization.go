package saga

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/tenancyhq/tenancy/internal/keycloak"
	"github.com/tenancyhq/tenancy/internal/realmsync"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// A tenant placed in the shared realm (domain.RealmPlacement) is an
// organization there, whose alias is in its placement, rather than a realm
// of its own: the steps here take the place of the realm, client, roles and
// administrator steps for it. The shared realm is the shared tenant's own
// realm, made by that tenant's activation.
//
// Its administrator is a user of the shared realm and a member of the
// organization, with no realm role: the shared realm's roles are the shared
// tenant's. One person may administer several tenants of the shared realm,
// so the user's tenancy.tenant_id attribute lists every tenant it was made
// administrator of, and the user is deleted with the last of them.

// sharedRealm checks the realm the tenant is placed in: it must be the
// shared tenant's, and it gets organizations enabled if they are not (they
// are off in a new realm, and every organization call answers 404 until
// they are on). found is false when there is no such realm; enabled is
// true when this call enabled organizations.
func (in Integrations) sharedRealm(ctx context.Context, t domain.Tenant) (found, enabled bool, err error) {
	kc := in.Keycloak
	name := t.Realm.Realm
	r, err := kc.GetRealm(ctx, name)
	if errors.Is(err, keycloak.ErrNotFound) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	if owner := r.Attributes[AttrTenantID]; owner != domain.SharedTenantID {
		return true, false, Permanent("the tenant is placed in Keycloak realm %q, which is not the shared tenant's (its %s is %q, not %s); place the tenant again or fix the realm, then retry",
			name, AttrTenantID, owner, domain.SharedTenantID)
	}
	if r.OrganizationsEnabled != nil && *r.OrganizationsEnabled {
		return true, false, nil
	}
	return true, true, kc.UpdateRealm(ctx, name, keycloak.Realm{OrganizationsEnabled: keycloak.Bool(true)})
}

// errNoSharedRealm is a retryable failure: the shared tenant's activation,
// which makes the realm, may still be under way.
func errNoSharedRealm(t domain.Tenant) error {
	return fmt.Errorf("the shared realm %q does not exist yet (the shared tenant's activation makes it); will retry", t.Realm.Realm)
}

// tenantOrg returns the tenant's organization and whether there is one,
// refusing an organization of that alias that belongs to someone else.
func (in Integrations) tenantOrg(ctx context.Context, t domain.Tenant) (keycloak.Organization, bool, error) {
	o, ok, err := in.Keycloak.FindOrganization(ctx, t.Realm.Realm, t.Realm.Organization)
	if err != nil || !ok {
		return o, false, err
	}
	if owners := o.Attributes[AttrTenantID]; !slices.Contains(owners, t.ID) {
		return o, true, Permanent("Keycloak realm %q already has an organization %q that is not this tenant's (its %s is %q); remove or rename that organization, then retry",
			t.Realm.Realm, o.Alias, AttrTenantID, owners)
	}
	return o, true, nil
}

// createOrg returns the tenant's organization, creating it if needed, and
// reports whether it created it. Its name is its alias, the tenant's slug,
// which no other tenant's can take; the display name is its description.
func (in Integrations) createOrg(ctx context.Context, t domain.Tenant) (keycloak.Organization, bool, error) {
	o, ok, err := in.tenantOrg(ctx, t)
	if err != nil || ok {
		return o, false, err
	}
	realm, alias := t.Realm.Realm, t.Realm.Organization
	_, err = in.Keycloak.CreateOrganization(ctx, realm, keycloak.Organization{
		Name: alias, Alias: alias, Enabled: true, Description: t.DisplayName,
		Attributes: map[string][]string{AttrTenantID: {t.ID}},
	})
	if err != nil && !errors.Is(err, keycloak.ErrConflict) {
		return o, false, err
	}
	// Created now, or by an earlier attempt whose response was lost: read
	// it back and check it is ours. A conflict with nothing of this alias
	// is another organization holding the name.
	created := err == nil
	if o, ok, err = in.tenantOrg(ctx, t); err != nil {
		return o, false, err
	}
	if !ok {
		if created {
			return o, false, fmt.Errorf("organization %s created but not found by its alias yet", alias)
		}
		return o, false, Permanent("Keycloak realm %q already has an organization named %q (with another alias); rename that organization, then retry", realm, alias)
	}
	return o, created, nil
}

func (in Integrations) ensureOrganization(ctx context.Context, t domain.Tenant) (Outcome, error) {
	found, enabledOrgs, err := in.sharedRealm(ctx, t)
	if err != nil {
		return Outcome{}, err
	}
	if !found {
		return Outcome{}, errNoSharedRealm(t)
	}
	realm := t.Realm.Realm
	// The shared tenant's activation declared them, unless its realm
	// predates the declarations.
	declared, err := in.declareAttributes(ctx, realm)
	if err != nil {
		return Outcome{}, err
	}
	o, created, err := in.createOrg(ctx, t)
	if err != nil {
		return Outcome{}, err
	}
	detail := "organization already present"
	if created {
		detail = fmt.Sprintf("created organization %s in realm %s", o.Alias, realm)
	}
	if enabledOrgs {
		detail += "; enabled organizations in realm " + realm
	}
	if len(declared) > 0 {
		detail += "; declared " + strings.Join(declared, ", ") + " in the user profile of realm " + realm
	}
	if !o.Enabled {
		o.Enabled = true
		if err := in.Keycloak.UpdateOrganization(ctx, realm, o); err != nil {
			return Outcome{}, err
		}
		detail += "; enabled it"
	}
	return Outcome{Detail: detail, ExternalIDs: map[string]string{"keycloak_realm": realm, "keycloak_organization": o.ID}}, nil
}

// ensureOrgAdmin makes the tenant's administrator a user of the shared
// realm, marked as this tenant's, and a member of its organization. It
// makes the organization too if it went missing since the step before.
func (in Integrations) ensureOrgAdmin(ctx context.Context, t domain.Tenant) (Outcome, error) {
	if out, none := noAdmin(t); none {
		return out, nil
	}
	found, _, err := in.sharedRealm(ctx, t)
	if err != nil {
		return Outcome{}, err
	}
	if !found {
		return Outcome{}, errNoSharedRealm(t)
	}
	o, _, err := in.createOrg(ctx, t)
	if err != nil {
		return Outcome{}, err
	}
	kc, realm := in.Keycloak, t.Realm.Realm
	u, created, err := in.findOrCreateUser(ctx, realm, adminUser(t))
	if err != nil {
		return Outcome{}, err
	}
	if !created && !adminAccount(u, t) {
		return Outcome{}, Permanent("the shared realm %q already has a user %q that is another tenant's user, not an administrator Tenancy made: it cannot become this tenant's administrator; name another administrator email in the activation, then retry",
			realm, u.Username)
	}
	// Mark it as this tenant's; one that administers other tenants too
	// keeps their ids.
	if _, err := in.markUser(ctx, realm, u, adminUser(t).Attributes); err != nil {
		return Outcome{}, err
	}
	if err := kc.AddOrganizationMember(ctx, realm, o.ID, u.ID); err != nil && !errors.Is(err, keycloak.ErrConflict) {
		return Outcome{}, err
	}
	detail, err := in.welcome(ctx, realm, t, u, created)
	if err != nil {
		return Outcome{}, err
	}
	return Outcome{Detail: detail + "; a member of organization " + o.Alias, ExternalIDs: map[string]string{"keycloak_admin_user": u.ID}}, nil
}

// adminAccount reports whether an existing account of the shared realm may
// become t's administrator: one already t's, one the realm had before
// Tenancy marked anything on it (the operator named that person), or one
// that is only ever the administrator of other organizations. An
// ordinary user of another tenant (whose tenant admins control it, and
// could set its password) or of the shared tenant never is.
func adminAccount(u keycloak.User, t domain.Tenant) bool {
	tenants := u.Attributes[AttrTenantID]
	if slices.Contains(tenants, t.ID) {
		return true
	}
	if slices.Contains(tenants, domain.SharedTenantID) {
		return false
	}
	admins := map[string]bool{}
	for _, id := range tenants {
		admins[adoptedID(id, "admin")] = true
	}
	for _, id := range u.Attributes[realmsync.AttrUserID] {
		if !admins[id] || id == "" {
			return false
		}
	}
	return true
}

// withAttr returns a copy of attributes with key set to v.
func withAttr(attributes map[string][]string, key string, v []string) map[string][]string {
	out := maps.Clone(attributes)
	if out == nil {
		out = map[string][]string{}
	}
	out[key] = v
	return out
}

func (in Integrations) orgEnabled(enabled bool) func(context.Context, domain.Tenant) (Outcome, error) {
	return func(ctx context.Context, t domain.Tenant) (Outcome, error) {
		found, _, err := in.sharedRealm(ctx, t)
		if err != nil {
			return Outcome{}, err
		}
		o, ok := keycloak.Organization{}, false
		if found {
			if o, ok, err = in.tenantOrg(ctx, t); err != nil {
				return Outcome{}, err
			}
		}
		if !ok {
			return Outcome{Skipped: true, Detail: "the tenant has no organization (identity was not provisioned)"}, nil
		}
		if o.Enabled != enabled {
			o.Enabled = enabled
			if err := in.Keycloak.UpdateOrganization(ctx, t.Realm.Realm, o); err != nil {
				return Outcome{}, err
			}
		}
		// Its members may belong to other organizations of the realm too,
		// so their sessions are left alone: a disabled organization drops
		// out of their tokens as they are refreshed. Its clients are its
		// own: they follow the tenant (realmsync.Realm.Suspended).
		clients, err := in.syncOrgClients(ctx, t)
		if err != nil {
			return Outcome{}, err
		}
		return Outcome{Detail: fmt.Sprintf("organization %s %s; synced its %d clients", o.Alias, onOff(enabled), clients)}, nil
	}
}

// syncOrgClients converges the tenant's clients in the shared realm to
// its directory and state, and returns how many it has.
func (in Integrations) syncOrgClients(ctx context.Context, t domain.Tenant) (int, error) {
	if in.Directory == nil {
		return 0, nil
	}
	d, _, err := in.Directory.Load(ctx, t.ID)
	if err != nil {
		return 0, err
	}
	sync := realmsync.Syncer{Keycloak: in.Keycloak, Secrets: in.ClientSecrets}
	n := 0
	for _, c := range d.Clients() {
		_, err := sync.SyncClient(ctx, realmsync.Target(t), d, c.ID, c.ClientID)
		switch {
		case errors.Is(err, realmsync.ErrForeign):
			// Its client id is another tenant's client there: it was
			// never made, so there is nothing of this tenant's to change.
		case err != nil:
			return n, classify("Keycloak", err)
		default:
			n++
		}
	}
	return n, nil
}

// removeOrganization deletes the tenant's organization and lets go of its
// administrator. An organization of that alias that is not the tenant's is
// left alone: there is nothing of the tenant's to remove.
func (in Integrations) removeOrganization(ctx context.Context, t domain.Tenant) (Outcome, error) {
	cleared := map[string]string{"keycloak_realm": "", "keycloak_organization": "", "keycloak_admin_user": ""}
	found, _, err := in.sharedRealm(ctx, t)
	if err != nil {
		return Outcome{}, err
	}
	if !found {
		return Outcome{Detail: "no shared realm " + t.Realm.Realm + ", so no organization to remove", ExternalIDs: cleared}, nil
	}
	// Every account of the tenant's users goes with it, or keeps only its
	// other tenants; then the administrator, if the directory never had it.
	sync := realmsync.Syncer{Keycloak: in.Keycloak}
	rel, err := sync.ReleaseTenant(ctx, realmsync.Target(t), t.ID)
	if err != nil {
		return Outcome{}, err
	}
	admin, err := in.releaseAdmin(ctx, t)
	if err != nil {
		return Outcome{}, err
	}
	if rel.Deleted+rel.Kept+rel.Clients > 0 {
		admin += fmt.Sprintf("; released %d accounts of its users (%d deleted, %d kept for other tenants) and deleted %d clients",
			rel.Deleted+rel.Kept, rel.Deleted, rel.Kept, rel.Clients)
	}
	o, ok, err := in.tenantOrg(ctx, t)
	var perm *PermanentError
	switch {
	case errors.As(err, &perm):
		return Outcome{Detail: "organization " + o.Alias + " is not this tenant's; left it alone" + admin, ExternalIDs: cleared}, nil
	case err != nil:
		return Outcome{}, err
	case !ok:
		return Outcome{Detail: "no organization to remove" + admin, ExternalIDs: cleared}, nil
	}
	if err := in.Keycloak.DeleteOrganization(ctx, t.Realm.Realm, o.ID); err != nil && !errors.Is(err, keycloak.ErrNotFound) {
		return Outcome{}, err
	}
	return Outcome{Detail: "deleted organization " + o.Alias + admin, ExternalIDs: cleared}, nil
}

// releaseAdmin takes the tenant off its administrator's tenancy.tenant_id
// and deletes the user when no tenant is left on it. It says what it did,
// as a clause to append to a detail.
func (in Integrations) releaseAdmin(ctx context.Context, t domain.Tenant) (string, error) {
	kc, realm := in.Keycloak, t.Realm.Realm
	var u keycloak.User
	var err error
	found := false
	if id := t.Provisioning.ExternalIDs["keycloak_admin_user"]; id != "" {
		u, err = kc.GetUser(ctx, realm, id)
		found = err == nil
		if errors.Is(err, keycloak.ErrNotFound) {
			err = nil
		}
	} else if _, none := noAdmin(t); !none {
		u, found, err = kc.FindUser(ctx, realm, adminUser(t).Username)
	}
	if err != nil || !found || !slices.Contains(u.Attributes[AttrTenantID], t.ID) {
		return "", err
	}
	rest := slices.DeleteFunc(slices.Clone(u.Attributes[AttrTenantID]), func(id string) bool { return id == t.ID })
	if len(rest) > 0 {
		u.Attributes = withAttr(u.Attributes, AttrTenantID, rest)
		return "; its administrator stays, for other tenants", kc.UpdateUser(ctx, realm, u)
	}
	if err := kc.DeleteUser(ctx, realm, u.ID); err != nil && !errors.Is(err, keycloak.ErrNotFound) {
		return "", err
	}
	return "; deleted its administrator", nil
}
