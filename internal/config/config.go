// Package config reads every binary's configuration from the environment in
// one place: one struct per binary, whose Load reads it with the defaults
// below and whose Validate reports every bad variable at once. Vars lists
// every variable with its default and meaning; the README's configuration
// table is checked against it, and the defaults against Vars.
package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tenancyhq/tenancy/internal/egress"
)

// Var documents one environment variable.
type Var struct {
	Name    string
	Default string
	Help    string
	// Used lists the binaries that read it.
	Used string
}

// Vars is every environment variable Tenancy reads.
var Vars = []Var{
	{"TENANCY_DATA_DIR", "./.tenancy", "`tenancy dev`: where the embedded JetStream store, generated keys and the admin token live", "tenancy"},
	{"TENANCY_HTTP_ADDR", "127.0.0.1:8080 (dev), :8080 (api), :8081 (projector), :8082 (provisioner), :8083 (webhooker)", "HTTP listen address: the API, or a worker's health checks and metrics", "all"},
	{"TENANCY_DEV_NATS_ADDR", "127.0.0.1:4223", "`tenancy dev`: client address of the embedded NATS server (so the CLI and other processes can reach it)", "tenancy"},
	{"NATS_URL", "(none; dev embeds a server)", "NATS server URL(s), comma-separated for a cluster", "all"},
	{"NATS_CREDS", "", "NATS credentials file (JWT and seed, for servers in operator mode)", "all"},
	{"NATS_USER", "(dev: tenancy, from the data dir)", "NATS user (the deployments' nats-server configuration has the users tenancy and reader, see docs/runbook.md)", "all"},
	{"NATS_PASSWORD", "(dev: from the data dir)", "its password", "all"},
	{"NATS_INBOX_PREFIX", "_INBOX", "inbox prefix for replies; the read-only user reader must use _INBOX_reader", "all"},
	{"NATS_TLS_CA", "", "CA bundle to verify the NATS servers", "all"},
	{"NATS_TLS_CERT", "", "client certificate for NATS mTLS", "all"},
	{"NATS_TLS_KEY", "", "client key for NATS mTLS", "all"},
	{"TENANCY_STREAM", "TENANCY", "name of the event stream", "all"},
	{"TENANCY_REPLICAS", "1", "replicas of the streams and buckets Tenancy creates (3 in a cluster)", "all"},
	{"DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tenancy?sslmode=disable", "PostgreSQL for the read models and the webhook attempt log (dev creates the database if missing)", "all"},
	{"TENANCY_SIGNING_KEY", "(dev: generated in the data dir)", "Ed25519 event signing key: base64 of the 32-byte seed, or file:<path>", "api, projector, provisioner, webhooker"},
	{"TENANCY_MASTER_KEY", "(dev: generated in the data dir)", "AES-256 master key wrapping per-tenant personal-data keys and webhook secrets: base64 of 32 bytes, or file:<path>", "api, provisioner, projector, webhooker"},
	{"OIDC_ISSUER_URL", "(dev: the built-in issuer at /dev/oidc)", "OIDC issuer whose tokens the API accepts", "api"},
	{"OIDC_DISCOVERY_URL", "(the issuer URL)", "where to fetch the issuer's discovery document when the issuer is reachable under another name (e.g. http://keycloak:8080/realms/tenancy-ops in compose)", "api"},
	{"OIDC_AUDIENCE", "tenancy", "audience the API requires in tokens", "api"},
	{"OIDC_REALM_ISSUER_BASE", "(unset: tenant realms' tokens are refused)", "Keycloak's public URL: the API also accepts tokens whose issuer is <this>/realms/<slug> of an active tenant in a realm of its own, for that tenant alone (the realm's tenancy-app client, or audience OIDC_AUDIENCE)", "api"},
	{"OIDC_REALM_DISCOVERY_BASE", "(OIDC_REALM_ISSUER_BASE)", "where the API reaches Keycloak for realms' discovery documents and keys when its public URL does not resolve inside the network (e.g. http://keycloak:8080 in compose)", "api"},
	{"TENANCY_CATALOG", "(embedded default)", "YAML file with the region inventory and plan catalog", "api, provisioner, tenancy"},
	{"TENANCY_ROOT_TENANT", "root", "slug of the platform's root tenant, made at start-up (bootstrap) with the root customer; reserved to bootstrap", "api, tenancy"},
	{"TENANCY_SHARED_TENANT", "shared", "slug of the shared tenant, whose realm the tenants of customers with realm_mode shared join", "api, tenancy"},
	{"TENANCY_ROOT_ADMIN_EMAIL", "admin@tenancy.invalid (dev: generated, printed at start)", "the root tenant's default administrator", "api, tenancy"},
	{"TENANCY_BODY_LIMIT", "1048576", "maximum request body in bytes", "api"},
	{"TENANCY_READ_WAIT", "2s", "how long a read with min_seq waits for the read model before answering 503", "api, tenancy"},
	{"KEYCLOAK_URL", "(none: identity steps are skipped)", "Keycloak base URL the provisioner creates tenant realms in", "provisioner, api, tenancy"},
	{"KEYCLOAK_REALM", "master", "realm of the provisioner's service account", "provisioner, api, tenancy"},
	{"KEYCLOAK_CLIENT_ID", "", "the provisioner's service account (client credentials)", "provisioner, api, tenancy"},
	{"KEYCLOAK_CLIENT_SECRET", "", "its secret", "provisioner, api, tenancy"},
	{"KEYCLOAK_REALM_SMTP", "(none)", "JSON of Keycloak smtpServer settings given to every tenant realm, so new admins get an email to set their password", "provisioner, tenancy"},
	{"TENANCY_SMTP_URL", "(none: mail stays queued; dev: the data dir's mail sink)", "relay for Tenancy's own mail: smtp://user:password@host:587 (STARTTLS required), smtps://...:465, or smtp://host:25?tls=none for a trusted local relay without credentials", "provisioner, tenancy"},
	{"TENANCY_MAIL_FROM", "Tenancy <no-reply@localhost>", "From address of Tenancy's own mail", "provisioner, tenancy"},
	{"BILLING_URL", "(none: billing steps are skipped)", "billing system implementing internal/billing/CONTRACT.md", "provisioner, tenancy"},
	{"BILLING_TOKEN", "", "bearer token for the billing system", "provisioner, tenancy"},
	{"TENANCY_RECONCILE_INTERVAL", "5m", "how often the provisioner compares Keycloak and billing with the log and repairs drift (0 disables)", "provisioner, tenancy"},
	{"LOG_LEVEL", "info", "debug, info, warn or error", "all"},
	{"TENANCY_API_URL", "http://$TENANCY_HTTP_ADDR", "`tenancy webhooks` and `tenancy customers`: the API they call", "tenancy"},
	{"TENANCY_TOKEN", "(the data dir's admin.token)", "`tenancy webhooks` and `tenancy customers`: the platform-admin bearer token they send", "tenancy"},
	{"WEBHOOK_ALLOW_CIDRS", "(none; dev: 127.0.0.0/8, ::1)", "addresses webhooks may reach although they are internal (loopback, private, link-local, ...): CIDRs or IPs, comma-separated; when set it replaces dev's loopback allowance", "api, webhooker, tenancy"},
	{"WEBHOOK_ALLOW_HTTP", "false (dev: true)", "accept http:// webhook URLs (otherwise https is required)", "api, webhooker, tenancy"},
	{"WEBHOOK_TIMEOUT", "15s", "time limit of one delivery attempt (connect, send, response headers and body)", "webhooker, tenancy"},
	{"WEBHOOK_RETRY_SCHEDULE", "0s,5s,5m,30m,2h,5h,10h,10h", "delay before each delivery attempt (±20% jitter); after the last one the delivery is dead-lettered", "webhooker, tenancy"},
	{"WEBHOOK_MAX_BODY", "262144", "largest request body sent; a larger event is sent without its data, with a dataref link to it", "webhooker, tenancy"},
	{"WEBHOOK_DISABLE_AFTER", "120h", "an endpoint failing without a single success for this long is disabled (0 never disables)", "webhooker, tenancy"},
	// Tracing: the standard OpenTelemetry variables, read by internal/tracing
	// and the OpenTelemetry SDK itself.
	{"OTEL_EXPORTER_OTLP_ENDPOINT", "(none: no traces)", "OTLP/HTTP collector base URL (e.g. http://otel-collector:4318); traces are exported only when this or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set", "all"},
	{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "(the endpoint + /v1/traces)", "full URL the spans are posted to", "all"},
	{"OTEL_EXPORTER_OTLP_HEADERS", "", "headers sent to the collector, key=value pairs, comma-separated (e.g. authentication)", "all"},
	{"OTEL_SERVICE_NAME", "tenancy-api, tenancy-projector, tenancy-provisioner, tenancy-webhooker, tenancy-dev", "service.name of the spans", "all"},
	{"OTEL_RESOURCE_ATTRIBUTES", "", "extra resource attributes of the spans, key=value pairs, comma-separated", "all"},
	{"OTEL_TRACES_SAMPLER", "parentbased_always_on", "which traces are recorded (e.g. parentbased_traceidratio)", "all"},
	{"OTEL_TRACES_SAMPLER_ARG", "", "the sampler's argument (the ratio, e.g. 0.1)", "all"},
	{"OTEL_SDK_DISABLED", "false", "true turns tracing off whatever the endpoint", "all"},
}

