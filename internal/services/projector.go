package services

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/projection"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// ProjectionTools are the operator's commands on the read side, shared by
// `projector` and `tenancy projections`.
type ProjectionTools struct {
	JS     jetstream.JetStream
	Store  *eventstore.Store
	Opener projection.Opener
	// Signer signs the events that record operator actions (skip).
	Signer   *events.Signer
	ReadSide *ReadSide
	Log      *slog.Logger
}

// ProjectionNames lists the projections.
var ProjectionNames = []string{projection.Tenants{}.Name(), projection.Audit{}.Name()}

func projectionByName(name string) (projection.Projection, error) {
	for _, p := range []projection.Projection{projection.Tenants{}, projection.Audit{}} {
		if p.Name() == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("unknown projection %q (known: %s)", name, strings.Join(ProjectionNames, ", "))
}

// Status prints every projection's state.
func (t ProjectionTools) Status(ctx context.Context, out io.Writer) error {
	ss, err := projection.Statuses(ctx, t.ReadSide.Pool, t.Store, time.Now())
	if err != nil {
		return err
	}
	if len(ss) == 0 {
		fmt.Fprintln(out, "no projection has run yet (start the projector)")
		return nil
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROJECTION\tSTATE\tACTIVE\tGENERATION\tCHECKPOINT\tHEAD\tLAG EVENTS\tLAG SECONDS\tDETAIL")
	for _, s := range ss {
		detail := s.Error
		if s.Rebuild != nil {
			detail = fmt.Sprintf("rebuilding generation %d, at seq %d since %s", s.Rebuild.Generation, s.Rebuild.Checkpoint, s.Rebuild.StartedAt.Format(time.RFC3339))
		}
		if s.PoisonSeq != 0 {
			detail = fmt.Sprintf("stopped on seq %d: %s", s.PoisonSeq, s.Error)
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%d\t%d\t%d\t%.1f\t%s\n", s.Name, s.State, s.Active, s.Generation, s.Checkpoint, s.StreamHead, s.LagEvents, s.LagSeconds, detail)
	}
	return tw.Flush()
}

// Rebuild rebuilds a projection: through its active runner when one is
// running (the live generation keeps serving meanwhile), else in this
// process. It returns when reads have switched to the new generation.
func (t ProjectionTools) Rebuild(ctx context.Context, name, actor string, out io.Writer) error {
	p, err := projectionByName(name)
	if err != nil {
		return err
	}
	runner := projection.NewRunner(p, projection.Deps{DatabaseURL: t.ReadSide.URL, JS: t.JS, Store: t.Store, Opener: t.Opener, Log: t.Log})
	before := t.generation(ctx, name)
	err = runner.RunUntilRebuilt(ctx, actor)
	if err == nil {
		fmt.Fprintf(out, "%s rebuilt: generation %d\n", name, t.generation(ctx, name))
		return nil
	}
	if !errors.Is(err, projection.ErrBusy) {
		return err
	}
	if err := projection.RequestRebuild(ctx, t.ReadSide.Pool, name, actor); err != nil {
		return err
	}
	fmt.Fprintf(out, "asked the running projector to rebuild %s (generation %d serves meanwhile)\n", name, before)
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		states, err := projection.States(ctx, t.ReadSide.Pool)
		if err != nil {
			return err
		}
		for _, s := range states {
			if s.Name != name {
				continue
			}
			switch {
			case s.Generation > before:
				fmt.Fprintf(out, "%s rebuilt: generation %d at seq %d\n", name, s.Generation, s.Checkpoint)
				return nil
			case strings.HasPrefix(s.Error, "rebuild failed"):
				return errors.New(s.Error)
			case s.RebuildingGeneration != 0:
				fmt.Fprintf(out, "  generation %d replayed up to seq %d\n", s.RebuildingGeneration, s.RebuildCheckpoint)
			}
		}
	}
}

func (t ProjectionTools) generation(ctx context.Context, name string) int {
	states, _ := projection.States(ctx, t.ReadSide.Pool)
	for _, s := range states {
		if s.Name == name {
			return s.Generation
		}
	}
	return 0
}

// Skip makes a projection stopped on a poison event skip it. The skip is
// recorded in the log (signed, with the actor and reason) and in the
// projection's own history.
func (t ProjectionTools) Skip(ctx context.Context, name string, seq uint64, reason, actor string, out io.Writer) error {
	if _, err := projectionByName(name); err != nil {
		return err
	}
	states, err := projection.States(ctx, t.ReadSide.Pool)
	if err != nil {
		return err
	}
	var st *projection.State
	for i := range states {
		if states[i].Name == name {
			st = &states[i]
		}
	}
	if st == nil || st.Status != projection.StatusStopped || st.PoisonSeq != seq {
		return fmt.Errorf("%w: %s is not stopped on seq %d (see `status`)", projection.ErrNotStopped, name, seq)
	}
	if t.Signer == nil {
		return errors.New("recording a skip needs a signing key (TENANCY_SIGNING_KEY)")
	}
	h := command.NewHandler[domain.ProjectionOps, domain.SkipEvent](domain.ProjectionOpsDecider{}, command.Deps{Store: t.Store, Signer: t.Signer, NewID: NewID})
	if _, err := h.Execute(ctx, events.PlatformTenantID, name, domain.SkipEvent{Projection: name, Seq: seq, Reason: reason, Error: st.Error}, command.Meta{Actor: actor}); err != nil {
		return err
	}
	if err := projection.RequestSkip(ctx, t.ReadSide.Pool, name, seq, reason, actor); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s will skip seq %d (recorded in the log)\n", name, seq)
	return nil
}

// RunProjectionsCommand runs a projector subcommand: status, rebuild NAME,
// skip NAME --seq N --reason R.
func (t ProjectionTools) RunProjectionsCommand(ctx context.Context, args []string, actor string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: status | rebuild <projection> | skip <projection> --seq N --reason TEXT")
	}
	switch args[0] {
	case "status":
		return t.Status(ctx, out)
	case "rebuild":
		if len(args) != 2 {
			return fmt.Errorf("usage: rebuild <projection> (one of %s)", strings.Join(ProjectionNames, ", "))
		}
		return t.Rebuild(ctx, args[1], actor, out)
	case "skip":
		if len(args) < 2 {
			return errors.New("usage: skip <projection> --seq N --reason TEXT")
		}
		var seq uint64
		var reason string
		rest := args[2:]
		for i := 0; i < len(rest); i++ {
			switch {
			case rest[i] == "--seq" && i+1 < len(rest):
				if _, err := fmt.Sscan(rest[i+1], &seq); err != nil {
					return fmt.Errorf("--seq: %w", err)
				}
				i++
			case rest[i] == "--reason" && i+1 < len(rest):
				reason = rest[i+1]
				i++
			default:
				return fmt.Errorf("unexpected argument %q", rest[i])
			}
		}
		if seq == 0 || reason == "" {
			return errors.New("skip needs --seq N and --reason TEXT")
		}
		return t.Skip(ctx, args[1], seq, reason, actor, out)
	}
	return fmt.Errorf("unknown command %q: status | rebuild <projection> | skip <projection> --seq N --reason TEXT", args[0])
}
