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

// A webhook replica reads policies and lists, and writes nothing but its own Lease.
// +kubebuilder:rbac:groups=friendgate.io,resources=friendpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update;delete,namespace=friendgate-system

// CacheOptions configure a replica's cache for the Builder: FriendPolicies, and only the
// ConfigMaps labelled friendgate.io/list, without managedFields.
func CacheOptions() cache.Options {
	return cache.Options{
		ByObject:         map[client.Object]cache.ByObject{&corev1.ConfigMap{}: {Label: v1alpha1.ListSelector()}},
		DefaultTransform: cache.TransformStripManagedFields(),
	}
}

// Builder watches a cache and calls OnSnapshot with a new snapshot after every change. It
// is a manager Runnable that runs on every replica, leader or not.
type Builder struct {
	// Cache holds FriendPolicies and the ConfigMaps labelled v1alpha1.LabelList.
	Cache cache.Cache
	// Options tune compilation.
	Options policy.Options
	// Log receives a line per build and per policy that does not compile.
	Log logr.Logger
	// Debounce is the quiet time before a build; 0 means DefaultDebounce.
	Debounce time.Duration
	// OnSnapshot receives every snapshot with the highest resourceVersion among the
	// FriendPolicies it was built from (its watermark, see internal/propagation).
	OnSnapshot func(snap *policy.Snapshot, watermark string)
	// OnInvalid, if set, is called once per policy generation that does not compile.
	OnInvalid func(key string, err error)

	compiled map[string]*compilation
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

// Start builds the first snapshot once the cache has synced, then rebuilds after changes
// until ctx is done.
func (b *Builder) Start(ctx context.Context) error {
	dirty := make(chan struct{}, 1)
	mark := func() {
		select {
		case dirty <- struct{}{}:
		default:
		}
	}
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { mark() },
		UpdateFunc: func(any, any) { mark() },
		DeleteFunc: func(any) { mark() },
	}
	for _, obj := range []client.Object{&v1alpha1.FriendPolicy{}, &corev1.ConfigMap{}} {
		inf, err := b.Cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("informer for %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
	}
	if !b.Cache.WaitForCacheSync(ctx) {
		return ctx.Err()
	}
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
		select {
		case <-ctx.Done():
			return nil
		case <-dirty:
		}
		timer := time.NewTimer(debounce)
	quiet:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case <-dirty:
				timer.Reset(debounce)
			case <-timer.C:
				break quiet
			}
		}
	}
}

func (b *Builder) build(ctx context.Context) error {
	var policies v1alpha1.FriendPolicyList
	if err := b.Cache.List(ctx, &policies); err != nil {
		return err
	}
	var cms corev1.ConfigMapList
	if err := b.Cache.List(ctx, &cms); err != nil {
		return err
	}
	byNamespace := map[string][]*corev1.ConfigMap{}
	for i := range cms.Items {
		cm := &cms.Items[i]
		byNamespace[cm.Namespace] = append(byNamespace[cm.Namespace], cm)
	}

	next := make(map[string]*compilation, len(policies.Items))
	compiled := make([]*policy.Compiled, 0, len(policies.Items))
	watermark := ""
	recompiled, invalid := 0, 0
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
			c, err := policy.Compile(fp, selected, b.Options)
			e = &compilation{fingerprint: fingerprint, compiled: c, err: err}
			recompiled++
			if err != nil {
				b.Log.Error(err, "policy does not compile; it is not enforced", "policy", key, "generation", fp.Generation)
				if b.OnInvalid != nil {
					b.OnInvalid(key, err)
				}
			}
		}
		next[key] = e
		if e.err != nil {
			invalid++
			continue
		}
		compiled = append(compiled, e.compiled)
	}
	b.compiled = next
	snap := policy.NewSnapshot(compiled)
	b.Log.V(1).Info("snapshot built", "policies", len(compiled), "invalid", invalid, "recompiled", recompiled, "watermark", watermark)
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