// defaults are the values of unset variables: the one place they are
// written. HTTP listen addresses differ per binary (httpAddrs).
var defaults = map[string]string{
	"TENANCY_DATA_DIR":           "./.tenancy",
	"TENANCY_DEV_NATS_ADDR":      "127.0.0.1:4223",
	"TENANCY_STREAM":             "TENANCY",
	"TENANCY_REPLICAS":           "1",
	"DATABASE_URL":               DefaultDatabaseURL,
	"OIDC_AUDIENCE":              "tenancy",
	"TENANCY_BODY_LIMIT":         "1048576",
	"TENANCY_ROOT_TENANT":        "root",
	"TENANCY_SHARED_TENANT":      "shared",
	"TENANCY_READ_WAIT":          "2s",
	"KEYCLOAK_REALM":             "master",
	"TENANCY_RECONCILE_INTERVAL": "5m",
	"TENANCY_MAIL_FROM":          "Tenancy <no-reply@localhost>",
	"LOG_LEVEL":                  "info",
	"WEBHOOK_TIMEOUT":            "15s",
	"WEBHOOK_RETRY_SCHEDULE":     "0s,5s,5m,30m,2h,5h,10h,10h",
	"WEBHOOK_MAX_BODY":           "262144",
	"WEBHOOK_DISABLE_AFTER":      "120h",
}

