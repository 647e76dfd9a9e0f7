package status

import (
	"maps"
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/propagation"
)

// seenGenerations keeps, per policy, what a reconcile needs about the policy's current
// generation and cannot read back from the object. It is lost on restart or leader
// change; what follows from that is said per field.
type seenGenerations struct {
	mu       sync.Mutex
	policies map[types.NamespacedName]seenGeneration
	// awaiting are the policies whose status a replica's watermark moving forward, or a
	// replica leaving, can change: from just before a reconcile counts the replicas until
	// one finds the current generation enforced everywhere or not enforceable. Watermark
	// announcements re-evaluate these only.
	awaiting map[types.NamespacedName]struct{}
	// hasLimits are the policies with limits in force, as their last reconcile compiled
	// them: the only ones whose status a change of how replicas count limits can change.
	hasLimits map[types.NamespacedName]struct{}
}

// seenGeneration is what the controller keeps of one generation of a policy.
type seenGeneration struct {
	uid        types.UID
	generation int64
	// firstReadAt is the first resourceVersion the controller read this generation at.
	// Replicas are counted against it rather than against the resourceVersion of the
	// latest read, because every status write bumps the resourceVersion without changing
	// what replicas enforce: counting against it would report a replica that has not yet
	// seen our own status write as behind, and each Propagating write would chase the
	// next. Reading the generation first at a later resourceVersion (after a restart)
	// only errs towards "not yet".
	firstReadAt string
	// announcedWarnings are the compile warnings last announced with a NoConfigMaps event
	// for this generation. After a restart they are announced once more.
	announcedWarnings []string
}

// current returns what is kept of fp's current generation, starting afresh when the
// policy is new, was recreated or its generation changed.
func (m *seenGenerations) current(fp *v1alpha1.FriendPolicy) seenGeneration {
	key := types.NamespacedName{Namespace: fp.Namespace, Name: fp.Name}
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.policies[key]
	if ok && g.uid == fp.UID && g.generation == fp.Generation {
		return g
	}
	g = seenGeneration{uid: fp.UID, generation: fp.Generation, firstReadAt: fp.ResourceVersion}
	if m.policies == nil {
		m.policies = map[types.NamespacedName]seenGeneration{}
	}
	m.policies[key] = g
	return g
}

// setAnnouncedWarnings records the warnings announced for generation g of the policy.
func (m *seenGenerations) setAnnouncedWarnings(key types.NamespacedName, g seenGeneration, warnings []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.policies[key]; ok && cur.uid == g.uid && cur.generation == g.generation {
		cur.announcedWarnings = slices.Clone(warnings)
		m.policies[key] = cur
	}
}

// forget drops a deleted policy.
func (m *seenGenerations) forget(key types.NamespacedName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.policies, key)
	delete(m.awaiting, key)
	delete(m.hasLimits, key)
}

// setAwaiting records whether the policy awaits replicas. A reconcile sets it before it
// counts the replicas, so that a change announced while it runs enqueues the policy again
// rather than being lost.
func (m *seenGenerations) setAwaiting(key types.NamespacedName, awaiting bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !awaiting {
		delete(m.awaiting, key)
		return
	}
	if m.awaiting == nil {
		m.awaiting = map[types.NamespacedName]struct{}{}
	}
	m.awaiting[key] = struct{}{}
}

// setHasLimits records whether the policy has limits in force. A reconcile sets it before
// it counts the replicas, as setAwaiting.
func (m *seenGenerations) setHasLimits(key types.NamespacedName, has bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !has {
		delete(m.hasLimits, key)
		return
	}
	if m.hasLimits == nil {
		m.hasLimits = map[types.NamespacedName]struct{}{}
	}
	m.hasLimits[key] = struct{}{}
}

// affectedBy returns the policies whose status a change of the serving replicas can
// change, without reading any policy: every known policy when the first replica joins or
// the last leaves (NoReplicas); otherwise the policies awaiting replicas; when replicas
// joined, the policies whose current generation a joiner's watermark does not cover
// (changed since the joiner's snapshot); and, when the replicas' LimitsShared condition
// changed, the policies with limits.
func (m *seenGenerations) affectedBy(c Change) []types.NamespacedName {
	joined := c.Joined()
	limits := c.LimitsCountingChanged()
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.CrossesZero() {
		return slices.Collect(maps.Keys(m.policies))
	}
	keys := slices.Collect(maps.Keys(m.awaiting))
	if len(joined) == 0 && !limits {
		return keys
	}
	for key, g := range m.policies {
		if _, ok := m.awaiting[key]; ok {
			continue
		}
		if _, ok := m.hasLimits[key]; ok && limits {
			keys = append(keys, key)
			continue
		}
		if slices.ContainsFunc(joined, func(wm string) bool { return !(propagation.Status{Watermark: wm}).Enforces(g.firstReadAt) }) {
			keys = append(keys, key)
		}
	}
	return keys
}
