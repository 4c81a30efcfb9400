package events

import (
	"fmt"
	"strings"
	"time"
)

// Webhook subscription event types. Subscriptions are a platform aggregate;
// their signing secrets are never in events (only a version number), and
// operators' interventions on deliveries are recorded here too.
const (
	TypeWebhookCreated           = "tenancy.webhook.created.v1"
	TypeWebhookUpdated           = "tenancy.webhook.updated.v1"
	TypeWebhookSecretRotated     = "tenancy.webhook.secret_rotated.v1"
	TypeWebhookDisabled          = "tenancy.webhook.disabled.v1"
	TypeWebhookDeleted           = "tenancy.webhook.deleted.v1"
	TypeWebhookDeadLetterRequeue = "tenancy.webhook.dead_letters_requeued.v1"
	TypeWebhookDeadLetterDiscard = "tenancy.webhook.dead_letter_discarded.v1"
	TypeWebhookReplayRequested   = "tenancy.webhook.replay_requested.v1"
)

// AggregateWebhook is the aggregate kind of webhook subscriptions.
const AggregateWebhook = "webhook"

// WebhookCreated registers a subscription. Delivery starts with the event
// after this one.
type WebhookCreated struct {
	URL         string   `json:"url"`
	EventTypes  []string `json:"event_types"`
	TenantID    string   `json:"tenant_id,omitempty"`
	Description string   `json:"description,omitempty"`
	Enabled     bool     `json:"enabled"`
	// SecretVersion names the signing secret, stored encrypted elsewhere.
	SecretVersion int `json:"secret_version"`
}

// EventType implements Payload.
func (*WebhookCreated) EventType() string { return TypeWebhookCreated }

// Summary implements Summarizer.
func (p *WebhookCreated) Summary() string {
	return fmt.Sprintf("webhook to %s for %s", hostOf(p.URL), strings.Join(p.EventTypes, ", "))
}

func hostOf(u string) string {
	rest, ok := strings.CutPrefix(u, "https://")
	if !ok {
		rest, _ = strings.CutPrefix(u, "http://")
	}
	host, _, _ := strings.Cut(rest, "/")
	return host
}

// WebhookUpdated changes a subscription; members named in Changed hold
// their new values.
type WebhookUpdated struct {
	Changed     []string `json:"changed"`
	URL         string   `json:"url,omitempty"`
	EventTypes  []string `json:"event_types,omitempty"`
	TenantID    string   `json:"tenant_id,omitempty"`
	Description string   `json:"description,omitempty"`
	Enabled     *bool    `json:"enabled,omitempty"`
}

// EventType implements Payload.
func (*WebhookUpdated) EventType() string { return TypeWebhookUpdated }

// Summary implements Summarizer.
func (p *WebhookUpdated) Summary() string { return "webhook updated: " + strings.Join(p.Changed, ", ") }

// WebhookSecretRotated records a new signing secret; the previous one keeps
// signing alongside it until PreviousValidUntil.
type WebhookSecretRotated struct {
	SecretVersion      int       `json:"secret_version"`
	PreviousValidUntil time.Time `json:"previous_valid_until"`
}

// EventType implements Payload.
func (*WebhookSecretRotated) EventType() string { return TypeWebhookSecretRotated }

// Summary implements Summarizer.
func (p *WebhookSecretRotated) Summary() string {
	return fmt.Sprintf("webhook secret rotated to version %d; the previous one is valid until %s", p.SecretVersion, p.PreviousValidUntil.Format(time.RFC3339))
}

// WebhookDisabled records that deliveries stopped (the receiver answered
// 410 Gone, or kept failing); they resume where they stopped when it is
// enabled again.
type WebhookDisabled struct {
	Reason string `json:"reason"`
}

// EventType implements Payload.
func (*WebhookDisabled) EventType() string { return TypeWebhookDisabled }

// Summary implements Summarizer.
func (p *WebhookDisabled) Summary() string { return "webhook disabled: " + p.Reason }

// WebhookDeleted removes a subscription.
type WebhookDeleted struct{}

// EventType implements Payload.
func (*WebhookDeleted) EventType() string { return TypeWebhookDeleted }

// Summary implements Summarizer.
func (*WebhookDeleted) Summary() string { return "webhook deleted" }

// WebhookDeadLettersRequeued records an operator sending dead-lettered
// deliveries again.
type WebhookDeadLettersRequeued struct {
	// DeadLetters are the dead-letter stream sequences requeued.
	DeadLetters []uint64 `json:"dead_letters"`
}

// EventType implements Payload.
func (*WebhookDeadLettersRequeued) EventType() string { return TypeWebhookDeadLetterRequeue }

// Summary implements Summarizer.
func (p *WebhookDeadLettersRequeued) Summary() string {
	return fmt.Sprintf("requeued %d dead-lettered deliveries", len(p.DeadLetters))
}

// WebhookDeadLetterDiscarded records an operator giving up on a
// dead-lettered delivery.
type WebhookDeadLetterDiscarded struct {
	DeadLetter uint64 `json:"dead_letter"`
	EventID    string `json:"event_id"`
	Reason     string `json:"reason"`
}

// EventType implements Payload.
func (*WebhookDeadLetterDiscarded) EventType() string { return TypeWebhookDeadLetterDiscard }

// Summary implements Summarizer.
func (p *WebhookDeadLetterDiscarded) Summary() string {
	return fmt.Sprintf("discarded the dead-lettered delivery of %s: %s", p.EventID, p.Reason)
}

// WebhookReplayRequested asks for a range of the log to be delivered to the
// endpoint again, marked as replays.
type WebhookReplayRequested struct {
	FromSeq  uint64    `json:"from_seq,omitempty"`
	ToSeq    uint64    `json:"to_seq,omitempty"`
	FromTime time.Time `json:"from_time,omitzero"`
	ToTime   time.Time `json:"to_time,omitzero"`
	Types    []string  `json:"types,omitempty"`
	TenantID string    `json:"tenant_id,omitempty"`
}

// EventType implements Payload.
func (*WebhookReplayRequested) EventType() string { return TypeWebhookReplayRequested }

// Summary implements Summarizer.
func (p *WebhookReplayRequested) Summary() string {
	switch {
	case p.FromSeq != 0 || p.ToSeq != 0:
		return fmt.Sprintf("replay of seq %d-%d requested", p.FromSeq, p.ToSeq)
	default:
		return fmt.Sprintf("replay of %s to %s requested", p.FromTime.Format(time.RFC3339), p.ToTime.Format(time.RFC3339))
	}
}

func init() {
	register(
		func() Payload { return &WebhookCreated{} },
		func() Payload { return &WebhookUpdated{} },
		func() Payload { return &WebhookSecretRotated{} },
		func() Payload { return &WebhookDisabled{} },
		func() Payload { return &WebhookDeleted{} },
		func() Payload { return &WebhookDeadLettersRequeued{} },
		func() Payload { return &WebhookDeadLetterDiscarded{} },
		func() Payload { return &WebhookReplayRequested{} },
	)
}
