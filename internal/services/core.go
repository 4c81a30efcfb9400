// Package services assembles Tenancy's runnable services (API, projector,
// provisioner, webhooker) from their parts, once, for both the separate
// binaries and `tenancy dev`, which runs them all in one process.
package services

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/catalog"
	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/keyring"
	"github.com/tenancyhq/tenancy/internal/natsconn"
	"github.com/tenancyhq/tenancy/internal/signing"
	"github.com/tenancyhq/tenancy/internal/tenants"
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
	// Clock defaults to time.Now.
	Clock func() time.Time
}

// Core is the event log and what signs, seals and decides on it.
type Core struct {
	NC      *nats.Conn
	JS      jetstream.JetStream
	Store   *eventstore.Store
	Signer  *events.Signer
	Keyring *keyring.Keyring
	Catalog *domain.Catalog
	Tenants *tenants.Service
	Log     *slog.Logger
	opts    CoreOptions
}

// NewID returns a new UUIDv7 string.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

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
	c := &Core{NC: nc, JS: js, Store: eventstore.New(js, o.Stream), Signer: signer, Keyring: ring, Catalog: o.Catalog, Log: o.Log, opts: o}
	if err := signing.NewRegistry(c.CommandDeps()).Register(ctx, signer); err != nil {
		return nil, fmt.Errorf("publish signing key: %w", err)
	}
	c.Tenants = tenants.New(c.CommandDeps(), o.Catalog, ring, o.Log)
	return c, nil
}

// CommandDeps returns what a command handler needs.
func (c *Core) CommandDeps() command.Deps {
	return command.Deps{Store: c.Store, Signer: c.Signer, Cipher: c.Keyring, Clock: c.opts.Clock, NewID: NewID}
}

// EventKeys reads the verification keys from the log.
func (c *Core) EventKeys(ctx context.Context) (*events.KeySet, error) {
	return signing.Keys(ctx, c.Store)
}

// CheckNATS is a readiness check: connected and the stream answers.
func (c *Core) CheckNATS(ctx context.Context) error {
	if !c.NC.IsConnected() {
		return fmt.Errorf("not connected to NATS (%s)", c.NC.Status())
	}
	_, err := c.Store.LastSeq(ctx)
	return err
}

// Serve serves h on ln until ctx ends, then shuts down gracefully, letting
// requests in flight finish.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("serving HTTP", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("HTTP shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ListenAndServe listens on addr and serves h there until ctx ends.
func ListenAndServe(ctx context.Context, addr string, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return Serve(ctx, ln, h, log)
}

// Secrets and policy a service is configured with.
type Secrets struct {
	SigningKey string
	MasterKey  string
	Catalog    string
}

// ConnectCore connects to the configured NATS and opens the core: the
// wiring every separate service binary shares.
func ConnectCore(ctx context.Context, n config.NATS, s Secrets, name string, log *slog.Logger) (*Core, error) {
	signKey, err := signing.ParseKey(s.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("TENANCY_SIGNING_KEY: %w", err)
	}
	master, err := keyring.ParseMasterKey(s.MasterKey)
	if err != nil {
		return nil, fmt.Errorf("TENANCY_MASTER_KEY: %w", err)
	}
	cat, err := catalog.Load(s.Catalog)
	if err != nil {
		return nil, fmt.Errorf("TENANCY_CATALOG: %w", err)
	}
	nc, js, err := natsconn.Connect(natsconn.Options{URL: n.URL, Creds: n.Creds, TLSCA: n.TLSCA, TLSCert: n.TLSCert, TLSKey: n.TLSKey}, name, log)
	if err != nil {
		return nil, err
	}
	core, err := awaitJetStream(ctx, log, "event log", func(ctx context.Context) (*Core, error) {
		return OpenCore(ctx, nc, js, CoreOptions{Stream: n.Stream, Replicas: n.Replicas, SigningKey: signKey, MasterKey: master, Catalog: cat, Log: log})
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	return core, nil
}

// awaitJetStream runs open until it succeeds, fails for another reason than
// JetStream starting up, or ctx ends. Services start alongside the cluster
// (compose, a Kubernetes rollout): while JetStream elects its leaders, or
// when concurrent creations of the same stream leave a request unanswered,
// waiting beats exiting.
func awaitJetStream[T any](ctx context.Context, log *slog.Logger, what string, open func(context.Context) (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		v, err := open(ctx)
		if err == nil || !jetStreamStarting(err) || ctx.Err() != nil {
			return v, err
		}
		log.Warn("JetStream is not ready yet; retrying", "setting_up", what, "attempt", attempt, "error", err)
		select {
		case <-time.After(min(time.Duration(attempt)*500*time.Millisecond, 5*time.Second)):
		case <-ctx.Done():
			return v, err
		}
	}
}

// jetStreamStarting reports whether err is what JetStream answers while it
// is unreachable or electing leaders, rather than a configuration problem.
func jetStreamStarting(err error) bool {
	return natsconn.Transient(err) || errors.Is(err, eventstore.ErrUnavailable)
}

// Close drains the core's NATS connection.
func (c *Core) Close() {
	if err := c.NC.Drain(); err != nil {
		c.NC.Close()
	}
}
