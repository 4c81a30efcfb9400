package services

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/httpapi"
	"github.com/tenancyhq/tenancy/internal/idempotency"
	"github.com/tenancyhq/tenancy/internal/keycloak"
	"github.com/tenancyhq/tenancy/internal/metrics"
	"github.com/tenancyhq/tenancy/internal/postgres"
	"github.com/tenancyhq/tenancy/internal/projection"
	"github.com/tenancyhq/tenancy/internal/readmodel"
	"github.com/tenancyhq/tenancy/internal/webhooks"
)

// ReadSide is the PostgreSQL database of the read models.
type ReadSide struct {
	URL  string
	Pool *pgxpool.Pool
}

// OpenReadSide connects to the read models' database, creating it first when
// create is set (development), and applying the schema migrations when
// migrate is set (the projector's job; the API only reads).
func OpenReadSide(ctx context.Context, url string, create, migrate bool) (*ReadSide, error) {
	if create {
		if err := postgres.EnsureDatabase(ctx, url); err != nil {
			return nil, fmt.Errorf("PostgreSQL (DATABASE_URL): %w", err)
		}
	}
	pool, err := postgres.Open(ctx, url)
	if err != nil {
		return nil, err
	}
	if migrate {
		if _, err := postgres.Migrate(ctx, pool); err != nil {
			pool.Close()
			return nil, fmt.Errorf("PostgreSQL migrations: %w", err)
		}
	}
	return &ReadSide{URL: url, Pool: pool}, nil
}

// Close closes the pool.
func (r *ReadSide) Close() { r.Pool.Close() }

// Check is a readiness check.
func (r *ReadSide) Check(ctx context.Context) error { return r.Pool.Ping(ctx) }

// APIOptions configure the HTTP API.
type APIOptions struct {
	Auth      *auth.Authenticator
	BodyLimit int64
	// Mounts serve extra handlers under path prefixes.
	Mounts map[string]http.Handler
	// Checks are extra readiness checks.
	Checks []httpapi.Check
	// ReadSide serves queries; without it the query routes answer 503.
	ReadSide *ReadSide
	// ReadWait bounds how long a read waits for its min_seq.
	ReadWait time.Duration
	// Keycloak, when set, lets operators issue administrator passwords.
	Keycloak *keycloak.Client
	// Webhooks configure subscriptions (URL policy).
	Webhooks config.Webhooks
}

// API is the HTTP API and what runs behind it.
type API struct {
	Server *httpapi.Server
	waiter *readmodel.Waiter
}

// Handler returns the HTTP handler.
func (a *API) Handler() http.Handler { return a.Server.Handler() }

// Run runs the API's background work (following projection progress) until
// ctx ends.
func (a *API) Run(ctx context.Context) error {
	if a.waiter == nil {
		<-ctx.Done()
		return nil
	}
	return a.waiter.Run(ctx)
}

// NewAPI builds the HTTP API on core.
func NewAPI(ctx context.Context, core *Core, o APIOptions) (*API, error) {
	idem, err := awaitJetStream(ctx, core.Log, "idempotency keys", func(ctx context.Context) (*idempotency.Store, error) {
		return idempotency.Open(ctx, core.JS, core.opts.Replicas, core.opts.Clock)
	})
	if err != nil {
		return nil, err
	}
	checks := append([]httpapi.Check{{Name: "nats", Check: core.CheckNATS}}, o.Checks...)
	deps := httpapi.Deps{
		Tenants:     core.Tenants,
		Auth:        o.Auth,
		Idempotency: idem,
		EventKeys:   core.EventKeys,
		Logger:      core.Log,
		NewID:       NewID,
		Mounts:      o.Mounts,
		BodyLimit:   o.BodyLimit,
		ReadWait:    o.ReadWait,
	}
	api := &API{}
	if rs := o.ReadSide; rs != nil {
		checks = append(checks, httpapi.Check{Name: "postgres", Check: rs.Check})
		api.waiter = readmodel.NewWaiter(rs.URL, rs.Pool, core.Log)
		deps.Reads = readmodel.NewReader(rs.Pool)
		deps.Waiter = api.waiter
		deps.ProjectionStatus = func(ctx context.Context) ([]projection.Status, error) {
			return projection.Statuses(ctx, rs.Pool, core.Store, time.Now())
		}
	}
	if o.Keycloak != nil {
		deps.AdminPassword = AdminPassword(o.Keycloak)
	}
	if deps.Webhooks, err = NewWebhookService(ctx, core, o.Webhooks); err != nil {
		return nil, err
	}
	if o.ReadSide != nil {
		deps.Attempts = &webhooks.AttemptReader{Pool: o.ReadSide.Pool}
	}
	deps.Checks = checks
	api.Server = httpapi.New(deps)
	return api, nil
}

// Projections returns the runners of every projection.
func Projections(core *Core, rs *ReadSide, observe func(string, int, time.Duration, uint64, time.Time)) []*projection.Runner {
	deps := projection.Deps{DatabaseURL: rs.URL, JS: core.JS, Store: core.Store, Opener: core.Keyring, Log: core.Log, Observe: observe}
	return []*projection.Runner{
		projection.NewRunner(projection.Tenants{}, deps),
		projection.NewRunner(projection.Audit{}, deps),
	}
}

// WatchProjectionLag makes every projection's lag (events after its
// checkpoint, and the age of the oldest) a metric read from the read side and
// the log at scrape time, until stop is called.
func WatchProjectionLag(core *Core, rs *ReadSide) (stop func()) {
	return metrics.WatchProjections(func(ctx context.Context) ([]metrics.ProjectionLag, error) {
		return projection.Lags(ctx, rs.Pool, core.Store, time.Now())
	})
}
