package velocity

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
)

// key identifies one subject of one limit. Looking it up builds it from the caller's
// strings without copying them; only an inserted key is cloned (see clone).
type key struct {
	limit, app, a, b string
}

func makeKey(l *Limit, s Subject) key {
	return key{limit: l.ID, app: s.AppID, a: s.A, b: s.B}
}

// clone copies the strings: a request's are substrings of the whole callback body, and
// a table entry outlives the request by up to a window.
func (k key) clone() key {
	return key{limit: strings.Clone(k.limit), app: strings.Clone(k.app), a: strings.Clone(k.a), b: strings.Clone(k.b)}
}

// shardCount shards a table so that concurrent callbacks rarely wait on one mutex.
const shardCount = 64

type shard[V any] struct {
	mu sync.Mutex
	m  map[key]*V
	// Keeps neighbouring shards' mutexes off one cache line.
	_ [48]byte
}

// table is a sharded map from keys to entries, bounded to max entries in all.
type table[V any] struct {
	seed   maphash.Seed
	max    int64
	n      atomic.Int64
	shards [shardCount]shard[V]
}

func newTable[V any](maxKeys int) *table[V] {
	t := &table[V]{seed: maphash.MakeSeed(), max: int64(maxKeys)}
	for i := range t.shards {
		t.shards[i].m = map[key]*V{}
	}
	return t
}

// shard picks k's shard by the subject's parts only: A (the user or address) varies the
// most, and hashing fewer strings keeps the hit path short.
func (t *table[V]) shard(k *key) *shard[V] {
	h := maphash.String(t.seed, k.a)
	if k.b != "" {
		h ^= maphash.String(t.seed, k.b) * 0x9e3779b97f4a7c15
	}
	return &t.shards[h%shardCount]
}

// insertLocked adds an entry for k to s, whose mutex the caller holds; it returns nil,
// adding nothing, when the table is full.
func (t *table[V]) insertLocked(s *shard[V], k key) *V {
	if t.n.Add(1) > t.max {
		t.n.Add(-1)
		return nil
	}
	v := new(V)
	s.m[k.clone()] = v
	return v
}

// sweep removes the entries for which expired is true.
func (t *table[V]) sweep(expired func(*V) bool) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		removed := 0
		for k, v := range s.m {
			if expired(v) {
				delete(s.m, k)
				removed++
			}
		}
		s.mu.Unlock()
		t.n.Add(int64(-removed))
	}
}

// len is the number of entries.
func (t *table[V]) len() int { return int(t.n.Load()) }
