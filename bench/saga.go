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
	cat := core.Catalog
	kf := keycloakfake.New(keycloakfake.Options{ClientID: "prov", ClientSecret: "secret"})
	defer kf.Close()
	bf := billingfake.New(billingfake.Options{})
	defer bf.Close()
	httpc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	kc, _ := keycloak.New(keycloak.Config{URL: kf.URL(), ClientID: "prov", ClientSecret: "secret", HTTPClient: httpc})
	bc, _ := billing.New(billing.Config{URL: bf.URL(), Token: billingfake.DefaultToken, HTTPClient: httpc})
	in := saga.Integrations{Keycloak: kc, Billing: bc, Keys: core.Keyring, Catalog: cat}
	const n, workers = 300, 8
	meta := command.Meta{Actor: "bench"}

	newTenant := func(slug string) (domain.Tenant, error) {
		res, err := core.Tenants.Create(ctx, domain.CreateTenant{Slug: slug, DisplayName: "Saga " + slug, Plan: "standard", Isolation: "shared",
			Regions:  domain.Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"},
			Contacts: []events.Contact{{Role: "technical", Name: "T", Email: "t@" + slug + ".test"}}}, meta)
		return res.State, err
	}

	// Baseline: the activation's external calls, made directly, on tenants
	// prepared beforehand.
	steps := saga.NewPlan(in)(domain.SagaActivate)
	prepared := make([]domain.Tenant, n)
	for i := range n {
		t, err := newTenant(fmt.Sprintf("raw-%d", i))
		if err != nil {
			return nil, err
		}
		res, err := core.Tenants.Do(ctx, t.ID, domain.RequestActivation{}, meta)
		if err != nil {
			return nil, err
		}
		prepared[i] = res.State
	}
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
	for _, t := range prepared {
		jobs <- t
	}
	close(jobs)
	wg.Wait()
	rawElapsed := time.Since(rawStart)
	if firstErr != nil {
		return nil, fmt.Errorf("baseline: %w", firstErr)
	}

	// The sagas: activation requests, run by the provisioner.
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	prov, err := provisioner.New(pctx, core, provisioner.Options{Integrations: in, Concurrency: workers})
	if err != nil {
		return nil, err
	}
	go func() { _ = prov.Run(pctx) }()
	ids := make([]string, n)
	for i := range n {
		t, err := newTenant(fmt.Sprintf("saga-%d", i))
		if err != nil {
			return nil, err
		}
		ids[i] = t.ID
	}
	sagaStart := time.Now()
	for _, id := range ids {
		if _, err := core.Tenants.Do(ctx, id, domain.RequestActivation{}, meta); err != nil {
			return nil, err
		}
	}
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
	sagaElapsed := time.Since(sagaStart)
	rawRate, sagaRate := float64(n)/rawElapsed.Seconds(), float64(n)/sagaElapsed.Seconds()
	avg := func(ds []time.Duration) time.Duration {
		var sum time.Duration
		for _, d := range ds {
			sum += d
		}
		return sum / time.Duration(len(ds))
	}
	// Each step adds one recorded event (and the saga one more), whatever
	// the external system's speed: that is the saga's overhead.
	perStep := (avg(lat) - avg(raws)) / time.Duration(len(steps))
	return []row{
		{name: fmt.Sprintf("activation calls made directly (%d tenants, %d workers, baseline)", n, workers), value: fmt.Sprintf("%.0f/s, %s each", rawRate, ms(avg(raws))), baseline: "-", ratio: "1.00", target: "-", verdict: "-"},
		{name: fmt.Sprintf("activation sagas, %d steps each, zero-latency fakes", len(steps)), value: fmt.Sprintf("%.0f sagas/s, %s each, overhead %s per step", sagaRate, ms(avg(lat)), ms(perStep)),
			baseline: fmt.Sprintf("%.0f/s", rawRate), ratio: fmt.Sprintf("%.2f", sagaRate/rawRate), target: "-", verdict: "-"},
	}, nil
}
