package domain

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tenancyhq/tenancy/pkg/events"
)

func webhookCreated() *events.WebhookCreated {
	return &events.WebhookCreated{URL: "https://crm.example.com/hooks", EventTypes: []string{"tenancy.tenant.*"}, Enabled: true, SecretVersion: 1}
}

func foldWebhook(given []events.Payload) Webhook {
	var w Webhook
	for i, p := range given {
		w = EvolveWebhook(w, Recorded{AggregateID: "w1", Time: t0.Add(time.Duration(i) * time.Minute), Version: int64(i + 1), Payload: p})
	}
	return w
}

func TestDecideWebhook(t *testing.T) {
	live := []events.Payload{webhookCreated()}
	disabled := []events.Payload{webhookCreated(), &events.WebhookDisabled{Reason: "410 Gone"}}
	deleted := []events.Payload{webhookCreated(), &events.WebhookDeleted{}}
	cases := []struct {
		name  string
		given []events.Payload
		when  WebhookCommand
		then  []events.Payload
		err   error
		msg   string
	}{
		{name: "create", when: CreateWebhook{ID: "w1", URL: "https://crm.example.com/hooks", EventTypes: []string{"tenancy.tenant.*"}},
			then: []events.Payload{webhookCreated()}},
		{name: "create disabled", when: CreateWebhook{ID: "w1", URL: "https://crm.example.com/hooks", EventTypes: []string{"tenancy.tenant.suspended.v1"}, Enabled: ptr(false)},
			then: []events.Payload{&events.WebhookCreated{URL: "https://crm.example.com/hooks", EventTypes: []string{"tenancy.tenant.suspended.v1"}, SecretVersion: 1}}},
		{name: "create twice", given: live, when: CreateWebhook{ID: "w1", URL: "https://x.example.com", EventTypes: []string{"tenancy.*"}}, err: ErrConflict},
		{name: "create without types", when: CreateWebhook{ID: "w1", URL: "https://x.example.com"}, err: ErrInvalid, msg: "event_types"},
		{name: "create with unknown type", when: CreateWebhook{ID: "w1", URL: "https://x.example.com", EventTypes: []string{"tenancy.tenant.exploded.v1"}}, err: ErrInvalid, msg: "unknown event type"},
		{name: "create with prefix matching nothing", when: CreateWebhook{ID: "w1", URL: "https://x.example.com", EventTypes: []string{"billing.*"}}, err: ErrInvalid, msg: "matches no event type"},
		{name: "create with star in the middle", when: CreateWebhook{ID: "w1", URL: "https://x.example.com", EventTypes: []string{"tenancy.*.created.*"}}, err: ErrInvalid, msg: "matches no event type"},
		{name: "create without url", when: CreateWebhook{ID: "w1", EventTypes: []string{"tenancy.*"}}, err: ErrInvalid, msg: "url"},
		{name: "update on missing", when: UpdateWebhook{Description: ptr("x")}, err: ErrNotFound},
		{name: "update on deleted", given: deleted, when: UpdateWebhook{Description: ptr("x")}, err: ErrNotFound},
		{name: "update url and description", given: live, when: UpdateWebhook{URL: ptr("https://crm.example.com/v2"), Description: ptr("CRM")},
			then: []events.Payload{&events.WebhookUpdated{Changed: []string{"url", "description"}, URL: "https://crm.example.com/v2", Description: "CRM"}}},
		{name: "update with same values changes nothing", given: live, when: UpdateWebhook{URL: ptr("https://crm.example.com/hooks"), EventTypes: &[]string{"tenancy.tenant.*"}, Enabled: ptr(true)}},
		{name: "enable a disabled endpoint", given: disabled, when: UpdateWebhook{Enabled: ptr(true)},
			then: []events.Payload{&events.WebhookUpdated{Changed: []string{"enabled"}, Enabled: ptr(true)}}},
		{name: "rotate with default grace", given: live, when: RotateSecret{Now: t0},
			then: []events.Payload{&events.WebhookSecretRotated{SecretVersion: 2, PreviousValidUntil: t0.Add(24 * time.Hour)}}},
		{name: "rotate with too long a grace", given: live, when: RotateSecret{Now: t0, Grace: 365 * 24 * time.Hour}, err: ErrInvalid, msg: "grace"},
		{name: "rotate with too short a grace", given: live, when: RotateSecret{Now: t0, Grace: 30 * time.Second}, err: ErrInvalid, msg: "between 1m0s and 720h0m0s"},
		{name: "disable", given: live, when: DisableWebhook{Reason: "410 Gone"}, then: []events.Payload{&events.WebhookDisabled{Reason: "410 Gone"}}},
		{name: "disable when disabled changes nothing", given: disabled, when: DisableWebhook{Reason: "again"}},
		{name: "delete", given: live, when: DeleteWebhook{}, then: []events.Payload{&events.WebhookDeleted{}}},
		{name: "delete twice", given: deleted, when: DeleteWebhook{}, err: ErrNotFound},
		{name: "requeue", given: live, when: RequeueDeadLetters{DeadLetters: []uint64{3, 4}}, then: []events.Payload{&events.WebhookDeadLettersRequeued{DeadLetters: []uint64{3, 4}}}},
		{name: "requeue nothing", given: live, when: RequeueDeadLetters{}},
		{name: "discard needs a reason", given: live, when: DiscardDeadLetter{DeadLetter: 3, EventID: "e"}, err: ErrInvalid, msg: "reason"},
		{name: "discard", given: live, when: DiscardDeadLetter{DeadLetter: 3, EventID: "e", Reason: "duplicate"},
			then: []events.Payload{&events.WebhookDeadLetterDiscarded{DeadLetter: 3, EventID: "e", Reason: "duplicate"}}},
		{name: "replay by sequence", given: live, when: RequestReplay{FromSeq: 1, ToSeq: 10, Types: []string{"tenancy.tenant.*"}, Head: 10},
			then: []events.Payload{&events.WebhookReplayRequested{FromSeq: 1, ToSeq: 10, Types: []string{"tenancy.tenant.*"}}}},
		{name: "replay by time", given: live, when: RequestReplay{FromTime: t0, ToTime: t0.Add(time.Hour)},
			then: []events.Payload{&events.WebhookReplayRequested{FromTime: t0, ToTime: t0.Add(time.Hour)}}},
		{name: "replay without a range", given: live, when: RequestReplay{}, err: ErrInvalid, msg: "give a range"},
		{name: "replay with both ranges", given: live, when: RequestReplay{FromSeq: 1, ToSeq: 2, FromTime: t0, ToTime: t0.Add(time.Hour)}, err: ErrInvalid, msg: "not both"},
		{name: "replay with a backwards range", given: live, when: RequestReplay{FromSeq: 9, ToSeq: 2, Head: 10}, err: ErrInvalid, msg: "to_seq >= from_seq"},
		{name: "replay beyond the log", given: live, when: RequestReplay{FromSeq: 2, ToSeq: 11, Head: 10}, err: ErrInvalid, msg: "at most the log's last sequence, 10"},
		{name: "replay starting beyond the log", given: live, when: RequestReplay{FromSeq: 1 << 60, ToSeq: 1 << 61, Head: 10}, err: ErrInvalid, msg: "from_seq"},
		{name: "replay to a disabled endpoint", given: disabled, when: RequestReplay{FromSeq: 1, ToSeq: 2, Head: 2},
			then: []events.Payload{&events.WebhookReplayRequested{FromSeq: 1, ToSeq: 2}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			state := foldWebhook(tc.given)
			got, err := WebhookDecider{}.Decide(state, tc.when)
			checkDecision(t, got, err, tc.err, tc.msg, tc.then)
		})
	}
}

