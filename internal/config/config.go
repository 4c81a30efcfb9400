// Package config reads every binary's configuration from the environment in
// one place, with defaults and validation. Vars lists every variable with its
// default and meaning; the README's configuration table is checked against
// it.
package config

import (
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
	{"TENANCY_HTTP_ADDR", "127.0.0.1:8080 (dev), :8080 (api)", "HTTP listen address: the API, or a worker's health checks and metrics", "all"},
	{"TENANCY_DEV_NATS_ADDR", "127.0.0.1:4223", "`tenancy dev`: client address of the embedded NATS server (so the CLI and other processes can reach it)", "tenancy"},
	{"NATS_URL", "(none; dev embeds a server)", "NATS server URL(s), comma-separated for a cluster", "all"},
	{"NATS_CREDS", "", "NATS credentials file", "all"},
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
	{"TENANCY_CATALOG", "(embedded default)", "YAML file with the region inventory and plan catalog", "api, provisioner, tenancy"},
	{"TENANCY_BODY_LIMIT", "1048576", "maximum request body in bytes", "api"},
	{"TENANCY_READ_WAIT", "2s", "how long a read with min_seq waits for the read model before answering 503", "api, tenancy"},
	{"KEYCLOAK_URL", "(none: identity steps are skipped)", "Keycloak base URL the provisioner creates tenant realms in", "provisioner, api, tenancy"},
	{"KEYCLOAK_REALM", "master", "realm of the provisioner's service account", "provisioner, api, tenancy"},
	{"KEYCLOAK_CLIENT_ID", "", "the provisioner's service account (client credentials)", "provisioner, api, tenancy"},
	{"KEYCLOAK_CLIENT_SECRET", "", "its secret", "provisioner, api, tenancy"},
	{"KEYCLOAK_REALM_SMTP", "(none)", "JSON of Keycloak smtpServer settings given to every tenant realm, so new admins get an email to set their password", "provisioner, tenancy"},
	{"BILLING_URL", "(none: billing steps are skipped)", "billing system implementing internal/billing/CONTRACT.md", "provisioner, tenancy"},
	{"BILLING_TOKEN", "", "bearer token for the billing system", "provisioner, tenancy"},
	{"TENANCY_RECONCILE_INTERVAL", "5m", "how often the provisioner compares Keycloak and billing with the log and repairs drift (0 disables)", "provisioner, tenancy"},
	{"LOG_LEVEL", "info", "debug, info, warn or error", "all"},
	{"TENANCY_API_URL", "http://$TENANCY_HTTP_ADDR", "`tenancy webhooks`: the API it calls", "tenancy"},
	{"TENANCY_TOKEN", "(the data dir's admin.token)", "`tenancy webhooks`: the platform-admin bearer token it sends", "tenancy"},
	{"WEBHOOK_ALLOW_CIDRS", "(none; dev: 127.0.0.0/8, ::1)", "addresses webhooks may reach although they are internal (loopback, private, link-local, ...): CIDRs or IPs, comma-separated", "api, webhooker, tenancy"},
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
}

func (r *reader) integrations() Integrations {
	return Integrations{
		KeycloakURL: r.str("KEYCLOAK_URL", ""), KeycloakRealm: r.str("KEYCLOAK_REALM", "master"),
		KeycloakClientID: r.str("KEYCLOAK_CLIENT_ID", ""), KeycloakClientSecret: r.str("KEYCLOAK_CLIENT_SECRET", ""),
		KeycloakRealmSMTP: r.str("KEYCLOAK_REALM_SMTP", ""), BillingURL: r.str("BILLING_URL", ""), BillingToken: r.str("BILLING_TOKEN", ""),
		ReconcileInterval: r.duration("TENANCY_RECONCILE_INTERVAL", 5*time.Minute),
	}
}

