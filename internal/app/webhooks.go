package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/egress"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/tenants"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Service runs subscription commands and operator actions for the API and
// the webhooker.
type Service struct {
	handler   *command.Handler[domain.Webhook, domain.WebhookCommand]
	store     *eventstore.Store
	js        jetstream.JetStream
	secrets   *Secrets
	policy    *egress.Policy
	allowHTTP bool
	tenant    func(ctx context.Context, id string) error
	newID     func() string
	clock     func() time.Time
	log       *slog.Logger
}

// ServiceOptions configure a Service.
type ServiceOptions struct {
	Deps      command.Deps
	JS        jetstream.JetStream
	Secrets   *Secrets
	Policy    *egress.Policy
	AllowHTTP bool
	// TenantExists checks a tenant_id a subscription is scoped to.
	TenantExists func(ctx context.Context, id string) error
	Log          *slog.Logger
}

// NewService returns a service.
func NewService(o ServiceOptions) *Service {
	clock := o.Deps.Clock
	if clock == nil {
		clock = time.Now
	}
	return &Service{
		handler: command.NewHandler[domain.Webhook, domain.WebhookCommand](domain.WebhookDecider{}, o.Deps),
		store:   o.Deps.Store, js: o.JS, secrets: o.Secrets, policy: o.Policy, allowHTTP: o.AllowHTTP,
		tenant: o.TenantExists, newID: o.Deps.NewID, clock: clock, log: o.Log,
	}
}

// Result is a command's outcome.
type Result = command.Result[domain.Webhook]

func (s *Service) execute(ctx context.Context, id string, cmd domain.WebhookCommand, meta command.Meta) (Result, error) {
	return s.handler.Execute(ctx, events.PlatformTenantID, id, cmd, meta)
}

func (s *Service) checkURL(u string) error {
	if u == "" {
		return nil // the decider names the missing field
	}
	if _, err := s.policy.CheckURL(u, s.allowHTTP); err != nil {
		return &domain.ValidationError{Fields: []domain.FieldError{{Field: "url", Message: err.Error()}}}
	}
	return nil
}

func (s *Service) checkTenant(ctx context.Context, id string) error {
	if id == "" || s.tenant == nil {
		return nil
	}
	if err := s.tenant(ctx, id); err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			return &domain.ValidationError{Fields: []domain.FieldError{{Field: "tenant_id", Message: fmt.Sprintf("no tenant with id %q", id)}}}
		}
		return err
	}
	return nil
}

// Create registers a subscription and returns it with its secret, the only
// time the secret is shown.
func (s *Service) Create(ctx context.Context, c domain.CreateWebhook, meta command.Meta) (Result, string, error) {
	if err := s.checkURL(c.URL); err != nil {
		return Result{}, "", err
	}
	if err := s.checkTenant(ctx, c.TenantID); err != nil {
		return Result{}, "", err
	}
	c.ID = s.newID()
	secret, err := NewSecret()
	if err != nil {
		return Result{}, "", err
	}
	// The secret is stored first: a subscription never exists without its
	// secret. A failed command leaves an orphan ciphertext nobody can name.
	if err := s.secrets.Put(ctx, c.ID, 1, secret); err != nil {
		return Result{}, "", err
	}
	res, err := s.execute(ctx, c.ID, c, meta)
	if err != nil {
		_ = s.secrets.Delete(context.WithoutCancel(ctx), c.ID)
		return Result{}, "", err
	}
	return res, secret, nil
}

// Get loads a subscription.
func (s *Service) Get(ctx context.Context, id string) (domain.Webhook, uint64, error) {
	if !tenants.ValidID(id) {
		return domain.Webhook{}, 0, notFound(id)
	}
	w, seq, err := s.handler.Load(ctx, events.PlatformTenantID, id)
	if err != nil {
		return w, seq, err
	}
	if !w.Exists() {
		return w, seq, notFound(id)
	}
	return w, seq, nil
}

func notFound(id string) error {
	return fmt.Errorf("no webhook with id %q: %w", id, domain.ErrNotFound)
}

