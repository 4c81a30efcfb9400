// Package boot is the start-up every service binary shares: its logger and
// trace export, the NATS connection, the event log with what signs, seals
// and decides on it (the core), the read side's database, and serving HTTP
// until the context ends. Each binary's own package (internal/run/...) adds
// what only it runs.
package boot

import (
	"context"
	"crypto/ed25519"
	"errors"
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
	"github.com/tenancyhq/tenancy/internal/consume"
	"github.com/tenancyhq/tenancy/internal/delivery/secrets"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/integrity"
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
	NC        *nats.Conn
	JS        jetstream.JetStream
	Store     *eventstore.Store
	Signer    *events.Signer
	Keyring   *keyring.Keyring
	Catalog   *domain.Catalog
	Tenants   *app.Tenants
	Customers *app.Customers
	// Directory manages what is inside each tenant: users, clients, org
	// units and memberships.
	Directory *app.Directory
	// ClientSecrets keeps tenants' client secrets, encrypted.
	ClientSecrets *secrets.Store
	SigningKeys   *app.SigningKeys
	// Checker checks every event the process reads; Quarantine records the
	// messages that fail.
	Checker    *integrity.Checker
	Quarantine *integrity.Quarantine
	Integrity  *app.Integrity
	Log        *slog.Logger
	Opts       CoreOptions
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
	quarantine, err := integrity.OpenQuarantine(ctx, js, o.Replicas, o.Log, o.Clock)
	if err != nil {
		return nil, err
	}
	store := eventstore.New(js, o.Stream)
	checker := integrity.NewLogChecker(store)
	c := &Core{NC: nc, JS: js, Store: store, Signer: signer, Keyring: ring, Catalog: o.Catalog, Checker: checker, Quarantine: quarantine, Log: o.Log, Opts: o}
	c.SigningKeys = app.NewSigningKeys(c.CommandDeps())
	if err := c.SigningKeys.Register(ctx, signer); err != nil {
		return nil, fmt.Errorf("publish signing key: %w", err)
	}
	c.Integrity = app.NewIntegrity(c.CommandDeps(), quarantine)
	c.Customers = app.NewCustomers(app.CustomersOptions{Deps: c.CommandDeps(), Catalog: o.Catalog, Index: ring, Keys: ring, Log: o.Log})
	c.Tenants = app.NewTenants(app.TenantsOptions{Deps: c.CommandDeps(), Catalog: o.Catalog, Keys: ring, Accounts: o.Accounts, Customers: c.Customers, Log: o.Log})
	clientSecrets, err := secrets.OpenBucket(ctx, js, ring, o.Replicas, secrets.ClientBucket, "tenants' client secrets, encrypted under the master key")
	if err != nil {
		return nil, err
	}
	c.ClientSecrets = clientSecrets
	c.Directory = app.NewDirectory(app.DirectoryOptions{Deps: c.CommandDeps(), Index: ring, Keys: ring, Prepare: ring, Secrets: clientSecrets,
		Tenants: c.Tenants, Accounts: o.Accounts, Log: o.Log})
	return c, nil
}

// CommandDeps returns what a command handler needs.
func (c *Core) CommandDeps() command.Deps {
	return command.Deps{Store: c.Store, Signer: c.Signer, Cipher: c.Keyring, Clock: c.Opts.Clock, NewID: app.NewID,
		Checker: c.Checker, Quarantine: c.quarantine("command"), Log: c.Log}
}

// Reader returns a new integrity reader for one consumer of the log: each
// consumer follows the aggregates' chains from its own place in the log.
func (c *Core) Reader() *integrity.Reader { return integrity.NewReader(c.Checker, c.Store, 0) }

// Quarantined returns the poison handler of a consumer named reader: the
// message is quarantined (recorded, counted, logged at ERROR) and the
// consumer goes on without it. A record that cannot be written ends the
// consumer's session instead, so the message is read again rather than
// passed over unrecorded.
func (c *Core) Quarantined(reader string) func(context.Context, *consume.Message, error) error {
	return func(ctx context.Context, m *consume.Message, err error) error {
		v, ok := err.(*integrity.Violation)
		if !ok {
			v = &integrity.Violation{Seq: m.Seq, Subject: m.Subject, Reason: "not-an-event", Err: err}
		}
		if v.Seq == 0 {
			v.Seq = m.Seq
		}
		return c.Quarantine.Record(ctx, v, reader)
	}
}

// quarantine returns the command side's hook recording violations found by
// reader; the command is refused either way, so a failure to record is
// only logged.
func (c *Core) quarantine(reader string) func(context.Context, *integrity.Violation) {
	return func(ctx context.Context, v *integrity.Violation) {
		if err := c.Quarantine.Record(ctx, v, reader); err != nil {
			c.Log.ErrorContext(ctx, "cannot record a quarantined message", "seq", v.Seq, "error", err)
		}
	}
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
	nc, js, err := natsconn.Connect(natsconn.Options{URL: n.URL, Creds: n.Creds, User: n.User, Password: n.Password, InboxPrefix: n.InboxPrefix, TLSCA: n.TLSCA, TLSCert: n.TLSCert, TLSKey: n.TLSKey}, name, log)
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

// startingUp reports whether err is what a JetStream cluster answers while
// it starts: besides the transient NATS errors, a direct get that nobody
// serves yet (a 503 from a stream whose replicas have not all caught up).
func startingUp(err error) bool {
	return natsconn.Transient(err) || errors.Is(err, eventstore.ErrUnavailable)
}

// Await runs open until it succeeds, fails for another reason than JetStream
// starting up, or ctx ends. Services start alongside the cluster (compose, a
// Kubernetes rollout): while JetStream elects its leaders, or when
// concurrent creations of the same stream leave a request unanswered,
// waiting beats exiting.
func Await[T any](ctx context.Context, log *slog.Logger, what string, open func(context.Context) (T, error)) (T, error) {
	return backoff.Retry(ctx, backoff.Reconnect, startingUp, func(attempt int, err error) {
		log.Warn("JetStream is not ready yet; retrying", "setting_up", what, "attempt", attempt, "error", err)
	}, open)
}
