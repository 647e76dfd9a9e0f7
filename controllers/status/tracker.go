package status

import (
	"context"
	"iter"
	"maps"
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

// Change is what the Tracker announces when the serving replicas change: which served
// at the previous announcement and which serve now, by Lease name.
type Change struct {
	// Before maps the Lease name of each replica that served at the previous announcement
	// to what it said then; it is nil at the first announcement.
	Before map[string]Served
	// Now maps the Lease name of each replica serving now to what it says.
	Now map[string]Served
	// Initial marks the first announcement, the state the Tracker started with.
	Initial bool
}

// Served is what a serving replica's Lease says that a Change can tell: its watermark and
// how it counts limits. A Lease renewal changes neither.
type Served struct {
	Watermark      string
	LimitsCounting propagation.Counting
}

// Joined are the watermarks of the replicas that serve now and did not before, or whose
// watermark went back (a replica restarted under the same name). Only policies whose
// current generation such a watermark does not cover can have stopped being enforced
// everywhere.
func (c Change) Joined() []string {
	var wms []string
	for name, now := range c.Now {
		if prev, ok := c.Before[name]; !ok || propagation.Newer(prev.Watermark, now.Watermark) {
			wms = append(wms, now.Watermark)
		}
	}
	return wms
}

// LimitsCountingChanged reports whether the replicas' LimitsShared condition changed:
// then, and only then, every policy with limits has a new one.
func (c Change) LimitsCountingChanged() bool {
	before, _ := describeLimitsCounting(countingOf(servedCounting(c.Before)))
	now, _ := describeLimitsCounting(countingOf(servedCounting(c.Now)))
	return before.Status != now.Status || before.Reason != now.Reason || before.Message != now.Message
}

// CountingChanged reports whether replicas joined or left, or one counts limits
// differently.
func (c Change) CountingChanged() bool {
	if c.MembershipChanged() {
		return true
	}
	for name, now := range c.Now {
		if c.Before[name].LimitsCounting != now.LimitsCounting {
			return true
		}
	}
	return false
}

func servedCounting(m map[string]Served) iter.Seq[propagation.Counting] {
	return func(yield func(propagation.Counting) bool) {
		for _, s := range m {
			if !yield(s.LimitsCounting) {
				return
			}
		}
	}
}

// MembershipChanged reports whether replicas joined or left.
func (c Change) MembershipChanged() bool {
	if c.Initial || len(c.Before) != len(c.Now) {
		return true
	}
	for name := range c.Now {
		if _, ok := c.Before[name]; !ok {
			return true
		}
	}
	return false
}

// CrossesZero reports whether the first replica joined or the last one left: every
// policy goes to or from NoReplicas.
func (c Change) CrossesZero() bool {
	return (len(c.Before) == 0) != (len(c.Now) == 0)
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
	// what it said then.
	lastLive map[string]Served

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

// run announces the live replicas when it starts, then every change of them, until ctx
// ends.
func (t *Tracker) run(ctx context.Context, announce func(Change)) {
	c, _, next := t.refresh(t.clock.Now())
	c.Initial = true
	announce(c)
	for t.wait(ctx, next) {
		var changed bool
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

// refresh compares the replicas alive at now with those alive at the last refresh. next is
// the earliest time one of them expires (zero when none is alive). Renewals that change
// neither a watermark nor how a replica counts limits are no change.
func (t *Tracker) refresh(now time.Time) (c Change, changed bool, next time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	live := make(map[string]Served, len(t.leases))
	for name, s := range t.leases {
		if !s.Alive(now) {
			continue
		}
		live[name] = Served{Watermark: s.Watermark, LimitsCounting: s.LimitsCounting}
		if next.IsZero() || s.Expires.Before(next) {
			next = s.Expires
		}
	}
	c = Change{Before: t.lastLive, Now: live}
	t.lastLive = live
	return c, !maps.Equal(c.Before, c.Now), next
}