func TestWebhookEvolveAndSecrets(t *testing.T) {
	w := foldWebhook([]events.Payload{webhookCreated(), &events.WebhookSecretRotated{SecretVersion: 2, PreviousValidUntil: t0.Add(time.Hour)}})
	if got := w.SecretVersions(t0); !cmp.Equal(got, []int{2, 1}) {
		t.Fatalf("during the grace period versions = %v, want [2 1]", got)
	}
	if got := w.SecretVersions(t0.Add(time.Hour)); !cmp.Equal(got, []int{2}) {
		t.Fatalf("after the grace period versions = %v, want [2]", got)
	}
	w = EvolveWebhook(w, Recorded{Version: 3, Payload: &events.WebhookDisabled{Reason: "gone"}})
	if w.Enabled || w.DisabledReason != "gone" {
		t.Fatalf("after disable: enabled=%v reason=%q", w.Enabled, w.DisabledReason)
	}
	w = EvolveWebhook(w, Recorded{Version: 4, Payload: &events.WebhookUpdated{Changed: []string{"enabled"}, Enabled: ptr(true)}})
	if !w.Enabled || w.DisabledReason != "" {
		t.Fatalf("after enable: enabled=%v reason=%q", w.Enabled, w.DisabledReason)
	}
}

func TestWebhookMatches(t *testing.T) {
	w := Webhook{EventTypes: []string{"tenancy.tenant.suspended.v1", "tenancy.webhook.*"}}
	tenantScoped := Webhook{EventTypes: []string{"*"}, TenantID: "t1"}
	for _, tc := range []struct {
		w      Webhook
		typ    string
		tenant string
		want   bool
	}{
		{w, "tenancy.tenant.suspended.v1", "t1", true},
		{w, "tenancy.tenant.resumed.v1", "t1", false},
		{w, "tenancy.webhook.created.v1", events.PlatformTenantID, true},
		{tenantScoped, "tenancy.tenant.created.v1", "t1", true},
		{tenantScoped, "tenancy.tenant.created.v1", "t2", false},
	} {
		if got := tc.w.Matches(tc.typ, tc.tenant); got != tc.want {
			t.Errorf("%v.Matches(%s, %s) = %v, want %v", tc.w.EventTypes, tc.typ, tc.tenant, got, tc.want)
		}
	}
}
