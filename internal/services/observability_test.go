package services_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/catalog"
	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/projection"
	"github.com/tenancyhq/tenancy/internal/services"
	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// TestWorkerMetrics: the workers' health handler serves /metrics, and the
// projection lag read at scrape time follows the projector: zero when it
// has caught up, the events written since when it is stopped.
func TestWorkerMetrics(t *testing.T) {
	n := testenv.StartNATS(t)
	ctx := testenv.Context(t, 2*time.Minute)
	_, signKey, _ := ed25519.GenerateKey(rand.Reader)
	master := make([]byte, 32)
	_, _ = rand.Read(master)
	cat, _ := catalog.Load("")
	core, err := services.OpenCore(ctx, n.Conn, n.JS, services.CoreOptions{Stream: "TENANCY", Replicas: 1, SigningKey: signKey, MasterKey: master, Catalog: cat, Log: logging.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := services.OpenReadSide(ctx, testenv.NewDatabase(t), false, true)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	stopLag := services.WatchProjectionLag(core, rs)
	defer stopLag()
	srv := httptest.NewServer(services.HealthHandler())
	defer srv.Close()
	scrape := func() string {
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/metrics: %d %s", resp.StatusCode, body)
		}
		return string(body)
	}
	create := func(slug string) {
		t.Helper()
		if _, err := core.Tenants.Create(ctx, domain.CreateTenant{Slug: slug, DisplayName: slug, Plan: "standard", Isolation: "shared",
			Regions: domain.Regions{Allowed: []string{"eu-west-1"}, Preferred: "eu-west-1"}}, command.Meta{Actor: "t"}); err != nil {
			t.Fatal(err)
		}
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runners := services.Projections(core, rs, nil)
	done := make(chan struct{}, len(runners))
	for _, p := range runners {
		go func() { defer func() { done <- struct{}{} }(); _ = p.Run(runCtx) }()
	}
	create("lag-1")
	for _, tc := range []struct {
		name   string
		before func()
		want   []string
	}{
		// Both, so that the backlog below is exactly the two creations.
		{"caught up", func() {}, []string{`tenancy_projection_lag_events{projection="tenants"} 0`, `tenancy_projection_lag_events{projection="audit_log"} 0`}},
		{"stopped with a backlog", func() {
			stop()
			for range runners {
				<-done
			}
			create("lag-2")
			create("lag-3")
		}, []string{`tenancy_projection_lag_events{projection="tenants"} 2`, `tenancy_projection_lag_events{projection="audit_log"} 2`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.before()
			deadline := time.Now().Add(20 * time.Second)
			for {
				body := scrape()
				if containsAll(body, tc.want) {
					if !strings.Contains(body, `tenancy_projection_lag_seconds{projection="audit_log"}`) {
						t.Fatal("no lag seconds for audit_log")
					}
					return
				}
				if time.Now().After(deadline) {
					var lines []string
					for _, l := range strings.Split(body, "\n") {
						if strings.HasPrefix(l, "tenancy_projection_") {
							lines = append(lines, l)
						}
					}
					t.Fatalf("want %s, have:\n%s", strings.Join(tc.want, "; "), strings.Join(lines, "\n"))
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	lags, err := projection.Lags(ctx, rs.Pool, core.Store, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lags {
		if l.Events != 2 || l.Seconds <= 0 {
			t.Errorf("lag %s", fmt.Sprint(l))
		}
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
