package domain

import (
	"time"

	"github.com/tenancyhq/tenancy/pkg/events"
)

// Decider is the one shape every aggregate has, so that one generic command
// handler runs them all: Decide turns a command into the events it causes
// (none for an idempotent repeat) or refuses it with an error of one of the
// kinds in errors.go; Evolve folds one recorded event into the state. Both
// are pure.
type Decider[S Aggregate, C any] interface {
	// Kind names the aggregate in subjects ("tenant").
	Kind() string
	Decide(S, C) ([]events.Payload, error)
	Evolve(S, Recorded) S
}

// Aggregate is what the command path needs of every aggregate's state.
type Aggregate interface {
	// AggregateVersion is how many events the aggregate has (0: it does not
	// exist yet).
	AggregateVersion() int64
}

// Claimer is an Aggregate state that holds values unique across aggregates (a slug, an
// external id), claimed in the log in the same atomic batch as its events.
type Claimer interface {
	// Claims returns the unique values the state holds (nil if none).
	Claims() []Claim
}

// Recorded is an event as the aggregate sees it: its payload plus the
// envelope facts Evolve needs.
type Recorded struct {
	// AggregateID is the id of the aggregate the event belongs to.
	AggregateID string
	ID          string
	Time        time.Time
	Version     int64
	Payload     events.Payload
	// Seq is the event's stream sequence, when it is known (0 while the
	// event is being decided).
	Seq uint64
	// Actor is who caused the event.
	Actor string
}

// RecordedFrom is the Recorded of a stored event of aggregate id at stream
// sequence seq.
func RecordedFrom(id string, seq uint64, e *events.Envelope, p events.Payload) Recorded {
	return Recorded{AggregateID: id, ID: e.ID, Time: e.Time, Version: e.AggVersion, Payload: p, Seq: seq, Actor: e.Actor}
}
