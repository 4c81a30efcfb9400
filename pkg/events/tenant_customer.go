package events

import "fmt"

// Tenant event types of customers, holds and realm placement. Each is a new
// type rather than a new member of an existing one: stored events keep the
// shapes their golden files freeze.
const (
	TypeTenantCustomerAssigned = "tenancy.tenant.customer_assigned.v1"
	TypeTenantHoldAdded        = "tenancy.tenant.hold_added.v1"
	TypeTenantHoldLifted       = "tenancy.tenant.hold_lifted.v1"
	TypeTenantRealmPlaced      = "tenancy.tenant.realm_placed.v1"
	TypeTenantMarkedRoot       = "tenancy.tenant.marked_root.v1"
)

// TenantCustomerAssigned records the customer that owns a tenant (empty:
// none any more).
type TenantCustomerAssigned struct {
	CustomerID string `json:"customer_id"`
}

// EventType implements Payload.
func (*TenantCustomerAssigned) EventType() string { return TypeTenantCustomerAssigned }

// Summary implements Summarizer.
func (p *TenantCustomerAssigned) Summary() string {
	if p.CustomerID == "" {
		return "detached from its customer"
	}
	return "owned by customer " + p.CustomerID
}

// TenantHoldAdded records another reason to keep a suspended tenant
// suspended. The first hold suspends the tenant (TenantSuspended); the
// tenant becomes active again only when every hold is lifted.
type TenantHoldAdded struct {
	Reason string `json:"reason"`
	Note   string `json:"note,omitempty"`
}

// EventType implements Payload.
func (*TenantHoldAdded) EventType() string { return TypeTenantHoldAdded }

// Summary implements Summarizer.
func (p *TenantHoldAdded) Summary() string { return "hold added while suspended (" + p.Reason + ")" }

// TenantHoldLifted records one hold lifted while others remain; lifting
// the last is a TenantResumed.
type TenantHoldLifted struct {
	Reason string `json:"reason"`
}

// EventType implements Payload.
func (*TenantHoldLifted) EventType() string { return TypeTenantHoldLifted }

// Summary implements Summarizer.
func (p *TenantHoldLifted) Summary() string { return "hold lifted (" + p.Reason + ")" }

// TenantRealmPlaced records where the tenant's identity lives, decided at
// activation from its customer's realm mode: its own realm, or an
// organization in the shared tenant's realm.
type TenantRealmPlaced struct {
	// Mode is "own" or "shared".
	Mode string `json:"mode"`
	// Realm is the Keycloak realm; Organization the organization alias in
	// it when shared.
	Realm        string `json:"realm"`
	Organization string `json:"organization,omitempty"`
}

// EventType implements Payload.
func (*TenantRealmPlaced) EventType() string { return TypeTenantRealmPlaced }

// Summary implements Summarizer.
func (p *TenantRealmPlaced) Summary() string {
	if p.Mode == "shared" {
		return fmt.Sprintf("placed as organization %s in the shared realm %s", p.Organization, p.Realm)
	}
	return "placed in its own realm " + p.Realm
}

// TenantMarkedRoot records that a tenant is one of the platform's own
// (the root tenant or the shared tenant), made by bootstrap: it cannot be
// suspended, archived or deleted.
type TenantMarkedRoot struct {
	// Role is "root" or "shared".
	Role string `json:"role"`
}

// EventType implements Payload.
func (*TenantMarkedRoot) EventType() string { return TypeTenantMarkedRoot }

// Summary implements Summarizer.
func (p *TenantMarkedRoot) Summary() string { return "marked as the platform's " + p.Role + " tenant" }

func init() {
	register(
		func() Payload { return &TenantCustomerAssigned{} },
		func() Payload { return &TenantHoldAdded{} },
		func() Payload { return &TenantHoldLifted{} },
		func() Payload { return &TenantRealmPlaced{} },
		func() Payload { return &TenantMarkedRoot{} },
	)
}
