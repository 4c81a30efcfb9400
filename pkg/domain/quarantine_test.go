package domain

import (
	"strings"
	"testing"

	"github.com/tenancyhq/tenancy/pkg/events"
)

func TestDecideQuarantine(t *testing.T) {
	resolved := &events.QuarantineResolved{Seq: 7, Subject: "tenancy.evt.t1.tenant.t1", Violation: "bad-signature", Reason: "forged by a test"}
	resolve := ResolveQuarantine{Seq: 7, Subject: "tenancy.evt.t1.tenant.t1", Violation: "bad-signature", Reason: "forged by a test"}
	cases := []struct {
		name  string
		given []events.Payload
		when  ResolveQuarantine
		then  []events.Payload
		err   error
		msg   string
	}{
		{name: "resolve", when: resolve, then: []events.Payload{resolved}},
		{name: "resolve twice changes nothing", given: []events.Payload{resolved}, when: resolve},
		{name: "resolve without a reason", when: ResolveQuarantine{Seq: 7, Subject: "s"}, err: ErrInvalid, msg: "reason"},
		{name: "resolve with too long a reason", when: ResolveQuarantine{Seq: 7, Subject: "s", Reason: strings.Repeat("r", MaxResolutionReason+1)}, err: ErrInvalid, msg: "reason"},
		{name: "resolve nothing", when: ResolveQuarantine{Reason: "x"}, err: ErrInvalid, msg: "seq"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var q Quarantine
			for i, p := range tc.given {
				q = QuarantineDecider{}.Evolve(q, Recorded{AggregateID: "7", Version: int64(i + 1), Payload: p})
			}
			got, err := QuarantineDecider{}.Decide(q, tc.when)
			if checkDecision(t, got, err, tc.err, tc.msg, tc.then) && len(tc.given) > 0 && !q.Resolved {
				t.Fatal("the resolution did not fold")
			}
		})
	}
}
