// Package testenv gives tests the real parts they run against: an embedded
// JetStream server per test on a temporary store, and a throwaway PostgreSQL
// database per test package.
package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/natsembed"
)

// NATS is one embedded JetStream server and a client connection to it.
type NATS struct {
	Server *server.Server
	Conn   *nats.Conn
	JS     jetstream.JetStream
	URL    string
	Dir    string
}

// StartNATS runs an embedded JetStream server on a random port with its
// store in a temporary directory, stopped when the test ends.
func StartNATS(tb testing.TB) *NATS {
	tb.Helper()
	return StartNATSIn(tb, tb.TempDir())
}

// StartNATSIn is StartNATS on a given store directory (to restart a server
// on the same data).
func StartNATSIn(tb testing.TB, dir string) *NATS {
	tb.Helper()
	s, err := natsembed.Start(natsembed.Options{StoreDir: dir})
	if err != nil {
		tb.Fatal(err)
	}
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		s.Shutdown()
		tb.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	n := &NATS{Server: s, Conn: nc, JS: js, URL: s.ClientURL(), Dir: dir}
	tb.Cleanup(n.Stop)
	return n
}

// Stop shuts the server down (idempotent).
func (n *NATS) Stop() {
	n.Conn.Close()
	n.Server.Shutdown()
	n.Server.WaitForShutdown()
}

// Context returns a context cancelled when the test ends or after d.
func Context(tb testing.TB, d time.Duration) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}
