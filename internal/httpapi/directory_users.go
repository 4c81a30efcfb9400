package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/internal/readmodel"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// UserView is a user as the API shows it.
type UserView struct {
	ID                 string            `json:"id"`
	Username           string            `json:"username"`
	Email              string            `json:"email,omitempty"`
	FirstName          string            `json:"first_name,omitempty"`
	LastName           string            `json:"last_name,omitempty"`
	Attributes         map[string]string `json:"attributes"`
	Enabled            bool              `json:"enabled"`
	Roles              []string          `json:"roles"`
	BreakGlass         bool              `json:"break_glass"`
	Source             string            `json:"source"`
	RequiredActions    []string          `json:"required_actions"`
	Version            int64             `json:"version"`
	CreatedAt          time.Time         `json:"created_at"`
	UpdatedAt          time.Time         `json:"updated_at"`
	PersonalDataErased bool              `json:"personal_data_erased"`
}

// ViewUser renders a user.
func ViewUser(u domain.User) UserView {
	return UserView{ID: u.ID, Username: u.Username, Email: u.Email, FirstName: u.FirstName, LastName: u.LastName,
		Attributes: nonNilMap(u.Attributes), Enabled: u.Enabled, Roles: nonNil(u.Roles), BreakGlass: u.BreakGlass, Source: u.Source,
		RequiredActions: nonNil(u.RequiredActions), Version: u.Version, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt,
		PersonalDataErased: u.PIIErased}
}

func writeUser(c echo.Context, status int, u domain.User, seq uint64) error {
	// A stored (idempotent) response holds the user's personal data:
	// sealed under the user's key, it is erased with them.
	c.Set(sealScopeKey, events.UserPIIScope(u.ID))
	return writeEntity(c, status, ViewUser(u), u.Version, seq)
}

// UserRequest is the body of POST .../users and one row of a batch.
type UserRequest struct {
	Username        string            `json:"username"`
	Email           string            `json:"email"`
	FirstName       string            `json:"first_name"`
	LastName        string            `json:"last_name"`
	Attributes      map[string]string `json:"attributes"`
	Enabled         *bool             `json:"enabled"`
	Roles           []string          `json:"roles"`
	RequiredActions []string          `json:"required_actions"`
}

func (r UserRequest) command() domain.CreateUser {
	return domain.CreateUser{Username: r.Username, Email: r.Email, FirstName: r.FirstName, LastName: r.LastName, Attributes: r.Attributes,
		Enabled: r.Enabled, Roles: r.Roles, RequiredActions: r.RequiredActions, Source: domain.SourceTenancy}
}

