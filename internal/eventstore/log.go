package eventstore

import (
	"context"

	"github.com/tenancyhq/tenancy/pkg/domain"
)

// Log is the event log's contract: what the write path and the readers rely
// on, whatever stores the log. Store (JetStream) implements it; the suite in
// eventstore/storetest checks an implementation against it:
//
//   - Append stores a batch atomically (all or nothing) and returns the
//     stream sequence of its last message; a message whose CheckSeq
//     expectation fails fails the whole batch with ErrWrongSequence; a
//     batch retried with the same MsgIDs is stored once and returns the
//     same sequence.
//   - Sequences are positive, strictly increasing and never reused.
//   - Reads return messages in sequence order, filtered by subject (NATS
//     wildcards), from a sequence on; Get of a sequence that holds nothing
//     is ErrNotFound.
//   - LastMatching's head is at least the stream's last sequence before the
//     call, and no message matching its filter up to head is newer than
//     its last.
//   - Claims written by Append (ClaimChanges) are read back by ReadClaims.
type Log interface {
	Append(ctx context.Context, msgs []Outgoing) (uint64, error)
	Read(ctx context.Context, filter string, from uint64, max int) ([]Message, bool, error)
	ReadAll(ctx context.Context, filter string, from uint64) ([]Message, error)
	Get(ctx context.Context, seq uint64) (*Message, error)
	LastSeq(ctx context.Context) (uint64, error)
	LastFor(ctx context.Context, subjects []string) (map[string]Message, error)
	LastMatching(ctx context.Context, filter string) (last, head uint64, err error)
	ReadClaims(ctx context.Context, claims []domain.Claim) (map[string]ClaimState, error)
}

var _ Log = (*Store)(nil)
