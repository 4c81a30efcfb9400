// Package compliance keeps a customer's tenants in step with its KYC/KYB
// status. A customer due for re-KYC keeps its tenants for a grace period (a
// durable timer); when the period ends without a completed verification,
// the firing is recorded on the customer (rekyc_grace_expired) and each of
// its tenants gets a compliance hold. A completed verification lifts that
// hold again, and only that one: a payment hold stays.
//
// Every step is an event, and every handler is idempotent: the customer
// events are consumed at least once, and a repeat finds the timer already
// set, the grace already expired, the hold already there or gone.
package compliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/backoff"
	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/consume"
	"github.com/tenancyhq/tenancy/internal/integrity"
	"github.com/tenancyhq/tenancy/internal/timer"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Actor is who the compliance steps are recorded as.
const Actor = "system:compliance"

// TimerPrefix starts the keys of re-KYC grace timers ("rekyc.<customer>").
const TimerPrefix = "rekyc."

// Consumer is the durable consumer of customer events.
const Consumer = "compliance"

// TenantLister finds a customer's tenants that are not deleted.
type TenantLister interface {
	OpenTenantsOfCustomer(ctx context.Context, customerID string) ([]string, error)
}

// DefaultSweepEvery is how often the sweep looks for tenants of customers
// past their re-KYC grace that are not held.
const DefaultSweepEvery = 5 * time.Minute

// Reactor turns customer verification events into timers and holds.
type Reactor struct {
	JS        jetstream.JetStream
	Stream    string
	Customers *app.Customers
	Tenants   *app.Tenants
	// Directory lists a customer's tenants once the read model has caught
	// up with the log.
	Directory TenantLister
	Timers    *timer.Timers
	// Keys erases a deleted customer's personal-data key.
	Keys app.KeyDestroyer
	// PastGrace lists the customers whose re-KYC grace ended; with it, a
	// sweep every SweepEvery (DefaultSweepEvery) places the compliance hold
	// on their tenants that escaped it (provisioning or archived when the
	// grace ended, restored or activated since).
	PastGrace  func(ctx context.Context) ([]string, error)
	SweepEvery time.Duration
	Reader     *integrity.Reader
	Poison     func(context.Context, *consume.Message, error) error
	Log        *slog.Logger
}

// graceTimer is a re-KYC timer's payload.
type graceTimer struct {
	CustomerID string    `json:"customer_id"`
	GraceUntil time.Time `json:"grace_until"`
}

// Run consumes customer events, and sweeps, until ctx ends.
func (r *Reactor) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return r.consume(gctx) })
	if r.PastGrace != nil {
		g.Go(func() error { return r.sweeps(gctx) })
	}
	return g.Wait()
}

// sweeps runs Sweep every SweepEvery until ctx ends; a failed sweep is
// logged and the next one tries again.
func (r *Reactor) sweeps(ctx context.Context) error {
	every := r.SweepEvery
	if every <= 0 {
		every = DefaultSweepEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := r.Sweep(ctx); err != nil && ctx.Err() == nil {
				r.Log.WarnContext(ctx, "compliance sweep failed; the next one retries", "error", err)
			}
		}
	}
}

// Sweep places the compliance hold on every tenant of a customer past its
// re-KYC grace that can take it; those that have it already are left as
// they are (Suspend of a held reason appends nothing).
func (r *Reactor) Sweep(ctx context.Context) error {
	ids, err := r.PastGrace(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := r.eachTenant(ctx, id, "", graceHold()); err != nil {
			return err
		}
	}
	return nil
}

// graceHold is the command that holds a tenant for its customer's overdue
// re-KYC.
func graceHold() domain.Suspend {
	return domain.Suspend{Reason: string(domain.SuspendCompliance), Note: "the customer's re-KYC was due and its grace period ended"}
}

func (r *Reactor) consume(ctx context.Context) error {
	src := consume.Source{Stream: r.Stream, Durable: &jetstream.ConsumerConfig{
		Durable: Consumer, FilterSubject: events.Subject(events.PlatformTenantID, events.AggregateCustomer, "*"),
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute, MaxDeliver: -1, DeliverPolicy: jetstream.DeliverAllPolicy,
		// In order, one at a time: a completed verification retried after a
		// later due_for_rekyc would otherwise cancel the new grace timer.
		MaxAckPending: 1,
	}}
	return consume.Run(ctx, r.JS, src, consume.Options{Reader: r.Reader, Poison: r.Poison, Log: r.Log}, func(ctx context.Context, m *consume.Message) {
		if err := r.handle(ctx, m); err != nil {
			r.Log.WarnContext(ctx, "compliance step failed; retrying", "seq", m.Seq, "subject", m.Subject, "error", err)
			m.Retry(backoff.Reconnect.Delay(m.Delivered))
			return
		}
		m.Ack()
	})
}

