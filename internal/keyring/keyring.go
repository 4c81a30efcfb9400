// Package keyring keeps one data key per tenant, wrapped under a master key,
// in a JetStream stream of its own, and seals tenants' personal data with it.
// Destroying a tenant's key makes every copy of its personal data in the
// append-only log unreadable (crypto-shredding).
package keyring

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/natsconn"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Stream is the stream holding wrapped tenant keys, one subject per tenant.
// Unlike the event log it permits deletes: that is how keys are destroyed.
const Stream = "TENANCY_TENANT_KEYS"

const subjectPrefix = "tenancy.tenantkey."

// tombstone marks a destroyed key. Its presence makes recreating the key
// impossible: creation expects the subject to be empty.
var tombstone = []byte(`{"destroyed":true}`)

const sealedPrefix = "v1."

// Keyring seals and opens tenants' personal data. It implements
// events.PIICipher.
type Keyring struct {
	stream jetstream.Stream
	reader *eventstore.Store
	js     jetstream.JetStream
	master cipher.AEAD
	cache  *lru.Cache[string, cipher.AEAD]
	// destroyed holds the scopes this instance destroyed: a read that
	// fetched such a key just before its tombstone must not put it back
	// in the cache, where it would open erased data for good.
	destroyed *lru.Cache[string, struct{}]
	// index keys the blind indexes: derived from the master key, so that
	// an index value means nothing without it, and never the same as it.
	index []byte
}

// MasterKeySize is the size of the master key in bytes (AES-256).
const MasterKeySize = 32

// Open returns a keyring on the bucket, creating the bucket if needed.
func Open(ctx context.Context, js jetstream.JetStream, masterKey []byte, replicas int) (*Keyring, error) {
	if len(masterKey) != MasterKeySize {
		return nil, fmt.Errorf("keyring: master key must be %d bytes, got %d", MasterKeySize, len(masterKey))
	}
	if replicas < 1 {
		replicas = 1
	}
	master, err := newAEAD(masterKey)
	if err != nil {
		return nil, err
	}
	st, err := natsconn.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:              Stream,
		Description:       "Tenancy per-tenant data keys, wrapped under the master key",
		Subjects:          []string{subjectPrefix + "*"},
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		MaxMsgsPerSubject: 1,
		AllowDirect:       true,
		DenyPurge:         true,
	})
	if err != nil {
		return nil, fmt.Errorf("keyring: stream %s: %w", Stream, err)
	}
	cache, _ := lru.New[string, cipher.AEAD](50000)
	index, err := hkdf.Key(sha256.New, masterKey, nil, "tenancy blind index v1", 32)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	destroyed, _ := lru.New[string, struct{}](10000)
	return &Keyring{stream: st, reader: eventstore.New(js, Stream), js: js, master: master, cache: cache, destroyed: destroyed, index: index}, nil
}

// BlindIndex returns the keyed HMAC of a normalised value of the named
// kind (a PAN, a username): equal values give equal indexes, so lookups
// and uniqueness work, and the value itself is never stored. The kind is
// mixed in so that equal strings of different kinds do not match.
func (k *Keyring) BlindIndex(kind, value string) string {
	m := hmac.New(sha256.New, k.index)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return cipher.NewGCM(block)
}

func seal(a cipher.AEAD, plain, aad []byte) ([]byte, error) {
	nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(plain)+a.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return a.Seal(nonce, nonce, plain, aad), nil
}

func open(a cipher.AEAD, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < a.NonceSize() {
		return nil, errors.New("sealed data too short")
	}
	return a.Open(nil, sealed[:a.NonceSize()], sealed[a.NonceSize():], aad)
}

// Seal implements events.PIICipher: it encrypts plaintext under the tenant's
// data key, creating the key on first use.
func (k *Keyring) Seal(tenantID string, plaintext []byte) (string, error) {
	a, err := k.key(context.Background(), tenantID, true)
	if err != nil {
		return "", err
	}
	ct, err := seal(a, plaintext, []byte(tenantID))
	if err != nil {
		return "", err
	}
	return sealedPrefix + base64.RawURLEncoding.EncodeToString(ct), nil
}

// Open implements events.PIICipher.
func (k *Keyring) Open(tenantID string, sealed string) ([]byte, error) {
	return k.open(tenantID, sealed, false)
}

// OpenCurrent opens like Open, but checks the store for the tenant's key
// rather than trusting this instance's cache: a key destroyed through
// another instance is reported erased. One read more; for rare reads of
// data that must not outlive the tenant (idempotent replays).
func (k *Keyring) OpenCurrent(tenantID string, sealed string) ([]byte, error) {
	return k.open(tenantID, sealed, true)
}

