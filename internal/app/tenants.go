package app

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/integrity"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// KeyDestroyer erases a tenant's personal-data key.
type KeyDestroyer interface {
	Destroy(ctx context.Context, tenantID string) error
}

// AdminAccounts reaches tenant administrators' accounts in the identity
// provider (Keycloak).
type AdminAccounts interface {
	// SetTemporaryPassword sets password on username's account in realm, to
	// be changed at first login, and returns the account's username; found
	// is false when there is no such account.
	SetTemporaryPassword(ctx context.Context, realm, username, password string) (account string, found bool, err error)
	// SetMemberPassword does the same in the shared realm for the account
	// of directory user userID, refusing (shared) one that belongs to other
	// tenants too.
	SetMemberPassword(ctx context.Context, realm, tenantID, userID, password string) (account string, found, shared bool, err error)
	// MemberAccount reports whether the shared realm has the account of
	// directory user userID and whether it belongs to other tenants too.
	MemberAccount(ctx context.Context, realm, tenantID, userID string) (found, shared bool, err error)
}

// Tenants runs tenant operations for the API, the CLI and the provisioner.
type Tenants struct {
	handler  *command.Handler[domain.Tenant, domain.TenantCommand]
	store    *eventstore.Store
	keys     KeyDestroyer
	accounts AdminAccounts
	newID    func() string
	catalog  *domain.Catalog
	log      *slog.Logger
	checker  *integrity.Checker
	customer CustomerFacter
}

// CustomerFacter tells tenant commands about the customer a tenant names
// (Customers does).
type CustomerFacter interface {
	Facts(ctx context.Context, id string) (*domain.CustomerFacts, error)
}

// TenantsOptions configure Tenants.
type TenantsOptions struct {
	Deps    command.Deps
	Catalog *domain.Catalog
	// Keys erases a deleted tenant's personal data.
	Keys KeyDestroyer
	// Accounts, when set, lets operators issue administrator passwords.
	Accounts AdminAccounts
	// Customers, when set, checks the customers tenants name (without it,
	// every customer_id is unknown).
	Customers CustomerFacter
	Log       *slog.Logger
}

// NewTenants returns the tenant use cases.
func NewTenants(o TenantsOptions) *Tenants {
	h := command.NewHandler[domain.Tenant, domain.TenantCommand](domain.TenantDecider{Catalog: o.Catalog}, o.Deps)
	checker := o.Deps.Checker
	if checker == nil {
		checker = integrity.NewLogChecker(o.Deps.Store)
	}
	return &Tenants{handler: h, store: o.Deps.Store, keys: o.Keys, accounts: o.Accounts, newID: o.Deps.NewID, catalog: o.Catalog, log: o.Log, checker: checker,
		customer: o.Customers}
}

// Catalog returns the policy catalog commands are decided against.
func (s *Tenants) Catalog() *domain.Catalog { return s.catalog }

// TenantResult is the outcome of a tenant command.
type TenantResult = command.Result[domain.Tenant]

// Create creates a tenant with a new id.
func (s *Tenants) Create(ctx context.Context, c domain.CreateTenant, meta command.Meta) (TenantResult, error) {
	given := c.ID != ""
	if !given {
		c.ID = s.newID()
	}
	if c.CustomerID != "" {
		facts, err := s.facts(ctx, c.CustomerID)
		if err != nil {
			return TenantResult{}, err
		}
		c.Customer = facts
	}
	res, err := s.handler.Execute(ctx, c.ID, c.ID, c, meta)
	var ce *domain.ConflictError
	if given && errors.As(err, &ce) && ce.Field == "id" {
		// A retry (same Idempotency-Key, so the same id) of a create that
		// appended but never answered: what it created is the answer.
		if t, seq, gerr := s.Get(ctx, c.ID); gerr == nil && t.Slug == c.Slug {
			return TenantResult{State: t, Seq: seq}, nil
		}
	}
	return res, err
}

// facts returns what is known of customer id; an id that is not a UUID
// names no customer.
func (s *Tenants) facts(ctx context.Context, id string) (*domain.CustomerFacts, error) {
	if s.customer == nil || !ValidID(id) {
		return &domain.CustomerFacts{ID: id}, nil
	}
	return s.customer.Facts(ctx, id)
}

