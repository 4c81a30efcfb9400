package realmsync

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/tenancyhq/tenancy/internal/keycloak"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// Group attributes that mark Tenancy's groups: an org unit's group carries
// its id; each of its role subgroups (admin, default, auditor) carries the
// id and the role too.
const (
	GroupAttrOU   = "tenancy.ou_id"
	GroupAttrRole = "tenancy.ou_role"
)

// Groups is what syncing org units needs of Keycloak's groups API.
type Groups interface {
	Groups(ctx context.Context, realm, parent string) ([]keycloak.Group, error)
	CreateGroup(ctx context.Context, realm, parent string, g keycloak.Group) (string, error)
	MoveGroup(ctx context.Context, realm, parent string, g keycloak.Group) error
	UpdateGroup(ctx context.Context, realm string, g keycloak.Group) error
	DeleteGroup(ctx context.Context, realm, id string) error
	UserGroups(ctx context.Context, realm, userID string) ([]keycloak.Group, error)
	JoinGroup(ctx context.Context, realm, userID, groupID string) error
	LeaveGroup(ctx context.Context, realm, userID, groupID string) error
}

// groupIndex is a realm's Tenancy groups: the org units' groups, their
// parents, and their role subgroups.
type groupIndex struct {
	byOU   map[string]keycloak.Group
	parent map[string]string
	roles  map[string]map[string]keycloak.Group
}

