package delivery

import (
	"slices"
	"testing"

	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

func TestLiveFiltersAddOwnSubjectOnlyWhenNotCovered(t *testing.T) {
	own := "tenancy.evt." + events.PlatformTenantID + ".webhook.w1"
	tests := []struct {
		name string
		hook domain.Webhook
		want []string
	}{
		{"tenant events", domain.Webhook{ID: "w1", EventTypes: []string{"tenancy.tenant.*"}},
			[]string{"tenancy.evt.*.tenant.>", own}},
		{"tenant scoped", domain.Webhook{ID: "w1", TenantID: "t1", EventTypes: []string{"tenancy.tenant.*"}},
			[]string{"tenancy.evt.t1.tenant.>", own}},
		{"webhook events cover its own", domain.Webhook{ID: "w1", EventTypes: []string{"tenancy.webhook.*"}},
			[]string{"tenancy.evt.*.webhook.>"}},
		{"everything covers its own", domain.Webhook{ID: "w1", EventTypes: []string{"*"}},
			[]string{"tenancy.evt.*.>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := liveFilters(tt.hook); !slices.Equal(got, tt.want) {
				t.Fatalf("liveFilters = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSubjectMatches(t *testing.T) {
	tests := []struct {
		filter, subject string
		want            bool
	}{
		{"a.b.c", "a.b.c", true},
		{"a.*.c", "a.b.c", true},
		{"a.>", "a.b.c", true},
		{"a.>", "a", false},
		{"a.*", "a.b.c", false},
		{"a.b.c.d", "a.b.c", false},
		{"a.x.c", "a.b.c", false},
	}
	for _, tt := range tests {
		if got := subjectMatches(tt.filter, tt.subject); got != tt.want {
			t.Errorf("subjectMatches(%q, %q) = %v, want %v", tt.filter, tt.subject, got, tt.want)
		}
	}
}