// List returns every subscription, oldest first, straight from the log
// (subscriptions are few; the log is their only copy).
func (s *Service) List(ctx context.Context) ([]domain.Webhook, uint64, error) {
	msgs, err := s.store.ReadAll(ctx, subscriptionsFilter(), 1)
	if err != nil {
		return nil, 0, err
	}
	byID := map[string]*domain.Webhook{}
	var order []string
	var last uint64
	for _, m := range msgs {
		last = m.Seq
		e, p, err := events.Decode(m.Data)
		if err != nil {
			return nil, 0, fmt.Errorf("webhook event at seq %d: %w", m.Seq, err)
		}
		_, _, id, err := events.ParseSubject(m.Subject)
		if err != nil {
			continue
		}
		w := byID[id]
		if w == nil {
			w = &domain.Webhook{}
			byID[id] = w
			order = append(order, id)
		}
		*w = domain.EvolveWebhook(*w, domain.Recorded{AggregateID: id, ID: e.ID, Time: e.Time, Version: e.AggVersion, Payload: p})
	}
	out := []domain.Webhook{}
	for _, id := range order {
		if w := byID[id]; w.Exists() {
			out = append(out, *w)
		}
	}
	return out, last, nil
}

// Update changes a subscription.
func (s *Service) Update(ctx context.Context, id string, c domain.UpdateWebhook, meta command.Meta) (Result, error) {
	if _, _, err := s.Get(ctx, id); err != nil {
		return Result{}, err
	}
	if c.URL != nil {
		if err := s.checkURL(*c.URL); err != nil {
			return Result{}, err
		}
	}
	if c.TenantID != nil {
		if err := s.checkTenant(ctx, *c.TenantID); err != nil {
			return Result{}, err
		}
	}
	return s.execute(ctx, id, c, meta)
}

// Rotate starts signing with a new secret and returns it; the old one keeps
// signing alongside for grace (0 means the default).
func (s *Service) Rotate(ctx context.Context, id string, grace time.Duration, meta command.Meta) (Result, string, error) {
	w, _, err := s.Get(ctx, id)
	if err != nil {
		return Result{}, "", err
	}
	if meta.IfVersion != 0 && meta.IfVersion != w.Version {
		return Result{}, "", &domain.VersionMismatchError{Expected: meta.IfVersion, Actual: w.Version}
	}
	secret, err := NewSecret()
	if err != nil {
		return Result{}, "", err
	}
	if err := s.secrets.Put(ctx, id, w.SecretVersion+1, secret); err != nil {
		return Result{}, "", err
	}
	// Pin the version the secret was stored for: a concurrent rotation
	// must not make this secret stand for another version.
	meta.IfVersion = w.Version
	res, err := s.execute(ctx, id, domain.RotateSecret{Now: s.clock(), Grace: grace}, meta)
	if err != nil {
		return Result{}, "", err
	}
	return res, secret, nil
}

// Delete removes a subscription; the webhooker then erases its secrets and
// queues.
func (s *Service) Delete(ctx context.Context, id string, meta command.Meta) (Result, error) {
	if _, _, err := s.Get(ctx, id); err != nil {
		return Result{}, err
	}
	return s.execute(ctx, id, domain.DeleteWebhook{}, meta)
}

// Disable stops deliveries with a reason (the webhooker's 410 and
// continuous-failure rules).
func (s *Service) Disable(ctx context.Context, id, reason string) error {
	_, err := s.execute(ctx, id, domain.DisableWebhook{Reason: reason}, command.Meta{Actor: "system:webhooker"})
	return err
}

// DeadLetters lists dead letters.
func (s *Service) DeadLetters(ctx context.Context, f DeadLetterFilter) ([]DeadLetter, bool, error) {
	return listDeadLetters(ctx, s.js, f)
}

// DeadLetter reads one dead letter.
func (s *Service) DeadLetter(ctx context.Context, seq uint64) (DeadLetter, error) {
	return getDeadLetter(ctx, s.js, seq)
}

// Event returns the stored event a dead letter is about.
func (s *Service) Event(ctx context.Context, seq uint64) ([]byte, error) {
	m, err := s.store.Get(ctx, seq)
	if err != nil {
		return nil, err
	}
	return m.Data, nil
}

