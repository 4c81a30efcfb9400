// Package tenants is the application service for the Tenant aggregate: the
// operations the API, the CLI and the provisioner perform on tenants, on top
// of the command handler and the event log.
package tenants

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// KeyDestroyer erases a tenant's personal-data key.
type KeyDestroyer interface {
	Destroy(ctx context.Context, tenantID string) error
}

// Service runs tenant operations.
type Service struct {
	handler *command.Handler[domain.Tenant, domain.TenantCommand]
	store   *eventstore.Store
	keys    KeyDestroyer
	newID   func() string
	catalog *domain.Catalog
	log     *slog.Logger
}

// New returns a service.
func New(deps command.Deps, catalog *domain.Catalog, keys KeyDestroyer, log *slog.Logger) *Service {
	h := command.NewHandler[domain.Tenant, domain.TenantCommand](domain.TenantDecider{Catalog: catalog}, deps)
	return &Service{handler: h, store: deps.Store, keys: keys, newID: deps.NewID, catalog: catalog, log: log}
}

// Catalog returns the policy catalog commands are decided against.
func (s *Service) Catalog() *domain.Catalog { return s.catalog }

// Result is the outcome of a tenant command.
type Result = command.Result[domain.Tenant]

// Create creates a tenant with a new id.
func (s *Service) Create(ctx context.Context, c domain.CreateTenant, meta command.Meta) (Result, error) {
	c.ID = s.newID()
	return s.handler.Execute(ctx, c.ID, c.ID, c, meta)
}

// ValidID reports whether id has the shape of a tenant id.
func ValidID(id string) bool {
	u, err := uuid.Parse(id)
	return err == nil && len(id) == 36 && u.String() == id
}

func notFound(id string) error {
	return fmt.Errorf("no tenant with id %q: %w", id, domain.ErrNotFound)
}

// Get returns a tenant as the log has it now, and the stream sequence of its
// last event.
func (s *Service) Get(ctx context.Context, id string) (domain.Tenant, uint64, error) {
	if !ValidID(id) {
		return domain.Tenant{}, 0, notFound(id)
	}
	t, seq, err := s.handler.Load(ctx, id, id)
	if err != nil {
		return t, 0, err
	}
	if !t.Exists() {
		return t, 0, notFound(id)
	}
	return t, seq, nil
}

// Do runs a command on an existing tenant.
func (s *Service) Do(ctx context.Context, id string, cmd domain.TenantCommand, meta command.Meta) (Result, error) {
	if !ValidID(id) {
		return Result{}, notFound(id)
	}
	res, err := s.handler.Execute(ctx, id, id, cmd, meta)
	if err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			return res, notFound(id)
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

// Events returns up to limit of the events a tenant owns from stream
// sequence from on, and the sequence to continue from (0 at the end).
func (s *Service) Events(ctx context.Context, id string, from uint64, limit int) ([]eventstore.Message, uint64, error) {
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
	return msgs, next, nil
}

// Head returns the stream's last sequence.
func (s *Service) Head(ctx context.Context) (uint64, error) { return s.store.LastSeq(ctx) }

// Event returns the stored event at seq if it matches filter (a subject
// prefix ending in ">").
func (s *Service) Event(ctx context.Context, seq uint64, filter string) ([]byte, error) {
	m, err := s.store.Get(ctx, seq)
	if errors.Is(err, eventstore.ErrNotFound) || (err == nil && !strings.HasPrefix(m.Subject, strings.TrimSuffix(filter, ">"))) {
		return nil, fmt.Errorf("no event at sequence %d here: %w", seq, domain.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return m.Data, nil
}
