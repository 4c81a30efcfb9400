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
	dbURL, drop, err := benchDB(ctx)
	if err != nil {
		return nil, err
	}
	defer drop()
	pool, err := postgres.Open(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if _, err := postgres.Migrate(ctx, pool); err != nil {
		return nil, err
	}
	rs := &boot.ReadSide{URL: dbURL, Pool: pool}
	cfg := config.Webhooks{AllowCIDRs: []string{"127.0.0.0/8"}, AllowHTTP: true, Timeout: 5 * time.Second, MaxBody: 256 << 10,
		Schedule: config.DefaultRetrySchedule}

	recv := &hookReceiver{arrived: map[string]time.Time{}}
	srv := httptest.NewServer(recv)
	defer srv.Close()
	w, err := webhooker.New(ctx, core, cfg, rs)
	if err != nil {
		return nil, err
	}
	svc := w.Webhooks
	meta := command.Meta{Actor: "bench"}
	_, secret, err := svc.Create(ctx, domain.CreateWebhook{URL: srv.URL + "/hook", EventTypes: []string{"tenancy.tenant.*"}}, meta)
	if err != nil {
		return nil, err
	}
	v, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return nil, err
	}
	recv.mu.Lock()
	recv.verifier = v
	recv.mu.Unlock()

	// A backlog of events for the endpoint, appended before deliveries start.
	const tenants = 20
	n := max(2000, int(o.duration.Seconds()*800))
	ids := make([]string, tenants)
	for i := range tenants {
		res, err := core.Tenants.Create(ctx, domain.CreateTenant{Slug: fmt.Sprintf("hook-%d", i), DisplayName: "Hook", Plan: "standard", Isolation: "shared",
			Regions: domain.Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"}}, meta)
		if err != nil {
			return nil, err
		}
		ids[i] = res.State.ID
	}
	var sample []byte
	for i := range n {
		name := fmt.Sprintf("Hook %d", i)
		res, err := core.Tenants.Do(ctx, ids[i%tenants], domain.UpdateTenant{DisplayName: &name}, meta)
		if err != nil {
			return nil, err
		}
		if sample == nil {
			m, err := core.Store.Get(ctx, res.Seq)
			if err != nil {
				return nil, err
			}
			sample = m.Data
		}
	}
	total := int64(tenants + n)

	// Baseline: a plain sequential POST loop of the same body, signed the
	// same way, to the same receiver.
	client := &http.Client{Timeout: 5 * time.Second}
	key, _ := secrets.Decode(secret)
	baseN := 0
	start := time.Now()
	for time.Since(start) < o.duration/2 {
		id := fmt.Sprintf("baseline-%d", baseN)
		now := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/hook", bytes.NewReader(sample))
		req.Header.Set("content-type", delivery.ContentType)
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", fmt.Sprint(now.Unix()))
		req.Header.Set("webhook-signature", delivery.Sign([][]byte{key}, id, now, sample))
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		baseN++
	}
	baseRate := float64(baseN) / time.Since(start).Seconds()
	recv.count.Store(0)

	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	start = time.Now()
	go func() { defer close(done); _ = w.Run(wctx) }()
	defer func() { stop(); <-done }()
	deadline := time.Now().Add(5 * time.Minute)
	for recv.count.Load() < total {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("only %d of %d deliveries in 5 minutes", recv.count.Load(), total)
		}
		time.Sleep(2 * time.Millisecond)
	}
	rate := float64(total) / time.Since(start).Seconds()
	if recv.bad.Load() > 0 {
		return nil, fmt.Errorf("%d deliveries failed signature verification", recv.bad.Load())
	}
	fmt.Fprintf(o.log, "  %d backlog deliveries at %.0f/s; plain POST loop %.0f/s\n", total, rate, baseRate)

	// End to end at a steady 500 events/s: command start to arrival.
	const perSec = 500
	seconds := max(3, int(o.duration.Seconds()))
	type sent struct {
		id string
		at time.Time
	}
	var sents []sent
	tick := time.NewTicker(time.Second / perSec)
	defer tick.Stop()
	for i := range perSec * seconds {
		<-tick.C
		name := fmt.Sprintf("Steady %d", i)
		at := time.Now()
		res, err := core.Tenants.Do(ctx, ids[i%tenants], domain.UpdateTenant{DisplayName: &name}, meta)
		if err != nil {
			return nil, err
		}
		sents = append(sents, sent{res.Events[0].ID, at})
	}
	deadline = time.Now().Add(time.Minute)
	var lat []time.Duration
	for {
		lat = lat[:0]
		recv.mu.Lock()
		for _, s := range sents {
			if t, ok := recv.arrived[s.id]; ok {
				lat = append(lat, t.Sub(s.at))
			}
		}
		recv.mu.Unlock()
		if len(lat) == len(sents) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(lat) != len(sents) {
		return nil, fmt.Errorf("%d of %d steady events delivered", len(lat), len(sents))
	}
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	ratio := rate / baseRate
	return []row{
		{name: "plain sequential POST loop, signed (baseline)", value: fmt.Sprintf("%.0f req/s", baseRate), baseline: "-", ratio: "1.00", target: "-", verdict: "-"},
		{name: fmt.Sprintf("webhook deliveries to one endpoint (%d backlog, in order, verified)", total), value: fmt.Sprintf("%.0f deliveries/s", rate),
			baseline: fmt.Sprintf("%.0f req/s", baseRate), ratio: fmt.Sprintf("%.2f", ratio), target: ">= 0.5x", verdict: yes(ratio >= 0.5)},
		{name: fmt.Sprintf("command to delivery at %d events/s for %ds", perSec, seconds), value: fmt.Sprintf("p50 %s, p99 %s", ms(p(0.5)), ms(p(0.99))),
			baseline: "-", ratio: "-", target: "p99 < 100ms", verdict: yes(p(0.99) < 100*time.Millisecond)},
	}, nil
}
