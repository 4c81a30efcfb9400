package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/delivery/attempts"
	"github.com/tenancyhq/tenancy/internal/delivery/deadletter"
	"github.com/tenancyhq/tenancy/internal/delivery/secrets"
	"github.com/tenancyhq/tenancy/internal/egress"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Webhooks runs subscription commands and the operators' actions on
// deliveries (requeue, discard, replay) for the API, the CLI and the
// webhooker.
type Webhooks struct {
	handler   *command.Handler[domain.Webhook, domain.WebhookCommand]
	store     *eventstore.Store
	queues    *deadletter.Queues
	secrets   *secrets.Store
	attempts  *attempts.Reader
	policy    *egress.Policy
	allowHTTP bool
	tenants   *Tenants
	newID     func() string
	clock     func() time.Time
}

// WebhooksOptions configure Webhooks.
type WebhooksOptions struct {
	Deps    command.Deps
	Queues  *deadletter.Queues
	Secrets *secrets.Store
	// Attempts reads the recorded delivery attempts; nil without a
	// database.
	Attempts *attempts.Reader
	// Policy and AllowHTTP judge subscription URLs.
	Policy    *egress.Policy
	AllowHTTP bool
	// Tenants checks the tenant a subscription is scoped to.
	Tenants *Tenants
}

// NewWebhooks returns the webhook use cases.
func NewWebhooks(o WebhooksOptions) *Webhooks {
	clock := o.Deps.Clock
	if clock == nil {
		clock = time.Now
	}
	return &Webhooks{
		handler: command.NewHandler[domain.Webhook, domain.WebhookCommand](domain.WebhookDecider{}, o.Deps),
		store:   o.Deps.Store, queues: o.Queues, secrets: o.Secrets, attempts: o.Attempts, policy: o.Policy, allowHTTP: o.AllowHTTP,
		tenants: o.Tenants, newID: o.Deps.NewID, clock: clock,
	}
}

// WebhookResult is a webhook command's outcome.
type WebhookResult = command.Result[domain.Webhook]

func (s *Webhooks) execute(ctx context.Context, id string, cmd domain.WebhookCommand, meta command.Meta) (WebhookResult, error) {
	return s.handler.Execute(ctx, events.PlatformTenantID, id, cmd, meta)
}

func (s *Webhooks) checkURL(u string) error {
	if u == "" {
		return nil // the decider names the missing field
	}
	if _, err := s.policy.CheckURL(u, s.allowHTTP); err != nil {
		return &domain.ValidationError{Fields: []domain.FieldError{{Field: "url", Message: err.Error()}}}
	}
	return nil
}

func (s *Webhooks) checkTenant(ctx context.Context, id string) error {
	if id == "" || s.tenants == nil {
		return nil
	}
	if _, _, err := s.tenants.Get(ctx, id); err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			return &domain.ValidationError{Fields: []domain.FieldError{{Field: "tenant_id", Message: fmt.Sprintf("no tenant with id %q", id)}}}
		}
		return err
	}
	return nil
}

// Create registers a subscription and returns it with its secret, the only
// time the secret is shown.
func (s *Webhooks) Create(ctx context.Context, c domain.CreateWebhook, meta command.Meta) (WebhookResult, string, error) {
	if err := s.checkURL(c.URL); err != nil {
		return WebhookResult{}, "", err
	}
	if err := s.checkTenant(ctx, c.TenantID); err != nil {
		return WebhookResult{}, "", err
	}
	if c.ID != "" {
		if w, seq, err := s.Get(ctx, c.ID); err == nil && w.URL == c.URL {
			// A retry (same Idempotency-Key, so the same id) of a create
			// that appended but never answered: the subscription exists,
			// and its secret was never shown.
			secret, err := s.secrets.Secret(ctx, c.ID, w.SecretVersion)
			if err != nil {
				return WebhookResult{}, "", err
			}
			return WebhookResult{State: w, Seq: seq}, secret, nil
		}
	} else {
		c.ID = s.newID()
	}
	secret, err := secrets.New()
	if err != nil {
		return WebhookResult{}, "", err
	}
	// The secret is stored first: a subscription never exists without its
	// secret. A failed command leaves an orphan ciphertext nobody can name.
	if err := s.secrets.Put(ctx, c.ID, 1, secret); err != nil {
		return WebhookResult{}, "", err
	}
	res, err := s.execute(ctx, c.ID, c, meta)
	if err != nil {
		_ = s.secrets.Delete(context.WithoutCancel(ctx), c.ID)
		return WebhookResult{}, "", err
	}
	return res, secret, nil
}

