package realmsync

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/backoff"
	"github.com/tenancyhq/tenancy/internal/consume"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/integrity"
	"github.com/tenancyhq/tenancy/internal/keycloak"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Consumer is the durable consumer of directory events that keeps realms
// in step (and erases deleted users' keys).
const Consumer = "provisioner-realm-sync"

// Reactor follows every tenant's directory events and converges the
// entity each names in the tenant's realm; it also erases a deleted user's
// personal-data key, where the API's own attempt failed.
type Reactor struct {
	JS     jetstream.JetStream
	Stream string
	// Events reads the directory events the activation's directory step
	// passed over (see syncAfterActivation).
	Events EventReader
	// Syncer is nil without Keycloak: then the reactor only erases.
	Syncer    *Syncer
	Keys      app.KeyDestroyer
	Directory *app.Directory
	Tenants   *app.Tenants
	Reader    *integrity.Reader
	Poison    func(context.Context, *consume.Message, error) error
	Log       *slog.Logger
}

// EventReader reads stored messages of a subject from a stream sequence
// on (eventstore.Store).
type EventReader interface {
	Read(ctx context.Context, filter string, from uint64, max int) ([]eventstore.Message, bool, error)
}

// errNotYet asks for the event again later: the tenant's realm is being
// made.
var errNotYet = errors.New("the tenant's realm is being provisioned")

// Run consumes directory events until ctx ends.
func (r *Reactor) Run(ctx context.Context) error {
	src := consume.Source{Stream: r.Stream, Durable: &jetstream.ConsumerConfig{
		// Tenants' events too, for the activation's directory step records.
		Durable: Consumer, FilterSubjects: []string{events.Subject("*", events.AggregateDirectory, "*"), events.Subject("*", events.AggregateTenant, "*")},
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute, MaxDeliver: -1, DeliverPolicy: jetstream.DeliverAllPolicy,
		// One at a time: two convergences of one user at once could both
		// find it missing and create it twice.
		MaxAckPending: 1,
	}}
	return consume.Run(ctx, r.JS, src, consume.Options{Reader: r.Reader, Poison: r.Poison, Log: r.Log}, func(ctx context.Context, m *consume.Message) {
		err := r.handle(ctx, m)
		switch {
		case err == nil:
			m.Ack()
		case errors.Is(err, ErrForeign):
			// Retrying cannot fix it: an operator must (reconcile repeats it).
			r.Log.ErrorContext(ctx, "realm sync refused: the realm holds another account of that name", "seq", m.Seq, "error", err)
			m.Ack()
		case errors.Is(err, errNotYet):
			// The activation's directory step syncs the whole directory at
			// its end, and reconcile after it: waiting here would hold up
			// every other tenant's events for as long as the saga runs.
			m.Ack()
		case refused(err):
			// Keycloak refused this one entity (a 4xx that retrying cannot
			// change, say an email another realm user has): events are taken
			// one at a time, so retrying it forever would hold up every
			// tenant's. Reconcile converges it again once the cause is fixed.
			r.Log.ErrorContext(ctx, "realm sync refused by Keycloak; reconcile retries it", "seq", m.Seq, "subject", m.Subject, "error", err)
			m.Ack()
		default:
			r.Log.WarnContext(ctx, "realm sync failed; retrying", "seq", m.Seq, "subject", m.Subject, "error", err)
			m.Retry(backoff.Reconnect.Delay(m.Delivered))
		}
	})
}

// refused reports a Keycloak answer that retrying cannot change, about the
// entity at hand: a 4xx other than the provisioner's own credentials or
// permissions (401, 403: a configuration every event needs fixed first),
// a timeout or rate limiting.
func refused(err error) bool {
	var kc *keycloak.Error
	if !errors.As(err, &kc) || kc.Temporary() {
		return false
	}
	return kc.Status >= 400 && kc.Status < 500 && kc.Status != http.StatusUnauthorized && kc.Status != http.StatusForbidden
}

