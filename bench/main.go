// Command bench measures Tenancy against same-run baselines on this machine
// and prints a table. Every figure is paired with a baseline measured in the
// same run, because the machine is shared and noisy: compare the ratios.
//
//	go run ./bench [-duration 5s] [-clients 64] [-only api,load]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"
)

// row is one line of the results table.
type row struct {
	name     string
	value    string
	baseline string
	ratio    string
	target   string
	verdict  string
}

type suite struct {
	name string
	run  func(ctx context.Context, o opts) ([]row, error)
}

type opts struct {
	duration time.Duration
	clients  int
	tenants  int
	keepDB   bool
	dir      string
	log      io.Writer
}

var suites = []suite{
	{"api", benchAPI},
	{"load", benchLoad},
	{"read", benchReadSide},
	{"saga", benchSaga},
	{"webhook", benchWebhook},
	{"cluster", benchCluster},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	duration := fs.Duration("duration", 5*time.Second, "how long each throughput measurement runs")
	clients := fs.Int("clients", 64, "concurrent clients / goroutines")
	tenants := fs.Int("tenants", 1_000_000, "tenant events to replay and tenants to search over (read suite)")
	keepDB := fs.Bool("keepdb", false, "keep the read suite's database for inspection")
	only := fs.String("only", "", "comma-separated suites to run (default all): "+suiteNames())
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	memprofile := fs.String("memprofile", "", "write an allocation profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *memprofile != "" {
		runtime.MemProfileRate = 64 << 10
		defer func() {
			if f, err := os.Create(*memprofile); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	dir, err := os.MkdirTemp("", "tenancy-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	o := opts{duration: *duration, clients: *clients, tenants: *tenants, keepDB: *keepDB, dir: dir, log: stderr}
	var rows []row
	for _, s := range suites {
		if *only != "" && !strings.Contains(","+*only+",", ","+s.name+",") {
			continue
		}
		fmt.Fprintf(stderr, "running %s ...\n", s.name)
		r, err := s.run(ctx, o)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		rows = append(rows, r...)
	}
	fmt.Fprintf(stdout, "\nTenancy benchmarks (%d clients, %s per measurement, GOMAXPROCS=%d)\n\n", *clients, *duration, gomaxprocs())
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "measurement\tvalue\tbaseline (same run)\tratio\ttarget\tmet")
	fmt.Fprintln(tw, "-----------\t-----\t-------------------\t-----\t------\t---")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.name, r.value, r.baseline, r.ratio, r.target, r.verdict)
	}
	return tw.Flush()
}

func suiteNames() string {
	var names []string
	for _, s := range suites {
		names = append(names, s.name)
	}
	return strings.Join(names, ",")
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}
