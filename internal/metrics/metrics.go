// Package metrics owns the process's Prometheus registry and every series
// Tenancy exports, so that the names, labels and buckets are defined (and
// documented) in one place. Series are package variables: each service
// updates the ones it is concerned with, and `tenancy dev`, which runs every
// service in one process, serves them all from the one registry.
//
// Labels are bounded sets (command types, saga steps, outcomes, projection
// and consumer group names): never tenant, event or request ids, which would
// make a series per tenant.
//
// Values that live elsewhere (JetStream consumer backlogs, the dead-letter
// stream's depth, projection lag) are read at scrape time, with a time limit,
// from the sources the running services register with the Watch functions.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every series.
const Namespace = "tenancy"

// Registry holds every series the process exports, with the Go runtime and
// process collectors.
var Registry = prometheus.NewRegistry()

// Buckets of the histograms, in seconds.
var (
	// requestBuckets suit a request or command: a NATS round trip or a few.
	requestBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	// decideBuckets suit pure domain code: microseconds.
	decideBuckets = []float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, .001, .005, .01}
	// batchBuckets suit a projection's PostgreSQL transaction.
	batchBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	// callBuckets suit calls to other systems (Keycloak, billing, webhook
	// receivers), which may take up to their timeouts.
	callBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	// passBuckets suit a reconcile pass over every tenant.
	passBuckets = []float64{.1, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900}
)

// Tenancy's own mail (internal/mail).
var (
	// MailSent counts Tenancy's outgoing mail by kind (invitation, test,
	// ...) and outcome: sent, refused (the relay's 5xx; given up), retried
	// (a failure that may pass) or dropped (unreadable, its tenant erased).
	MailSent = counterVec("mail_messages_total", "Outgoing mail handled by the mailer, by kind and outcome (sent, refused, retried, dropped).", "kind", "outcome")
)

// The API's identity provider (internal/auth).
var (
	// IssuerFailures counts failed fetches of the OIDC issuer's discovery
	// document or signing keys, by fetch (discovery, keys). Once the keys
	// were fetched, the API keeps serving with them through an outage.
	IssuerFailures = counterVec("oidc_issuer_failures_total", "Failed fetches of the OIDC issuer's discovery document or signing keys, by fetch (discovery, keys); with keys fetched once, the API keeps serving with them.", "fetch")
)

// The write path (internal/command, internal/eventstore).
var (
	// Commands counts executed commands by command type (the Go type name,
	// e.g. "CreateTenant") and outcome: ok (events appended), unchanged
	// (nothing to append: a repeat), rejected (refused by the domain or a
	// failed If-Match), contention (gave up after too many conflicts) or
	// error (the log or the data keys failed).
	Commands = counterVec("commands_total", "Commands executed, by command type and outcome (ok, unchanged, rejected, contention, error).", "command", "outcome")

	// CommandDuration is the time a command took: load, decide, sign and
	// append, including retries.
	CommandDuration = histogramVec("command_duration_seconds", "Time to execute a command (load, decide, sign, append, retries), by command type.", requestBuckets, "command")

	// PolicyDuration is the time spent in the domain's Decide: the policy
	// evaluation of a command (state machine, catalog, validation).
	PolicyDuration = histogramVec("policy_evaluation_duration_seconds", "Time spent deciding a command in the domain (policy evaluation), by command type.", decideBuckets, "command")

	// AppendConflicts counts appends refused because another writer appended
	// to the aggregate first (optimistic concurrency).
	AppendConflicts = counterVec("append_conflicts_total", "Appends refused because the aggregate moved on (wrong expected sequence), by command type.", "command")

	// CommandRetries counts decide-append rounds after the first: after a
	// conflict, or after a refusal decided on a stale cached state.
	CommandRetries = counterVec("command_retries_total", "Decide-append rounds repeated after a conflict or on a refreshed state, by command type.", "command")

	// PublishRetries counts appends published again because the log did not
	// answer (a lost acknowledgement or a busy server).
	PublishRetries = counter("append_publish_retries_total", "Appends published again after the log did not acknowledge them.")
)

