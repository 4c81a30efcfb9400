package domain

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tenancyhq/tenancy/pkg/events"
)

// Webhook is the state of one webhook subscription.
type Webhook struct {
	ID          string
	URL         string
	EventTypes  []string
	TenantID    string
	Description string
	Enabled     bool
	Deleted     bool
	// DisabledReason says why deliveries stopped, when they did.
	DisabledReason string
	SecretVersion  int
	// PreviousSecretVersion keeps signing until PreviousValidUntil, so that
	// receivers can switch secrets without losing a delivery.
	PreviousSecretVersion int
	PreviousValidUntil    time.Time
	CreatedAt             time.Time
	UpdatedAt             time.Time
	Version               int64
}

// Exists reports whether the subscription was created and not deleted.
func (w Webhook) Exists() bool { return w.Version > 0 && !w.Deleted }

// SecretVersions returns the secret versions that sign deliveries at now.
func (w Webhook) SecretVersions(now time.Time) []int {
	out := []int{w.SecretVersion}
	if w.PreviousSecretVersion != 0 && now.Before(w.PreviousValidUntil) {
		out = append(out, w.PreviousSecretVersion)
	}
	return out
}

// MatchesType reports whether pattern selects event type typ: patterns are
// exact types or prefixes ending in "*".
func MatchesType(pattern, typ string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(typ, prefix)
	}
	return pattern == typ
}

// Matches reports whether the subscription wants an event.
func (w Webhook) Matches(eventType, tenantID string) bool {
	if w.TenantID != "" && w.TenantID != tenantID {
		return false
	}
	for _, p := range w.EventTypes {
		if MatchesType(p, eventType) {
			return true
		}
	}
	return false
}

// Webhook limits.
const (
	MaxWebhookURL         = 2048
	MaxWebhookEventTypes  = 50
	MaxWebhookDescription = 500
	// DefaultSecretGrace is how long a rotated-out secret keeps signing.
	DefaultSecretGrace = 24 * time.Hour
	// MinSecretGrace is the shortest grace period: receivers need time to
	// switch to the new secret.
	MinSecretGrace = time.Minute
	// MaxSecretGrace bounds the grace period.
	MaxSecretGrace = 30 * 24 * time.Hour
)

func checkEventTypes(fe *fieldErrors, types []string) {
	if len(types) == 0 {
		fe.add("event_types", "at least one event type or prefix (like tenancy.tenant.*) is required")
		return
	}
	if len(types) > MaxWebhookEventTypes {
		fe.add("event_types", fmt.Sprintf("at most %d entries", MaxWebhookEventTypes))
		return
	}
	known := events.Types()
	for i, p := range types {
		f := fmt.Sprintf("event_types[%d]", i)
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.Contains(prefix, "*") || (prefix != "" && !strings.HasPrefix(prefix, "tenancy.")) || !slices.ContainsFunc(known, func(k string) bool { return strings.HasPrefix(k, prefix) }) {
				fe.add(f, fmt.Sprintf("%q matches no event type; use an exact type or a prefix like tenancy.tenant.*", p))
			}
			continue
		}
		if !slices.Contains(known, p) {
			fe.add(f, fmt.Sprintf("unknown event type %q", p), known...)
		}
	}
}

// CreateWebhook registers a subscription. The URL has been checked by the
// caller against the delivery policy.
type CreateWebhook struct {
	ID          string
	URL         string
	EventTypes  []string
	TenantID    string
	Description string
	Enabled     *bool
}

// UpdateWebhook changes a subscription; nil fields are left as they are.
type UpdateWebhook struct {
	URL         *string
	EventTypes  *[]string
	TenantID    *string
	Description *string
	Enabled     *bool
}

// RotateSecret starts signing with a new secret version; the current one
// keeps signing for Grace after Now.
type RotateSecret struct {
	Now   time.Time
	Grace time.Duration
}

// DisableWebhook stops deliveries (the delivery side decides).
type DisableWebhook struct{ Reason string }

// DeleteWebhook removes a subscription.
type DeleteWebhook struct{}

// RequeueDeadLetters records that dead-lettered deliveries go out again.
type RequeueDeadLetters struct{ DeadLetters []uint64 }

// DiscardDeadLetter records that a dead-lettered delivery is given up.
type DiscardDeadLetter struct {
	DeadLetter uint64
	EventID    string
	Reason     string
}

// RequestReplay asks for a range of the log to be delivered again.
type RequestReplay struct {
	FromSeq, ToSeq   uint64
	FromTime, ToTime time.Time
	Types            []string
	TenantID         string
	// Head is the log's last sequence when the request is decided: a
	// sequence range must lie within it (never clamped: a range beyond it
	// is a mistake the caller should see).
	Head uint64
}

