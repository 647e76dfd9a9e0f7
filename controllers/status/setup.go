package status

import (
	"context"
	"errors"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

// ControllerName names the controller in logs and metrics.
const ControllerName = "friendpolicy-status"

// SetupWithManager registers the reconciler with mgr. Reconciles are triggered by:
//   - a FriendPolicy's generation changing (or its creation or deletion). Status writes,
//     ours included, leave the generation alone, so they cannot loop;
//   - a labelled ConfigMap that a policy's configMapSelector selects, before or after
//     the change, being created, edited, relabelled or deleted;
//   - the Tracker announcing a change among the serving webhook replicas (or of how they
//     count limits), for the policies it can affect only.
//
// It also runs, on the leader, the writer of the summary ConfigMap (SummaryName).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil || r.Recorder == nil || r.Replicas == nil {
		return errors.New("status reconciler: Client, Recorder and Replicas are required")
	}
	registerMetrics()
	r.summary = newSummary(mgr.GetClient(), r.Replicas.Namespace(), r.Replicas.clock, mgr.GetLogger().WithName("replica-summary"))
	if err := mgr.Add(r.summary); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		For(&v1alpha1.FriendPolicy{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.ConfigMap{}, r.configMapHandler()).
		WatchesRawSource(r.Replicas.Source(handler.TypedEnqueueRequestsFromMapFunc(r.policiesForReplicaChange))).
		Complete(r)
}

// configMapHandler enqueues the policies that select a ConfigMap. On update it looks at
// both the old and the new labels, so a policy that loses a ConfigMap is recounted too.
func (r *Reconciler) configMapHandler() handler.EventHandler {
	type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q queue) {
			r.enqueueSelecting(ctx, q, e.Object)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q queue) {
			old, cur := e.ObjectOld.(*corev1.ConfigMap), e.ObjectNew.(*corev1.ConfigMap)
			// Blocklists read only labels and data: skip resyncs and annotation edits.
			if maps.Equal(old.Labels, cur.Labels) && maps.Equal(old.Data, cur.Data) {
				return
			}
			r.enqueueSelecting(ctx, q, old, cur)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q queue) {
			r.enqueueSelecting(ctx, q, e.Object)
		},
		GenericFunc: func(ctx context.Context, e event.GenericEvent, q queue) {
			r.enqueueSelecting(ctx, q, e.Object)
		},
	}
}

// enqueueSelecting enqueues the policies in the ConfigMaps' namespace that select any of
// them. A ConfigMap without the friendgate.io/list label is invisible to blocklists.
func (r *Reconciler) enqueueSelecting(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request], cms ...client.Object) {
	if !slices.ContainsFunc(cms, func(cm client.Object) bool { return v1alpha1.ListSelector().Matches(labels.Set(cm.GetLabels())) }) {
		return
	}
	var list v1alpha1.FriendPolicyList
	if err := r.Client.List(ctx, &list, client.InNamespace(cms[0].GetNamespace())); err != nil {
		log.FromContext(ctx).Error(err, "listing FriendPolicies for a ConfigMap change", "namespace", cms[0].GetNamespace())
		return
	}
	for i := range list.Items {
		fp := &list.Items[i]
		selectors := fp.Spec.ListSelectors()
		if slices.ContainsFunc(cms, func(cm client.Object) bool { return v1alpha1.SelectsList(selectors, cm.GetLabels()) }) {
			q.Add(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(fp)})
		}
	}
}

// policiesForReplicaChange maps a Tracker announcement to the policies it may affect
// (seenGenerations.affectedBy), from memory: no policy is listed or read. It also passes
// membership changes, and changes of how replicas count limits, on to the summary
// ConfigMap.
func (r *Reconciler) policiesForReplicaChange(_ context.Context, c Change) []reconcile.Request {
	if c.CountingChanged() {
		r.summary.set(c)
	}
	keys := r.generations.affectedBy(c)
	reqs := make([]reconcile.Request, len(keys))
	for i, key := range keys {
		reqs[i] = reconcile.Request{NamespacedName: key}
	}
	return reqs
}
