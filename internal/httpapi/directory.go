package httpapi

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// directoryRoutes registers what is inside a tenant: users, clients, org
// units and memberships. {id} is a tenant id, or "me" for the caller's own
// tenant. Each handler checks access itself (directoryAccess): a caller
// with nothing to do with the tenant is told it does not exist.
func (s *Server) directoryRoutes(v1 *echo.Group) {
	authn, dir := s.authenticate, s.directoryConfigured
	v1.GET("/me", s.me, authn)
	t := "/tenants/:id"
	v1.POST(t+"/users", s.createUser, authn, dir, s.idempotent)
	v1.GET(t+"/users", s.listUsers, authn, dir)
	v1.POST(t+"/users/batch", s.importUsers, authn, dir, s.idempotent)
	v1.GET(t+"/users/:user", s.getUser, authn, dir)
	v1.PATCH(t+"/users/:user", s.patchUser, authn, dir)
	v1.DELETE(t+"/users/:user", s.deleteEntity("user", func(id string, v int64) domain.DirectoryCommand { return domain.DeleteUser{ID: id, IfVersion: v} }), authn, dir)
	v1.POST(t+"/users/:user/disable", s.setUserEnabled(false), authn, dir, s.idempotent)
	v1.POST(t+"/users/:user/enable", s.setUserEnabled(true), authn, dir, s.idempotent)
	v1.GET(t+"/users/:user/memberships", s.userMemberships, authn, dir)
	v1.POST(t+"/users/:user/temporary-password", s.userPassword, authn, dir)
	v1.POST(t+"/clients", s.createClient, authn, dir, s.idempotent)
	v1.GET(t+"/clients", s.listClients, authn, dir)
	v1.GET(t+"/clients/:client", s.getClient, authn, dir)
	v1.PATCH(t+"/clients/:client", s.patchClient, authn, dir)
	v1.DELETE(t+"/clients/:client", s.deleteClient, authn, dir)
	v1.POST(t+"/clients/:client/rotate-secret", s.rotateClientSecret, authn, dir, s.idempotent)
	v1.POST(t+"/org-units", s.createOrgUnit, authn, dir, s.idempotent)
	v1.GET(t+"/org-units", s.listOrgUnits, authn, dir)
	v1.GET(t+"/org-units/:ou", s.getOrgUnit, authn, dir)
	v1.PATCH(t+"/org-units/:ou", s.patchOrgUnit, authn, dir)
	v1.DELETE(t+"/org-units/:ou", s.deleteEntity("ou", func(id string, v int64) domain.DirectoryCommand { return domain.DeleteOrgUnit{ID: id, IfVersion: v} }), authn, dir)
	v1.GET(t+"/org-units/:ou/members", s.ouMembers, authn, dir)
	v1.GET(t+"/org-units/:ou/audit", s.ouAudit, authn, dir)
	v1.PUT(t+"/org-units/:ou/members/:user", s.putMember, authn, dir)
	v1.DELETE(t+"/org-units/:ou/members/:user", s.deleteMember, authn, dir)
}

// directoryConfigured answers 503 on an instance without the directory.
func (s *Server) directoryConfigured(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.deps.Directory == nil {
			return fmt.Errorf("%w: tenant directories are not configured on this API instance", domain.ErrUnavailable)
		}
		return next(c)
	}
}

// access is what a directory route needs of its caller.
type access int

const (
	// readAccess: platform admins, the tenant's admins and viewers.
	readAccess access = iota
	// manageAccess: platform admins and the tenant's admins.
	manageAccess
	// ouReadAccess adds members with admin or auditor on the org unit (or
	// one above it).
	ouReadAccess
	// ouManageAccess adds members with admin on the org unit (or one above
	// it).
	ouManageAccess
)

// MeTenant is the {id} that names the caller's own tenant.
const MeTenant = "me"

// directoryTenant resolves {id} ("me" is the caller's tenant) and checks
// that the caller has anything to do with it: anyone else is told the
// tenant does not exist, whether it does or not.
func directoryTenant(c echo.Context) (string, error) {
	p := principal(c)
	id := c.Param("id")
	if id == MeTenant {
		if p.TenantID == "" {
			return "", fmt.Errorf("%w: your token names no tenant (no tenant_id claim), so /tenants/me means nothing; use a tenant id", domain.ErrNotFound)
		}
		id = p.TenantID
	}
	if !p.Relates(id) {
		return "", fmt.Errorf("no tenant with id %q: %w", id, domain.ErrNotFound)
	}
	withTenant(c, id)
	return id, nil
}