// ActivationStep is the activation step that syncs the whole directory
// into the new realm; SyncedVersion, in its external ids, is the directory
// version it synced.
const (
	ActivationStep = "directory"
	// SyncedSeq is the stream sequence of the directory's last event
	// when the step read it.
	SyncedSeq = "directory_synced_seq"
)

// RealmOf returns where a tenant's directory lives in Keycloak (a realm of
// its own, or its organization of the shared realm), and whether it is
// there to sync into: a tenant that is active or suspended, or being
// activated with its directory step done. One being provisioned before
// that is errNotYet: the step syncs the directory as it then is, and this
// reactor what changed after (see syncAfterActivation).
func RealmOf(t domain.Tenant) (Realm, bool, error) {
	r := Target(t)
	switch t.State {
	case domain.StateActive, domain.StateSuspended:
		return r, true, nil
	case domain.StateProvisioning:
		if directorySynced(t) {
			return r, true, nil
		}
		return Realm{}, false, errNotYet
	}
	return Realm{}, false, nil
}

// Target is where t's directory lives in Keycloak, whatever its state.
func Target(t domain.Tenant) Realm {
	if t.Realm != nil && t.Realm.Mode == domain.RealmShared {
		return Realm{Name: t.Realm.Realm, Organization: t.Realm.Organization,
			Suspended: t.State == domain.StateSuspended || t.State == domain.StateArchived}
	}
	return Realm{Name: t.Slug}
}

// directorySynced reports whether t's activation has synced its directory.
func directorySynced(t domain.Tenant) bool {
	st, ok := t.Provisioning.Step(ActivationStep)
	return t.Provisioning.Saga == domain.SagaActivate && ok && st.Outcome == events.StepCompleted
}

// syncAfterActivation closes the gap between the activation's directory
// step and this reactor: a directory event read while the step was under
// way was passed over (errNotYet), and may be newer than what the step
// read. Reading the step's record, which follows every such event in
// stream order, the reactor syncs the entity each directory event between
// the two names; an event after the record finds the step done and syncs
// itself. A refusal of one entity (say, an email Keycloak already has)
// does not stop the others; reconcile retries it.
func (r *Reactor) syncAfterActivation(ctx context.Context, p *events.TenantStepRecorded, tenantID string, recordSeq uint64) error {
	if p.Step != ActivationStep || p.Saga != domain.SagaActivate || p.Outcome != events.StepCompleted || r.Syncer == nil || r.Events == nil {
		return nil
	}
	synced, err := strconv.ParseUint(p.ExternalIDs[SyncedSeq], 10, 64)
	if err != nil {
		return nil // skipped or without a realm: nothing was synced
	}
	realm, d, ok, err := r.target(ctx, tenantID)
	if err != nil || !ok {
		return err
	}
	subject := events.Subject(tenantID, events.AggregateDirectory, tenantID)
	for from := synced + 1; from < recordSeq; {
		msgs, more, err := r.Events.Read(ctx, subject, from, 256)
		if err != nil {
			return err
		}
		for _, msg := range msgs {
			if msg.Seq >= recordSeq {
				return nil
			}
			_, payload, err := events.Decode(msg.Data)
			if err != nil {
				return nil // the consumer quarantined it when it came by
			}
			c, err := r.syncPayload(ctx, realm, d, payload)
			switch {
			case err == nil && c.Action == "":
			case err == nil:
				r.Log.InfoContext(ctx, "realm synced: changed during the activation", "tenant_id", tenantID, "realm", realm.String(), "change", c.String(), "seq", msg.Seq)
			case errors.Is(err, ErrForeign) || refused(err):
				r.Log.ErrorContext(ctx, "realm sync refused; reconcile retries it", "tenant_id", tenantID, "seq", msg.Seq, "error", err)
			default:
				return err
			}
		}
		if !more || len(msgs) == 0 {
			return nil
		}
		from = msgs[len(msgs)-1].Seq + 1
	}
	return nil
}

