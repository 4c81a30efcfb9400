// Command tenancy is the operator CLI and the one-process development
// system (`tenancy dev`).
package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/catalog"
	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/keyfile"
	"github.com/tenancyhq/tenancy/internal/keyring"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/run/boot"
	"github.com/tenancyhq/tenancy/internal/run/dev"
	"github.com/tenancyhq/tenancy/internal/run/projector"
	"github.com/tenancyhq/tenancy/internal/run/provisioner"
	"github.com/tenancyhq/tenancy/internal/verify"
	"github.com/tenancyhq/tenancy/pkg/events"
)

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func main() {
	ctx, stop := signalContext()
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tenancy:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usage = `tenancy — Tenancy's operator CLI and development system

Usage:
  tenancy dev                         run the whole system in one process
  tenancy token --role R [--tenant ID] [--subject S] [--ttl D]
                                      mint a dev token and print it (R: platform-admin,
                                      tenant-admin, tenant-viewer, billing)
  tenancy verify [--tenant ID] [--keys JWKS_FILE] [--checkpoint FILE]
                                      check every signature, hash chain and claim, and
                                      that no record is missing
  tenancy keys list                   the event signing keys in the log
  tenancy keys retire KID [--reason R]
                                      stop a key from signing (it still verifies)
  tenancy projections status | rebuild NAME | skip NAME --seq N --reason TEXT
                                      the read models (needs DATABASE_URL or the dev default)
  tenancy reconcile [--tenant ID]     compare Keycloak and billing with the log and repair drift
  tenancy webhooks COMMAND [--api URL] [--token T]
                                      webhook subscriptions, attempts, dead letters and replays
                                      through the API ('tenancy webhooks help' lists the commands)
  tenancy customers list|get|create|verify [--api URL] [--token T]
                                      customers and their KYC/KYB through the API
                                      ('tenancy customers help')
  tenancy users list|import --tenant ID [--api URL] [--token T]
                                      a tenant's users; import moves a directory in from
                                      .csv or .jsonl in batches ('tenancy users help')
  tenancy probe URL                   exit 0 if URL answers 2xx (container health checks)
  tenancy help                        this text

The CLI reaches the log through NATS_URL when set, otherwise through the
running 'tenancy dev' of TENANCY_DATA_DIR (default ./.tenancy), otherwise by
opening that stopped data directory itself. 'tenancy webhooks' calls the API
instead: --api or TENANCY_API_URL (default http://TENANCY_HTTP_ADDR), with
--token, TENANCY_TOKEN or the data directory's admin.token.
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return usageError{"missing command"}
	}
	cmd, rest := args[1], args[2:]
	switch cmd {
	case "dev":
		return runDev(ctx, rest, getenv, stdout, stderr)
	case "token":
		return runToken(rest, getenv, stdout, stderr)
	case "verify":
		return runVerify(ctx, rest, getenv, stdout, stderr)
	case "keys":
		return runKeys(ctx, rest, getenv, stdout, stderr)
	case "projections":
		return runProjections(ctx, rest, getenv, stdout, stderr)
	case "reconcile":
		return runReconcile(ctx, rest, getenv, stdout, stderr)
	case "webhooks":
		return runWebhooks(ctx, rest, getenv, stdout, stderr)
	case "customers":
		return runCustomers(ctx, rest, getenv, stdout, stderr)
	case "users":
		return runUsers(ctx, rest, getenv, stdout, stderr)
	case "probe":
		return runProbe(ctx, rest, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("tenancy "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

func dataDir(getenv func(string) string) string {
	if d := getenv("TENANCY_DATA_DIR"); d != "" {
		return d
	}
	return "./.tenancy"
}

func runDev(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("dev", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := config.LoadDev(getenv)
	if err != nil {
		return err
	}
	log := logging.New(stderr, "tenancy-dev", logging.ParseLevel(cfg.LogLevel))
	stopTracing, err := boot.StartTracing(ctx, "tenancy-dev", log)
	if err != nil {
		return err
	}
	defer stopTracing()
	return dev.Run(ctx, cfg, log, func(s dev.Status) {
		fmt.Fprintf(stdout, `Tenancy is running.
  API:          http://%s
  NATS:         %s  (users tenancy and reader; passwords in %s)
  Admin token:  %s  (platform-admin; export TOKEN=$(cat %s))
  Root tenant:  %s (administrator %s), shared tenant %s, both owned by the root customer
  Data:         %s
Stop with Ctrl-C.
`, s.HTTPAddr, s.NATSURL, s.NATSUsers, s.TokenFile, s.TokenFile, s.RootTenant, s.RootAdminEmail, s.SharedTenant, s.DataDir)
	})
}

func runToken(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("token", stderr)
	role := fs.String("role", "", "role to grant: "+strings.Join([]string{auth.RolePlatformAdmin, auth.RoleTenantAdmin, auth.RoleTenantViewer, auth.RoleBilling}, ", "))
	tenant := fs.String("tenant", "", "tenant id the token is scoped to (tenant roles)")
	subject := fs.String("subject", "", "token subject (default dev-<role>)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch *role {
	case auth.RolePlatformAdmin, auth.RoleBilling:
	case auth.RoleTenantAdmin, auth.RoleTenantViewer:
		if *tenant == "" {
			return usageError{"--role " + *role + " needs --tenant ID"}
		}
	default:
		return usageError{fmt.Sprintf("--role must be one of %s, %s, %s, %s", auth.RolePlatformAdmin, auth.RoleTenantAdmin, auth.RoleTenantViewer, auth.RoleBilling)}
	}
	if *subject == "" {
		*subject = "dev-" + *role
	}
	addr := getenv("TENANCY_HTTP_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	iss, err := dev.LoadIssuer(dataDir(getenv), addr)
	if err != nil {
		return err
	}
	tok, err := iss.Mint(auth.TokenRequest{Subject: *subject, Roles: []string{*role}, TenantID: *tenant, TTL: *ttl}, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

func runVerify(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("verify", stderr)
	tenant := fs.String("tenant", "", "verify only this tenant's events")
	keysFile := fs.String("keys", "", "trust only the keys in this JWKS file (default: the keys registered in the log)")
	cpFile := fs.String("checkpoint", "", "a file keeping the last verified sequence and hash: the log must still hold it; rewritten after each run (for cron)")
	if err := parse(fs, args); err != nil {
		return err
	}
	l, err := dev.OpenLog(ctx, getenv, dataDir(getenv))
	if err != nil {
		return err
	}
	defer l.Close()
	var keys *events.KeySet
	if *keysFile != "" {
		raw, err := os.ReadFile(*keysFile)
		if err != nil {
			return err
		}
		if keys, err = events.ParseJWKS(raw); err != nil {
			return err
		}
	} else if keys, err = app.NewSigningKeys(command.Deps{Store: l.Store}).Keys(ctx); err != nil {
		return err
	}
	filter := events.AllSubjects
	if *tenant != "" {
		filter = events.TenantSubjects(*tenant)
	}
	fmt.Fprintf(stdout, "verifying %s in %s\n", filter, l.Where)
	rep, err := verify.Run(ctx, l.Store, verify.Options{Filter: filter, Keys: keys, Checkpoint: *cpFile})
	if err != nil {
		fmt.Fprintf(stdout, "FAILED after %d good events (%d claims, up to stream sequence %d): %v\n", rep.Events, rep.Claims, rep.LastSeq, err)
		return fmt.Errorf("verification failed: %w", err)
	}
	fmt.Fprintf(stdout, "OK: %d events in %d aggregates verified (signatures, versions, hash chains) with %d keys, %d claims, %d resolved messages passed over; last stream sequence %d\n",
		rep.Events, rep.Aggregates, rep.Keys, rep.Claims, rep.Ignored, rep.LastSeq)
	return nil
}

// runProbe is a health check for images without curl: GET url, succeed on 2xx.
func runProbe(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return usageError{"usage: tenancy probe URL"}
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		return usageError{err.Error()}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s", args[0], resp.Status)
	}
	fmt.Fprintln(stdout, resp.Status)
	return nil
}

func runKeys(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"usage: tenancy keys list | tenancy keys retire KID [--reason R]"}
	}
	l, err := dev.OpenLog(ctx, getenv, dataDir(getenv))
	if err != nil {
		return err
	}
	defer l.Close()
	switch args[0] {
	case "list":
		if err := parse(newFlags("keys list", stderr), args[1:]); err != nil {
			return err
		}
		ks, err := app.NewSigningKeys(command.Deps{Store: l.Store}).Keys(ctx)
		if err != nil {
			return err
		}
		for _, k := range ks.JWKS().Keys {
			retired := ""
			if k.RetiredAt != nil {
				retired = " retired " + k.RetiredAt.Format(time.RFC3339)
			}
			fmt.Fprintf(stdout, "%s  %s  registered %s%s\n", k.Kid, k.Status, k.CreatedAt.Format(time.RFC3339), retired)
		}
		return nil
	case "retire":
		if len(args) < 2 {
			return usageError{"usage: tenancy keys retire KID [--reason R]"}
		}
		fs := newFlags("keys retire", stderr)
		reason := fs.String("reason", "", "why the key is retired")
		if err := parse(fs, args[2:]); err != nil {
			return err
		}
		signer, err := cliSigner(getenv)
		if err != nil {
			return err
		}
		if signer.KeyID() == args[1] {
			return fmt.Errorf("key %s is the one this CLI signs with; configure the new key first", args[1])
		}
		reg := app.NewSigningKeys(command.Deps{Store: l.Store, Signer: signer, NewID: app.NewID})
		if err := reg.Retire(ctx, args[1], *reason, "cli:"+cliActor(getenv)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "retired %s\n", args[1])
		return nil
	}
	return usageError{fmt.Sprintf("unknown keys command %q", args[0])}
}

// cliSigner is the signer CLI commands sign their events with.
func cliSigner(getenv func(string) string) (*events.Signer, error) {
	key, err := cliSigningKey(getenv)
	if err != nil {
		return nil, err
	}
	return events.NewSigner(key)
}

// cliSigningKey is the key CLI commands sign with: TENANCY_SIGNING_KEY, or
// the dev data directory's.
func cliSigningKey(getenv func(string) string) (ed25519.PrivateKey, error) {
	var key ed25519.PrivateKey
	var err error
	if spec := getenv("TENANCY_SIGNING_KEY"); spec != "" {
		key, err = keyfile.SigningKey(spec)
	} else {
		path := filepath.Join(dataDir(getenv), dev.SigningKeyFile)
		if _, serr := os.Stat(path); serr != nil {
			return nil, fmt.Errorf("no signing key: set TENANCY_SIGNING_KEY (no dev key at %s)", path)
		}
		key, err = keyfile.LoadOrCreateSigningKey(path)
	}
	return key, err
}

func cliActor(getenv func(string) string) string {
	if u := getenv("USER"); u != "" {
		return u
	}
	return "operator"
}

func runProjections(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"usage: tenancy projections status | rebuild NAME | skip NAME --seq N --reason TEXT"}
	}
	l, err := dev.OpenLog(ctx, getenv, dataDir(getenv))
	if err != nil {
		return err
	}
	defer l.Close()
	dbURL := getenv("DATABASE_URL")
	if dbURL == "" {
		dbURL = config.DefaultDatabaseURL
	}
	rs, err := boot.OpenReadSide(ctx, dbURL, false, true)
	if err != nil {
		return err
	}
	defer rs.Close()
	o := app.ProjectionsOptions{Deps: command.Deps{Store: l.Store, NewID: app.NewID}, JS: l.JS, DatabaseURL: rs.URL, Pool: rs.Pool,
		Log: logging.New(stderr, "tenancy", logging.ParseLevel(getenv("LOG_LEVEL")))}
	if master, err := cliMasterKey(getenv); err == nil {
		if ring, err := keyring.Open(ctx, l.JS, master, 1); err == nil {
			o.Opener = ring
		}
	}
	if signer, err := cliSigner(getenv); err == nil {
		o.Deps.Signer = signer
	}
	return projector.Command(ctx, app.NewProjections(o), args, "cli:"+cliActor(getenv), stdout)
}

// cliMasterKey is the master key CLI commands open personal data with:
// TENANCY_MASTER_KEY, or the dev data directory's.
func cliMasterKey(getenv func(string) string) ([]byte, error) {
	if spec := getenv("TENANCY_MASTER_KEY"); spec != "" {
		return keyfile.MasterKey(spec)
	}
	path := filepath.Join(dataDir(getenv), dev.MasterKeyFile)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("no master key: set TENANCY_MASTER_KEY (no dev key at %s)", path)
	}
	return keyfile.LoadOrCreateMasterKey(path)
}

// cliCore opens the core (signing, personal data, policy) for CLI commands
// that append events on the operator's behalf.
func cliCore(ctx context.Context, l *dev.Log, getenv func(string) string, stderr io.Writer) (*boot.Core, error) {
	signKey, err := cliSigningKey(getenv)
	if err != nil {
		return nil, err
	}
	master, err := cliMasterKey(getenv)
	if err != nil {
		return nil, err
	}
	cat, err := catalog.Load(getenv("TENANCY_CATALOG"))
	if err != nil {
		return nil, err
	}
	stream := getenv("TENANCY_STREAM")
	if stream == "" {
		stream = "TENANCY"
	}
	// The replica count must match the deployment's: ensuring a stream with
	// fewer replicas than it has would scale a cluster's streams down.
	replicas := 1
	if v := strings.TrimSpace(getenv("TENANCY_REPLICAS")); v != "" {
		if replicas, err = strconv.Atoi(v); err != nil || replicas < 1 {
			return nil, fmt.Errorf("TENANCY_REPLICAS=%q is not a positive whole number", v)
		}
	}
	log := logging.New(stderr, "tenancy", logging.ParseLevel(getenv("LOG_LEVEL")))
	return boot.OpenCore(ctx, l.NC, l.JS, boot.CoreOptions{Stream: stream, Replicas: replicas, SigningKey: signKey, MasterKey: master, Catalog: cat, Log: log})
}

func runReconcile(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("reconcile", stderr)
	tenant := fs.String("tenant", "", "reconcile only this tenant")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := config.LoadDev(getenv)
	if err != nil {
		return err
	}
	l, err := dev.OpenLog(ctx, getenv, dataDir(getenv))
	if err != nil {
		return err
	}
	defer l.Close()
	core, err := cliCore(ctx, l, getenv, stderr)
	if err != nil {
		return err
	}
	in, err := provisioner.Integrations(cfg.Integrations, core)
	if err != nil {
		return err
	}
	if in.Keycloak == nil && in.Billing == nil {
		return errors.New("nothing to reconcile: neither KEYCLOAK_URL nor BILLING_URL is set")
	}
	var rs *boot.ReadSide
	if *tenant == "" {
		if rs, err = boot.OpenReadSide(ctx, cfg.DatabaseURL, false, false); err != nil {
			return err
		}
		defer rs.Close()
	}
	rec := provisioner.NewReconciler(core, in, rs)
	if *tenant != "" {
		repairs, err := rec.Tenant(ctx, *tenant)
		for _, r := range repairs {
			fmt.Fprintf(stdout, "repaired %s %s: found %s, expected %s (%s)\n", r.System, r.Resource, r.Found, r.Expected, r.Action)
		}
		if err == nil {
			fmt.Fprintf(stdout, "%d repairs\n", len(repairs))
		}
		return err
	}
	n, err := rec.All(ctx)
	fmt.Fprintf(stdout, "%d repairs\n", n)
	return err
}
