// Package natsembed runs the NATS server (the version pinned in go.mod)
// inside the process, with JetStream on a store directory: the event log of
// `tenancy dev` and of the tests.
package natsembed

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure an embedded server.
type Options struct {
	// StoreDir holds JetStream's files; it survives restarts.
	StoreDir string
	// Listen is host:port for clients; port 0 picks a free one. Empty means
	// 127.0.0.1 on a free port.
	Listen string
	// Name is the server name (stable names keep JetStream's identity).
	Name string
	// ClusterName, ClusterListen and Routes form a JetStream cluster.
	ClusterName   string
	ClusterListen string
	Routes        []string
	// Users, when set, requires every client to log in as one of them.
	Users *Users
}

// Start runs a server and waits until it accepts connections.
func Start(o Options) (*server.Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("natsembed: a store directory is required")
	}
	host, port := "127.0.0.1", -1
	if o.Listen != "" {
		h, n, err := hostPort("listen", o.Listen)
		if err != nil {
			return nil, err
		}
		host, port = h, n
		if port == 0 {
			port = -1
		}
	}
	opts := &server.Options{
		ServerName: o.Name,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		// Tenancy appends most commands as small atomic batches; allow as
		// many in flight as there can be concurrent commands.
		JetStreamLimits: server.JSLimitOpts{MaxBatchInflightPerStream: 1000, MaxBatchInflightTotal: 4000},
	}
	if o.Users != nil {
		opts.Users = o.Users.serverUsers()
	}
	if o.ClusterName != "" {
		ch, n, err := hostPort("cluster listen", o.ClusterListen)
		if err != nil {
			return nil, err
		}
		opts.Cluster = server.ClusterOpts{Name: o.ClusterName, Host: ch, Port: n}
		for _, r := range o.Routes {
			u := server.RoutesFromStr(r)
			if len(u) == 0 {
				return nil, fmt.Errorf("natsembed: route %q is not a nats-route URL", r)
			}
			opts.Routes = append(opts.Routes, u...)
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("natsembed: server did not become ready within 30s")
	}
	return s, nil
}

// hostPort splits a host:port address with a numeric port; what names the
// option in errors.
func hostPort(what, addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("natsembed: %s address %q: %w", what, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("natsembed: %s port %q: %w", what, p, err)
	}
	return h, n, nil
}
