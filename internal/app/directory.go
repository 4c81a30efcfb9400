package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/delivery/secrets"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// ClientSecrets keeps clients' secrets encrypted outside the log.
type ClientSecrets interface {
	// Create stores a version unless it is stored already
	// (secrets.ErrExists).
	Create(ctx context.Context, id string, version int, secret string) error
	// Reclaim stores a version over one stored at least age ago (a
	// rotation's that never recorded it), ErrExists for a younger one.
	Reclaim(ctx context.Context, id string, version int, secret string, age time.Duration) error
	Secret(ctx context.Context, id string, version int) (string, error)
	Delete(ctx context.Context, id string) error
}

// KeyPreparer makes the personal-data keys of many scopes in one go
// (pipelined), so that a batch of new users does not wait for each user's
// key one round trip at a time.
type KeyPreparer interface {
	Prepare(ctx context.Context, scopes []string) error
}

// Directory runs the operations inside a tenant: its users, non-browser
// clients, org units and memberships, one aggregate per tenant.
type Directory struct {
	handler *command.Handler[domain.Directory, domain.DirectoryCommand]
	index   BlindIndexer
	keys    KeyDestroyer
	prepare KeyPreparer
	secrets ClientSecrets
	tenants *Tenants
	// accounts, when set, reaches users' accounts in the identity provider.
	accounts AdminAccounts
	newID    func() string
	log      *slog.Logger
}

// DirectoryOptions configure Directory.
type DirectoryOptions struct {
	Deps command.Deps
	// Index makes the blind indexes usernames and emails are unique by.
	Index BlindIndexer
	// Keys erases a deleted user's personal data; Prepare, when set, makes
	// a batch's new keys at once.
	Keys    KeyDestroyer
	Prepare KeyPreparer
	// Secrets keeps client secrets (nil: clients cannot be created).
	Secrets ClientSecrets
	// Tenants says which tenants exist.
	Tenants *Tenants
	// Accounts issues temporary passwords (nil: no identity provider).
	Accounts AdminAccounts
	Log      *slog.Logger
}

// NewDirectory returns the directory use cases.
func NewDirectory(o DirectoryOptions) *Directory {
	return &Directory{
		handler: command.NewHandler[domain.Directory, domain.DirectoryCommand](domain.DirectoryDecider{}, o.Deps),
		index:   o.Index, keys: o.Keys, prepare: o.Prepare, secrets: o.Secrets, tenants: o.Tenants, accounts: o.Accounts, newID: o.Deps.NewID, log: o.Log,
	}
}

// DirectoryResult is the outcome of a directory command.
type DirectoryResult = command.Result[domain.Directory]

// Load returns tenant tenantID's directory as the log has it now, and the
// stream sequence of its last event. An unknown or deleted tenant is not
// found.
func (s *Directory) Load(ctx context.Context, tenantID string) (domain.Directory, uint64, error) {
	if err := s.tenantExists(ctx, tenantID); err != nil {
		return domain.Directory{}, 0, err
	}
	d, seq, err := s.handler.Load(ctx, tenantID, tenantID)
	if err != nil {
		return d, 0, err
	}
	d.TenantID = tenantID
	return d, seq, nil
}

// EraseUsers destroys the personal-data key of every user of a tenant's
// directory, whatever the tenant's state: a deleted tenant's users are
// erased with it (their data is sealed under keys of their own, not the
// tenant's). Destroying again is a no-op, so a retry is safe. It returns
// how many users it erased.
func (s *Directory) EraseUsers(ctx context.Context, tenantID string) (int, error) {
	if s.keys == nil {
		return 0, nil
	}
	d, _, err := s.handler.Load(ctx, tenantID, tenantID)
	if err != nil {
		return 0, err
	}
	users := d.Users()
	for _, u := range users {
		if err := s.keys.Destroy(ctx, events.UserPIIScope(u.ID)); err != nil {
			return 0, fmt.Errorf("erasing user %s: %w", u.ID, err)
		}
	}
	return len(users), nil
}

// Exists refuses an unknown or deleted tenant, as Load does, without
// loading its directory.
func (s *Directory) Exists(ctx context.Context, tenantID string) error {
	return s.tenantExists(ctx, tenantID)
}

