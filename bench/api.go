package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/catalog"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/natsembed"
	"github.com/tenancyhq/tenancy/internal/run/api"
	"github.com/tenancyhq/tenancy/internal/run/boot"
)

func gomaxprocs() int { return runtime.GOMAXPROCS(0) }

// system is an embedded server plus the API on it, as `tenancy dev` runs.
type system struct {
	ns    *server.Server
	nc    *nats.Conn
	js    jetstream.JetStream
	core  *boot.Core
	url   string
	token string
	stop_ func()
}

func startSystem(ctx context.Context, dir string) (*system, error) {
	ns, err := natsembed.Start(natsembed.Options{StoreDir: filepath.Join(dir, "nats")})
	if err != nil {
		return nil, err
	}
	// A TCP client like every separate service, not an in-process pipe.
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	_, signKey, _ := ed25519.GenerateKey(rand.Reader)
	_, issuerKey, _ := ed25519.GenerateKey(rand.Reader)
	master := make([]byte, 32)
	_, _ = rand.Read(master)
	cat, err := catalog.Load("")
	if err != nil {
		return nil, err
	}
	core, err := boot.OpenCore(ctx, nc, js, boot.CoreOptions{Stream: "TENANCY", Replicas: 1, SigningKey: signKey, MasterKey: master, Catalog: cat, Log: logging.Discard()})
	if err != nil {
		return nil, err
	}
	_ = issuerKey
	addr, issuer, stop, err := serveAPI(ctx, core, nil)
	if err != nil {
		return nil, err
	}
	token, err := issuer.Mint(auth.TokenRequest{Subject: "bench", Roles: []string{auth.RolePlatformAdmin}, TTL: time.Hour}, time.Now())
	if err != nil {
		return nil, err
	}
	return &system{ns: ns, nc: nc, js: js, core: core, url: "http://" + addr, token: token, stop_: stop}, nil
}

// serveAPI serves the API on core (and a read side, if any) on a loopback
// port, with a dev issuer for tokens.
func serveAPI(ctx context.Context, core *boot.Core, rs *boot.ReadSide) (string, *auth.DevIssuer, func(), error) {
	_, issuerKey, _ := ed25519.GenerateKey(rand.Reader)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, nil, err
	}
	url := "http://" + ln.Addr().String()
	issuer := auth.NewDevIssuer(url+auth.DevIssuerPath, "tenancy", issuerKey)
	authn, err := auth.New(auth.Config{IssuerURL: issuer.Issuer(), Audience: "tenancy"})
	if err != nil {
		return "", nil, nil, err
	}
	a, err := api.New(ctx, core, api.Options{Auth: authn, Mounts: map[string]http.Handler{auth.DevIssuerPath: issuer.Handler()}, ReadSide: rs})
	if err != nil {
		return "", nil, nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 2)
	go func() { done <- boot.Serve(sctx, ln, a.Handler(), logging.Discard()) }()
	go func() { done <- a.Run(sctx) }()
	return ln.Addr().String(), issuer, func() { cancel(); <-done; <-done }, nil
}

func (s *system) stop() {
	s.stop_()
	s.nc.Close()
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// result of a closed-loop load run.
type result struct {
	ops       int64
	errors    int64
	elapsed   time.Duration
	latencies []time.Duration
}

func (r result) rate() float64 { return float64(r.ops) / r.elapsed.Seconds() }

func (r result) pct(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(p * float64(len(r.latencies)-1))
	return r.latencies[i]
}

// closedLoop runs op from n goroutines for d and collects latencies.
func closedLoop(ctx context.Context, n int, d time.Duration, op func(worker, i int) error) result {
	var ops, errs atomic.Int64
	lat := make([][]time.Duration, n)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				t := time.Now()
				if err := op(w, i); err != nil {
					errs.Add(1)
					continue
				}
				lat[w] = append(lat[w], time.Since(t))
				ops.Add(1)
			}
		}()
	}
	wg.Wait()
	r := result{ops: ops.Load(), errors: errs.Load(), elapsed: time.Since(start)}
	for _, l := range lat {
		r.latencies = append(r.latencies, l...)
	}
	slices.Sort(r.latencies)
	return r
}