func (k *Keyring) open(tenantID, sealed string, current bool) ([]byte, error) {
	rest, ok := strings.CutPrefix(sealed, sealedPrefix)
	if !ok {
		return nil, fmt.Errorf("keyring: unknown sealed format")
	}
	ct, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("keyring: sealed data is not base64url: %w", err)
	}
	if current {
		k.cache.Remove(tenantID)
	}
	a, err := k.key(context.Background(), tenantID, false)
	if err != nil {
		return nil, err
	}
	plain, err := open(a, ct, []byte(tenantID))
	if err != nil {
		return nil, fmt.Errorf("keyring: cannot decrypt personal data of tenant %s: %w", tenantID, err)
	}
	return plain, nil
}

func (k *Keyring) key(ctx context.Context, tenantID string, create bool) (cipher.AEAD, error) {
	if a, ok := k.cache.Get(tenantID); ok {
		return a, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	subject := subjectPrefix + tenantID
	msg, err := k.stream.GetLastMsgForSubject(ctx, subject)
	switch {
	case err == nil && string(msg.Data) == string(tombstone):
		return nil, fmt.Errorf("tenant %s: %w", tenantID, events.ErrErased)
	case err == nil:
		return k.unwrap(tenantID, msg.Data)
	case errors.Is(err, jetstream.ErrMsgNotFound) && !create:
		return nil, fmt.Errorf("tenant %s: %w", tenantID, events.ErrErased)
	case errors.Is(err, jetstream.ErrMsgNotFound):
	default:
		// Unavailable, not erased: the key store could not answer (a
		// failover); whoever reads it retries rather than judging the data.
		return nil, fmt.Errorf("%w: keyring: read key of %s: %v", domain.ErrUnavailable, tenantID, err)
	}
	dk := make([]byte, 32)
	if _, err := rand.Read(dk); err != nil {
		return nil, err
	}
	wrapped, err := seal(k.master, dk, []byte(tenantID))
	if err != nil {
		return nil, err
	}
	if _, err := k.js.Publish(ctx, subject, wrapped, jetstream.WithExpectLastSequencePerSubject(0)); err != nil {
		if natsconn.HasCode(err, natsconn.CodeWrongLastSequence, natsconn.CodeWrongLastSequenceConstant) {
			// Somebody created it first (or destroyed it): read what is there.
			return k.key(ctx, tenantID, false)
		}
		return nil, fmt.Errorf("%w: keyring: store key of %s: %v", domain.ErrUnavailable, tenantID, err)
	}
	return k.cached(tenantID, dk)
}

func (k *Keyring) unwrap(tenantID string, wrapped []byte) (cipher.AEAD, error) {
	dk, err := open(k.master, wrapped, []byte(tenantID))
	if err != nil {
		return nil, fmt.Errorf("keyring: key of tenant %s does not unwrap with this master key: %w", tenantID, err)
	}
	return k.cached(tenantID, dk)
}

// cached makes the AEAD of a tenant's data key and keeps it for the next
// use.
func (k *Keyring) cached(tenantID string, dk []byte) (cipher.AEAD, error) {
	a, err := newAEAD(dk)
	if err != nil {
		return nil, err
	}
	if !k.destroyed.Contains(tenantID) {
		k.cache.Add(tenantID, a)
		// Destroy may have run between the check and the add: look again.
		if k.destroyed.Contains(tenantID) {
			k.cache.Remove(tenantID)
		}
	}
	return a, nil
}

// Destroy erases a tenant's data key: its stored message is securely
// deleted (overwritten on disk) and a tombstone left in its place, which
// makes recreating the key impossible. It is idempotent.
func (k *Keyring) Destroy(ctx context.Context, tenantID string) error {
	k.destroyed.Add(tenantID, struct{}{})
	k.cache.Remove(tenantID)
	// A read racing this one may have cached the key after the removal
	// above; it is removed again once the tombstone is written.
	defer k.cache.Remove(tenantID)
	subject := subjectPrefix + tenantID
	msg, err := k.stream.GetLastMsgForSubject(ctx, subject)
	switch {
	case err == nil && string(msg.Data) == string(tombstone):
		return nil
	case err == nil:
		if derr := k.stream.SecureDeleteMsg(ctx, msg.Sequence); derr != nil && !errors.Is(derr, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("keyring: erase key of tenant %s: %w", tenantID, derr)
		}
	case !errors.Is(err, jetstream.ErrMsgNotFound):
		return fmt.Errorf("keyring: read key of tenant %s: %w", tenantID, err)
	}
	if _, err := k.js.Publish(ctx, subject, tombstone, jetstream.WithExpectLastSequencePerSubject(0)); err != nil {
		if natsconn.HasCode(err, natsconn.CodeWrongLastSequence, natsconn.CodeWrongLastSequenceConstant) {
			// Recreated or tombstoned concurrently: destroy what is there.
			return k.Destroy(ctx, tenantID)
		}
		return fmt.Errorf("keyring: tombstone key of tenant %s: %w", tenantID, err)
	}
	return nil
}

// Prefetch loads the keys of many tenants in batched reads, so that a
// projection replaying thousands of tenants' events does not read their keys
// one by one. Tenants without a key (never created, or destroyed) are
// skipped: opening their data reports them erased.
func (k *Keyring) Prefetch(ctx context.Context, tenantIDs []string) error {
	var subjects []string
	seen := map[string]bool{}
	for _, id := range tenantIDs {
		if seen[id] || k.cache.Contains(id) {
			continue
		}
		seen[id] = true
		subjects = append(subjects, subjectPrefix+id)
	}
	for len(subjects) > 0 {
		n := min(len(subjects), 1000)
		msgs, err := k.reader.LastFor(ctx, subjects[:n])
		if err != nil {
			return fmt.Errorf("keyring: prefetch: %w", err)
		}
		for subj, m := range msgs {
			if string(m.Data) == string(tombstone) {
				continue
			}
			if _, err := k.unwrap(strings.TrimPrefix(subj, subjectPrefix), m.Data); err != nil {
				return err
			}
		}
		subjects = subjects[n:]
	}
	return nil
}

// Prepare creates the data keys of new scopes (a batch of new users)
// with pipelined publishes, so that sealing them afterwards finds each key
// cached instead of making it one round trip at a time. A scope that
// already has a key (or a tombstone) is left as it is; sealing reads it.
// A failure is the key store being unavailable: nothing was sealed yet,
// and the caller may retry.
func (k *Keyring) Prepare(ctx context.Context, scopes []string) error {
	var todo []string
	for _, scope := range scopes {
		if !k.cache.Contains(scope) {
			todo = append(todo, scope)
		}
	}
	// A window bounds the publishes in flight, so that many batches at once
	// stay below the connection's limit of outstanding async publishes.
	const window = 256
	for len(todo) > 0 {
		n := min(len(todo), window)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := k.prepareWindow(wctx, todo[:n])
		cancel()
		if err != nil {
			return fmt.Errorf("%w: keyring: creating personal data keys: %v", domain.ErrUnavailable, err)
		}
		todo = todo[n:]
	}
	return nil
}

func (k *Keyring) prepareWindow(ctx context.Context, scopes []string) error {
	type pending struct {
		scope string
		dk    []byte
		ack   jetstream.PubAckFuture
	}
	sent := make([]pending, 0, len(scopes))
	for _, scope := range scopes {
		dk := make([]byte, 32)
		if _, err := rand.Read(dk); err != nil {
			return err
		}
		wrapped, err := seal(k.master, dk, []byte(scope))
		if err != nil {
			return err
		}
		f, err := k.publishAsync(ctx, subjectPrefix+scope, wrapped)
		if err != nil {
			return err
		}
		sent = append(sent, pending{scope: scope, dk: dk, ack: f})
	}
	for _, p := range sent {
		select {
		case <-p.ack.Ok():
			if _, err := k.cached(p.scope, p.dk); err != nil {
				return err
			}
		case err := <-p.ack.Err():
			if !natsconn.HasCode(err, natsconn.CodeWrongLastSequence, natsconn.CodeWrongLastSequenceConstant) {
				return err
			}
			// Somebody made it first: sealing reads theirs.
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// publishAsync publishes a new key asynchronously, waiting while the
// connection has too many publishes outstanding (other batches' keys).
func (k *Keyring) publishAsync(ctx context.Context, subject string, data []byte) (jetstream.PubAckFuture, error) {
	for {
		f, err := k.js.PublishAsync(subject, data, jetstream.WithExpectLastSequencePerSubject(0))
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			return f, err
		}
		select {
		case <-k.js.PublishAsyncComplete():
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// secretAAD binds a wrapped secret to its name and keeps it apart from
// wrapped tenant keys, which use the bare tenant id.
func secretAAD(name string) []byte { return []byte("secret:" + name) }

// WrapSecret encrypts a platform secret (a webhook signing secret) under the
// master key, bound to name: the ciphertext does not open under another name.
func (k *Keyring) WrapSecret(name string, plaintext []byte) ([]byte, error) {
	return seal(k.master, plaintext, secretAAD(name))
}

// UnwrapSecret decrypts what WrapSecret sealed under the same name.
func (k *Keyring) UnwrapSecret(name string, sealed []byte) ([]byte, error) {
	plain, err := open(k.master, sealed, secretAAD(name))
	if err != nil {
		return nil, fmt.Errorf("keyring: cannot decrypt secret %s (wrong master key?): %w", name, err)
	}
	return plain, nil
}
