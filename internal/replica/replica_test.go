package replica

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/policy"
	"github.com/friendgate/friendgate/internal/propagation"
	"github.com/friendgate/friendgate/internal/testenv"
)

var env *testenv.Env

// unitTests need no API server: `make unit` runs only these.
var unitTests = []string{"TestFingerprintChangesOnlyWithSpecOrSelectedLists"}

func TestMain(m *testing.M) {
	os.Exit(testenv.RunUnit(m, unitTests, func(e *testenv.Env) { env = e }))
}

// latest holds the last snapshot a Builder produced.
type latest struct {
	mu        sync.Mutex
	snap      *policy.Snapshot
	watermark string
	builds    int
}

func (l *latest) set(s *policy.Snapshot, wm string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.snap, l.watermark = s, wm
	l.builds++
}

// advance records a watermark moved on without a build.
func (l *latest) advance(wm string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.watermark = wm
}

func (l *latest) get() (*policy.Snapshot, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.snap, l.watermark
}

// state returns the number of builds so far and the watermark in force.
func (l *latest) state() (builds int, watermark string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.builds, l.watermark
}

// startReplica runs a Builder and a LeaseReporter on a manager configured as
// `friendgate webhook` configures it, until the test ends or stop is called. The reporter
// runs on clk.
func startReplica(t *testing.T, ns, id string, clk clock.WithTicker) (l *latest, stop func()) {
	t.Helper()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Cache:                  CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	l = &latest{}
	reporter := &LeaseReporter{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: ns, ID: id, Duration: 3 * time.Second, Clock: clk, Log: logr.Discard()}
	builder := &Builder{Cache: mgr.GetCache(), Log: logr.Discard(), OnSnapshot: func(s *policy.Snapshot, wm string) {
		l.set(s, wm)
		reporter.SetWatermark(wm)
	}, OnWatermark: func(wm string) {
		l.advance(wm)
		reporter.SetWatermark(wm)
	}}
	if err := mgr.Add(builder); err != nil {
		t.Fatal(err)
	}
	if err := mgr.Add(reporter); err != nil {
		t.Fatal(err)
	}
	return l, testenv.StartManager(t, mgr)
}

func decide(l *latest, from string) string {
	snap, _ := l.get()
	if snap == nil {
		return "no snapshot"
	}
	d := snap.Decide(&policy.Request{Event: "FriendRequest", From: from, To: "bob"})
	if d.Deny == nil {
		return "allow"
	}
	return d.Deny.Detail
}

func TestBuilderFollowsPoliciesAndLists(t *testing.T) {
	ctx := context.Background()
	ns := env.NewNamespace(t, "builder")
	l, _ := startReplica(t, ns, "replica-a", clock.RealClock{})
	testenv.Eventually(t, 20*time.Second, "the first snapshot", func() (bool, string) { s, _ := l.get(); return s != nil, "none" })

	fp := &v1alpha1.FriendPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "spam"},
		Spec: v1alpha1.FriendPolicySpec{Blocklists: []v1alpha1.Blocklist{{
			Name: "spammers", Users: []string{"spam_1"},
			ConfigMapSelector: &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.LabelList: "spammers"}},
		}, {
			// Selects list=spammers among the ConfigMaps labelled friendgate.io/list: one with
			// list=spammers alone is no list, and replicas must not see it.
			Name: "unlabelled",
			ConfigMapSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"list": "spammers"},
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: v1alpha1.LabelList, Operator: metav1.LabelSelectorOpExists}}},
		}}},
	}
	if err := env.Client.Create(ctx, fp); err != nil {
		t.Fatal(err)
	}
	want := ns + "/spam/blocklist/spammers"
	steps := []struct {
		name   string
		change func() error
		from   string
		want   string
	}{
		{"created policy is enforced", func() error { return nil }, "spam_1", want},
		{"labelled ConfigMap feeds the list", func() error {
			return env.Client.Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "list-1", Labels: map[string]string{v1alpha1.LabelList: "spammers"}},
				Data:       map[string]string{"users.txt": "spam_100\n"},
			})
		}, "spam_100", want},
		{"an unlabelled ConfigMap is not even seen", func() error {
			return env.Client.Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "unlabelled", Labels: map[string]string{"list": "spammers"}},
				Data:       map[string]string{"users.txt": "spam_200\n"},
			})
		}, "spam_200", "allow"},
		{"editing the ConfigMap changes the list", func() error {
			var cm corev1.ConfigMap
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "list-1"}, &cm); err != nil {
				return err
			}
			cm.Data["users.txt"] = "spam_101\n"
			return env.Client.Update(ctx, &cm)
		}, "spam_100", "allow"},
		{"spec update applies", func() error {
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(fp), fp); err != nil {
				return err
			}
			fp.Spec.Blocklists[0].Users = []string{"spam_2"}
			return env.Client.Update(ctx, fp)
		}, "spam_2", want},
		{"deleting the policy removes it", func() error { return env.Client.Delete(ctx, fp) }, "spam_2", "allow"},
	}
	for _, st := range steps {
		if err := st.change(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		testenv.Eventually(t, 20*time.Second, st.name, func() (bool, string) {
			got := decide(l, st.from)
			return got == st.want, "from " + st.from + ": " + got
		})
	}
}

