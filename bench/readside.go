package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/postgres"
	"github.com/tenancyhq/tenancy/internal/projection"
	"github.com/tenancyhq/tenancy/internal/readmodel"
	"github.com/tenancyhq/tenancy/internal/run/boot"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Tenant names are drawn from a generated vocabulary of a few thousand
// words, so that a word names a small share of tenants, as in real
// directories.
var (
	syllables = []string{"ka", "lo", "mi", "ra", "te", "vo", "zu", "ne", "pa", "si", "do", "ru", "fa", "gi", "ho", "ja", "ke", "li", "mo", "nu",
		"pe", "qui", "ro", "sa", "ti", "ul", "ve", "wa", "xo", "yen", "zor", "bri", "cla", "dra", "fle", "gro", "pla", "str", "tor", "vin"}
	suffixes = []string{"Systems", "Labs", "Logistics", "Health", "Analytics", "Retail", "Energy", "Media", "Finance", "Robotics"}
	words    = vocabulary(3000)
)

func vocabulary(n int) []string {
	out := make([]string, 0, n)
	seen := map[string]bool{}
	rng := rand.New(rand.NewPCG(1, 2))
	for len(out) < n {
		w := ""
		for range 2 + rng.IntN(2) {
			w += syllables[rng.IntN(len(syllables))]
		}
		if !seen[w] {
			seen[w] = true
			out = append(out, strings.ToUpper(w[:1])+w[1:])
		}
	}
	return out
}

func tenantName(i int) (slug, name string) {
	a, b := words[(i*7919)%len(words)], words[(i*104729/len(words))%len(words)]
	s := suffixes[i%len(suffixes)]
	name = fmt.Sprintf("%s %s %s", a, b, s)
	return strings.ToLower(fmt.Sprintf("%s-%s-%d", a, b, i)), name
}

// benchDB creates a throwaway database and returns its URL and a drop func.
func benchDB(ctx context.Context) (string, func(), error) {
	base := "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		return "", nil, fmt.Errorf("the read-side benchmarks need PostgreSQL at 127.0.0.1:5432: %w", err)
	}
	name := fmt.Sprintf("tenancy_bench_%d", time.Now().UnixNano())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close(ctx)
		return "", nil, err
	}
	admin.Close(ctx)
	u, _ := url.Parse(base)
	u.Path = "/" + name
	return u.String(), func() {
		c, err := pgx.Connect(context.Background(), base)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(context.Background())
		}
	}, nil
}