// target returns where tenantID's directory syncs into and the
// directory, or ok false when there is none to sync into (no such tenant,
// deleted).
func (r *Reactor) target(ctx context.Context, tenantID string) (realm Realm, d domain.Directory, ok bool, err error) {
	t, _, err := r.Tenants.Get(ctx, tenantID)
	if errors.Is(err, domain.ErrNotFound) {
		return realm, d, false, nil
	}
	if err != nil {
		return realm, d, false, err
	}
	if realm, ok, err = RealmOf(t); err != nil || !ok {
		return realm, d, false, err
	}
	d, _, err = r.Directory.Load(ctx, tenantID)
	return realm, d, err == nil, err
}

func (r *Reactor) handle(ctx context.Context, m *consume.Message) error {
	if m.Envelope == nil {
		return nil
	}
	tenantID := m.Envelope.TenantID
	if p, ok := m.Payload.(*events.TenantStepRecorded); ok {
		return r.syncAfterActivation(ctx, p, tenantID, m.Seq)
	}
	if _, agg, _, _ := events.ParseSubject(m.Subject); agg != events.AggregateDirectory {
		return nil
	}
	if p, ok := m.Payload.(*events.UserDeleted); ok && r.Keys != nil {
		// Erasing again is a no-op; this is where a failure is retried.
		if err := r.Keys.Destroy(ctx, events.UserPIIScope(p.UserID)); err != nil {
			return err
		}
	}
	if r.Syncer == nil {
		return nil
	}
	realm, d, ok, err := r.target(ctx, tenantID)
	if err != nil || !ok {
		return err
	}
	c, err := r.syncPayload(ctx, realm, d, m.Payload)
	if err == nil && c.Action != "unchanged" && c.Action != "" {
		r.Log.InfoContext(ctx, "realm synced", "tenant_id", tenantID, "realm", realm.String(), "change", c.String(), "seq", m.Seq)
	}
	return err
}

// syncPayload syncs the entity a directory event names into realm.
func (r *Reactor) syncPayload(ctx context.Context, realm Realm, d domain.Directory, payload events.Payload) (c Change, err error) {
	switch p := payload.(type) {
	case *events.UserCreated:
		c, err = r.Syncer.SyncUser(ctx, realm, d, p.UserID)
	case *events.UserUpdated:
		c, err = r.Syncer.SyncUser(ctx, realm, d, p.UserID)
	case *events.UserDisabled:
		c, err = r.Syncer.SyncUser(ctx, realm, d, p.UserID)
	case *events.UserEnabled:
		c, err = r.Syncer.SyncUser(ctx, realm, d, p.UserID)
	case *events.UserDeleted:
		c, err = r.Syncer.SyncUser(ctx, realm, d, p.UserID)
	case *events.MembershipSet:
		c, err = r.Syncer.SyncUser(ctx, realm, d, p.UserID)
	case *events.MembershipRemoved:
		c, err = r.Syncer.SyncUser(ctx, realm, d, p.UserID)
	case *events.OrgUnitCreated:
		c, err = r.Syncer.SyncOrgUnit(ctx, realm, d, p.ID, nil)
	case *events.OrgUnitUpdated:
		c, err = r.Syncer.SyncOrgUnit(ctx, realm, d, p.ID, nil)
	case *events.OrgUnitDeleted:
		c, err = r.Syncer.SyncOrgUnit(ctx, realm, d, p.ID, nil)
	case *events.ClientCreated:
		c, err = r.Syncer.SyncClient(ctx, realm, d, p.ID, p.ClientID)
	case *events.ClientUpdated:
		c, err = r.Syncer.SyncClient(ctx, realm, d, p.ID, "")
	case *events.ClientSecretRotated:
		c, err = r.Syncer.SyncClient(ctx, realm, d, p.ID, "")
	case *events.ClientDeleted:
		c, err = r.Syncer.SyncClient(ctx, realm, d, p.ID, p.ClientID)
	}
	return c, err
}
