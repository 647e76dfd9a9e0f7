// Package replica is the webhook replica's side of the operator: it compiles the
// FriendPolicies and labelled ConfigMaps of a controller-runtime cache into engine
// snapshots, and reports through the replica's Lease (internal/propagation) which policy
// changes the snapshot in force has applied.
package replica

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/policy"
	"github.com/friendgate/friendgate/internal/propagation"
)

// DefaultDebounce coalesces bursts of events (a GitOps sync applying many policies, a
// relist) into one build.
const DefaultDebounce = 50 * time.Millisecond

// maxQuiet bounds, in debounce periods, how long a steady stream of changes holds a build
// back.
const maxQuiet = 10

// A webhook replica reads policies and lists, and writes nothing but its own Lease.
// +kubebuilder:rbac:groups=friendgate.io,resources=friendpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update;delete,namespace=friendgate-system

// CacheOptions configure a replica's cache for the Builder: FriendPolicies, and only the
// ConfigMaps labelled friendgate.io/list, without managedFields; of those ConfigMaps the
// cache keeps only what compiling needs (see trimList).
func CacheOptions() cache.Options {
	return cache.Options{
		ByObject:         map[client.Object]cache.ByObject{&corev1.ConfigMap{}: {Label: v1alpha1.ListSelector(), Transform: trimList}},
		DefaultTransform: cache.TransformStripManagedFields(),
	}
}

// trimList drops from a list ConfigMap what the compiler never reads and what would double
// a large list's memory: annotations (kubectl's last-applied-configuration holds the data
// again), binaryData and managedFields. It keeps name, namespace, labels, data, and the UID
// and resourceVersion that key the compiled lists.
func trimList(obj any) (any, error) {
	if cm, ok := obj.(*corev1.ConfigMap); ok {
		cm.Annotations, cm.BinaryData, cm.ManagedFields = nil, nil, nil
	}
	return obj, nil
}

// Builder watches a cache and calls OnSnapshot with a new snapshot after every change
// that can change what a policy enforces, and OnWatermark after a change that cannot (a
// status or metadata update of a FriendPolicy). It is a manager Runnable that runs on every
// replica, leader or not.
type Builder struct {
	// Cache holds FriendPolicies and the ConfigMaps labelled v1alpha1.LabelList.
	Cache cache.Cache
	// Options tune compilation.
	Options policy.Options
	// Log receives a line per build and per policy that does not compile.
	Log logr.Logger
	// Debounce is the quiet time before a build; 0 means DefaultDebounce.
	Debounce time.Duration
	// OnSnapshot receives every snapshot with its watermark (see internal/propagation):
	// every FriendPolicy change up to it is applied.
	OnSnapshot func(snap *policy.Snapshot, watermark string)
	// OnWatermark, if set, receives a later watermark for the snapshot in force when only
	// FriendPolicy changes that leave every spec as it was (status writes, labels) came
	// after it: the snapshot applies them as it is, with no build.
	OnWatermark func(watermark string)
	// OnInvalid, if set, is called once per policy generation that does not compile.
	OnInvalid func(key string, err error)

	compiled  map[string]*compilation
	watermark string
	pending   pending
}

// pending is what the informers delivered since the last build. One lock orders it: a
// FriendPolicy change delivered before a status-only one has set rebuild by the time the
// status-only one is seen, so the watermark never passes a change not yet built.
type pending struct {
	mu      sync.Mutex
	rebuild bool
	// seen is the highest FriendPolicy resourceVersion delivered.
	seen string
	wake chan struct{}
}

func (p *pending) note(rv string, rebuild bool) {
	p.mu.Lock()
	if propagation.Newer(rv, p.seen) {
		p.seen = rv
	}
	p.rebuild = p.rebuild || rebuild
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// wantsRebuild reports whether a change delivered since the last take needs a build.
func (p *pending) wantsRebuild() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rebuild
}

// take returns what was delivered and starts afresh.
func (p *pending) take() (rebuild bool, seen string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rebuild, seen = p.rebuild, p.seen
	p.rebuild = false
	return rebuild, seen
}

// compilation is a policy compiled, with the fingerprint of what it was compiled from, so a
// build recompiles only the policies whose spec or selected ConfigMaps changed.
type compilation struct {
	fingerprint string
	compiled    *policy.Compiled
	err         error
}