func benchAPI(ctx context.Context, o opts) ([]row, error) {
	sys, err := startSystem(ctx, o.dir)
	if err != nil {
		return nil, err
	}
	defer sys.stop()

	// Baseline: synchronous JetStream publishes on the same server.
	if _, err := sys.js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"bench.>"}, Storage: jetstream.FileStorage}); err != nil {
		return nil, err
	}
	payload := bytes.Repeat([]byte("x"), 600)
	raw := closedLoop(ctx, o.clients, o.duration, func(w, i int) error {
		_, err := sys.js.Publish(ctx, fmt.Sprintf("bench.raw.%d", w), payload)
		return err
	})

	addr := strings.TrimPrefix(sys.url, "http://")
	clients := make([]*rawClient, o.clients)
	for w := range clients {
		clients[w] = newRawClient(addr, sys.token)
	}
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	call := func(w int, method, path, contentType string, body []byte, header string) (string, error) {
		status, v, err := clients[w].do(method, path, contentType, body, header)
		if err == nil && status >= 300 {
			err = fmt.Errorf("%s %s: %d", method, path, status)
		}
		return v, err
	}
	createBody := func(slug string) []byte {
		return []byte(`{"slug":"` + slug + `","display_name":"Bench ` + slug + `","plan":"standard","regions":{"allowed":["eu-west-1","eu-central-1"],"preferred":"eu-west-1"},"isolation":"shared","contacts":[{"role":"billing","name":"A. Person","email":"billing@acme.test"}],"external_ids":{"billing":"cus-` + slug + `"},"labels":{"env":"prod"}}`)
	}
	creates := closedLoop(ctx, o.clients, o.duration, func(w, i int) error {
		_, err := call(w, "POST", "/v1/tenants", "application/json", createBody(fmt.Sprintf("b%d-%d", w, i)), "")
		return err
	})

	// Customers: a business with every fiscal id, so that each create
	// checks, seals and blind-indexes them.
	customerBody := []byte(`{"kind":"business","legal_name":"Bench Private Limited","display_name":"Bench","email":"accounts@bench.test",` +
		`"address":{"line1":"1 Marine Drive","city":"Mumbai","country":"IN"},"fiscal_ids":{"pan":"AAACA1234C","tan":"MUMA12345B","gstin":"27AAACA1234C1ZG"}}`)
	customers := closedLoop(ctx, o.clients, o.duration, func(w, i int) error {
		_, err := call(w, "POST", "/v1/customers", "application/json", customerBody, "")
		return err
	})

	// Patches: each client updates its own tenant, so the figure is the
	// write path's cost rather than contention's.
	ids := make([]string, o.clients)
	for w := range o.clients {
		loc, err := call(w, "POST", "/v1/tenants", "application/json", createBody(fmt.Sprintf("patch-%d", w)), "Location")
		if err != nil {
			return nil, err
		}
		ids[w] = loc
	}
	patches := closedLoop(ctx, o.clients, o.duration, func(w, i int) error {
		_, err := call(w, "PATCH", ids[w], "application/merge-patch+json", []byte(fmt.Sprintf(`{"labels":{"n":"v%d"}}`, i)), "")
		return err
	})

	users, batches, err := benchUsers(ctx, o, call, ids)
	if err != nil {
		return nil, err
	}
	rows := apiRows(raw.rate(), []namedResult{{"API POST /v1/tenants (create)", creates},
		{"API POST /v1/customers (create, fiscal ids sealed and indexed)", customers}, {"API PATCH /v1/tenants/{id}", patches},
		{"API POST /v1/tenants/{id}/users (create, personal data sealed under its own key)", users}})
	return append(rows, batchRow(raw.rate(), batches)), nil
}

// benchUsers creates users one POST at a time and then in batches of 500,
// each client in a tenant of its own (tenants' directories are
// independent; one tenant's commands take turns).
func benchUsers(ctx context.Context, o opts, call func(int, string, string, string, []byte, string) (string, error), tenants []string) (result, result, error) {
	single := closedLoop(ctx, o.clients, o.duration, func(w, i int) error {
		body := fmt.Sprintf(`{"username":"single-%d","email":"single-%d@bench.test","first_name":"Bench","last_name":"User","roles":["tenant-viewer"]}`, i, i)
		_, err := call(w, "POST", tenants[w]+"/users", "application/json", []byte(body), "")
		return err
	})
	// An import sends its batches one after another; a few importers at
	// once is a busy platform.
	batch := closedLoop(ctx, min(o.clients, importers), o.duration, func(w, i int) error {
		var b strings.Builder
		b.WriteString(`{"users":[`)
		for r := range batchRows {
			if r > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"username":"batch-%d-%d","email":"batch-%d-%d@bench.test","first_name":"Bench","last_name":"User"}`, i, r, i, r)
		}
		b.WriteString(`]}`)
		_, err := call(w, "POST", tenants[w]+"/users/batch", "application/json", []byte(b.String()), "")
		return err
	})
	return single, batch, nil
}

// batchRows is how many users one batch call carries; importers how many
// imports run at once.
const (
	batchRows = 500
	importers = 4
)

// batchRow reports the batch route in users accepted per second (appended
// to the log; Keycloak follows asynchronously).
func batchRow(rawRate float64, r result) row {
	rate := r.rate() * batchRows
	ratio := rate / rawRate
	return row{
		name:     fmt.Sprintf("API POST /v1/tenants/{id}/users/batch (%d users a call, %d importers)", batchRows, importers),
		value:    fmt.Sprintf("%.0f users/s, p50 %s, p99 %s a call, errors %d", rate, ms(r.pct(0.50)), ms(r.pct(0.99)), r.errors),
		baseline: fmt.Sprintf("%.0f msg/s", rawRate),
		ratio:    fmt.Sprintf("%.2f", ratio),
		target:   ">= 0.1x",
		verdict:  yes(ratio >= 0.1 && r.errors == 0),
	}
}

// namedResult is one API measurement.
type namedResult struct {
	name string
	r    result
}

// apiRows are the API suite's table: the baseline, then each measurement
// as a ratio to it.
func apiRows(rawRate float64, results []namedResult) []row {
	rows := []row{{name: "JetStream sync publish (baseline)", value: fmt.Sprintf("%.0f msg/s", rawRate), baseline: "-", ratio: "1.00", target: "-", verdict: "-"}}
	for _, m := range results {
		ratio := m.r.rate() / rawRate
		rows = append(rows, row{
			name:     m.name,
			value:    fmt.Sprintf("%.0f cmd/s, p50 %s, p99 %s, errors %d", m.r.rate(), ms(m.r.pct(0.50)), ms(m.r.pct(0.99)), m.r.errors),
			baseline: fmt.Sprintf("%.0f msg/s", rawRate),
			ratio:    fmt.Sprintf("%.2f", ratio),
			target:   ">= 0.25x, p99 < 25ms",
			verdict:  yes(ratio >= 0.25 && m.r.pct(0.99) < 25*time.Millisecond && m.r.errors == 0),
		})
	}
	return rows
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }
