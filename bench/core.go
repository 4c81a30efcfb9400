package main

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"path/filepath"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/catalog"
	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/natsembed"
	"github.com/tenancyhq/tenancy/internal/run/boot"
)

// startCore starts an embedded JetStream server in a directory of its own
// under the run's temporary directory, connects to it over TCP (as the
// separate services do) and opens Tenancy's core on it with fresh keys.
func startCore(ctx context.Context, o opts, name string) (*boot.Core, jetstream.JetStream, func(), error) {
	ns, err := natsembed.Start(natsembed.Options{StoreDir: filepath.Join(o.dir, name)})
	if err != nil {
		return nil, nil, nil, err
	}
	stopServer := func() { ns.Shutdown(); ns.WaitForShutdown() }
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		stopServer()
		return nil, nil, nil, err
	}
	stop := func() { nc.Close(); stopServer() }
	js, _ := jetstream.New(nc)
	_, signKey, _ := ed25519.GenerateKey(crand.Reader)
	master := make([]byte, 32)
	_, _ = crand.Read(master)
	cat, _ := catalog.Load("")
	core, err := boot.OpenCore(ctx, nc, js, boot.CoreOptions{Stream: "TENANCY", Replicas: 1, SigningKey: signKey, MasterKey: master, Catalog: cat, Log: logging.Discard()})
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	// Tenants the benchmarks activate belong to the verified root
	// customer, as the standard plan's customer policy asks.
	if err := app.EnsureRootCustomer(ctx, core.Customers, command.Meta{}); err != nil {
		stop()
		return nil, nil, nil, err
	}
	return core, js, stop, nil
}