// Action implements the command interface.
func (CreateWebhook) Action() string { return "create" }

// Action implements the command interface.
func (UpdateWebhook) Action() string { return "update" }

// Action implements the command interface.
func (RotateSecret) Action() string { return "rotate-secret" }

// Action implements the command interface.
func (DisableWebhook) Action() string { return "disable" }

// Action implements the command interface.
func (DeleteWebhook) Action() string { return "delete" }

// Action implements the command interface.
func (RequeueDeadLetters) Action() string { return "requeue" }

// Action implements the command interface.
func (DiscardDeadLetter) Action() string { return "discard" }

// Action implements the command interface.
func (RequestReplay) Action() string { return "replay" }

// WebhookCommand is a command the Webhook aggregate decides.
type WebhookCommand interface{ Action() string }

// WebhookDecider decides webhook subscription commands.
type WebhookDecider struct{}

// Kind implements Decider.
func (WebhookDecider) Kind() string { return events.AggregateWebhook }

// Evolve implements Decider.
func (WebhookDecider) Evolve(w Webhook, r Recorded) Webhook { return EvolveWebhook(w, r) }

// AggregateVersion implements Aggregate.
func (w Webhook) AggregateVersion() int64 { return w.Version }

// Decide implements Decider.
func (WebhookDecider) Decide(w Webhook, cmd WebhookCommand) ([]events.Payload, error) {
	if _, create := cmd.(CreateWebhook); !create && !w.Exists() {
		return nil, fmt.Errorf("webhook %w", ErrNotFound)
	}
	switch c := cmd.(type) {
	case CreateWebhook:
		return createWebhook(w, c)
	case UpdateWebhook:
		return updateWebhook(w, c)
	case RotateSecret:
		return rotateSecret(w, c)
	case DisableWebhook:
		if !w.Enabled {
			return nil, nil
		}
		return []events.Payload{&events.WebhookDisabled{Reason: c.Reason}}, nil
	case DeleteWebhook:
		return []events.Payload{&events.WebhookDeleted{}}, nil
	case RequeueDeadLetters:
		if len(c.DeadLetters) == 0 {
			return nil, nil
		}
		return []events.Payload{&events.WebhookDeadLettersRequeued{DeadLetters: slices.Clone(c.DeadLetters)}}, nil
	case DiscardDeadLetter:
		var fe fieldErrors
		checkText(&fe, "reason", c.Reason, true, MaxNote)
		if err := fe.err(); err != nil {
			return nil, err
		}
		return []events.Payload{&events.WebhookDeadLetterDiscarded{DeadLetter: c.DeadLetter, EventID: c.EventID, Reason: c.Reason}}, nil
	case RequestReplay:
		return requestReplay(c)
	}
	return nil, fmt.Errorf("%w: unknown command %T", ErrInvalid, cmd)
}

func createWebhook(w Webhook, c CreateWebhook) ([]events.Payload, error) {
	if w.Version > 0 {
		return nil, &ConflictError{Field: "id", Value: c.ID, Message: "webhook " + c.ID + " already exists"}
	}
	var fe fieldErrors
	checkWebhookURL(&fe, c.URL)
	checkEventTypes(&fe, c.EventTypes)
	checkText(&fe, "description", c.Description, false, MaxWebhookDescription)
	if err := fe.err(); err != nil {
		return nil, err
	}
	enabled := c.Enabled == nil || *c.Enabled
	return []events.Payload{&events.WebhookCreated{URL: c.URL, EventTypes: slices.Clone(c.EventTypes), TenantID: c.TenantID,
		Description: c.Description, Enabled: enabled, SecretVersion: 1}}, nil
}

func updateWebhook(w Webhook, c UpdateWebhook) ([]events.Payload, error) {
	var fe fieldErrors
	u := &events.WebhookUpdated{}
	if c.URL != nil && *c.URL != w.URL {
		checkWebhookURL(&fe, *c.URL)
		u.URL, u.Changed = *c.URL, append(u.Changed, "url")
	}
	if c.EventTypes != nil && !slices.Equal(*c.EventTypes, w.EventTypes) {
		checkEventTypes(&fe, *c.EventTypes)
		u.EventTypes, u.Changed = slices.Clone(*c.EventTypes), append(u.Changed, "event_types")
	}
	if c.TenantID != nil && *c.TenantID != w.TenantID {
		u.TenantID, u.Changed = *c.TenantID, append(u.Changed, "tenant_id")
	}
	if c.Description != nil && *c.Description != w.Description {
		checkText(&fe, "description", *c.Description, false, MaxWebhookDescription)
		u.Description, u.Changed = *c.Description, append(u.Changed, "description")
	}
	if c.Enabled != nil && *c.Enabled != w.Enabled {
		u.Enabled, u.Changed = c.Enabled, append(u.Changed, "enabled")
	}
	if err := fe.err(); err != nil {
		return nil, err
	}
	if len(u.Changed) == 0 {
		return nil, nil
	}
	return []events.Payload{u}, nil
}

