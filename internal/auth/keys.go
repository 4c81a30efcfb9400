package auth

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/tenancyhq/tenancy/internal/metrics"
)

// RefreshEvery bounds how often a token signed by a key the cached set
// lacks makes the issuer's keys be fetched again.
const RefreshEvery = 30 * time.Second

// issuerKeys is the issuer's signing keys, fetched from its JWKS. Unlike a
// key set that fetches on demand, it is fetched once before the API counts
// as ready, and from then on a failed fetch keeps the keys it has: an
// issuer outage costs new keys (counted and logged), not every token.
type issuerKeys struct {
	url    string
	client *http.Client
	log    *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	set     *oidc.StaticKeySet
	fetched time.Time
	tried   time.Time
}

// VerifySignature implements oidc.KeySet: it verifies with the cached
// keys, fetching them again (at most every RefreshEvery) when none
// verifies, as an issuer's key rotation looks.
func (k *issuerKeys) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	set := k.current()
	payload, err := set.VerifySignature(ctx, jwt)
	if err == nil {
		return payload, nil
	}
	fresh, ferr := k.refresh(ctx, false)
	if ferr != nil || fresh == set {
		return nil, err
	}
	return fresh.VerifySignature(ctx, jwt)
}

func (k *issuerKeys) current() *oidc.StaticKeySet {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.set
}

// refresh fetches the keys (force: whatever the time since the last try)
// and returns the set in use afterwards.
func (k *issuerKeys) refresh(ctx context.Context, force bool) (*oidc.StaticKeySet, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !force && k.now().Sub(k.tried) < RefreshEvery {
		return k.set, nil
	}
	k.tried = k.now()
	keys, err := fetchJWKS(ctx, k.client, k.url)
	if err != nil {
		metrics.IssuerFailures.WithLabelValues("keys").Inc()
		attrs := []any{"jwks_uri", k.url, "error", err}
		if k.set != nil {
			attrs = append(attrs, "serving_keys_fetched_at", k.fetched)
		}
		k.log.WarnContext(ctx, "cannot fetch the OIDC issuer's signing keys; tokens signed with keys fetched before still verify", attrs...)
		return k.set, err
	}
	k.set, k.fetched = &oidc.StaticKeySet{PublicKeys: keys}, k.now()
	return k.set, nil
}

// fetchJWKS reads the signature keys of a JWKS document.
func fetchJWKS(ctx context.Context, client *http.Client, url string) ([]crypto.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the JWKS answered %d", resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("the JWKS is not a JSON Web Key Set: %w", err)
	}
	var keys []crypto.PublicKey
	for _, key := range set.Keys {
		if key.Use == "enc" || !key.Valid() {
			continue
		}
		keys = append(keys, key.Public().Key)
	}
	if len(keys) == 0 {
		return nil, errors.New("the JWKS holds no signature keys")
	}
	return keys, nil
}