func (s *Server) createUser(c echo.Context) error {
	req, err := bindJSON[UserRequest](s, c)
	if err != nil {
		return err
	}
	tenant, err := s.managedTenant(c)
	if err != nil {
		return err
	}
	cmd := req.command()
	cmd.ID = idempotentID(c)
	u, seq, err := s.deps.Directory.CreateUser(c.Request().Context(), tenant, cmd, actorMeta(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/tenants/"+tenant+"/users/"+u.ID)
	return writeUser(c, http.StatusCreated, u, seq)
}

func userOf(d domain.Directory, id string) (domain.User, error) {
	u, ok := d.User(id)
	if !ok {
		return u, fmt.Errorf("no user with id %q in this tenant: %w", id, domain.ErrNotFound)
	}
	return u, nil
}

func (s *Server) getUser(c echo.Context) error {
	d, seq, err := s.loadDirectory(c, readAccess, "")
	if err != nil {
		return err
	}
	u, err := userOf(d, c.Param("user"))
	if err != nil {
		return err
	}
	return writeUser(c, http.StatusOK, u, seq)
}

// readOnlyUserMembers cannot be patched.
var readOnlyUserMembers = map[string]string{
	"id": "is immutable", "username": "is immutable; create a new user and delete this one", "break_glass": "is set by the provisioner",
	"source": "is where the user came from", "enabled": "changes only through POST .../disable and .../enable (with a reason)",
	"version": "is maintained by the server", "created_at": "is maintained by the server", "updated_at": "is maintained by the server",
	"personal_data_erased": "is maintained by the server",
}

func parseUserPatch(body []byte) (domain.UpdateUser, error) {
	var cmd domain.UpdateUser
	p, err := parseMergePatch(body)
	if err != nil {
		return cmd, err
	}
	p.each(readOnlyUserMembers, func(key string, raw json.RawMessage) {
		switch key {
		case "email":
			cmd.Email = p.str(key, raw, true)
		case "first_name":
			cmd.FirstName = p.str(key, raw, true)
		case "last_name":
			cmd.LastName = p.str(key, raw, true)
		case "attributes":
			cmd.Attributes = p.mapPatch(key, raw)
		case "roles":
			cmd.Roles = p.strings(key, raw, "must be an array of roles (tenant-admin, tenant-viewer); [] removes them all")
		case "required_actions":
			cmd.RequiredActions = p.strings(key, raw, "must be an array of required actions; [] removes them all")
		default:
			p.unknown(key, "a user")
		}
	})
	return cmd, p.err()
}

func (s *Server) patchUser(c echo.Context) error {
	body, err := s.readBody(c, "application/merge-patch+json", echo.MIMEApplicationJSON)
	if err != nil {
		return err
	}
	cmd, err := parseUserPatch(body)
	if err != nil {
		return err
	}
	if cmd.IfVersion, err = ifMatch(c); err != nil {
		return err
	}
	cmd.ID = c.Param("user")
	return s.userCommand(c, cmd, cmd.ID)
}

// userCommand runs a command about one user and answers that user.
func (s *Server) userCommand(c echo.Context, cmd domain.DirectoryCommand, id string) error {
	res, err := s.directoryCommand(c, manageAccess, "", cmd)
	if err != nil {
		return err
	}
	u, err := userOf(res.State, id)
	if err != nil {
		return err
	}
	return writeUser(c, http.StatusOK, u, res.Seq)
}

// deleteEntity answers a DELETE of the entity named by path parameter
// param with the command cmd makes of its id and If-Match version.
func (s *Server) deleteEntity(param string, cmd func(id string, ifVersion int64) domain.DirectoryCommand) echo.HandlerFunc {
	return func(c echo.Context) error {
		v, err := ifMatch(c)
		if err != nil {
			return err
		}
		id := c.Param(param)
		res, err := s.directoryCommand(c, manageAccess, "", cmd(id, v))
		if err != nil {
			return err
		}
		return writeEntity(c, http.StatusOK, DeletedView{ID: id, Deleted: true}, 0, res.Seq)
	}
}

// DeletedView answers a delete.
type DeletedView struct {
	ID      string `json:"id"`
	Deleted bool   `json:"deleted"`
}

// ReasonRequest is the body of POST .../disable and .../enable.
type ReasonRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) setUserEnabled(enabled bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req ReasonRequest
		if c.Request().ContentLength != 0 {
			r, err := bindJSON[ReasonRequest](s, c)
			if err != nil {
				return err
			}
			req = r
		}
		id := c.Param("user")
		return s.userCommand(c, domain.SetUserEnabled{ID: id, Enabled: enabled, Reason: req.Reason}, id)
	}
}

func (s *Server) userMemberships(c echo.Context) error {
	d, seq, err := s.loadDirectory(c, readAccess, "")
	if err != nil {
		return err
	}
	u, err := userOf(d, c.Param("user"))
	if err != nil {
		return err
	}
	return writeEntity(c, http.StatusOK, viewMemberships(d.MembershipsOf(u.ID)), 0, seq)
}

// UserList is a page of users.
type UserList struct {
	Items         []UserView `json:"items"`
	NextPageToken string     `json:"next_page_token"`
}

var userListParams = []string{"q", "enabled", "ou", "role", "page_size", "page_token", "min_seq"}

// userFilter reads a user listing's filters.
func userFilter(c echo.Context, tenantID string) (readmodel.UserFilter, error) {
	f := readmodel.UserFilter{TenantID: tenantID, Query: strings.TrimSpace(c.QueryParam("q")), OU: c.QueryParam("ou"), Roles: c.QueryParams()["role"]}
	if len(f.Query) > 200 {
		return f, invalid("q", "must be at most 200 characters")
	}
	switch c.QueryParam("enabled") {
	case "":
	case "true", "false":
		v := c.QueryParam("enabled") == "true"
		f.Enabled = &v
	default:
		return f, invalid("enabled", "must be true or false")
	}
	for _, r := range f.Roles {
		if !slices.Contains(domain.UserRoles, r) {
			return f, invalid("role", fmt.Sprintf("unknown role %q", r), domain.UserRoles...)
		}
	}
	return f, nil
}