func TestLeaseReportsWatermark(t *testing.T) {
	ctx := context.Background()
	ns := env.NewNamespace(t, "lease")
	clk := clocktesting.NewFakeClock(time.Now())
	l, stop := startReplica(t, ns, "replica-b", clk)

	fp := &v1alpha1.FriendPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"},
		Spec:       v1alpha1.FriendPolicySpec{Blocklists: []v1alpha1.Blocklist{{Name: "b", Users: []string{"x"}}}},
	}
	if err := env.Client.Create(ctx, fp); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKey{Namespace: ns, Name: propagation.LeaseName("replica-b")}
	testenv.Eventually(t, 20*time.Second, "the Lease to report the policy's resourceVersion", func() (bool, string) {
		// A reporter that waits out minReportInterval before writing a new watermark
		// waits on the clock (it has a waiter besides its renewal ticker).
		if clk.Waiters() > 1 {
			clk.Step(minReportInterval)
		}
		var lease coordinationv1.Lease
		if err := env.Client.Get(ctx, key, &lease); err != nil {
			return false, err.Error()
		}
		st, ok := propagation.FromLease(&lease)
		if !ok {
			return false, "not a replica Lease"
		}
		if !st.Alive(clk.Now()) || st.ID != "replica-b" {
			return false, "not alive"
		}
		return st.Enforces(fp.ResourceVersion), "watermark " + st.Watermark + " < " + fp.ResourceVersion
	})
	if _, wm := l.get(); propagation.Newer(fp.ResourceVersion, wm) {
		t.Fatalf("builder watermark %s is older than the policy's %s", wm, fp.ResourceVersion)
	}

	stop()
	var lease coordinationv1.Lease
	if err := env.Client.Get(ctx, key, &lease); !apierrors.IsNotFound(err) {
		t.Fatalf("the Lease must be deleted on shutdown; Get: %v", err)
	}
}

