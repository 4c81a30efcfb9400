package app

import (
	"context"
	"strconv"
	"time"

	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/integrity"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Integrity is the operators' side of the log's integrity: the messages the
// readers quarantined, and their resolution.
type Integrity struct {
	quarantine *integrity.Quarantine
	handler    *command.Handler[domain.Quarantine, domain.ResolveQuarantine]
	clock      func() time.Time
}

// NewIntegrity returns the integrity use cases.
func NewIntegrity(deps command.Deps, q *integrity.Quarantine) *Integrity {
	clock := deps.Clock
	if clock == nil {
		clock = time.Now
	}
	return &Integrity{quarantine: q, handler: command.NewHandler[domain.Quarantine, domain.ResolveQuarantine](domain.QuarantineDecider{}, deps), clock: clock}
}

// Quarantined lists the quarantined messages, oldest first.
func (i *Integrity) Quarantined(ctx context.Context) ([]integrity.Record, error) {
	return i.quarantine.List(ctx)
}

// Quarantine returns one quarantined message's record.
func (i *Integrity) Quarantine(ctx context.Context, seq uint64) (integrity.Record, error) {
	return i.quarantine.Get(ctx, seq)
}

// Resolve tells every reader to pass over the quarantined message at seq,
// with the operator's reason: a signed resolution event in the log. The
// message stays in the log (it denies deletes); its aggregate's next event
// chains to the last valid one before it.
func (i *Integrity) Resolve(ctx context.Context, seq uint64, reason string, meta command.Meta) (command.Result[domain.Quarantine], integrity.Record, error) {
	rec, err := i.quarantine.Get(ctx, seq)
	if err != nil {
		return command.Result[domain.Quarantine]{}, rec, err
	}
	res, err := i.handler.Execute(ctx, events.PlatformTenantID, strconv.FormatUint(seq, 10),
		domain.ResolveQuarantine{Seq: seq, Subject: rec.Subject, Violation: rec.Violation, Reason: reason}, meta)
	if err != nil {
		return res, rec, err
	}
	if err := i.quarantine.MarkResolved(ctx, seq, res.State.Reason, meta.Actor, i.clock()); err != nil {
		return res, rec, err
	}
	rec, err = i.quarantine.Get(ctx, seq)
	return res, rec, err
}