// httpAddrs are each binary's default TENANCY_HTTP_ADDR.
var httpAddrs = map[string]string{
	"dev": "127.0.0.1:8080", "api": ":8080", "projector": ":8081", "provisioner": ":8082", "webhooker": ":8083",
}

// DefaultDatabaseURL is the read side's database when none is configured.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/tenancy?sslmode=disable"

// Getenv reads one variable (os.Getenv in production, a map in tests).
type Getenv func(string) string

// reader reads variables with their defaults and collects every problem, so
// that a binary reports all of them at once.
type reader struct {
	get  Getenv
	errs []string
}

func (r *reader) bad(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *reader) raw(name string) string {
	if v := strings.TrimSpace(r.get(name)); v != "" {
		return v
	}
	return defaults[name]
}

func (r *reader) str(name string) string { return r.raw(name) }

func (r *reader) int(name string) int {
	v := r.raw(name)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		r.bad("%s=%q is not a whole number", name, v)
	}
	return n
}

func (r *reader) duration(name string) time.Duration {
	v := r.raw(name)
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		r.bad("%s=%q is not a duration like 2s or 500ms", name, v)
	}
	return max(d, 0)
}

func (r *reader) bool(name string) (value, set bool) {
	switch v := r.raw(name); v {
	case "":
		return false, false
	case "true", "1":
		return true, true
	case "false", "0":
		return false, true
	default:
		r.bad("%s=%q must be true or false", name, v)
	}
	return false, false
}

// done returns every problem found reading and validating.
func (r *reader) done(validate error) error {
	for _, e := range r.errs {
		validate = errors.Join(validate, errors.New(e))
	}
	if validate == nil {
		return nil
	}
	return fmt.Errorf("configuration: %s", strings.ReplaceAll(validate.Error(), "\n", "; "))
}

// problems collects validation failures.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return errors.New(strings.Join(p, "\n"))
}

// NATS says how to reach JetStream.
type NATS struct {
	URL         string
	Creds       string
	User        string
	Password    string
	InboxPrefix string
	TLSCA       string
	TLSCert     string
	TLSKey      string
	Stream      string
	Replicas    int
}