// Validate reports every problem with the integrations.
func (i Integrations) validate(errs *[]string) {
	if i.KeycloakURL != "" && (i.KeycloakClientID == "" || i.KeycloakClientSecret == "") {
		*errs = append(*errs, "KEYCLOAK_URL needs KEYCLOAK_CLIENT_ID and KEYCLOAK_CLIENT_SECRET")
	}
	if i.BillingURL != "" && i.BillingToken == "" {
		*errs = append(*errs, "BILLING_URL needs BILLING_TOKEN")
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
	w := Webhooks{
		Timeout: r.duration("WEBHOOK_TIMEOUT", 15*time.Second), MaxBody: r.int("WEBHOOK_MAX_BODY", 256<<10),
		DisableAfter: r.duration("WEBHOOK_DISABLE_AFTER", 120*time.Hour), Schedule: DefaultRetrySchedule,
	}
	if dev {
		w.AllowCIDRs, w.AllowHTTP = devAllow, true
	}
	allow, err := egress.ParseAllowList(r.get("WEBHOOK_ALLOW_CIDRS"))
	if err != nil {
		r.errs = append(r.errs, err.Error())
	}
	w.AllowCIDRs = append(w.AllowCIDRs, allow...)
	switch v := strings.TrimSpace(r.get("WEBHOOK_ALLOW_HTTP")); v {
	case "":
	case "true", "1":
		w.AllowHTTP = true
	case "false", "0":
		w.AllowHTTP = false
	default:
		r.errs = append(r.errs, fmt.Sprintf("WEBHOOK_ALLOW_HTTP=%q must be true or false", v))
	}
	if v := strings.TrimSpace(r.get("WEBHOOK_RETRY_SCHEDULE")); v != "" {
		w.Schedule = nil
		for _, f := range strings.Split(v, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(f))
			if err != nil || d < 0 {
				r.errs = append(r.errs, fmt.Sprintf("WEBHOOK_RETRY_SCHEDULE entry %q is not a duration like 5s or 30m", f))
				continue
			}
			w.Schedule = append(w.Schedule, d)
		}
	}
	return w
}

func (w Webhooks) validate(errs *[]string) {
	if w.Timeout < 100*time.Millisecond {
		*errs = append(*errs, "WEBHOOK_TIMEOUT must be at least 100ms")
	}
	if len(w.Schedule) == 0 || len(w.Schedule) > 50 {
		*errs = append(*errs, "WEBHOOK_RETRY_SCHEDULE needs between 1 and 50 entries")
	} else if w.Schedule[0] != 0 {
		*errs = append(*errs, "WEBHOOK_RETRY_SCHEDULE: the first entry is the first attempt, made at once; it must be 0s")
	}
	if w.MaxBody < 4096 {
		*errs = append(*errs, "WEBHOOK_MAX_BODY must be at least 4096")
	}
}

// Getenv reads one variable (os.Getenv in production, a map in tests).
type Getenv func(string) string

// reader accumulates parse errors so that Validate reports all at once.
type reader struct {
	get  Getenv
	errs []string
}

func (r *reader) str(name, def string) string {
	if v := strings.TrimSpace(r.get(name)); v != "" {
		return v
	}
	return def
}

func (r *reader) int(name string, def int) int {
	v := r.get(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		r.errs = append(r.errs, fmt.Sprintf("%s=%q is not a whole number", name, v))
		return def
	}
	return n
}

