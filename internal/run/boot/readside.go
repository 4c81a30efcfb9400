package boot

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/delivery/attempts"
	"github.com/tenancyhq/tenancy/internal/delivery/deadletter"
	"github.com/tenancyhq/tenancy/internal/delivery/secrets"
	"github.com/tenancyhq/tenancy/internal/egress"
	"github.com/tenancyhq/tenancy/internal/postgres"
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

// Projections returns the read models' use cases over the core and rs.
func Projections(c *Core, rs *ReadSide) *app.Projections {
	return app.NewProjections(app.ProjectionsOptions{Deps: c.CommandDeps(), JS: c.JS, DatabaseURL: rs.URL, Pool: rs.Pool, Opener: c.Keyring, Log: c.Log})
}

// Webhooks are the webhook use cases and the parts deliveries share with
// them.
type Webhooks struct {
	App     *app.Webhooks
	Policy  *egress.Policy
	Queues  *deadletter.Queues
	Secrets *secrets.Store
}

// OpenWebhooks creates the streams and buckets webhooks need and returns the
// webhook use cases: what both the API and the webhooker need. reader, when
// set, reads the recorded attempts (the API's).
func OpenWebhooks(ctx context.Context, c *Core, cfg config.Webhooks, reader *attempts.Reader) (*Webhooks, error) {
	policy, err := egress.NewPolicy(cfg.AllowCIDRs)
	if err != nil {
		return nil, err
	}
	queues, err := Await(ctx, c.Log, "webhook streams", func(ctx context.Context) (*deadletter.Queues, error) {
		return deadletter.Ensure(ctx, c.JS, c.Opts.Replicas)
	})
	if err != nil {
		return nil, err
	}
	store, err := Await(ctx, c.Log, "webhook secrets", func(ctx context.Context) (*secrets.Store, error) {
		return secrets.Open(ctx, c.JS, c.Keyring, c.Opts.Replicas)
	})
	if err != nil {
		return nil, err
	}
	hooks := app.NewWebhooks(app.WebhooksOptions{Deps: c.CommandDeps(), Queues: queues, Secrets: store, Attempts: reader, Policy: policy, AllowHTTP: cfg.AllowHTTP, Tenants: c.Tenants})
	return &Webhooks{App: hooks, Policy: policy, Queues: queues, Secrets: store}, nil
}
