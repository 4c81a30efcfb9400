// Package dev runs the whole system in one process for development (`tenancy
// dev`): an embedded JetStream server on a data directory, the API with its
// own OIDC issuer, the projector, the provisioner and the webhooker. It also
// opens that data directory's log for the CLI. It is the only package that
// links the NATS server, and only cmd/tenancy imports it.
package dev

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/catalog"
	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/keyfile"
	"github.com/tenancyhq/tenancy/internal/mail"
	"github.com/tenancyhq/tenancy/internal/natsembed"
	"github.com/tenancyhq/tenancy/internal/run/api"
	"github.com/tenancyhq/tenancy/internal/run/boot"
	"github.com/tenancyhq/tenancy/internal/run/projector"
	"github.com/tenancyhq/tenancy/internal/run/provisioner"
	"github.com/tenancyhq/tenancy/internal/run/webhooker"
)

// Files in a dev data directory.
const (
	NATSDir        = "nats"
	SigningKeyFile = "keys/event-signing.key"
	MasterKeyFile  = "keys/master.key"
	IssuerKeyFile  = "keys/dev-issuer.key"
	IssuerFile     = "dev-issuer.json"
	NATSURLFile    = "nats.url"
	// NATSUsersFile holds the passwords of the embedded server's users
	// (natsembed.Users): the services' and a read-only one.
	NATSUsersFile  = "keys/nats-users.json"
	AdminTokenFile = "admin.token"
)

// AdminTokenTTL is how long the admin token written at start-up lasts.
const AdminTokenTTL = 30 * 24 * time.Hour

type issuerInfo struct {
	Issuer   string `json:"issuer"`
	Audience string `json:"audience"`
}

// IssuerURLFor returns the dev issuer URL for an HTTP listen address.
func IssuerURLFor(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr + auth.DevIssuerPath
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + auth.DevIssuerPath
}

// LoadIssuer returns the dev issuer of a data directory, as `tenancy dev`
// last configured it (for `tenancy token`).
func LoadIssuer(dataDir, defaultAddr string) (*auth.DevIssuer, error) {
	key, err := keyfile.LoadOrCreateSigningKey(filepath.Join(dataDir, IssuerKeyFile))
	if err != nil {
		return nil, err
	}
	info := issuerInfo{Issuer: IssuerURLFor(defaultAddr), Audience: "tenancy"}
	if b, err := os.ReadFile(filepath.Join(dataDir, IssuerFile)); err == nil {
		if err := json.Unmarshal(b, &info); err != nil {
			return nil, fmt.Errorf("%s: %w", IssuerFile, err)
		}
	}
	return auth.NewDevIssuer(info.Issuer, info.Audience, key), nil
}

// Status is what Run reports once everything is up.
type Status struct {
	HTTPAddr net.Addr
	NATSURL  string
	// NATSUsers is the file with the NATS users' passwords.
	NATSUsers  string
	TokenFile  string
	DataDir    string
	IssuerURL  string
	AdminToken string
	// RootTenant and SharedTenant are the platform tenants' slugs;
	// RootAdminEmail the root tenant's administrator.
	RootTenant, SharedTenant, RootAdminEmail string
}

// keys are the data directory's generated keys.
type keys struct {
	signing, issuer ed25519.PrivateKey
	master          []byte
}

func loadKeys(dataDir string) (keys, error) {
	var k keys
	var err error
	if k.signing, err = keyfile.LoadOrCreateSigningKey(filepath.Join(dataDir, SigningKeyFile)); err != nil {
		return k, err
	}
	if k.master, err = keyfile.LoadOrCreateMasterKey(filepath.Join(dataDir, MasterKeyFile)); err != nil {
		return k, err
	}
	k.issuer, err = keyfile.LoadOrCreateSigningKey(filepath.Join(dataDir, IssuerKeyFile))
	return k, err
}

