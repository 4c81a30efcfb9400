package services

import (
	"context"
	"net/http"

	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/httpapi"
	"github.com/tenancyhq/tenancy/internal/idempotency"
)

// APIOptions configure the HTTP API.
type APIOptions struct {
	Auth      *auth.Authenticator
	BodyLimit int64
	// Mounts serve extra handlers under path prefixes.
	Mounts map[string]http.Handler
	// Checks are extra readiness checks.
	Checks []httpapi.Check
}

// NewAPI builds the HTTP API on core.
func NewAPI(ctx context.Context, core *Core, o APIOptions) (*httpapi.Server, error) {
	idem, err := idempotency.Open(ctx, core.JS, core.opts.Replicas, core.opts.Clock)
	if err != nil {
		return nil, err
	}
	checks := append([]httpapi.Check{{Name: "nats", Check: core.CheckNATS}}, o.Checks...)
	return httpapi.New(httpapi.Deps{
		Tenants:     core.Tenants,
		Auth:        o.Auth,
		Idempotency: idem,
		EventKeys:   core.EventKeys,
		Checks:      checks,
		Logger:      core.Log,
		NewID:       NewID,
		Mounts:      o.Mounts,
		BodyLimit:   o.BodyLimit,
	}), nil
}
