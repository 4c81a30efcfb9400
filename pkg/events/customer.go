package events

import (
	"fmt"
	"strings"
)

// Customer event types. A customer is the billing entity that owns tenants
// (seed 000): a platform aggregate, on subjects
// tenancy.evt.<platform>.customer.<id>, whose personal data is sealed under
// a key of its own (PIIScope), so that erasing one customer destroys that
// key alone.
const (
	TypeCustomerCreated              = "tenancy.customer.created.v1"
	TypeCustomerUpdated              = "tenancy.customer.updated.v1"
	TypeCustomerVerificationRecorded = "tenancy.customer.verification_recorded.v1"
	TypeCustomerRekycGraceExpired    = "tenancy.customer.rekyc_grace_expired.v1"
	TypeCustomerDeleted              = "tenancy.customer.deleted.v1"
)

// AggregateCustomer is the aggregate kind of customer events in subjects.
const AggregateCustomer = "customer"

// PIIScope returns the key scope personal data in e is sealed under: the
// customer's own for customer events, the tenant's otherwise.
func PIIScope(e *Envelope) string { return PIIScopeOf(e.TenantID, e.Aggregate(), e.Subject) }

// PIIScopeOf returns the key scope of the personal data of an aggregate:
// the customer's own for a customer, its tenant's otherwise.
func PIIScopeOf(tenantID, aggregate, id string) string {
	if aggregate == AggregateCustomer {
		return CustomerPIIScope(id)
	}
	return tenantID
}

// CustomerPIIScope is the key scope of customer id's personal data.
func CustomerPIIScope(id string) string { return "customer-" + id }

// Address is a postal address.
type Address struct {
	Line1      string `json:"line1"`
	Line2      string `json:"line2,omitempty"`
	City       string `json:"city"`
	State      string `json:"state,omitempty"`
	PostalCode string `json:"postal_code,omitempty"`
	// Country is an ISO 3166-1 alpha-2 code.
	Country string `json:"country"`
}

// FiscalIDs are a customer's Indian fiscal identifiers.
type FiscalIDs struct {
	PAN   string `json:"pan,omitempty"`
	TAN   string `json:"tan,omitempty"`
	GSTIN string `json:"gstin,omitempty"`
}

// FiscalIndex holds the blind indexes of a customer's fiscal ids: a keyed
// HMAC of each normalised value, so that an exact lookup finds the customer
// without the value ever being stored in the clear.
type FiscalIndex struct {
	PAN   string `json:"pan,omitempty"`
	TAN   string `json:"tan,omitempty"`
	GSTIN string `json:"gstin,omitempty"`
}

// CustomerPII is a customer's personal data: the fiscal ids and the
// address always; for an individual, the names, email and phone too.
type CustomerPII struct {
	LegalName   string    `json:"legal_name,omitempty"`
	DisplayName string    `json:"display_name,omitempty"`
	Email       string    `json:"email,omitempty"`
	Phone       string    `json:"phone,omitempty"`
	Address     *Address  `json:"address,omitempty"`
	FiscalIDs   FiscalIDs `json:"fiscal_ids"`
	// FiscalIndex is sealed with the ids: in the clear, in a log that
	// keeps everything, it would confirm a guessed id of an erased
	// customer to whoever holds the index key.
	FiscalIndex FiscalIndex `json:"fiscal_index"`
	Contacts    []Contact   `json:"contacts,omitempty"`
}