// Run runs the whole system in one process until ctx ends, after a clean
// shutdown; ready hears once everything is up.
func Run(ctx context.Context, cfg config.Dev, log *slog.Logger, ready func(Status)) error {
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dataDir, "keys"), 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	release, err := LockDataDir(dataDir)
	if err != nil {
		return fmt.Errorf("%w (is another `tenancy dev` running?)", err)
	}
	defer release()
	k, err := loadKeys(dataDir)
	if err != nil {
		return err
	}
	users, err := natsembed.LoadOrCreateUsers(filepath.Join(dataDir, NATSUsersFile))
	if err != nil {
		return err
	}
	ns, err := natsembed.Start(natsembed.Options{StoreDir: filepath.Join(dataDir, NATSDir), Listen: cfg.NATSAddr, Name: "tenancy-dev", Users: users})
	if err != nil {
		return fmt.Errorf("embedded NATS on %s: %w (is another `tenancy dev` running? set TENANCY_DEV_NATS_ADDR to use another port)", cfg.NATSAddr, err)
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
		_ = os.Remove(filepath.Join(dataDir, NATSURLFile))
	}()
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns), nats.Name("tenancy-dev"), nats.MaxReconnects(-1),
		nats.UserInfo(natsembed.ServiceUser, users.Service))
	if err != nil {
		return fmt.Errorf("connect to embedded NATS: %w", err)
	}
	defer nc.Close()
	if err := os.WriteFile(filepath.Join(dataDir, NATSURLFile), []byte(ns.ClientURL()+"\n"), 0o600); err != nil {
		return err
	}
	s := &system{cfg: cfg, log: log, dataDir: dataDir, keys: k, natsURL: ns.ClientURL()}
	return s.run(ctx, nc, ready)
}

// system is one dev run's services.
type system struct {
	cfg     config.Dev
	log     *slog.Logger
	dataDir string
	keys    keys
	natsURL string
}

func (s *system) run(ctx context.Context, nc *nats.Conn, ready func(Status)) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	// A store that lost records (a file removed from the data directory) is
	// not served: readers would fold histories with holes in them.
	if err := eventstore.CheckComplete(ctx, js, "TENANCY"); err != nil {
		return fmt.Errorf("refusing to start on %s: %w", s.dataDir, err)
	}
	cat, err := catalog.Load(s.cfg.Catalog)
	if err != nil {
		return err
	}
	accounts, err := api.Accounts(s.cfg.Integrations)
	if err != nil {
		return err
	}
	core, err := boot.OpenCore(ctx, nc, js, boot.CoreOptions{Stream: "TENANCY", Replicas: s.cfg.Replicas, SigningKey: s.keys.signing,
		MasterKey: s.keys.master, Catalog: cat, Accounts: accounts, Log: s.log})
	if err != nil {
		return err
	}
	rs, err := boot.OpenReadSide(ctx, s.cfg.DatabaseURL, true, true)
	if err != nil {
		return fmt.Errorf("%w (tenancy dev needs PostgreSQL; set DATABASE_URL)", err)
	}
	defer rs.Close()
	// Bind first so the issuer URL names the real port (the address may say :0).
	ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (set TENANCY_HTTP_ADDR to use another address)", s.cfg.HTTPAddr, err)
	}
	defer ln.Close()
	return s.serve(ctx, core, rs, ln, ready)
}

