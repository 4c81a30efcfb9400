package domain

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/tenancyhq/tenancy/pkg/events"
)

// Customer kinds.
const (
	CustomerIndividual = "individual"
	CustomerBusiness   = "business"
)

// CustomerKinds lists the kinds.
var CustomerKinds = []string{CustomerIndividual, CustomerBusiness}

// Realm modes: whether a customer's tenants get realms of their own or
// join the shared tenant's realm as organizations.
const (
	RealmOwn    = "own"
	RealmShared = "shared"
)

// RealmModes lists the realm modes.
var RealmModes = []string{RealmOwn, RealmShared}

// Verification statuses, as a platform administrator records them.
const (
	VerificationPending     = "pending"
	VerificationCompleted   = "completed"
	VerificationPartial     = "partial"
	VerificationDueForRekyc = "due_for_rekyc"
)

// VerificationStatuses lists the statuses.
var VerificationStatuses = []string{VerificationPending, VerificationCompleted, VerificationPartial, VerificationDueForRekyc}

// Limits on customer records.
const (
	MaxLegalName = 300
	MaxEvidence  = 20
)

// RootCustomerID is the platform's own customer, made by bootstrap.
const RootCustomerID = "01900000-0000-7000-8000-000000000001"

var countryRE = regexp.MustCompile(`^[A-Z]{2}$`)

// Verification is a customer's KYC (individual) or KYB (business) status.
type Verification struct {
	Type      string
	Status    string
	Evidence  []events.Evidence
	Note      string
	UpdatedAt time.Time
	UpdatedBy string
	// GraceUntil is when a due_for_rekyc status's grace ends; GraceExpired
	// that it ended without a new verification.
	GraceUntil   time.Time
	GraceExpired bool
}

// Customer is the state of one customer aggregate: the billing entity that
// owns tenants.
type Customer struct {
	ID          string
	Kind        string
	LegalName   string
	DisplayName string
	Email       string
	Phone       string
	Address     *events.Address
	FiscalIDs   events.FiscalIDs
	FiscalIndex events.FiscalIndex
	Contacts    []events.Contact
	ExternalIDs map[string]string
	Labels      map[string]string
	RealmMode   string
	Root        bool

	Verification Verification
	Version      int64
	CreatedAt    time.Time
	UpdatedAt    time.Time
	Deleted      bool
	DeletedAt    time.Time
	// PIIErased is true once the customer's personal data key is destroyed.
	PIIErased bool
}

// AggregateVersion implements Aggregate.
func (c Customer) AggregateVersion() int64 { return c.Version }

// Exists reports whether the customer has been created and not deleted.
func (c Customer) Exists() bool { return c.Version > 0 && !c.Deleted }

// VerificationType is kyc for individuals, kyb for businesses.
func VerificationType(kind string) string {
	if kind == CustomerIndividual {
		return "kyc"
	}
	return "kyb"
}

// FiscalIndexer returns the blind index of a fiscal id (kind: pan, tan,
// gstin) of a normalised value; "" for "".
type FiscalIndexer func(kind, value string) string

// CreateCustomer creates a customer.
type CreateCustomer struct {
	ID          string
	Kind        string
	LegalName   string
	DisplayName string
	Email       string
	Phone       string
	Address     *events.Address
	FiscalIDs   events.FiscalIDs
	Contacts    []events.Contact
	ExternalIDs map[string]string
	Labels      map[string]string
	RealmMode   string
	// Root marks the platform's own customer (bootstrap only).
	Root bool
	// Index makes the fiscal ids' blind indexes.
	Index FiscalIndexer
}

// UpdateCustomer changes a customer with merge patch semantics: nil leaves
// a member as it is. Address set with ClearAddress removes it; FiscalIDs
// members set to "" remove that id.
type UpdateCustomer struct {
	LegalName    *string
	DisplayName  *string
	Email        *string
	Phone        *string
	Address      *events.Address
	ClearAddress bool
	FiscalIDs    *FiscalIDsPatch
	Contacts     *[]events.Contact
	ExternalIDs  *MapPatch
	Labels       *MapPatch
	RealmMode    *string
	Index        FiscalIndexer
}

// FiscalIDsPatch changes fiscal ids member by member.
type FiscalIDsPatch struct {
	PAN, TAN, GSTIN *string
}

// RecordVerification records a KYC/KYB status. A due_for_rekyc status
// starts a grace period of Grace from Now.
type RecordVerification struct {
	Status   string
	Evidence []events.Evidence
	Note     string
	Now      time.Time
	Grace    time.Duration
}

