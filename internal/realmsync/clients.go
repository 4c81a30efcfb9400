package realmsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/tenancyhq/tenancy/internal/keycloak"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// wantClient is the realm client a directory client should be: a
// confidential client that authenticates with its secret and signs in as
// its service account, and nothing else (no browser flows).
func wantClient(r Realm, tenantID string, c domain.Client, kc keycloak.OIDCClient, secret string) keycloak.OIDCClient {
	no, yes := false, true
	enabled := c.Enabled && !r.Suspended
	want := kc
	want.ClientID, want.Name, want.Enabled, want.Protocol = c.ClientID, c.Name, &enabled, "openid-connect"
	want.PublicClient, want.StandardFlowEnabled, want.DirectAccessGrantsEnabled, want.ServiceAccountsEnabled = &no, &no, &no, &yes
	want.Secret = secret
	attrs := map[string]string{}
	for k, v := range kc.Attributes {
		attrs[k] = v
	}
	attrs[ClientAttrID] = c.ID
	if r.Shared() {
		// The tenant, so that its clients can be found in a realm shared
		// by many tenants, and removed with it.
		attrs[AttrTenantID] = tenantID
	}
	want.Attributes = attrs
	return want
}

func sameClient(a, b keycloak.OIDCClient) bool {
	eq := func(x, y *bool) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return a.ClientID == b.ClientID && a.Name == b.Name && eq(a.Enabled, b.Enabled) && eq(a.PublicClient, b.PublicClient) &&
		eq(a.StandardFlowEnabled, b.StandardFlowEnabled) && eq(a.DirectAccessGrantsEnabled, b.DirectAccessGrantsEnabled) &&
		eq(a.ServiceAccountsEnabled, b.ServiceAccountsEnabled) && a.Secret == b.Secret && a.Attributes[ClientAttrID] == b.Attributes[ClientAttrID] &&
		a.Attributes[AttrTenantID] == b.Attributes[AttrTenantID]
}

// SyncClient makes realm's client of Tenancy client id what directory d
// says: created or updated with its current secret, or deleted when d no
// longer has it (found by the client_id it had, which the caller passes).
func (s *Syncer) SyncClient(ctx context.Context, r Realm, d domain.Directory, id, clientID string) (Change, error) {
	realm := r.Name
	c, ok := d.Client(id)
	if ok {
		clientID = c.ClientID
	}
	kc, found, err := s.Keycloak.FindClient(ctx, realm, clientID)
	if err != nil {
		return Change{}, err
	}
	if found && kc.Attributes[ClientAttrID] != id {
		// Not Tenancy's (Keycloak's own, or another Tenancy client's): never
		// taken over or deleted.
		return Change{}, errForeignClient(realm, clientID)
	}
	if !ok {
		if !found {
			return Change{"client", id, "already gone"}, nil
		}
		if err := s.Keycloak.DeleteClient(ctx, realm, kc.ID); err != nil && !errors.Is(err, keycloak.ErrNotFound) {
			return Change{}, err
		}
		return Change{"client", id, "deleted"}, nil
	}
	secret, err := s.Secrets.Secret(ctx, c.ID, c.SecretVersion)
	if err != nil {
		return Change{}, err
	}
	want := wantClient(r, d.TenantID, c, kc, secret)
	action := "unchanged"
	switch {
	case !found:
		if want.ID, err = s.Keycloak.CreateClient(ctx, realm, want); err != nil {
			return Change{}, err
		}
		action = "created"
	case !sameClient(kc, want):
		if err := s.Keycloak.UpdateClient(ctx, realm, want); err != nil {
			return Change{}, err
		}
		action = "updated"
	}
	changed, err := s.serviceAccount(ctx, r, want.ID, d.TenantID, c)
	if err != nil {
		return Change{}, err
	}
	if changed && action == "unchanged" {
		action = "updated"
	}
	return Change{"client", id, action}, nil
}

// ClientMappers are the protocol mappers of a tenant's non-browser client:
// its tokens name the tenant, as its users' tokens do, and are meant for
// the Tenancy API (the tenancy-app audience), so that a service account
// calls the API with a token of its own and acts as its roles allow there.
// In the shared realm, whose realm roles are not the tenant's, the
// client's roles travel instead as its grant (the tenancy claim), fixed on
// the client: grant is nil for a realm of the tenant's own.
func ClientMappers(tenantID string, grant *domain.Grant) []keycloak.ProtocolMapper {
	claims := func(m map[string]string) map[string]string {
		m["access.token.claim"], m["introspection.token.claim"] = "true", "true"
		return m
	}
	out := []keycloak.ProtocolMapper{
		{Name: "tenancy-tenant-id", Protocol: "openid-connect", ProtocolMapper: "oidc-hardcoded-claim-mapper",
			Config: claims(map[string]string{"claim.name": "tenant_id", "claim.value": tenantID, "jsonType.label": "String"})},
		{Name: "tenancy-audience", Protocol: "openid-connect", ProtocolMapper: "oidc-audience-mapper",
			Config: claims(map[string]string{"included.client.audience": keycloak.TenantAppClientID, "id.token.claim": "false"})},
	}
	if grant != nil {
		b, _ := json.Marshal([]domain.Grant{*grant})
		out = append(out, keycloak.ProtocolMapper{Name: "tenancy-grant", Protocol: "openid-connect", ProtocolMapper: "oidc-hardcoded-claim-mapper",
			Config: claims(map[string]string{"claim.name": GrantsClaim, "claim.value": string(b), "jsonType.label": "JSON"})})
	}
	return out
}