// The HTTP API.
var (
	// HTTPRequests counts API requests by route template, method and status.
	HTTPRequests = counterVec("http_requests_total", "API requests, by route template, method and status code.", "route", "method", "status")

	// HTTPDuration is the time to answer an API request.
	HTTPDuration = histogramVec("http_request_duration_seconds", "Time to answer an API request, by route template and method.", requestBuckets, "route", "method")
)

// The log's integrity (internal/integrity).
var (
	// IntegrityViolations counts messages the readers found failing the
	// log's integrity checks, by violation (bad-signature, version-gap,
	// not-an-event, ...), each time a reader meets one.
	IntegrityViolations = counterVec("integrity_violations_total", "Messages on the log failing its integrity checks, as readers met them, by violation.", "violation")

	// IntegrityRefusals counts commands refused because their aggregate's
	// chain is broken.
	IntegrityRefusals = counter("integrity_refusals_total", "Commands refused because their aggregate's hash chain is broken.")
)

// The read side (internal/projection).
var (
	// ProjectionBatchDuration is the time to apply one batch of events and
	// its checkpoint in one transaction.
	ProjectionBatchDuration = histogramVec("projection_batch_duration_seconds", "Time to apply one batch of events with its checkpoint, by projection.", batchBuckets, "projection")

	// ProjectionEvents counts events applied to live read models.
	ProjectionEvents = counterVec("projection_events_total", "Events applied to a live read model, by projection.", "projection")

	projectionLagEvents = prometheus.NewDesc(Namespace+"_projection_lag_events",
		"Events in the log the projection has not applied yet (read at scrape time).", []string{"projection"}, nil)
	projectionLagSeconds = prometheus.NewDesc(Namespace+"_projection_lag_seconds",
		"Age of the oldest event the projection has not applied yet, 0 when caught up (read at scrape time).", []string{"projection"}, nil)
)

// The provisioner (internal/saga).
var (
	// SagaSteps counts recorded saga step outcomes (completed, skipped,
	// failed) by saga, step and attempt: the step's attempts so far, "5+"
	// beyond four.
	SagaSteps = counterVec("saga_steps_total", "Saga steps recorded, by saga, step, outcome (completed, skipped, failed) and attempt (1-4, 5+).", "saga", "step", "outcome", "attempt")

	// SagaStepDuration is the time a step took, its in-process retries
	// included.
	SagaStepDuration = histogramVec("saga_step_duration_seconds", "Time a saga step took, its in-process retries included, by step and outcome.", callBuckets, "step", "outcome")

	// Sagas counts saga runs by saga and how they ended: completed, failed
	// (permanently, recorded), retry (a transient failure; the run resumes
	// later) or superseded.
	Sagas = counterVec("saga_runs_total", "Saga runs, by saga and result (completed, failed, retry, superseded, error).", "saga", "result")

	// ReconcileDuration is the time of one reconcile pass over every active
	// and suspended tenant.
	ReconcileDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "reconcile_duration_seconds",
		Help:    "Time of one reconcile pass over every active and suspended tenant.",
		Buckets: passBuckets,
	})

	// ReconcileTenants counts tenants reconciled (periodically, on a plan
	// change or on request) by result: ok or error.
	ReconcileTenants = counterVec("reconcile_tenants_total", "Tenants reconciled, by result (ok, error).", "result")

	// ReconcileRepairs counts drift repaired, by system (keycloak, billing).
	ReconcileRepairs = counterVec("reconcile_repairs_total", "Drift repairs recorded, by system (keycloak, billing).", "system")
)

