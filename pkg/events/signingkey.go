package events

import "fmt"

// Signing key event types. Signing keys are a platform aggregate: their
// history (registration, retirement) is part of the log, so the public keys
// every event can be checked against are themselves audited.
const (
	TypeSigningKeyRegistered = "tenancy.signingkey.registered.v1"
	TypeSigningKeyRetired    = "tenancy.signingkey.retired.v1"
)

// AggregateSigningKey is the aggregate kind of signing key events.
const AggregateSigningKey = "signingkey"

// SigningKeyRegistered publishes a new Ed25519 verification key.
type SigningKeyRegistered struct {
	// PublicKey is the unpadded base64url Ed25519 public key.
	PublicKey string `json:"public_key"`
	Algorithm string `json:"algorithm"`
}

// EventType implements Payload.
func (*SigningKeyRegistered) EventType() string { return TypeSigningKeyRegistered }

// Summary implements Summarizer.
func (*SigningKeyRegistered) Summary() string { return "event signing key registered" }

// SigningKeyRetired records that a key no longer signs new events. It still
// verifies the ones it signed.
type SigningKeyRetired struct {
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (*SigningKeyRetired) EventType() string { return TypeSigningKeyRetired }

// Summary implements Summarizer.
func (p *SigningKeyRetired) Summary() string {
	if p.Reason == "" {
		return "event signing key retired"
	}
	return "event signing key retired: " + p.Reason
}

func init() {
	register(
		func() Payload { return &SigningKeyRegistered{} },
		func() Payload { return &SigningKeyRetired{} },
	)
}

// Projection operation event types: operators' interventions on the read
// side, recorded in the log like everything else.
const (
	TypeProjectionEventSkipped = "tenancy.projection.event_skipped.v1"
	// AggregateProjection is the aggregate kind of projection operations.
	AggregateProjection = "projection"
)

// ProjectionEventSkipped records that an operator made a projection skip an
// event it could not apply.
type ProjectionEventSkipped struct {
	Projection string `json:"projection"`
	Seq        uint64 `json:"seq"`
	Reason     string `json:"reason"`
	Error      string `json:"error,omitempty"`
}

// EventType implements Payload.
func (*ProjectionEventSkipped) EventType() string { return TypeProjectionEventSkipped }

// Summary implements Summarizer.
func (p *ProjectionEventSkipped) Summary() string {
	return fmt.Sprintf("projection %s skipped event at seq %d: %s", p.Projection, p.Seq, p.Reason)
}

func init() {
	register(func() Payload { return &ProjectionEventSkipped{} })
}