func (r *reader) nats() NATS {
	return NATS{
		URL: r.str("NATS_URL"), Creds: r.str("NATS_CREDS"), User: r.str("NATS_USER"), Password: r.str("NATS_PASSWORD"), InboxPrefix: r.str("NATS_INBOX_PREFIX"),
		TLSCA: r.str("NATS_TLS_CA"), TLSCert: r.str("NATS_TLS_CERT"), TLSKey: r.str("NATS_TLS_KEY"),
		Stream: r.str("TENANCY_STREAM"), Replicas: r.int("TENANCY_REPLICAS"),
	}
}

func (n NATS) validate(p *problems, needURL bool) {
	if needURL && n.URL == "" {
		p.add("NATS_URL is required (or run `tenancy dev`, which embeds a server)")
	}
	if n.Replicas < 1 || n.Replicas > 5 {
		p.add("TENANCY_REPLICAS=%d must be 1 to 5", n.Replicas)
	}
	if (n.User == "") != (n.Password == "") {
		p.add("NATS_USER and NATS_PASSWORD go together")
	}
	if n.User != "" && n.Creds != "" {
		p.add("give NATS_CREDS or NATS_USER, not both")
	}
	if (n.TLSCert == "") != (n.TLSKey == "") {
		p.add("NATS_TLS_CERT and NATS_TLS_KEY go together")
	}
}

// Service is what every separate service binary reads: where the log and the
// read side are, the keys it signs and seals with, the policy catalog, its
// HTTP address and its log level.
type Service struct {
	NATS        NATS
	DatabaseURL string
	SigningKey  string
	MasterKey   string
	Catalog     string
	HTTPAddr    string
	LogLevel    string
}

func (r *reader) service(binary string) Service {
	addr := r.raw("TENANCY_HTTP_ADDR")
	if addr == "" {
		addr = httpAddrs[binary]
	}
	return Service{
		NATS: r.nats(), DatabaseURL: r.str("DATABASE_URL"), SigningKey: r.str("TENANCY_SIGNING_KEY"), MasterKey: r.str("TENANCY_MASTER_KEY"),
		Catalog: r.str("TENANCY_CATALOG"), HTTPAddr: addr, LogLevel: r.str("LOG_LEVEL"),
	}
}

func (s Service) validate(p *problems) {
	s.NATS.validate(p, true)
	if s.SigningKey == "" {
		p.add("TENANCY_SIGNING_KEY is required: every event is signed")
	}
	if s.MasterKey == "" {
		p.add("TENANCY_MASTER_KEY is required: personal data is encrypted")
	}
}

// Integrations configure the external systems the provisioner drives.
type Integrations struct {
	KeycloakURL          string
	KeycloakRealm        string
	KeycloakClientID     string
	KeycloakClientSecret string
	KeycloakRealmSMTP    string
	BillingURL           string
	BillingToken         string
	ReconcileInterval    time.Duration
	Mail                 Mail
}

// Mail configures the relay of Tenancy's own mail.
type Mail struct {
	SMTPURL string
	From    string
}

func (r *reader) mail() Mail {
	return Mail{SMTPURL: r.str("TENANCY_SMTP_URL"), From: r.str("TENANCY_MAIL_FROM")}
}

func (r *reader) integrations() Integrations {
	return Integrations{
		KeycloakURL: r.str("KEYCLOAK_URL"), KeycloakRealm: r.str("KEYCLOAK_REALM"),
		KeycloakClientID: r.str("KEYCLOAK_CLIENT_ID"), KeycloakClientSecret: r.str("KEYCLOAK_CLIENT_SECRET"),
		KeycloakRealmSMTP: r.str("KEYCLOAK_REALM_SMTP"), BillingURL: r.str("BILLING_URL"), BillingToken: r.str("BILLING_TOKEN"),
		ReconcileInterval: r.duration("TENANCY_RECONCILE_INTERVAL"), Mail: r.mail(),
	}
}

func (i Integrations) validate(p *problems) {
	if i.KeycloakURL != "" && (i.KeycloakClientID == "" || i.KeycloakClientSecret == "") {
		p.add("KEYCLOAK_URL needs KEYCLOAK_CLIENT_ID and KEYCLOAK_CLIENT_SECRET")
	}
	if i.BillingURL != "" && i.BillingToken == "" {
		p.add("BILLING_URL needs BILLING_TOKEN")
	}
	if u := i.Mail.SMTPURL; u != "" && !strings.HasPrefix(u, "smtp://") && !strings.HasPrefix(u, "smtps://") {
		p.add("TENANCY_SMTP_URL must be an smtp:// or smtps:// URL")
	}
}

