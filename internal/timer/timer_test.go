package timer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/testenv"
	"github.com/tenancyhq/tenancy/internal/timer"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// wait bounds every wait for a firing: far above the server's 250ms
// scheduling tick, so only a firing that never comes reaches it.
const wait = 10 * time.Second

// setup starts a server and opens the timers on it.
func setup(t *testing.T) (*testenv.NATS, *timer.Timers, context.Context) {
	t.Helper()
	nt := testenv.StartNATS(t)
	ctx := testenv.Context(t, time.Minute)
	tm, err := timer.Open(ctx, nt.JS, 1)
	if err != nil {
		t.Fatal(err)
	}
	return nt, tm, ctx
}

// call is one call of a handler.
type call struct {
	timer.Fired
	// When is when the handler was called.
	When time.Time
	Err  error
}

// recorder is a handler that records its calls, failing those fail picks.
type recorder struct {
	fail func(timer.Fired) error

	mu      sync.Mutex
	calls   []call
	changed chan struct{} // closed and replaced on every call
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) fire(_ context.Context, f timer.Fired) error {
	var err error
	if r.fail != nil {
		err = r.fail(f)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call{Fired: f, When: time.Now(), Err: err})
	close(r.changed)
	r.changed = make(chan struct{})
	return err
}

// of returns the calls for key, in order.
func (r *recorder) of(key string) []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []call
	for _, c := range r.calls {
		if c.Key == key {
			out = append(out, c)
		}
	}
	return out
}

// index returns the position of key's first call among all calls (-1 if
// none).
func (r *recorder) index(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, c := range r.calls {
		if c.Key == key {
			return i
		}
	}
	return -1
}

// await waits until a call for key succeeded and returns it.
func (r *recorder) await(t *testing.T, key string) call {
	t.Helper()
	deadline := time.After(wait)
	for {
		r.mu.Lock()
		changed := r.changed
		for _, c := range r.calls {
			if c.Key == key && c.Err == nil {
				r.mu.Unlock()
				return c
			}
		}
		r.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timer %s was not handled within %s", key, wait)
		}
	}
}