// ExpireRekycGrace ends a re-KYC grace period that ran out (a durable
// timer fires it); it changes nothing unless the customer is still due for
// re-KYC with that very grace period.
type ExpireRekycGrace struct {
	GraceUntil time.Time
}

// DeleteCustomer erases a customer whose tenants are all deleted. Confirm
// must repeat its id; OpenTenants is how many of its tenants are not
// deleted (the app counts them).
type DeleteCustomer struct {
	Confirm     string
	OpenTenants int
}

// Action implements a command.
func (CreateCustomer) Action() string { return "create" }

// Action implements a command.
func (UpdateCustomer) Action() string { return "update" }

// Action implements a command.
func (RecordVerification) Action() string { return "record-verification" }

// Action implements a command.
func (ExpireRekycGrace) Action() string { return "expire-rekyc-grace" }

// Action implements a command.
func (DeleteCustomer) Action() string { return "delete" }

// CustomerCommand is a command the Customer aggregate decides.
type CustomerCommand interface {
	Action() string
}

// CustomerDecider decides customer commands.
type CustomerDecider struct{}

// Kind implements Decider.
func (CustomerDecider) Kind() string { return events.AggregateCustomer }

// Decide implements Decider.
func (CustomerDecider) Decide(c Customer, cmd CustomerCommand) ([]events.Payload, error) {
	if _, isDelete := cmd.(DeleteCustomer); isDelete && c.Deleted {
		// Already deleted: a repeat, so that erasing its key can be
		// retried (the application destroys it on every delete).
		return nil, nil
	}
	if _, isCreate := cmd.(CreateCustomer); !isCreate && !c.Exists() {
		return nil, fmt.Errorf("customer %w", ErrNotFound)
	}
	switch x := cmd.(type) {
	case CreateCustomer:
		return createCustomer(c, x)
	case UpdateCustomer:
		return updateCustomer(c, x)
	case RecordVerification:
		return recordVerification(c, x)
	case ExpireRekycGrace:
		return expireRekycGrace(c, x)
	case DeleteCustomer:
		return deleteCustomer(c, x)
	}
	return nil, fmt.Errorf("%w: unknown command %T", ErrInvalid, cmd)
}

func createCustomer(c Customer, x CreateCustomer) ([]events.Payload, error) {
	if c.Version > 0 {
		return nil, &ConflictError{Field: "id", Value: x.ID, Message: fmt.Sprintf("customer %s already exists", x.ID)}
	}
	var fe fieldErrors
	if x.ID == "" {
		fe.add("id", "is required")
	}
	if !slices.Contains(CustomerKinds, x.Kind) {
		fe.add("kind", fmt.Sprintf("unknown kind %q", x.Kind), CustomerKinds...)
	}
	mode := x.RealmMode
	if mode == "" {
		mode = RealmOwn
	}
	if !slices.Contains(RealmModes, mode) {
		fe.add("realm_mode", fmt.Sprintf("unknown realm mode %q", mode), RealmModes...)
	}
	p := customerProfile{Kind: x.Kind, LegalName: x.LegalName, DisplayName: x.DisplayName, Email: x.Email, Phone: x.Phone,
		Address: x.Address, FiscalIDs: normaliseFiscal(x.FiscalIDs), Contacts: x.Contacts}
	p.check(&fe)
	p.FiscalIndex = indexOf(p.FiscalIDs, x.Index)
	checkExternalIDs(&fe, x.ExternalIDs)
	checkLabels(&fe, x.Labels)
	if err := fe.err(); err != nil {
		return nil, err
	}
	ev := &events.CustomerCreated{Kind: x.Kind, RealmMode: mode, ExternalIDs: nonEmpty(x.ExternalIDs), Labels: nonEmpty(x.Labels),
		Root: x.Root, Personal: p.personal()}
	if x.Kind == CustomerBusiness {
		ev.LegalName, ev.DisplayName, ev.Email, ev.Phone = p.LegalName, p.DisplayName, p.Email, p.Phone
	}
	return []events.Payload{ev}, nil
}

// customerProfile is what create and update validate together.
type customerProfile struct {
	Kind                                 string
	LegalName, DisplayName, Email, Phone string
	Address                              *events.Address
	FiscalIDs                            events.FiscalIDs
	FiscalIndex                          events.FiscalIndex
	Contacts                             []events.Contact
}