// withCustomer adds to cmd what it needs to know of a customer: the one
// an update names, or, for activation, the tenant's own and the shared
// realm its tenants may join.
func (s *Tenants) withCustomer(ctx context.Context, id string, cmd domain.TenantCommand) (domain.TenantCommand, error) {
	switch c := cmd.(type) {
	case domain.UpdateTenant:
		if c.CustomerID != nil && *c.CustomerID != "" {
			facts, err := s.facts(ctx, *c.CustomerID)
			if err != nil {
				return nil, err
			}
			c.Customer = facts
		}
		return c, nil
	case domain.RequestActivation:
		t, _, err := s.handler.Load(ctx, id, id)
		if err != nil || t.CustomerID == "" {
			return c, err
		}
		if c.Customer, err = s.facts(ctx, t.CustomerID); err != nil {
			return nil, err
		}
		if c.Customer.RealmMode == domain.RealmShared {
			if shared, _, err := s.handler.Load(ctx, domain.SharedTenantID, domain.SharedTenantID); err == nil && shared.Exists() {
				c.SharedRealm = shared.Slug
			}
		}
		return c, nil
	}
	return cmd, nil
}

func tenantNotFound(id string) error {
	return fmt.Errorf("no tenant with id %q: %w", id, domain.ErrNotFound)
}

// Get returns a tenant as the log has it now, and the stream sequence of its
// last event.
func (s *Tenants) Get(ctx context.Context, id string) (domain.Tenant, uint64, error) {
	if !ValidID(id) {
		return domain.Tenant{}, 0, tenantNotFound(id)
	}
	t, seq, err := s.handler.Load(ctx, id, id)
	if err != nil {
		return t, 0, err
	}
	if !t.Exists() {
		return t, 0, tenantNotFound(id)
	}
	return t, seq, nil
}

// Integrity says where a tenant's hash chain breaks, as its last load
// found it (nil when intact).
func (s *Tenants) Integrity(id string) *domain.IntegrityError { return s.handler.Broken(id, id) }

// Do runs a command on an existing tenant.
func (s *Tenants) Do(ctx context.Context, id string, cmd domain.TenantCommand, meta command.Meta) (TenantResult, error) {
	if !ValidID(id) {
		return TenantResult{}, tenantNotFound(id)
	}
	cmd, err := s.withCustomer(ctx, id, cmd)
	if err != nil {
		return TenantResult{}, err
	}
	res, err := s.handler.Execute(ctx, id, id, cmd, meta)
	if err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			return res, tenantNotFound(id)
		}
		return res, err
	}
	if _, ok := cmd.(domain.Delete); ok && res.State.State == domain.StateDeleted && s.keys != nil {
		// The deletion is recorded; now erase the personal data. Should this
		// fail, the delete saga erases it again (it is idempotent).
		if err := s.keys.Destroy(ctx, id); err != nil {
			s.log.ErrorContext(ctx, "erasing personal data key failed; the delete saga will retry", "tenant_id", id, "error", err)
		}
	}
	return res, nil
}

// Events returns up to limit of the signed events a tenant owns, as stored,
// from stream sequence from on, and the sequence to continue from (0 at
// the end). Messages on its subjects that fail the integrity checks (and
// resolved ones) are left out: they are not its events (GET
// /v1/admin/quarantine lists them).
func (s *Tenants) Events(ctx context.Context, id string, from uint64, limit int) ([]json.RawMessage, uint64, error) {
	if _, _, err := s.Get(ctx, id); err != nil {
		return nil, 0, err
	}
	msgs, more, err := s.store.Read(ctx, events.TenantSubjects(id), from, limit)
	if err != nil {
		return nil, 0, err
	}
	var next uint64
	if more && len(msgs) > 0 {
		next = msgs[len(msgs)-1].Seq + 1
	}
	reader := integrity.NewReader(s.checker, s.store, 1024)
	if err := reader.Preverify(ctx, msgs); err != nil {
		return nil, 0, err
	}
	out := make([]json.RawMessage, 0, len(msgs))
	for _, m := range msgs {
		c, err := reader.Read(ctx, m)
		var v *integrity.Violation
		switch {
		case errors.As(err, &v), err == nil && c.Ignored:
			continue
		case err != nil:
			return nil, 0, err
		}
		out = append(out, m.Data)
	}
	return out, next, nil
}

