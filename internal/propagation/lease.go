// Package replica is the contract between webhook replicas and the controller: each
// replica owns a Lease that says it is alive and which FriendPolicy changes its snapshot
// has applied (docs/operator.md, "Propagation you can wait on").
package replica

import (
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/resourceversion"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

const (
	// LeasePrefix starts the name of every replica Lease: friendgate-webhook-<replica-id>.
	LeasePrefix = "friendgate-webhook-"
	// ComponentLabel marks replica Leases with the value ComponentWebhookReplica.
	ComponentLabel = "friendgate.io/component"
	// ComponentWebhookReplica is the ComponentLabel value of replica Leases.
	ComponentWebhookReplica = "webhook-replica"
	// PoliciesResourceVersionAnnotation holds the highest resourceVersion among the
	// FriendPolicies in the replica's snapshot in force.
	PoliciesResourceVersionAnnotation = "friendgate.io/policies-resource-version"
	// DefaultLeaseDuration is how long a replica counts as alive after its last renewal.
	DefaultLeaseDuration = 30 * time.Second
)

// LeaseName is the name of the Lease of the replica with the given ID (its pod name).
func LeaseName(id string) string { return LeasePrefix + id }

// Status is what a replica Lease says.
type Status struct {
	// ID is the replica's identity (the Lease's holderIdentity).
	ID string
	// Expires is when the replica stops counting as alive unless it renews.
	Expires time.Time
	// PoliciesResourceVersion is the replica's watermark, "" before its first snapshot.
	PoliciesResourceVersion string
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
		ID:                      *l.Spec.HolderIdentity,
		Expires:                 l.Spec.RenewTime.Add(d),
		PoliciesResourceVersion: l.Annotations[PoliciesResourceVersionAnnotation],
	}, true
}

// Alive reports whether the replica counts as alive at now.
func (s Status) Alive(now time.Time) bool { return now.Before(s.Expires) }

// Enforces reports whether the replica's snapshot has applied a FriendPolicy that was
// read at resourceVersion rv, that is, enforces the generation that was current then.
func (s Status) Enforces(rv string) bool {
	if s.PoliciesResourceVersion == "" {
		return false
	}
	c, err := resourceversion.CompareResourceVersion(s.PoliciesResourceVersion, rv)
	return err == nil && c >= 0
}

// Newer reports whether resourceVersion a is later than b; an invalid or empty version is
// older than any valid one.
func Newer(a, b string) bool {
	c, err := resourceversion.CompareResourceVersion(a, b)
	if err == nil {
		return c > 0
	}
	_, errA := resourceversion.CompareResourceVersion(a, a)
	return errA == nil
}

// ListSelector selects the ConfigMaps blocklists may read, those labelled
// friendgate.io/list whatever the value: the only ConfigMaps replicas and the controller
// watch, so the API server filters and neither holds the cluster's other ConfigMaps.
func ListSelector() labels.Selector {
	req, err := labels.NewRequirement(v1alpha1.LabelList, selection.Exists, nil)
	if err != nil {
		panic(err) // LabelList is a valid label key
	}
	return labels.NewSelector().Add(*req)
}
