// Package natsconn connects to NATS JetStream with the reconnect behaviour
// long-running services need, and says what JetStream's errors mean: the
// named API error codes Tenancy reacts to, and the one rule for which
// failures are worth retrying.
package natsconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options say how to reach NATS.
type Options struct {
	// URL is one server URL, or several comma-separated (a cluster).
	URL   string
	Creds string
	// User and Password log in as a user of the server's configuration.
	User, Password string
	// InboxPrefix replaces _INBOX for replies (a read-only user may only
	// listen on its own prefix).
	InboxPrefix string
	TLSCA       string
	TLSCert     string
	TLSKey      string
}

// Connect dials o.URL and returns the connection and its JetStream context.
// The connection reconnects forever: a service outlives a NATS node
// restart.
func Connect(o Options, name string, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS", "error", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("reconnected to NATS", "server", c.ConnectedUrlRedacted()) }),
	}
	if o.Creds != "" {
		opts = append(opts, nats.UserCredentials(o.Creds))
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(o.InboxPrefix))
	}
	if o.TLSCA != "" {
		opts = append(opts, nats.RootCAs(o.TLSCA))
	}
	if o.TLSCert != "" {
		opts = append(opts, nats.ClientCert(o.TLSCert, o.TLSKey))
	}
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", o.URL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("JetStream: %w", err)
	}
	return nc, js, nil
}

// JetStream API error codes Tenancy reacts to, as nats-server's errors.json
// names them.
const (
	// CodeWrongLastSequence: an expected-last-(subject-)sequence check
	// failed; someone else appended first.
	CodeWrongLastSequence = jetstream.JSErrCodeStreamWrongLastSequence
	// CodeWrongLastSequenceConstant is CodeWrongLastSequence as replicated
	// (R>1) streams report it.
	CodeWrongLastSequenceConstant = jetstream.JSErrCodeStreamWrongLastSequenceConstant
	// CodeDuplicateMessageConflict (JSStreamDuplicateMessageConflict): a
	// message with the same id is still being stored.
	CodeDuplicateMessageConflict jetstream.ErrorCode = 10158
	// CodeAtomicBatchDuplicate (JSAtomicPublishContainsDuplicateMessageErr):
	// an atomic batch repeats messages already stored.
	CodeAtomicBatchDuplicate jetstream.ErrorCode = 10201
	// CodeAtomicTooManyInflight (JSAtomicPublishTooManyInflight): the server
	// has too many atomic batches in flight.
	CodeAtomicTooManyInflight jetstream.ErrorCode = 10210
	// CodeBatchTooManyInflight (JSBatchPublishTooManyInflight): likewise for
	// plain batches.
	CodeBatchTooManyInflight jetstream.ErrorCode = 10211
)

// HasCode reports whether err carries a JetStream API error with one of
// codes.
func HasCode(err error, codes ...jetstream.ErrorCode) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	for _, c := range codes {
		if apiErr.ErrorCode == c {
			return true
		}
	}
	return false
}

// Transient reports whether err is what JetStream answers while it is
// unreachable, overloaded or electing leaders (no responders, timeouts,
// 503s and 429s, a cluster's transient 500s, too many batches in flight), as
// opposed to a refusal or a configuration problem that retrying cannot
// mend. A closed connection is not transient: it never reopens.
//
// This is the tree's one such rule: the event store, the consumer loop and
// every start-up wait use it.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	if HasCode(err, CodeDuplicateMessageConflict, CodeAtomicTooManyInflight, CodeBatchTooManyInflight) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.Code == 503 || apiErr.Code == 500 || apiErr.Code == 429) {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrDisconnected) || errors.Is(err, jetstream.ErrNoStreamResponse)
}