// Webhooks configure subscriptions and deliveries.
type Webhooks struct {
	AllowCIDRs   []string
	AllowHTTP    bool
	Timeout      time.Duration
	Schedule     []time.Duration
	MaxBody      int
	DisableAfter time.Duration
}

// DefaultRetrySchedule is the delay before each delivery attempt.
var DefaultRetrySchedule = []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// devAllow lets `tenancy dev` deliver to receivers on the same machine.
var devAllow = []string{"127.0.0.0/8", "::1/128"}

func (r *reader) webhooks(dev bool) Webhooks {
	w := Webhooks{Timeout: r.duration("WEBHOOK_TIMEOUT"), MaxBody: r.int("WEBHOOK_MAX_BODY"), DisableAfter: r.duration("WEBHOOK_DISABLE_AFTER")}
	if dev {
		w.AllowCIDRs, w.AllowHTTP = devAllow, true
	}
	allow, err := egress.ParseAllowList(r.get("WEBHOOK_ALLOW_CIDRS"))
	if err != nil {
		r.bad("%s", err.Error())
	}
	if r.get("WEBHOOK_ALLOW_CIDRS") != "" {
		// Set, it is the whole list, dev's loopback included or not: an
		// operator narrowing what webhooks reach must not find loopback
		// still open.
		w.AllowCIDRs = allow
	}
	if v, set := r.bool("WEBHOOK_ALLOW_HTTP"); set {
		w.AllowHTTP = v
	}
	for _, f := range strings.Split(r.str("WEBHOOK_RETRY_SCHEDULE"), ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d < 0 {
			r.bad("WEBHOOK_RETRY_SCHEDULE entry %q is not a duration like 5s or 30m", f)
			continue
		}
		w.Schedule = append(w.Schedule, d)
	}
	return w
}

func (w Webhooks) validate(p *problems) {
	if w.Timeout < 100*time.Millisecond {
		p.add("WEBHOOK_TIMEOUT must be at least 100ms")
	}
	if len(w.Schedule) == 0 || len(w.Schedule) > 50 {
		p.add("WEBHOOK_RETRY_SCHEDULE needs between 1 and 50 entries")
	} else if w.Schedule[0] != 0 {
		p.add("WEBHOOK_RETRY_SCHEDULE: the first entry is the first attempt, made at once; it must be 0s")
	}
	if w.MaxBody < 4096 {
		p.add("WEBHOOK_MAX_BODY must be at least 4096")
	}
}

// Bootstrap names the platform's own tenants, made at start-up.
type Bootstrap struct {
	RootSlug   string
	SharedSlug string
	// AdminEmail is the root tenant's default administrator ("" in dev:
	// generated).
	AdminEmail string
}

func (r *reader) bootstrap() Bootstrap {
	return Bootstrap{RootSlug: r.str("TENANCY_ROOT_TENANT"), SharedSlug: r.str("TENANCY_SHARED_TENANT"), AdminEmail: r.str("TENANCY_ROOT_ADMIN_EMAIL")}
}

func (b Bootstrap) validate(p *problems) {
	if b.RootSlug == b.SharedSlug {
		p.add("TENANCY_ROOT_TENANT and TENANCY_SHARED_TENANT must differ")
	}
	if b.AdminEmail != "" && !strings.Contains(b.AdminEmail, "@") {
		p.add("TENANCY_ROOT_ADMIN_EMAIL must be an email address")
	}
}

// API configures cmd/api.
type API struct {
	Service
	Bootstrap Bootstrap
	// Integrations: the API issues administrator passwords through Keycloak.
	Integrations  Integrations
	Webhooks      Webhooks
	OIDCIssuer    string
	OIDCDiscovery string
	OIDCAudience  string
	// RealmIssuerBase and RealmDiscoveryBase let tenant realms' tokens in.
	RealmIssuerBase    string
	RealmDiscoveryBase string
	BodyLimit          int64
	ReadWait           time.Duration
}

// LoadAPI reads and validates the API's configuration.
func LoadAPI(get Getenv) (API, error) {
	return load(get, func(r *reader) API {
		return API{
			Service: r.service("api"), Bootstrap: r.bootstrap(), Integrations: r.integrations(), Webhooks: r.webhooks(false),
			OIDCIssuer: r.str("OIDC_ISSUER_URL"), OIDCDiscovery: r.str("OIDC_DISCOVERY_URL"), OIDCAudience: r.str("OIDC_AUDIENCE"),
			RealmIssuerBase: r.str("OIDC_REALM_ISSUER_BASE"), RealmDiscoveryBase: r.str("OIDC_REALM_DISCOVERY_BASE"),
			BodyLimit: int64(r.int("TENANCY_BODY_LIMIT")), ReadWait: r.duration("TENANCY_READ_WAIT"),
		}
	})
}

