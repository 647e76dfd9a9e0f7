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
	// Inserting keys in sorted order makes every node's children arrive in byte order, so
	// the flat layout is built in one pass: node i's edges are added when i is expanded.
	type node struct {
		children []acEdge
		vals     []V
	}
	nodes := []node{{}}
	for _, i := range k.sorted() {
		key, s := k.keys[i], uint32(0)
		for j := 0; j < len(key); j++ {
			ch := nodes[s].children
			if n := len(ch); n > 0 && ch[n-1].b == key[j] {
				s = ch[n-1].next
				continue
			}
			next := uint32(len(nodes))
			nodes[s].children = append(ch, acEdge{key[j], next})
			nodes = append(nodes, node{})
			s = next
		}
		nodes[s].vals = append(nodes[s].vals, k.vals[i])
	}
	t := prefixTrie[V]{nodes: make([]trieNode, len(nodes))}
	for i := range nodes {
		t.nodes[i].edges = span{uint32(len(t.edges)), 0}
		t.edges = append(t.edges, nodes[i].children...)
		t.nodes[i].edges.hi = uint32(len(t.edges))
		t.nodes[i].vals = span{uint32(len(t.vals)), 0}
		t.vals = append(t.vals, nodes[i].vals...)
		t.nodes[i].vals.hi = uint32(len(t.vals))
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
