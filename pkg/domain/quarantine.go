package domain

import (
	"fmt"

	"github.com/tenancyhq/tenancy/pkg/events"
)

// Quarantine is the state of one quarantined message: a message on the log
// that failed its integrity checks, which an operator may resolve (tell
// every reader to ignore it).
type Quarantine struct {
	Version  int64
	Seq      uint64
	Resolved bool
	Reason   string
}

// AggregateVersion implements Aggregate.
func (q Quarantine) AggregateVersion() int64 { return q.Version }

// ResolveQuarantine tells every reader to ignore the message at Seq on
// Subject. Violation is what was found wrong with it.
type ResolveQuarantine struct {
	Seq       uint64
	Subject   string
	Violation string
	Reason    string
}

// Action implements a command.
func (ResolveQuarantine) Action() string { return "resolve" }

// MaxResolutionReason bounds a resolution's reason.
const MaxResolutionReason = 500

// QuarantineDecider decides resolutions.
type QuarantineDecider struct{}

// Kind implements Decider.
func (QuarantineDecider) Kind() string { return events.AggregateQuarantine }

// Decide implements Decider. Resolving twice is a no-op.
func (QuarantineDecider) Decide(q Quarantine, c ResolveQuarantine) ([]events.Payload, error) {
	var fe fieldErrors
	checkText(&fe, "reason", c.Reason, true, MaxResolutionReason)
	if c.Seq == 0 || c.Subject == "" {
		fe.add("seq", "names no quarantined message")
	}
	if err := fe.err(); err != nil {
		return nil, err
	}
	if q.Resolved {
		return nil, nil
	}
	return []events.Payload{&events.QuarantineResolved{Seq: c.Seq, Subject: c.Subject, Violation: c.Violation, Reason: c.Reason}}, nil
}

// Evolve implements Decider.
func (QuarantineDecider) Evolve(q Quarantine, r Recorded) Quarantine {
	q.Version = r.Version
	if p, ok := r.Payload.(*events.QuarantineResolved); ok {
		q.Seq, q.Resolved, q.Reason = p.Seq, true, p.Reason
	}
	return q
}

// String describes the state for logs.
func (q Quarantine) String() string {
	return fmt.Sprintf("quarantine of seq %d (resolved %v)", q.Seq, q.Resolved)
}