// GrantsClaim is the claim the shared realm's tokens carry their grants
// in (see AttrGrants).
const GrantsClaim = "tenancy"

// holds reports whether config has every setting of want (Keycloak may add
// settings of its own).
func holds(config, want map[string]string) bool {
	for k, v := range want {
		if config[k] != v {
			return false
		}
	}
	return true
}

// serviceAccount makes the client's mappers ClientMappers and its service
// account's tenant roles the client's (in the shared realm, its grant and
// no realm role), and reports whether it changed any.
func (s *Syncer) serviceAccount(ctx context.Context, r Realm, kcID, tenantID string, c domain.Client) (bool, error) {
	realm, roles := r.Name, c.Roles
	var grant *domain.Grant
	if r.Shared() {
		grant = &domain.Grant{TenantID: tenantID, Organization: r.Organization, Enabled: c.Enabled,
			Roles: append([]string{}, c.Roles...), Memberships: []domain.GrantMembership{}}
		roles = nil
	}
	have, err := s.Keycloak.Mappers(ctx, realm, kcID)
	if err != nil {
		return false, err
	}
	changed := false
	for _, want := range ClientMappers(tenantID, grant) {
		i := slices.IndexFunc(have, func(m keycloak.ProtocolMapper) bool { return m.Name == want.Name })
		switch {
		case i < 0:
			err = s.Keycloak.CreateMapper(ctx, realm, kcID, want)
		case have[i].ProtocolMapper != want.ProtocolMapper || !holds(have[i].Config, want.Config):
			want.ID = have[i].ID
			err = s.Keycloak.UpdateMapper(ctx, realm, kcID, want)
		default:
			continue
		}
		if err != nil {
			return changed, fmt.Errorf("mapper %s of client %s: %w", want.Name, c.ClientID, err)
		}
		changed = true
	}
	sa, err := s.Keycloak.ServiceAccountUser(ctx, realm, kcID)
	if err != nil {
		return changed, fmt.Errorf("service account of client %s: %w", c.ClientID, err)
	}
	rolesChanged, err := s.syncRoles(ctx, realm, sa.ID, roles)
	return changed || rolesChanged, err
}

func errForeignClient(realm, clientID string) error {
	return errors.Join(ErrForeign, errors.New("client "+clientID+" of realm "+realm+" belongs to another Tenancy client"))
}

// SyncAll converges every user and client of directory d into realm (the
// activation saga's last identity step, and reconcile). An entity Keycloak
// refuses does not stop the others: the refusals come back together.
func (s *Syncer) SyncAll(ctx context.Context, r Realm, d domain.Directory) ([]Change, error) {
	if r.Shared() {
		return s.syncAllShared(ctx, r, d)
	}
	realm := r.Name
	idx, err := s.indexGroups(ctx, realm)
	if err != nil {
		return nil, err
	}
	var t tally
	// Live units first (moved out of stale parents), then the stale ones:
	// deleting a stale parent first would delete a live child with it.
	for _, o := range d.OrgUnits() {
		if err := t.keep(s.SyncOrgUnit(ctx, r, d, o.ID, idx)); err != nil {
			return t.out, err
		}
	}
	for ou := range idx.byOU {
		if _, ok := d.OrgUnit(ou); !ok {
			if err := t.keep(s.SyncOrgUnit(ctx, r, d, ou, idx)); err != nil {
				return t.out, err
			}
		}
	}
	for _, u := range d.Users() {
		if err := t.keep(s.syncUser(ctx, realm, d, u.ID, idx)); err != nil {
			return t.out, err
		}
	}
	return s.syncClients(ctx, r, d, &t)
}

// syncAllShared is SyncAll for a tenant in the shared realm. It also takes
// the tenant off accounts whose grant names a user the directory no longer
// has: a grant another tenant's sync of the same account wrote back while
// this one was removing it.
func (s *Syncer) syncAllShared(ctx context.Context, r Realm, d domain.Directory) ([]Change, error) {
	var t tally
	for _, u := range d.Users() {
		if err := t.keep(s.syncMember(ctx, r, d, u.ID)); err != nil {
			return t.out, err
		}
	}
	stale, err := s.staleGrants(ctx, r, d)
	if err != nil {
		return t.out, err
	}
	orgID := ""
	if len(stale) > 0 {
		if orgID, err = s.orgIfAny(ctx, r, d.TenantID); err != nil {
			return t.out, err
		}
	}
	for _, st := range stale {
		if err := t.keep(s.release(ctx, r, orgID, st.account, d.TenantID, st.userID)); err != nil {
			return t.out, err
		}
	}
	return s.syncClients(ctx, r, d, &t)
}

func (s *Syncer) syncClients(ctx context.Context, r Realm, d domain.Directory, t *tally) ([]Change, error) {
	for _, cl := range d.Clients() {
		if err := t.keep(s.SyncClient(ctx, r, d, cl.ID, cl.ClientID)); err != nil {
			return t.out, err
		}
	}
	return t.out, errors.Join(t.refusals...)
}

// tally collects SyncAll's outcomes: a refusal of one entity is noted and
// the sync goes on; any other error stops it.
type tally struct {
	out      []Change
	refusals []error
}

func (t *tally) keep(c Change, err error) error {
	switch {
	case err == nil:
		t.out = append(t.out, c)
	case refusal(err):
		t.refusals = append(t.refusals, err)
	default:
		return err
	}
	return nil
}

// refusal reports an error about one entity that retrying cannot change
// (a foreign account, a Keycloak 4xx about it): SyncAll goes on with the
// others and reports it at the end.
func refusal(err error) bool { return errors.Is(err, ErrForeign) || refused(err) }
