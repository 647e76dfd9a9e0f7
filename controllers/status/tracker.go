package status

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/friendgate/friendgate/internal/propagation"
)

// Change is what the Tracker announces when the live replicas change.
type Change struct {
	// AllPolicies is set when any policy's count may have changed: a replica joined, left
	// or expired, or its watermark went back (it restarted under the same name). When it
	// is not set, watermarks only moved forward, which can only complete the propagation of
	// policies not yet enforced everywhere.
	AllPolicies bool
}

// Tracker follows the webhook replicas' Leases (internal/propagation) in one namespace and
// tells the status controller when the live replicas change. Lease renewals that change
// nothing else announce nothing; expiry is noticed by a timer set to the earliest expiry,
// not by polling.
type Tracker struct {
	informers cache.Informers
	namespace string
	clock     clock.Clock

	mu     sync.Mutex
	leases map[string]propagation.Status // by Lease name
	// lastLive maps the Lease name of each replica that was alive at the last refresh to
	// its watermark then.
	lastLive map[string]string

	poke    chan struct{}
	started atomic.Bool
}

// NewTracker returns a Tracker of the replica Leases in namespace, read through informers
// (the manager's cache, restricted by CacheByObject). Leases expire on clk.
func NewTracker(informers cache.Informers, namespace string, clk clock.Clock) *Tracker {
	return &Tracker{
		informers: informers,
		namespace: namespace,
		clock:     clk,
		leases:    map[string]propagation.Status{},
		poke:      make(chan struct{}, 1),
	}
}

// Namespace is the namespace of the replica Leases.
func (t *Tracker) Namespace() string { return t.namespace }

// Live returns the replicas alive at now, sorted by ID.
func (t *Tracker) Live(now time.Time) []propagation.Status {
	t.mu.Lock()
	live := make([]propagation.Status, 0, len(t.leases))
	for _, s := range t.leases {
		if s.Alive(now) {
			live = append(live, s)
		}
	}
	t.mu.Unlock()
	slices.SortFunc(live, func(a, b propagation.Status) int { return strings.Compare(a.ID, b.ID) })
	return live
}

// eventHandler keeps the Lease statuses; run decides what to announce.
func (t *Tracker) eventHandler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    t.set,
		UpdateFunc: func(_, obj any) { t.set(obj) },
		DeleteFunc: t.remove,
	}
}

func (t *Tracker) set(obj any) {
	l, ok := obj.(*coordinationv1.Lease)
	if !ok || l.Namespace != t.namespace {
		return
	}
	s, ok := propagation.FromLease(l)
	t.mu.Lock()
	if ok {
		t.leases[l.Name] = s
	} else {
		delete(t.leases, l.Name)
	}
	t.mu.Unlock()
	t.wake()
}

func (t *Tracker) remove(obj any) {
	if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	l, ok := obj.(*coordinationv1.Lease)
	if !ok || l.Namespace != t.namespace {
		return
	}
	t.mu.Lock()
	delete(t.leases, l.Name)
	t.mu.Unlock()
	t.wake()
}

// wake makes run look at the Leases again; wake-ups coalesce.
func (t *Tracker) wake() {
	select {
	case t.poke <- struct{}{}:
	default:
	}
}

// run announces changes of the live replicas until ctx ends. The state at its start is
// the baseline: the controller reconciles every policy when it starts anyway.
func (t *Tracker) run(ctx context.Context, announce func(Change)) {
	_, _, next := t.refresh(t.clock.Now())
	for t.wait(ctx, next) {
		var (
			c       Change
			changed bool
		)
		c, changed, next = t.refresh(t.clock.Now())
		if changed {
			announce(c)
		}
	}
}

// wait returns true once a Lease changed or the clock reached next (zero: no live replica
// to expire), false once ctx ended.
func (t *Tracker) wait(ctx context.Context, next time.Time) bool {
	var expired <-chan time.Time
	if !next.IsZero() {
		timer := t.clock.NewTimer(next.Sub(t.clock.Now()))
		defer timer.Stop()
		// A clock that jumps (a fake one, in tests) may have passed next meanwhile.
		if !t.clock.Now().Before(next) {
			return true
		}
		expired = timer.C()
	}
	select {
	case <-ctx.Done():
		return false
	case <-t.poke:
	case <-expired:
	}
	return true
}

// refresh compares the replicas alive at now with those alive at the last refresh. next is the
// earliest time one of them expires (zero when none is alive).
func (t *Tracker) refresh(now time.Time) (c Change, changed bool, next time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	live := make(map[string]string, len(t.leases))
	for name, s := range t.leases {
		if !s.Alive(now) {
			continue
		}
		live[name] = s.Watermark
		if next.IsZero() || s.Expires.Before(next) {
			next = s.Expires
		}
	}
	c, changed = compare(t.lastLive, live)
	t.lastLive = live
	return c, changed, next
}

// compare says how the live replicas changed from old to cur (Lease name → watermark).
func compare(old, cur map[string]string) (c Change, changed bool) {
	if len(old) != len(cur) {
		return Change{AllPolicies: true}, true
	}
	for name, wm := range cur {
		prev, ok := old[name]
		switch {
		case !ok, propagation.Newer(prev, wm):
			return Change{AllPolicies: true}, true
		case prev != wm:
			changed = true
		}
	}
	return Change{}, changed
}
