package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/natsembed"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// benchLoad compares the two ways to read one aggregate's events from a
// stream holding many aggregates: a batched direct get by subject (what the
// store does) and an ordered consumer filtered on the subject.
func benchLoad(ctx context.Context, o opts) ([]row, error) {
	ns, err := natsembed.Start(natsembed.Options{StoreDir: filepath.Join(o.dir, "nats-load")})
	if err != nil {
		return nil, err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if _, err := eventstore.EnsureStream(ctx, js, eventstore.StreamConfig{}); err != nil {
		return nil, err
	}
	// 2,000 aggregates of 20 events each, interleaved as real traffic is.
	const aggregates, perAgg = 2000, 20
	payload := make([]byte, 700)
	for v := range perAgg {
		futures := make([]jetstream.PubAckFuture, 0, aggregates)
		for a := range aggregates {
			f, err := js.PublishAsync(events.Subject("t", "tenant", fmt.Sprintf("a%d", a)), payload)
			if err != nil {
				return nil, err
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return nil, fmt.Errorf("preload version %d: %w", v, err)
			}
		}
	}
	store := eventstore.New(js, "")
	stream, err := js.Stream(ctx, eventstore.DefaultStream)
	if err != nil {
		return nil, err
	}
	subject := func(i int) string { return events.Subject("t", "tenant", fmt.Sprintf("a%d", i%aggregates)) }

	direct := closedLoop(ctx, 1, o.duration, func(_, i int) error {
		msgs, err := store.ReadAll(ctx, subject(i), 1)
		if err == nil && len(msgs) != perAgg {
			err = fmt.Errorf("direct get read %d events", len(msgs))
		}
		return err
	})
	ordered := closedLoop(ctx, 1, o.duration, func(_, i int) error {
		n, err := readOrdered(ctx, stream, subject(i))
		if err == nil && n != perAgg {
			err = fmt.Errorf("ordered consumer read %d events", n)
		}
		return err
	})
	if direct.errors > 0 || ordered.errors > 0 {
		return nil, fmt.Errorf("load errors: direct %d, ordered %d", direct.errors, ordered.errors)
	}
	ratio := direct.rate() / ordered.rate()
	return []row{
		{name: "load aggregate: ordered consumer (baseline)", value: fmt.Sprintf("%.0f loads/s, p50 %s", ordered.rate(), ms(ordered.pct(0.5))), baseline: "-", ratio: "1.00", target: "-", verdict: "-"},
		{name: fmt.Sprintf("load aggregate: batched direct get (%d events of %d)", perAgg, aggregates*perAgg),
			value: fmt.Sprintf("%.0f loads/s, p50 %s", direct.rate(), ms(direct.pct(0.5))), baseline: fmt.Sprintf("%.0f loads/s", ordered.rate()),
			ratio: fmt.Sprintf("%.1f", ratio), target: "~10x", verdict: yes(ratio >= 5)},
	}, nil
}

// readOrdered reads a subject's events through an ordered consumer, as a
// loader without direct get would.
func readOrdered(ctx context.Context, s jetstream.Stream, subject string) (int, error) {
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		batch, err := c.FetchNoWait(256)
		if err != nil {
			return n, err
		}
		got := 0
		var last jetstream.Msg
		for m := range batch.Messages() {
			got++
			last = m
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return n, err
		}
		n += got
		if last == nil {
			return n, nil
		}
		md, err := last.Metadata()
		if err != nil {
			return n, err
		}
		if md.NumPending == 0 {
			return n, nil
		}
	}
}
