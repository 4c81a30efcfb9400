package natsconn_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/natsconn"
)

func TestTransient(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"no meta leader yet", &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}, true},
		{"no suitable peers", fmt.Errorf("ensure: %w", &jetstream.APIError{Code: 500, Description: "insufficient resources"}), true},
		{"request unanswered", fmt.Errorf("keyring: %w", context.DeadlineExceeded), true},
		{"no responders", nats.ErrNoResponders, true},
		{"reconnecting", nats.ErrConnectionReconnecting, true},
		{"bad stream config", &jetstream.APIError{Code: 400, ErrorCode: 10058, Description: "stream name already in use with a different configuration"}, false},
		{"closed connection", nats.ErrConnectionClosed, false},
		{"anything else", errors.New("permission denied"), false},
		{"overloaded", &jetstream.APIError{Code: 429, Description: "too many requests"}, true},
		{"too many atomic batches", &jetstream.APIError{Code: 400, ErrorCode: natsconn.CodeAtomicTooManyInflight}, true},
		{"duplicate still being stored", fmt.Errorf("append: %w", &jetstream.APIError{Code: 400, ErrorCode: natsconn.CodeDuplicateMessageConflict}), true},
		{"someone else appended first", &jetstream.APIError{Code: 400, ErrorCode: natsconn.CodeWrongLastSequence}, false},
		{"disconnected", nats.ErrDisconnected, true},
	}
	for _, tt := range tests {
		if got := natsconn.Transient(tt.err); got != tt.want {
			t.Errorf("%s: Transient(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestHasCode(t *testing.T) {
	err := fmt.Errorf("append: %w", &jetstream.APIError{Code: 400, ErrorCode: natsconn.CodeWrongLastSequenceConstant})
	if !natsconn.HasCode(err, natsconn.CodeWrongLastSequence, natsconn.CodeWrongLastSequenceConstant) {
		t.Error("a wrapped API error's code is not found")
	}
	if natsconn.HasCode(err, natsconn.CodeAtomicBatchDuplicate) || natsconn.HasCode(errors.New("plain"), natsconn.CodeWrongLastSequence) {
		t.Error("HasCode matches a code the error does not carry")
	}
}
