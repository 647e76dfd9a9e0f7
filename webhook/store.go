package webhook

import (
	"sync/atomic"
	"time"

	"github.com/friendgate/friendgate/internal/policy"
)

// Store holds the snapshot in force. Readers load it with one atomic read and never see a
// half-built one; writers build a whole new snapshot and swap it in.
type Store struct {
	cur     atomic.Pointer[storeState]
	metrics *Metrics
}

type storeState struct {
	snap       *policy.Snapshot
	generation int64
}

// NewStore returns an empty store: not ready until the first Set. metrics may be nil.
func NewStore(metrics *Metrics) *Store { return &Store{metrics: metrics} }

// Snapshot returns the snapshot in force, or nil before the first Set.
func (s *Store) Snapshot() *policy.Snapshot {
	if st := s.cur.Load(); st != nil {
		return st.snap
	}
	return nil
}

// Ready reports whether a snapshot has been loaded.
func (s *Store) Ready() bool { return s.cur.Load() != nil }

// Generation is the sequence number of the snapshot in force, 0 before the first Set.
func (s *Store) Generation() int64 {
	if st := s.cur.Load(); st != nil {
		return st.generation
	}
	return 0
}

// Set swaps in a new snapshot. Writers are expected to be serialized by their source (one
// file watcher or one informer loop); concurrent calls are safe but may reorder.
func (s *Store) Set(snap *policy.Snapshot) {
	if snap == nil {
		snap = policy.NewSnapshot(nil)
	}
	st := &storeState{snap: snap, generation: s.Generation() + 1}
	s.cur.Store(st)
	if m := s.metrics; m != nil {
		var entries int64
		live := make(map[string]bool, len(snap.Policies()))
		for _, p := range snap.Policies() {
			entries += p.BlocklistEntries
			live[p.Key] = true
		}
		m.forgetPolicies(live)
		m.reloads.Inc()
		m.generation.Set(float64(st.generation))
		m.policies.Set(float64(len(snap.Policies())))
		m.entries.Set(float64(entries))
		m.lastReloadSec.Set(float64(time.Now().UnixNano()) / 1e9)
	}
}
