// Package propagation is the contract between the webhook replicas and the controller on
// how far FriendPolicy changes have propagated: each replica owns a Lease that says it is
// alive, which FriendPolicy changes its snapshot in force has applied, and how it counts
// policies' limits (docs/operator.md, "Propagation you can wait on"). Replicas write it (internal/replica), the controller
// reads it (controllers/status); both go through this package.
package propagation

import (
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/utils/ptr"
)

const (
	// LeasePrefix starts the name of every replica Lease: friendgate-webhook-<replica-id>.
	LeasePrefix = "friendgate-webhook-"
	// ComponentLabel marks replica Leases with the value ComponentWebhookReplica.
	ComponentLabel = "friendgate.io/component"
	// ComponentWebhookReplica is the ComponentLabel value of replica Leases.
	ComponentWebhookReplica = "webhook-replica"
	// WatermarkAnnotation holds the replica's watermark: the FriendPolicy resourceVersion up
	// to which its snapshot in force has applied every change. A replica writes its Lease
	// only once its first snapshot is in force (it serves); the watermark is empty only
	// while it has seen no policy.
	WatermarkAnnotation = "friendgate.io/policies-resource-version"
	// LimitsCountingAnnotation holds how the replica counts policies' limits at the
	// moment: CountingShared or CountingLocal. Replicas older than it leave it out.
	LimitsCountingAnnotation = "friendgate.io/limits-counting"
	// DefaultLeaseDuration is how long a replica counts as alive after its last renewal
	// when its Lease does not say.
	DefaultLeaseDuration = 30 * time.Second
)

// Counting is how a replica counts requests against policies' limits.
type Counting string

const (
	// CountingShared counts through Redis, in counters every replica configured alike shares.
	CountingShared Counting = "Shared"
	// CountingLocal counts in the replica's own memory, without Redis or while Redis fails.
	CountingLocal Counting = "Local"
	// CountingUnknown is a Lease that does not say (a replica older than the annotation).
	// Such a replica may count alone, and is taken to.
	CountingUnknown Counting = ""
)

// Alone reports whether a replica counting so may keep counts of its own: it counts in
// memory, or does not say how it counts.
func (c Counting) Alone() bool { return c != CountingShared }

// countingOf reads the annotation's value; a value this version does not know counts as
// CountingUnknown.
func countingOf(v string) Counting {
	switch c := Counting(v); c {
	case CountingShared, CountingLocal:
		return c
	}
	return CountingUnknown
}

// LeaseName is the name of the Lease of the replica with the given ID (its pod name).
func LeaseName(id string) string { return LeasePrefix + id }

// LeaseSelector selects the replica Leases.
func LeaseSelector() labels.Selector {
	return labels.SelectorFromSet(labels.Set{ComponentLabel: ComponentWebhookReplica})
}

// Report is what a replica writes into its Lease at each renewal.
type Report struct {
	// ID is the replica's identity: the Lease's holderIdentity.
	ID string
	// Watermark is the FriendPolicy resourceVersion up to which the snapshot in force has
	// applied every change, "" while the replica has seen no policy.
	Watermark string
	// LimitsCounting is how the replica counts limits at the moment; CountingUnknown
	// leaves the annotation out.
	LimitsCounting Counting
	// Renewed is when the replica renewed; it counts as alive for Duration after it
	// (whole seconds: the Lease's leaseDurationSeconds).
	Renewed  time.Time
	Duration time.Duration
}

// Write sets what r says in l: the replica label, the watermark, how limits are counted,
// the holder, the duration and the renew time. The rest of l (owner references, acquire time) is the writer's.
func (r Report) Write(l *coordinationv1.Lease) {
	if l.Labels == nil {
		l.Labels = map[string]string{}
	}
	l.Labels[ComponentLabel] = ComponentWebhookReplica
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[WatermarkAnnotation] = r.Watermark
	if r.LimitsCounting == CountingUnknown {
		delete(l.Annotations, LimitsCountingAnnotation)
	} else {
		l.Annotations[LimitsCountingAnnotation] = string(r.LimitsCounting)
	}
	l.Spec.HolderIdentity = ptr.To(r.ID)
	l.Spec.LeaseDurationSeconds = ptr.To(int32(r.Duration / time.Second))
	l.Spec.RenewTime = ptr.To(metav1.NewMicroTime(r.Renewed))
}

// Status is what a replica Lease says, as the controller reads it.
type Status struct {
	// ID is the replica's identity (the Lease's holderIdentity).
	ID string
	// Expires is when the replica stops counting as alive unless it renews.
	Expires time.Time
	// Watermark is the replica's watermark, "" while it has seen no policy.
	Watermark string
	// LimitsCounting is how the replica counts limits, CountingUnknown when its Lease
	// does not say.
	LimitsCounting Counting
}

// FromLease reads a replica Lease. ok is false for a Lease that is not a replica's or
// has never been renewed.
func FromLease(l *coordinationv1.Lease) (s Status, ok bool) {
	if l.Labels[ComponentLabel] != ComponentWebhookReplica || l.Spec.RenewTime == nil || l.Spec.HolderIdentity == nil {
		return Status{}, false
	}
	d := DefaultLeaseDuration
	if l.Spec.LeaseDurationSeconds != nil {
		d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	return Status{
		ID:             *l.Spec.HolderIdentity,
		Expires:        l.Spec.RenewTime.Add(d),
		Watermark:      l.Annotations[WatermarkAnnotation],
		LimitsCounting: countingOf(l.Annotations[LimitsCountingAnnotation]),
	}, true
}

// Alive reports whether the replica counts as alive at now.
func (s Status) Alive(now time.Time) bool { return now.Before(s.Expires) }

// Enforces reports whether the replica's snapshot has applied a FriendPolicy that was
// read at resourceVersion rv, that is, enforces the generation that was current then.
func (s Status) Enforces(rv string) bool {
	if s.Watermark == "" {
		return false
	}
	c, err := resourceversion.CompareResourceVersion(s.Watermark, rv)
	return err == nil && c >= 0
}

// Newer reports whether resourceVersion a is later than b; an invalid or empty version is
// older than any valid one. A watermark is the Newer-most resourceVersion of the
// FriendPolicy changes a replica has applied.
func Newer(a, b string) bool {
	c, err := resourceversion.CompareResourceVersion(a, b)
	if err == nil {
		return c > 0
	}
	_, errA := resourceversion.CompareResourceVersion(a, a)
	return errA == nil
}
