package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/delivery"
	"github.com/tenancyhq/tenancy/internal/delivery/secrets"
	"github.com/tenancyhq/tenancy/internal/postgres"
	"github.com/tenancyhq/tenancy/internal/run/boot"
	"github.com/tenancyhq/tenancy/internal/run/webhooker"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// hookReceiver verifies every request's Standard Webhooks signature, as a
// careful subscriber would, and notes when each event id first arrived.
type hookReceiver struct {
	mu       sync.Mutex
	verifier *standardwebhooks.Webhook
	arrived  map[string]time.Time
	count    atomic.Int64
	bad      atomic.Int64
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	v := h.verifier
	h.mu.Unlock()
	if v == nil || v.Verify(body, r.Header) != nil {
		h.bad.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	now := time.Now()
	id := r.Header.Get("webhook-id")
	h.mu.Lock()
	if _, ok := h.arrived[id]; !ok {
		h.arrived[id] = now
	}
	h.mu.Unlock()
	h.count.Add(1)
	w.WriteHeader(http.StatusNoContent)
}

// benchWebhook measures deliveries to one endpoint (which are sequential by
// contract: per-endpoint order) against a plain sequential POST loop to the
// same receiver, and the end-to-end latency from command to delivery at a
// steady rate.
func benchWebhook(ctx context.Context, o opts) ([]row, error) {
	core, _, stopCore, err := startCore(ctx, o, "nats-webhook")
	if err != nil {
		return nil, err
	}
	defer stopCore()
	rs, closeReadSide, err := webhookReadSide(ctx)
	if err != nil {
		return nil, err
	}
	defer closeReadSide()
	recv := &hookReceiver{arrived: map[string]time.Time{}}
	srv := httptest.NewServer(recv)
	defer srv.Close()
	w, err := webhooker.New(ctx, core, config.Webhooks{AllowCIDRs: []string{"127.0.0.0/8"}, AllowHTTP: true,
		Timeout: 5 * time.Second, MaxBody: 256 << 10, Schedule: config.DefaultRetrySchedule}, rs)
	if err != nil {
		return nil, err
	}
	meta := command.Meta{Actor: "bench"}
	secret, err := recv.subscribe(ctx, w.Webhooks, srv.URL+"/hook", meta)
	if err != nil {
		return nil, err
	}

	// A backlog of events for the endpoint, appended before deliveries start.
	const tenants = 20
	n := max(2000, int(o.duration.Seconds()*800))
	ids, sample, err := appendBacklog(ctx, core, tenants, n, meta)
	if err != nil {
		return nil, err
	}
	total := int64(tenants + n)

	// Baseline: a plain sequential POST loop of the same body, signed the
	// same way, to the same receiver.
	baseRate, err := postLoop(ctx, srv.URL+"/hook", secret, sample, o.duration/2)
	if err != nil {
		return nil, err
	}
	recv.count.Store(0)

	start := time.Now()
	stopWebhooker := startWebhooker(ctx, w)
	defer stopWebhooker()
	rate, err := recv.awaitBacklog(total, start)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.log, "  %d backlog deliveries at %.0f/s; plain POST loop %.0f/s\n", total, rate, baseRate)

	// End to end at a steady 500 events/s: command start to arrival.
	const perSec = 500
	seconds := max(3, int(o.duration.Seconds()))
	lat, err := steadyLatencies(ctx, core, recv, ids, perSec, seconds, meta)
	if err != nil {
		return nil, err
	}
	return webhookRows(baseRate, rate, total, perSec, seconds, lat), nil
}

// webhookRows reports the baseline's and the backlog's delivery rates and
// the percentiles of the steady latencies lat (sorted).
func webhookRows(baseRate, rate float64, total int64, perSec, seconds int, lat []time.Duration) []row {
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	ratio := rate / baseRate
	return []row{
		{name: "plain sequential POST loop, signed (baseline)", value: fmt.Sprintf("%.0f req/s", baseRate), baseline: "-", ratio: "1.00", target: "-", verdict: "-"},
		{name: fmt.Sprintf("webhook deliveries to one endpoint (%d backlog, in order, verified)", total), value: fmt.Sprintf("%.0f deliveries/s", rate),
			baseline: fmt.Sprintf("%.0f req/s", baseRate), ratio: fmt.Sprintf("%.2f", ratio), target: ">= 0.5x", verdict: yes(ratio >= 0.5)},
		{name: fmt.Sprintf("command to delivery at %d events/s for %ds", perSec, seconds), value: fmt.Sprintf("p50 %s, p99 %s", ms(p(0.5)), ms(p(0.99))),
			baseline: "-", ratio: "-", target: "p99 < 100ms", verdict: yes(p(0.99) < 100*time.Millisecond)},
	}
}

// webhookReadSide creates a throwaway database, migrated, for the
// webhooker's attempt log; the func returned closes and drops it.
func webhookReadSide(ctx context.Context) (*boot.ReadSide, func(), error) {
	dbURL, drop, err := benchDB(ctx)
	if err != nil {
		return nil, nil, err
	}
	pool, err := postgres.Open(ctx, dbURL)
	if err != nil {
		drop()
		return nil, nil, err
	}
	closeAll := func() { pool.Close(); drop() }
	if _, err := postgres.Migrate(ctx, pool); err != nil {
		closeAll()
		return nil, nil, err
	}
	return &boot.ReadSide{URL: dbURL, Pool: pool}, closeAll, nil
}

