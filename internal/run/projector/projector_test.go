package projector_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/command"
	"github.com/tenancyhq/tenancy/internal/health"
	"github.com/tenancyhq/tenancy/internal/projection"
	"github.com/tenancyhq/tenancy/internal/run/boot"
	"github.com/tenancyhq/tenancy/internal/testrig"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// TestWorkerMetrics: the workers' health handler serves /metrics, and the
// projection lag read at scrape time follows the projector: zero when it
// has caught up, the events written since when it is stopped.
func TestWorkerMetrics(t *testing.T) {
	r := testrig.New(t, testrig.Options{Database: true, Timeout: 2 * time.Minute})
	core, rs, ctx := r.Core, r.ReadSide, r.Ctx
	p := boot.Projections(core, rs)
	stopLag := p.WatchLag()
	defer stopLag()
	srv := httptest.NewServer(health.Handler())
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
	runners := p.Runners(nil)
	done := make(chan struct{}, len(runners))
	for _, p := range runners {
		go func() { defer func() { done <- struct{}{} }(); _ = p.Run(runCtx) }()
	}
	create("lag-1")
	// Every projection, so that each one's backlog below is exactly the two
	// creations: waiting on some lets a slower one stop mid-way.
	var caughtUp, backlog []string
	for _, r := range runners {
		caughtUp = append(caughtUp, fmt.Sprintf(`tenancy_projection_lag_events{projection=%q} 0`, r.Name()))
		backlog = append(backlog, fmt.Sprintf(`tenancy_projection_lag_events{projection=%q} 2`, r.Name()))
	}
	for _, tc := range []struct {
		name   string
		before func()
		want   []string
	}{
		{"caught up", func() {}, caughtUp},
		{"stopped with a backlog", func() {
			stop()
			for range runners {
				<-done
			}
			create("lag-2")
			create("lag-3")
		}, backlog},
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
