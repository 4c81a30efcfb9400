package events

import "fmt"

// Integrity event types: operators' decisions about messages on the log
// that failed its integrity checks (a forged or replayed event, a
// non-event). The stream denies deletes, so a bad message stays; a
// resolution tells every reader to pass over it from then on.
const (
	TypeQuarantineResolved = "tenancy.quarantine.resolved.v1"
	// AggregateQuarantine is the aggregate kind of resolutions; the
	// aggregate id is the resolved message's stream sequence.
	AggregateQuarantine = "quarantine"
)

// QuarantineResolved records that the message at Seq is to be ignored by
// every reader: it is not part of its aggregate's history, and the
// aggregate's next event chains to the last valid one before it.
type QuarantineResolved struct {
	Seq     uint64 `json:"seq"`
	Subject string `json:"subject"`
	// Violation is what the readers found wrong with the message.
	Violation string `json:"violation"`
	Reason    string `json:"reason"`
}

// EventType implements Payload.
func (*QuarantineResolved) EventType() string { return TypeQuarantineResolved }

// Summary implements Summarizer.
func (p *QuarantineResolved) Summary() string {
	return fmt.Sprintf("message at seq %d on %s ignored: %s", p.Seq, p.Subject, p.Reason)
}

func init() {
	register(func() Payload { return &QuarantineResolved{} })
}
