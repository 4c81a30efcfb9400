package projection

import (
	"encoding/json"
	"time"

	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// CustomerDoc is a customer as the customers read model stores it (the
// state_doc column): a persistence contract of its own, like TenantDoc, so
// that renaming a field of domain.Customer cannot silently change stored
// rows; the golden test pins its member names. A change here needs a new
// SchemaVersion (a rebuild).
//
// It holds what domain.CustomerDecider.Evolve needs to go on folding the
// customer's non-personal members, and deliberately not the fiscal ids,
// the address or the contacts: those stay sealed in the log, under the
// customer's own key, and a read of one customer takes them from there.
// An individual's names, email and phone are kept (listings and search
// need them) until the customer is deleted, when the fold blanks them.
type CustomerDoc struct {
	ID          string            `json:"ID"`
	Kind        string            `json:"Kind"`
	LegalName   string            `json:"LegalName"`
	DisplayName string            `json:"DisplayName"`
	Email       string            `json:"Email"`
	Phone       string            `json:"Phone"`
	ExternalIDs map[string]string `json:"ExternalIDs"`
	Labels      map[string]string `json:"Labels"`
	RealmMode   string            `json:"RealmMode"`
	Root        bool              `json:"Root"`
	// FiscalIndex holds the blind indexes of the fiscal ids, never the ids.
	FiscalIndex FiscalIndexDoc `json:"FiscalIndex"`

	Verification VerificationDoc `json:"Verification"`
	Version      int64           `json:"Version"`
	CreatedAt    time.Time       `json:"CreatedAt"`
	UpdatedAt    time.Time       `json:"UpdatedAt"`
	Deleted      bool            `json:"Deleted"`
	DeletedAt    time.Time       `json:"DeletedAt"`
	PIIErased    bool            `json:"PIIErased"`
}

// FiscalIndexDoc is a stored events.FiscalIndex.
type FiscalIndexDoc struct {
	PAN   string `json:"PAN"`
	TAN   string `json:"TAN"`
	GSTIN string `json:"GSTIN"`
}

// VerificationDoc is a stored domain.Verification. Evidence is null, never
// [], when there is none, so that a customer folded in memory and one read
// back store the same document.
type VerificationDoc struct {
	Type         string        `json:"Type"`
	Status       string        `json:"Status"`
	Evidence     []EvidenceDoc `json:"Evidence"`
	Note         string        `json:"Note"`
	UpdatedAt    time.Time     `json:"UpdatedAt"`
	UpdatedBy    string        `json:"UpdatedBy"`
	GraceUntil   time.Time     `json:"GraceUntil"`
	GraceExpired bool          `json:"GraceExpired"`
}

// EvidenceDoc is a stored events.Evidence (a reference, never a document).
type EvidenceDoc struct {
	Kind      string `json:"Kind"`
	Reference string `json:"Reference"`
}

// CustomerDocOf returns the stored form of c, leaving out its personal
// data that only the log keeps (address, fiscal ids, contacts).
func CustomerDocOf(c domain.Customer) CustomerDoc {
	v := c.Verification
	d := CustomerDoc{
		ID: c.ID, Kind: c.Kind, LegalName: c.LegalName, DisplayName: c.DisplayName, Email: c.Email, Phone: c.Phone,
		ExternalIDs: c.ExternalIDs, Labels: c.Labels, RealmMode: c.RealmMode, Root: c.Root,
		FiscalIndex: FiscalIndexDoc(c.FiscalIndex),
		Verification: VerificationDoc{Type: v.Type, Status: v.Status, Note: v.Note, UpdatedAt: v.UpdatedAt, UpdatedBy: v.UpdatedBy,
			GraceUntil: v.GraceUntil, GraceExpired: v.GraceExpired},
		Version: c.Version, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt, Deleted: c.Deleted, DeletedAt: c.DeletedAt, PIIErased: c.PIIErased,
	}
	for _, e := range v.Evidence {
		d.Verification.Evidence = append(d.Verification.Evidence, EvidenceDoc(e))
	}
	return d
}

// Customer returns the customer d stores: without address, fiscal ids and
// contacts, which the read model never holds.
func (d CustomerDoc) Customer() domain.Customer {
	v := d.Verification
	c := domain.Customer{
		ID: d.ID, Kind: d.Kind, LegalName: d.LegalName, DisplayName: d.DisplayName, Email: d.Email, Phone: d.Phone,
		ExternalIDs: d.ExternalIDs, Labels: d.Labels, RealmMode: d.RealmMode, Root: d.Root,
		FiscalIndex: events.FiscalIndex(d.FiscalIndex),
		Verification: domain.Verification{Type: v.Type, Status: v.Status, Note: v.Note, UpdatedAt: v.UpdatedAt, UpdatedBy: v.UpdatedBy,
			GraceUntil: v.GraceUntil, GraceExpired: v.GraceExpired},
		Version: d.Version, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, Deleted: d.Deleted, DeletedAt: d.DeletedAt, PIIErased: d.PIIErased,
	}
	for _, e := range v.Evidence {
		c.Verification.Evidence = append(c.Verification.Evidence, events.Evidence(e))
	}
	return c
}

// MarshalCustomer encodes c as the read model stores it.
func MarshalCustomer(c domain.Customer) ([]byte, error) { return json.Marshal(CustomerDocOf(c)) }

// UnmarshalCustomer decodes a stored customer.
func UnmarshalCustomer(doc []byte) (domain.Customer, error) {
	var d CustomerDoc
	if err := json.Unmarshal(doc, &d); err != nil {
		return domain.Customer{}, err
	}
	return d.Customer(), nil
}
