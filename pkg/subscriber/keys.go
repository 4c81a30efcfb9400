package subscriber

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tenancyhq/tenancy/pkg/events"
)

// KeySource supplies the public keys event signatures are checked against.
type KeySource interface {
	// KeySet returns the keys to verify an event signed by kid. A source
	// that can refresh should do so when kid is not among its keys, since
	// that is how a key rotation first shows at a receiver.
	KeySet(ctx context.Context, kid string) (*events.KeySet, error)
}

// StaticKeys returns a source that always answers ks: for receivers that
// verify offline, with the key set shipped in their configuration (parse
// it with events.ParseJWKS).
func StaticKeys(ks *events.KeySet) KeySource { return staticKeys{ks} }

type staticKeys struct{ ks *events.KeySet }

func (s staticKeys) KeySet(context.Context, string) (*events.KeySet, error) { return s.ks, nil }

// DefaultMinRefresh is KeyFetcher's MinInterval unless set.
const DefaultMinRefresh = time.Minute

// maxJWKS bounds the key set read from the network; a real one is a few
// hundred bytes per key.
const maxJWKS = 1 << 20

// KeyFetcher is a KeySource that loads Tenancy's published event keys over
// HTTP (the JSON Web Key Set at /.well-known/tenancy/event-keys.json, which
// needs no token) and fetches them again when an event names a key it does
// not hold. Set URL; the other fields are optional. Its methods are safe
// for concurrent use; set its fields before the first call.
type KeyFetcher struct {
	// URL is the key set's address, e.g.
	// https://tenancy.example.com/.well-known/tenancy/event-keys.json.
	URL string
	// Client makes the requests; nil means one with a 10 s timeout.
	Client *http.Client
	// MinInterval is the least time between two fetches caused by unknown
	// key ids; zero means DefaultMinRefresh. Without it, events naming a
	// bogus key id would make the receiver hammer the key endpoint.
	MinInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	keys atomic.Pointer[events.KeySet]
	// mu serialises fetches, so a burst of deliveries signed by a new key
	// fetches once.
	mu        sync.Mutex
	attempted time.Time
	lastErr   error
}

// Refresh fetches the key set now, whatever MinInterval says: call it at
// start-up to fail fast on a wrong URL.
func (f *KeyFetcher) Refresh(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fetchLocked(ctx)
}

// KeySet implements KeySource.
func (f *KeyFetcher) KeySet(ctx context.Context, kid string) (*events.KeySet, error) {
	if ks := f.keys.Load(); ks != nil && holds(ks, kid) {
		return ks, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// Another delivery may have fetched while this one waited.
	ks := f.keys.Load()
	if ks != nil && holds(ks, kid) {
		return ks, nil
	}
	interval := f.MinInterval
	if interval == 0 {
		interval = DefaultMinRefresh
	}
	if !f.attempted.IsZero() && f.now().Sub(f.attempted) < interval {
		if f.lastErr != nil {
			// Whether kid is published is unknown until a fetch works.
			return nil, f.lastErr
		}
		// Verification will report the key as unknown.
		return ks, nil
	}
	if err := f.fetchLocked(ctx); err != nil {
		return nil, err
	}
	return f.keys.Load(), nil
}

func holds(ks *events.KeySet, kid string) bool {
	_, ok := ks.Get(kid)
	return ok
}

func (f *KeyFetcher) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

// fetchLocked fetches and parses the key set; f.mu must be held.
func (f *KeyFetcher) fetchLocked(ctx context.Context) error {
	f.attempted = f.now()
	ks, err := f.get(ctx)
	f.lastErr = err
	if err != nil {
		return err
	}
	f.keys.Store(ks)
	return nil
}

func (f *KeyFetcher) get(ctx context.Context) (*events.KeySet, error) {
	if f.URL == "" {
		return nil, errors.New("event keys: KeyFetcher.URL is empty")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("event keys: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	client := f.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("event keys: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("event keys: %s answered %d", f.URL, resp.StatusCode)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKS+1))
	if err != nil {
		return nil, fmt.Errorf("event keys: %w", err)
	}
	if len(raw) > maxJWKS {
		return nil, fmt.Errorf("event keys: %s sent more than %d bytes", f.URL, maxJWKS)
	}
	ks, err := events.ParseJWKS(raw)
	if err != nil {
		return nil, fmt.Errorf("event keys: %w", err)
	}
	return ks, nil
}