// subscribe creates a subscription of every tenant event for url and has
// the receiver verify deliveries with its secret, which it returns.
func (h *hookReceiver) subscribe(ctx context.Context, svc *app.Webhooks, url string, meta command.Meta) (string, error) {
	_, secret, err := svc.Create(ctx, domain.CreateWebhook{URL: url, EventTypes: []string{"tenancy.tenant.*"}}, meta)
	if err != nil {
		return "", err
	}
	v, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return "", err
	}
	h.mu.Lock()
	h.verifier = v
	h.mu.Unlock()
	return secret, nil
}

// appendBacklog creates tenants tenants, then appends n updates spread over
// them. It returns the tenants' ids and the first update's event, encoded.
func appendBacklog(ctx context.Context, core *boot.Core, tenants, n int, meta command.Meta) ([]string, []byte, error) {
	ids := make([]string, tenants)
	for i := range tenants {
		res, err := core.Tenants.Create(ctx, domain.CreateTenant{Slug: fmt.Sprintf("hook-%d", i), DisplayName: "Hook", Plan: "standard", Isolation: "shared",
			Regions: domain.Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"}}, meta)
		if err != nil {
			return nil, nil, err
		}
		ids[i] = res.State.ID
	}
	var sample []byte
	for i := range n {
		name := fmt.Sprintf("Hook %d", i)
		res, err := core.Tenants.Do(ctx, ids[i%tenants], domain.UpdateTenant{DisplayName: &name}, meta)
		if err != nil {
			return nil, nil, err
		}
		if sample == nil {
			m, err := core.Store.Get(ctx, res.Seq)
			if err != nil {
				return nil, nil, err
			}
			sample = m.Data
		}
	}
	return ids, sample, nil
}

// postLoop POSTs body to url, signed with secret, one request after the
// other for d, and returns the rate achieved.
func postLoop(ctx context.Context, url, secret string, body []byte, d time.Duration) (float64, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	key, _ := secrets.Decode(secret)
	baseN := 0
	start := time.Now()
	for time.Since(start) < d {
		id := fmt.Sprintf("baseline-%d", baseN)
		now := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("content-type", delivery.ContentType)
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", fmt.Sprint(now.Unix()))
		req.Header.Set("webhook-signature", delivery.Sign([][]byte{key}, id, now, body))
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		baseN++
	}
	return float64(baseN) / time.Since(start).Seconds(), nil
}

// startWebhooker runs w's delivery worker until the func returned stops it.
func startWebhooker(ctx context.Context, w *webhooker.Webhooker) func() {
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(wctx) }()
	return func() { stop(); <-done }
}

// awaitBacklog waits (5 minutes at most) for total deliveries and returns
// their rate since start; every one must have passed verification.
func (h *hookReceiver) awaitBacklog(total int64, start time.Time) (float64, error) {
	deadline := time.Now().Add(5 * time.Minute)
	for h.count.Load() < total {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("only %d of %d deliveries in 5 minutes", h.count.Load(), total)
		}
		time.Sleep(2 * time.Millisecond)
	}
	rate := float64(total) / time.Since(start).Seconds()
	if h.bad.Load() > 0 {
		return 0, fmt.Errorf("%d deliveries failed signature verification", h.bad.Load())
	}
	return rate, nil
}

// sentEvent is an event appended at a steady rate and when its command
// started.
type sentEvent struct {
	id string
	at time.Time
}

// steadyLatencies appends perSec updates a second for seconds, spread over
// the tenants ids, and returns, sorted, how long each took from its
// command's start to its arrival at the receiver.
func steadyLatencies(ctx context.Context, core *boot.Core, recv *hookReceiver, ids []string, perSec, seconds int, meta command.Meta) ([]time.Duration, error) {
	var sents []sentEvent
	tick := time.NewTicker(time.Second / time.Duration(perSec))
	defer tick.Stop()
	for i := range perSec * seconds {
		<-tick.C
		name := fmt.Sprintf("Steady %d", i)
		at := time.Now()
		res, err := core.Tenants.Do(ctx, ids[i%len(ids)], domain.UpdateTenant{DisplayName: &name}, meta)
		if err != nil {
			return nil, err
		}
		sents = append(sents, sentEvent{res.Events[0].ID, at})
	}
	lat := recv.latencies(sents, time.Now().Add(time.Minute))
	if len(lat) != len(sents) {
		return nil, fmt.Errorf("%d of %d steady events delivered", len(lat), len(sents))
	}
	slices.Sort(lat)
	return lat, nil
}

// latencies waits until every event in sents has arrived, or deadline
// passes, and returns the latencies of those that did.
func (h *hookReceiver) latencies(sents []sentEvent, deadline time.Time) []time.Duration {
	var lat []time.Duration
	for {
		lat = lat[:0]
		h.mu.Lock()
		for _, s := range sents {
			if t, ok := h.arrived[s.id]; ok {
				lat = append(lat, t.Sub(s.at))
			}
		}
		h.mu.Unlock()
		if len(lat) == len(sents) || time.Now().After(deadline) {
			return lat
		}
		time.Sleep(10 * time.Millisecond)
	}
}