func rotateSecret(w Webhook, c RotateSecret) ([]events.Payload, error) {
	grace := c.Grace
	if grace == 0 {
		grace = DefaultSecretGrace
	}
	if grace < MinSecretGrace || grace > MaxSecretGrace {
		return nil, &ValidationError{Fields: []FieldError{{Field: "grace", Message: fmt.Sprintf("must be between %s and %s (receivers need time to switch to the new secret)", MinSecretGrace, MaxSecretGrace)}}}
	}
	return []events.Payload{&events.WebhookSecretRotated{SecretVersion: w.SecretVersion + 1, PreviousValidUntil: c.Now.Add(grace).UTC().Truncate(time.Second)}}, nil
}

// requestReplay checks that c gives exactly one well-formed range, by
// sequence or by time.
func requestReplay(c RequestReplay) ([]events.Payload, error) {
	var fe fieldErrors
	bySeq := c.FromSeq != 0 || c.ToSeq != 0
	byTime := !c.FromTime.IsZero() || !c.ToTime.IsZero()
	switch {
	case bySeq && byTime:
		fe.add("from_seq", "give a range by sequence or by time, not both")
	case bySeq && (c.FromSeq == 0 || c.ToSeq < c.FromSeq):
		fe.add("to_seq", "a sequence range needs from_seq >= 1 and to_seq >= from_seq")
	case bySeq && c.FromSeq > c.Head:
		fe.add("from_seq", fmt.Sprintf("must be at most the log's last sequence, %d", c.Head))
	case bySeq && c.ToSeq > c.Head:
		fe.add("to_seq", fmt.Sprintf("must be at most the log's last sequence, %d", c.Head))
	case byTime && (c.FromTime.IsZero() || c.ToTime.IsZero() || !c.ToTime.After(c.FromTime)):
		fe.add("to_time", "a time range needs from_time before to_time")
	case !bySeq && !byTime:
		fe.add("from_seq", "give a range: from_seq and to_seq, or from_time and to_time")
	}
	if len(c.Types) > 0 {
		checkEventTypes(&fe, c.Types)
	}
	if err := fe.err(); err != nil {
		return nil, err
	}
	return []events.Payload{&events.WebhookReplayRequested{FromSeq: c.FromSeq, ToSeq: c.ToSeq, FromTime: c.FromTime.UTC(), ToTime: c.ToTime.UTC(),
		Types: slices.Clone(c.Types), TenantID: c.TenantID}}, nil
}

func checkWebhookURL(fe *fieldErrors, u string) {
	switch {
	case u == "":
		fe.add("url", "is required")
	case len(u) > MaxWebhookURL:
		fe.add("url", fmt.Sprintf("must be at most %d characters", MaxWebhookURL))
	}
}

// EvolveWebhook folds one event into a subscription.
func EvolveWebhook(w Webhook, r Recorded) Webhook {
	w.Version = r.Version
	w.UpdatedAt = r.Time
	switch p := r.Payload.(type) {
	case *events.WebhookCreated:
		w.ID = r.AggregateID
		w.URL, w.EventTypes, w.TenantID, w.Description, w.Enabled = p.URL, slices.Clone(p.EventTypes), p.TenantID, p.Description, p.Enabled
		w.SecretVersion = p.SecretVersion
		w.CreatedAt = r.Time
	case *events.WebhookUpdated:
		for _, f := range p.Changed {
			switch f {
			case "url":
				w.URL = p.URL
			case "event_types":
				w.EventTypes = slices.Clone(p.EventTypes)
			case "tenant_id":
				w.TenantID = p.TenantID
			case "description":
				w.Description = p.Description
			case "enabled":
				w.Enabled = p.Enabled != nil && *p.Enabled
				if w.Enabled {
					w.DisabledReason = ""
				}
			}
		}
	case *events.WebhookSecretRotated:
		w.PreviousSecretVersion = w.SecretVersion
		w.PreviousValidUntil = p.PreviousValidUntil
		w.SecretVersion = p.SecretVersion
	case *events.WebhookDisabled:
		w.Enabled = false
		w.DisabledReason = p.Reason
	case *events.WebhookDeleted:
		w.Deleted = true
		w.Enabled = false
	}
	return w
}
