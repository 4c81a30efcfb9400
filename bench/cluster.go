package main

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/catalog"
	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/natsembed"
	"github.com/tenancyhq/tenancy/internal/run/boot"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// benchCluster measures commands with the stream replicated three ways on
// a three-node cluster on loopback against the same commands on one node
// with one replica, in the same run. Commands go through the core (decide,
// sign, append) so the figure is the log's cost, not HTTP's.
func benchCluster(ctx context.Context, o opts) ([]row, error) {
	r1, err := clusterWorkload(ctx, o, 1)
	if err != nil {
		return nil, fmt.Errorf("R1: %w", err)
	}
	r3, err := clusterWorkload(ctx, o, 3)
	if err != nil {
		return nil, fmt.Errorf("R3: %w", err)
	}
	var rows []row
	for i, name := range []string{"create tenant", "update tenant"} {
		base, got := r1[i], r3[i]
		rows = append(rows,
			row{name: "cluster: " + name + ", R1 on one node (baseline)", value: fmt.Sprintf("%.0f cmd/s, p99 %s, errors %d", base.rate(), ms(base.pct(0.99)), base.errors),
				baseline: "-", ratio: "1.00", target: "-", verdict: "-"},
			row{name: "cluster: " + name + ", R3 on 3 nodes", value: fmt.Sprintf("%.0f cmd/s, p99 %s, errors %d", got.rate(), ms(got.pct(0.99)), got.errors),
				baseline: fmt.Sprintf("%.0f cmd/s", base.rate()), ratio: fmt.Sprintf("%.2f", got.rate()/base.rate()),
				// Three servers share this machine's cores, and every append
				// waits for a quorum: the ratio is reported, not targeted.
				target: "info", verdict: yes(got.errors == 0)},
		)
	}
	return rows, nil
}

// clusterWorkload runs creates, then updates, against a fresh log with the
// given replica count (1: one node; 3: a three-node cluster).
func clusterWorkload(ctx context.Context, o opts, replicas int) ([]result, error) {
	name := fmt.Sprintf("cluster-r%d", replicas)
	nodes, err := startNodes(filepath.Join(o.dir, name), replicas)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, s := range nodes {
			s.Shutdown()
			s.WaitForShutdown()
		}
	}()
	urls := make([]string, len(nodes))
	for i, s := range nodes {
		urls[i] = s.ClientURL()
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	_, signKey, _ := ed25519.GenerateKey(crand.Reader)
	master := make([]byte, 32)
	_, _ = crand.Read(master)
	cat, _ := catalog.Load("")
	var core *boot.Core
	// A fresh cluster needs a moment to elect its meta leader.
	for deadline := time.Now().Add(60 * time.Second); ; {
		core, err = boot.OpenCore(ctx, nc, js, boot.CoreOptions{Stream: "TENANCY", Replicas: replicas, SigningKey: signKey, MasterKey: master, Catalog: cat, Log: logging.Discard()})
		if err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, err
		}
		time.Sleep(500 * time.Millisecond)
	}
	meta := command.Meta{Actor: "bench"}
	create := func(slug string) (string, error) {
		res, err := core.Tenants.Create(ctx, domain.CreateTenant{Slug: slug, DisplayName: "Bench " + slug, Plan: "standard", Isolation: "shared",
			Regions:  domain.Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"},
			Contacts: []events.Contact{{Role: "billing", Name: "A. Person", Email: "billing@" + slug + ".test"}}}, meta)
		return res.State.ID, err
	}
	creates := closedLoop(ctx, o.clients, o.duration, func(w, i int) error {
		_, err := create(fmt.Sprintf("c%d-%d", w, i))
		return err
	})
	ids := make([]string, o.clients)
	for w := range ids {
		if ids[w], err = create(fmt.Sprintf("upd-%d", w)); err != nil {
			return nil, err
		}
	}
	updates := closedLoop(ctx, o.clients, o.duration, func(w, i int) error {
		v := strconv.Itoa(i)
		_, err := core.Tenants.Do(ctx, ids[w], domain.UpdateTenant{Labels: &domain.MapPatch{Values: map[string]*string{"n": &v}}}, meta)
		return err
	})
	return []result{creates, updates}, nil
}

// startNodes starts n embedded JetStream servers, clustered when n > 1,
// and waits until they have a meta leader.
func startNodes(dir string, n int) ([]*server.Server, error) {
	if n == 1 {
		s, err := natsembed.Start(natsembed.Options{StoreDir: dir})
		if err != nil {
			return nil, err
		}
		return []*server.Server{s}, nil
	}
	ports := make([]string, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ports[i] = l.Addr().String()
		_ = l.Close()
	}
	routes := make([]string, n)
	for i, p := range ports {
		routes[i] = "nats-route://" + p
	}
	var nodes []*server.Server
	stopAll := func() {
		for _, s := range nodes {
			s.Shutdown()
		}
	}
	// Servers wait for their routes; start them side by side.
	type started struct {
		s   *server.Server
		err error
	}
	ch := make(chan started, n)
	for i := range n {
		go func() {
			s, err := natsembed.Start(natsembed.Options{StoreDir: filepath.Join(dir, strconv.Itoa(i)), Name: fmt.Sprintf("bench-%d", i+1),
				ClusterName: "bench", ClusterListen: ports[i], Routes: []string{strings.Join(routes, ",")}})
			ch <- started{s, err}
		}()
	}
	var errs []error
	for range n {
		st := <-ch
		if st.err != nil {
			errs = append(errs, st.err)
			continue
		}
		nodes = append(nodes, st.s)
	}
	if len(errs) > 0 {
		stopAll()
		return nil, errors.Join(errs...)
	}
	for deadline := time.Now().Add(60 * time.Second); ; {
		for _, s := range nodes {
			if s.JetStreamIsLeader() {
				return nodes, nil
			}
		}
		if time.Now().After(deadline) {
			stopAll()
			return nil, errors.New("the cluster elected no JetStream meta leader within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
