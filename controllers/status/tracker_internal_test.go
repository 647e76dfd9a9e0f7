package status

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/friendgate/friendgate/internal/propagation"
	"github.com/friendgate/friendgate/internal/testenv"
)

const trackerNS = "friendgate-system"

func replicaLease(id, watermark string, renewed time.Time, duration time.Duration) *coordinationv1.Lease {
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: trackerNS, Name: propagation.LeaseName(id)}}
	propagation.Report{ID: id, Watermark: watermark, Renewed: renewed, Duration: duration}.Write(l)
	return l
}

// summarize says what a Change tells the reconciler: whether replicas joined or left,
// whether the count crossed zero, and the watermarks of the joiners.
func summarize(c Change) string {
	joined := c.Joined()
	slices.Sort(joined)
	return fmt.Sprintf("membership=%v zero=%v joined=%q", c.MembershipChanged(), c.CrossesZero(), joined)
}

// TestTrackerAnnouncements drives the Tracker's Lease handler and checks what each step
// announces: joins with the joiner's watermark, leaves, forward watermarks, regressions
// (a restart under the same name counts as a join), and renewals nothing.
func TestTrackerAnnouncements(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	type step struct {
		name  string
		at    time.Time
		apply func(tr *Tracker)
		want  string // summarize of the announcement; "": nothing announced
		next  time.Time
	}
	const (
		forward = `membership=false zero=false joined=[]`
		left    = `membership=true zero=false joined=[]`
	)
	steps := []step{
		{"pod-a joins", t0, func(tr *Tracker) { tr.set(replicaLease("pod-a", "10", t0, 30*time.Second)) }, `membership=true zero=true joined=["10"]`, t0.Add(30 * time.Second)},
		{"pod-b joins", t0, func(tr *Tracker) { tr.set(replicaLease("pod-b", "11", t0, 10*time.Second)) }, `membership=true zero=false joined=["11"]`, t0.Add(10 * time.Second)},
		{"pod-a renews", t0.Add(time.Second), func(tr *Tracker) { tr.set(replicaLease("pod-a", "10", t0.Add(time.Second), 30*time.Second)) }, "", t0.Add(10 * time.Second)},
		{"pod-b moves forward", t0.Add(2 * time.Second), func(tr *Tracker) { tr.set(replicaLease("pod-b", "12", t0, 10*time.Second)) }, forward, t0.Add(10 * time.Second)},
		{"pod-a moves forward", t0.Add(2 * time.Second), func(tr *Tracker) { tr.set(replicaLease("pod-a", "12", t0.Add(time.Second), 30*time.Second)) }, forward, t0.Add(10 * time.Second)},
		{"pod-a restarts under its name, behind", t0.Add(3 * time.Second), func(tr *Tracker) { tr.set(replicaLease("pod-a", "9", t0.Add(3*time.Second), 30*time.Second)) }, `membership=false zero=false joined=["9"]`, t0.Add(10 * time.Second)},
		{"nothing happened", t0.Add(9 * time.Second), func(*Tracker) {}, "", t0.Add(10 * time.Second)},
		{"pod-b expires", t0.Add(10 * time.Second), func(*Tracker) {}, left, t0.Add(33 * time.Second)},
		{"a Lease that is not a replica's", t0.Add(11 * time.Second), func(tr *Tracker) {
			l := replicaLease("other", "12", t0.Add(11*time.Second), 30*time.Second)
			l.Labels = nil
			tr.set(l)
		}, "", t0.Add(33 * time.Second)},
		{"a replica Lease in another namespace", t0.Add(11 * time.Second), func(tr *Tracker) {
			l := replicaLease("elsewhere", "12", t0.Add(11*time.Second), 30*time.Second)
			l.Namespace = "other"
			tr.set(l)
		}, "", t0.Add(33 * time.Second)},
		{"pod-b comes back", t0.Add(12 * time.Second), func(tr *Tracker) { tr.set(replicaLease("pod-b", "12", t0.Add(12*time.Second), 10*time.Second)) }, `membership=true zero=false joined=["12"]`, t0.Add(22 * time.Second)},
		{"pod-a deletes its Lease on shutdown", t0.Add(13 * time.Second), func(tr *Tracker) {
			tr.remove(toolscache.DeletedFinalStateUnknown{Obj: replicaLease("pod-a", "", t0, time.Second)})
		}, left, t0.Add(22 * time.Second)},
		{"pod-b expires too", t0.Add(22 * time.Second), func(*Tracker) {}, `membership=true zero=true joined=[]`, time.Time{}},
	}

	tr := NewTracker(nil, trackerNS, clock.RealClock{})
	for _, s := range steps {
		s.apply(tr)
		c, changed, next := tr.refresh(s.at)
		got := ""
		if changed {
			got = summarize(c)
		}
		if got != s.want {
			t.Errorf("%s: announced %q, want %q", s.name, got, s.want)
		}
		if !next.Equal(s.next) {
			t.Errorf("%s: next expiry %v, want %v", s.name, next, s.next)
		}
	}
}

