package keywords

import (
	"math/bits"
	"slices"
	"sort"
	"unicode/utf8"
)

// automaton is an Aho–Corasick automaton over rune classes, its trie stored as a double
// array: the child of state s on class c is t = nodes[s].base + c when nodes[t].check == s.
// Runes that occur in no entry have class 0 and send the automaton back to the root.
// Classes are numbered by how often the rune occurs in the entries, so that the frequent
// ones pack densely.
type automaton struct {
	nodes []node
	outs  []output
	// next is the full transition table of a small automaton, row by state: a character
	// costs one lookup instead of a walk along failure links. An entry is where the next
	// state's row starts (the state times classes, a row's length, so that a step needs
	// no multiplication), with nextOut set when an entry ends at that state.
	next    []int32
	classes int32

	ascii     [utf8.RuneSelf]int32
	hash      []uint64 // open addressing: rune<<32 | class; 0 is empty
	hashShift uint
}

// node is one state, its fields together so that a transition touches one cache line.
type node struct {
	base, check int32
	fail        int32 // longest proper suffix that is a state
	out         int32 // 1 + index in outs of the longest entry ending here; 0: none
}

// output is an entry ending at a state, and the next shorter one ending there too.
type output struct {
	entry int32
	next  int32 // 1 + index in outs; 0: none
}

func (a *automaton) class(r rune) int32 {
	if r < utf8.RuneSelf {
		return a.ascii[r]
	}
	if a.hash == nil {
		return 0
	}
	mask := uint32(len(a.hash) - 1)
	for h := (uint32(r) * 0x9E3779B1) >> a.hashShift; ; h = (h + 1) & mask {
		e := a.hash[h]
		if e == 0 {
			return 0
		}
		if rune(e>>32) == r {
			return int32(uint32(e))
		}
	}
}

// step follows class c (not 0) from state s, through failure links when s has no child
// for it.
func (a *automaton) step(s, c int32) int32 {
	nodes := a.nodes
	for {
		if t := nodes[s].base + c; uint32(t) < uint32(len(nodes)) && nodes[t].check == s {
			return t
		}
		if s == 0 {
			return 0
		}
		s = nodes[s].fail
	}
}

func (a *automaton) child(s, c int32) (int32, bool) {
	t := a.nodes[s].base + c
	return t, uint32(t) < uint32(len(a.nodes)) && a.nodes[t].check == s
}

// trieNode is the trie before it is laid out as a double array.
type trieNode struct {
	r                    rune
	child, last, sibling int32
	entry                int32 // 1 + entry index; 0: none
}

// buildAutomaton compiles distinct non-empty normalised forms; entry i is forms[i].
func buildAutomaton(forms []string) automaton {
	var a automaton
	trie := buildTrie(forms)
	a.setClasses(forms)

	// Lay the trie out breadth first; queue doubles as the BFS order of states.
	type placed struct{ trie, state int32 }
	queue := make([]placed, 1, len(trie))
	a.nodes = make([]node, 1, len(trie)+len(trie)/8)
	var (
		used    bitset
		classes []int32
		lo      = 1
	)
	used.set(0)
	for qi := 0; qi < len(queue); qi++ {
		q := queue[qi]
		classes = classes[:0]
		for ch := trie[q.trie].child; ch != 0; ch = trie[ch].sibling {
			classes = append(classes, a.class(trie[ch].r))
		}
		if len(classes) == 0 {
			continue
		}
		slices.Sort(classes)
		lo = used.nextFree(lo)
		base := findBase(&used, lo, classes)
		a.nodes[q.state].base = base
		for ch := trie[q.trie].child; ch != 0; ch = trie[ch].sibling {
			t := base + a.class(trie[ch].r)
			for int(t) >= len(a.nodes) {
				a.nodes = append(a.nodes, node{check: -1})
			}
			a.nodes[t].check = q.state
			used.set(int(t))
			queue = append(queue, placed{ch, t})
		}
	}
	a.nodes = slices.Clone(a.nodes) // drop the slack of growing

	// Failure links, breadth first so that a state's link is known before its children's.
	for _, q := range queue {
		for ch := trie[q.trie].child; ch != 0; ch = trie[ch].sibling {
			c := a.class(trie[ch].r)
			v, _ := a.child(q.state, c)
			fail := int32(0)
			if q.state != 0 {
				for f := a.nodes[q.state].fail; ; f = a.nodes[f].fail {
					if t, ok := a.child(f, c); ok {
						fail = t
						break
					}
					if f == 0 {
						break
					}
				}
			}
			a.nodes[v].fail = fail
		}
	}

	// Outputs: a state's own entry, then those of its failure link, which is shallower and
	// so already done.
	a.outs = make([]output, 0, len(forms))
	for _, q := range queue[1:] {
		inherited := a.nodes[a.nodes[q.state].fail].out
		if e := trie[q.trie].entry; e != 0 {
			a.outs = append(a.outs, output{entry: e - 1, next: inherited})
			a.nodes[q.state].out = int32(len(a.outs))
		} else {
			a.nodes[q.state].out = inherited
		}
	}
	a.buildNext()
	return a
}