func (p customerProfile) check(fe *fieldErrors) {
	checkText(fe, "legal_name", p.LegalName, true, MaxLegalName)
	checkText(fe, "display_name", p.DisplayName, true, MaxDisplayName)
	if p.Email != "" || p.Kind == CustomerIndividual {
		checkEmail(fe, "email", p.Email)
	}
	if p.Phone != "" && !phoneRE.MatchString(p.Phone) {
		fe.add("phone", "must be an E.164 number like +912212345678")
	}
	if a := p.Address; a != nil {
		checkText(fe, "address.line1", a.Line1, true, MaxNote)
		checkText(fe, "address.line2", a.Line2, false, MaxNote)
		checkText(fe, "address.city", a.City, true, MaxDisplayName)
		checkText(fe, "address.state", a.State, false, MaxDisplayName)
		checkText(fe, "address.postal_code", a.PostalCode, false, 20)
		if !countryRE.MatchString(a.Country) {
			fe.add("address.country", "must be an ISO 3166-1 alpha-2 code like IN")
		}
	}
	if f := p.FiscalIDs; f.PAN != "" {
		checkPAN(fe, "fiscal_ids.pan", f.PAN, p.Kind)
	}
	if f := p.FiscalIDs; f.TAN != "" {
		checkTAN(fe, "fiscal_ids.tan", f.TAN)
	}
	if f := p.FiscalIDs; f.GSTIN != "" {
		checkGSTIN(fe, "fiscal_ids.gstin", f.GSTIN, f.PAN)
		if f.PAN == "" && len(f.GSTIN) == 15 && matches(f.GSTIN[2:12], "AAAAA9999A") {
			// The PAN it embeds must fit the kind, given or not.
			checkPAN(fe, "fiscal_ids.gstin", f.GSTIN[2:12], p.Kind)
		}
	}
	checkContacts(fe, p.Contacts)
}

// personal returns the profile's personal data.
func (p customerProfile) personal() *events.CustomerPII {
	pii := &events.CustomerPII{Address: p.Address, FiscalIDs: p.FiscalIDs, FiscalIndex: p.FiscalIndex, Contacts: slices.Clone(p.Contacts)}
	if p.Kind == CustomerIndividual {
		pii.LegalName, pii.DisplayName, pii.Email, pii.Phone = p.LegalName, p.DisplayName, p.Email, p.Phone
	}
	return pii
}

func normaliseFiscal(f events.FiscalIDs) events.FiscalIDs {
	return events.FiscalIDs{PAN: NormaliseFiscalID(f.PAN), TAN: NormaliseFiscalID(f.TAN), GSTIN: NormaliseFiscalID(f.GSTIN)}
}

// NormaliseFiscalID is the form a fiscal id is validated and indexed in
// (upper case, no surrounding space), so that a lookup finds it however it
// was typed.
func NormaliseFiscalID(s string) string { return strings.ToUpper(strings.TrimSpace(s)) }

// FiscalKinds are the fiscal ids a customer can be looked up by.
var FiscalKinds = []string{"pan", "tan", "gstin"}

func indexOf(f events.FiscalIDs, index FiscalIndexer) events.FiscalIndex {
	if index == nil {
		return events.FiscalIndex{}
	}
	one := func(kind, v string) string {
		if v == "" {
			return ""
		}
		return index(kind, v)
	}
	return events.FiscalIndex{PAN: one("pan", f.PAN), TAN: one("tan", f.TAN), GSTIN: one("gstin", f.GSTIN)}
}

func (c Customer) profile() customerProfile {
	return customerProfile{Kind: c.Kind, LegalName: c.LegalName, DisplayName: c.DisplayName, Email: c.Email, Phone: c.Phone,
		Address: c.Address, FiscalIDs: c.FiscalIDs, FiscalIndex: c.FiscalIndex, Contacts: c.Contacts}
}

