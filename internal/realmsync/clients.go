package realmsync

import (
	"context"
	"errors"

	"github.com/tenancyhq/tenancy/internal/keycloak"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// wantClient is the realm client a directory client should be: a
// confidential client that authenticates with its secret and signs in as
// its service account, and nothing else (no browser flows).
func wantClient(c domain.Client, kc keycloak.OIDCClient, secret string) keycloak.OIDCClient {
	no, yes := false, true
	enabled := c.Enabled
	want := kc
	want.ClientID, want.Name, want.Enabled, want.Protocol = c.ClientID, c.Name, &enabled, "openid-connect"
	want.PublicClient, want.StandardFlowEnabled, want.DirectAccessGrantsEnabled, want.ServiceAccountsEnabled = &no, &no, &no, &yes
	want.Secret = secret
	attrs := map[string]string{}
	for k, v := range kc.Attributes {
		attrs[k] = v
	}
	attrs[ClientAttrID] = c.ID
	want.Attributes = attrs
	return want
}

func sameClient(a, b keycloak.OIDCClient) bool {
	eq := func(x, y *bool) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return a.ClientID == b.ClientID && a.Name == b.Name && eq(a.Enabled, b.Enabled) && eq(a.PublicClient, b.PublicClient) &&
		eq(a.StandardFlowEnabled, b.StandardFlowEnabled) && eq(a.DirectAccessGrantsEnabled, b.DirectAccessGrantsEnabled) &&
		eq(a.ServiceAccountsEnabled, b.ServiceAccountsEnabled) && a.Secret == b.Secret && a.Attributes[ClientAttrID] == b.Attributes[ClientAttrID]
}

// SyncClient makes realm's client of Tenancy client id what directory d
// says: created or updated with its current secret, or deleted when d no
// longer has it (found by the client_id it had, which the caller passes).
func (s *Syncer) SyncClient(ctx context.Context, realm string, d domain.Directory, id, clientID string) (Change, error) {
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
	want := wantClient(c, kc, secret)
	switch {
	case !found:
		if _, err := s.Keycloak.CreateClient(ctx, realm, want); err != nil {
			return Change{}, err
		}
		return Change{"client", id, "created"}, nil
	case !sameClient(kc, want):
		if err := s.Keycloak.UpdateClient(ctx, realm, want); err != nil {
			return Change{}, err
		}
		return Change{"client", id, "updated"}, nil
	}
	return Change{"client", id, "unchanged"}, nil
}

func errForeignClient(realm, clientID string) error {
	return errors.Join(ErrForeign, errors.New("client "+clientID+" of realm "+realm+" belongs to another Tenancy client"))
}

// SyncAll converges every user and client of directory d into realm (the
// activation saga's last identity step, and reconcile).
func (s *Syncer) SyncAll(ctx context.Context, realm string, d domain.Directory) ([]Change, error) {
	idx, err := s.indexGroups(ctx, realm)
	if err != nil {
		return nil, err
	}
	var out []Change
	// Live units first (moved out of stale parents), then the stale ones:
	// deleting a stale parent first would delete a live child with it.
	for _, o := range d.OrgUnits() {
		c, err := s.SyncOrgUnit(ctx, realm, d, o.ID, idx)
		if err != nil {
			return out, err
		}
		out = append(out, c)
	}
	for ou := range idx.byOU {
		if _, ok := d.OrgUnit(ou); !ok {
			c, err := s.SyncOrgUnit(ctx, realm, d, ou, idx)
			if err != nil {
				return out, err
			}
			out = append(out, c)
		}
	}
	for _, u := range d.Users() {
		c, err := s.syncUser(ctx, realm, d, u.ID, idx)
		if err != nil {
			return out, err
		}
		out = append(out, c)
	}
	for _, cl := range d.Clients() {
		c, err := s.SyncClient(ctx, realm, d, cl.ID, cl.ClientID)
		if err != nil {
			return out, err
		}
		out = append(out, c)
	}
	return out, nil
}
