// Package testrig is the one test rig of the tree: a core (the event log,
// its signer and keyring, the use cases) on an embedded JetStream with a
// temporary store, and, when asked, a throwaway PostgreSQL database with the
// read side's schema. Tests of every package that needs the system start
// here instead of wiring it themselves.
package testrig

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/catalog"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/run/boot"
	"github.com/tenancyhq/tenancy/internal/testenv"
)

// Options configure a rig.
type Options struct {
	// Database adds a throwaway read-side database, migrated.
	Database bool
	// Log receives the services' logs (default: discarded, or stderr when
	// TEST_LOG is set).
	Log *slog.Logger
	// Accounts lets the tenant use cases issue administrator passwords.
	Accounts app.AdminAccounts
	// Timeout bounds the rig's context (default 5 minutes).
	Timeout time.Duration
	// CustomerPolicy keeps the catalog's customer policy. Without it, the
	// rig's plans ask nothing of a tenant's customer, so that tests of
	// other behaviour activate tenants without making customers first.
	CustomerPolicy bool
	// RekycGrace, when set, replaces the catalog's re-KYC grace period
	// (tests cannot wait 30 days for a timer).
	RekycGrace time.Duration
}

// Rig is a running core.
type Rig struct {
	NATS     *testenv.NATS
	Core     *boot.Core
	ReadSide *boot.ReadSide
	// Ctx ends when the test does (or after the timeout).
	Ctx context.Context
	// SigningKey and MasterKey are the core's keys, for processes a test
	// starts on the same log.
	SigningKey ed25519.PrivateKey
	MasterKey  []byte
}

// Env returns the variables a service process needs to join the rig's log
// and read side.
func (r *Rig) Env() []string {
	env := []string{"NATS_URL=" + r.NATS.URL,
		"TENANCY_SIGNING_KEY=" + base64.RawURLEncoding.EncodeToString(r.SigningKey.Seed()),
		"TENANCY_MASTER_KEY=" + base64.RawURLEncoding.EncodeToString(r.MasterKey)}
	if r.ReadSide != nil {
		env = append(env, "DATABASE_URL="+r.ReadSide.URL)
	}
	return env
}

// New starts a rig that lives as long as the test.
func New(tb testing.TB, o Options) *Rig {
	tb.Helper()
	n := testenv.StartNATS(tb)
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	ctx := testenv.Context(tb, o.Timeout)
	r := &Rig{NATS: n, Ctx: ctx}
	_, r.SigningKey, _ = ed25519.GenerateKey(rand.Reader)
	r.MasterKey = make([]byte, 32)
	_, _ = rand.Read(r.MasterKey)
	r.Core = OpenCoreWith(tb, ctx, n, r.SigningKey, r.MasterKey, o)
	if o.Database {
		rs, err := boot.OpenReadSide(ctx, testenv.NewDatabase(tb), false, true)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(rs.Close)
		r.ReadSide = rs
	}
	return r
}

// OpenCoreWith opens a core with these keys and the default catalog on n.
func OpenCoreWith(tb testing.TB, ctx context.Context, n *testenv.NATS, signKey ed25519.PrivateKey, master []byte, o Options) *boot.Core {
	tb.Helper()
	cat, err := catalog.Load("")
	if err != nil {
		tb.Fatal(err)
	}
	if !o.CustomerPolicy {
		cat = cat.WithoutCustomerPolicy()
	}
	if o.RekycGrace > 0 {
		cat.SetRekycGrace(o.RekycGrace)
	}
	log := o.Log
	switch {
	case log != nil:
	case os.Getenv("TEST_LOG") != "":
		log = logging.New(os.Stderr, "test", logging.ParseLevel("debug"))
	default:
		log = logging.Discard()
	}
	core, err := boot.OpenCore(ctx, n.Conn, n.JS, boot.CoreOptions{Stream: "TENANCY", Replicas: 1, SigningKey: signKey, MasterKey: master,
		Catalog: cat, Accounts: o.Accounts, Log: log})
	if err != nil {
		tb.Fatal(err)
	}
	return core
}

// Projections returns the read side's use cases (the rig needs Database).
func (r *Rig) Projections() *app.Projections { return boot.Projections(r.Core, r.ReadSide) }

// Run runs fn in the background until the returned stop is called or the
// test ends, whichever is first; stop waits for fn to return.
func Run(tb testing.TB, fn func(ctx context.Context) error) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = fn(ctx)
	}()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	tb.Cleanup(stop)
	return stop
}