func (r *reader) duration(name string, def time.Duration) time.Duration {
	v := r.get(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d < 0 {
		r.errs = append(r.errs, fmt.Sprintf("%s=%q is not a duration like 2s or 500ms", name, v))
		return def
	}
	return d
}

func (r *reader) err() error {
	if len(r.errs) == 0 {
		return nil
	}
	return fmt.Errorf("configuration: %s", strings.Join(r.errs, "; "))
}

// NATS says how to reach JetStream.
type NATS struct {
	URL      string
	Creds    string
	TLSCA    string
	TLSCert  string
	TLSKey   string
	Stream   string
	Replicas int
}

func (r *reader) nats() NATS {
	return NATS{
		URL: r.str("NATS_URL", ""), Creds: r.str("NATS_CREDS", ""),
		TLSCA: r.str("NATS_TLS_CA", ""), TLSCert: r.str("NATS_TLS_CERT", ""), TLSKey: r.str("NATS_TLS_KEY", ""),
		Stream: r.str("TENANCY_STREAM", "TENANCY"), Replicas: r.int("TENANCY_REPLICAS", 1),
	}
}

func (n NATS) validate(errs *[]string, needURL bool) {
	if needURL && n.URL == "" {
		*errs = append(*errs, "NATS_URL is required (or run `tenancy dev`, which embeds a server)")
	}
	if n.Replicas < 1 || n.Replicas > 5 {
		*errs = append(*errs, fmt.Sprintf("TENANCY_REPLICAS=%d must be 1 to 5", n.Replicas))
	}
	if (n.TLSCert == "") != (n.TLSKey == "") {
		*errs = append(*errs, "NATS_TLS_CERT and NATS_TLS_KEY go together")
	}
}

// DefaultDatabaseURL is the read side's database when none is configured.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/tenancy?sslmode=disable"

// API configures cmd/api.
type API struct {
	Integrations  Integrations
	Webhooks      Webhooks
	NATS          NATS
	HTTPAddr      string
	DatabaseURL   string
	SigningKey    string
	MasterKey     string
	OIDCIssuer    string
	OIDCDiscovery string
	OIDCAudience  string
	Catalog       string
	BodyLimit     int64
	ReadWait      time.Duration
	LogLevel      string
}

// LoadAPI reads the API's configuration.
func LoadAPI(get Getenv) (API, error) {
	r := &reader{get: get}
	c := API{
		Integrations: r.integrations(), Webhooks: r.webhooks(false),
		NATS: r.nats(), HTTPAddr: r.str("TENANCY_HTTP_ADDR", ":8080"), DatabaseURL: r.str("DATABASE_URL", DefaultDatabaseURL),
		SigningKey: r.str("TENANCY_SIGNING_KEY", ""), MasterKey: r.str("TENANCY_MASTER_KEY", ""),
		OIDCIssuer: r.str("OIDC_ISSUER_URL", ""), OIDCDiscovery: r.str("OIDC_DISCOVERY_URL", ""), OIDCAudience: r.str("OIDC_AUDIENCE", "tenancy"),
		Catalog: r.str("TENANCY_CATALOG", ""), BodyLimit: int64(r.int("TENANCY_BODY_LIMIT", 1<<20)),
		ReadWait: r.duration("TENANCY_READ_WAIT", 2*time.Second), LogLevel: r.str("LOG_LEVEL", "info"),
	}
	if err := r.err(); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Validate reports every problem with c.
func (c API) Validate() error {
	var errs []string
	c.NATS.validate(&errs, true)
	if c.SigningKey == "" {
		errs = append(errs, "TENANCY_SIGNING_KEY is required: every event is signed")
	}
	if c.MasterKey == "" {
		errs = append(errs, "TENANCY_MASTER_KEY is required: personal data is encrypted")
	}
	if c.OIDCIssuer == "" {
		errs = append(errs, "OIDC_ISSUER_URL is required: every /v1 route needs a token from it")
	}
	if c.BodyLimit < 1024 {
		errs = append(errs, "TENANCY_BODY_LIMIT must be at least 1024")
	}
	c.Integrations.validate(&errs)
	c.Webhooks.validate(&errs)
	return joinErrs(errs)
}

// Worker configures the projector, provisioner and webhooker.
type Worker struct {
	Integrations Integrations
	Webhooks     Webhooks
	NATS         NATS
	DatabaseURL  string
	SigningKey   string
	MasterKey    string
	Catalog      string
	HTTPAddr     string
	LogLevel     string
}

// LoadWorker reads a worker's configuration; defaultAddr is its health and
// metrics address.
func LoadWorker(get Getenv, defaultAddr string) (Worker, error) {
	r := &reader{get: get}
	c := Worker{
		Integrations: r.integrations(), Webhooks: r.webhooks(false),
		NATS: r.nats(), DatabaseURL: r.str("DATABASE_URL", DefaultDatabaseURL),
		SigningKey: r.str("TENANCY_SIGNING_KEY", ""), MasterKey: r.str("TENANCY_MASTER_KEY", ""),
		Catalog: r.str("TENANCY_CATALOG", ""), HTTPAddr: r.str("TENANCY_HTTP_ADDR", defaultAddr), LogLevel: r.str("LOG_LEVEL", "info"),
	}
	if err := r.err(); err != nil {
		return c, err
	}
	var errs []string
	c.NATS.validate(&errs, true)
	c.Integrations.validate(&errs)
	c.Webhooks.validate(&errs)
	return c, joinErrs(errs)
}

// Dev configures `tenancy dev`.
type Dev struct {
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

// LoadDev reads `tenancy dev`'s configuration.
func LoadDev(get Getenv) (Dev, error) {
	r := &reader{get: get}
	c := Dev{
		Integrations: r.integrations(), Webhooks: r.webhooks(true),
		DataDir: r.str("TENANCY_DATA_DIR", "./.tenancy"), HTTPAddr: r.str("TENANCY_HTTP_ADDR", "127.0.0.1:8080"),
		NATSAddr: r.str("TENANCY_DEV_NATS_ADDR", "127.0.0.1:4223"), DatabaseURL: r.str("DATABASE_URL", DefaultDatabaseURL),
		Catalog: r.str("TENANCY_CATALOG", ""), OIDCAudience: r.str("OIDC_AUDIENCE", "tenancy"), LogLevel: r.str("LOG_LEVEL", "info"),
		ReadWait: r.duration("TENANCY_READ_WAIT", 2*time.Second), Replicas: 1,
	}
	if err := r.err(); err != nil {
		return c, err
	}
	var errs []string
	c.Integrations.validate(&errs)
	c.Webhooks.validate(&errs)
	return c, joinErrs(errs)
}

func joinErrs(errs []string) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("configuration: %s", strings.Join(errs, "; "))
}