// NeedLeaderElection is false: every replica builds its own snapshot.
func (b *Builder) NeedLeaderElection() bool { return false }

// policyHandler notes FriendPolicy events: any change but one that keeps the UID and
// generation (what a policy is compiled from, see fingerprint) asks for a build.
func (b *Builder) policyHandler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if fp, ok := obj.(*v1alpha1.FriendPolicy); ok {
				b.pending.note(fp.ResourceVersion, true)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			old, okOld := oldObj.(*v1alpha1.FriendPolicy)
			cur, okCur := newObj.(*v1alpha1.FriendPolicy)
			if !okOld || !okCur || old.ResourceVersion == cur.ResourceVersion {
				return
			}
			b.pending.note(cur.ResourceVersion, old.UID != cur.UID || old.Generation != cur.Generation)
		},
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			rv := ""
			if fp, ok := obj.(*v1alpha1.FriendPolicy); ok {
				rv = fp.ResourceVersion
			}
			b.pending.note(rv, true)
		},
	}
}

// configMapHandler asks for a build on any ConfigMap change but a resync.
func (b *Builder) configMapHandler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { b.pending.note("", true) },
		UpdateFunc: func(oldObj, newObj any) {
			old, okOld := oldObj.(*corev1.ConfigMap)
			cur, okCur := newObj.(*corev1.ConfigMap)
			if okOld && okCur && old.ResourceVersion == cur.ResourceVersion {
				return
			}
			b.pending.note("", true)
		},
		DeleteFunc: func(any) { b.pending.note("", true) },
	}
}

// Start builds the first snapshot once the cache has synced, then rebuilds after changes,
// or only moves the watermark on, until ctx is done.
func (b *Builder) Start(ctx context.Context) error {
	b.pending.wake = make(chan struct{}, 1)
	var synced []toolscache.DoneChecker
	for obj, h := range map[client.Object]toolscache.ResourceEventHandler{
		&v1alpha1.FriendPolicy{}: b.policyHandler(),
		&corev1.ConfigMap{}:      b.configMapHandler(),
	} {
		// Not blocking: GetInformer would wait for each informer's sync in turn, polling
		// every 100 ms, before starting the next; both list at once instead.
		inf, err := b.Cache.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
		if err != nil {
			return fmt.Errorf("informer for %T: %w", obj, err)
		}
		reg, err := inf.AddEventHandler(h)
		if err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
		synced = append(synced, reg.HasSyncedChecker())
	}
	// Once the handlers have seen every listed object, the first build covers them all and
	// their events ask for no second one. The checkers' channels close then: polling
	// HasSynced, as WaitForCacheSync does every 100 ms, would hold a new replica back.
	for _, c := range synced {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.Done():
		}
	}
	b.Log.V(1).Info("caches synced")
	debounce := b.Debounce
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	b.compiled = map[string]*compilation{}
	for {
		if err := b.build(ctx); err != nil {
			// Only a cache read can fail here; the next event retries.
			b.Log.Error(err, "building the policy snapshot failed; the previous one stays in force")
		}
		if !b.waitForRebuild(ctx) || !b.quiet(ctx, debounce) {
			return nil
		}
	}
}

// waitForRebuild moves the watermark on after events that need no build, and returns
// true once one does, false once ctx ended.
func (b *Builder) waitForRebuild(ctx context.Context) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-b.pending.wake:
		}
		// take clears rebuild; the build lists the cache, which holds whatever asked for it.
		rebuild, seen := b.pending.take()
		if rebuild {
			return true
		}
		b.advance(seen)
	}
}

// quiet waits until no change that needs a build came for debounce, or maxQuiet passed;
// false when ctx ended. Status-only updates do not hold the build back: the controller's
// status writes for the very change being built would otherwise delay it.
func (b *Builder) quiet(ctx context.Context, debounce time.Duration) bool {
	timer := time.NewTimer(debounce)
	defer timer.Stop()
	limit := time.NewTimer(maxQuiet * debounce)
	defer limit.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-b.pending.wake:
			if b.pending.wantsRebuild() {
				timer.Reset(debounce)
			}
		case <-timer.C:
			return true
		case <-limit.C:
			return true
		}
	}
}

