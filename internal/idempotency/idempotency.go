// Package idempotency remembers the responses to POST requests sent with an
// Idempotency-Key, in a JetStream key-value bucket shared by every API
// instance, so that a retried request gets the first response instead of
// acting twice.
package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/pkg/domain"
)

// Bucket is the key-value bucket holding idempotency records.
const Bucket = "TENANCY_IDEMPOTENCY"

// DefaultTTL is how long a key is remembered. Keys are promised for at
// least 24 hours; the bucket keeps them an hour longer.
const DefaultTTL = 25 * time.Hour

// PendingTimeout is how long a request holding a key may run before another
// request with the key may take it over (the first one crashed).
const PendingTimeout = time.Minute

// Record is one remembered request and, once it finished, its response.
type Record struct {
	Fingerprint string            `json:"fingerprint"`
	Done        bool              `json:"done"`
	StartedAt   time.Time         `json:"started_at"`
	Status      int               `json:"status,omitempty"`
	Header      map[string]string `json:"header,omitempty"`
	Body        []byte            `json:"body,omitempty"`
}

// Store keeps records.
type Store struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

// Open returns a store, creating its bucket if needed.
func Open(ctx context.Context, js jetstream.JetStream, replicas int, now func() time.Time) (*Store, error) {
	if replicas < 1 {
		replicas = 1
	}
	if now == nil {
		now = time.Now
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "Tenancy Idempotency-Key records",
		History:     1,
		TTL:         DefaultTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("idempotency: bucket %s: %w", Bucket, err)
	}
	return &Store{kv: kv, now: now}, nil
}

// Key derives the bucket key of a caller's Idempotency-Key: keys are scoped
// to the caller, so two callers can never see each other's responses.
func Key(principal, idempotencyKey string) string {
	sum := sha256.Sum256([]byte(principal + "\x00" + idempotencyKey))
	return hex.EncodeToString(sum[:])
}

// Fingerprint identifies a request's method, path and body.
func Fingerprint(method, path string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(method + " " + path + "\x00"))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// Errors Begin returns.
var (
	// ErrReused: the key was used for another request.
	ErrReused = errors.New("idempotency key reused")
	// ErrInProgress: a request with the key is still running.
	ErrInProgress = errors.New("idempotency key in use")
)

// Begin claims key for a request with fingerprint. It returns a finished
// record to replay, or nil when the caller should run the request and then
// call Complete (or Abandon).
func (s *Store) Begin(ctx context.Context, key, fingerprint string) (*Record, error) {
	pending, err := json.Marshal(Record{Fingerprint: fingerprint, StartedAt: s.now().UTC()})
	if err != nil {
		return nil, err
	}
	for range 3 {
		if _, err := s.kv.Create(ctx, key, pending); err == nil {
			return nil, nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, unavailable(err)
		}
		entry, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired or abandoned in between: try to create again
		}
		if err != nil {
			return nil, unavailable(err)
		}
		var rec Record
		if err := json.Unmarshal(entry.Value(), &rec); err != nil {
			return nil, fmt.Errorf("idempotency: record %s unreadable: %w", key, err)
		}
		if rec.Fingerprint != fingerprint {
			return nil, fmt.Errorf("%w: %w", domain.ErrInvalid, ErrReused)
		}
		if rec.Done {
			return &rec, nil
		}
		if s.now().Sub(rec.StartedAt) < PendingTimeout {
			return nil, fmt.Errorf("%w: %w", domain.ErrConflict, ErrInProgress)
		}
		// The request holding the key never finished: take it over.
		if _, err := s.kv.Update(ctx, key, pending, entry.Revision()); err == nil {
			return nil, nil
		}
	}
	return nil, fmt.Errorf("%w: %w", domain.ErrConflict, ErrInProgress)
}

// Complete stores a finished request's response.
func (s *Store) Complete(ctx context.Context, key string, rec Record) error {
	rec.Done = true
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, key, data); err != nil {
		return unavailable(err)
	}
	return nil
}

// Abandon releases a key whose request failed in a way worth retrying.
func (s *Store) Abandon(ctx context.Context, key string) error {
	if err := s.kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return unavailable(err)
	}
	return nil
}

func unavailable(err error) error {
	return fmt.Errorf("%w: idempotency store: %v", domain.ErrUnavailable, err)
}