// preload appends n tenant-created events (one per tenant), signed, as fast
// as the machine allows, bypassing the command path (whose speed is measured
// elsewhere).
func preload(ctx context.Context, js jetstream.JetStream, signer *events.Signer, n int, log func(string, ...any)) error {
	workers := 4
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
			var pending []jetstream.PubAckFuture
			flush := func() error {
				for _, f := range pending {
					select {
					case <-f.Ok():
					case err := <-f.Err():
						return err
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				pending = pending[:0]
				return nil
			}
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					errs <- flush()
					return
				}
				slug, name := tenantName(i)
				id := app.NewID()
				plans := []string{"starter", "standard", "enterprise"}
				plan := plans[rng.IntN(3)]
				iso := "shared"
				if plan == "enterprise" && rng.IntN(2) == 0 {
					iso = "dedicated"
				}
				region := []string{"eu-west-1", "eu-central-1", "us-east-1", "ap-south-1"}[rng.IntN(4)]
				p := &events.TenantCreated{Slug: slug, DisplayName: name, Plan: plan, Isolation: iso,
					Regions:     domain.Regions{Allowed: []string{region}, Preferred: region},
					Labels:      map[string]string{"env": []string{"prod", "staging", "dev"}[rng.IntN(3)], "tier": []string{"gold", "silver", "bronze"}[rng.IntN(3)]},
					ExternalIDs: map[string]string{"billing": fmt.Sprintf("cus_%d", i)}}
				data, _ := json.Marshal(p)
				env := &events.Envelope{SpecVersion: events.SpecVersion, ID: app.NewID(), Source: events.Source, Type: p.EventType(), Subject: id,
					Time: time.Now().UTC().Truncate(time.Microsecond), DataContentType: events.ContentType, TenantID: id, Actor: "bench", AggVersion: 1, Data: data}
				raw, _, err := signer.Sign(env)
				if err != nil {
					errs <- err
					return
				}
				f, err := js.PublishAsync(events.Subject(id, events.AggregateTenant, id), raw)
				if err != nil {
					errs <- err
					return
				}
				pending = append(pending, f)
				if len(pending) >= 2000 {
					if err := flush(); err != nil {
						errs <- err
						return
					}
				}
				if i > 0 && i%200000 == 0 {
					log("  preloaded %d events (%.0f/s)", i, float64(i)/time.Since(start).Seconds())
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func benchReadSide(ctx context.Context, o opts) ([]row, error) {
	logf := func(f string, a ...any) { fmt.Fprintf(o.log, f+"\n", a...) }
	core, js, stopCore, err := startCore(ctx, o, "nats-read")
	if err != nil {
		return nil, err
	}
	defer stopCore()
	n := o.tenants
	logf("  preloading %d tenant events ...", n)
	if err := preload(ctx, js, core.Signer, n, logf); err != nil {
		return nil, err
	}

	dbURL, drop, err := benchDB(ctx)
	if err != nil {
		return nil, err
	}
	if o.keepDB {
		logf("  keeping the database: %s", dbURL)
	} else {
		defer drop()
	}
	pool, err := postgres.Open(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if _, err := postgres.Migrate(ctx, pool); err != nil {
		return nil, err
	}

	// Rebuild: replay the log into the tenants projection (COPY + indexes).
	logf("  rebuilding the tenants projection from %d events ...", n)
	start := time.Now()
	deps := projection.Deps{DatabaseURL: dbURL, JS: js, Store: core.Store, Opener: core.Keyring, Log: logging.Discard()}
	if err := projection.NewRunner(projection.Tenants{}, deps).RunUntilRebuilt(ctx, "bench"); err != nil {
		return nil, err
	}
	rebuild := time.Since(start)
	rebuildRate := float64(n) / rebuild.Seconds()

	// Baseline: COPY the same rows into an equivalent table and index it.
	logf("  baseline: COPY %d equivalent rows and build the same indexes ...", n)
	copyRate, err := copyBaseline(ctx, dbURL, n)
	if err != nil {
		return nil, err
	}

	// Search: the API vs the same SQL, both against the rebuilt table.
	searchRows, err := benchSearch(ctx, o, core, dbURL, pool)
	if err != nil {
		return nil, err
	}

	// Projection lag at a steady command rate.
	lagRow, err := benchLag(ctx, o, core, dbURL, pool)
	if err != nil {
		return nil, err
	}

	ratio := rebuildRate / copyRate
	rows := []row{
		{name: fmt.Sprintf("COPY %d rows + indexes (baseline)", n), value: fmt.Sprintf("%.0f rows/s", copyRate), baseline: "-", ratio: "1.00", target: "-", verdict: "-"},
		{name: fmt.Sprintf("rebuild tenants from %d events", n), value: fmt.Sprintf("%.0f events/s (%s)", rebuildRate, rebuild.Round(time.Second)),
			baseline: fmt.Sprintf("%.0f rows/s", copyRate), ratio: fmt.Sprintf("%.2f", ratio), target: ">= 0.3x", verdict: yes(ratio >= 0.3)},
	}
	rows = append(rows, searchRows...)
	return append(rows, lagRow), nil
}

// copyBaseline copies the rebuilt tenants table's rows (read into memory
// first) into an equivalent table with pgx CopyFrom and builds the same
// indexes: the ceiling a rebuild could reach. Only the writing is timed.
func copyBaseline(ctx context.Context, dbURL string, n int) (float64, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT * FROM tenants")
	if err != nil {
		return 0, err
	}
	cols := make([]string, 0, 20)
	for _, f := range rows.FieldDescriptions() {
		cols = append(cols, f.Name)
	}
	var data [][]any
	for rows.Next() {
		v, err := rows.Values()
		if err != nil {
			return 0, err
		}
		data = append(data, v)
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if len(data) != n {
		return 0, fmt.Errorf("the rebuilt table has %d rows, want %d", len(data), n)
	}
	const gen = 999
	start := time.Now()
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := (projection.Tenants{}).Create(ctx, tx, gen); err != nil {
			return err
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{projection.Table("tenants", gen)}, cols, pgx.CopyFromRows(data))
		return err
	})
	if err != nil {
		return 0, err
	}
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return (projection.Tenants{}).Indexes(ctx, tx, gen) }); err != nil {
		return 0, err
	}
	took := time.Since(start)
	_, _ = conn.Exec(ctx, "DROP TABLE "+projection.Ident(projection.Table("tenants", gen)))
	return float64(n) / took.Seconds(), nil
}

// searchQueries is the query mix a console sends: a word, two words, a
// broad filter paged by id, a selective filter combination, and an
// integration's lookup by external id.
func searchQueries(rng *rand.Rand) (readmodel.TenantFilter, string) {
	switch rng.IntN(5) {
	case 0:
		w := strings.ToLower(words[rng.IntN(len(words))])
		return readmodel.TenantFilter{Query: w}, "q=" + w
	case 1:
		i := rng.IntN(1_000_000)
		_, name := tenantName(i)
		w := strings.ToLower(strings.Join(strings.Fields(name)[:2], " "))
		return readmodel.TenantFilter{Query: w}, "q=" + url.QueryEscape(w)
	case 2:
		return readmodel.TenantFilter{Plans: []string{"enterprise"}}, "plan=enterprise"
	case 3:
		return readmodel.TenantFilter{Plans: []string{"standard"}, Labels: []readmodel.Pair{{Key: "tier", Value: "gold"}, {Key: "env", Value: "prod"}}},
			"plan=standard&label=tier:gold&label=env:prod"
	default:
		i := rng.IntN(1000)
		return readmodel.TenantFilter{ExternalIDs: []readmodel.Pair{{Key: "billing", Value: fmt.Sprintf("cus_%d", i)}}}, fmt.Sprintf("external_id=billing:cus_%d", i)
	}
}

// benchSearch runs the same query mix through the API and directly through
// the reader's SQL, and compares their p99.
func benchSearch(ctx context.Context, o opts, core *boot.Core, dbURL string, pool *pgxpool.Pool) ([]row, error) {
	ln, issuer, stop, err := serveAPI(ctx, core, &boot.ReadSide{URL: dbURL, Pool: pool})
	if err != nil {
		return nil, err
	}
	defer stop()
	token, _ := issuer.Mint(auth.TokenRequest{Subject: "bench", Roles: []string{auth.RolePlatformAdmin}, TTL: time.Hour}, time.Now())
	reader := readmodel.NewReader(pool)
	const clients, perClient = 8, 60
	measure := func(op func(w int, rng *rand.Rand) error) (result, error) {
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		var firstErr error
		for w := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(w), 42))
				for range perClient {
					t := time.Now()
					err := op(w, rng)
					d := time.Since(t)
					mu.Lock()
					if err != nil && firstErr == nil {
						firstErr = err
					}
					lat = append(lat, d)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		slices.Sort(lat)
		return result{ops: int64(len(lat)), latencies: lat}, firstErr
	}
	// Warm the cache with the same mix first, so neither side pays for it.
	for i := range 200 {
		f, _ := searchQueries(rand.New(rand.NewPCG(uint64(i), 9)))
		if _, err := reader.ListTenants(ctx, f, readmodel.Page{Size: 50}); err != nil {
			return nil, err
		}
	}
	sqlRes, err := measure(func(_ int, rng *rand.Rand) error {
		f, _ := searchQueries(rng)
		_, err := reader.ListTenants(ctx, f, readmodel.Page{Size: 50})
		return err
	})
	if err != nil {
		return nil, err
	}
	apiClients := make([]*rawClient, clients)
	for i := range apiClients {
		apiClients[i] = newRawClient(ln, token)
	}
	apiRes, err := measure(func(w int, rng *rand.Rand) error {
		c := apiClients[w]
		_, q := searchQueries(rng)
		status, _, err := c.do("GET", "/v1/tenants?page_size=50&"+q, "application/json", nil, "")
		if err == nil && status != 200 {
			err = fmt.Errorf("GET /v1/tenants?%s: %d", q, status)
		}
		return err
	})
	for _, c := range apiClients {
		c.close()
	}
	if err != nil {
		return nil, err
	}
	ratio := float64(apiRes.pct(0.99)) / float64(sqlRes.pct(0.99))
	return []row{
		{name: fmt.Sprintf("search SQL over %d tenants (baseline)", o.tenants), value: fmt.Sprintf("p50 %s, p99 %s", ms(sqlRes.pct(0.5)), ms(sqlRes.pct(0.99))), baseline: "-", ratio: "1.00", target: "-", verdict: "-"},
		{name: fmt.Sprintf("GET /v1/tenants search over %d tenants", o.tenants), value: fmt.Sprintf("p50 %s, p99 %s", ms(apiRes.pct(0.5)), ms(apiRes.pct(0.99))),
			baseline: "SQL p99 " + ms(sqlRes.pct(0.99)), ratio: fmt.Sprintf("%.2f", ratio), target: "p99 <= 2x SQL", verdict: yes(ratio <= 2)},
	}, nil
}

