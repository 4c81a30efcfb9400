package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// BlindIndexer computes the keyed HMAC of a normalised value (the
// keyring's BlindIndex): fiscal ids are looked up by it and never stored
// in the clear.
type BlindIndexer interface {
	BlindIndex(kind, value string) string
}

// CustomerDirectory is what the read model knows of customers and their
// tenants.
type CustomerDirectory interface {
	// OpenTenantsOfCustomer returns the ids of the customer's tenants that
	// are not deleted.
	OpenTenantsOfCustomer(ctx context.Context, customerID string) ([]string, error)
	// CustomerByFiscalIndex returns the customer whose fiscal id of kind
	// has the blind index (domain.ErrNotFound when none).
	CustomerByFiscalIndex(ctx context.Context, kind, index string) (domain.Customer, error)
}

// Customers runs customer operations: the billing entities that own
// tenants, verified by KYC (individuals) or KYB (businesses).
type Customers struct {
	handler *command.Handler[domain.Customer, domain.CustomerCommand]
	index   BlindIndexer
	keys    KeyDestroyer
	catalog *domain.Catalog
	clock   func() time.Time
	newID   func() string
	log     *slog.Logger
	dir     CustomerDirectory
}

// CustomersOptions configure Customers.
type CustomersOptions struct {
	Deps    command.Deps
	Catalog *domain.Catalog
	Index   BlindIndexer
	// Keys erases a deleted customer's personal data.
	Keys KeyDestroyer
	Log  *slog.Logger
}

// NewCustomers returns the customer use cases.
func NewCustomers(o CustomersOptions) *Customers {
	clock := o.Deps.Clock
	if clock == nil {
		clock = time.Now
	}
	return &Customers{
		handler: command.NewHandler[domain.Customer, domain.CustomerCommand](domain.CustomerDecider{}, o.Deps),
		index:   o.Index, keys: o.Keys, catalog: o.Catalog, clock: clock, newID: o.Deps.NewID, log: o.Log,
	}
}

// WithDirectory returns a copy of s that uses dir for lookups and tenant
// counts (the API's; without one, lookups and deletes are unavailable).
func (s *Customers) WithDirectory(dir CustomerDirectory) *Customers {
	c := *s
	c.dir = dir
	return &c
}

// CustomerResult is the outcome of a customer command.
type CustomerResult = command.Result[domain.Customer]

func customerNotFound(id string) error {
	return fmt.Errorf("no customer with id %q: %w", id, domain.ErrNotFound)
}

func (s *Customers) indexer() domain.FiscalIndexer {
	if s.index == nil {
		return nil
	}
	return s.index.BlindIndex
}

// Create creates a customer with a new id (or the given one: a retry of a
// create that appended but never answered gets what it created).
func (s *Customers) Create(ctx context.Context, c domain.CreateCustomer, meta command.Meta) (CustomerResult, error) {
	given := c.ID != ""
	if !given {
		c.ID = s.newID()
	}
	c.Index = s.indexer()
	res, err := s.handler.Execute(ctx, events.PlatformTenantID, c.ID, c, meta)
	var ce *domain.ConflictError
	if given && errors.As(err, &ce) && ce.Field == "id" {
		if cur, seq, gerr := s.Get(ctx, c.ID); gerr == nil && cur.Kind == c.Kind {
			return CustomerResult{State: cur, Seq: seq}, nil
		}
	}
	return res, err
}

// Get returns a customer as the log has it now (personal data opened), and
// the stream sequence of its last event. A deleted customer is not found.
func (s *Customers) Get(ctx context.Context, id string) (domain.Customer, uint64, error) {
	c, seq, err := s.load(ctx, id)
	if err != nil {
		return c, 0, err
	}
	if !c.Exists() {
		return c, 0, customerNotFound(id)
	}
	return c, seq, nil
}

func (s *Customers) load(ctx context.Context, id string) (domain.Customer, uint64, error) {
	if !ValidID(id) {
		return domain.Customer{}, 0, customerNotFound(id)
	}
	return s.handler.Load(ctx, events.PlatformTenantID, id)
}