// start runs Run on consumer until the returned stop is called (or the
// test ends), and checks it returned ctx's error.
func start(t *testing.T, ctx context.Context, tm *timer.Timers, consumer string, fire func(context.Context, timer.Fired) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- tm.Run(ctx, consumer, nil, fire) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("Run returned %v, want context.Canceled", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// stored returns how many messages the stream holds on subject.
func stored(t *testing.T, ctx context.Context, js jetstream.JetStream, subject string) uint64 {
	t.Helper()
	st, err := js.Stream(ctx, timer.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject]
}

// awaitFired waits until key's firing is in the stream.
func awaitFired(t *testing.T, ctx context.Context, js jetstream.JetStream, key string) {
	t.Helper()
	if !testenv.Eventually(wait, 20*time.Millisecond, func() bool { return stored(t, ctx, js, timer.FirePrefix+key) == 1 }) {
		t.Fatalf("timer %s did not fire within %s", key, wait)
	}
}

// settle waits until consumer has handled every firing stored so far: none
// left to deliver, none awaiting an acknowledgement. What a test then sees
// is everything that will happen.
func settle(t *testing.T, ctx context.Context, js jetstream.JetStream, consumer string) {
	t.Helper()
	info, ok := testenv.Poll(wait, 20*time.Millisecond, func() *jetstream.ConsumerInfo {
		c, err := js.Consumer(ctx, timer.Stream, consumer)
		if err != nil {
			return nil
		}
		info, err := c.Info(ctx)
		if err != nil {
			return nil
		}
		return info
	}, func(info *jetstream.ConsumerInfo) bool {
		return info != nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	if !ok {
		t.Fatalf("consumer %s did not settle: %+v", consumer, info)
	}
}

func mustSchedule(t *testing.T, ctx context.Context, tm *timer.Timers, key string, at time.Time, payload string) {
	t.Helper()
	if err := tm.Schedule(ctx, key, at, []byte(payload)); err != nil {
		t.Fatalf("Schedule(%s): %v", key, err)
	}
}

// payloads returns the payloads of calls.
func payloads(calls []call) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = string(c.Payload)
	}
	return out
}

func TestFiresOnceAtItsTime(t *testing.T) {
	t.Parallel()
	nt, tm, ctx := setup(t)
	rec := newRecorder()
	start(t, ctx, tm, "timers", rec.fire)

	const key = "rekyc.0194f5d2-6a4e-7c3b-9f00-000000000001"
	payload := `{"customer_id": "c-1", "reason": "grace"}`
	at := time.Now().Add(time.Second)
	mustSchedule(t, ctx, tm, key, at, payload)
	// Before its time, nothing has fired.
	checked := time.Now()
	if n := stored(t, ctx, nt.JS, timer.FirePrefix+key); checked.Before(at) && (n != 0 || len(rec.of(key)) != 0) {
		t.Fatalf("fired before its time: %d firings stored at %s, due %s", n, checked, at)
	}

	got := rec.await(t, key)
	if got.When.Before(at) {
		t.Errorf("handled at %s, before its time %s", got.When, at)
	}
	want := timer.Fired{Key: key, At: at, Payload: []byte(payload), Delivered: 1}
	if diff := cmp.Diff(want, got.Fired); diff != "" {
		t.Errorf("firing (-want +got):\n%s", diff)
	}
	settle(t, ctx, nt.JS, "timers")
	if n := len(rec.of(key)); n != 1 {
		t.Errorf("handled %d times, want once", n)
	}
	// Fired and handled: neither the schedule nor the firing is kept.
	for _, subject := range []string{timer.SchedulePrefix + key, timer.FirePrefix + key} {
		if n := stored(t, ctx, nt.JS, subject); n != 0 {
			t.Errorf("%d messages left on %s, want none", n, subject)
		}
	}
}

func TestInstancesShareFirings(t *testing.T) {
	t.Parallel()
	nt, tm, ctx := setup(t)
	rec := newRecorder()
	start(t, ctx, tm, "shared", rec.fire)
	start(t, ctx, tm, "shared", rec.fire)

	const n = 30
	at := time.Now().Add(300 * time.Millisecond)
	for i := range n {
		// Some due already, some a little later: two firing rounds.
		due := at
		if i%2 == 0 {
			due = time.Now().Add(-time.Minute)
		}
		mustSchedule(t, ctx, tm, fmt.Sprintf("k.%d", i), due, "")
	}
	for i := range n {
		rec.await(t, fmt.Sprintf("k.%d", i))
	}
	settle(t, ctx, nt.JS, "shared")
	for i := range n {
		key := fmt.Sprintf("k.%d", i)
		if calls := rec.of(key); len(calls) != 1 {
			t.Errorf("%s handled %d times across the instances, want once", key, len(calls))
		}
	}
}

func TestRescheduleReplaces(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		first, second time.Duration // from now
	}{
		// The earlier schedule would never fire within the test: that
		// nothing of it is left after the firing shows it was replaced.
		{"earlier replaces later", time.Hour, 300 * time.Millisecond},
		// Had the first not been replaced, it would have fired first.
		{"later replaces earlier", time.Second, 1500 * time.Millisecond},
		{"same time again", time.Second, time.Second},
	}
	nt, tm, ctx := setup(t)
	rec := newRecorder()
	start(t, ctx, tm, "timers", rec.fire)
	// One server and one consumer for all: each case has its own key.
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			key := fmt.Sprintf("re.%d", i)
			now := time.Now()
			mustSchedule(t, ctx, tm, key, now.Add(tt.first), `"first"`)
			mustSchedule(t, ctx, tm, key, now.Add(tt.second), `"second"`)
			rec.await(t, key)
			settle(t, ctx, nt.JS, "timers")
			if diff := cmp.Diff([]string{`"second"`}, payloads(rec.of(key))); diff != "" {
				t.Errorf("handled payloads (-want +got):\n%s", diff)
			}
			if n := stored(t, ctx, nt.JS, timer.SchedulePrefix+key); n != 0 {
				t.Errorf("%d schedules left for %s, want none", n, key)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// arm sets key's timer up (or not) before Cancel; Run is not going.
		arm func(t *testing.T, ctx context.Context, tm *timer.Timers, js jetstream.JetStream, key string)
	}{
		{"pending", func(t *testing.T, ctx context.Context, tm *timer.Timers, _ jetstream.JetStream, key string) {
			mustSchedule(t, ctx, tm, key, time.Now().Add(500*time.Millisecond), `{}`)
		}},
		{"fired, not handled", func(t *testing.T, ctx context.Context, tm *timer.Timers, js jetstream.JetStream, key string) {
			mustSchedule(t, ctx, tm, key, time.Now().Add(-time.Second), `{}`)
			awaitFired(t, ctx, js, key)
		}},
		{"never scheduled", func(*testing.T, context.Context, *timer.Timers, jetstream.JetStream, string) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			nt, tm, ctx := setup(t)
			const key, sentinel = "cancelled", "sentinel"
			tt.arm(t, ctx, tm, nt.JS, key)
			if err := tm.Cancel(ctx, key); err != nil {
				t.Fatalf("Cancel: %v", err)
			}
			// The sentinel comes due after the cancelled timer would have.
			mustSchedule(t, ctx, tm, sentinel, time.Now().Add(time.Second), `{}`)
			rec := newRecorder()
			start(t, ctx, tm, "timers", rec.fire)
			rec.await(t, sentinel)
			settle(t, ctx, nt.JS, "timers")
			if calls := rec.of(key); len(calls) != 0 {
				t.Errorf("cancelled timer handled: %+v", calls)
			}
			for _, subject := range []string{timer.SchedulePrefix + key, timer.FirePrefix + key} {
				if n := stored(t, ctx, nt.JS, subject); n != 0 {
					t.Errorf("%d messages left on %s, want none", n, subject)
				}
			}
		})
	}
}

func TestPastTimeFiresAtOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		at   time.Time
	}{
		{"an hour ago", time.Now().Add(-time.Hour)},
		{"long ago", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"a fraction of a second ago", time.Now().Add(-time.Millisecond)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			nt, tm, ctx := setup(t)
			rec := newRecorder()
			start(t, ctx, tm, "timers", rec.fire)
			const key, sentinel = "past", "sentinel"
			// Scheduled first, due a second later: the past timer must not
			// wait for it.
			mustSchedule(t, ctx, tm, sentinel, time.Now().Add(time.Second), `{}`)
			mustSchedule(t, ctx, tm, key, tt.at, `{"n":1}`)
			got := rec.await(t, key)
			rec.await(t, sentinel)
			if i, j := rec.index(key), rec.index(sentinel); i > j {
				t.Errorf("past timer handled after the one due in a second (%d > %d)", i, j)
			}
			want := timer.Fired{Key: key, At: tt.at, Payload: []byte(`{"n":1}`), Delivered: 1}
			if diff := cmp.Diff(want, got.Fired); diff != "" {
				t.Errorf("firing (-want +got):\n%s", diff)
			}
			settle(t, ctx, nt.JS, "timers")
		})
	}
}

func TestHandlerErrorRedelivers(t *testing.T) {
	t.Parallel()
	nt, tm, ctx := setup(t)
	rec := newRecorder()
	rec.fail = func(f timer.Fired) error {
		if f.Delivered == 1 {
			return errors.New("the read model is not reachable")
		}
		return nil
	}
	start(t, ctx, tm, "timers", rec.fire)
	const key = "flaky"
	mustSchedule(t, ctx, tm, key, time.Now(), `{}`)
	rec.await(t, key)
	settle(t, ctx, nt.JS, "timers")
	var got []int
	for _, c := range rec.of(key) {
		got = append(got, c.Delivered)
	}
	if diff := cmp.Diff([]int{1, 2}, got); diff != "" {
		t.Errorf("deliveries (-want +got):\n%s", diff)
	}
}

