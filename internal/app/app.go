// Package app holds Tenancy's use cases: every caller (the HTTP handlers,
// the CLI, the sagas, the workers) goes through it. A use case checks what
// needs the world (an identity provider, a URL policy, another aggregate),
// runs the command through the generic command handler, and does what must
// follow the recorded decision (erase keys, move queued deliveries).
// Parsing requests and rendering answers belong to the callers.
package app

import (
	"fmt"
	"strconv"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// NewID returns a new UUIDv7 string: the ids of aggregates, events and
// requests.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

// ValidID reports whether id has the shape of an aggregate id: a UUID in
// its canonical lower-case form.
func ValidID(id string) bool {
	u, err := uuid.Parse(id)
	return err == nil && len(id) == 36 && u.String() == id
}

// EventURL is the API route a stored event can be fetched at (audit
// entries link it; a delivery too large to send links it as its dataref).
func EventURL(tenantID string, seq uint64) string {
	if tenantID == events.PlatformTenantID {
		return "/v1/events/" + strconv.FormatUint(seq, 10)
	}
	return "/v1/tenants/" + tenantID + "/events/" + strconv.FormatUint(seq, 10)
}

// foldEach folds the events of many aggregates of one kind (read with a
// subject wildcard) into their states, in the order each first appears.
func foldEach[S domain.Aggregate, C any](d domain.Decider[S, C], msgs []eventstore.Message) ([]S, error) {
	byID := map[string]int{}
	var out []S
	for _, m := range msgs {
		e, p, err := events.Decode(m.Data)
		if err != nil {
			return nil, fmt.Errorf("%s event at seq %d: %w", d.Kind(), m.Seq, err)
		}
		_, _, id, err := events.ParseSubject(m.Subject)
		if err != nil {
			continue
		}
		i, ok := byID[id]
		if !ok {
			i = len(out)
			byID[id] = i
			var zero S
			out = append(out, zero)
		}
		out[i] = d.Evolve(out[i], domain.RecordedFrom(id, m.Seq, e, p))
	}
	return out, nil
}