// directoryAccess checks that the caller may do what a route needs in
// tenant id, on org unit ou for the org-unit scoped kinds.
func directoryAccess(p auth.Principal, d domain.Directory, need access, ou string) error {
	switch {
	case p.CanManage(d.TenantID):
		return nil
	case (need == readAccess || need == ouReadAccess) && p.CanRead(d.TenantID):
		return nil
	}
	if (need == ouReadAccess || need == ouManageAccess) && ou != "" {
		for _, o := range d.Path(ou) {
			roles := p.OURoles(o.ID)
			if slices.Contains(roles, domain.OURoleAdmin) || (need == ouReadAccess && slices.Contains(roles, domain.OURoleAuditor)) {
				return nil
			}
		}
	}
	what := map[access]string{readAccess: "reading this tenant's directory needs tenant-admin or tenant-viewer",
		manageAccess:   "changing this tenant's directory needs tenant-admin",
		ouReadAccess:   "reading this org unit needs tenant-admin, tenant-viewer, or the admin or auditor role on it",
		ouManageAccess: "managing this org unit's members needs tenant-admin or the admin role on it"}[need]
	return fmt.Errorf("%w: %s", domain.ErrForbidden, what)
}

// loadDirectory resolves the tenant, loads its directory and checks the
// caller's access.
func (s *Server) loadDirectory(c echo.Context, need access, ou string) (domain.Directory, uint64, error) {
	id, err := directoryTenant(c)
	if err != nil {
		return domain.Directory{}, 0, err
	}
	d, seq, err := s.deps.Directory.Load(c.Request().Context(), id)
	if err != nil {
		return d, 0, err
	}
	return d, seq, directoryAccess(principal(c), d, need, ou)
}

// managedTenant resolves the tenant of a route that needs tenant-admin,
// and checks the caller's roles: they say all, so the directory is not
// loaded for it (the command loads it once, and refuses a tenant that
// does not exist or is deleted).
func (s *Server) managedTenant(c echo.Context) (string, error) {
	id, err := directoryTenant(c)
	if err != nil {
		return "", err
	}
	return id, directoryAccess(principal(c), domain.Directory{TenantID: id}, manageAccess, "")
}

// directoryCommand checks access, then runs cmd on the tenant's directory.
// Org-unit scoped access needs the directory's tree; tenant-wide access
// does not.
func (s *Server) directoryCommand(c echo.Context, need access, ou string, cmd domain.DirectoryCommand) (app.DirectoryResult, error) {
	if need == manageAccess {
		id, err := s.managedTenant(c)
		if err != nil {
			return app.DirectoryResult{}, err
		}
		return s.deps.Directory.Do(c.Request().Context(), id, cmd, actorMeta(c))
	}
	d, _, err := s.loadDirectory(c, need, ou)
	if err != nil {
		return app.DirectoryResult{}, err
	}
	return s.deps.Directory.Do(c.Request().Context(), d.TenantID, cmd, actorMeta(c))
}

// writeEntity answers one directory entity with its ETag and the stream
// sequence to pass as min_seq.
func writeEntity(c echo.Context, status int, v any, version int64, seq uint64) error {
	h := c.Response().Header()
	if version > 0 {
		h.Set("ETag", etag(version))
	}
	h.Set(SequenceHeader, strconv.FormatUint(seq, 10))
	h.Set("Cache-Control", "no-store")
	return writeJSON(c, status, v)
}

// MembershipView is a user's membership of an org unit.
type MembershipView struct {
	UserID    string    `json:"user_id"`
	OUID      string    `json:"ou_id"`
	Roles     []string  `json:"roles"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ViewMembership renders a membership.
func ViewMembership(m domain.Membership) MembershipView {
	return MembershipView{UserID: m.UserID, OUID: m.OUID, Roles: nonNil(m.Roles), UpdatedAt: m.UpdatedAt}
}

// MembershipList is a list of memberships.
type MembershipList struct {
	Items []MembershipView `json:"items"`
}

func viewMemberships(ms []domain.Membership) MembershipList {
	out := MembershipList{Items: make([]MembershipView, 0, len(ms))}
	for _, m := range ms {
		out.Items = append(out.Items, ViewMembership(m))
	}
	return out
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// MeView is the caller: who they are, their tenant and their memberships.
type MeView struct {
	Subject     string              `json:"subject"`
	Issuer      string              `json:"issuer"`
	Username    string              `json:"username,omitempty"`
	Roles       []string            `json:"roles"`
	TenantID    string              `json:"tenant_id,omitempty"`
	Tenant      *TenantView         `json:"tenant,omitempty"`
	Memberships []auth.OUMembership `json:"memberships"`
}

func (s *Server) me(c echo.Context) error {
	if err := checkParams(c); err != nil {
		return err
	}
	p := principal(c)
	out := MeView{Subject: p.Subject, Issuer: p.Issuer, Username: p.Username, Roles: nonNil(p.Roles), TenantID: p.TenantID,
		Memberships: nonNil(p.Memberships)}
	if p.TenantID != "" && p.CanReadTenant(p.TenantID) {
		withTenant(c, p.TenantID)
		t, _, err := s.deps.Tenants.Get(c.Request().Context(), p.TenantID)
		if err == nil {
			v := ViewTenant(t, s.deps.Tenants.Integrity(p.TenantID))
			out.Tenant = &v
		}
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return writeJSON(c, http.StatusOK, out)
}
