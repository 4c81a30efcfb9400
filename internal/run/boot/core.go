// Package boot is the start-up every service binary shares: its logger and
// trace export, the NATS connection, the event log with what signs, seals
// and decides on it (the core), the read side's database, and serving HTTP
// until the context ends. Each binary's own package (internal/run/...) adds
// what only it runs.
package boot

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/backoff"
	"github.com/tenancyhq/tenancy/internal/catalog"
	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/keyfile"
	"github.com/tenancyhq/tenancy/internal/keyring"
	"github.com/tenancyhq/tenancy/internal/natsconn"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// CoreOptions configure the parts every service shares.
type CoreOptions struct {
	Stream     string
	Replicas   int
	SigningKey ed25519.PrivateKey
	MasterKey  []byte
	Catalog    *domain.Catalog
	Log        *slog.Logger
	// Accounts, when set, lets operators issue administrator passwords.
	Accounts app.AdminAccounts
	// Clock defaults to time.Now.
	Clock func() time.Time
}

// Core is the event log and what signs, seals and decides on it.
type Core struct {
	NC          *nats.Conn
	JS          jetstream.JetStream
	Store       *eventstore.Store
	Signer      *events.Signer
	Keyring     *keyring.Keyring
	Catalog     *domain.Catalog
	Tenants     *app.Tenants
	SigningKeys *app.SigningKeys
	Log         *slog.Logger
	Opts        CoreOptions
}

// OpenCore ensures the stream and buckets exist, publishes the signing key
// and returns the shared parts.
func OpenCore(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, o CoreOptions) (*Core, error) {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if _, err := eventstore.EnsureStream(ctx, js, eventstore.StreamConfig{Name: o.Stream, Replicas: o.Replicas}); err != nil {
		return nil, err
	}
	signer, err := events.NewSigner(o.SigningKey)
	if err != nil {
		return nil, err
	}
	ring, err := keyring.Open(ctx, js, o.MasterKey, o.Replicas)
	if err != nil {
		return nil, err
	}
	c := &Core{NC: nc, JS: js, Store: eventstore.New(js, o.Stream), Signer: signer, Keyring: ring, Catalog: o.Catalog, Log: o.Log, Opts: o}
	c.SigningKeys = app.NewSigningKeys(c.CommandDeps())
	if err := c.SigningKeys.Register(ctx, signer); err != nil {
		return nil, fmt.Errorf("publish signing key: %w", err)
	}
	c.Tenants = app.NewTenants(app.TenantsOptions{Deps: c.CommandDeps(), Catalog: o.Catalog, Keys: ring, Accounts: o.Accounts, Log: o.Log})
	return c, nil
}

// CommandDeps returns what a command handler needs.
func (c *Core) CommandDeps() command.Deps {
	return command.Deps{Store: c.Store, Signer: c.Signer, Cipher: c.Keyring, Clock: c.Opts.Clock, NewID: app.NewID}
}

// CheckNATS is a readiness check: connected and the stream answers.
func (c *Core) CheckNATS(ctx context.Context) error {
	if !c.NC.IsConnected() {
		return fmt.Errorf("not connected to NATS (%s)", c.NC.Status())
	}
	_, err := c.Store.LastSeq(ctx)
	return err
}

// Close drains the core's NATS connection.
func (c *Core) Close() {
	if err := c.NC.Drain(); err != nil {
		c.NC.Close()
	}
}

// Connect connects to the configured NATS and opens the core: the wiring
// every separate service binary shares.
func Connect(ctx context.Context, cfg config.Service, name string, accounts app.AdminAccounts, log *slog.Logger) (*Core, error) {
	signKey, err := keyfile.SigningKey(cfg.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("TENANCY_SIGNING_KEY: %w", err)
	}
	master, err := keyfile.MasterKey(cfg.MasterKey)
	if err != nil {
		return nil, fmt.Errorf("TENANCY_MASTER_KEY: %w", err)
	}
	cat, err := catalog.Load(cfg.Catalog)
	if err != nil {
		return nil, fmt.Errorf("TENANCY_CATALOG: %w", err)
	}
	n := cfg.NATS
	nc, js, err := natsconn.Connect(natsconn.Options{URL: n.URL, Creds: n.Creds, TLSCA: n.TLSCA, TLSCert: n.TLSCert, TLSKey: n.TLSKey}, name, log)
	if err != nil {
		return nil, err
	}
	core, err := Await(ctx, log, "event log", func(ctx context.Context) (*Core, error) {
		return OpenCore(ctx, nc, js, CoreOptions{Stream: n.Stream, Replicas: n.Replicas, SigningKey: signKey, MasterKey: master, Catalog: cat, Accounts: accounts, Log: log})
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	return core, nil
}

// Await runs open until it succeeds, fails for another reason than JetStream
// starting up, or ctx ends. Services start alongside the cluster (compose, a
// Kubernetes rollout): while JetStream elects its leaders, or when
// concurrent creations of the same stream leave a request unanswered,
// waiting beats exiting.
func Await[T any](ctx context.Context, log *slog.Logger, what string, open func(context.Context) (T, error)) (T, error) {
	return backoff.Retry(ctx, backoff.Reconnect, natsconn.Transient, func(attempt int, err error) {
		log.Warn("JetStream is not ready yet; retrying", "setting_up", what, "attempt", attempt, "error", err)
	}, open)
}
