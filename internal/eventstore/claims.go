package eventstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/tenancyhq/tenancy/pkg/domain"
)

// A claim is a message on a subject of its own, tenancy.claim.<kind>.<key>.
// Whoever appends to that subject expecting its current last sequence holds
// it; the expectation makes two concurrent claims of one value end with one
// winner, and because claims are appended in the same atomic batch as the
// events that need them, a value is never claimed without its event or the
// other way round. Releasing appends a record with held=false, which the
// next claimant expects.

// ClaimRecord is the body of a claim message.
type ClaimRecord struct {
	Kind    string `json:"kind"`
	System  string `json:"system,omitempty"`
	Value   string `json:"value"`
	Owner   string `json:"owner"`
	Held    bool   `json:"held"`
	EventID string `json:"event_id"`
}

// ClaimSubject returns the subject a claim lives on. External id values are
// hashed: they may contain characters subjects cannot.
func ClaimSubject(c domain.Claim) string {
	switch c.Kind {
	case domain.ClaimSlug:
		return "tenancy.claim.slug." + c.Value
	default:
		sum := sha256.Sum256([]byte(c.System + "\x00" + c.Value))
		return "tenancy.claim.extid." + c.System + "." + hex.EncodeToString(sum[:16])
	}
}

// ClaimState is the last record on a claim subject.
type ClaimState struct {
	Seq    uint64
	Record ClaimRecord
}

// ReadClaims returns the current state of each claim subject that has one.
func (s *Store) ReadClaims(ctx context.Context, claims []domain.Claim) (map[string]ClaimState, error) {
	subjects := make([]string, len(claims))
	for i, c := range claims {
		subjects[i] = ClaimSubject(c)
	}
	msgs, err := s.LastFor(ctx, subjects)
	if err != nil {
		return nil, err
	}
	out := make(map[string]ClaimState, len(msgs))
	for subj, m := range msgs {
		var r ClaimRecord
		if err := json.Unmarshal(m.Data, &r); err != nil {
			return nil, fmt.Errorf("claim %s at seq %d is unreadable: %w", subj, m.Seq, err)
		}
		out[subj] = ClaimState{Seq: m.Seq, Record: r}
	}
	return out, nil
}

// ClaimOwner returns the owner of a claim, or "" when nobody holds it.
func (s *Store) ClaimOwner(ctx context.Context, c domain.Claim) (string, error) {
	states, err := s.ReadClaims(ctx, []domain.Claim{c})
	if err != nil {
		return "", err
	}
	st, ok := states[ClaimSubject(c)]
	if !ok || !st.Record.Held {
		return "", nil
	}
	return st.Record.Owner, nil
}

// ClaimChanges returns the claim messages that make owner hold exactly the
// claims in after when it held those in before, given the claims' current
// states. A value another owner holds is a *domain.ConflictError.
func ClaimChanges(owner, eventID string, before, after []domain.Claim, current map[string]ClaimState) ([]Outgoing, error) {
	wants := map[string]bool{}
	var out []Outgoing
	msg := func(c domain.Claim, held bool) (Outgoing, error) {
		subj := ClaimSubject(c)
		data, err := json.Marshal(ClaimRecord{Kind: c.Kind, System: c.System, Value: c.Value, Owner: owner, Held: held, EventID: eventID})
		if err != nil {
			return Outgoing{}, err
		}
		st := current[subj]
		return Outgoing{Subject: subj, Data: data, MsgID: eventID + ":" + subj, CheckSeq: true, ExpectSeq: st.Seq}, nil
	}
	for _, c := range after {
		subj := ClaimSubject(c)
		wants[subj] = true
		st, exists := current[subj]
		if exists && st.Record.Held {
			if st.Record.Owner == owner {
				continue
			}
			return nil, conflict(c)
		}
		o, err := msg(c, true)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	for _, c := range before {
		subj := ClaimSubject(c)
		if wants[subj] {
			continue
		}
		st, exists := current[subj]
		if !exists || !st.Record.Held || st.Record.Owner != owner {
			continue
		}
		o, err := msg(c, false)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

func conflict(c domain.Claim) error {
	if c.Kind == domain.ClaimSlug {
		return &domain.ConflictError{Field: "slug", Value: c.Value, Message: fmt.Sprintf("slug %q is taken by another tenant; choose another", c.Value)}
	}
	return &domain.ConflictError{Field: c.Field(), Value: c.Value,
		Message: fmt.Sprintf("external id %s:%s already belongs to another tenant; each external id maps to one tenant", c.System, c.Value)}
}
