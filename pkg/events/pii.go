package events

import (
	"encoding/json"
	"errors"
	"fmt"
)

// PIICipher encrypts and decrypts a tenant's personal data under that
// tenant's own data key. Destroying the key erases the data from every event
// that carries it (crypto-shredding) without touching the append-only log.
type PIICipher interface {
	// Seal encrypts plaintext for tenantID and returns an opaque string.
	Seal(tenantID string, plaintext []byte) (string, error)
	// Open decrypts what Seal returned. It returns an error wrapping
	// ErrErased when the tenant's key has been destroyed.
	Open(tenantID string, sealed string) ([]byte, error)
}

// ErrErased reports personal data whose key has been destroyed.
var ErrErased = errors.New("personal data erased")

// PIIHolder is a payload that carries personal data. The plaintext fields are
// never serialized; only their sealed form (the "pii" member) is.
type PIIHolder interface {
	Payload
	// SealPII encrypts the plaintext personal data into the sealed member.
	SealPII(tenantID string, c PIICipher) error
	// OpenPII decrypts the sealed member into the plaintext fields. When the
	// key is gone it marks the payload erased and returns nil.
	OpenPII(tenantID string, c PIICipher) error
	// HasPlainPII reports whether plaintext personal data is present.
	HasPlainPII() bool
}

// OwnScoped is a payload whose personal data is sealed under a key of its
// own (a user's) rather than its aggregate's: readers of many such events
// load their keys in one go.
type OwnScoped interface {
	// OwnScope is the key scope of the sealed data ("" when it has none).
	OwnScope() string
}

// SealPII seals p's personal data if it carries any.
func SealPII(p Payload, tenantID string, c PIICipher) error {
	if h, ok := p.(PIIHolder); ok && h.HasPlainPII() {
		if c == nil {
			return fmt.Errorf("%s carries personal data but no cipher is configured", p.EventType())
		}
		return h.SealPII(tenantID, c)
	}
	return nil
}

// OpenPII opens p's personal data if it carries any.
func OpenPII(p Payload, tenantID string, c PIICipher) error {
	if h, ok := p.(PIIHolder); ok && c != nil {
		return h.OpenPII(tenantID, c)
	}
	return nil
}

func sealJSON(tenantID string, c PIICipher, v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode personal data: %w", err)
	}
	s, err := c.Seal(tenantID, plain)
	if err != nil {
		return "", fmt.Errorf("seal personal data: %w", err)
	}
	return s, nil
}

// openJSON decrypts sealed into v. It reports erased=true when the key is
// gone, leaving v untouched.
func openJSON(tenantID, sealed string, c PIICipher, v any) (erased bool, err error) {
	if sealed == "" {
		return false, nil
	}
	plain, err := c.Open(tenantID, sealed)
	if errors.Is(err, ErrErased) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("open personal data: %w", err)
	}
	if err := json.Unmarshal(plain, v); err != nil {
		return false, fmt.Errorf("%w: personal data: %v", ErrBadPayload, err)
	}
	return false, nil
}

// sealInto seals v (a payload's personal data) into *sealed.
func sealInto(tenantID string, c PIICipher, v any, sealed *string) error {
	s, err := sealJSON(tenantID, c, v)
	*sealed = s
	return err
}

// openInto opens sealed and hands the personal data to set, or marks the
// payload erased when its key is gone.
func openInto[T any](tenantID, sealed string, c PIICipher, erased *bool, set func(T)) error {
	var v T
	gone, err := openJSON(tenantID, sealed, c, &v)
	*erased = gone
	if err == nil && !gone && sealed != "" {
		set(v)
	}
	return err
}