// The webhooker (internal/webhooks).
var (
	// WebhookAttempts counts delivery attempts by outcome: delivered,
	// failed, gone (410) or refused (egress policy).
	WebhookAttempts = counterVec("webhook_attempts_total", "Webhook delivery attempts, by outcome (delivered, failed, gone, refused).", "outcome")

	// WebhookDuration is the time of one delivery attempt, from sending the
	// request to reading the (capped) response.
	WebhookDuration = histogramVec("webhook_delivery_duration_seconds", "Time of one webhook delivery attempt, by outcome.", callBuckets, "outcome")

	// WebhookDeadLettered counts deliveries moved to the dead-letter stream
	// after their last attempt.
	WebhookDeadLettered = counter("webhook_dead_lettered_total", "Webhook deliveries dead-lettered after their last attempt.")

	webhookDeadLetters = prometheus.NewDesc(Namespace+"_webhook_dead_letters",
		"Dead letters waiting for an operator in the dead-letter stream (read at scrape time).", []string{"stream"}, nil)
)

// JetStream, read at scrape time.
var (
	consumerPending = prometheus.NewDesc(Namespace+"_jetstream_consumer_pending_messages",
		"Messages not yet delivered to the durable consumers of a group (read at scrape time).", []string{"stream", "consumer"}, nil)
	consumerAckPending = prometheus.NewDesc(Namespace+"_jetstream_consumer_ack_pending_messages",
		"Messages delivered to the durable consumers of a group but not yet acknowledged (read at scrape time).", []string{"stream", "consumer"}, nil)
	consumerCount = prometheus.NewDesc(Namespace+"_jetstream_consumers",
		"Durable consumers in a group (read at scrape time).", []string{"stream", "consumer"}, nil)

	// ScrapeErrors counts scrape-time reads that failed or timed out, by
	// source; their series are left out of that scrape.
	ScrapeErrors = counterVec("metrics_scrape_errors_total", "Scrape-time reads that failed or timed out (their series are left out), by source.", "source")
)

func init() {
	Registry.MustRegister(
		// The runtime/metrics view rather than MemStats: MemStats exports
		// go_memstats_alloc_bytes both as a gauge and (with _total) as a
		// counter, one family name twice in OpenMetrics, which strict
		// scrapers refuse.
		collectors.NewGoCollector(collectors.WithGoCollectorMemStatsMetricsDisabled(),
			collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsGC, collectors.MetricsMemory, collectors.MetricsScheduler)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		Commands, CommandDuration, PolicyDuration, AppendConflicts, CommandRetries, PublishRetries,
		HTTPRequests, HTTPDuration,
		ProjectionBatchDuration, ProjectionEvents,
		SagaSteps, SagaStepDuration, Sagas, ReconcileDuration, ReconcileTenants, ReconcileRepairs,
		WebhookAttempts, WebhookDuration, WebhookDeadLettered,
		ScrapeErrors, IntegrityViolations, IntegrityRefusals, IssuerFailures, MailSent,
		live,
	)
	// The scrape-time sources' error counters exist from start, at 0.
	for _, kind := range []string{"jetstream_consumers", "dead_letters", "projections"} {
		ScrapeErrors.WithLabelValues(kind)
	}
}

// Handler serves the registry in the Prometheus text (or OpenMetrics)
// format. A failing collector leaves its series out instead of failing the
// scrape.
func Handler() http.Handler { return handler() }

// handler is made once: it registers its own error counter in Registry.
var handler = sync.OnceValue(func() http.Handler {
	return promhttp.HandlerFor(Registry, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          Registry,
		Timeout:           10 * time.Second,
		EnableOpenMetrics: true,
	})
})

// Since returns the seconds elapsed since start, for Observe.
func Since(start time.Time) float64 { return time.Since(start).Seconds() }

// AttemptLabel buckets an attempt number into a bounded label: "1" to "4",
// then "5+".
func AttemptLabel(n int) string {
	switch {
	case n <= 1:
		return "1"
	case n >= 5:
		return "5+"
	}
	return strconv.Itoa(n)
}

// counterVec, histogramVec and counter declare the tree's series in its
// namespace, one line each.
func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
}

func histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets}, labels)
}

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
}