func TestFiringsSurviveDowntime(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// ranBefore runs (and stops) Run before scheduling, so that the
		// consumer exists while nothing consumes.
		ranBefore bool
		// restart stops the server before the timer is due and starts it
		// again on the same store after.
		restart bool
	}{
		{name: "run stopped", ranBefore: true},
		{name: "no consumer yet"},
		{name: "server down while due", ranBefore: true, restart: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			nt, tm, ctx := setup(t)
			rec := newRecorder()
			if tt.ranBefore {
				start(t, ctx, tm, "timers", rec.fire)()
			}
			const key = "durable"
			at := time.Now().Add(500 * time.Millisecond)
			mustSchedule(t, ctx, tm, key, at, `{"kept":true}`)
			if tt.restart {
				nt.Stop()
				time.Sleep(time.Until(at) + 100*time.Millisecond)
				nt = testenv.StartNATSIn(t, nt.Dir)
				var err error
				if tm, err = timer.Open(ctx, nt.JS, 1); err != nil {
					t.Fatal(err)
				}
			}
			// It fires with nothing consuming, and the firing is kept.
			awaitFired(t, ctx, nt.JS, key)
			if calls := rec.of(key); len(calls) != 0 {
				t.Fatalf("handled while no Run was going: %+v", calls)
			}
			start(t, ctx, tm, "timers", rec.fire)
			got := rec.await(t, key)
			if string(got.Payload) != `{"kept":true}` {
				t.Errorf("payload %s", got.Payload)
			}
			settle(t, ctx, nt.JS, "timers")
			if n := len(rec.of(key)); n != 1 {
				t.Errorf("handled %d times, want once", n)
			}
		})
	}
}

func TestRejectsBadInput(t *testing.T) {
	t.Parallel()
	_, tm, ctx := setup(t)
	at := time.Now().Add(time.Hour)
	tests := []struct {
		name    string
		key     string
		at      time.Time
		payload string
		ok      bool
	}{
		{name: "product key", key: "rekyc.0194f5d2-6a4e-7c3b-9f00-000000000001", at: at, payload: `{"a":1}`, ok: true},
		{name: "one token", key: "trial_end-7", at: at, ok: true},
		{name: "longest key", key: strings.Repeat("k", timer.MaxKeyLen), at: at, ok: true},
		{name: "empty key", key: "", at: at},
		{name: "too long", key: strings.Repeat("k", timer.MaxKeyLen+1), at: at},
		{name: "leading dot", key: ".a", at: at},
		{name: "trailing dot", key: "a.", at: at},
		{name: "empty token", key: "a..b", at: at},
		{name: "only a dot", key: ".", at: at},
		{name: "wildcard", key: "a.*", at: at},
		{name: "full wildcard", key: "a.>", at: at},
		{name: "space", key: "a b", at: at},
		{name: "tab", key: "a\tb", at: at},
		{name: "slash", key: "a/b", at: at},
		{name: "not ASCII", key: "réglé", at: at},
		{name: "no due time", key: "k", at: time.Time{}},
		{name: "payload not JSON", key: "k", at: at, payload: "grace"},
		{name: "payload too big", key: "k", at: at, payload: `"` + strings.Repeat("x", timer.MaxPayload) + `"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tm.Schedule(ctx, tt.key, tt.at, []byte(tt.payload))
			cerr := tm.Cancel(ctx, tt.key)
			if tt.ok {
				if err != nil || cerr != nil {
					t.Fatalf("Schedule: %v, Cancel: %v; want both accepted", err, cerr)
				}
				return
			}
			if !errors.Is(err, domain.ErrInvalid) {
				t.Errorf("Schedule: %v, want domain.ErrInvalid", err)
			}
			if keyErr := timer.ValidKey(tt.key); (keyErr != nil) != (cerr != nil) || (cerr != nil && !errors.Is(cerr, domain.ErrInvalid)) {
				t.Errorf("Cancel: %v, ValidKey: %v; want the same verdict, domain.ErrInvalid", cerr, keyErr)
			}
		})
	}
	if err := tm.Run(ctx, "", nil, func(context.Context, timer.Fired) error { return nil }); err == nil {
		t.Error("Run without a consumer name: no error")
	}
}