// Get loads a subscription.
func (s *Webhooks) Get(ctx context.Context, id string) (domain.Webhook, uint64, error) {
	if !ValidID(id) {
		return domain.Webhook{}, 0, webhookNotFound(id)
	}
	w, seq, err := s.handler.Load(ctx, events.PlatformTenantID, id)
	if err != nil {
		return w, seq, err
	}
	if !w.Exists() {
		return w, seq, webhookNotFound(id)
	}
	return w, seq, nil
}

func webhookNotFound(id string) error {
	return fmt.Errorf("no webhook with id %q: %w", id, domain.ErrNotFound)
}

// List returns every subscription, oldest first, straight from the log
// (subscriptions are few; the log is their only copy), and the sequence of
// the last subscription event.
func (s *Webhooks) List(ctx context.Context) ([]domain.Webhook, uint64, error) {
	msgs, err := s.store.ReadAll(ctx, events.Subject(events.PlatformTenantID, events.AggregateWebhook, "*"), 1)
	if err != nil {
		return nil, 0, err
	}
	all, err := foldEach(domain.WebhookDecider{}, msgs)
	if err != nil {
		return nil, 0, err
	}
	out := []domain.Webhook{}
	for _, w := range all {
		if w.Exists() {
			out = append(out, w)
		}
	}
	var last uint64
	if len(msgs) > 0 {
		last = msgs[len(msgs)-1].Seq
	}
	return out, last, nil
}

// Update changes a subscription.
func (s *Webhooks) Update(ctx context.Context, id string, c domain.UpdateWebhook, meta command.Meta) (WebhookResult, error) {
	if _, _, err := s.Get(ctx, id); err != nil {
		return WebhookResult{}, err
	}
	if c.URL != nil {
		if err := s.checkURL(*c.URL); err != nil {
			return WebhookResult{}, err
		}
	}
	if c.TenantID != nil {
		if err := s.checkTenant(ctx, *c.TenantID); err != nil {
			return WebhookResult{}, err
		}
	}
	return s.execute(ctx, id, c, meta)
}

// Rotate starts signing with a new secret and returns it; the old one keeps
// signing alongside for grace (0 means the default).
func (s *Webhooks) Rotate(ctx context.Context, id string, grace time.Duration, meta command.Meta) (WebhookResult, string, error) {
	w, _, err := s.Get(ctx, id)
	if err != nil {
		return WebhookResult{}, "", err
	}
	if meta.IfVersion != 0 && meta.IfVersion != w.Version {
		return WebhookResult{}, "", &domain.VersionMismatchError{Expected: meta.IfVersion, Actual: w.Version}
	}
	secret, err := secrets.New()
	if err != nil {
		return WebhookResult{}, "", err
	}
	if err := s.secrets.Put(ctx, id, w.SecretVersion+1, secret); err != nil {
		return WebhookResult{}, "", err
	}
	// Pin the version the secret was stored for: a concurrent rotation
	// must not make this secret stand for another version.
	meta.IfVersion = w.Version
	res, err := s.execute(ctx, id, domain.RotateSecret{Now: s.clock(), Grace: grace}, meta)
	if err != nil {
		return WebhookResult{}, "", err
	}
	return res, secret, nil
}

// Delete removes a subscription; the webhooker then erases its secrets and
// queues.
func (s *Webhooks) Delete(ctx context.Context, id string, meta command.Meta) (WebhookResult, error) {
	if _, _, err := s.Get(ctx, id); err != nil {
		return WebhookResult{}, err
	}
	return s.execute(ctx, id, domain.DeleteWebhook{}, meta)
}

// Disable stops deliveries with a reason (the webhooker's 410 and
// continuous-failure rules).
func (s *Webhooks) Disable(ctx context.Context, id, reason string) error {
	_, err := s.execute(ctx, id, domain.DisableWebhook{Reason: reason}, command.Meta{Actor: "system:webhooker"})
	return err
}

// DeadLetters lists dead letters.
func (s *Webhooks) DeadLetters(ctx context.Context, f deadletter.Filter) ([]deadletter.DeadLetter, bool, error) {
	return s.queues.List(ctx, f)
}

// DeadLetter reads one dead letter.
func (s *Webhooks) DeadLetter(ctx context.Context, seq uint64) (deadletter.DeadLetter, error) {
	return s.queues.Get(ctx, seq)
}

// Attempts lists a subscription's recorded delivery attempts, newest first,
// and whether more follow.
func (s *Webhooks) Attempts(ctx context.Context, f attempts.Filter) ([]attempts.Attempt, bool, error) {
	if s.attempts == nil {
		return nil, false, fmt.Errorf("%w: this API instance has no database configured (DATABASE_URL) to read attempts from", domain.ErrUnavailable)
	}
	if _, _, err := s.Get(ctx, f.WebhookID); err != nil {
		return nil, false, err
	}
	return s.attempts.List(ctx, f)
}

