package command

import (
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Tenants adapts the tenant decider.
type Tenants struct{ Decider domain.TenantDecider }

// Kind implements Aggregate.
func (Tenants) Kind() string { return events.AggregateTenant }

// Decide implements Aggregate.
func (a Tenants) Decide(s domain.Tenant, c domain.TenantCommand) ([]events.Payload, error) {
	return a.Decider.Decide(s, c)
}

// Evolve implements Aggregate.
func (Tenants) Evolve(s domain.Tenant, r domain.Recorded) domain.Tenant {
	return domain.EvolveTenant(s, r)
}

// Version implements Aggregate.
func (Tenants) Version(s domain.Tenant) int64 { return s.Version }

// Claims implements Aggregate.
func (Tenants) Claims(s domain.Tenant) []domain.Claim { return s.Claims() }

// SigningKeys adapts the signing key decider.
type SigningKeys struct{}

// Kind implements Aggregate.
func (SigningKeys) Kind() string { return events.AggregateSigningKey }

// Decide implements Aggregate.
func (SigningKeys) Decide(s domain.SigningKey, c domain.SigningKeyCommand) ([]events.Payload, error) {
	return domain.DecideSigningKey(s, c)
}

// Evolve implements Aggregate.
func (SigningKeys) Evolve(s domain.SigningKey, r domain.Recorded) domain.SigningKey {
	return domain.EvolveSigningKey(s, r)
}

// Version implements Aggregate.
func (SigningKeys) Version(s domain.SigningKey) int64 { return s.Version }

// Claims implements Aggregate.
func (SigningKeys) Claims(domain.SigningKey) []domain.Claim { return nil }

// ProjectionOps adapts the projection operations decider.
type ProjectionOps struct{}

// Kind implements Aggregate.
func (ProjectionOps) Kind() string { return events.AggregateProjection }

// Decide implements Aggregate.
func (ProjectionOps) Decide(s domain.ProjectionOps, c domain.SkipEvent) ([]events.Payload, error) {
	return domain.DecideProjectionOps(s, c)
}

// Evolve implements Aggregate.
func (ProjectionOps) Evolve(s domain.ProjectionOps, r domain.Recorded) domain.ProjectionOps {
	return domain.EvolveProjectionOps(s, r)
}

// Version implements Aggregate.
func (ProjectionOps) Version(s domain.ProjectionOps) int64 { return s.Version }

// Claims implements Aggregate.
func (ProjectionOps) Claims(domain.ProjectionOps) []domain.Claim { return nil }

// Webhooks adapts the webhook subscription decider.
type Webhooks struct{}

// Kind implements Aggregate.
func (Webhooks) Kind() string { return events.AggregateWebhook }

// Decide implements Aggregate.
func (Webhooks) Decide(s domain.Webhook, c domain.WebhookCommand) ([]events.Payload, error) {
	return domain.DecideWebhook(s, c)
}

// Evolve implements Aggregate.
func (Webhooks) Evolve(s domain.Webhook, r domain.Recorded) domain.Webhook {
	return domain.EvolveWebhook(s, r)
}

// Version implements Aggregate.
func (Webhooks) Version(s domain.Webhook) int64 { return s.Version }

// Claims implements Aggregate.
func (Webhooks) Claims(domain.Webhook) []domain.Claim { return nil }
