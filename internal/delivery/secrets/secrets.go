// Package secrets keeps webhook signing secrets: generated here, shown to
// the operator once (in the create and rotate answers), stored only
// encrypted under the master key in a JetStream bucket, one key per
// subscription and secret version, and erased with the subscription.
package secrets

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/natsconn"
)

// Bucket holds webhook signing secrets, encrypted under the master
// key, one key per subscription and secret version.
const Bucket = "TENANCY_WEBHOOK_SECRETS"

// Prefix starts every secret, as the Standard Webhooks libraries
// expect.
const Prefix = "whsec_"

// Wrapper encrypts secrets at rest (the keyring, with the master key).
type Wrapper interface {
	WrapSecret(name string, plaintext []byte) ([]byte, error)
	UnwrapSecret(name string, sealed []byte) ([]byte, error)
}

// Store stores signing secrets. Plaintext exists only in the create and
// rotate responses and in memory while signing.
type Store struct {
	kv   jetstream.KeyValue
	wrap Wrapper
	mu   sync.Mutex
	keys map[string][]byte
}

// ClientBucket holds the secrets of tenants' non-browser clients, kept
// the same way: the provisioner hands them to the identity provider.
const ClientBucket = "TENANCY_CLIENT_SECRETS"

// Open opens (creating if needed) the webhook secrets bucket.
func Open(ctx context.Context, js jetstream.JetStream, wrap Wrapper, replicas int) (*Store, error) {
	return OpenBucket(ctx, js, wrap, replicas, Bucket, "webhook signing secrets, encrypted under the master key")
}

// OpenBucket opens (creating if needed) a bucket of secrets encrypted under
// the master key.
func OpenBucket(ctx context.Context, js jetstream.JetStream, wrap Wrapper, replicas int, bucket, description string) (*Store, error) {
	if replicas < 1 {
		replicas = 1
	}
	kv, err := natsconn.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket: bucket, Description: description,
		History: 1, Replicas: replicas, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", bucket, err)
	}
	return &Store{kv: kv, wrap: wrap, keys: map[string][]byte{}}, nil
}

// New returns a fresh secret: whsec_ and base64 of 32 random bytes.
func New() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return Prefix + base64.StdEncoding.EncodeToString(b), nil
}

// Decode returns the HMAC key of a secret.
func Decode(secret string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, Prefix))
	if err != nil || len(k) < 16 {
		return nil, errors.New("webhook secret is not whsec_ followed by base64 of at least 16 bytes")
	}
	return k, nil
}

func secretKey(webhookID string, version int) string {
	return webhookID + ".v" + strconv.Itoa(version)
}

// seal returns a secret version's key and its encrypted value.
func (s *Store) seal(id string, version int, secret string) (string, []byte, error) {
	name := secretKey(id, version)
	sealed, err := s.wrap.WrapSecret(name, []byte(secret))
	return name, sealed, err
}

// Put stores a secret version encrypted.
func (s *Store) Put(ctx context.Context, webhookID string, version int, secret string) error {
	name, sealed, err := s.seal(webhookID, version, secret)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, name, sealed); err != nil {
		return fmt.Errorf("store webhook secret: %w", err)
	}
	return nil
}

// ErrExists reports a secret version that is already stored.
var ErrExists = errors.New("secret version already stored")

// Create stores a secret version encrypted unless that version is already
// stored (ErrExists): two writers racing for one version cannot overwrite
// each other, so the secret a caller was shown is the one kept.
func (s *Store) Create(ctx context.Context, id string, version int, secret string) error {
	name, sealed, err := s.seal(id, version, secret)
	if err != nil {
		return err
	}
	if _, err := s.kv.Create(ctx, name, sealed); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("%s version %d: %w", id, version, ErrExists)
		}
		return fmt.Errorf("store secret: %w", err)
	}
	return nil
}

// Reclaim stores a secret version over one stored at least age ago, and
// answers ErrExists for a younger one (or one changed meanwhile): a
// version stored by a rotation that never recorded it (it crashed, or its
// append failed) is abandoned once old enough, while one a rotation is
// still recording is left alone.
func (s *Store) Reclaim(ctx context.Context, id string, version int, secret string, age time.Duration) error {
	name := secretKey(id, version)
	e, err := s.kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return s.Create(ctx, id, version, secret)
	}
	if err != nil {
		return fmt.Errorf("read secret: %w", err)
	}
	if time.Since(e.Created()) < age {
		return fmt.Errorf("%s version %d: %w", id, version, ErrExists)
	}
	_, sealed, err := s.seal(id, version, secret)
	if err != nil {
		return err
	}
	if _, err := s.kv.Update(ctx, name, sealed, e.Revision()); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("%s version %d: %w", id, version, ErrExists)
		}
		return fmt.Errorf("store secret: %w", err)
	}
	return nil
}

// Secret returns a secret version as shown to its subscriber (whsec_...).
func (s *Store) Secret(ctx context.Context, webhookID string, version int) (string, error) {
	name := secretKey(webhookID, version)
	e, err := s.kv.Get(ctx, name)
	if err != nil {
		return "", fmt.Errorf("webhook %s secret version %d: %w", webhookID, version, err)
	}
	plain, err := s.wrap.UnwrapSecret(name, e.Value())
	if err != nil {
		return "", err
	}
	return string(plain), nil
}

// Key returns the HMAC key of a secret version.
func (s *Store) Key(ctx context.Context, webhookID string, version int) ([]byte, error) {
	name := secretKey(webhookID, version)
	s.mu.Lock()
	k, ok := s.keys[name]
	s.mu.Unlock()
	if ok {
		return k, nil
	}
	e, err := s.kv.Get(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("webhook %s secret version %d: %w", webhookID, version, err)
	}
	plain, err := s.wrap.UnwrapSecret(name, e.Value())
	if err != nil {
		return nil, err
	}
	k, err = Decode(string(plain))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.keys[name] = k
	s.mu.Unlock()
	return k, nil
}

// Delete erases every secret version of a subscription.
func (s *Store) Delete(ctx context.Context, webhookID string) error {
	lister, err := s.kv.ListKeysFiltered(ctx, webhookID+".>")
	if err != nil {
		return err
	}
	var names []string
	for k := range lister.Keys() {
		names = append(names, k)
	}
	for _, k := range names {
		if err := s.kv.Purge(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return err
		}
	}
	s.mu.Lock()
	for _, k := range names {
		delete(s.keys, k)
	}
	s.mu.Unlock()
	return nil
}
