package keyfile_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tenancyhq/tenancy/internal/keyfile"
)

func TestMasterKey(t *testing.T) {
	want := bytes.Repeat([]byte{7}, 32)
	dir := t.TempDir()
	file := filepath.Join(dir, "master.key")
	if err := os.WriteFile(file, []byte(base64.StdEncoding.EncodeToString(want)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, spec, wantErr string
	}{
		{"standard alphabet, padded", base64.StdEncoding.EncodeToString(want), ""},
		{"URL alphabet, unpadded", base64.RawURLEncoding.EncodeToString(want), ""},
		{"surrounding white space", "  " + base64.StdEncoding.EncodeToString(want) + "\n", ""},
		{"from a file", "file:" + file, ""},
		{"too short", "c2hvcnQ=", "want 32 bytes, got 5"},
		{"not base64", "not base64!", "not base64"},
		{"missing file", "file:" + filepath.Join(dir, "none"), "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := keyfile.MasterKey(tc.spec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "master key: ") {
					t.Fatalf("MasterKey(%q) = %v; want an error about %q naming the key", tc.spec, err, tc.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("MasterKey(%q) = %x, %v", tc.spec, got, err)
			}
		})
	}
}

func TestMasterKeyBytes(t *testing.T) {
	k, err := keyfile.MasterKey("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	if err != nil || len(k) != 32 || k[0] != 0 || k[31] != 31 {
		t.Fatalf("%v %v", k, err)
	}
}

func TestSigningKeyAcceptsSeedOrPrivateKey(t *testing.T) {
	seed := bytes.Repeat([]byte{3}, ed25519.SeedSize)
	priv := ed25519.NewKeyFromSeed(seed)
	for _, raw := range [][]byte{seed, priv} {
		got, err := keyfile.SigningKey(base64.RawURLEncoding.EncodeToString(raw))
		if err != nil || !got.Equal(priv) {
			t.Fatalf("%d bytes: %v, %v", len(raw), got, err)
		}
	}
	if _, err := keyfile.SigningKey(base64.RawURLEncoding.EncodeToString(seed[:31])); err == nil {
		t.Fatal("a 31-byte key was accepted")
	}
}

func TestLoadOrCreateKeepsTheKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys", "event-signing.key")
	first, err := keyfile.LoadOrCreateSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v, %v; want mode 0600", st, err)
	}
	again, err := keyfile.LoadOrCreateSigningKey(path)
	if err != nil || !again.Equal(first) {
		t.Fatal("a second load made another key")
	}
	m1, err := keyfile.LoadOrCreateMasterKey(filepath.Join(dir, "master.key"))
	if err != nil || len(m1) != keyfile.MasterKeySize {
		t.Fatal(len(m1), err)
	}
	m2, _ := keyfile.LoadOrCreateMasterKey(filepath.Join(dir, "master.key"))
	if !bytes.Equal(m1, m2) {
		t.Fatal("a second load made another master key")
	}
}
