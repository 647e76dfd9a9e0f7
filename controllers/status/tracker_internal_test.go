package status

import (
	"context"
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

// TestTrackerAnnouncements drives the Tracker's Lease handler and checks what each step
// announces: membership changes and regressions concern every policy, forward watermarks
// only the propagating ones, and renewals nothing.
func TestTrackerAnnouncements(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	type step struct {
		name  string
		at    time.Time
		apply func(tr *Tracker)
		want  *Change // nil: nothing announced
		next  time.Time
	}
	all, forward := &Change{AllPolicies: true}, &Change{}
	steps := []step{
		{"pod-a joins", t0, func(tr *Tracker) { tr.set(replicaLease("pod-a", "10", t0, 30*time.Second)) }, all, t0.Add(30 * time.Second)},
		{"pod-b joins before its first snapshot", t0, func(tr *Tracker) { tr.set(replicaLease("pod-b", "", t0, 10*time.Second)) }, all, t0.Add(10 * time.Second)},
		{"pod-a renews", t0.Add(time.Second), func(tr *Tracker) { tr.set(replicaLease("pod-a", "10", t0.Add(time.Second), 30*time.Second)) }, nil, t0.Add(10 * time.Second)},
		{"pod-b loads its first snapshot", t0.Add(2 * time.Second), func(tr *Tracker) { tr.set(replicaLease("pod-b", "12", t0, 10*time.Second)) }, forward, t0.Add(10 * time.Second)},
		{"pod-a moves forward", t0.Add(2 * time.Second), func(tr *Tracker) { tr.set(replicaLease("pod-a", "12", t0.Add(time.Second), 30*time.Second)) }, forward, t0.Add(10 * time.Second)},
		{"pod-a restarts under its name", t0.Add(3 * time.Second), func(tr *Tracker) { tr.set(replicaLease("pod-a", "", t0.Add(3*time.Second), 30*time.Second)) }, all, t0.Add(10 * time.Second)},
		{"nothing happened", t0.Add(9 * time.Second), func(*Tracker) {}, nil, t0.Add(10 * time.Second)},
		{"pod-b expires", t0.Add(10 * time.Second), func(*Tracker) {}, all, t0.Add(33 * time.Second)},
		{"a Lease that is not a replica's", t0.Add(11 * time.Second), func(tr *Tracker) {
			l := replicaLease("other", "12", t0.Add(11*time.Second), 30*time.Second)
			l.Labels = nil
			tr.set(l)
		}, nil, t0.Add(33 * time.Second)},
		{"a replica Lease in another namespace", t0.Add(11 * time.Second), func(tr *Tracker) {
			l := replicaLease("elsewhere", "12", t0.Add(11*time.Second), 30*time.Second)
			l.Namespace = "other"
			tr.set(l)
		}, nil, t0.Add(33 * time.Second)},
		{"pod-b comes back", t0.Add(12 * time.Second), func(tr *Tracker) { tr.set(replicaLease("pod-b", "12", t0.Add(12*time.Second), 10*time.Second)) }, all, t0.Add(22 * time.Second)},
		{"pod-a deletes its Lease on shutdown", t0.Add(13 * time.Second), func(tr *Tracker) {
			tr.remove(toolscache.DeletedFinalStateUnknown{Obj: replicaLease("pod-a", "", t0, time.Second)})
		}, all, t0.Add(22 * time.Second)},
		{"pod-b expires too", t0.Add(22 * time.Second), func(*Tracker) {}, all, time.Time{}},
	}

	tr := NewTracker(nil, trackerNS, clock.RealClock{})
	for _, s := range steps {
		s.apply(tr)
		c, changed, next := tr.refresh(s.at)
		switch {
		case s.want == nil && changed:
			t.Errorf("%s: announced %+v, want nothing", s.name, c)
		case s.want != nil && !changed:
			t.Errorf("%s: announced nothing, want %+v", s.name, *s.want)
		case s.want != nil && c != *s.want:
			t.Errorf("%s: announced %+v, want %+v", s.name, c, *s.want)
		}
		if !next.Equal(s.next) {
			t.Errorf("%s: next expiry %v, want %v", s.name, next, s.next)
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
	all, forward := Change{AllPolicies: true}, Change{}

	testenv.Eventually(t, 10*time.Second, "the Tracker to wait for pod-a's expiry", func() (bool, string) {
		return clk.HasWaiters(), "no timer on the clock"
	})

	// Halfway to the expiry nothing is announced: the watermark move made afterwards is
	// the next announcement, not an expiry.
	clk.Step(time.Second)
	tr.set(replicaLease("pod-a", "11", t0, 2*time.Second))
	if c := next("pod-a moves forward"); c != forward {
		t.Fatalf("pod-a moves forward a second before its expiry: announced %+v, want %+v", c, forward)
	}

	clk.Step(time.Second)
	if c := next("pod-a expires"); c != all {
		t.Fatalf("pod-a expires: announced %+v, want %+v", c, all)
	}
	if live := tr.Live(clk.Now()); len(live) != 0 {
		t.Errorf("Live after the expiry = %+v, want none", live)
	}
}