// Fire handles a firing of a re-KYC timer: it records that the grace
// period ended (the customer ignores it if verified again since).
func (r *Reactor) Fire(ctx context.Context, f timer.Fired) error {
	var g graceTimer
	if err := json.Unmarshal(f.Payload, &g); err != nil || g.CustomerID == "" {
		r.Log.ErrorContext(ctx, "dropping an unreadable re-KYC timer", "key", f.Key, "error", err)
		return nil
	}
	_, err := r.Customers.ExpireRekycGrace(ctx, g.CustomerID, g.GraceUntil, r.meta(""))
	if errors.Is(err, domain.ErrNotFound) {
		return nil // deleted since
	}
	return err
}

func (r *Reactor) meta(causation string) command.Meta {
	return command.Meta{Actor: Actor, CorrelationID: app.NewID(), CausationID: causation}
}

func (r *Reactor) handle(ctx context.Context, m *consume.Message) error {
	if m.Envelope == nil {
		return nil
	}
	id := m.Envelope.Subject
	switch p := m.Payload.(type) {
	case *events.CustomerVerificationRecorded:
		if p.Status == domain.VerificationDueForRekyc {
			until, err := time.Parse(time.RFC3339, p.GraceUntil)
			if err != nil {
				return fmt.Errorf("customer %s: grace_until %q: %w", id, p.GraceUntil, err)
			}
			payload, _ := json.Marshal(graceTimer{CustomerID: id, GraceUntil: until})
			return r.Timers.Schedule(ctx, TimerPrefix+id, until, payload)
		}
		if err := r.Timers.Cancel(ctx, TimerPrefix+id); err != nil {
			return err
		}
		if p.Status == domain.VerificationCompleted {
			// Only the holds this reactor placed: an operator's own
			// compliance suspension is not the KYC status's to lift.
			return r.eachTenant(ctx, id, m.Envelope.ID, domain.Resume{Reason: string(domain.SuspendCompliance), PlacedBy: Actor})
		}
	case *events.CustomerRekycGraceExpired:
		hold := graceHold()
		hold.Note += " at " + p.GraceUntil
		return r.eachTenant(ctx, id, m.Envelope.ID, hold)
	case *events.CustomerDeleted:
		// The API destroyed the key already, unless that failed: erasing
		// again is a no-op, and this is where a failure is retried.
		if r.Keys != nil {
			if err := r.Keys.Destroy(ctx, events.CustomerPIIScope(id)); err != nil {
				return fmt.Errorf("customer %s: erasing its personal data key: %w", id, err)
			}
		}
		return r.Timers.Cancel(ctx, TimerPrefix+id)
	}
	return nil
}

// eachTenant runs cmd on each of the customer's tenants that can take it:
// a tenant in a state where it does not apply (a draft cannot be
// suspended) is passed over.
func (r *Reactor) eachTenant(ctx context.Context, customerID, causation string, cmd domain.TenantCommand) error {
	ids, err := r.Directory.OpenTenantsOfCustomer(ctx, customerID)
	if err != nil {
		return err
	}
	for _, tid := range ids {
		_, err := r.Tenants.Do(ctx, tid, cmd, r.meta(causation))
		var te *domain.TransitionError
		switch {
		case err == nil, errors.As(err, &te), errors.Is(err, domain.ErrNotFound), errors.Is(err, domain.ErrPlatformTenant):
		default:
			return fmt.Errorf("tenant %s: %s: %w", tid, cmd.Action(), err)
		}
	}
	return nil
}

// Timers dispatches the firings of every timer to the handler its key
// names: one consumer serves them all (the timer stream is a work queue).
func Timers(r *Reactor) func(ctx context.Context, f timer.Fired) error {
	return func(ctx context.Context, f timer.Fired) error {
		if strings.HasPrefix(f.Key, TimerPrefix) {
			return r.Fire(ctx, f)
		}
		r.Log.WarnContext(ctx, "dropping a firing no handler knows", "key", f.Key)
		return nil
	}
}
