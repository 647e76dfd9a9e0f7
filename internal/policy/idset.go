package policy

import (
	"slices"
	"strings"
)

// span is a range of a shared slice: one allocation holds the values of every key.
type span struct{ lo, hi uint32 }

// keyed collects (key, value) pairs for an exactIndex or a prefixTrie.
type keyed[V any] struct {
	keys []string
	vals []V
}

func (k *keyed[V]) add(key string, v V) {
	k.keys = append(k.keys, key)
	k.vals = append(k.vals, v)
}

// sorted returns the pairs' order by key (stable, so values keep the order they came in).
func (k *keyed[V]) sorted() []int {
	order := make([]int, len(k.keys))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return strings.Compare(k.keys[a], k.keys[b]) })
	return order
}

// exactIndex maps a string to the values stored under it. A few keys are a sorted slice,
// searched in a few comparisons, where a map would weigh several times more.
type exactIndex[V any] struct {
	m     map[string]span
	keys  []string
	spans []span
	vals  []V
}

// maxSortedKeys is the most keys an exactIndex keeps in a sorted slice rather than a map.
const maxSortedKeys = 8

func newExactIndex[V any](k *keyed[V]) exactIndex[V] {
	if len(k.keys) == 0 {
		return exactIndex[V]{}
	}
	var x exactIndex[V]
	x.vals = make([]V, 0, len(k.vals))
	order := k.sorted()
	for i := 0; i < len(order); {
		key := k.keys[order[i]]
		lo := uint32(len(x.vals))
		for ; i < len(order) && k.keys[order[i]] == key; i++ {
			x.vals = append(x.vals, k.vals[order[i]])
		}
		x.keys = append(x.keys, key)
		x.spans = append(x.spans, span{lo, uint32(len(x.vals))})
	}
	if len(x.keys) > maxSortedKeys {
		x.m = make(map[string]span, len(x.keys))
		for i, key := range x.keys {
			x.m[key] = x.spans[i]
		}
		x.keys, x.spans = nil, nil
	}
	return x
}

func (x *exactIndex[V]) get(key string) []V {
	if x.m != nil {
		if sp, ok := x.m[key]; ok {
			return x.vals[sp.lo:sp.hi]
		}
		return nil
	}
	for i, k := range x.keys {
		if k == key {
			sp := x.spans[i]
			return x.vals[sp.lo:sp.hi]
		}
	}
	return nil
}

// prefixTrie finds the values of every stored prefix of a string, in one walk along it.
type prefixTrie[V any] struct {
	nodes []trieNode
	edges []acEdge
	vals  []V
}

type trieNode struct {
	edges span
	vals  span
}

func newPrefixTrie[V any](k *keyed[V]) prefixTrie[V] {
	if len(k.keys) == 0 {
		return prefixTrie[V]{}
	}
	// Inserted in sorted order, keys create nodes in depth-first order, and each node's
	// children in byte order, one after the other: the only child a key can share with an
	// earlier one is its parent's latest. The nodes are numbered as created; their edges
	// and values are then laid out by counting, with a handful of allocations whatever the
	// keys (a snapshot of thousands of scopes builds as many tries).
	order := k.sorted()
	size := 1
	for _, key := range k.keys {
		size += len(key)
	}
	parent := make([]uint32, 1, size)
	label := make([]byte, 1, size)
	latest := make([]uint32, 1, size) // latest child of each node; 0: none yet
	end := make([]uint32, len(k.keys))
	for _, i := range order {
		key, n := k.keys[i], uint32(0)
		for j := 0; j < len(key); j++ {
			if c := latest[n]; c != 0 && label[c] == key[j] {
				n = c
				continue
			}
			c := uint32(len(parent))
			parent, label, latest = append(parent, n), append(label, key[j]), append(latest, 0)
			latest[n] = c
			n = c
		}
		end[i] = n
	}
	t := prefixTrie[V]{nodes: make([]trieNode, len(parent)), edges: make([]acEdge, len(parent)-1), vals: make([]V, len(k.vals))}
	for c := 1; c < len(parent); c++ {
		t.nodes[parent[c]].edges.hi++
	}
	for _, n := range end {
		t.nodes[n].vals.hi++
	}
	// The counts become offsets; hi then counts up again as each span is filled.
	var edges, vals uint32
	for i := range t.nodes {
		nd := &t.nodes[i]
		ne, nv := nd.edges.hi, nd.vals.hi
		nd.edges, nd.vals = span{edges, edges}, span{vals, vals}
		edges, vals = edges+ne, vals+nv
	}
	for c := 1; c < len(parent); c++ {
		nd := &t.nodes[parent[c]]
		t.edges[nd.edges.hi] = acEdge{label[c], uint32(c)}
		nd.edges.hi++
	}
	for _, i := range order {
		nd := &t.nodes[end[i]]
		t.vals[nd.vals.hi] = k.vals[i]
		nd.vals.hi++
	}
	return t
}

// walk calls fn with the values of each stored prefix of s (s itself included), shortest
// first.
func (t *prefixTrie[V]) walk(s string, fn func([]V)) {
	if len(t.nodes) == 0 {
		return
	}
	n := &t.nodes[0]
	for i := 0; ; i++ {
		if n.vals.hi > n.vals.lo {
			fn(t.vals[n.vals.lo:n.vals.hi])
		}
		if i == len(s) {
			return
		}
		edges := t.edges[n.edges.lo:n.edges.hi]
		lo, hi := 0, len(edges)
		for lo < hi {
			mid := int(uint(lo+hi) >> 1)
			if edges[mid].b < s[i] {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		if lo == len(edges) || edges[lo].b != s[i] {
			return
		}
		n = &t.nodes[edges[lo].next]
	}
}