// advance moves the watermark of the snapshot in force to seen, when that is later.
func (b *Builder) advance(seen string) {
	if !propagation.Newer(seen, b.watermark) {
		return
	}
	b.watermark = seen
	b.Log.V(1).Info("watermark moved without a build", "watermark", seen)
	if b.OnWatermark != nil {
		b.OnWatermark(seen)
	}
}

func (b *Builder) build(ctx context.Context) error {
	start := time.Now()
	// Everything delivered so far is in the cache the lists below read.
	_, seen := b.pending.take()
	// The cache's own objects, not copies: a build only reads them, and the cache replaces
	// an object on change rather than modifying it.
	var policies v1alpha1.FriendPolicyList
	if err := b.Cache.List(ctx, &policies, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	var cms corev1.ConfigMapList
	if err := b.Cache.List(ctx, &cms, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	byNamespace := map[string][]*corev1.ConfigMap{}
	for i := range cms.Items {
		cm := &cms.Items[i]
		byNamespace[cm.Namespace] = append(byNamespace[cm.Namespace], cm)
	}

	next := make(map[string]*compilation, len(policies.Items))
	compiled := make([]*policy.Compiled, 0, len(policies.Items))
	// The watermark never goes back: a deleted policy took the highest resourceVersion away.
	watermark := b.watermark
	if propagation.Newer(seen, watermark) {
		watermark = seen
	}
	// Policies whose fingerprint changed are compiled together, in parallel, into the
	// entries made for them (fresh).
	entries := make([]*compilation, len(policies.Items))
	var jobs []policy.Job
	var fresh []*compilation
	for i := range policies.Items {
		fp := &policies.Items[i]
		if propagation.Newer(fp.ResourceVersion, watermark) {
			watermark = fp.ResourceVersion
		}
		key := fp.Namespace + "/" + fp.Name
		selected := selectedConfigMaps(fp, byNamespace[fp.Namespace])
		fingerprint := fingerprint(fp, selected)
		e, ok := b.compiled[key]
		if !ok || e.fingerprint != fingerprint {
			e = &compilation{fingerprint: fingerprint}
			jobs = append(jobs, policy.Job{Policy: fp, ConfigMaps: selected})
			fresh = append(fresh, e)
		}
		entries[i] = e
		next[key] = e
	}
	policy.CompileAll(jobs, b.Options)
	for j, e := range fresh {
		e.compiled, e.err = jobs[j].Compiled, jobs[j].Err
		if fp := jobs[j].Policy; e.err != nil {
			key := fp.Namespace + "/" + fp.Name
			b.Log.Error(e.err, "policy does not compile; it is not enforced", "policy", key, "generation", fp.Generation)
			if b.OnInvalid != nil {
				b.OnInvalid(key, e.err)
			}
		}
	}
	invalid := 0
	for _, e := range entries {
		if e.err != nil {
			invalid++
			continue
		}
		compiled = append(compiled, e.compiled)
	}
	b.compiled = next
	b.watermark = watermark
	snap := policy.NewSnapshot(compiled)
	b.Log.V(1).Info("snapshot built", "policies", len(compiled), "invalid", invalid, "recompiled", len(jobs), "watermark", watermark, "duration", time.Since(start))
	if b.OnSnapshot != nil {
		b.OnSnapshot(snap, watermark)
	}
	return nil
}

// selectedConfigMaps are the ConfigMaps of cms (those of fp's namespace) that some
// blocklist of fp selects.
func selectedConfigMaps(fp *v1alpha1.FriendPolicy, cms []*corev1.ConfigMap) []*corev1.ConfigMap {
	selectors := fp.Spec.ListSelectors()
	if len(selectors) == 0 {
		return nil
	}
	var out []*corev1.ConfigMap
	for _, cm := range cms {
		if v1alpha1.SelectsList(selectors, cm.Labels) {
			out = append(out, cm)
		}
	}
	return out
}

// fingerprint identifies what a policy is compiled from: its UID and generation, and the
// name and resourceVersion of every ConfigMap it selects.
func fingerprint(fp *v1alpha1.FriendPolicy, selected []*corev1.ConfigMap) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s/%d", fp.UID, fp.Generation)
	names := make([]string, 0, len(selected))
	for _, cm := range selected {
		names = append(names, cm.Name+"@"+cm.ResourceVersion)
	}
	slices.Sort(names)
	for _, n := range names {
		sb.WriteString(" ")
		sb.WriteString(n)
	}
	return sb.String()
}