func TestFingerprintChangesOnlyWithSpecOrSelectedLists(t *testing.T) {
	fp := &v1alpha1.FriendPolicy{ObjectMeta: metav1.ObjectMeta{UID: "u1", Generation: 3}}
	cm := func(name, rv string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: rv}}
	}
	base := fingerprint(fp, []*corev1.ConfigMap{cm("a", "10"), cm("b", "11")})
	for _, tt := range []struct {
		name string
		fp   *v1alpha1.FriendPolicy
		cms  []*corev1.ConfigMap
		same bool
	}{
		{"same inputs in another order", fp, []*corev1.ConfigMap{cm("b", "11"), cm("a", "10")}, true},
		{"status-only change (same generation)", &v1alpha1.FriendPolicy{ObjectMeta: metav1.ObjectMeta{UID: "u1", Generation: 3, ResourceVersion: "99"}}, []*corev1.ConfigMap{cm("a", "10"), cm("b", "11")}, true},
		{"new generation", &v1alpha1.FriendPolicy{ObjectMeta: metav1.ObjectMeta{UID: "u1", Generation: 4}}, []*corev1.ConfigMap{cm("a", "10"), cm("b", "11")}, false},
		{"recreated policy", &v1alpha1.FriendPolicy{ObjectMeta: metav1.ObjectMeta{UID: "u2", Generation: 3}}, []*corev1.ConfigMap{cm("a", "10"), cm("b", "11")}, false},
		{"edited ConfigMap", fp, []*corev1.ConfigMap{cm("a", "12"), cm("b", "11")}, false},
		{"ConfigMap gone", fp, []*corev1.ConfigMap{cm("a", "10")}, false},
	} {
		if got := fingerprint(tt.fp, tt.cms) == base; got != tt.same {
			t.Errorf("%s: same fingerprint = %v, want %v", tt.name, got, tt.same)
		}
	}
}

// TestLeaseReporterPacing runs a LeaseReporter on a fake clock: a new watermark is written
// no sooner than minReportInterval after the previous write, and the Lease is renewed
// every third of its duration.
func TestLeaseReporterPacing(t *testing.T) {
	ctx := context.Background()
	ns := env.NewNamespace(t, "pacing")
	t0 := time.Now().Truncate(time.Second)
	clk := clocktesting.NewFakeClock(t0)
	reporter := &LeaseReporter{Client: env.Client, Reader: env.Client, Namespace: ns, ID: "replica-c", Duration: 30 * time.Second, Clock: clk, Log: logr.Discard()}
	// The first snapshot is in force before the reporter starts.
	reporter.SetWatermark("9")
	startUntilCleanup(ctx, t, reporter)

	key := client.ObjectKey{Namespace: ns, Name: propagation.LeaseName("replica-c")}
	// reported waits until the Lease says watermark, renewed at renewed.
	reported := func(what, watermark string, renewed time.Time) {
		t.Helper()
		waitForLease(t, key, what, func(st propagation.Status) bool {
			return st.Watermark == watermark && st.Expires.Equal(renewed.Add(30*time.Second))
		})
	}
	// waiting waits until the reporter waits on the clock for n timers (its renewal ticker
	// is one).
	waiting := func(what string, n int) {
		t.Helper()
		testenv.Eventually(t, 20*time.Second, what, func() (bool, string) {
			return clk.Waiters() == n, fmt.Sprintf("%d waiters", clk.Waiters())
		})
	}

	reported("the first write", "9", t0)
	waiting("the renewal ticker", 1)

	reporter.SetWatermark("10")
	waiting("the reporter to hold the new watermark back", 2)
	clk.Step(minReportInterval - time.Millisecond)
	// The reporter waits on the clock, which has not reached the interval: nothing is written.
	var lease coordinationv1.Lease
	if err := env.Client.Get(ctx, key, &lease); err != nil {
		t.Fatal(err)
	}
	if st, _ := propagation.FromLease(&lease); st.Watermark != "9" {
		t.Fatalf("watermark %q written before minReportInterval passed", st.Watermark)
	}
	reporter.SetWatermark("11") // coalesces with the pending one
	clk.Step(time.Millisecond)
	reported("the watermark, a report interval after the first write", "11", t0.Add(minReportInterval))

	// The second SetWatermark's signal costs one more write, paced the same way.
	waiting("the reporter to pace the second signal", 2)
	clk.Step(minReportInterval)
	reported("the paced rewrite", "11", t0.Add(2*minReportInterval))
	waiting("the reporter to wait for the renewal only", 1)

	clk.Step(10*time.Second - 2*minReportInterval)
	reported("the renewal a third of the duration after the start", "11", t0.Add(10*time.Second))
}