// TestTrackerAnnouncesLimitsCounting: a replica that starts or stops counting through Redis
// is announced, renewals are not, and the announcement says whether the policies with
// limits need a new LimitsShared condition.
func TestTrackerAnnouncesLimitsCounting(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	lease := func(id string, counting propagation.Counting, renewed time.Time) *coordinationv1.Lease {
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: trackerNS, Name: propagation.LeaseName(id)}}
		propagation.Report{ID: id, Watermark: "10", LimitsCounting: counting, Renewed: renewed, Duration: 30 * time.Second}.Write(l)
		return l
	}
	tr := NewTracker(nil, trackerNS, clock.RealClock{})
	tr.set(lease("pod-a", propagation.CountingShared, t0))
	tr.set(lease("pod-b", propagation.CountingShared, t0))
	tr.refresh(t0)
	for _, s := range []struct {
		name string
		at   time.Time
		set  *coordinationv1.Lease
		// want: announced, CountingChanged, LimitsCountingChanged
		announced, counting, limits bool
	}{
		{"pod-a renews", t0.Add(time.Second), lease("pod-a", propagation.CountingShared, t0.Add(time.Second)), false, false, false},
		{"pod-a's Redis fails", t0.Add(2 * time.Second), lease("pod-a", propagation.CountingLocal, t0.Add(2*time.Second)), true, true, true},
		{"pod-a renews, still alone", t0.Add(3 * time.Second), lease("pod-a", propagation.CountingLocal, t0.Add(3*time.Second)), false, false, false},
		{"pod-b's fails too: the count in the message", t0.Add(4 * time.Second), lease("pod-b", propagation.CountingLocal, t0.Add(4*time.Second)), true, true, true},
		{"pod-a's Redis answers: one alone again", t0.Add(5 * time.Second), lease("pod-a", propagation.CountingShared, t0.Add(5*time.Second)), true, true, true},
		{"which one is alone changes, not how many", t0.Add(6 * time.Second), nil, true, true, false},
	} {
		if s.set != nil {
			tr.set(s.set)
		} else {
			tr.set(lease("pod-a", propagation.CountingLocal, s.at))
			tr.set(lease("pod-b", propagation.CountingShared, s.at))
		}
		c, changed, _ := tr.refresh(s.at)
		if changed != s.announced || (changed && (c.CountingChanged() != s.counting || c.LimitsCountingChanged() != s.limits)) {
			t.Errorf("%s: announced %v, counting changed %v, LimitsShared changed %v; want %v, %v, %v",
				s.name, changed, c.CountingChanged(), c.LimitsCountingChanged(), s.announced, s.counting, s.limits)
		}
	}
}

func TestTrackerLive(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	tr := NewTracker(nil, trackerNS, clock.RealClock{})
	tr.set(replicaLease("pod-c", "5", t0, 30*time.Second))
	tr.set(replicaLease("pod-a", "5", t0, 30*time.Second))
	tr.set(replicaLease("pod-b", "5", t0.Add(-time.Minute), 30*time.Second))
	var ids []string
	for _, s := range tr.Live(t0) {
		ids = append(ids, s.ID)
	}
	if len(ids) != 2 || ids[0] != "pod-a" || ids[1] != "pod-c" {
		t.Errorf("Live = %v, want [pod-a pod-c] (pod-b expired)", ids)
	}
}

// TestTrackerNoticesExpiry runs the Tracker on a fake clock: a replica's expiry is
// announced when the clock reaches it, with no Lease event, and not before.
func TestTrackerNoticesExpiry(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(t0)
	tr := NewTracker(nil, trackerNS, clk)
	// pod-a is in the baseline run starts from.
	tr.set(replicaLease("pod-a", "10", t0, 2*time.Second))
	announced := make(chan Change, 8)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tr.run(ctx, func(c Change) { announced <- c })
	}()
	t.Cleanup(func() { cancel(); <-stopped })
	next := func(what string) Change {
		t.Helper()
		select {
		case c := <-announced:
			return c
		case <-time.After(10 * time.Second):
			t.Fatalf("no announcement: %s", what)
			return Change{}
		}
	}
	const (
		forward = `membership=false zero=false joined=[]`
		expired = `membership=true zero=true joined=[]`
	)
	if c := next("the state at the start"); !c.Initial || summarize(c) != `membership=true zero=true joined=["10"]` {
		t.Fatalf("first announcement %+v, want the initial state with pod-a", c)
	}

	testenv.Eventually(t, 10*time.Second, "the Tracker to wait for pod-a's expiry", func() (bool, string) {
		return clk.HasWaiters(), "no timer on the clock"
	})

	// Halfway to the expiry nothing is announced: the watermark move made afterwards is
	// the next announcement, not an expiry.
	clk.Step(time.Second)
	tr.set(replicaLease("pod-a", "11", t0, 2*time.Second))
	if c := next("pod-a moves forward"); summarize(c) != forward {
		t.Fatalf("pod-a moves forward a second before its expiry: announced %s, want %s", summarize(c), forward)
	}

	clk.Step(time.Second)
	if c := next("pod-a expires"); summarize(c) != expired {
		t.Fatalf("pod-a expires: announced %s, want %s", summarize(c), expired)
	}
	if live := tr.Live(clk.Now()); len(live) != 0 {
		t.Errorf("Live after the expiry = %+v, want none", live)
	}
}
