package projection

import (
	"encoding/json"
	"time"

	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// TenantDoc is a tenant as the tenants read model stores it (the state_doc
// column): a persistence contract of its own, so that renaming a field of
// domain.Tenant cannot silently change stored rows. Its member names are
// the ones rows have always had; the golden test pins them. A change here
// needs a new SchemaVersion (a rebuild).
type TenantDoc struct {
	ID          string            `json:"ID"`
	Slug        string            `json:"Slug"`
	DisplayName string            `json:"DisplayName"`
	Plan        string            `json:"Plan"`
	Regions     events.Regions    `json:"Regions"`
	Isolation   string            `json:"Isolation"`
	Contacts    []events.Contact  `json:"Contacts"`
	ExternalIDs map[string]string `json:"ExternalIDs"`
	Labels      map[string]string `json:"Labels"`
	CustomerRef string            `json:"CustomerRef"`

	State      string    `json:"State"`
	Version    int64     `json:"Version"`
	CreatedAt  time.Time `json:"CreatedAt"`
	UpdatedAt  time.Time `json:"UpdatedAt"`
	ArchivedAt time.Time `json:"ArchivedAt"`
	DeletedAt  time.Time `json:"DeletedAt"`

	Suspension   *SuspensionDoc  `json:"Suspension"`
	Activation   *ActivationDoc  `json:"Activation"`
	Provisioning ProvisioningDoc `json:"Provisioning"`
	PIIErased    bool            `json:"PIIErased"`

	// Holds, CustomerID, Root and Realm came with customers (schema
	// version 3). Holds is null, never [], when there are none, so that a
	// tenant folded in memory and one read back store the same document.
	Holds      []HoldDoc `json:"Holds"`
	CustomerID string    `json:"CustomerID"`
	Root       string    `json:"Root"`
	Realm      *RealmDoc `json:"Realm"`
}

// HoldDoc is a stored domain.Hold.
type HoldDoc struct {
	Reason string    `json:"Reason"`
	Note   string    `json:"Note"`
	Since  time.Time `json:"Since"`
	By     string    `json:"By"`
}

// RealmDoc is a stored domain.RealmPlacement.
type RealmDoc struct {
	Mode         string `json:"Mode"`
	Realm        string `json:"Realm"`
	Organization string `json:"Organization"`
}

// SuspensionDoc is a stored domain.Suspension.
type SuspensionDoc struct {
	Reason string    `json:"Reason"`
	Note   string    `json:"Note"`
	Since  time.Time `json:"Since"`
}

// ActivationDoc is a stored domain.Activation.
type ActivationDoc struct {
	Placement   events.Placement     `json:"Placement"`
	Features    []string             `json:"Features"`
	Quotas      map[string]int64     `json:"Quotas"`
	Policy      []events.PolicyCheck `json:"Policy"`
	Admin       *events.Admin        `json:"Admin"`
	RequestedAt time.Time            `json:"RequestedAt"`
	ActivatedAt time.Time            `json:"ActivatedAt"`
}

// ProvisioningDoc is a stored domain.Provisioning.
type ProvisioningDoc struct {
	SagaID      string            `json:"SagaID"`
	Saga        string            `json:"Saga"`
	Status      string            `json:"Status"`
	Steps       []StepDoc         `json:"Steps"`
	FailedStep  string            `json:"FailedStep"`
	LastError   string            `json:"LastError"`
	StartedAt   time.Time         `json:"StartedAt"`
	UpdatedAt   time.Time         `json:"UpdatedAt"`
	ExternalIDs map[string]string `json:"ExternalIDs"`
	Repairs     int               `json:"Repairs"`
}

// StepDoc is a stored domain.StepStatus.
type StepDoc struct {
	Name        string            `json:"Name"`
	Outcome     string            `json:"Outcome"`
	Attempt     int               `json:"Attempt"`
	Detail      string            `json:"Detail"`
	StartedAt   time.Time         `json:"StartedAt"`
	FinishedAt  time.Time         `json:"FinishedAt"`
	ExternalIDs map[string]string `json:"ExternalIDs"`
}

// DocOf returns the stored form of t.
func DocOf(t domain.Tenant) TenantDoc {
	d := TenantDoc{
		ID: t.ID, Slug: t.Slug, DisplayName: t.DisplayName, Plan: t.Plan, Regions: t.Regions, Isolation: string(t.Isolation),
		Contacts: t.Contacts, ExternalIDs: t.ExternalIDs, Labels: t.Labels, CustomerRef: t.CustomerRef,
		State: string(t.State), Version: t.Version, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, ArchivedAt: t.ArchivedAt, DeletedAt: t.DeletedAt,
		PIIErased: t.PIIErased, CustomerID: t.CustomerID, Root: t.Root,
	}
	if s := t.Suspension; s != nil {
		d.Suspension = &SuspensionDoc{Reason: string(s.Reason), Note: s.Note, Since: s.Since}
	}
	for _, h := range t.Holds {
		d.Holds = append(d.Holds, HoldDoc{Reason: string(h.Reason), Note: h.Note, Since: h.Since, By: h.By})
	}
	if r := t.Realm; r != nil {
		d.Realm = &RealmDoc{Mode: r.Mode, Realm: r.Realm, Organization: r.Organization}
	}
	if a := t.Activation; a != nil {
		d.Activation = &ActivationDoc{Placement: a.Placement, Features: a.Features, Quotas: a.Quotas, Policy: a.Policy, Admin: a.Admin,
			RequestedAt: a.RequestedAt, ActivatedAt: a.ActivatedAt}
	}
	p := t.Provisioning
	d.Provisioning = ProvisioningDoc{SagaID: p.SagaID, Saga: p.Saga, Status: string(p.Status), FailedStep: p.FailedStep, LastError: p.LastError,
		StartedAt: p.StartedAt, UpdatedAt: p.UpdatedAt, ExternalIDs: p.ExternalIDs, Repairs: p.Repairs}
	for _, s := range p.Steps {
		d.Provisioning.Steps = append(d.Provisioning.Steps, StepDoc(s))
	}
	return d
}

// Tenant returns the tenant d stores.
func (d TenantDoc) Tenant() domain.Tenant {
	t := domain.Tenant{
		ID: d.ID, Slug: d.Slug, DisplayName: d.DisplayName, Plan: d.Plan, Regions: d.Regions, Isolation: domain.IsolationMode(d.Isolation),
		Contacts: d.Contacts, ExternalIDs: d.ExternalIDs, Labels: d.Labels, CustomerRef: d.CustomerRef,
		State: domain.State(d.State), Version: d.Version, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, ArchivedAt: d.ArchivedAt, DeletedAt: d.DeletedAt,
		PIIErased: d.PIIErased, CustomerID: d.CustomerID, Root: d.Root,
	}
	if s := d.Suspension; s != nil {
		t.Suspension = &domain.Suspension{Reason: domain.SuspensionReason(s.Reason), Note: s.Note, Since: s.Since}
	}
	for _, h := range d.Holds {
		t.Holds = append(t.Holds, domain.Hold{Reason: domain.SuspensionReason(h.Reason), Note: h.Note, Since: h.Since, By: h.By})
	}
	if r := d.Realm; r != nil {
		t.Realm = &domain.RealmPlacement{Mode: r.Mode, Realm: r.Realm, Organization: r.Organization}
	}
	if a := d.Activation; a != nil {
		t.Activation = &domain.Activation{Placement: a.Placement, Features: a.Features, Quotas: a.Quotas, Policy: a.Policy, Admin: a.Admin,
			RequestedAt: a.RequestedAt, ActivatedAt: a.ActivatedAt}
	}
	p := d.Provisioning
	t.Provisioning = domain.Provisioning{SagaID: p.SagaID, Saga: p.Saga, Status: domain.SagaStatus(p.Status), FailedStep: p.FailedStep, LastError: p.LastError,
		StartedAt: p.StartedAt, UpdatedAt: p.UpdatedAt, ExternalIDs: p.ExternalIDs, Repairs: p.Repairs}
	for _, s := range p.Steps {
		t.Provisioning.Steps = append(t.Provisioning.Steps, domain.StepStatus(s))
	}
	return t
}

// MarshalTenant encodes t as the read model stores it.
func MarshalTenant(t domain.Tenant) ([]byte, error) { return json.Marshal(DocOf(t)) }

// UnmarshalTenant decodes a stored tenant.
func UnmarshalTenant(doc []byte) (domain.Tenant, error) {
	var d TenantDoc
	if err := json.Unmarshal(doc, &d); err != nil {
		return domain.Tenant{}, err
	}
	return d.Tenant(), nil
}
