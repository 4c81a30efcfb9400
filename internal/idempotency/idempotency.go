// Package idempotency remembers the responses to POST requests sent with an
// Idempotency-Key, in a JetStream key-value bucket shared by every API
// instance, so that a retried request gets the first response instead of
// acting twice.
//
// A stored response is sealed: under its tenant's data key when it is
// about a tenant (so that deleting the tenant, which destroys the key,
// erases its replays too), under the master key otherwise (webhook secrets
// are shown once, and never kept in the clear).
package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/natsconn"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
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
	Fingerprint string    `json:"fingerprint"`
	Done        bool      `json:"done"`
	StartedAt   time.Time `json:"started_at"`
	// ID is the id the request gives what it creates: a retry taking over
	// the key of a request that died between appending and answering gets
	// the same one, and so finds what was created instead of creating it
	// again (or failing on its slug).
	ID     string            `json:"id"`
	Status int               `json:"status,omitempty"`
	Header map[string]string `json:"header,omitempty"`
	// TenantID, when set, names the tenant whose data key seals the body;
	// the master key seals it otherwise.
	TenantID string `json:"tenant_id,omitempty"`
	// Body is the response: in the clear in memory, only ever stored
	// sealed (Sealed).
	Body   []byte `json:"-"`
	Sealed string `json:"sealed,omitempty"`
}

// Sealer encrypts stored responses; keyring.Keyring is one.
type Sealer interface {
	// Seal and OpenCurrent use a tenant's data key; OpenCurrent checks
	// that the key still exists (it may have been destroyed through
	// another instance).
	Seal(tenantID string, plaintext []byte) (string, error)
	OpenCurrent(tenantID string, sealed string) ([]byte, error)
	// WrapSecret and UnwrapSecret use the master key.
	WrapSecret(name string, plaintext []byte) ([]byte, error)
	UnwrapSecret(name string, sealed []byte) ([]byte, error)
}

// ErrErased reports a stored response that was about a tenant since
// deleted: its personal data went with the tenant's key.
var ErrErased = errors.New("the stored response was erased with its tenant's personal data")

// Store keeps records.
type Store struct {
	kv    jetstream.KeyValue
	now   func() time.Time
	seal  Sealer
	newID func() string
}

// Open returns a store, creating its bucket if needed. Responses are sealed
// with seal; newID makes the ids requests give what they create.
func Open(ctx context.Context, js jetstream.JetStream, replicas int, now func() time.Time, seal Sealer, newID func() string) (*Store, error) {
	if replicas < 1 {
		replicas = 1
	}
	if now == nil {
		now = time.Now
	}
	kv, err := natsconn.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
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
	return &Store{kv: kv, now: now, seal: seal, newID: newID}, nil
}

// Key derives the bucket key of a caller's Idempotency-Key: keys are scoped
// to the caller (the token's issuer and subject, and the tenant it acts
// for), so two callers never see each other's responses, even two issuers'
// users of the same name.
func Key(issuer, subject, tenantID, idempotencyKey string) string {
	scope := issuer + "\x00" + subject + "\x00" + idempotencyKey
	if tenantID != "" {
		// One account of the shared realm acts for several tenants, and
		// the same path (/v1/tenants/me/...) means each of them: a key
		// must not replay one tenant's answer to another. A header
		// cannot hold NUL, so this cannot collide with a bare key.
		scope += "\x00tenant\x00" + tenantID
	}
	sum := sha256.Sum256([]byte(scope))
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
// record to replay (Done, its Body opened), or the pending record of a
// request the caller should now run (with the ID it is to use) and then
// Complete (or Abandon).
func (s *Store) Begin(ctx context.Context, key, fingerprint string) (Record, error) {
	pending := Record{Fingerprint: fingerprint, StartedAt: s.now().UTC(), ID: s.newID()}
	data, err := json.Marshal(pending)
	if err != nil {
		return Record{}, err
	}
	for range 3 {
		if _, err := s.kv.Create(ctx, key, data); err == nil {
			return pending, nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return Record{}, unavailable(err)
		}
		entry, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired or abandoned in between: try to create again
		}
		if err != nil {
			return Record{}, unavailable(err)
		}
		var rec Record
		if err := json.Unmarshal(entry.Value(), &rec); err != nil {
			return Record{}, fmt.Errorf("idempotency: record %s unreadable: %w", key, err)
		}
		if rec.Fingerprint != fingerprint {
			return Record{}, fmt.Errorf("%w: %w", domain.ErrInvalid, ErrReused)
		}
		if rec.Done {
			return s.open(key, rec)
		}
		if s.now().Sub(rec.StartedAt) < PendingTimeout {
			return Record{}, fmt.Errorf("%w: %w", domain.ErrConflict, ErrInProgress)
		}
		// The request holding the key never finished: take it over, with
		// the id it used.
		taken := pending
		if rec.ID != "" {
			taken.ID = rec.ID
		}
		if data, err = json.Marshal(taken); err != nil {
			return Record{}, err
		}
		if _, err := s.kv.Update(ctx, key, data, entry.Revision()); err == nil {
			return taken, nil
		}
	}
	return Record{}, fmt.Errorf("%w: %w", domain.ErrConflict, ErrInProgress)
}

// secretName binds a master-key-sealed response to its key.
func secretName(key string) string { return "idempotency:" + key }

// open unseals a finished record's body.
func (s *Store) open(key string, rec Record) (Record, error) {
	var err error
	if rec.TenantID != "" {
		rec.Body, err = s.seal.OpenCurrent(rec.TenantID, rec.Sealed)
		if errors.Is(err, events.ErrErased) {
			return Record{}, fmt.Errorf("%w (the personal data of %s was erased)", ErrErased, rec.TenantID)
		}
	} else {
		var raw []byte
		if raw, err = base64.RawURLEncoding.DecodeString(rec.Sealed); err == nil {
			rec.Body, err = s.seal.UnwrapSecret(secretName(key), raw)
		}
	}
	if err != nil {
		return Record{}, fmt.Errorf("idempotency: the stored response does not open: %w", err)
	}
	rec.Sealed = ""
	return rec, nil
}

// Complete stores a finished request's response, sealed.
func (s *Store) Complete(ctx context.Context, key string, rec Record) error {
	rec.Done = true
	var err error
	if rec.TenantID != "" {
		rec.Sealed, err = s.seal.Seal(rec.TenantID, rec.Body)
	} else {
		var raw []byte
		if raw, err = s.seal.WrapSecret(secretName(key), rec.Body); err == nil {
			rec.Sealed = base64.RawURLEncoding.EncodeToString(raw)
		}
	}
	if err != nil {
		return fmt.Errorf("idempotency: sealing the response: %w", err)
	}
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
