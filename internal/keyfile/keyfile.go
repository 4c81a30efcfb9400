// Package keyfile reads the key material Tenancy is configured with (the
// event signing key, the master key, the dev issuer's key) from one text
// form: base64 in any alphabet, padded or not, given inline or as
// "file:<path>" to a file holding that text. For development data
// directories it also creates a random key on first use.
package keyfile

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// MasterKeySize is the master key's length: an AES-256 key.
const MasterKeySize = 32

// Parse decodes spec into raw bytes of one of sizes; what names the key in
// errors ("signing key").
func Parse(what, spec string, sizes ...int) ([]byte, error) {
	if path, ok := strings.CutPrefix(spec, "file:"); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		spec = string(b)
	}
	spec = strings.TrimSpace(spec)
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.StdEncoding} {
		raw, err := enc.DecodeString(spec)
		if err != nil {
			continue
		}
		if !slices.Contains(sizes, len(raw)) {
			return nil, fmt.Errorf("%s: want %s bytes, got %d", what, sizesText(sizes), len(raw))
		}
		return raw, nil
	}
	return nil, fmt.Errorf("%s: not base64", what)
}

func sizesText(sizes []int) string {
	parts := make([]string, len(sizes))
	for i, n := range sizes {
		parts[i] = fmt.Sprint(n)
	}
	return strings.Join(parts, " or ")
}

// LoadOrCreate reads the key in path, creating a random key of size bytes
// there (mode 0600, in a 0700 directory) when the file does not exist.
func LoadOrCreate(what, path string, size int) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return Parse(what, string(b), size)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	key := make([]byte, size)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte(base64.RawURLEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return key, nil
}

// SigningKey reads an Ed25519 private key: its 32-byte seed or the 64-byte
// private key.
func SigningKey(spec string) (ed25519.PrivateKey, error) {
	raw, err := Parse("signing key", spec, ed25519.SeedSize, ed25519.PrivateKeySize)
	if err != nil {
		return nil, err
	}
	return signingKey(raw), nil
}

// LoadOrCreateSigningKey reads the Ed25519 key in path, creating one there
// when missing.
func LoadOrCreateSigningKey(path string) (ed25519.PrivateKey, error) {
	if _, err := os.Stat(path); err == nil {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		return SigningKey(string(b))
	}
	seed, err := LoadOrCreate("signing key", path, ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

func signingKey(raw []byte) ed25519.PrivateKey {
	if len(raw) == ed25519.SeedSize {
		return ed25519.NewKeyFromSeed(raw)
	}
	return ed25519.PrivateKey(raw)
}

// MasterKey reads the master key (32 bytes).
func MasterKey(spec string) ([]byte, error) { return Parse("master key", spec, MasterKeySize) }

// LoadOrCreateMasterKey reads the master key in path, creating one there
// when missing.
func LoadOrCreateMasterKey(path string) ([]byte, error) {
	return LoadOrCreate("master key", path, MasterKeySize)
}