// tenantExists refuses an unknown or deleted tenant: a deleted tenant's
// personal data is erased, and its directory takes no more.
func (s *Directory) tenantExists(ctx context.Context, tenantID string) error {
	t, _, err := s.tenants.Get(ctx, tenantID)
	if err != nil {
		return err
	}
	if t.State == domain.StateDeleted {
		return tenantNotFound(tenantID)
	}
	return nil
}

func (s *Directory) indexer() domain.UniqueIndexer {
	if s.index == nil {
		return nil
	}
	return s.index.BlindIndex
}

// Do decides cmd on tenant tenantID's directory, filling in the blind
// indexer, and erases a deleted user's personal data afterwards.
func (s *Directory) Do(ctx context.Context, tenantID string, cmd domain.DirectoryCommand, meta command.Meta) (DirectoryResult, error) {
	if err := s.tenantExists(ctx, tenantID); err != nil {
		return DirectoryResult{}, err
	}
	switch c := cmd.(type) {
	case domain.CreateUser:
		c.Index = s.indexer()
		cmd = c
	case domain.UpdateUser:
		c.Index = s.indexer()
		cmd = c
	case domain.ImportUsers:
		for i := range c.Rows {
			c.Rows[i].Index = s.indexer()
		}
		cmd = c
	}
	res, err := s.handler.Execute(ctx, tenantID, tenantID, cmd, meta)
	if err != nil {
		return res, err
	}
	res.State.TenantID = tenantID
	if del, ok := cmd.(domain.DeleteUser); ok && len(res.Events) > 0 && s.keys != nil {
		// The deletion is recorded; erase the personal data. Should this
		// fail, a repeated DELETE answers 404 and the key stays: the log
		// says the user is deleted, so the next erasure sweep (or an
		// operator) can destroy it.
		if err := s.keys.Destroy(ctx, events.UserPIIScope(del.ID)); err != nil {
			s.log.ErrorContext(ctx, "erasing a user's personal data key failed", "tenant_id", tenantID, "user_id", del.ID, "error", err)
		}
	}
	return res, nil
}

// CreateUser creates a user with a new id (or the given one: a retry of a
// create that appended but never answered gets what it created).
func (s *Directory) CreateUser(ctx context.Context, tenantID string, c domain.CreateUser, meta command.Meta) (domain.User, uint64, error) {
	if c.ID == "" {
		c.ID = s.newID()
	}
	c.BreakGlass = false
	res, err := s.Do(ctx, tenantID, c, meta)
	if err != nil {
		return domain.User{}, 0, err
	}
	u, _ := res.State.User(c.ID)
	return u, res.Seq, nil
}

// Adopt records a user the provisioner made before the directory knew it
// (the activation's administrator, the break-glass administrator): with
// the id given, so that a retry adopts nothing twice, and the break-glass
// mark, which no API sets. A user of that username already in the
// directory is adopted as it is.
func (s *Directory) Adopt(ctx context.Context, tenantID string, c domain.CreateUser, meta command.Meta) (domain.User, error) {
	res, err := s.Do(ctx, tenantID, c, meta)
	var ce *domain.ConflictError
	if errors.As(err, &ce) && ce.Field == "username" && s.index != nil {
		d, _, lerr := s.Load(ctx, tenantID)
		if lerr != nil {
			return domain.User{}, lerr
		}
		if u, ok := d.UserByUsernameIndex(s.index.BlindIndex("username", domain.NormaliseUsername(c.Username))); ok {
			return u, nil
		}
	}
	if err != nil {
		return domain.User{}, err
	}
	u, _ := res.State.User(c.ID)
	return u, nil
}

// ImportResult is what became of one imported row.
type ImportResult struct {
	Row     int
	Outcome string
	UserID  string
	Err     error
}