// DeadLetterDetail is one dead letter with its event and every attempt.
type DeadLetterDetail struct {
	deadletter.DeadLetter
	Event      json.RawMessage    `json:"event"`
	AttemptLog []attempts.Attempt `json:"attempt_log"`
}

// DeadLetterDetail reads one dead letter with the event it is about and
// its delivery attempts.
func (s *Webhooks) DeadLetterDetail(ctx context.Context, seq uint64, maxAttempts int) (DeadLetterDetail, error) {
	d, err := s.queues.Get(ctx, seq)
	if err != nil {
		return DeadLetterDetail{}, err
	}
	ev, err := s.tenants.Event(ctx, d.EventSeq, events.AllSubjects)
	if err != nil {
		return DeadLetterDetail{}, err
	}
	out := DeadLetterDetail{DeadLetter: d, Event: ev, AttemptLog: []attempts.Attempt{}}
	if s.attempts != nil {
		if out.AttemptLog, _, err = s.attempts.List(ctx, attempts.Filter{WebhookID: d.WebhookID, EventSeq: d.EventSeq, Limit: maxAttempts}); err != nil {
			return DeadLetterDetail{}, err
		}
	}
	return out, nil
}

// Requeue sends dead letters again, in order, through the endpoint's
// redelivery queue: the given ones, or all of the endpoint's when seqs is
// empty. It returns the dead letters requeued.
func (s *Webhooks) Requeue(ctx context.Context, webhookID string, seqs []uint64, meta command.Meta) (WebhookResult, []uint64, error) {
	if _, _, err := s.Get(ctx, webhookID); err != nil {
		return WebhookResult{}, nil, err
	}
	dls, err := s.deadLettersOf(ctx, webhookID, seqs)
	if err != nil {
		return WebhookResult{}, nil, err
	}
	done := make([]uint64, len(dls))
	for i, d := range dls {
		done[i] = d.Seq
	}
	res, err := s.execute(ctx, webhookID, domain.RequeueDeadLetters{DeadLetters: done}, meta)
	if err != nil || len(dls) == 0 {
		return res, done, err
	}
	// The decision is recorded; now move the deliveries.
	if err := s.queues.Requeue(ctx, webhookID, dls); err != nil {
		return res, nil, err
	}
	return res, done, nil
}

// deadLettersOf reads the given dead letters of an endpoint, or all of them
// when seqs is empty.
func (s *Webhooks) deadLettersOf(ctx context.Context, webhookID string, seqs []uint64) ([]deadletter.DeadLetter, error) {
	if len(seqs) == 0 {
		return s.queues.All(ctx, webhookID)
	}
	var dls []deadletter.DeadLetter
	for _, seq := range seqs {
		d, err := s.queues.Get(ctx, seq)
		if err != nil {
			return nil, err
		}
		if d.WebhookID != webhookID {
			return nil, fmt.Errorf("dead letter %d belongs to another webhook: %w", seq, domain.ErrNotFound)
		}
		dls = append(dls, d)
	}
	return dls, nil
}

// Discard gives up on a dead letter, with a reason.
func (s *Webhooks) Discard(ctx context.Context, seq uint64, reason string, meta command.Meta) (WebhookResult, error) {
	d, err := s.queues.Get(ctx, seq)
	if err != nil {
		return WebhookResult{}, err
	}
	res, err := s.execute(ctx, d.WebhookID, domain.DiscardDeadLetter{DeadLetter: seq, EventID: d.EventID, Reason: reason}, meta)
	if err != nil {
		return res, err
	}
	return res, s.queues.Remove(ctx, seq)
}

// Replay queues a range of the log for delivery to one endpoint, marked as
// replays.
func (s *Webhooks) Replay(ctx context.Context, webhookID string, c domain.RequestReplay, meta command.Meta) (WebhookResult, error) {
	w, _, err := s.Get(ctx, webhookID)
	if err != nil {
		return WebhookResult{}, err
	}
	if w.TenantID != "" && c.TenantID != "" && c.TenantID != w.TenantID {
		return WebhookResult{}, &domain.ValidationError{Fields: []domain.FieldError{{Field: "tenant_id",
			Message: fmt.Sprintf("this webhook only receives tenant %s's events", w.TenantID)}}}
	}
	if c.Head, err = s.store.LastSeq(ctx); err != nil {
		return WebhookResult{}, err
	}
	res, err := s.execute(ctx, webhookID, c, meta)
	if err != nil {
		return res, err
	}
	p := res.Events[len(res.Events)-1]
	var rg events.WebhookReplayRequested
	if err := json.Unmarshal(p.Data, &rg); err != nil {
		return res, err
	}
	if err := s.queues.QueueReplay(ctx, webhookID, p.ID, &rg); err != nil {
		return res, fmt.Errorf("queue the replay: %w", err)
	}
	return res, nil
}
