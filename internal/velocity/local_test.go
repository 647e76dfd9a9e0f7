package velocity

import (
	"context"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	testingclock "k8s.io/utils/clock/testing"
)

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

// step is one Take at t0+at; a nil limit is the case's.
type step struct {
	at   time.Duration
	l    *Limit
	s    Subject
	want Outcome
}

var (
	alice = Subject{AppID: "app1", A: "alice"}
	bob   = Subject{AppID: "app1", A: "bob"}
)

// repeat is n steps alike.
func repeat(n int, s step) []step {
	out := make([]step, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func concat(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// takeCases are the counting behaviours every Counter shares.
func takeCases() []struct {
	name  string
	limit Limit
	steps []step
} {
	threePerThree := Limit{ID: "ns/p/l", Rate: 3, Window: 3 * time.Second}
	other := &Limit{ID: "ns/p/other", Rate: 3, Window: 3 * time.Second}
	return []struct {
		name  string
		limit Limit
		steps []step
	}{{
		name:  "Rate back to back, then Over until one interval has passed",
		limit: threePerThree,
		steps: concat(
			repeat(3, step{s: alice, want: Counted}),
			[]step{
				{s: alice, want: Over},
				{at: time.Second - time.Millisecond, s: alice, want: Over},
				{at: time.Second, s: alice, want: Counted},
				{at: time.Second, s: alice, want: Over},
			}),
	}, {
		name:  "the whole allowance is back after a window",
		limit: threePerThree,
		steps: concat(
			repeat(3, step{s: alice, want: Counted}),
			repeat(3, step{at: 3 * time.Second, s: alice, want: Counted}),
			[]step{{at: 3 * time.Second, s: alice, want: Over}}),
	}, {
		name:  "requests over the limit are not counted",
		limit: Limit{ID: "ns/p/l", Rate: 2, Window: 2 * time.Second},
		steps: concat(
			repeat(2, step{s: alice, want: Counted}),
			repeat(10, step{at: 500 * time.Millisecond, s: alice, want: Over}),
			[]step{
				{at: time.Second, s: alice, want: Counted},
				{at: time.Second, s: alice, want: Over},
			}),
	}, {
		name:  "a steady rate at one per interval is never refused",
		limit: threePerThree,
		steps: []step{
			{at: 0, s: alice, want: Counted},
			{at: 1 * time.Second, s: alice, want: Counted},
			{at: 2 * time.Second, s: alice, want: Counted},
			{at: 3 * time.Second, s: alice, want: Counted},
			{at: 4 * time.Second, s: alice, want: Counted},
			{at: 4 * time.Second, s: alice, want: Counted},
			{at: 4 * time.Second, s: alice, want: Counted},
			{at: 4 * time.Second, s: alice, want: Over},
		},
	}, {
		name:  "penalty refuses until it ends, then counting resumes",
		limit: Limit{ID: "ns/p/l", Rate: 3, Window: 3 * time.Second, Penalty: 10 * time.Second},
		steps: concat(
			repeat(3, step{s: alice, want: Counted}),
			[]step{
				{s: alice, want: Over},
				{at: time.Second, s: alice, want: Penalized},
				{at: 10*time.Second - time.Millisecond, s: alice, want: Penalized},
				{at: 10 * time.Second, s: bob, want: Counted},
			},
			repeat(3, step{at: 10 * time.Second, s: alice, want: Counted}),
			[]step{{at: 10 * time.Second, s: alice, want: Over}}),
	}, {
		name:  "subjects, apps, limits and pairs count apart",
		limit: Limit{ID: "ns/p/l", Rate: 1, Window: time.Minute},
		steps: []step{
			{s: alice, want: Counted},
			{s: alice, want: Over},
			{s: bob, want: Counted},
			{s: Subject{AppID: "app2", A: "alice"}, want: Counted},
			{l: other, s: alice, want: Counted},
			{s: Subject{AppID: "app1", A: "alice", B: "bob"}, want: Counted},
			{s: Subject{AppID: "app1", A: "bob", B: "alice"}, want: Counted},
			{s: Subject{AppID: "app1", A: "alice", B: "bob"}, want: Over},
			{s: Subject{AppID: "app1", A: "alice", B: "carol"}, want: Counted},
			// Parts are told apart by position, not by their concatenation.
			{s: Subject{AppID: "app1", A: "alicebob"}, want: Counted},
			{s: Subject{AppID: "app1", A: "alice:bob"}, want: Counted},
			{s: Subject{AppID: "app1", A: "alice", B: "bob:"}, want: Counted},
			{s: Subject{AppID: "app1}", A: "alice"}, want: Counted},
		},
	}}
}

// runSteps takes each step with take and checks its outcome.
func runSteps(t *testing.T, limit Limit, steps []step, take func(l *Limit, s Subject, now time.Time) Outcome) {
	t.Helper()
	for i, st := range steps {
		l := st.l
		if l == nil {
			l = &limit
		}
		if got := take(l, st.s, t0.Add(st.at)); got != st.want {
			t.Fatalf("step %d (at +%v, %s %+v): got %v, want %v", i, st.at, l.ID, st.s, got, st.want)
		}
	}
}

func TestLocalTake(t *testing.T) {
	for _, tc := range takeCases() {
		t.Run(tc.name, func(t *testing.T) {
			c := NewLocal(LocalOptions{})
			runSteps(t, tc.limit, tc.steps, c.Take)
		})
	}
}

func TestLocalSweep(t *testing.T) {
	clk := testingclock.NewFakeClock(t0)
	c := NewLocal(LocalOptions{Clock: clk, SweepInterval: time.Minute})
	short := &Limit{ID: "short", Rate: 1, Window: 10 * time.Second}
	penalized := &Limit{ID: "penalized", Rate: 1, Window: 10 * time.Second, Penalty: 5 * time.Minute}
	long := &Limit{ID: "long", Rate: 1, Window: 2 * time.Minute}
	c.Take(short, alice, t0)
	c.Take(penalized, alice, t0)
	c.Take(penalized, alice, t0) // Over: penalized until t0+5m
	c.Take(long, alice, t0)
	if c.Len() != 3 {
		t.Fatalf("Len = %d, want 3", c.Len())
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	for _, want := range []struct {
		at  time.Duration
		len int
	}{
		{time.Minute, 2},     // short's allowance is whole again
		{2 * time.Minute, 1}, // so is long's
		{5 * time.Minute, 0}, // penalized's penalty is over
	} {
		waitFor(t, clk.HasWaiters, "Run's ticker")
		clk.SetTime(t0.Add(want.at))
		waitFor(t, func() bool { return c.Len() == want.len }, "sweep at +%v to leave %d subjects", want.at, want.len)
	}
	// The penalty, being over, is forgotten with the subject: alice counts again.
	if got := c.Take(penalized, alice, t0.Add(5*time.Minute)); got != Counted {
		t.Fatalf("after the penalty: got %v, want Counted", got)
	}
}

// waitFor polls cond for a goroutine's work to show, with a bound far beyond any
// plausible scheduling delay; it asserts nothing about timing.
func waitFor(t *testing.T, cond func() bool, what string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for "+what, args...)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLocalMaxKeys(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	c := NewLocal(LocalOptions{MaxKeys: 2, Registerer: reg})
	l := &Limit{ID: "l", Rate: 1, Window: time.Minute}
	carol := Subject{AppID: "app1", A: "carol"}
	runSteps(t, *l, []step{
		{s: alice, want: Counted},
		{s: bob, want: Counted},
		// The table is full: carol is counted without being tracked, however often.
		{s: carol, want: Counted},
		{s: carol, want: Counted},
		{s: carol, want: Counted},
		// Those tracked still are.
		{s: alice, want: Over},
	}, c.Take)
	if got := testutil.ToFloat64(c.untracked); got != 3 {
		t.Errorf("friendgate_velocity_untracked_total = %v, want 3", got)
	}
	if n, err := testutil.GatherAndCount(reg, "friendgate_velocity_untracked_total", "friendgate_velocity_local_subjects"); err != nil || n != 2 {
		t.Errorf("registered metrics: %d, %v; want 2", n, err)
	}

	c.Sweep(t0.Add(time.Minute))
	runSteps(t, *l, []step{
		{at: time.Minute, s: carol, want: Counted},
		{at: time.Minute, s: carol, want: Over},
	}, c.Take)
}

func TestLocalKeysDoNotPinRequests(t *testing.T) {
	body := string([]byte(`{"app":"app1","from":"alice","to":"bob"}`))
	s := Subject{AppID: body[8:12], A: body[22:27], B: body[35:38]}
	c := NewLocal(LocalOptions{})
	c.Take(&Limit{ID: "l", Rate: 5, Window: time.Minute}, s, t0)
	start := uintptr(unsafe.Pointer(unsafe.StringData(body)))
	for i := range c.t.shards {
		for k := range c.t.shards[i].m {
			for _, part := range []string{k.app, k.a, k.b} {
				if p := uintptr(unsafe.Pointer(unsafe.StringData(part))); p >= start && p < start+uintptr(len(body)) {
					t.Errorf("key part %q points into the request body", part)
				}
			}
		}
	}
}

func TestLocalTakeTrackedAllocatesNothing(t *testing.T) {
	c := NewLocal(LocalOptions{})
	l := &Limit{ID: "ns/p/l", Rate: 1 << 40, Window: time.Hour * 1000}
	c.Take(l, alice, t0)
	if allocs := testing.AllocsPerRun(1000, func() { c.Take(l, alice, t0) }); allocs != 0 {
		t.Errorf("Take of a tracked subject: %v allocations, want 0", allocs)
	}
}

func TestLimitValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit Limit
		want  string
	}{
		{"valid", Limit{ID: "l", Rate: 20, Window: time.Hour, Penalty: time.Hour}, ""},
		{"no ID", Limit{Rate: 20, Window: time.Hour}, "Limit.ID: empty"},
		{"no rate", Limit{ID: "l", Window: time.Hour}, "Limit.Rate: must be at least 1"},
		{"no window", Limit{ID: "l", Rate: 1}, "Limit.Window: must be positive"},
		{"too fast", Limit{ID: "l", Rate: 2000, Window: time.Millisecond}, "Limit.Window: must be at least a microsecond per request of Rate"},
		{"negative penalty", Limit{ID: "l", Rate: 1, Window: time.Second, Penalty: -1}, "Limit.Penalty: must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if err := tc.limit.Validate(); err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Fatalf("Validate() = %q, want %q", got, tc.want)
			}
			// Counters count nothing against an invalid limit rather than fail a callback.
			if tc.want != "" && tc.limit.ID != "" {
				c := NewLocal(LocalOptions{})
				for range 3 {
					if o := c.Take(&tc.limit, alice, t0); o != Counted {
						t.Fatalf("Take: %v, want Counted", o)
					}
				}
			}
		})
	}
}
