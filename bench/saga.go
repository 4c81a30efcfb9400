package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/tenancyhq/tenancy/internal/billing"
	"github.com/tenancyhq/tenancy/internal/billing/billingfake"
	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/keycloak"
	"github.com/tenancyhq/tenancy/internal/keycloak/keycloakfake"
	"github.com/tenancyhq/tenancy/internal/run/boot"
	"github.com/tenancyhq/tenancy/internal/run/provisioner"
	"github.com/tenancyhq/tenancy/internal/saga"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// benchSaga measures activation sagas end to end against zero-latency
// fakes, against a baseline of the same external calls made directly.
func benchSaga(ctx context.Context, o opts) ([]row, error) {
	core, _, stopCore, err := startCore(ctx, o, "nats-saga")
	if err != nil {
		return nil, err
	}
	defer stopCore()
	kf := keycloakfake.New(keycloakfake.Options{ClientID: "prov", ClientSecret: "secret"})
	defer kf.Close()
	bf := billingfake.New(billingfake.Options{})
	defer bf.Close()
	httpc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	kc, _ := keycloak.New(keycloak.Config{URL: kf.URL(), ClientID: "prov", ClientSecret: "secret", HTTPClient: httpc})
	bc, _ := billing.New(billing.Config{URL: bf.URL(), Token: billingfake.DefaultToken, HTTPClient: httpc})
	in := saga.Integrations{Keycloak: kc, Billing: bc, Keys: core.Keyring, Catalog: core.Catalog}
	const n, workers = 300, 8
	meta := command.Meta{Actor: "bench"}

	// Baseline: the activation's external calls, made directly, on tenants
	// prepared beforehand.
	prepared, err := prepareActivations(ctx, core, n, meta)
	if err != nil {
		return nil, err
	}
	// The steps an own-realm tenant runs (the shared-realm ones skip).
	var steps []saga.Step
	for _, st := range saga.NewPlan(in)(domain.SagaActivate) {
		if st.Applies == nil || st.Applies(prepared[0]) {
			steps = append(steps, st)
		}
	}
	raws, rawElapsed, err := runStepsDirectly(ctx, steps, prepared, workers)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}

	// The sagas: activation requests, run by the provisioner.
	lat, sagaElapsed, err := runSagas(ctx, core, in, n, workers, meta)
	if err != nil {
		return nil, err
	}
	rawRate, sagaRate := float64(n)/rawElapsed.Seconds(), float64(n)/sagaElapsed.Seconds()
	// Each step adds one recorded event (and the saga one more), whatever
	// the external system's speed: that is the saga's overhead.
	perStep := (mean(lat) - mean(raws)) / time.Duration(len(steps))
	return []row{
		{name: fmt.Sprintf("activation calls made directly (%d tenants, %d workers, baseline)", n, workers), value: fmt.Sprintf("%.0f/s, %s each", rawRate, ms(mean(raws))), baseline: "-", ratio: "1.00", target: "-", verdict: "-"},
		{name: fmt.Sprintf("activation sagas, %d steps each, zero-latency fakes", len(steps)), value: fmt.Sprintf("%.0f sagas/s, %s each, overhead %s per step", sagaRate, ms(mean(lat)), ms(perStep)),
			baseline: fmt.Sprintf("%.0f/s", rawRate), ratio: fmt.Sprintf("%.2f", sagaRate/rawRate), target: "-", verdict: "-"},
	}, nil
}

// newSagaTenant creates a draft tenant ready to be activated.
func newSagaTenant(ctx context.Context, core *boot.Core, slug string, meta command.Meta) (domain.Tenant, error) {
	res, err := core.Tenants.Create(ctx, domain.CreateTenant{Slug: slug, DisplayName: "Saga " + slug, Plan: "standard", Isolation: "shared", CustomerID: domain.RootCustomerID,
		Regions:  domain.Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"},
		Contacts: []events.Contact{{Role: "technical", Name: "T", Email: "t@" + slug + ".test"}}}, meta)
	return res.State, err
}

// prepareActivations creates n tenants and requests their activation, with
// no provisioner running: the baseline runs their steps itself.
func prepareActivations(ctx context.Context, core *boot.Core, n int, meta command.Meta) ([]domain.Tenant, error) {
	prepared := make([]domain.Tenant, n)
	for i := range n {
		t, err := newSagaTenant(ctx, core, fmt.Sprintf("raw-%d", i), meta)
		if err != nil {
			return nil, err
		}
		res, err := core.Tenants.Do(ctx, t.ID, domain.RequestActivation{}, meta)
		if err != nil {
			return nil, err
		}
		prepared[i] = res.State
	}
	return prepared, nil
}

// runStepsDirectly runs steps on each tenant, on workers goroutines. It
// returns how long each tenant took, how long all took, and the first step
// error.
func runStepsDirectly(ctx context.Context, steps []saga.Step, tenants []domain.Tenant, workers int) ([]time.Duration, time.Duration, error) {
	var raws []time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	jobs := make(chan domain.Tenant)
	var firstErr error
	rawStart := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range jobs {
				start := time.Now()
				var err error
				for _, s := range steps {
					if _, err = s.Run(ctx, t); err != nil {
						break
					}
				}
				mu.Lock()
				raws = append(raws, time.Since(start))
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	for _, t := range tenants {
		jobs <- t
	}
	close(jobs)
	wg.Wait()
	return raws, time.Since(rawStart), firstErr
}

// runSagas creates n tenants, requests their activation with a provisioner
// of workers running, and waits for every one to be active. It returns each
// saga's latency and how long all took from the first request.
func runSagas(ctx context.Context, core *boot.Core, in saga.Integrations, n, workers int, meta command.Meta) ([]time.Duration, time.Duration, error) {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	prov, err := provisioner.New(pctx, core, provisioner.Options{Integrations: in, Concurrency: workers})
	if err != nil {
		return nil, 0, err
	}
	go func() { _ = prov.Run(pctx) }()
	ids := make([]string, n)
	for i := range n {
		t, err := newSagaTenant(ctx, core, fmt.Sprintf("saga-%d", i), meta)
		if err != nil {
			return nil, 0, err
		}
		ids[i] = t.ID
	}
	sagaStart := time.Now()
	for _, id := range ids {
		if _, err := core.Tenants.Do(ctx, id, domain.RequestActivation{}, meta); err != nil {
			return nil, 0, err
		}
	}
	lat, err := awaitActivations(ctx, core, ids, sagaStart)
	if err != nil {
		return nil, 0, err
	}
	return lat, time.Since(sagaStart), nil
}

// awaitActivations polls each tenant until it is active and returns how
// long each activation saga took.
func awaitActivations(ctx context.Context, core *boot.Core, ids []string, sagaStart time.Time) ([]time.Duration, error) {
	var lat []time.Duration
	for _, id := range ids {
		for {
			t, _, err := core.Tenants.Get(ctx, id)
			if err != nil {
				return nil, err
			}
			if t.State == domain.StateActive {
				// From the saga's first step, not its request: the queue
				// before it is the worker pool's, not the saga's cost.
				lat = append(lat, t.Activation.ActivatedAt.Sub(t.Provisioning.Steps[0].StartedAt))
				break
			}
			if t.Provisioning.Status == domain.SagaFailed {
				return nil, fmt.Errorf("saga failed: %s", t.Provisioning.LastError)
			}
			if time.Since(sagaStart) > 5*time.Minute {
				return nil, fmt.Errorf("sagas did not finish")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return lat, nil
}

// mean returns the average of ds.
func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}