// benchLag drives commands at a steady 1,000/s and measures how long each
// takes to show in the read model (from the append's acknowledgement to the
// projection's notification that it applied it).
func benchLag(ctx context.Context, o opts, core *boot.Core, dbURL string, pool *pgxpool.Pool) (row, error) {
	runners := boot.Projections(core, &boot.ReadSide{URL: dbURL, Pool: pool}).Runners(nil)
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Add(1)
		go func() { defer wg.Done(); _ = r.Run(rctx) }()
	}
	defer func() { cancel(); wg.Wait() }()
	waiter := readmodel.NewWaiter(dbURL, pool, logging.Discard())
	wg.Add(1)
	go func() { defer wg.Done(); _ = waiter.Run(rctx) }()

	// Tenants to change, and the projection caught up first.
	var ids []string
	meta := command.Meta{Actor: "bench"}
	for i := range 200 {
		res, err := core.Tenants.Create(ctx, domain.CreateTenant{Slug: fmt.Sprintf("lag-%d", i), DisplayName: "Lag", Plan: "standard", Isolation: "shared",
			Regions: domain.Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"}}, meta)
		if err != nil {
			return row{}, err
		}
		ids = append(ids, res.State.ID)
		if i == 199 {
			if _, err := waiter.Wait(ctx, "tenants", res.Seq, 5*time.Minute); err != nil {
				return row{}, fmt.Errorf("the projection did not catch up before the lag run: %w", err)
			}
		}
	}
	const rate, seconds = 1000, 10
	interval := time.Second / rate
	var mu sync.Mutex
	var lags []time.Duration
	var failed atomic.Int64
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var cmds sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := 0; i < rate*seconds; i++ {
		<-tick.C
		sem <- struct{}{}
		cmds.Add(1)
		go func() {
			defer cmds.Done()
			defer func() { <-sem }()
			v := fmt.Sprint(i)
			res, err := core.Tenants.Do(ctx, ids[i%len(ids)], domain.UpdateTenant{Labels: &domain.MapPatch{Values: map[string]*string{"n": &v}}}, meta)
			if err != nil {
				failed.Add(1)
				return
			}
			acked := time.Now()
			if _, err := waiter.Wait(ctx, "tenants", res.Seq, 10*time.Second); err != nil {
				failed.Add(1)
				return
			}
			mu.Lock()
			lags = append(lags, time.Since(acked))
			mu.Unlock()
		}()
	}
	cmds.Wait()
	slices.Sort(lags)
	res := result{latencies: lags}
	p99 := res.pct(0.99)
	return row{name: fmt.Sprintf("projection lag at %d commands/s for %ds", rate, seconds), value: fmt.Sprintf("p50 %s, p99 %s, failed %d", ms(res.pct(0.5)), ms(p99), failed.Load()),
		baseline: "-", ratio: "-", target: "p99 < 100ms", verdict: yes(p99 < 100*time.Millisecond && failed.Load() == 0)}, nil
}
