package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tenancyhq/tenancy/internal/testenv"
)

// gauges returns the values of the named family, keyed by their labels
// ("consumer=webhook,stream=S").
func gauges(t *testing.T, name string) map[string]float64 {
	t.Helper()
	mfs, err := Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			out[strings.Join(labels, ",")] = m.GetGauge().GetValue()
		}
	}
	return out
}

func scrape(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("scrape: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return string(body)
}

func TestHandlerServesTheSeries(t *testing.T) {
	before := testutil.ToFloat64(Commands.WithLabelValues("TestCommand", "ok"))
	Commands.WithLabelValues("TestCommand", "ok").Inc()
	CommandDuration.WithLabelValues("TestCommand").Observe(0.003)
	body := scrape(t)
	for _, want := range []string{
		fmt.Sprintf(`tenancy_commands_total{command="TestCommand",outcome="ok"} %v`, before+1),
		`tenancy_command_duration_seconds_bucket{command="TestCommand",le="0.005"}`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}

func TestAttemptLabel(t *testing.T) {
	for n, want := range map[int]string{0: "1", 1: "1", 2: "2", 4: "4", 5: "5+", 70: "5+"} {
		if got := AttemptLabel(n); got != want {
			t.Errorf("AttemptLabel(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestConsumersAndDeadLetters reads real consumers' backlogs at scrape time.
func TestConsumersAndDeadLetters(t *testing.T) {
	n := testenv.StartNATS(t)
	ctx := testenv.Context(t, time.Minute)
	if _, err := n.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "WORK", Subjects: []string{"work.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "DLQ", Subjects: []string{"dlq.>"}}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		subj := "work.a"
		if i%2 == 1 {
			subj = "work.b"
		}
		if _, err := n.JS.Publish(ctx, subj, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := n.JS.Publish(ctx, "dlq.x", []byte("dead")); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ name, filter string }{{"hook-a", "work.a"}, {"hook-b", "work.b"}, {"other", "work.>"}} {
		if _, err := n.JS.CreateConsumer(ctx, "WORK", jetstream.ConsumerConfig{Durable: c.name, FilterSubject: c.filter, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
			t.Fatal(err)
		}
	}
	// One message of hook-a delivered and not acknowledged.
	cons, _ := n.JS.Consumer(ctx, "WORK", "hook-a")
	batch, err := cons.Fetch(1)
	if err != nil {
		t.Fatal(err)
	}
	for range batch.Messages() {
	}

	for _, tc := range []struct {
		name                       string
		sel                        Consumers
		pending, ackPending, count float64
	}{
		{"prefix sums the group", Consumers{Stream: "WORK", Group: "hooks", Prefix: "hook-"}, 4, 1, 2},
		{"one by name", Consumers{Stream: "WORK", Group: "other", Name: "other"}, 5, 0, 1},
		{"missing consumer is empty", Consumers{Stream: "WORK", Group: "later", Name: "later"}, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stop := WatchConsumers(n.JS, tc.sel)
			defer stop()
			key := "consumer=" + tc.sel.Group + ",stream=WORK"
			for name, want := range map[string]float64{
				"tenancy_jetstream_consumer_pending_messages":     tc.pending,
				"tenancy_jetstream_consumer_ack_pending_messages": tc.ackPending,
				"tenancy_jetstream_consumers":                     tc.count,
			} {
				got, ok := gauges(t, name)[key]
				if !ok || got != want {
					t.Errorf("%s{%s} = %v (present %v), want %v", name, key, got, ok, want)
				}
			}
		})
	}
	if got := gauges(t, "tenancy_jetstream_consumer_pending_messages"); len(got) != 0 {
		t.Fatalf("series left after stop: %v", got)
	}

	stop := WatchDeadLetters(n.JS, "DLQ")
	if got := gauges(t, "tenancy_webhook_dead_letters")["stream=DLQ"]; got != 2 {
		t.Fatalf("dead letters %v, want 2", got)
	}
	stop()
	if got := gauges(t, "tenancy_webhook_dead_letters"); len(got) != 0 {
		t.Fatalf("dead letters still reported after stop: %v", got)
	}
}

// TestWatchTwiceReportsOnce: two services of one process watching the same
// thing (tenancy dev) must not report a series twice, which would fail the
// scrape; the newest watch is read, and the older takes over when it stops.
func TestWatchTwiceReportsOnce(t *testing.T) {
	lag := func(events uint64) func(context.Context) ([]ProjectionLag, error) {
		return func(context.Context) ([]ProjectionLag, error) {
			return []ProjectionLag{{Name: "tenants", Events: events, Seconds: 1.5}}, nil
		}
	}
	stopOld := WatchProjections(lag(7))
	stopNew := WatchProjections(lag(9))
	if got := gauges(t, "tenancy_projection_lag_events"); len(got) != 1 || got["projection=tenants"] != 9 {
		t.Fatalf("with two watches: %v", got)
	}
	stopNew()
	stopNew() // idempotent: must not remove the other watch
	if got := gauges(t, "tenancy_projection_lag_events"); got["projection=tenants"] != 7 {
		t.Fatalf("after the newest stopped: %v", got)
	}
	if got := gauges(t, "tenancy_projection_lag_seconds"); got["projection=tenants"] != 1.5 {
		t.Fatalf("lag seconds: %v", got)
	}
	stopOld()
	if got := gauges(t, "tenancy_projection_lag_events"); len(got) != 0 {
		t.Fatalf("after both stopped: %v", got)
	}
}

// TestSlowSourceIsCutOff: a source that does not answer costs the scrape
// the timeout, is counted as an error, and reports nothing.
func TestSlowSourceIsCutOff(t *testing.T) {
	old := live.timeout
	live.timeout = 100 * time.Millisecond
	defer func() { live.timeout = old }()
	stop := WatchProjections(func(ctx context.Context) ([]ProjectionLag, error) {
		<-ctx.Done()
		return []ProjectionLag{{Name: "tenants", Events: 1}}, nil
	})
	defer stop()
	errs := testutil.ToFloat64(ScrapeErrors.WithLabelValues("projections"))
	start := time.Now()
	got := gauges(t, "tenancy_projection_lag_events")
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("scrape took %s", took)
	}
	if len(got) != 0 {
		t.Fatalf("a timed-out source reported %v", got)
	}
	if after := testutil.ToFloat64(ScrapeErrors.WithLabelValues("projections")); after != errs+1 {
		t.Fatalf("scrape errors %v -> %v", errs, after)
	}
}

// TestConsumerGroupListedOncePerTTL: a group's consumers are listed at
// most once per ConsumerListTTL, whatever the scrape rate; a consumer named
// alone is read at every scrape.
func TestConsumerGroupListedOncePerTTL(t *testing.T) {
	n := testenv.StartNATS(t)
	ctx := testenv.Context(t, time.Minute)
	if _, err := n.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "TTL", Subjects: []string{"ttl.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.JS.CreateConsumer(ctx, "TTL", jetstream.ConsumerConfig{Durable: "hook-1", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	publish := func() {
		t.Helper()
		if _, err := n.JS.Publish(ctx, "ttl.x", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	stopGroup := WatchConsumers(n.JS, Consumers{Stream: "TTL", Group: "ttl-hooks", Prefix: "hook-"})
	defer stopGroup()
	stopOne := WatchConsumers(n.JS, Consumers{Stream: "TTL", Group: "ttl-one", Name: "hook-1"})
	defer stopOne()
	publish()
	pending := func(group string) float64 {
		return gauges(t, "tenancy_jetstream_consumer_pending_messages")["consumer="+group+",stream=TTL"]
	}
	if g, o := pending("ttl-hooks"), pending("ttl-one"); g != 1 || o != 1 {
		t.Fatalf("first scrape: group %v, one %v; want 1 and 1", g, o)
	}
	publish()
	if g, o := pending("ttl-hooks"), pending("ttl-one"); g != 1 || o != 2 {
		t.Fatalf("second scrape within the TTL: group %v (want the listed 1), one %v (want 2)", g, o)
	}
}