// updateCounter counts the updates made through a client.
type updateCounter struct {
	client.Client
	mu      sync.Mutex
	updates int
}

func (c *updateCounter) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	c.mu.Lock()
	c.updates++
	c.mu.Unlock()
	return c.Client.Update(ctx, obj, opts...)
}

func (c *updateCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.updates
}

// TestLeaseReportsLimitsCounting runs a LeaseReporter on a fake clock: the Lease says how
// limits are counted from the first write, a change is written at the next check, and a
// check that finds no change writes nothing.
func TestLeaseReportsLimitsCounting(t *testing.T) {
	ctx := context.Background()
	ns := env.NewNamespace(t, "counting")
	t0 := time.Now().Truncate(time.Second)
	clk := clocktesting.NewFakeClock(t0)
	var (
		mu       sync.Mutex
		counting = propagation.CountingShared
	)
	setCounting := func(c propagation.Counting) { mu.Lock(); counting = c; mu.Unlock() }
	writes := &updateCounter{Client: env.Client}
	reporter := &LeaseReporter{Client: writes, Reader: env.Client, Namespace: ns, ID: "replica-e", Duration: 30 * time.Second, Clock: clk, Log: logr.Discard(),
		LimitsCounting: func() propagation.Counting { mu.Lock(); defer mu.Unlock(); return counting }}
	reporter.SetWatermark("9")
	startUntilCleanup(ctx, t, reporter)

	key := client.ObjectKey{Namespace: ns, Name: propagation.LeaseName("replica-e")}
	// reported waits for the Lease to say want, renewed at one of the times given.
	reported := func(what string, want propagation.Counting, renewed ...time.Time) {
		t.Helper()
		waitForLease(t, key, what, func(st propagation.Status) bool {
			return st.LimitsCounting == want && slices.ContainsFunc(renewed, func(at time.Time) bool {
				return st.Expires.Equal(at.Add(30 * time.Second))
			})
		})
	}

	reported("the first write, counting through Redis", propagation.CountingShared, t0)
	testenv.Eventually(t, 20*time.Second, "the renewal and check tickers", func() (bool, string) {
		return clk.Waiters() == 2, fmt.Sprintf("%d waiters", clk.Waiters())
	})
	setCounting(propagation.CountingLocal)
	clk.Step(countingCheckInterval)
	reported("Redis failed: the next check writes Local", propagation.CountingLocal, t0.Add(countingCheckInterval))
	clk.Step(countingCheckInterval)
	setCounting(propagation.CountingShared)
	clk.Step(countingCheckInterval)
	// The check at t0+2s may run before or after the switch back.
	reported("Redis answers again: Shared", propagation.CountingShared, t0.Add(2*countingCheckInterval), t0.Add(3*countingCheckInterval))
	// Whichever check saw Shared first wrote it; the check at t0+2s, which found Local
	// still, or the one after the write, wrote nothing.
	if n := writes.count(); n != 2 {
		t.Errorf("%d Lease updates after the create, want 2 (one a change)", n)
	}
}

// waitForLease waits until the replica Lease at key says what holds asks for.
func waitForLease(t *testing.T, key client.ObjectKey, what string, holds func(propagation.Status) bool) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, what, func() (bool, string) {
		var lease coordinationv1.Lease
		if err := env.Client.Get(context.Background(), key, &lease); err != nil {
			return false, err.Error()
		}
		st, ok := propagation.FromLease(&lease)
		return ok && holds(st), fmt.Sprintf("%+v", st)
	})
}