// Import creates users in batches of at most domain.MaxImportRows, one
// atomic append each. A row that exists with the same values answers
// unchanged, so a rerun after an interruption creates nothing twice.
func (s *Directory) Import(ctx context.Context, tenantID string, rows []domain.CreateUser, meta command.Meta) ([]ImportResult, uint64, error) {
	if len(rows) > domain.MaxImportRows {
		return nil, 0, &domain.ValidationError{Fields: []domain.FieldError{{Field: "rows",
			Message: fmt.Sprintf("at most %d rows per call; split the file", domain.MaxImportRows)}}}
	}
	scopes := make([]string, len(rows))
	for i := range rows {
		rows[i].ID, rows[i].BreakGlass = s.newID(), false
		scopes[i] = events.UserPIIScope(rows[i].ID)
	}
	if s.prepare != nil {
		if err := s.prepare.Prepare(ctx, scopes); err != nil {
			return nil, 0, err
		}
	}
	res, err := s.Do(ctx, tenantID, domain.ImportUsers{Rows: rows}, meta)
	if err != nil {
		return nil, 0, err
	}
	out := make([]ImportResult, len(rows))
	for i, row := range rows {
		outcome, id, rerr := domain.ImportOutcome(res.State, row)
		out[i] = ImportResult{Row: i, Outcome: outcome, UserID: id, Err: rerr}
	}
	return out, res.Seq, nil
}

// NewClientSecret returns a fresh client secret: base64url of 32 random
// bytes.
func NewClientSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// CreateClient creates a non-browser client and returns its secret, the
// only time it is shown (it is kept encrypted for the identity provider).
func (s *Directory) CreateClient(ctx context.Context, tenantID string, c domain.CreateClient, meta command.Meta) (domain.Client, string, uint64, error) {
	if s.secrets == nil {
		return domain.Client{}, "", 0, fmt.Errorf("%w: client secrets are not configured on this instance", domain.ErrUnavailable)
	}
	given := c.ID != ""
	if !given {
		c.ID = s.newID()
	}
	secret, err := NewClientSecret()
	if err != nil {
		return domain.Client{}, "", 0, err
	}
	if _, _, err := s.Load(ctx, tenantID); err != nil {
		return domain.Client{}, "", 0, err
	}
	// The secret is stored before the event that names it, so that no
	// recorded client lacks its secret; a create that then fails leaves an
	// orphan secret nobody can name, erased with the next attempt's id. A
	// retry of a create (the id given, from its idempotency key) finds the
	// secret the first attempt stored and shows that one: the realm may
	// already hold it, so it must never be replaced.
	if err := s.secrets.Create(ctx, c.ID, 1, secret); errors.Is(err, secrets.ErrExists) && given {
		if secret, err = s.secrets.Secret(ctx, c.ID, 1); err != nil {
			return domain.Client{}, "", 0, err
		}
	} else if err != nil {
		return domain.Client{}, "", 0, err
	}
	res, err := s.Do(ctx, tenantID, c, meta)
	if err != nil {
		if !given {
			_ = s.secrets.Delete(context.WithoutCancel(ctx), c.ID)
		}
		return domain.Client{}, "", 0, err
	}
	cl, _ := res.State.Client(c.ID)
	return cl, secret, res.Seq, nil
}

// AbandonedRotation is how old an unrecorded secret version must be before
// another rotation may take it over: far longer than a rotation takes.
const AbandonedRotation = time.Minute

// RotateClientSecret gives a client a new secret and returns it (shown
// once).
func (s *Directory) RotateClientSecret(ctx context.Context, tenantID, id string, meta command.Meta) (domain.Client, string, uint64, error) {
	if s.secrets == nil {
		return domain.Client{}, "", 0, fmt.Errorf("%w: client secrets are not configured on this instance", domain.ErrUnavailable)
	}
	d, _, err := s.Load(ctx, tenantID)
	if err != nil {
		return domain.Client{}, "", 0, err
	}
	cl, ok := d.Client(id)
	if !ok {
		return domain.Client{}, "", 0, fmt.Errorf("no client with id %q in this tenant: %w", id, domain.ErrNotFound)
	}
	secret, err := NewClientSecret()
	if err != nil {
		return domain.Client{}, "", 0, err
	}
	// Two rotations racing for the same version: the second to store it
	// is refused, so that the secret shown is the one the realm gets. A
	// version stored by a rotation that never recorded it is taken over
	// once it is clearly abandoned.
	next := cl.SecretVersion + 1
	err = s.secrets.Create(ctx, id, next, secret)
	if errors.Is(err, secrets.ErrExists) {
		err = s.secrets.Reclaim(ctx, id, next, secret, AbandonedRotation)
	}
	if errors.Is(err, secrets.ErrExists) {
		return domain.Client{}, "", 0, &domain.ConflictError{Field: "secret_version", Value: strconv.Itoa(next),
			Message: "another rotation of this client's secret is under way; read the client and rotate again if you still need to"}
	} else if err != nil {
		return domain.Client{}, "", 0, err
	}
	res, err := s.Do(ctx, tenantID, domain.RotateClientSecret{ID: id, Version: next}, meta)
	if err != nil {
		return domain.Client{}, "", 0, err
	}
	// A rotation slow enough to be taken for abandoned may have been
	// overtaken: never show a secret that is not the one kept.
	kept, err := s.secrets.Secret(ctx, id, next)
	if err != nil {
		return domain.Client{}, "", 0, fmt.Errorf("%w: the rotation is recorded but its secret could not be read back; rotate again: %w", domain.ErrUnavailable, err)
	}
	if kept != secret {
		return domain.Client{}, "", 0, &domain.ConflictError{Field: "secret_version", Value: strconv.Itoa(next),
			Message: "another rotation of this client's secret took this version over; rotate again to get a secret"}
	}
	cl, _ = res.State.Client(id)
	return cl, secret, res.Seq, nil
}

