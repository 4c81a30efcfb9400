// Package saga carries out the external effects of tenant lifecycle
// changes (identity realm, billing account) as sagas whose progress is
// recorded, step by step, as events on the tenant's own stream: a saga
// resumes after a crash from its last recorded step, and its history is the
// audit trail.
package saga

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/backoff"
	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/metrics"

	"github.com/tenancyhq/tenancy/internal/tracing"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Actor is the actor recorded on the events sagas append.
const Actor = "system:provisioner"

// Outcome is what a step did.
type Outcome struct {
	// Skipped steps did nothing, on purpose; Detail says why.
	Skipped     bool
	Detail      string
	ExternalIDs map[string]string
}

// Step is one idempotent unit of a saga: running it again after it
// succeeded changes nothing.
type Step struct {
	Name string
	Run  func(ctx context.Context, t domain.Tenant) (Outcome, error)
	// Applies, if set, says whether the step is for this tenant at all. A
	// step that is not is neither run nor recorded, so a tenant's history
	// lists only what was done for it (a tenant in the shared realm has no
	// realm steps, one in its own realm no organization steps).
	Applies func(t domain.Tenant) bool
}

// PermanentError is a failure retrying cannot fix; Reason says what to fix.
type PermanentError struct {
	Reason string
}

func (e *PermanentError) Error() string { return e.Reason }

// Permanent wraps a reason as a PermanentError.
func Permanent(format string, args ...any) error {
	return &PermanentError{Reason: fmt.Sprintf(format, args...)}
}

// RetryAfterError asks for the next attempt not before After.
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// ErrRetryLater reports a saga stopped on a transient failure; it resumes
// when its message is redelivered.
var ErrRetryLater = errors.New("saga step failed transiently; will retry")

// Plan returns the steps of a saga.
type Plan func(saga string) []Step

// Backoff bounds in-process retries of a step: at most Attempts tries,
// paced by Pause.
type Backoff struct {
	Attempts int
	Pause    backoff.Policy
}

// Runner runs the current saga of a tenant.
type Runner struct {
	Tenants *app.Tenants
	Plan    Plan
	Backoff Backoff
	Log     *slog.Logger
	Clock   func() time.Time
	// Sleep waits between attempts (replaceable in tests).
	Sleep func(ctx context.Context, d time.Duration) error
}

func (r *Runner) now() time.Time {
	now := time.Now
	if r.Clock != nil {
		now = r.Clock
	}
	return now().UTC().Truncate(time.Microsecond)
}

// sagaRun is what every step of one run of a saga shares.
type sagaRun struct {
	tenantID string
	saga     string
	sagaID   string
	meta     command.Meta
}

// Run brings the tenant's current saga as far as it can go. It returns nil
// when the saga finished, failed permanently (recorded), was superseded, or
// there is none; ErrRetryLater when a step keeps failing transiently.
func (r *Runner) Run(ctx context.Context, tenantID string, causation string) (err error) {
	t, _, err := r.Tenants.Get(ctx, tenantID)
	if errors.Is(err, domain.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	p := t.Provisioning
	if p.SagaID == "" || p.Status != domain.SagaRunning {
		return nil
	}
	ctx = logging.With(ctx, slog.String("tenant_id", tenantID), slog.String("saga", p.Saga), slog.String("saga_id", p.SagaID))
	ctx, finish := r.traceRun(ctx, tenantID, p)
	result := "error"
	defer func() { finish(result, err) }()
	run := &sagaRun{tenantID: tenantID, saga: p.Saga, sagaID: p.SagaID,
		meta: command.Meta{Actor: Actor, CorrelationID: p.SagaID, CausationID: causation}}
	for _, step := range r.Plan(p.Saga) {
		if step.Applies != nil && !step.Applies(t) {
			continue
		}
		if st, ok := t.Provisioning.Step(step.Name); ok && (st.Outcome == events.StepCompleted || st.Outcome == events.StepSkipped) {
			continue
		}
		var stop string
		if t, stop, err = r.runStep(ctx, run, t, step); stop != "" {
			result = stop
			return err
		}
	}
	_, err = r.Tenants.Do(ctx, tenantID, domain.CompleteSaga{SagaID: p.SagaID}, run.meta)
	if errors.Is(err, domain.ErrPrecondition) {
		result = "superseded"
		return nil
	}
	if err == nil {
		result = "completed"
		r.Log.InfoContext(ctx, "saga completed")
	}
	return err
}

// traceRun starts the span of a run of saga p. The run is a child of the
// span that appended the triggering event (the worker put it in ctx); each
// step is a child of the run, and the events recording them carry the
// trace on. The function returned counts the run by its result, marks the
// span failed on an error or a retry, and ends it.
func (r *Runner) traceRun(ctx context.Context, tenantID string, p domain.Provisioning) (context.Context, func(result string, err error)) {
	ctx, span := tracing.Start(ctx, "saga "+p.Saga, trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("tenancy.saga", p.Saga), attribute.String("tenancy.saga_id", p.SagaID),
			attribute.String("tenancy.tenant_id", tenantID))
	}
	return ctx, func(result string, err error) {
		metrics.Sagas.WithLabelValues(p.Saga, result).Inc()
		if span.IsRecording() {
			span.SetAttributes(attribute.String("tenancy.result", result))
			if result == "error" || result == "retry" {
				tracing.Fail(span, err)
			}
		}
		span.End()
	}
}

