package integrity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/metrics"
	"github.com/tenancyhq/tenancy/internal/natsconn"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// Bucket keeps the quarantined messages: each violation the readers found,
// once, for operators to inspect and resolve.
const Bucket = "TENANCY_QUARANTINE"

// Record is one quarantined message.
type Record struct {
	Seq     uint64 `json:"seq"`
	Subject string `json:"subject"`
	// Violation is the short reason code (bad-signature, version-gap, ...).
	Violation string `json:"violation"`
	// Detail says what exactly failed.
	Detail string `json:"detail"`
	// DetectedBy is the reader that found it first (projection tenants,
	// provisioner, webhook <id>, command).
	DetectedBy string    `json:"detected_by"`
	DetectedAt time.Time `json:"detected_at"`
	// Resolved is set once an operator resolved it (a resolution in the
	// log); readers pass over it from then on.
	Resolved   bool      `json:"resolved"`
	Resolution string    `json:"resolution,omitempty"`
	ResolvedBy string    `json:"resolved_by,omitempty"`
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
}

// Quarantine records violations and lists them.
type Quarantine struct {
	kv  jetstream.KeyValue
	log *slog.Logger
	now func() time.Time
}

// OpenQuarantine opens (creating if needed) the quarantine bucket.
func OpenQuarantine(ctx context.Context, js jetstream.JetStream, replicas int, log *slog.Logger, now func() time.Time) (*Quarantine, error) {
	kv, err := natsconn.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket: Bucket, Description: "Tenancy: messages on the log that failed its integrity checks",
		History: 1, Replicas: max(replicas, 1), Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", Bucket, err)
	}
	if now == nil {
		now = time.Now
	}
	return &Quarantine{kv: kv, log: log, now: now}, nil
}

func key(seq uint64) string { return fmt.Sprintf("%020d", seq) }

// Record quarantines the message v names, found by reader: it is counted
// and logged at ERROR every time a reader meets it, and recorded once.
func (q *Quarantine) Record(ctx context.Context, v *Violation, reader string) error {
	metrics.IntegrityViolations.WithLabelValues(v.Reason).Inc()
	q.log.ErrorContext(ctx, "integrity violation: message quarantined and passed over; resolve it with POST /v1/admin/quarantine/{seq}/resolve",
		"seq", v.Seq, "subject", v.Subject, "violation", v.Reason, "error", v.Err, "reader", reader)
	rec := Record{Seq: v.Seq, Subject: v.Subject, Violation: v.Reason, Detail: v.Err.Error(), DetectedBy: reader, DetectedAt: q.now().UTC()}
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := q.kv.Create(ctx, key(v.Seq), data); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("quarantine seq %d: %w", v.Seq, err)
	}
	return nil
}

// Get returns the record of the message at seq.
func (q *Quarantine) Get(ctx context.Context, seq uint64) (Record, error) {
	e, err := q.kv.Get(ctx, key(seq))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Record{}, fmt.Errorf("no quarantined message at seq %d: %w", seq, domain.ErrNotFound)
	}
	if err != nil {
		return Record{}, err
	}
	var r Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return Record{}, fmt.Errorf("quarantine record %d: %w", seq, err)
	}
	return r, nil
}

// List returns every record, oldest sequence first.
func (q *Quarantine) List(ctx context.Context) ([]Record, error) {
	lister, err := q.kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]Record, 0, len(keys))
	for _, k := range keys {
		seq, err := strconv.ParseUint(k, 10, 64)
		if err != nil {
			continue
		}
		r, err := q.Get(ctx, seq)
		if errors.Is(err, domain.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// MarkResolved notes on the record that it was resolved (the resolution
// itself is the event in the log).
func (q *Quarantine) MarkResolved(ctx context.Context, seq uint64, reason, actor string, at time.Time) error {
	r, err := q.Get(ctx, seq)
	if err != nil {
		return err
	}
	r.Resolved, r.Resolution, r.ResolvedBy, r.ResolvedAt = true, reason, actor, at.UTC()
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = q.kv.Put(ctx, key(seq), data)
	return err
}