// listUsers searches a tenant's users in the read model: a tenant of many
// thousand users is searched by index, not by a walk of its aggregate.
// Pass a write's Tenancy-Sequence as min_seq to see that write.
func (s *Server) listUsers(c echo.Context) error {
	if err := checkParams(c, userListParams...); err != nil {
		return err
	}
	reads, err := s.reads()
	if err != nil {
		return err
	}
	size, err := pageSize(c)
	if err != nil {
		return err
	}
	// The caller's roles say all, and the read model answers: the tenant's
	// directory is not loaded, only its existence checked.
	tenant, err := directoryTenant(c)
	if err != nil {
		return err
	}
	if err := directoryAccess(principal(c), domain.Directory{TenantID: tenant}, readAccess, ""); err != nil {
		return err
	}
	if err := s.deps.Directory.Exists(c.Request().Context(), tenant); err != nil {
		return err
	}
	f, err := userFilter(c, tenant)
	if err != nil {
		return err
	}
	if err := s.consistent(c, reads, "directory"); err != nil {
		return err
	}
	page, err := reads.Users(c.Request().Context(), f, readmodel.Page{Size: size, Token: c.QueryParam("page_token")})
	if err != nil {
		return err
	}
	out := UserList{Items: make([]UserView, 0, len(page.Items)), NextPageToken: page.NextPageToken}
	for _, u := range page.Items {
		out.Items = append(out.Items, ViewUser(u))
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return writeJSON(c, http.StatusOK, out)
}

// BatchRequest is the body of POST .../users/batch.
type BatchRequest struct {
	Users []UserRequest `json:"users"`
}

// BatchRow is what became of one row of a batch.
type BatchRow struct {
	Row     int      `json:"row"`
	Status  string   `json:"status"`
	ID      string   `json:"id,omitempty"`
	Problem *Problem `json:"problem,omitempty"`
}

// BatchResult answers a batch: a result per row, in order, and counts.
type BatchResult struct {
	Results   []BatchRow `json:"results"`
	Created   int        `json:"created"`
	Unchanged int        `json:"unchanged"`
	Failed    int        `json:"failed"`
}

func (s *Server) importUsers(c echo.Context) error {
	req, err := bindJSON[BatchRequest](s, c)
	if err != nil {
		return err
	}
	if len(req.Users) == 0 || len(req.Users) > domain.MaxImportRows {
		return invalid("users", fmt.Sprintf("send 1 to %d users per call; split a larger file", domain.MaxImportRows))
	}
	tenant, err := s.managedTenant(c)
	if err != nil {
		return err
	}
	rows := make([]domain.CreateUser, len(req.Users))
	for i, r := range req.Users {
		rows[i] = r.command()
	}
	results, seq, err := s.deps.Directory.Import(c.Request().Context(), tenant, rows, actorMeta(c))
	if err != nil {
		return err
	}
	out := BatchResult{Results: make([]BatchRow, len(results))}
	for i, r := range results {
		row := BatchRow{Row: r.Row, Status: r.Outcome, ID: r.UserID}
		switch r.Outcome {
		case domain.ImportCreated:
			out.Created++
		case domain.ImportUnchanged:
			out.Unchanged++
		default:
			out.Failed++
			p, _ := problemFor(r.Err)
			row.Problem = &p
		}
		out.Results[i] = row
	}
	return writeEntity(c, http.StatusOK, out, 0, seq)
}

// userPassword issues a user a temporary password. Like the tenant
// administrator's, it is deliberately not idempotent: a replay would have
// to store the password.
func (s *Server) userPassword(c echo.Context) error {
	if err := checkParams(c); err != nil {
		return err
	}
	tenant, err := s.managedTenant(c)
	if err != nil {
		return err
	}
	user, password, err := s.deps.Directory.IssuePassword(c.Request().Context(), tenant, c.Param("user"), actorMeta(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return writeJSON(c, http.StatusOK, AdminPasswordView{Username: user, TemporaryPassword: password,
		Note: "shown once and not stored; the user must change it at first sign-in"})
}
