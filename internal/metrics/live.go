package metrics

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// ConsumerListTTL is how long a consumer group's listed totals are reused.
const ConsumerListTTL = 10 * time.Second

// ScrapeTimeout bounds the scrape-time reads together: a log or database
// that does not answer costs a scrape at most this long, and its series are
// left out of it.
const ScrapeTimeout = 2 * time.Second

// liveCollector reads the registered sources at scrape time.
type liveCollector struct {
	timeout time.Duration

	mu   sync.Mutex
	next int
	// sources holds, per key, the registrations in the order they were
	// made; the newest one is read. Two services of one process watching the
	// same thing (`tenancy dev`, tests) thus never report a series twice.
	sources map[string][]registration
}

type registration struct {
	id   int
	kind string
	read func(ctx context.Context, emit func(prometheus.Metric)) error
}

var live = &liveCollector{timeout: ScrapeTimeout, sources: map[string][]registration{}}

// watch registers read under key until the returned stop is called.
func (c *liveCollector) watch(key, kind string, read func(context.Context, func(prometheus.Metric)) error) (stop func()) {
	c.mu.Lock()
	c.next++
	id := c.next
	c.sources[key] = append(c.sources[key], registration{id: id, kind: kind, read: read})
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			regs := c.sources[key]
			for i, r := range regs {
				if r.id == id {
					regs = append(regs[:i:i], regs[i+1:]...)
					break
				}
			}
			if len(regs) == 0 {
				delete(c.sources, key)
			} else {
				c.sources[key] = regs
			}
		})
	}
}

// Describe implements prometheus.Collector.
func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{projectionLagEvents, projectionLagSeconds, webhookDeadLetters, consumerPending, consumerAckPending, consumerCount} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it reads every source at once,
// within the timeout, and waits for all of them (each honours the
// context, so none outlives the scrape).
func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	regs := make([]registration, 0, len(c.sources))
	for _, rs := range c.sources {
		regs = append(regs, rs[len(rs)-1])
	}
	c.mu.Unlock()
	if len(regs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, r := range regs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Buffered so that a source failing half-way reports nothing
			// rather than part of its series.
			var buf []prometheus.Metric
			err := r.read(ctx, func(m prometheus.Metric) { buf = append(buf, m) })
			if err != nil || ctx.Err() != nil {
				ScrapeErrors.WithLabelValues(r.kind).Inc()
				return
			}
			for _, m := range buf {
				ch <- m
			}
		}()
	}
	wg.Wait()
}

// Consumers selects durable consumers of one stream reported together as
// one group, which keeps the series few however many consumers there are
// (the webhooker has one per endpoint).
type Consumers struct {
	Stream string
	// Group is the series' consumer label ("provisioner", "webhook").
	Group string
	// Name selects one consumer; otherwise Prefix selects every consumer
	// whose name starts with it.
	Name, Prefix string
}

// WatchConsumers reports the group's backlog at scrape time, until stop is
// called: messages not yet delivered (num_pending) and delivered but not
// acknowledged (num_ack_pending), summed over the group, and how many
// consumers it has.
func WatchConsumers(js jetstream.JetStream, c Consumers) (stop func()) {
	// Listing a group means reading every consumer of the stream (one per
	// webhook): do it at most once per ConsumerListTTL, however often and
	// however many scrapers scrape, and report the last totals meanwhile.
	var (
		listMu   sync.Mutex
		listedAt time.Time
		listed   [3]uint64
	)
	return live.watch("consumers/"+c.Stream+"/"+c.Group, "jetstream_consumers", func(ctx context.Context, emit func(prometheus.Metric)) error {
		var pending, ackPending, n uint64
		fresh := true
		if c.Name == "" {
			listMu.Lock()
			defer listMu.Unlock()
			if !listedAt.IsZero() && time.Since(listedAt) < ConsumerListTTL {
				pending, ackPending, n, fresh = listed[0], listed[1], listed[2], false
			}
		}
		add := func(info *jetstream.ConsumerInfo) {
			pending += info.NumPending
			ackPending += uint64(max(info.NumAckPending, 0))
			n++
		}
		switch {
		case !fresh:
		case c.Name != "":
			cons, err := js.Consumer(ctx, c.Stream, c.Name)
			switch {
			case err == nil:
				add(cons.CachedInfo())
			case !errors.Is(err, jetstream.ErrConsumerNotFound):
				// A consumer not created yet has no backlog; anything
				// else is a failed read.
				return err
			}
		default:
			st, err := js.Stream(ctx, c.Stream)
			if err != nil {
				return err
			}
			l := st.ListConsumers(ctx)
			for info := range l.Info() {
				if strings.HasPrefix(info.Name, c.Prefix) {
					add(info)
				}
			}
			if err := l.Err(); err != nil {
				return err
			}
			listedAt, listed = time.Now(), [3]uint64{pending, ackPending, n}
		}
		emit(prometheus.MustNewConstMetric(consumerPending, prometheus.GaugeValue, float64(pending), c.Stream, c.Group))
		emit(prometheus.MustNewConstMetric(consumerAckPending, prometheus.GaugeValue, float64(ackPending), c.Stream, c.Group))
		emit(prometheus.MustNewConstMetric(consumerCount, prometheus.GaugeValue, float64(n), c.Stream, c.Group))
		return nil
	})
}

// WatchDeadLetters reports the number of messages in the dead-letter stream
// at scrape time, until stop is called.
func WatchDeadLetters(js jetstream.JetStream, stream string) (stop func()) {
	return live.watch("dead_letters/"+stream, "dead_letters", func(ctx context.Context, emit func(prometheus.Metric)) error {
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		emit(prometheus.MustNewConstMetric(webhookDeadLetters, prometheus.GaugeValue, float64(st.CachedInfo().State.Msgs), stream))
		return nil
	})
}

// ProjectionLag is how far one projection is behind the log.
type ProjectionLag struct {
	Name string
	// Events is how many events it has not applied yet.
	Events uint64
	// Seconds is the age of the oldest of them (0 when caught up).
	Seconds float64
}

// WatchProjections reports the lag read returns at scrape time, until stop
// is called.
func WatchProjections(read func(context.Context) ([]ProjectionLag, error)) (stop func()) {
	return live.watch("projections", "projections", func(ctx context.Context, emit func(prometheus.Metric)) error {
		lags, err := read(ctx)
		if err != nil {
			return err
		}
		for _, l := range lags {
			emit(prometheus.MustNewConstMetric(projectionLagEvents, prometheus.GaugeValue, float64(l.Events), l.Name))
			emit(prometheus.MustNewConstMetric(projectionLagSeconds, prometheus.GaugeValue, l.Seconds, l.Name))
		}
		return nil
	})
}
