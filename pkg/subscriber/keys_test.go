package subscriber_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/pkg/events"
	"github.com/tenancyhq/tenancy/pkg/subscriber"
)

// keyServer serves a JWKS that the test can change, counting requests.
type keyServer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    *events.KeySet
	status  int
	fetches atomic.Int32
}

func newKeyServer(t *testing.T, keys *events.KeySet) *keyServer {
	ks := &keyServer{keys: keys, status: http.StatusOK}
	ks.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ks.fetches.Add(1)
		ks.mu.Lock()
		defer ks.mu.Unlock()
		if ks.status != http.StatusOK {
			w.WriteHeader(ks.status)
			return
		}
		_ = json.NewEncoder(w).Encode(ks.keys.JWKS())
	}))
	t.Cleanup(ks.Close)
	return ks
}

func (ks *keyServer) set(keys *events.KeySet, status int) {
	ks.mu.Lock()
	ks.keys, ks.status = keys, status
	ks.mu.Unlock()
}

// TestKeyFetcherRotation follows a key rotation at a receiver: a delivery
// signed by a key it has not fetched makes it fetch again, at most once per
// MinInterval, and unknown keys stay refused.
func TestKeyFetcherRotation(t *testing.T) {
	oldSigner, newSigner, stranger := mustSigner(t, 1), mustSigner(t, 2), mustSigner(t, 3)
	srv := newKeyServer(t, keysOf(oldSigner))
	clock := now
	tick := func() { clock = clock.Add(time.Minute) }
	f := &subscriber.KeyFetcher{URL: srv.URL, Client: srv.Client(), MinInterval: time.Minute, Now: func() time.Time { return clock }}
	secret := mustSecret(t)
	v := mustVerifier(t, subscriber.Config{Secrets: []string{secret}, EventKeys: f})
	deliver := func(s *events.Signer) error {
		body := mustEvent(t, s, suspended)
		_, err := v.Verify(context.Background(), headers(t, eventID, now, body, secret), body)
		return err
	}
	steps := []struct {
		name        string
		before      func()
		signer      *events.Signer
		wantErr     error
		wantFetches int32
	}{
		{"first delivery fetches", nil, oldSigner, nil, 1},
		{"known key: no fetch", nil, oldSigner, nil, 1},
		{"unknown key within MinInterval: not fetched", nil, newSigner, events.ErrUnknownKey, 1},
		{"after MinInterval, not published yet: fetched, still unknown", tick, newSigner, events.ErrUnknownKey, 2},
		{"published, but within MinInterval: not fetched", func() { srv.set(keysOf(oldSigner, newSigner), http.StatusOK) }, newSigner, events.ErrUnknownKey, 2},
		{"after MinInterval: fetched, verifies", tick, newSigner, nil, 3},
		{"old key still verifies", nil, oldSigner, nil, 3},
		{"endpoint down, unknown key: unavailable", func() { tick(); srv.set(nil, http.StatusBadGateway) }, stranger, subscriber.ErrKeysUnavailable, 4},
		{"endpoint down, known key: still verifies", nil, newSigner, nil, 4},
		{"unknown key within MinInterval of a failed fetch: still unavailable", func() { srv.set(keysOf(oldSigner, newSigner), http.StatusOK) }, stranger, subscriber.ErrKeysUnavailable, 4},
		{"unknown key after MinInterval: fetched, refused", tick, stranger, events.ErrUnknownKey, 5},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		err := deliver(s.signer)
		switch {
		case s.wantErr == nil && err != nil:
			t.Fatalf("%s: %v", s.name, err)
		case s.wantErr != nil && !errors.Is(err, s.wantErr):
			t.Fatalf("%s: error %v, want %v", s.name, err, s.wantErr)
		}
		if got := srv.fetches.Load(); got != s.wantFetches {
			t.Fatalf("%s: %d fetches, want %d", s.name, got, s.wantFetches)
		}
	}
}

// TestKeyFetcherFetchesOnceForABurst sends concurrent deliveries signed by
// a key the fetcher does not hold yet: one fetch serves them all.
func TestKeyFetcherFetchesOnceForABurst(t *testing.T) {
	s := mustSigner(t, 1)
	srv := newKeyServer(t, keysOf(s))
	f := &subscriber.KeyFetcher{URL: srv.URL, Client: srv.Client()}
	secret := mustSecret(t)
	v := mustVerifier(t, subscriber.Config{Secrets: []string{secret}, EventKeys: f})
	body := mustEvent(t, s, suspended)
	h := headers(t, eventID, now, body, secret)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := v.Verify(context.Background(), h, body)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
}

func TestKeyFetcherRefresh(t *testing.T) {
	s := mustSigner(t, 1)
	srv := newKeyServer(t, keysOf(s))
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"keys":[],"pad":"` + strings.Repeat("x", 2<<20) + `"}`))
	}))
	defer huge.Close()
	notJWKS := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`<html>`))
	}))
	defer notJWKS.Close()
	for _, tc := range []struct {
		name, url string
		before    func()
		want      string
	}{
		{"serves keys", srv.URL, nil, ""},
		{"not found", srv.URL, func() { srv.set(nil, http.StatusNotFound) }, "answered 404"},
		{"too large", huge.URL, nil, "more than"},
		{"not a key set", notJWKS.URL, nil, "parse JWKS"},
		{"no URL", "", nil, "URL is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
			}
			f := &subscriber.KeyFetcher{URL: tc.url}
			err := f.Refresh(context.Background())
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				ks, err := f.KeySet(context.Background(), s.KeyID())
				if err != nil || ks == nil {
					t.Fatalf("KeySet: %v", err)
				}
				if _, ok := ks.Get(s.KeyID()); !ok {
					t.Fatal("the served key is not in the set")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			// A failed first fetch is reported again, not answered with
			// an empty key set, until MinInterval allows another.
			if _, err := f.KeySet(context.Background(), s.KeyID()); err == nil {
				t.Fatal("KeySet after a failed fetch returned no error")
			}
		})
	}
}
