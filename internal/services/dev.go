package services

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/catalog"
	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/keyring"
	"github.com/tenancyhq/tenancy/internal/natsembed"
	"github.com/tenancyhq/tenancy/internal/signing"
)

// Files in a dev data directory.
const (
	DevNATSDir        = "nats"
	DevSigningKeyFile = "keys/event-signing.key"
	DevMasterKeyFile  = "keys/master.key"
	DevIssuerKeyFile  = "keys/dev-issuer.key"
	DevIssuerFile     = "dev-issuer.json"
	DevNATSURLFile    = "nats.url"
	DevAdminTokenFile = "admin.token"
)

// DevAdminTokenTTL is how long the admin token written at start-up lasts.
const DevAdminTokenTTL = 30 * 24 * time.Hour

type devIssuerInfo struct {
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

// LoadDevIssuer returns the dev issuer of a data directory, as `tenancy dev`
// last configured it (for `tenancy token`).
func LoadDevIssuer(dataDir, defaultAddr string) (*auth.DevIssuer, error) {
	key, err := signing.LoadOrCreateKeyFile(filepath.Join(dataDir, DevIssuerKeyFile))
	if err != nil {
		return nil, err
	}
	info := devIssuerInfo{Issuer: IssuerURLFor(defaultAddr), Audience: "tenancy"}
	if b, err := os.ReadFile(filepath.Join(dataDir, DevIssuerFile)); err == nil {
		if err := json.Unmarshal(b, &info); err != nil {
			return nil, fmt.Errorf("%s: %w", DevIssuerFile, err)
		}
	}
	return auth.NewDevIssuer(info.Issuer, info.Audience, key), nil
}

// DevStatus is what RunDev reports once everything is up.
type DevStatus struct {
	HTTPAddr   net.Addr
	NATSURL    string
	TokenFile  string
	DataDir    string
	IssuerURL  string
	AdminToken string
}

// RunDev runs the whole system in one process: an embedded JetStream server
// on the data directory, the API with its own OIDC issuer, and the workers.
// It returns when ctx ends, after a clean shutdown.
func RunDev(ctx context.Context, cfg config.Dev, log *slog.Logger, ready func(DevStatus)) error {
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
	cat, err := catalog.Load(cfg.Catalog)
	if err != nil {
		return err
	}
	signKey, err := signing.LoadOrCreateKeyFile(filepath.Join(dataDir, DevSigningKeyFile))
	if err != nil {
		return err
	}
	masterKey, err := keyring.LoadOrCreateMasterKeyFile(filepath.Join(dataDir, DevMasterKeyFile))
	if err != nil {
		return err
	}
	issuerKey, err := signing.LoadOrCreateKeyFile(filepath.Join(dataDir, DevIssuerKeyFile))
	if err != nil {
		return err
	}

	ns, err := natsembed.Start(natsembed.Options{StoreDir: filepath.Join(dataDir, DevNATSDir), Listen: cfg.NATSAddr, Name: "tenancy-dev"})
	if err != nil {
		return fmt.Errorf("embedded NATS on %s: %w (is another `tenancy dev` running? set TENANCY_DEV_NATS_ADDR to use another port)", cfg.NATSAddr, err)
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
		_ = os.Remove(filepath.Join(dataDir, DevNATSURLFile))
	}()
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns), nats.Name("tenancy-dev"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect to embedded NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dataDir, DevNATSURLFile), []byte(ns.ClientURL()+"\n"), 0o600); err != nil {
		return err
	}

	core, err := OpenCore(ctx, nc, js, CoreOptions{Stream: "TENANCY", Replicas: cfg.Replicas, SigningKey: signKey, MasterKey: masterKey, Catalog: cat, Log: log})
	if err != nil {
		return err
	}
	rs, err := OpenReadSide(ctx, cfg.DatabaseURL, true, true)
	if err != nil {
		return fmt.Errorf("%w (tenancy dev needs PostgreSQL; set DATABASE_URL)", err)
	}
	defer rs.Close()

	// Bind first so the issuer URL names the real port (the address may say :0).
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (set TENANCY_HTTP_ADDR to use another address)", cfg.HTTPAddr, err)
	}
	defer ln.Close()
	issuerURL := IssuerURLFor(ln.Addr().String())
	issuer := auth.NewDevIssuer(issuerURL, cfg.OIDCAudience, issuerKey)
	info, _ := json.Marshal(devIssuerInfo{Issuer: issuerURL, Audience: cfg.OIDCAudience})
	if err := os.WriteFile(filepath.Join(dataDir, DevIssuerFile), info, 0o600); err != nil {
		return err
	}
	authn, err := auth.New(auth.Config{IssuerURL: issuerURL, Audience: cfg.OIDCAudience})
	if err != nil {
		return err
	}
	in, err := Integrations(cfg.Integrations, core)
	if err != nil {
		return err
	}
	api, err := NewAPI(ctx, core, APIOptions{Auth: authn, Mounts: map[string]http.Handler{auth.DevIssuerPath: issuer.Handler()}, ReadSide: rs, ReadWait: cfg.ReadWait, Keycloak: in.Keycloak, Webhooks: cfg.Webhooks})
	if err != nil {
		return err
	}
	token, err := issuer.Mint(auth.TokenRequest{Subject: "dev-admin", Roles: []string{auth.RolePlatformAdmin}, TTL: DevAdminTokenTTL}, time.Now())
	if err != nil {
		return err
	}
	tokenFile := filepath.Join(dataDir, DevAdminTokenFile)
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		return err
	}

	prov, err := NewProvisioner(ctx, core, ProvisionerOptions{Integrations: in, ReadSide: rs, ReconcileInterval: cfg.Integrations.ReconcileInterval})
	if err != nil {
		return err
	}
	hooks, err := NewWebhooker(ctx, core, cfg.Webhooks, rs)
	if err != nil {
		return err
	}
	defer WatchProjectionLag(core, rs)()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if ready != nil {
			ready(DevStatus{HTTPAddr: ln.Addr(), NATSURL: ns.ClientURL(), TokenFile: tokenFile, DataDir: dataDir, IssuerURL: issuerURL, AdminToken: token})
		}
		return Serve(gctx, ln, api.Handler(), log)
	})
	g.Go(func() error { return prov.Run(gctx) })
	g.Go(func() error { return hooks.Run(gctx) })
	g.Go(func() error { return api.Run(gctx) })
	for _, p := range Projections(core, rs, nil) {
		g.Go(func() error { return p.Run(gctx) })
	}
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}
