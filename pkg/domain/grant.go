package domain

// Grant is a user's standing in one tenant placed in the shared realm, as
// that realm's tokens carry it (the tenancy claim, one grant per tenant the
// account belongs to). A tenant with a realm of its own needs none: there
// the realm names the tenant, and its roles and the memberships claim are
// the tenant's. In the shared realm one account may belong to several
// tenants (an administrator of several organizations), so each tenant's
// roles and memberships travel in a grant of their own, and the API acts
// only on the grant of the organization the token was asked for.
type Grant struct {
	TenantID string `json:"tenant_id"`
	// Organization is the alias of the tenant's organization in the shared
	// realm: a token asked for with the scope organization:<alias> names
	// it in its organization claim.
	Organization string `json:"organization"`
	// UserID is the directory user the grant is for.
	UserID string `json:"user_id,omitempty"`
	// Enabled is false while the tenant's directory has the user disabled:
	// the account may still sign in for its other tenants.
	Enabled     bool              `json:"enabled"`
	Roles       []string          `json:"roles"`
	Memberships []GrantMembership `json:"memberships"`
}

// GrantMembership is one org-unit membership in a grant, as the memberships
// claim of a tenant's own realm carries it.
type GrantMembership struct {
	OU    string   `json:"ou"`
	Roles []string `json:"roles"`
}

// GrantOf is user's grant in directory d, for the organization alias.
func GrantOf(d Directory, u User, organization string) Grant {
	g := Grant{TenantID: d.TenantID, Organization: organization, UserID: u.ID, Enabled: u.Enabled,
		Roles: append([]string{}, u.Roles...), Memberships: []GrantMembership{}}
	for _, m := range d.MembershipsOf(u.ID) {
		g.Memberships = append(g.Memberships, GrantMembership{OU: m.OUID, Roles: append([]string{}, m.Roles...)})
	}
	return g
}
