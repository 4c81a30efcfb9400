package projection

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/internal/integrity"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Quarantine implements Quarantiner: the tenant whose subject carries the
// quarantined message is shown as integrity: broken at that sequence (the
// earliest, if several) until the message is resolved.
func (Tenants) Quarantine(ctx context.Context, tx pgx.Tx, gen int, v *integrity.Violation) error {
	id, ok := tenantOf(v.Subject)
	if !ok {
		return nil
	}
	_, err := tx.Exec(ctx, "UPDATE "+Ident(Table("tenants", gen))+` SET integrity_broken_seq = $2
		WHERE id = $1::uuid AND (integrity_broken_seq IS NULL OR integrity_broken_seq > $2)`, id, int64(v.Seq))
	return err
}

// clearResolved lifts the mark of the tenants whose quarantined message a
// resolution in batch resolves.
func clearResolved(ctx context.Context, tx pgx.Tx, table string, batch []Event) error {
	for _, e := range batch {
		res, ok := e.Payload.(*events.QuarantineResolved)
		if !ok {
			continue
		}
		id, ok := tenantOf(res.Subject)
		if !ok {
			continue
		}
		if _, err := tx.Exec(ctx, "UPDATE "+Ident(table)+" SET integrity_broken_seq = NULL WHERE id = $1::uuid AND integrity_broken_seq = $2",
			id, int64(res.Seq)); err != nil {
			return err
		}
	}
	return nil
}

// tenantOf returns the tenant id of a tenant aggregate's subject.
func tenantOf(subject string) (string, bool) {
	tenant, kind, id, err := events.ParseSubject(subject)
	if err != nil || kind != events.AggregateTenant || tenant != id {
		return "", false
	}
	return id, true
}
