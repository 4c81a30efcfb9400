// Package webhooks delivers the event log to subscribers: subscriptions and
// their signing secrets, Standard Webhooks signatures, per-endpoint ordered
// delivery with retries on a schedule, the dead-letter stream, operator
// requeue and replay, and the record of every attempt.
package webhooks

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// SecretsBucket holds webhook signing secrets, encrypted under the master
// key, one key per subscription and secret version.
const SecretsBucket = "TENANCY_WEBHOOK_SECRETS"

// SecretPrefix starts every secret, as the Standard Webhooks libraries
// expect.
const SecretPrefix = "whsec_"

// Wrapper encrypts secrets at rest (the keyring, with the master key).
type Wrapper interface {
	WrapSecret(name string, plaintext []byte) ([]byte, error)
	UnwrapSecret(name string, sealed []byte) ([]byte, error)
}

// Secrets stores signing secrets. Plaintext exists only in the create and
// rotate responses and in memory while signing.
type Secrets struct {
	kv   jetstream.KeyValue
	wrap Wrapper
	mu   sync.Mutex
	keys map[string][]byte
}

// OpenSecrets opens (creating if needed) the secrets bucket.
func OpenSecrets(ctx context.Context, js jetstream.JetStream, wrap Wrapper, replicas int) (*Secrets, error) {
	if replicas < 1 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: SecretsBucket, Description: "webhook signing secrets, encrypted under the master key",
		History: 1, Replicas: replicas, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", SecretsBucket, err)
	}
	return &Secrets{kv: kv, wrap: wrap, keys: map[string][]byte{}}, nil
}

// NewSecret returns a fresh secret: whsec_ and base64 of 32 random bytes.
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b), nil
}

// DecodeSecret returns the HMAC key of a secret.
func DecodeSecret(secret string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil || len(k) < 16 {
		return nil, errors.New("webhook secret is not whsec_ followed by base64 of at least 16 bytes")
	}
	return k, nil
}

func secretKey(webhookID string, version int) string {
	return webhookID + ".v" + strconv.Itoa(version)
}

// Put stores a secret version encrypted.
func (s *Secrets) Put(ctx context.Context, webhookID string, version int, secret string) error {
	name := secretKey(webhookID, version)
	sealed, err := s.wrap.WrapSecret(name, []byte(secret))
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, name, sealed); err != nil {
		return fmt.Errorf("store webhook secret: %w", err)
	}
	return nil
}

// Key returns the HMAC key of a secret version.
func (s *Secrets) Key(ctx context.Context, webhookID string, version int) ([]byte, error) {
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
	k, err = DecodeSecret(string(plain))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.keys[name] = k
	s.mu.Unlock()
	return k, nil
}

// Delete erases every secret version of a subscription.
func (s *Secrets) Delete(ctx context.Context, webhookID string) error {
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

// Sign returns the webhook-signature header value: one "v1,<base64>" per
// key, space-separated, each an HMAC-SHA256 of "id.timestamp.body".
func Sign(keys [][]byte, msgID string, ts time.Time, body []byte) string {
	var b strings.Builder
	unix := strconv.FormatInt(ts.Unix(), 10)
	for i, k := range keys {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(msgID))
		m.Write([]byte{'.'})
		m.Write([]byte(unix))
		m.Write([]byte{'.'})
		m.Write(body)
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(m.Sum(nil)))
	}
	return b.String()
}