// CustomerCreated records a new customer.
type CustomerCreated struct {
	Kind string `json:"kind"`
	// LegalName and DisplayName are a business's, in the clear (an
	// individual's are personal data, sealed).
	LegalName   string            `json:"legal_name,omitempty"`
	DisplayName string            `json:"display_name,omitempty"`
	Email       string            `json:"email,omitempty"`
	Phone       string            `json:"phone,omitempty"`
	RealmMode   string            `json:"realm_mode"`
	ExternalIDs map[string]string `json:"external_ids,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	// Root marks the platform's own customer, made by bootstrap.
	Root bool `json:"root,omitempty"`
	// PII is the sealed CustomerPII.
	PII string `json:"pii,omitempty"`

	Personal  *CustomerPII `json:"-"`
	PIIErased bool         `json:"-"`
}

// EventType implements Payload.
func (*CustomerCreated) EventType() string { return TypeCustomerCreated }

// Summary implements Summarizer.
func (p *CustomerCreated) Summary() string {
	name := p.DisplayName
	if name == "" {
		name = "an individual"
	}
	return fmt.Sprintf("created %s customer %s, realm mode %s", p.Kind, name, p.RealmMode)
}

// HasPlainPII implements PIIHolder.
func (p *CustomerCreated) HasPlainPII() bool { return p.Personal != nil }

// SealPII implements PIIHolder.
func (p *CustomerCreated) SealPII(scope string, c PIICipher) error {
	return sealInto(scope, c, p.Personal, &p.PII)
}

// OpenPII implements PIIHolder.
func (p *CustomerCreated) OpenPII(scope string, c PIICipher) error {
	return openInto(scope, p.PII, c, &p.PIIErased, func(v CustomerPII) { p.Personal = &v })
}

// CustomerUpdated records a change. Only the members named in Changed are
// meaningful; each holds its complete new value. Personal members that
// changed are in the sealed PII, which then holds the complete personal
// data.
type CustomerUpdated struct {
	Changed     []string          `json:"changed"`
	LegalName   *string           `json:"legal_name,omitempty"`
	DisplayName *string           `json:"display_name,omitempty"`
	Email       *string           `json:"email,omitempty"`
	Phone       *string           `json:"phone,omitempty"`
	RealmMode   *string           `json:"realm_mode,omitempty"`
	ExternalIDs map[string]string `json:"external_ids,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	PII         string            `json:"pii,omitempty"`

	Personal  *CustomerPII `json:"-"`
	PIIErased bool         `json:"-"`
}

// EventType implements Payload.
func (*CustomerUpdated) EventType() string { return TypeCustomerUpdated }

// Summary implements Summarizer.
func (p *CustomerUpdated) Summary() string { return "updated " + strings.Join(p.Changed, ", ") }

// ChangedField reports whether field is among the changed ones.
func (p *CustomerUpdated) ChangedField(field string) bool {
	for _, f := range p.Changed {
		if f == field {
			return true
		}
	}
	return false
}

// HasPlainPII implements PIIHolder.
func (p *CustomerUpdated) HasPlainPII() bool { return p.Personal != nil }

// SealPII implements PIIHolder.
func (p *CustomerUpdated) SealPII(scope string, c PIICipher) error {
	return sealInto(scope, c, p.Personal, &p.PII)
}

// OpenPII implements PIIHolder.
func (p *CustomerUpdated) OpenPII(scope string, c PIICipher) error {
	return openInto(scope, p.PII, c, &p.PIIErased, func(v CustomerPII) { p.Personal = &v })
}

// Evidence references a document held elsewhere (never the document).
type Evidence struct {
	Kind      string `json:"kind"`
	Reference string `json:"reference"`
}

// CustomerVerificationRecorded records a KYC (individual) or KYB (business)
// status set by a platform administrator. A due_for_rekyc status starts a
// grace period ending at GraceUntil, after which the customer's tenants are
// suspended for compliance.
type CustomerVerificationRecorded struct {
	Type       string     `json:"type"`
	Status     string     `json:"status"`
	Evidence   []Evidence `json:"evidence,omitempty"`
	Note       string     `json:"note,omitempty"`
	GraceUntil string     `json:"grace_until,omitempty"`
}

// EventType implements Payload.
func (*CustomerVerificationRecorded) EventType() string { return TypeCustomerVerificationRecorded }

// Summary implements Summarizer.
func (p *CustomerVerificationRecorded) Summary() string {
	s := strings.ToUpper(p.Type) + " status " + p.Status
	if p.GraceUntil != "" {
		s += ", grace until " + p.GraceUntil
	}
	return s
}

// CustomerRekycGraceExpired records that a customer due for re-KYC was not
// verified again within its grace period (a durable timer fired): its
// tenants are suspended for compliance.
type CustomerRekycGraceExpired struct {
	GraceUntil string `json:"grace_until"`
}

// EventType implements Payload.
func (*CustomerRekycGraceExpired) EventType() string { return TypeCustomerRekycGraceExpired }

// Summary implements Summarizer.
func (p *CustomerRekycGraceExpired) Summary() string {
	return "re-KYC grace period ended (" + p.GraceUntil + "): tenants are suspended for compliance"
}

// CustomerDeleted records that a customer, all of whose tenants were
// deleted, is gone: its personal data key is destroyed after this event.
type CustomerDeleted struct{}

// EventType implements Payload.
func (*CustomerDeleted) EventType() string { return TypeCustomerDeleted }

// Summary implements Summarizer.
func (*CustomerDeleted) Summary() string { return "deleted customer; personal data erased" }

func init() {
	register(
		func() Payload { return &CustomerCreated{} },
		func() Payload { return &CustomerUpdated{} },
		func() Payload { return &CustomerVerificationRecorded{} },
		func() Payload { return &CustomerRekycGraceExpired{} },
		func() Payload { return &CustomerDeleted{} },
	)
}
