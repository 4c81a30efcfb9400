package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/integrity"
	"github.com/tenancyhq/tenancy/internal/metrics"
	"github.com/tenancyhq/tenancy/internal/postgres"
	"github.com/tenancyhq/tenancy/internal/projection"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Projections are the read models' operations: run them, report them,
// rebuild one without downtime, and skip an event one is stopped on.
type Projections struct {
	o   ProjectionsOptions
	ops *command.Handler[domain.ProjectionOps, domain.SkipEvent]
	all []projection.Projection
}

// ProjectionsOptions configure Projections.
type ProjectionsOptions struct {
	// Deps append the events recording operator actions (a skip); a skip
	// needs its Signer.
	Deps        command.Deps
	JS          jetstream.JetStream
	DatabaseURL string
	Pool        *pgxpool.Pool
	// Opener opens personal data for the projections that show it.
	Opener projection.Opener
	Log    *slog.Logger
}

// NewProjections returns the projection use cases over every projection.
func NewProjections(o ProjectionsOptions) *Projections {
	return &Projections{
		o:   o,
		ops: command.NewHandler[domain.ProjectionOps, domain.SkipEvent](domain.ProjectionOpsDecider{}, o.Deps),
		all: projection.All(),
	}
}

// Names lists the projections.
func (p *Projections) Names() []string {
	out := make([]string, len(p.all))
	for i, pr := range p.all {
		out[i] = pr.Name()
	}
	return out
}

func (p *Projections) byName(name string) (projection.Projection, error) {
	for _, pr := range p.all {
		if pr.Name() == name {
			return pr, nil
		}
	}
	return nil, fmt.Errorf("%w: unknown projection %q (known: %s)", domain.ErrNotFound, name, strings.Join(p.Names(), ", "))
}

func (p *Projections) deps(observe func(string, int, time.Duration, uint64, time.Time)) projection.Deps {
	checker := p.o.Deps.Checker
	if checker == nil {
		checker = integrity.NewLogChecker(p.o.Deps.Store)
	}
	quarantine := p.o.Deps.Quarantine
	if quarantine == nil {
		quarantine = func(context.Context, *integrity.Violation) {}
	}
	return projection.Deps{DatabaseURL: p.o.DatabaseURL, JS: p.o.JS, Store: p.o.Deps.Store, Opener: p.o.Opener, Log: p.o.Log, Observe: observe,
		Reader:     func() *integrity.Reader { return integrity.NewReader(checker, p.o.Deps.Store, 0) },
		Quarantine: quarantine}
}

// Runners returns a runner of every projection, for the projector to run.
func (p *Projections) Runners(observe func(string, int, time.Duration, uint64, time.Time)) []*projection.Runner {
	out := make([]*projection.Runner, len(p.all))
	for i, pr := range p.all {
		out[i] = projection.NewRunner(pr, p.deps(observe))
	}
	return out
}

// Status reports every projection that has run: checkpoint, lag, state.
func (p *Projections) Status(ctx context.Context) ([]projection.Status, error) {
	st, err := projection.Statuses(ctx, p.o.Pool, p.o.Deps.Store, time.Now())
	return st, postgres.ReadErr(err)
}

// WatchLag makes every projection's lag a metric read at scrape time, until
// stop is called.
func (p *Projections) WatchLag() (stop func()) {
	return metrics.WatchProjections(func(ctx context.Context) ([]metrics.ProjectionLag, error) {
		return projection.Lags(ctx, p.o.Pool, p.o.Deps.Store, time.Now())
	})
}

// Rebuild rebuilds a projection: in this process when no runner is active,
// else through the active runner (the live generation keeps serving
// meanwhile). It returns the new generation once reads have switched to it;
// progress hears how far a rebuild by another runner has got.
func (p *Projections) Rebuild(ctx context.Context, name, actor string, progress func(string)) (int, error) {
	pr, err := p.byName(name)
	if err != nil {
		return 0, err
	}
	before := p.generation(ctx, name)
	err = projection.NewRunner(pr, p.deps(nil)).RunUntilRebuilt(ctx, actor)
	if err == nil {
		return p.generation(ctx, name), nil
	}
	if !errors.Is(err, projection.ErrBusy) {
		return 0, err
	}
	if err := projection.RequestRebuild(ctx, p.o.Pool, name, actor); err != nil {
		return 0, err
	}
	progress(fmt.Sprintf("asked the running projector to rebuild %s (generation %d serves meanwhile)", name, before))
	return p.awaitRebuild(ctx, name, before, progress)
}

func (p *Projections) awaitRebuild(ctx context.Context, name string, before int, progress func(string)) (int, error) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-tick.C:
		}
		s, err := p.state(ctx, name)
		if err != nil {
			return 0, err
		}
		switch {
		case s == nil:
		case s.Generation > before:
			return s.Generation, nil
		case strings.HasPrefix(s.Error, "rebuild failed"):
			return 0, errors.New(s.Error)
		case s.RebuildingGeneration != 0:
			progress(fmt.Sprintf("  generation %d replayed up to seq %d", s.RebuildingGeneration, s.RebuildCheckpoint))
		}
	}
}

func (p *Projections) state(ctx context.Context, name string) (*projection.State, error) {
	states, err := projection.States(ctx, p.o.Pool)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(states, func(s projection.State) bool { return s.Name == name })
	if i < 0 {
		return nil, nil
	}
	return &states[i], nil
}

func (p *Projections) generation(ctx context.Context, name string) int {
	if s, _ := p.state(ctx, name); s != nil {
		return s.Generation
	}
	return 0
}

// ErrNotStopped reports a skip of a projection that is not stopped on that
// event.
var ErrNotStopped = projection.ErrNotStopped

// Skip makes a projection stopped on a poison event skip it. The skip is
// recorded in the log (signed, with the actor and reason) and in the
// projection's own history.
func (p *Projections) Skip(ctx context.Context, name string, seq uint64, reason, actor string) error {
	if _, err := p.byName(name); err != nil {
		return err
	}
	st, err := p.state(ctx, name)
	if err != nil {
		return err
	}
	if st == nil || st.Status != projection.StatusStopped || st.PoisonSeq != seq {
		return fmt.Errorf("%w: %s is not stopped on seq %d (see `status`)", ErrNotStopped, name, seq)
	}
	if p.o.Deps.Signer == nil {
		return errors.New("recording a skip needs a signing key (TENANCY_SIGNING_KEY)")
	}
	if _, err := p.ops.Execute(ctx, events.PlatformTenantID, name, domain.SkipEvent{Projection: name, Seq: seq, Reason: reason, Error: st.Error}, command.Meta{Actor: actor}); err != nil {
		return err
	}
	return projection.RequestSkip(ctx, p.o.Pool, name, seq, reason, actor)
}
