package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/readmodel"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// Reads answers queries from the read models. A caller that passes the
// sequence of its own write (min_seq) reads it: the query waits, bounded,
// until the read model has applied it.
type Reads struct {
	reader *readmodel.Reader
	waiter *readmodel.Waiter
	store  *eventstore.Store
	wait   time.Duration
}

// NewReads returns the queries; wait bounds how long a query waits for its
// min_seq.
func NewReads(reader *readmodel.Reader, waiter *readmodel.Waiter, store *eventstore.Store, wait time.Duration) *Reads {
	if wait <= 0 {
		wait = 2 * time.Second
	}
	return &Reads{reader: reader, waiter: waiter, store: store, wait: wait}
}

// Wait returns once projection has applied minSeq, with the sequence it had
// reached. A minSeq beyond the log is invalid; one the read model does not
// reach in time is unavailable (retry shortly).
func (r *Reads) Wait(ctx context.Context, projection string, minSeq uint64) (uint64, error) {
	reached, err := r.waiter.Wait(ctx, projection, minSeq, r.wait)
	if !errors.Is(err, readmodel.ErrBehind) {
		return reached, err
	}
	if head, herr := r.store.LastSeq(ctx); herr == nil && minSeq > head {
		return reached, &domain.ValidationError{Fields: []domain.FieldError{{Field: "min_seq",
			Message: fmt.Sprintf("%d is beyond the end of the log (%d); pass the Tenancy-Sequence of a write", minSeq, head)}}}
	}
	return reached, fmt.Errorf("%w: the %s read model has reached sequence %d, not min_seq %d, within %s; retry shortly",
		domain.ErrUnavailable, projection, reached, minSeq, r.wait)
}

// Tenants lists tenants.
func (r *Reads) Tenants(ctx context.Context, f readmodel.TenantFilter, p readmodel.Page) (readmodel.TenantPage, error) {
	return r.reader.ListTenants(ctx, f, p)
}

// Customers lists customers.
func (r *Reads) Customers(ctx context.Context, f readmodel.CustomerFilter, p readmodel.Page) (readmodel.CustomerPage, error) {
	return r.reader.ListCustomers(ctx, f, p)
}

// Directory returns what customers need of the read model, read only once
// it has caught up with the log: a tenant attached a moment ago must count
// when its customer's deletion is decided, and a customer created a moment
// ago must be found.
func (r *Reads) Directory() CustomerDirectory { return settledDirectory{r} }

type settledDirectory struct{ r *Reads }

// settle waits until projection has applied everything in the log now.
func (d settledDirectory) settle(ctx context.Context, projection string) error {
	head, err := d.r.store.LastSeq(ctx)
	if err != nil {
		return err
	}
	_, err = d.r.Wait(ctx, projection, head)
	return err
}

func (d settledDirectory) OpenTenantsOfCustomer(ctx context.Context, customerID string) ([]string, error) {
	if err := d.settle(ctx, "tenants"); err != nil {
		return nil, err
	}
	return d.r.reader.OpenTenantsOfCustomer(ctx, customerID)
}

func (d settledDirectory) CustomerByFiscalIndex(ctx context.Context, kind, index string) (domain.Customer, error) {
	if err := d.settle(ctx, "customers"); err != nil {
		return domain.Customer{}, err
	}
	return d.r.reader.CustomerByFiscalIndex(ctx, kind, index)
}

// TenantBySlug returns the tenant holding slug.
func (r *Reads) TenantBySlug(ctx context.Context, slug string) (readmodel.Tenant, error) {
	return r.reader.TenantBySlug(ctx, slug)
}

// TenantByExternalID returns the tenant an external system knows by id.
func (r *Reads) TenantByExternalID(ctx context.Context, system, id string) (readmodel.Tenant, error) {
	return r.reader.TenantByExternalID(ctx, system, id)
}

// Audit lists the audit trail, newest first.
func (r *Reads) Audit(ctx context.Context, f readmodel.AuditFilter, p readmodel.Page) (readmodel.AuditPage, error) {
	return r.reader.Audit(ctx, f, p)
}

// Users lists a tenant's users.
func (r *Reads) Users(ctx context.Context, f readmodel.UserFilter, p readmodel.Page) (readmodel.UserPage, error) {
	return r.reader.ListUsers(ctx, f, p)
}
