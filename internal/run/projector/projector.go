// Package projector wires the read side's runners (cmd/projector, and
// `tenancy dev` in process) and the operator commands on the read models
// that both `projector` and `tenancy projections` offer.
package projector

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/config"
	"github.com/tenancyhq/tenancy/internal/health"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/run/boot"
)

// Run keeps every projection up to date until ctx ends.
func Run(ctx context.Context, p *app.Projections) error {
	defer p.WatchLag()()
	g, gctx := errgroup.WithContext(ctx)
	for _, r := range p.Runners(nil) {
		g.Go(func() error { return r.Run(gctx) })
	}
	return g.Wait()
}

// Main runs the projector as configured: cmd "run" (or none) keeps the read
// models up to date until ctx ends; "migrate" applies the schema; the other
// commands are Command's.
func Main(ctx context.Context, getenv config.Getenv, args []string, actor string, stdout, stderr io.Writer) error {
	cfg, err := config.LoadProjector(getenv)
	if err != nil {
		return err
	}
	cmd := "run"
	if len(args) > 0 {
		cmd = args[0]
	}
	if cmd == "migrate" {
		rs, err := boot.OpenReadSide(ctx, cfg.DatabaseURL, false, true)
		if err != nil {
			return err
		}
		rs.Close()
		fmt.Fprintln(stdout, "migrations applied")
		return nil
	}
	log := logging.New(stderr, "projector", logging.ParseLevel(cfg.LogLevel))
	core, err := boot.Connect(ctx, cfg.Service, "tenancy-projector", nil, log)
	if err != nil {
		return err
	}
	defer core.Close()
	rs, err := boot.OpenReadSide(ctx, cfg.DatabaseURL, false, true)
	if err != nil {
		return err
	}
	defer rs.Close()
	p := boot.Projections(core, rs)
	if cmd != "run" {
		return Command(ctx, p, args, actor, stdout)
	}
	stopTracing, err := boot.StartTracing(ctx, "tenancy-projector", log)
	if err != nil {
		return err
	}
	defer stopTracing()
	return boot.RunWorker(ctx, cfg.HTTPAddr, log, func(ctx context.Context) error { return Run(ctx, p) },
		health.Check{Name: "nats", Check: core.CheckNATS}, health.Check{Name: "postgres", Check: rs.Check})
}

// Usage lists the operator commands.
const Usage = "status | rebuild <projection> | skip <projection> --seq N --reason TEXT"

// Command runs an operator command on the read models: status, rebuild
// NAME, skip NAME --seq N --reason TEXT.
func Command(ctx context.Context, p *app.Projections, args []string, actor string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: " + Usage)
	}
	switch args[0] {
	case "status":
		return status(ctx, p, out)
	case "rebuild":
		if len(args) != 2 {
			return fmt.Errorf("usage: rebuild <projection> (one of %s)", strings.Join(p.Names(), ", "))
		}
		gen, err := p.Rebuild(ctx, args[1], actor, func(line string) { fmt.Fprintln(out, line) })
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s rebuilt: generation %d\n", args[1], gen)
		return nil
	case "skip":
		return skip(ctx, p, args[1:], actor, out)
	}
	return fmt.Errorf("unknown command %q: %s", args[0], Usage)
}

func skip(ctx context.Context, p *app.Projections, args []string, actor string, out io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return errors.New("usage: skip <projection> --seq N --reason TEXT")
	}
	fs := flag.NewFlagSet("skip", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	seq := fs.Uint64("seq", 0, "the stream sequence the projection stopped on")
	reason := fs.String("reason", "", "why the event may be skipped")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("skip: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *seq == 0 || *reason == "" {
		return errors.New("skip needs --seq N and --reason TEXT")
	}
	if err := p.Skip(ctx, args[0], *seq, *reason, actor); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s will skip seq %d (recorded in the log)\n", args[0], *seq)
	return nil
}

func status(ctx context.Context, p *app.Projections, out io.Writer) error {
	ss, err := p.Status(ctx)
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