// maxNextEntries bounds the full transition table (16 KiB): a dictionary of a few dozen
// words, the kind checked on every request, gets one; a large one would pay more memory
// than its lookups save, as most of its states are rarely reached.
const maxNextEntries = 4096

func (a *automaton) buildNext() {
	if len(a.nodes)*int(a.classes) > maxNextEntries {
		return
	}
	a.next = make([]int32, len(a.nodes)*int(a.classes))
	for s := range a.nodes {
		for c := int32(1); c < a.classes; c++ {
			t := a.step(int32(s), c)
			row := t * a.classes
			if a.nodes[t].out != 0 {
				row |= nextOut
			}
			a.next[s*int(a.classes)+int(c)] = row
		}
	}
}

// nextOut marks a transition table entry whose state ends an entry; nextState masks it
// off. A table of maxNextEntries has rows that start far below the bit.
const (
	nextOut   = 1 << 30
	nextState = nextOut - 1
)

// buildTrie inserts the forms in sorted order, so that each new branch hangs off the path
// of the form before it.
func buildTrie(forms []string) []trieNode {
	order := make([]int32, len(forms))
	for i := range order {
		order[i] = int32(i)
	}
	sort.Slice(order, func(i, j int) bool { return forms[order[i]] < forms[order[j]] })

	trie := []trieNode{{}}
	path := []int32{0} // path[d]: node of the previous form at depth d
	var prev, cur []rune
	for _, e := range order {
		cur = append(cur[:0], []rune(forms[e])...)
		lcp := 0
		for lcp < len(prev) && lcp < len(cur) && prev[lcp] == cur[lcp] {
			lcp++
		}
		path = path[:lcp+1]
		for _, r := range cur[lcp:] {
			parent := path[len(path)-1]
			n := int32(len(trie))
			trie = append(trie, trieNode{r: r})
			if last := trie[parent].last; last != 0 {
				trie[last].sibling = n
			} else {
				trie[parent].child = n
			}
			trie[parent].last = n
			path = append(path, n)
		}
		trie[path[len(cur)]].entry = e + 1
		prev, cur = cur, prev
	}
	return trie
}

// setClasses numbers the runes of the entries, most frequent first.
func (a *automaton) setClasses(forms []string) {
	freq := make(map[rune]int)
	for _, f := range forms {
		for _, r := range f {
			freq[r]++
		}
	}
	runes := make([]rune, 0, len(freq))
	for r := range freq {
		runes = append(runes, r)
	}
	sort.Slice(runes, func(i, j int) bool {
		if freq[runes[i]] != freq[runes[j]] {
			return freq[runes[i]] > freq[runes[j]]
		}
		return runes[i] < runes[j]
	})
	wide := 0
	for _, r := range runes {
		if r >= utf8.RuneSelf {
			wide++
		}
	}
	if wide > 0 {
		size := 1 << bits.Len(uint(2*wide))
		a.hash = make([]uint64, size)
		a.hashShift = uint(32 - bits.TrailingZeros(uint(size)))
	}
	a.classes = int32(len(runes) + 1)
	for i, r := range runes {
		c := int32(i + 1)
		if r < utf8.RuneSelf {
			a.ascii[r] = c
			continue
		}
		mask := uint32(len(a.hash) - 1)
		h := (uint32(r) * 0x9E3779B1) >> a.hashShift
		for a.hash[h] != 0 {
			h = (h + 1) & mask
		}
		a.hash[h] = uint64(r)<<32 | uint64(c)
	}
}

// findBase returns the first base at or after the free slot lo whose slots for classes
// (sorted) are all free.
func findBase(used *bitset, lo int, classes []int32) int32 {
	for f := lo; ; f = used.nextFree(f + 1) {
		base := int32(f) - classes[0]
		fits := true
		for _, c := range classes[1:] {
			if used.has(int(base + c)) {
				fits = false
				break
			}
		}
		if fits {
			return base
		}
	}
}

type bitset []uint64

func (b *bitset) set(i int) {
	for i/64 >= len(*b) {
		*b = append(*b, 0)
	}
	(*b)[i/64] |= 1 << (i % 64)
}

func (b bitset) has(i int) bool {
	return i/64 < len(b) && b[i/64]&(1<<(i%64)) != 0
}

// nextFree returns the first clear bit at or after i.
func (b bitset) nextFree(i int) int {
	for w := i / 64; w < len(b); w++ {
		free := ^b[w]
		if w == i/64 {
			free &= ^uint64(0) << (i % 64)
		}
		if free != 0 {
			return w*64 + bits.TrailingZeros64(free)
		}
	}
	return max(i, len(b)*64)
}

// rowState is the state whose row in next starts at row (a next entry, nextOut aside).
func (a *automaton) rowState(row int32) int32 { return (row & nextState) / a.classes }