// runStep runs one step of the saga on t and records its outcome. It
// returns the tenant as the record left it and, when the run stops at this
// step, the run's result ("superseded", "failed", "retry" or "error") and
// the error Run returns; the result is "" when the run goes on.
func (r *Runner) runStep(ctx context.Context, run *sagaRun, t domain.Tenant, step Step) (domain.Tenant, string, error) {
	stepCtx, stepSpan := tracing.Start(ctx, "saga step "+step.Name)
	rec, attempts, err := r.perform(stepCtx, run, t, step)
	if stepSpan.IsRecording() {
		stepSpan.SetAttributes(attribute.String("tenancy.step", step.Name), attribute.String("tenancy.outcome", rec.Outcome),
			attribute.Int("tenancy.attempt", rec.Attempt), attribute.Int("tenancy.attempts_this_run", attempts))
		if rec.Outcome == events.StepFailed {
			tracing.Fail(stepSpan, err)
		}
	}
	res, rerr := r.Tenants.Do(stepCtx, run.tenantID, domain.RecordStep{Step: rec}, run.meta)
	stepSpan.End()
	if errors.Is(rerr, domain.ErrPrecondition) {
		r.Log.InfoContext(ctx, "saga superseded; stopping", "step", step.Name)
		return t, "superseded", nil
	}
	if rerr != nil {
		return t, "error", rerr
	}
	if err != nil {
		result, err := r.stepFailed(ctx, run, rec, err)
		return res.State, result, err
	}
	r.Log.InfoContext(ctx, "saga step done", "step", step.Name, "outcome", rec.Outcome, "detail", rec.Detail)
	return res.State, "", nil
}

// perform runs step with bounded retries and returns the record of its
// outcome, how many attempts this run made, and the error the step ended
// with.
func (r *Runner) perform(ctx context.Context, run *sagaRun, t domain.Tenant, step Step) (events.TenantStepRecorded, int, error) {
	prevAttempts := 0
	if st, ok := t.Provisioning.Step(step.Name); ok {
		prevAttempts = st.Attempt
	}
	started := r.now()
	t0 := time.Now()
	out, attempts, err := r.attempt(ctx, step, t)
	took := time.Since(t0)
	rec := events.TenantStepRecorded{
		SagaID: run.sagaID, Step: step.Name, Attempt: prevAttempts + attempts,
		StartedAt: started, FinishedAt: r.now(), Detail: out.Detail, ExternalIDs: out.ExternalIDs,
	}
	switch {
	case err == nil && out.Skipped:
		rec.Outcome = events.StepSkipped
	case err == nil:
		rec.Outcome = events.StepCompleted
	default:
		rec.Outcome = events.StepFailed
		rec.Detail = err.Error()
	}
	metrics.SagaSteps.WithLabelValues(run.saga, step.Name, rec.Outcome, metrics.AttemptLabel(rec.Attempt)).Inc()
	metrics.SagaStepDuration.WithLabelValues(step.Name, rec.Outcome).Observe(took.Seconds())
	return rec, attempts, err
}

// stepFailed ends the run after the step rec records failed with err: a
// permanent failure fails the saga; any other leaves it to be retried.
// It returns the run's result and the error Run returns.
func (r *Runner) stepFailed(ctx context.Context, run *sagaRun, rec events.TenantStepRecorded, err error) (string, error) {
	var perm *PermanentError
	if !errors.As(err, &perm) {
		r.Log.WarnContext(ctx, "saga step failing; will retry", "step", rec.Step, "attempts", rec.Attempt, "error", err)
		return "retry", fmt.Errorf("%w: %s: %v", ErrRetryLater, rec.Step, err)
	}
	r.Log.WarnContext(ctx, "saga step failed permanently", "step", rec.Step, "reason", perm.Reason)
	_, ferr := r.Tenants.Do(ctx, run.tenantID, domain.FailSaga{SagaID: run.sagaID, Step: rec.Step, Attempt: rec.Attempt, Reason: perm.Reason}, run.meta)
	switch {
	case errors.Is(ferr, domain.ErrPrecondition):
		return "superseded", nil
	case ferr == nil:
		return "failed", nil
	}
	return "error", ferr
}

// attempt runs a step with bounded retries of transient failures.
func (r *Runner) attempt(ctx context.Context, step Step, t domain.Tenant) (Outcome, int, error) {
	sleep := r.Sleep
	if sleep == nil {
		sleep = backoff.Sleep
	}
	attempts := max(r.Backoff.Attempts, 1)
	var last error
	for n := 1; n <= attempts; n++ {
		out, err := step.Run(ctx, t)
		if err == nil {
			return out, n, nil
		}
		last = err
		var perm *PermanentError
		if errors.As(err, &perm) || ctx.Err() != nil || n == attempts {
			return out, n, err
		}
		d := r.Backoff.Pause.Delay(n)
		var ra *RetryAfterError
		if errors.As(err, &ra) && ra.After > d {
			d = ra.After
		}
		if serr := sleep(ctx, d); serr != nil {
			return out, n, err
		}
	}
	return Outcome{}, attempts, last
}