// DeleteClient deletes a client and its secrets.
func (s *Directory) DeleteClient(ctx context.Context, tenantID string, c domain.DeleteClient, meta command.Meta) (DirectoryResult, error) {
	res, err := s.Do(ctx, tenantID, c, meta)
	if err != nil {
		return res, err
	}
	if s.secrets != nil {
		if err := s.secrets.Delete(ctx, c.ID); err != nil && !errors.Is(err, context.Canceled) {
			s.log.ErrorContext(ctx, "erasing a deleted client's secrets failed", "tenant_id", tenantID, "client_id", c.ID, "error", err)
		}
	}
	return res, nil
}

// errSharedAccount refuses a password for an account of several tenants.
var errSharedAccount = fmt.Errorf("%w: the user's account in the shared realm belongs to other tenants too, so no one tenant may set its password; the person resets it at sign-in", domain.ErrPrecondition)

// IssuePassword gives a user a new temporary password, to be changed at
// first sign-in, and returns the account and the password, which is never
// stored: for realms that cannot email users to set one. In the shared
// realm only an account of this tenant alone gets one. The issue is recorded first, so that a password that exists
// is always accounted for.
func (s *Directory) IssuePassword(ctx context.Context, tenantID, userID string, meta command.Meta) (account, password string, err error) {
	if s.accounts == nil {
		return "", "", fmt.Errorf("%w: no identity provider is configured (KEYCLOAK_URL), so users have no accounts to set a password on", domain.ErrPrecondition)
	}
	t, _, err := s.tenants.Get(ctx, tenantID)
	if err != nil {
		return "", "", err
	}
	if t.State != domain.StateActive {
		return "", "", fmt.Errorf("%w: the tenant is %s: only an active tenant's users have accounts to set a password on", domain.ErrPrecondition, t.State)
	}
	inShared := t.Realm != nil && t.Realm.Mode == domain.RealmShared
	if inShared {
		// Only a user of this tenant is looked up in the realm shared by
		// all; the refusal comes before anything is recorded, and
		// SetMemberPassword checks again, for an account that became
		// shared in between.
		d, _, err := s.Load(ctx, tenantID)
		if err != nil {
			return "", "", err
		}
		if _, ok := d.User(userID); !ok {
			return "", "", fmt.Errorf("no user with id %q in this tenant: %w", userID, domain.ErrNotFound)
		}
		if _, shared, err := s.accounts.MemberAccount(ctx, t.Realm.Realm, tenantID, userID); err != nil {
			return "", "", identityProviderError(err)
		} else if shared {
			return "", "", errSharedAccount
		}
	}
	res, err := s.Do(ctx, tenantID, domain.RecordUserPassword{ID: userID}, meta)
	if err != nil {
		return "", "", err
	}
	u, _ := res.State.User(userID)
	password = newPassword(20)
	var found, shared bool
	if inShared {
		account, found, shared, err = s.accounts.SetMemberPassword(ctx, t.Realm.Realm, tenantID, userID, password)
	} else {
		account, found, err = s.accounts.SetTemporaryPassword(ctx, t.Slug, u.Username, password)
	}
	switch {
	case shared:
		return "", "", errSharedAccount
	case err != nil:
		return "", "", identityProviderError(err)
	case !found:
		return "", "", fmt.Errorf("%w: the user is not in the identity provider yet (the realm sync follows the log); retry shortly", domain.ErrUnavailable)
	}
	return account, password, nil
}