func updateCustomer(c Customer, x UpdateCustomer) ([]events.Payload, error) {
	if c.PIIErased {
		return nil, fmt.Errorf("%w: the customer's personal data is erased", ErrPrecondition)
	}
	p := c.profile()
	u := &events.CustomerUpdated{}
	personal := false
	str := func(field string, v *string, cur *string, isPII bool, ev **string) {
		if v == nil || *v == *cur {
			return
		}
		*cur = *v
		u.Changed = append(u.Changed, field)
		if isPII {
			personal = true
		} else {
			*ev = v
		}
	}
	biz := c.Kind == CustomerBusiness
	str("legal_name", x.LegalName, &p.LegalName, !biz, &u.LegalName)
	str("display_name", x.DisplayName, &p.DisplayName, !biz, &u.DisplayName)
	str("email", x.Email, &p.Email, !biz, &u.Email)
	str("phone", x.Phone, &p.Phone, !biz, &u.Phone)
	if x.ClearAddress && p.Address != nil {
		p.Address, personal = nil, true
		u.Changed = append(u.Changed, "address")
	} else if x.Address != nil && (p.Address == nil || *x.Address != *p.Address) {
		a := *x.Address
		p.Address, personal = &a, true
		u.Changed = append(u.Changed, "address")
	}
	if applyFiscalPatch(&p, x, u) {
		personal = true
	}
	if x.Contacts != nil && !slices.Equal(*x.Contacts, p.Contacts) {
		p.Contacts, personal = slices.Clone(*x.Contacts), true
		u.Changed = append(u.Changed, "contacts")
	}
	var fe fieldErrors
	if x.ExternalIDs != nil {
		if m := x.ExternalIDs.Apply(c.ExternalIDs); !maps.Equal(m, c.ExternalIDs) {
			checkExternalIDs(&fe, m)
			u.ExternalIDs = orEmpty(m)
			u.Changed = append(u.Changed, "external_ids")
		}
	}
	if x.Labels != nil {
		if m := x.Labels.Apply(c.Labels); !maps.Equal(m, c.Labels) {
			checkLabels(&fe, m)
			u.Labels = orEmpty(m)
			u.Changed = append(u.Changed, "labels")
		}
	}
	if x.RealmMode != nil && *x.RealmMode != c.RealmMode {
		if !slices.Contains(RealmModes, *x.RealmMode) {
			fe.add("realm_mode", fmt.Sprintf("unknown realm mode %q", *x.RealmMode), RealmModes...)
		}
		u.RealmMode = x.RealmMode
		u.Changed = append(u.Changed, "realm_mode")
	}
	p.check(&fe)
	if err := fe.err(); err != nil {
		return nil, err
	}
	if len(u.Changed) == 0 {
		return nil, nil
	}
	slices.Sort(u.Changed)
	if personal {
		u.Personal = p.personal()
	}
	return []events.Payload{u}, nil
}