// Requeue sends dead letters again, in order, through the endpoint's
// redelivery queue: the given ones, or all of the endpoint's when seqs is
// empty. It returns how many were requeued.
func (s *Service) Requeue(ctx context.Context, webhookID string, seqs []uint64, meta command.Meta) (Result, []uint64, error) {
	if _, _, err := s.Get(ctx, webhookID); err != nil {
		return Result{}, nil, err
	}
	var dls []DeadLetter
	if len(seqs) == 0 {
		var after uint64
		for {
			page, more, err := listDeadLetters(ctx, s.js, DeadLetterFilter{WebhookID: webhookID, After: after, Limit: 1000})
			if err != nil {
				return Result{}, nil, err
			}
			dls = append(dls, page...)
			if !more || len(page) == 0 {
				break
			}
			after = page[len(page)-1].Seq
		}
	} else {
		for _, seq := range seqs {
			d, err := getDeadLetter(ctx, s.js, seq)
			if err != nil {
				return Result{}, nil, err
			}
			if d.WebhookID != webhookID {
				return Result{}, nil, fmt.Errorf("dead letter %d belongs to another webhook: %w", seq, domain.ErrNotFound)
			}
			dls = append(dls, d)
		}
	}
	done := make([]uint64, len(dls))
	for i, d := range dls {
		done[i] = d.Seq
	}
	res, err := s.execute(ctx, webhookID, domain.RequeueDeadLetters{DeadLetters: done}, meta)
	if err != nil || len(dls) == 0 {
		return res, done, err
	}
	// The decision is recorded; now move the deliveries. Message ids make a
	// retried requeue of the same dead letter a no-op.
	st, err := s.js.Stream(ctx, DeadLetterStream)
	if err != nil {
		return res, nil, err
	}
	for _, d := range dls {
		data, _ := json.Marshal(redelivery{Kind: "event", EventSeq: d.EventSeq, DeadLetter: d.Seq, Replay: d.Replay})
		if _, err := s.js.Publish(ctx, redeliveryPrefix+webhookID, data, jetstream.WithMsgID(fmt.Sprintf("requeue-%d", d.Seq))); err != nil {
			return res, nil, fmt.Errorf("requeue dead letter %d: %w", d.Seq, err)
		}
		if err := st.DeleteMsg(ctx, d.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return res, nil, fmt.Errorf("remove requeued dead letter %d: %w", d.Seq, err)
		}
	}
	return res, done, nil
}

// Discard gives up on a dead letter, with a reason.
func (s *Service) Discard(ctx context.Context, seq uint64, reason string, meta command.Meta) (Result, error) {
	d, err := getDeadLetter(ctx, s.js, seq)
	if err != nil {
		return Result{}, err
	}
	res, err := s.execute(ctx, d.WebhookID, domain.DiscardDeadLetter{DeadLetter: seq, EventID: d.EventID, Reason: reason}, meta)
	if err != nil {
		return res, err
	}
	st, err := s.js.Stream(ctx, DeadLetterStream)
	if err != nil {
		return res, err
	}
	if err := st.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return res, err
	}
	return res, nil
}

// Replay queues a range of the log for delivery to one endpoint, marked as
// replays.
func (s *Service) Replay(ctx context.Context, webhookID string, c domain.RequestReplay, meta command.Meta) (Result, error) {
	w, _, err := s.Get(ctx, webhookID)
	if err != nil {
		return Result{}, err
	}
	if w.TenantID != "" && c.TenantID != "" && c.TenantID != w.TenantID {
		return Result{}, &domain.ValidationError{Fields: []domain.FieldError{{Field: "tenant_id",
			Message: fmt.Sprintf("this webhook only receives tenant %s's events", w.TenantID)}}}
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
	data, _ := json.Marshal(redelivery{Kind: "replay", Range: &rg, RequestID: p.ID})
	if _, err := s.js.Publish(ctx, redeliveryPrefix+webhookID, data, jetstream.WithMsgID("replay-"+p.ID)); err != nil {
		return res, fmt.Errorf("queue the replay: %w", err)
	}
	return res, nil
}

// Secrets returns the secret store.
func (s *Service) Secrets() *Secrets { return s.secrets }