// TestLeaseWaitsForFirstSnapshot: a replica writes no Lease before its first snapshot is
// in force, so the controller never counts a joining replica that does not serve yet; the
// Lease is created with that snapshot's watermark.
func TestLeaseWaitsForFirstSnapshot(t *testing.T) {
	ctx := context.Background()
	ns := env.NewNamespace(t, "first")
	t0 := time.Now().Truncate(time.Second)
	clk := clocktesting.NewFakeClock(t0)
	reporter := &LeaseReporter{Client: env.Client, Reader: env.Client, Namespace: ns, ID: "replica-d", Duration: 30 * time.Second, Clock: clk, Log: logr.Discard()}
	startUntilCleanup(ctx, t, reporter)

	// Time passes (renewals would be due) while the replica builds its first snapshot.
	clk.Step(20 * time.Second)
	t1 := clk.Now()
	reporter.SetWatermark("42")

	key := client.ObjectKey{Namespace: ns, Name: propagation.LeaseName("replica-d")}
	var lease coordinationv1.Lease
	testenv.Eventually(t, 20*time.Second, "the Lease", func() (bool, string) {
		err := env.Client.Get(ctx, key, &lease)
		return err == nil, fmt.Sprint(err)
	})
	st, _ := propagation.FromLease(&lease)
	if st.Watermark != "42" || lease.Spec.AcquireTime == nil || !lease.Spec.AcquireTime.Time.Equal(t1) {
		t.Errorf("Lease created with watermark %q at %v, want 42 at %v (after the first snapshot)", st.Watermark, lease.Spec.AcquireTime, t1)
	}
}

// TestStatusOnlyUpdatesDoNotRebuild: a FriendPolicy update that leaves its spec alone (the
// controller's status writes, a label) moves the watermark on without a build; a spec
// update builds.
func TestStatusOnlyUpdatesDoNotRebuild(t *testing.T) {
	ctx := context.Background()
	ns := env.NewNamespace(t, "status-only")
	var policies []*v1alpha1.FriendPolicy
	for i := range 3 {
		fp := &v1alpha1.FriendPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("p%d", i)},
			Spec:       v1alpha1.FriendPolicySpec{Blocklists: []v1alpha1.Blocklist{{Name: "b", Users: []string{fmt.Sprintf("spam_%d", i)}}}},
		}
		if err := env.Client.Create(ctx, fp); err != nil {
			t.Fatal(err)
		}
		policies = append(policies, fp)
	}
	l, _ := startReplica(t, ns, "replica-e", clock.RealClock{})
	// covers waits until the replica's watermark covers rv, and returns its builds by then.
	covers := func(what, rv string) int {
		t.Helper()
		var builds int
		testenv.Eventually(t, 20*time.Second, what, func() (bool, string) {
			var wm string
			builds, wm = l.state()
			return wm != "" && !propagation.Newer(rv, wm), "watermark " + wm + ", want " + rv
		})
		return builds
	}
	if builds := covers("the first snapshot", policies[2].ResourceVersion); builds != 1 {
		t.Fatalf("%d builds for the first snapshot, want 1", builds)
	}

	for i, fp := range policies {
		fp.Status.Rules = int32(i + 1)
		if err := env.Client.Status().Update(ctx, fp); err != nil {
			t.Fatal(err)
		}
	}
	labelled := policies[0].DeepCopy()
	labelled.Labels = map[string]string{"team": "trust-safety"}
	if err := env.Client.Update(ctx, labelled); err != nil {
		t.Fatal(err)
	}
	if builds := covers("the status and label updates", labelled.ResourceVersion); builds != 1 {
		t.Errorf("%d builds after status-only and label updates, want still 1", builds)
	}

	spec := policies[1].DeepCopy()
	spec.Spec.Blocklists[0].Users = []string{"spam_new"}
	if err := env.Client.Update(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if builds := covers("the spec update", spec.ResourceVersion); builds != 2 {
		t.Errorf("%d builds after a spec update, want 2", builds)
	}
	if got := decide(l, "spam_new"); got != ns+"/p1/blocklist/b" {
		t.Errorf("spam_new after the spec update: %s", got)
	}
}

// startUntilCleanup runs r until the test ends, and fails the test if r returns an error.
func startUntilCleanup(ctx context.Context, t *testing.T, r interface{ Start(context.Context) error }) {
	runCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- r.Start(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Error(err)
		}
	})
}
