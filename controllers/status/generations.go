package status

import (
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

// memory keeps, per policy, what a reconcile needs and cannot read back from the object.
// It is lost on restart or leader change; what follows from that is said per field.
type memory struct {
	mu       sync.Mutex
	policies map[types.NamespacedName]observation
}

// observation is what the controller remembers of one generation of a policy.
type observation struct {
	uid        types.UID
	generation int64
	// since is the first resourceVersion the controller read this generation at.
	// Replicas are counted against it rather than against the resourceVersion of the
	// latest read, because every status write bumps the resourceVersion without changing
	// what replicas enforce: counting against it would report a replica that has not yet
	// seen our own status write as behind, and each Propagating write would chase the
	// next. Reading the generation first at a later resourceVersion (after a restart)
	// only errs towards "not yet".
	since string
	// warnings are the compile warnings last announced with a NoConfigMaps event for this
	// generation. After a restart they are announced once more.
	warnings []string
}

// observe returns what is remembered of fp's current generation, starting afresh when the
// policy is new, was recreated or its generation changed.
func (m *memory) observe(fp *v1alpha1.FriendPolicy) observation {
	key := types.NamespacedName{Namespace: fp.Namespace, Name: fp.Name}
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.policies[key]
	if ok && o.uid == fp.UID && o.generation == fp.Generation {
		return o
	}
	o = observation{uid: fp.UID, generation: fp.Generation, since: fp.ResourceVersion}
	if m.policies == nil {
		m.policies = map[types.NamespacedName]observation{}
	}
	m.policies[key] = o
	return o
}

// announced records the warnings announced for the generation o describes.
func (m *memory) announced(key types.NamespacedName, o observation, warnings []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.policies[key]; ok && cur.uid == o.uid && cur.generation == o.generation {
		cur.warnings = slices.Clone(warnings)
		m.policies[key] = cur
	}
}

// forget drops a deleted policy.
func (m *memory) forget(key types.NamespacedName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.policies, key)
}