// Facts returns what a tenant command needs to know of customer id: an
// unknown or deleted customer is reported as not existing, not as an
// error, so that the decision (a 422 naming the field) stays the domain's.
func (s *Customers) Facts(ctx context.Context, id string) (*domain.CustomerFacts, error) {
	c, _, err := s.load(ctx, id)
	switch {
	case errors.Is(err, domain.ErrNotFound):
		return &domain.CustomerFacts{ID: id}, nil
	case err != nil:
		return nil, err
	}
	return &domain.CustomerFacts{ID: id, Exists: c.Exists(), Verification: c.Verification.Status, RealmMode: c.RealmMode,
		GraceExpired: c.Verification.Status == domain.VerificationDueForRekyc && c.Verification.GraceExpired}, nil
}

// Do runs a command on an existing customer, filling in what the decision
// needs from the world: the blind indexer, the clock and the catalog's
// grace period, the count of open tenants.
func (s *Customers) Do(ctx context.Context, id string, cmd domain.CustomerCommand, meta command.Meta) (CustomerResult, error) {
	if !ValidID(id) {
		return CustomerResult{}, customerNotFound(id)
	}
	switch c := cmd.(type) {
	case domain.UpdateCustomer:
		c.Index = s.indexer()
		cmd = c
	case domain.RecordVerification:
		c.Now, c.Grace = s.clock(), s.catalog.RekycGrace()
		cmd = c
	case domain.DeleteCustomer:
		if s.dir == nil {
			return CustomerResult{}, fmt.Errorf("%w: deleting a customer needs the read model to count its tenants (DATABASE_URL)", domain.ErrUnavailable)
		}
		open, err := s.dir.OpenTenantsOfCustomer(ctx, id)
		if err != nil {
			return CustomerResult{}, err
		}
		c.OpenTenants = len(open)
		cmd = c
	}
	res, err := s.handler.Execute(ctx, events.PlatformTenantID, id, cmd, meta)
	if err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			return res, customerNotFound(id)
		}
		return res, err
	}
	if _, ok := cmd.(domain.DeleteCustomer); ok && res.State.Deleted && s.keys != nil {
		// The deletion is recorded (the command succeeded); now erase the
		// personal data. Should this fail, the provisioner's compliance
		// reactor erases it on the deletion event (it retries until it
		// can), and a repeated DELETE erases it again.
		if err := s.keys.Destroy(ctx, events.CustomerPIIScope(id)); err != nil {
			s.log.ErrorContext(ctx, "erasing a customer's personal data key failed; the provisioner will retry", "customer_id", id, "error", err)
		}
	}
	return res, nil
}

// Lookup finds the customer holding a fiscal id through its blind index:
// the value is normalised and keyed-hashed, never stored or sent on.
func (s *Customers) Lookup(ctx context.Context, kind, value string) (domain.Customer, uint64, error) {
	var fe []domain.FieldError
	if !slices.Contains(domain.FiscalKinds, kind) {
		fe = append(fe, domain.FieldError{Field: "kind", Message: fmt.Sprintf("unknown fiscal id kind %q", kind), Allowed: domain.FiscalKinds})
	}
	v := domain.NormaliseFiscalID(value)
	if v == "" {
		fe = append(fe, domain.FieldError{Field: "value", Message: "is required"})
	}
	if len(fe) > 0 {
		return domain.Customer{}, 0, &domain.ValidationError{Fields: fe}
	}
	if s.dir == nil || s.index == nil {
		return domain.Customer{}, 0, fmt.Errorf("%w: lookups need the read model (DATABASE_URL)", domain.ErrUnavailable)
	}
	found, err := s.dir.CustomerByFiscalIndex(ctx, kind, s.index.BlindIndex(kind, v))
	if err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			return domain.Customer{}, 0, fmt.Errorf("no customer has that %s: %w", kind, domain.ErrNotFound)
		}
		return domain.Customer{}, 0, err
	}
	// The read model found it; the log is the truth (it may have changed).
	return s.Get(ctx, found.ID)
}

// ExpireRekycGrace ends a re-KYC grace period that a durable timer says
// ran out; a customer verified again since ignores it.
func (s *Customers) ExpireRekycGrace(ctx context.Context, id string, graceUntil time.Time, meta command.Meta) (CustomerResult, error) {
	return s.Do(ctx, id, domain.ExpireRekycGrace{GraceUntil: graceUntil}, meta)
}
