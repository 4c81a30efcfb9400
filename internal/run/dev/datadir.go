package dev

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/natsconn"
	"github.com/tenancyhq/tenancy/internal/natsembed"
)

// LockFile is held by a running `tenancy dev` (and by offline CLI access)
// so that two processes never open one JetStream store.
const LockFile = "dev.lock"

// ErrDataDirBusy reports a data directory another process has open.
var ErrDataDirBusy = errors.New("data directory in use")

// LockDataDir takes the data directory's exclusive lock, without waiting.
func LockDataDir(dataDir string) (release func(), err error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dataDir, LockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s is held by another tenancy process", ErrDataDirBusy, dataDir)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// Log is the event log opened for a CLI command.
type Log struct {
	Store *eventstore.Store
	JS    jetstream.JetStream
	NC    *nats.Conn
	// Where says how it was reached, for messages.
	Where string
	close func()
}

// Close releases the connection (and the offline server).
func (l *Log) Close() { l.close() }

// OpenLog reaches the event log for a CLI command: NATS_URL when set;
// otherwise the `tenancy dev` running on the data directory; otherwise the
// stopped data directory itself, through an embedded server of its own.
func OpenLog(ctx context.Context, get config.Getenv, dataDir string) (*Log, error) {
	stream := get("TENANCY_STREAM")
	if stream == "" {
		stream = eventstore.DefaultStream
	}
	open := func(nc *nats.Conn, where string, closer func()) (*Log, error) {
		js, err := jetstream.New(nc)
		if err != nil {
			closer()
			return nil, err
		}
		return &Log{Store: eventstore.New(js, stream), JS: js, NC: nc, Where: where, close: closer}, nil
	}
	if url := get("NATS_URL"); url != "" {
		r := natsconn.Options{URL: url, Creds: get("NATS_CREDS"), User: get("NATS_USER"), Password: get("NATS_PASSWORD"), InboxPrefix: get("NATS_INBOX_PREFIX"), TLSCA: get("NATS_TLS_CA"), TLSCert: get("NATS_TLS_CERT"), TLSKey: get("NATS_TLS_KEY")}
		nc, _, err := natsconn.Connect(r, "tenancy-cli", logging.Discard())
		if err != nil {
			return nil, err
		}
		return open(nc, "NATS at "+url, nc.Close)
	}
	release, err := LockDataDir(dataDir)
	usersFile := filepath.Join(dataDir, NATSUsersFile)
	if errors.Is(err, ErrDataDirBusy) {
		// A `tenancy dev` is running: use its server, as its service user.
		users, uerr := natsembed.LoadUsers(usersFile)
		if uerr != nil {
			return nil, fmt.Errorf("%w, but %w; set NATS_URL", err, uerr)
		}
		b, rerr := os.ReadFile(filepath.Join(dataDir, NATSURLFile))
		if rerr != nil {
			return nil, fmt.Errorf("%w, but it published no NATS address (%v); set NATS_URL", err, rerr)
		}
		url := strings.TrimSpace(string(b))
		nc, cerr := nats.Connect(url, nats.Name("tenancy-cli"), nats.Timeout(5*time.Second), nats.UserInfo(natsembed.ServiceUser, users.Service))
		if cerr != nil {
			return nil, fmt.Errorf("the running tenancy dev's NATS at %s: %w", url, cerr)
		}
		return open(nc, "the running tenancy dev ("+url+")", nc.Close)
	}
	if err != nil {
		return nil, err
	}
	storeDir := filepath.Join(dataDir, NATSDir)
	if _, serr := os.Stat(storeDir); serr != nil {
		release()
		return nil, fmt.Errorf("no event log in %s (run `tenancy dev` first, or set NATS_URL): %w", dataDir, serr)
	}
	// The directory is ours (locked): a store from before the users file
	// gets one.
	users, err := natsembed.LoadOrCreateUsers(usersFile)
	if err != nil {
		release()
		return nil, err
	}
	ns, err := natsembed.Start(natsembed.Options{StoreDir: storeDir, Listen: "127.0.0.1:0", Name: "tenancy-dev", Users: users})
	if err != nil {
		release()
		return nil, err
	}
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns), nats.UserInfo(natsembed.ServiceUser, users.Service))
	if err != nil {
		ns.Shutdown()
		release()
		return nil, err
	}
	return open(nc, "the stopped data directory "+dataDir+" (offline)", func() {
		nc.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
		release()
	})
}