// Event returns the stored event at seq if it matches filter (a subject
// prefix ending in ">") and passes the integrity checks.
func (s *Tenants) Event(ctx context.Context, seq uint64, filter string) ([]byte, error) {
	m, err := s.store.Get(ctx, seq)
	if errors.Is(err, eventstore.ErrNotFound) || (err == nil && !strings.HasPrefix(m.Subject, strings.TrimSuffix(filter, ">"))) {
		return nil, fmt.Errorf("no event at sequence %d here: %w", seq, domain.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	c, err := integrity.NewReader(s.checker, s.store, 16).Read(ctx, *m)
	var v *integrity.Violation
	switch {
	case errors.As(err, &v), err == nil && c.Ignored:
		return nil, fmt.Errorf("no event at sequence %d: the message there failed the integrity checks (%s; GET /v1/admin/quarantine/%d): %w", seq, integrityReason(v), seq, domain.ErrNotFound)
	case err != nil:
		return nil, err
	}
	return m.Data, nil
}

func integrityReason(v *integrity.Violation) string {
	if v == nil {
		return "resolved"
	}
	return v.Reason
}

// IssueAdminPassword gives the tenant's administrator a new temporary
// password in the identity provider and returns the account and the
// password, which is never stored. The issue is recorded first, so that a
// password that exists is always accounted for.
func (s *Tenants) IssueAdminPassword(ctx context.Context, id string, meta command.Meta) (account, password string, err error) {
	if s.accounts == nil {
		return "", "", fmt.Errorf("%w: no identity provider is configured (KEYCLOAK_URL), so there is no administrator account", domain.ErrPrecondition)
	}
	t, _, err := s.Get(ctx, id)
	if err != nil {
		return "", "", err
	}
	if _, err := s.Do(ctx, t.ID, domain.RecordAdminPassword{}, meta); err != nil {
		return "", "", err
	}
	if t.Activation == nil || t.Activation.Admin == nil {
		return "", "", fmt.Errorf("%w: the tenant has no administrator (it was never activated, or its personal data is erased)", domain.ErrPrecondition)
	}
	password = newPassword(20)
	realm := t.Slug
	if t.Realm != nil && t.Realm.Mode == domain.RealmShared {
		realm = t.Realm.Realm // an organization's administrator lives in the shared realm
	}
	account, found, err := s.accounts.SetTemporaryPassword(ctx, realm, strings.ToLower(t.Activation.Admin.Email), password)
	switch {
	case err != nil:
		return "", "", identityProviderError(err)
	case !found:
		return "", "", fmt.Errorf("%w: the administrator does not exist in the identity provider yet (provisioning step %q); retry once it completed", domain.ErrPrecondition, "admin")
	}
	return account, password, nil
}

// passwordAlphabet avoids characters people misread.
const passwordAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_!@#%"

// newPassword returns a random password of n characters.
func newPassword(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = passwordAlphabet[int(b[i])%len(passwordAlphabet)]
	}
	return string(b)
}

// identityProviderError maps an identity provider failure: one a retry may
// get past is unavailable; a refusal is unexpected.
func identityProviderError(err error) error {
	var t interface{ Temporary() bool }
	if errors.As(err, &t) && !t.Temporary() {
		return fmt.Errorf("identity provider refused: %w", err)
	}
	return fmt.Errorf("%w: identity provider: %v", domain.ErrUnavailable, err)
}

// OrganizationOf checks that tenant id is active and placed as an
// organization in realm, the shared realm: that realm's tokens act on such
// tenants only, and on a suspended one not at all.
func (s *Tenants) OrganizationOf(ctx context.Context, realm, id string) error {
	t, _, err := s.Get(ctx, id)
	if err != nil {
		return err
	}
	if t.Realm == nil || t.Realm.Mode != domain.RealmShared || t.Realm.Realm != realm || t.State != domain.StateActive {
		return fmt.Errorf("tenant %s is %s and not an organization of realm %q: %w", id, t.State, realm, domain.ErrNotFound)
	}
	return nil
}

// TenantOfRealm returns the id of the active tenant whose own realm is
// named realm (its slug): the API trusts that realm's tokens for that
// tenant alone. Tenants in the shared realm, and tenants that are not
// active, have none.
func (s *Tenants) TenantOfRealm(ctx context.Context, realm string) (string, error) {
	id, err := s.store.ClaimOwner(ctx, domain.Claim{Kind: domain.ClaimSlug, Value: realm})
	if err != nil {
		return "", err
	}
	if id == "" {
		return "", fmt.Errorf("no tenant has realm %q: %w", realm, domain.ErrNotFound)
	}
	t, _, err := s.Get(ctx, id)
	if err != nil {
		return "", err
	}
	if t.Realm != nil && t.Realm.Mode == domain.RealmShared || t.State != domain.StateActive {
		return "", fmt.Errorf("tenant %s is %s (realm mode %v): its realm's tokens are not accepted: %w", id, t.State, t.Realm, domain.ErrNotFound)
	}
	return id, nil
}