func (s *system) serve(ctx context.Context, core *boot.Core, rs *boot.ReadSide, ln net.Listener, ready func(Status)) error {
	a, status, err := s.api(ctx, core, rs, ln.Addr())
	if err != nil {
		return err
	}
	in, err := provisioner.Integrations(s.cfg.Integrations, core)
	if err != nil {
		return err
	}
	sender, err := s.mailSender()
	if err != nil {
		return err
	}
	prov, err := provisioner.New(ctx, core, provisioner.Options{Integrations: in, ReadSide: rs, ReconcileInterval: s.cfg.Integrations.ReconcileInterval,
		MailSender: sender})
	if err != nil {
		return err
	}
	hooks, err := webhooker.New(ctx, core, s.cfg.Webhooks, rs)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if ready != nil {
			ready(status)
		}
		return boot.Serve(gctx, ln, a.Handler(), s.log)
	})
	g.Go(func() error { return prov.Run(gctx) })
	g.Go(func() error { return hooks.Run(gctx) })
	g.Go(func() error { return a.Run(gctx) })
	g.Go(func() error { return projector.Run(gctx, boot.Projections(core, rs)) })
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// api builds the API with the dev issuer mounted, and writes the issuer's
// settings and a platform-admin token to the data directory.
func (s *system) api(ctx context.Context, core *boot.Core, rs *boot.ReadSide, addr net.Addr) (*api.API, Status, error) {
	issuerURL := IssuerURLFor(addr.String())
	issuer := auth.NewDevIssuer(issuerURL, s.cfg.OIDCAudience, s.keys.issuer)
	info, _ := json.Marshal(issuerInfo{Issuer: issuerURL, Audience: s.cfg.OIDCAudience})
	if err := os.WriteFile(filepath.Join(s.dataDir, IssuerFile), info, 0o600); err != nil {
		return nil, Status{}, err
	}
	authn, err := auth.New(auth.Config{IssuerURL: issuerURL, Audience: s.cfg.OIDCAudience, Log: s.log})
	if err != nil {
		return nil, Status{}, err
	}
	bo, err := s.bootstrap()
	if err != nil {
		return nil, Status{}, err
	}
	mounts := map[string]http.Handler{auth.DevIssuerPath: issuer.Handler(), MailPath: s.mailSink().Handler()}
	a, err := api.New(ctx, core, api.Options{Auth: authn, Mounts: mounts,
		ReadSide: rs, ReadWait: s.cfg.ReadWait, Webhooks: s.cfg.Webhooks, Bootstrap: &bo})
	if err != nil {
		return nil, Status{}, err
	}
	token, err := issuer.Mint(auth.TokenRequest{Subject: "dev-admin", Roles: []string{auth.RolePlatformAdmin}, TTL: AdminTokenTTL}, time.Now())
	if err != nil {
		return nil, Status{}, err
	}
	tokenFile := filepath.Join(s.dataDir, AdminTokenFile)
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		return nil, Status{}, err
	}
	return a, Status{HTTPAddr: addr, NATSURL: s.natsURL, NATSUsers: filepath.Join(s.dataDir, NATSUsersFile), TokenFile: tokenFile, DataDir: s.dataDir, IssuerURL: issuerURL, AdminToken: token,
		RootTenant: bo.RootSlug, SharedTenant: bo.SharedSlug, RootAdminEmail: bo.AdminEmail}, nil
}

// MailPath is where dev lists the mail its sink caught (GET, ?to= to
// filter): with no relay configured, Tenancy's own mail ends up there.
const MailPath = "/dev/mail"

func (s *system) mailSink() mail.Sink { return mail.Sink{Dir: filepath.Join(s.dataDir, "mail")} }

// mailSender is the configured relay, or else the data dir's sink.
func (s *system) mailSender() (mail.Sender, error) {
	if s.cfg.Integrations.Mail.SMTPURL != "" {
		return provisioner.MailSender(s.cfg.Integrations)
	}
	return s.mailSink(), nil
}

// RootAdminFile keeps the root tenant's generated administrator address,
// so that every start names the same one.
const RootAdminFile = "root-admin-email"

// bootstrap returns what bootstrap makes: the configured names, with the
// root administrator's address generated once into the data directory
// when none is configured.
func (s *system) bootstrap() (app.BootstrapOptions, error) {
	b := app.BootstrapOptions{RootSlug: s.cfg.Bootstrap.RootSlug, SharedSlug: s.cfg.Bootstrap.SharedSlug, AdminEmail: s.cfg.Bootstrap.AdminEmail}
	if b.AdminEmail != "" {
		return b, nil
	}
	path := filepath.Join(s.dataDir, RootAdminFile)
	if raw, err := os.ReadFile(path); err == nil && strings.Contains(string(raw), "@") {
		b.AdminEmail = strings.TrimSpace(string(raw))
		return b, nil
	}
	b.AdminEmail = "admin-" + app.NewID()[24:] + "@tenancy.test"
	return b, os.WriteFile(path, []byte(b.AdminEmail+"\n"), 0o600)
}