// Validate reports every problem with c.
func (c API) Validate() error {
	var p problems
	c.Service.validate(&p)
	if c.OIDCIssuer == "" {
		p.add("OIDC_ISSUER_URL is required: every /v1 route needs a token from it")
	}
	if c.BodyLimit < 1024 {
		p.add("TENANCY_BODY_LIMIT must be at least 1024")
	}
	c.Integrations.validate(&p)
	c.Webhooks.validate(&p)
	c.Bootstrap.validate(&p)
	return p.err()
}

// Projector configures cmd/projector.
type Projector struct {
	Service
}

// LoadProjector reads and validates the projector's configuration.
func LoadProjector(get Getenv) (Projector, error) {
	return load(get, func(r *reader) Projector { return Projector{Service: r.service("projector")} })
}

// Validate reports every problem with c.
func (c Projector) Validate() error { return validateParts(c.Service) }

// Provisioner configures cmd/provisioner.
type Provisioner struct {
	Service
	Integrations Integrations
}

// LoadProvisioner reads and validates the provisioner's configuration.
func LoadProvisioner(get Getenv) (Provisioner, error) {
	return load(get, func(r *reader) Provisioner {
		return Provisioner{Service: r.service("provisioner"), Integrations: r.integrations()}
	})
}

// Validate reports every problem with c.
func (c Provisioner) Validate() error { return validateParts(c.Service, c.Integrations) }

// Webhooker configures cmd/webhooker.
type Webhooker struct {
	Service
	Webhooks Webhooks
}

// LoadWebhooker reads and validates the webhooker's configuration.
func LoadWebhooker(get Getenv) (Webhooker, error) {
	return load(get, func(r *reader) Webhooker {
		return Webhooker{Service: r.service("webhooker"), Webhooks: r.webhooks(false)}
	})
}

// Validate reports every problem with c.
func (c Webhooker) Validate() error { return validateParts(c.Service, c.Webhooks) }

// Dev configures `tenancy dev`, which embeds NATS and generates its keys.
type Dev struct {
	Bootstrap    Bootstrap
	Integrations Integrations
	Webhooks     Webhooks
	DataDir      string
	HTTPAddr     string
	NATSAddr     string
	DatabaseURL  string
	Catalog      string
	OIDCAudience string
	ReadWait     time.Duration
	LogLevel     string
	Replicas     int
}

// LoadDev reads and validates `tenancy dev`'s configuration.
func LoadDev(get Getenv) (Dev, error) {
	return load(get, func(r *reader) Dev {
		addr := r.raw("TENANCY_HTTP_ADDR")
		if addr == "" {
			addr = httpAddrs["dev"]
		}
		return Dev{
			Bootstrap: r.bootstrap(), Integrations: r.integrations(), Webhooks: r.webhooks(true),
			DataDir: r.str("TENANCY_DATA_DIR"), HTTPAddr: addr, NATSAddr: r.str("TENANCY_DEV_NATS_ADDR"), DatabaseURL: r.str("DATABASE_URL"),
			Catalog: r.str("TENANCY_CATALOG"), OIDCAudience: r.str("OIDC_AUDIENCE"), LogLevel: r.str("LOG_LEVEL"),
			ReadWait: r.duration("TENANCY_READ_WAIT"), Replicas: 1,
		}
	})
}

// Validate reports every problem with c.
func (c Dev) Validate() error { return validateParts(c.Bootstrap, c.Integrations, c.Webhooks) }

// load reads a configuration with build and reports every problem with
// it: values that do not parse and whatever its Validate finds.
func load[C interface{ Validate() error }](get Getenv, build func(*reader) C) (C, error) {
	r := &reader{get: get}
	c := build(r)
	return c, r.done(c.Validate())
}

// part is a piece of a configuration that records its own problems.
type part interface{ validate(*problems) }

// validateParts reports every problem of the parts, in order.
func validateParts(parts ...part) error {
	var p problems
	for _, x := range parts {
		x.validate(&p)
	}
	return p.err()
}
