// Package events is Tenancy's event contract: the CloudEvents 1.0 envelope
// every event travels in, the versioned payload types, the canonical form the
// signatures and hash chain are computed over, and verification of one event
// or of a whole aggregate's chain.
//
// Everything here is pure: no IO, no clock, no randomness. Callers inject
// identifiers, times and keys.
package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// SpecVersion is the CloudEvents specification version of every envelope.
const SpecVersion = "1.0"

// Source is the CloudEvents source attribute of every event Tenancy emits.
const Source = "/tenancy"

// ContentType is the data content type of every payload.
const ContentType = "application/json"

// PlatformTenantID is the reserved tenant id under which platform-level
// aggregates (webhook subscriptions, signing keys) live, so that every
// subject still has the same shape.
const PlatformTenantID = "00000000-0000-0000-0000-000000000000"

// Envelope is one event as it is stored in the log and delivered to
// consumers: a CloudEvents 1.0 event in structured JSON mode with Tenancy's
// extension attributes.
type Envelope struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`

	// TenantID is the tenant that owns the aggregate (PlatformTenantID for
	// platform aggregates).
	TenantID string `json:"tenantid"`
	// Actor is who caused the event: a token subject, or "system:<service>".
	Actor string `json:"actor"`
	// CorrelationID ties together everything one request caused.
	CorrelationID string `json:"correlationid,omitempty"`
	// CausationID is the id of the event that caused this one, if any.
	CausationID string `json:"causationid,omitempty"`
	// AggVersion is the aggregate's version after this event (1 for the first).
	AggVersion int64 `json:"aggversion"`
	// PrevHash is the hex SHA-256 of the canonical bytes of the aggregate's
	// previous event; empty for the first event.
	PrevHash string `json:"prevhash,omitempty"`
	// TraceParent is the W3C trace context of the operation, if traced.
	TraceParent string `json:"traceparent,omitempty"`
	// SigKeyID names the Ed25519 key that signed the event.
	SigKeyID string `json:"sigkeyid"`
	// Signature is the unpadded base64url Ed25519 signature over the
	// canonical bytes of the envelope without this attribute.
	Signature string `json:"signature,omitempty"`

	Data json.RawMessage `json:"data"`
}

// Aggregate returns the aggregate kind encoded in the event type
// ("tenancy.tenant.created.v1" -> "tenant").
func (e *Envelope) Aggregate() string {
	return AggregateOfType(e.Type)
}

// AggregateOfType returns the aggregate kind encoded in an event type.
func AggregateOfType(typ string) string {
	rest, ok := strings.CutPrefix(typ, "tenancy.")
	if !ok {
		return ""
	}
	agg, _, _ := strings.Cut(rest, ".")
	return agg
}

// Parse decodes one stored event. It checks the envelope's shape (required
// attributes present, spec version), not its signature: use KeySet.Verify.
func Parse(raw []byte) (*Envelope, error) {
	var e Envelope
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := e.validateShape(); err != nil {
		return nil, err
	}
	return &e, nil
}

// ErrMalformed reports bytes that are not a well-formed Tenancy event.
var ErrMalformed = errors.New("malformed event")

func (e *Envelope) validateShape() error {
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"id", e.ID}, {"source", e.Source}, {"type", e.Type}, {"subject", e.Subject},
		{"tenantid", e.TenantID}, {"actor", e.Actor}, {"sigkeyid", e.SigKeyID},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s", ErrMalformed, strings.Join(missing, ", "))
	}
	if e.SpecVersion != SpecVersion {
		return fmt.Errorf("%w: specversion %q, want %q", ErrMalformed, e.SpecVersion, SpecVersion)
	}
	if e.Time.IsZero() {
		return fmt.Errorf("%w: missing time", ErrMalformed)
	}
	if e.AggVersion < 1 {
		return fmt.Errorf("%w: aggversion %d, want >= 1", ErrMalformed, e.AggVersion)
	}
	if len(e.Data) == 0 || e.Data[0] != '{' {
		return fmt.Errorf("%w: data must be a JSON object", ErrMalformed)
	}
	return nil
}

// Subject returns the JetStream subject of an aggregate's events:
// tenancy.evt.<tenant_id>.<aggregate>.<aggregate_id>.
func Subject(tenantID, aggregate, aggregateID string) string {
	return "tenancy.evt." + tenantID + "." + aggregate + "." + aggregateID
}

// TenantSubjects returns the subject filter matching everything a tenant owns.
func TenantSubjects(tenantID string) string {
	return "tenancy.evt." + tenantID + ".>"
}

// AllSubjects is the subject filter matching every event (not the claims).
const AllSubjects = "tenancy.evt.>"

// ParseSubject splits an event subject into its tenant, aggregate kind and
// aggregate id.
func ParseSubject(subject string) (tenantID, aggregate, aggregateID string, err error) {
	parts := strings.Split(subject, ".")
	if len(parts) != 5 || parts[0] != "tenancy" || parts[1] != "evt" {
		return "", "", "", fmt.Errorf("%w: subject %q is not tenancy.evt.<tenant>.<aggregate>.<id>", ErrMalformed, subject)
	}
	return parts[2], parts[3], parts[4], nil
}
