package keyring_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/keyring"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/pkg/events"
)

func master(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, keyring.MasterKeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// openRing opens a keyring on a fresh JetStream with a new master key and
// returns what a test needs to open more rings on the same store.
func openRing(t *testing.T) (ring *keyring.Keyring, n *testenv.NATS, ctx context.Context, m []byte) {
	t.Helper()
	n = testenv.StartNATS(t)
	ctx = testenv.Context(t, time.Minute)
	m = master(t)
	ring, err := keyring.Open(ctx, n.JS, m, 1)
	if err != nil {
		t.Fatal(err)
	}
	return ring, n, ctx, m
}

func TestSealOpenDestroy(t *testing.T) {
	ring, n, ctx, m := openRing(t)
	sealed, err := ring.Seal("t1", []byte("alice@acme.test"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "alice") {
		t.Fatal("sealed text contains the plaintext")
	}
	// Another instance with the same master key reads it; one with another
	// master key cannot.
	other, _ := keyring.Open(ctx, n.JS, m, 1)
	if plain, err := other.Open("t1", sealed); err != nil || string(plain) != "alice@acme.test" {
		t.Fatalf("open: %q %v", plain, err)
	}
	wrong, _ := keyring.Open(ctx, n.JS, master(t), 1)
	if _, err := wrong.Open("t1", sealed); err == nil || errors.Is(err, events.ErrErased) {
		t.Fatalf("a wrong master key must fail loudly, not look erased: %v", err)
	}
	// Data sealed for one tenant does not open as another's.
	if _, err := ring.Seal("t2", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := ring.Open("t2", sealed); err == nil {
		t.Fatal("tenant t2's key opened tenant t1's data")
	}
	if err := ring.Destroy(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if err := other.Destroy(ctx, "t1"); err != nil {
		t.Fatalf("destroy must be idempotent: %v", err)
	}
	fresh, _ := keyring.Open(ctx, n.JS, m, 1)
	if _, err := fresh.Open("t1", sealed); !errors.Is(err, events.ErrErased) {
		t.Fatalf("after destroy: %v", err)
	}
	// The key is never recreated: new data for the tenant cannot be sealed.
	if _, err := fresh.Seal("t1", []byte("again")); !errors.Is(err, events.ErrErased) {
		t.Fatalf("seal after destroy: %v", err)
	}
}

func TestWrapSecret(t *testing.T) {
	ring, n, ctx, _ := openRing(t)
	sealed, err := ring.WrapSecret("w1.v1", []byte("whsec_abc"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), "whsec_abc") {
		t.Fatal("wrapped secret contains the plaintext")
	}
	got, err := ring.UnwrapSecret("w1.v1", sealed)
	if err != nil || string(got) != "whsec_abc" {
		t.Fatalf("UnwrapSecret = %q, %v", got, err)
	}
	if _, err := ring.UnwrapSecret("w2.v1", sealed); err == nil {
		t.Fatal("a secret opened under another name")
	}
	wrong, _ := keyring.Open(ctx, n.JS, master(t), 1)
	if _, err := wrong.UnwrapSecret("w1.v1", sealed); err == nil {
		t.Fatal("a secret opened under another master key")
	}
}

// TestPrepareMakesKeysInOneGo: Prepare creates the keys of new scopes so
// that another instance opens what this one sealed; it leaves existing keys
// and destroyed ones as they are.
func TestPrepareMakesKeysInOneGo(t *testing.T) {
	ring, n, ctx, m := openRing(t)
	before, err := ring.Seal("user-old", []byte("kept"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ring.Destroy(ctx, "user-gone"); err != nil {
		t.Fatal(err)
	}
	scopes := []string{"user-old", "user-gone"}
	for i := range 600 {
		scopes = append(scopes, "user-new-"+strings.Repeat("x", i%3)+string(rune('a'+i%26))+time.Duration(i).String())
	}
	other, _ := keyring.Open(ctx, n.JS, m, 1)
	if err := other.Prepare(ctx, scopes); err != nil {
		t.Fatal(err)
	}
	if plain, err := ring.Open("user-old", before); err != nil || string(plain) != "kept" {
		t.Fatalf("an existing key was replaced: %q %v", plain, err)
	}
	if _, err := other.Seal("user-gone", []byte("x")); !errors.Is(err, events.ErrErased) {
		t.Fatalf("sealing for a destroyed key: %v, want erased", err)
	}
	for _, scope := range scopes[2:] {
		sealed, err := other.Seal(scope, []byte("new"))
		if err != nil {
			t.Fatal(err)
		}
		if plain, err := ring.Open(scope, sealed); err != nil || string(plain) != "new" {
			t.Fatalf("%s: %q %v", scope, plain, err)
		}
	}
}
