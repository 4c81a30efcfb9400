// Package integrity is the one path every reader of the event log checks
// what it reads through: the command side folding an aggregate, the
// projector, the provisioner, the webhooker and `tenancy verify`.
//
// For every message it checks the CloudEvents structure and canonical form,
// the Ed25519 signature against the keys registered in the log (a retired
// key only for events stored before its retirement), and the message's place
// in its aggregate's hash chain: the next aggversion, a prevhash naming the
// previous event, not the previous event's id again. A message that fails
// is a *Violation. A message operators resolved (a quarantine resolution in
// the log) is passed over by every reader, and its aggregate's chain goes on
// from the last valid event before it.
package integrity

import (
	"errors"
	"fmt"

	"github.com/tenancyhq/tenancy/pkg/events"
)

// ErrViolation is the kind of every integrity failure.
var ErrViolation = errors.New("integrity violation")

// Violation is a message on the log that fails its integrity checks.
type Violation struct {
	Seq     uint64
	Subject string
	// Reason is a short code: not-an-event, not-canonical, unknown-key,
	// bad-signature, retired-key, subject-mismatch, duplicate-id,
	// replayed, version-gap, broken-chain.
	Reason string
	Err    error
}

func (v *Violation) Error() string {
	return fmt.Sprintf("integrity violation at stream seq %d on %s (%s): %v", v.Seq, v.Subject, v.Reason, v.Err)
}

// Is makes errors.Is(err, ErrViolation) true.
func (v *Violation) Is(target error) bool { return target == ErrViolation }

// Unwrap returns the underlying verification failure.
func (v *Violation) Unwrap() error { return v.Err }

// reasons name each verification failure.
var reasons = []struct {
	err    error
	reason string
}{
	{events.ErrNotCanonical, "not-canonical"},
	{events.ErrUnknownKey, "unknown-key"},
	{events.ErrBadSignature, "bad-signature"},
	{events.ErrRetiredKey, "retired-key"},
	{events.ErrSubjectMismatch, "subject-mismatch"},
	{events.ErrDuplicateEventID, "duplicate-id"},
	{events.ErrReplayed, "replayed"},
	{events.ErrVersionGap, "version-gap"},
	{events.ErrBrokenChain, "broken-chain"},
}

// violation wraps a verification failure of the message at seq.
func violation(seq uint64, subject string, err error) *Violation {
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return &Violation{Seq: seq, Subject: subject, Reason: r.reason, Err: err}
		}
	}
	return &Violation{Seq: seq, Subject: subject, Reason: reasonNotAnEvent, Err: err}
}

// reasonNotAnEvent is the reason of a message that is no event at all.
const reasonNotAnEvent = "not-an-event"