func attr(g keycloak.Group, k string) string {
	if v := g.Attributes[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// indexGroups walks the realm's groups below Tenancy's top-level ones
// (other groups are the realm's own and not descended into).
func (s *Syncer) indexGroups(ctx context.Context, realm string) (*groupIndex, error) {
	idx := &groupIndex{byOU: map[string]keycloak.Group{}, parent: map[string]string{}, roles: map[string]map[string]keycloak.Group{}}
	var walk func(parent string) error
	walk = func(parent string) error {
		list, err := s.Keycloak.Groups(ctx, realm, parent)
		if err != nil {
			return err
		}
		for _, g := range list {
			ou, role := attr(g, GroupAttrOU), attr(g, GroupAttrRole)
			switch {
			case ou != "" && role != "":
				if idx.roles[ou] == nil {
					idx.roles[ou] = map[string]keycloak.Group{}
				}
				idx.roles[ou][role] = g
			case ou != "":
				idx.byOU[ou], idx.parent[g.ID] = g, parent
				if err := walk(g.ID); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return idx, walk("")
}

// ensureOU makes the group of org unit id, under its parent's, with its
// name and its role subgroups, and returns it.
func (s *Syncer) ensureOU(ctx context.Context, realm string, d domain.Directory, idx *groupIndex, id string, depth int) (keycloak.Group, string, error) {
	o, ok := d.OrgUnit(id)
	if !ok || depth > domain.MaxOUDepth {
		return keycloak.Group{}, "", fmt.Errorf("org unit %s is not in the directory", id)
	}
	parent := ""
	if o.ParentID != "" {
		pg, _, err := s.ensureOU(ctx, realm, d, idx, o.ParentID, depth+1)
		if err != nil {
			return keycloak.Group{}, "", err
		}
		parent = pg.ID
	}
	g, found := idx.byOU[id]
	action := "unchanged"
	switch {
	case !found:
		var err error
		if g, err = s.createGroup(ctx, realm, parent, keycloak.Group{Name: o.Name, Attributes: map[string][]string{GroupAttrOU: {id}}}); err != nil {
			return g, "", err
		}
		action = "created"
	case idx.parent[g.ID] != parent:
		if err := s.Keycloak.MoveGroup(ctx, realm, parent, g); err != nil {
			return g, "", err
		}
		action = "moved"
	}
	if g.Name != o.Name {
		g.Name = o.Name
		if err := s.Keycloak.UpdateGroup(ctx, realm, g); err != nil {
			return g, "", err
		}
		action = "renamed"
	}
	idx.byOU[id], idx.parent[g.ID] = g, parent
	return g, action, s.ensureRoleGroups(ctx, realm, idx, id, g.ID)
}

func (s *Syncer) ensureRoleGroups(ctx context.Context, realm string, idx *groupIndex, ou, groupID string) error {
	if idx.roles[ou] == nil {
		idx.roles[ou] = map[string]keycloak.Group{}
	}
	for _, role := range domain.OURoles {
		if _, ok := idx.roles[ou][role]; ok {
			continue
		}
		g, err := s.createGroup(ctx, realm, groupID, keycloak.Group{Name: role, Attributes: map[string][]string{GroupAttrOU: {ou}, GroupAttrRole: {role}}})
		if err != nil {
			return err
		}
		idx.roles[ou][role] = g
	}
	return nil
}

// createGroup creates g under parent. A sibling of its name that carries
// the same Tenancy marks is g, made by an earlier attempt whose answer was
// lost; one without them is the realm's own (ErrForeign).
func (s *Syncer) createGroup(ctx context.Context, realm, parent string, g keycloak.Group) (keycloak.Group, error) {
	id, err := s.Keycloak.CreateGroup(ctx, realm, parent, g)
	if err == nil {
		g.ID = id
		return g, nil
	}
	if !errors.Is(err, keycloak.ErrConflict) {
		return g, err
	}
	siblings, lerr := s.Keycloak.Groups(ctx, realm, parent)
	if lerr != nil {
		return g, lerr
	}
	for _, sib := range siblings {
		if sib.Name == g.Name && attr(sib, GroupAttrOU) == attr(g, GroupAttrOU) && attr(sib, GroupAttrRole) == attr(g, GroupAttrRole) {
			return sib, nil
		}
	}
	return g, fmt.Errorf("%w: the realm has a group named %q where org unit %s's belongs", ErrForeign, g.Name, attr(g, GroupAttrOU))
}

// SyncOrgUnit makes the group of org unit id what directory d says:
// created (with its role subgroups), renamed, moved, or deleted with its
// subgroups when d no longer has the unit. In the shared realm a unit has
// no group (the realm's groups are visible to all its tenants): its
// members' grants carry it.
func (s *Syncer) SyncOrgUnit(ctx context.Context, r Realm, d domain.Directory, id string, idx *groupIndex) (Change, error) {
	if r.Shared() {
		return Change{"org unit", id, ""}, nil
	}
	realm := r.Name
	if idx == nil {
		var err error
		if idx, err = s.indexGroups(ctx, realm); err != nil {
			return Change{}, err
		}
	}
	if _, ok := d.OrgUnit(id); !ok {
		g, found := idx.byOU[id]
		if !found {
			return Change{"org unit", id, "already gone"}, nil
		}
		if err := s.Keycloak.DeleteGroup(ctx, realm, g.ID); err != nil && !errors.Is(err, keycloak.ErrNotFound) {
			return Change{}, err
		}
		delete(idx.byOU, id)
		return Change{"org unit", id, "deleted"}, nil
	}
	_, action, err := s.ensureOU(ctx, realm, d, idx, id, 0)
	return Change{"org unit", id, action}, err
}

// syncGroups makes the user's Tenancy group memberships exactly its
// org units' groups and their role subgroups; the realm's own groups are
// left alone.
func (s *Syncer) syncGroups(ctx context.Context, realm string, d domain.Directory, idx *groupIndex, userID, kcID string) error {
	want := map[string]bool{}
	for _, m := range d.MembershipsOf(userID) {
		g, _, err := s.ensureOU(ctx, realm, d, idx, m.OUID, 0)
		if err != nil {
			return err
		}
		want[g.ID] = true
		for _, r := range m.Roles {
			rg, ok := idx.roles[m.OUID][r]
			if !ok || rg.ID == "" {
				return fmt.Errorf("org unit %s has no %s subgroup in realm %s", m.OUID, r, realm)
			}
			want[rg.ID] = true
		}
	}
	have, err := s.Keycloak.UserGroups(ctx, realm, kcID)
	if err != nil {
		return err
	}
	var had []string
	for _, g := range have {
		if attr(g, GroupAttrOU) == "" {
			continue
		}
		had = append(had, g.ID)
		if !want[g.ID] {
			if err := s.Keycloak.LeaveGroup(ctx, realm, kcID, g.ID); err != nil && !errors.Is(err, keycloak.ErrNotFound) {
				return err
			}
		}
	}
	for id := range want {
		if !slices.Contains(had, id) {
			if err := s.Keycloak.JoinGroup(ctx, realm, kcID, id); err != nil {
				return err
			}
		}
	}
	return nil
}