// applyFiscalPatch applies the fiscal ids x changes to p, recording the
// new blind indexes in u; it reports whether any changed.
func applyFiscalPatch(p *customerProfile, x UpdateCustomer, u *events.CustomerUpdated) bool {
	f := x.FiscalIDs
	if f == nil {
		return false
	}
	next := p.FiscalIDs
	for _, m := range []struct {
		patch *string
		cur   *string
	}{{f.PAN, &next.PAN}, {f.TAN, &next.TAN}, {f.GSTIN, &next.GSTIN}} {
		if m.patch != nil {
			*m.cur = *m.patch
		}
	}
	if next = normaliseFiscal(next); next == p.FiscalIDs {
		return false
	}
	p.FiscalIDs = next
	p.FiscalIndex = indexOf(next, x.Index)
	u.Changed = append(u.Changed, "fiscal_ids")
	return true
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func recordVerification(c Customer, x RecordVerification) ([]events.Payload, error) {
	var fe fieldErrors
	if !slices.Contains(VerificationStatuses, x.Status) {
		fe.add("status", fmt.Sprintf("unknown status %q", x.Status), VerificationStatuses...)
	}
	if len(x.Evidence) > MaxEvidence {
		fe.add("evidence", fmt.Sprintf("at most %d references", MaxEvidence))
	}
	for i, e := range x.Evidence {
		checkText(&fe, fmt.Sprintf("evidence[%d].kind", i), e.Kind, true, 64)
		checkText(&fe, fmt.Sprintf("evidence[%d].reference", i), e.Reference, true, 500)
	}
	checkText(&fe, "note", x.Note, false, MaxNote)
	if x.Status == VerificationDueForRekyc && x.Grace <= 0 {
		fe.add("status", "due_for_rekyc needs a grace period (the catalog's rekyc_grace)")
	}
	if err := fe.err(); err != nil {
		return nil, err
	}
	v := c.Verification
	if v.Status == x.Status && v.Note == x.Note && slices.Equal(v.Evidence, x.Evidence) {
		return nil, nil // a repeat: recorded already
	}
	ev := &events.CustomerVerificationRecorded{Type: VerificationType(c.Kind), Status: x.Status, Evidence: slices.Clone(x.Evidence), Note: x.Note}
	if x.Status == VerificationDueForRekyc {
		if v.Status == VerificationDueForRekyc {
			ev.GraceUntil = v.GraceUntil.UTC().Format(time.RFC3339) // the grace already running goes on
		} else {
			ev.GraceUntil = x.Now.Add(x.Grace).UTC().Format(time.RFC3339)
		}
	}
	return []events.Payload{ev}, nil
}

func expireRekycGrace(c Customer, x ExpireRekycGrace) ([]events.Payload, error) {
	v := c.Verification
	if v.Status != VerificationDueForRekyc || v.GraceExpired || !v.GraceUntil.Equal(x.GraceUntil) {
		return nil, nil // verified again, or another grace period since
	}
	return []events.Payload{&events.CustomerRekycGraceExpired{GraceUntil: v.GraceUntil.UTC().Format(time.RFC3339)}}, nil
}

func deleteCustomer(c Customer, x DeleteCustomer) ([]events.Payload, error) {
	switch {
	case c.Root:
		return nil, fmt.Errorf("%w: the root customer is the platform's own and cannot be deleted", ErrPrecondition)
	case x.Confirm != c.ID:
		return nil, &ValidationError{Fields: []FieldError{{Field: "confirm",
			Message: fmt.Sprintf("deletion erases the customer's personal data for good: repeat its id (confirm=%s) to confirm it", c.ID)}}}
	case x.OpenTenants > 0:
		return nil, fmt.Errorf("%w: the customer still has %d tenant(s) that are not deleted; delete them first", ErrPrecondition, x.OpenTenants)
	}
	return []events.Payload{&events.CustomerDeleted{}}, nil
}

// Evolve implements Decider.
func (CustomerDecider) Evolve(c Customer, r Recorded) Customer {
	c.Version = r.Version
	c.UpdatedAt = r.Time
	switch p := r.Payload.(type) {
	case *events.CustomerCreated:
		c.ID, c.Kind, c.RealmMode, c.Root, c.CreatedAt = r.AggregateID, p.Kind, p.RealmMode, p.Root, r.Time
		c.LegalName, c.DisplayName, c.Email, c.Phone = p.LegalName, p.DisplayName, p.Email, p.Phone
		c.ExternalIDs, c.Labels = maps.Clone(p.ExternalIDs), maps.Clone(p.Labels)
		c.Verification = Verification{Type: VerificationType(p.Kind), Status: VerificationPending}
		c.applyPersonal(p.Personal, p.PIIErased)
	case *events.CustomerUpdated:
		c.applyUpdate(p)
	case *events.CustomerVerificationRecorded:
		grace, _ := time.Parse(time.RFC3339, p.GraceUntil)
		// An ended grace period stays ended until the customer is verified
		// again: another status in between must not undo the block.
		expired := c.Verification.GraceExpired && p.Status != VerificationCompleted
		c.Verification = Verification{Type: p.Type, Status: p.Status, Evidence: slices.Clone(p.Evidence), Note: p.Note,
			UpdatedAt: r.Time, UpdatedBy: r.Actor, GraceUntil: grace, GraceExpired: expired}
	case *events.CustomerRekycGraceExpired:
		c.Verification.GraceExpired = true
	case *events.CustomerDeleted:
		c.Deleted, c.DeletedAt, c.PIIErased = true, r.Time, true
		// The blind indexes go too: with the index key they could confirm
		// a guessed fiscal id of an erased customer.
		c.Address, c.FiscalIDs, c.FiscalIndex, c.Contacts = nil, events.FiscalIDs{}, events.FiscalIndex{}, nil
		if c.Kind == CustomerIndividual {
			c.LegalName, c.DisplayName, c.Email, c.Phone = "", "", "", ""
		}
	}
	return c
}

func (c *Customer) applyPersonal(p *events.CustomerPII, erased bool) {
	if erased {
		c.PIIErased = true
	}
	if p == nil {
		return
	}
	c.Address, c.FiscalIDs, c.FiscalIndex, c.Contacts = p.Address, p.FiscalIDs, p.FiscalIndex, slices.Clone(p.Contacts)
	if c.Kind == CustomerIndividual {
		c.LegalName, c.DisplayName, c.Email, c.Phone = p.LegalName, p.DisplayName, p.Email, p.Phone
	}
}

func (c *Customer) applyUpdate(p *events.CustomerUpdated) {
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&c.LegalName, p.LegalName)
	set(&c.DisplayName, p.DisplayName)
	set(&c.Email, p.Email)
	set(&c.Phone, p.Phone)
	set(&c.RealmMode, p.RealmMode)
	if p.ChangedField("external_ids") {
		c.ExternalIDs = maps.Clone(p.ExternalIDs)
	}
	if p.ChangedField("labels") {
		c.Labels = maps.Clone(p.Labels)
	}
	c.applyPersonal(p.Personal, p.PIIErased)
}

// String describes the state for logs, without personal data.
func (c Customer) String() string {
	return fmt.Sprintf("customer %s (%s, %s %s)", c.ID, c.Kind, c.Verification.Type, c.Verification.Status)
}
