package status

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/policy"
	"github.com/friendgate/friendgate/internal/text"
)

// Event reasons besides the Ready reasons, and the actions events name.
const (
	// ReasonNoConfigMaps: a configMapSelector selects no labelled ConfigMap. The policy
	// is still enforced, with that list empty.
	ReasonNoConfigMaps = "NoConfigMaps"

	actionCompile       = "Compile"
	actionCountReplicas = "CountReplicas"
	actionCountLimits   = "CountLimits"
)

// Reconciler writes FriendPolicy status: Ready, counts, observedGeneration, whether
// every serving webhook replica enforces the current generation and, for a policy with
// limits, whether the replicas count them together (LimitsShared). It never writes spec.
// It also keeps the summary ConfigMap of the serving replicas (Summary).
type Reconciler struct {
	// Client reads through the manager's cache (restricted with CacheByObject) and writes status.
	Client client.Client
	// Recorder emits Events on Ready transitions, NoConfigMaps warnings and limits
	// becoming counted per replica, or no longer.
	Recorder events.EventRecorder
	// Options are the engine's compile options, the same the webhook replicas use.
	Options policy.Options
	// Replicas follows the webhook replicas' Leases.
	Replicas *Tracker
	// Clock is what replicas are counted and conditions stamped with, the Tracker's clock;
	// nil means the real clock.
	Clock clock.PassiveClock

	generations seenGenerations
	summary     *summary
}

// +kubebuilder:rbac:groups=friendgate.io,resources=friendpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=friendgate.io,resources=friendpolicies/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=friendgate-system,resources=leases,verbs=get;list;watch
// +kubebuilder:rbac:groups="";events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one FriendPolicy's status up to date.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	fp := &v1alpha1.FriendPolicy{}
	if err := r.Client.Get(ctx, req.NamespacedName, fp); err != nil {
		if apierrors.IsNotFound(err) {
			r.generations.forget(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	configMaps, err := r.listConfigMaps(ctx, fp)
	if err != nil {
		return ctrl.Result{}, err
	}
	compiled, err := policy.Compile(fp, configMaps, r.Options)
	res := classify(compiled, err)

	seen := r.generations.current(fp)
	// Both are recorded before the replicas are counted, so that a change announced
	// meanwhile enqueues the policy again rather than being lost.
	r.generations.setAwaiting(req.NamespacedName, true)
	r.generations.setHasLimits(req.NamespacedName, res.compiled != nil && len(res.compiled.Limits) > 0)
	now := r.now()
	live := r.Replicas.Live(now)
	p := reachOf(live, seen.firstReadAt)
	status := desiredStatus(fp, res, p, countingOf(liveCounting(live)), r.Replicas.Namespace(), now)
	ready := meta.FindStatusCondition(status.Conditions, v1alpha1.ConditionReady)
	r.generations.setAwaiting(req.NamespacedName, ready.Reason == v1alpha1.ReasonPropagating)

	oldReady := findCondition(fp, v1alpha1.ConditionReady)
	oldLimits := findCondition(fp, v1alpha1.ConditionLimitsShared)
	if !equality.Semantic.DeepEqual(fp.Status, status) {
		// The optimistic lock refuses a write computed from a stale cached object; the
		// conflict requeues, and the retry reads the object our last write produced.
		base := fp.DeepCopy()
		fp.Status = status
		if err := r.Client.Status().Patch(ctx, fp, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
			return ctrl.Result{}, fmt.Errorf("writing status: %w", err)
		}
	}
	r.recordEvents(fp, oldReady, res, seen)
	r.recordLimitsEvent(fp, oldLimits)
	return ctrl.Result{}, nil
}

// findCondition returns a copy of fp's condition of type typ, or nil.
func findCondition(fp *v1alpha1.FriendPolicy, typ string) *metav1.Condition {
	if c := meta.FindStatusCondition(fp.Status.Conditions, typ); c != nil {
		return c.DeepCopy()
	}
	return nil
}

// listConfigMaps returns the labelled ConfigMaps of fp's namespace, or none when no
// blocklist selects any. They are the cache's own objects, not copies (lists can be
// megabytes): Compile only reads them, and picks each blocklist's.
func (r *Reconciler) listConfigMaps(ctx context.Context, fp *v1alpha1.FriendPolicy) ([]*corev1.ConfigMap, error) {
	if len(fp.Spec.ListSelectors()) == 0 {
		return nil, nil
	}
	var list corev1.ConfigMapList
	if err := r.Client.List(ctx, &list, client.InNamespace(fp.Namespace), client.MatchingLabelsSelector{Selector: v1alpha1.ListSelector()}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing ConfigMaps: %w", err)
	}
	out := make([]*corev1.ConfigMap, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

// recordEvents emits an Event when Ready's reason or generation changed (Propagating is
// routine and gets none), and NoConfigMaps when compile warnings appear or change.
func (r *Reconciler) recordEvents(fp *v1alpha1.FriendPolicy, oldReady *metav1.Condition, res compileResult, seen seenGeneration) {
	ready := meta.FindStatusCondition(fp.Status.Conditions, v1alpha1.ConditionReady)
	if ready.Reason != v1alpha1.ReasonPropagating &&
		(oldReady == nil || oldReady.Reason != ready.Reason || oldReady.ObservedGeneration != ready.ObservedGeneration) {
		eventType, action := corev1.EventTypeWarning, actionCompile
		switch ready.Reason {
		case v1alpha1.ReasonEnforced:
			eventType, action = corev1.EventTypeNormal, actionCountReplicas
		case v1alpha1.ReasonNoReplicas:
			action = actionCountReplicas
		}
		r.Recorder.Eventf(fp, nil, eventType, ready.Reason, action, "%s", ready.Message)
	}

	var warnings []string
	if res.compiled != nil {
		warnings = res.compiled.Warnings
	}
	if len(warnings) > 0 && !slices.Equal(warnings, seen.announcedWarnings) {
		r.Recorder.Eventf(fp, nil, corev1.EventTypeWarning, ReasonNoConfigMaps, actionCompile,
			"%s", text.Truncate(joinWarnings(warnings), maxMessage))
	}
	r.generations.setAnnouncedWarnings(client.ObjectKeyFromObject(fp), seen, warnings)
}

// recordLimitsEvent emits a Warning when the policy's limits become counted per replica
// (or it is created so), and a Normal Event when they are counted together again. Other
// changes of LimitsShared are routine and get none.
func (r *Reconciler) recordLimitsEvent(fp *v1alpha1.FriendPolicy, old *metav1.Condition) {
	cur := meta.FindStatusCondition(fp.Status.Conditions, v1alpha1.ConditionLimitsShared)
	wasSplit := old != nil && old.Reason == v1alpha1.ReasonCountedPerReplica
	switch {
	case cur == nil:
	case cur.Reason == v1alpha1.ReasonCountedPerReplica && !wasSplit:
		r.Recorder.Eventf(fp, nil, corev1.EventTypeWarning, cur.Reason, actionCountLimits, "%s", cur.Message)
	case cur.Status == metav1.ConditionTrue && wasSplit:
		r.Recorder.Eventf(fp, nil, corev1.EventTypeNormal, cur.Reason, actionCountLimits, "%s", cur.Message)
	}
}

func joinWarnings(warnings []string) string {
	return strings.Join(warnings, "; ") + "; such a list stays empty until one matches"
}

func (r *Reconciler) now() time.Time {
	if r.Clock != nil {
		return r.Clock.Now()
	}
	return time.Now()
}
