package replica

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/friendgate/friendgate/internal/propagation"
)

// minReportInterval bounds how often a replica writes its Lease when its snapshot
// changes, so a burst of policy changes costs the API server one write a second per
// replica, not one per change.
const minReportInterval = time.Second

// countingCheckInterval is how often a replica looks whether it counts limits differently
// (Redis failed or answers again). Looking costs an atomic load; a change is written at
// once, paced by minReportInterval like a new watermark, so a flapping Redis costs at
// most one Lease write a second per replica.
const countingCheckInterval = time.Second

// LeaseReporter keeps the replica's Lease: created once the first snapshot is in force,
// renewed every third of Duration, updated with the watermark of the snapshot in force
// and with how limits are counted, deleted on shutdown. It is a manager Runnable
// that runs on every replica.
type LeaseReporter struct {
	// Client writes the Lease; Reader reads it (the manager's API reader: the replica
	// does not cache Leases).
	Client client.Client
	Reader client.Reader
	// Namespace and ID name the Lease (propagation.LeaseName(ID)).
	Namespace, ID string
	// Duration is how long the replica counts as alive after a renewal; 0 means
	// propagation.DefaultLeaseDuration.
	Duration time.Duration
	// Clock paces renewals and writes, and stamps them; nil means the real clock.
	Clock clock.WithTicker
	// PodName and PodUID, when set, make the Pod the Lease's owner, so the garbage
	// collector deletes the Lease of a Pod that is gone.
	PodName string
	PodUID  types.UID
	// LimitsCounting says how the replica counts limits at the moment; it is called at
	// each write and every countingCheckInterval, and must be cheap. nil leaves the Lease
	// without the annotation (propagation.CountingUnknown).
	LimitsCounting func() propagation.Counting
	Log            logr.Logger

	mu        sync.Mutex
	watermark string
	changed   chan struct{}
}

// NeedLeaderElection is false: every replica reports.
func (r *LeaseReporter) NeedLeaderElection() bool { return false }

// SetWatermark records the watermark of the snapshot now in force; the Lease is updated
// soon after.
func (r *LeaseReporter) SetWatermark(rv string) {
	r.mu.Lock()
	r.watermark = rv
	ch := r.signal()
	r.mu.Unlock()
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (r *LeaseReporter) signal() chan struct{} {
	if r.changed == nil {
		r.changed = make(chan struct{}, 1)
	}
	return r.changed
}

func (r *LeaseReporter) current() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.watermark
}

// Start writes the Lease from the first SetWatermark until ctx is done, then deletes it so
// the controller stops counting this replica at once rather than after the Lease expires.
func (r *LeaseReporter) Start(ctx context.Context) error {
	if r.Duration <= 0 {
		r.Duration = propagation.DefaultLeaseDuration
	}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	r.mu.Lock()
	changed := r.signal()
	r.mu.Unlock()
	// A replica counts once it serves: the Lease is written first with the watermark of
	// the first snapshot, the moment /readyz turns OK, so the controller never sees a
	// joining replica behind on policies that did not change.
	select {
	case <-ctx.Done():
		return nil
	case <-changed:
	}
	renew := r.Clock.NewTicker(r.Duration / 3)
	defer renew.Stop()
	var check <-chan time.Time
	if r.LimitsCounting != nil {
		t := r.Clock.NewTicker(countingCheckInterval)
		defer t.Stop()
		check = t.C()
	}
	for {
		report := r.report()
		if err := r.write(ctx, report); err != nil {
			// The API server may be away; the next tick retries. Decisions do not depend on it.
			r.Log.Error(err, "writing the replica Lease failed", "lease", propagation.LeaseName(r.ID))
		}
		if !r.waitForWrite(ctx, renew.C(), check, changed, report) {
			r.delete()
			return nil
		}
	}
}

// waitForWrite returns true when the Lease is due to be written again: the renewal is
// due, or the watermark or the way limits are counted changed, no sooner than
// minReportInterval after the last write (written). It returns false once ctx is done.
func (r *LeaseReporter) waitForWrite(ctx context.Context, renew, check <-chan time.Time, changed <-chan struct{}, written propagation.Report) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-renew:
			return true
		case <-changed:
		case <-check:
			if r.LimitsCounting() == written.LimitsCounting {
				continue
			}
		}
		// From the write's own time, not from when this wait began: a change that came
		// while the write was on its way is written as soon as the interval allows.
		if wait := minReportInterval - r.Clock.Since(written.Renewed); wait > 0 {
			select {
			case <-ctx.Done():
				return false
			case <-r.Clock.After(wait):
			}
		}
		return true
	}
}

// report is what the Lease is to say now.
func (r *LeaseReporter) report() propagation.Report {
	report := propagation.Report{ID: r.ID, Watermark: r.current(), Renewed: r.Clock.Now(), Duration: r.Duration}
	if r.LimitsCounting != nil {
		report.LimitsCounting = r.LimitsCounting()
	}
	return report
}

func (r *LeaseReporter) write(ctx context.Context, report propagation.Report) error {
	ctx, cancel := context.WithTimeout(ctx, r.Duration/3)
	defer cancel()
	key := client.ObjectKey{Namespace: r.Namespace, Name: propagation.LeaseName(r.ID)}
	var lease coordinationv1.Lease
	err := r.Reader.Get(ctx, key, &lease)
	if apierrors.IsNotFound(err) {
		lease = coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
		r.fill(&lease, report)
		lease.Spec.AcquireTime = lease.Spec.RenewTime
		return r.Client.Create(ctx, &lease)
	}
	if err != nil {
		return err
	}
	r.fill(&lease, report)
	return r.Client.Update(ctx, &lease)
}

// fill writes the report into l, owned by the replica's Pod when it is known.
func (r *LeaseReporter) fill(l *coordinationv1.Lease, report propagation.Report) {
	report.Write(l)
	if r.PodName != "" && r.PodUID != "" {
		l.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: "v1", Kind: "Pod", Name: r.PodName, UID: r.PodUID,
		}}
	}
}

// delete removes the Lease with a short deadline of its own, since ctx is already done.
func (r *LeaseReporter) delete() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: propagation.LeaseName(r.ID)}}
	if err := r.Client.Delete(ctx, lease); err != nil && !apierrors.IsNotFound(err) {
		r.Log.Error(err, "deleting the replica Lease failed; it expires by itself", "lease", lease.Name)
	}
}
