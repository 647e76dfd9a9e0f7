package policy

import (
	"regexp/syntax"
	"slices"
	"unicode"
	"unicode/utf8"
)

// Regular expressions are not run one by one: a multi-literal pass (Aho–Corasick) over the
// text finds the patterns whose required literals occur, and only those are confirmed by
// their own regexp. A required literal set of a pattern is a set of strings one of which
// every match contains; a pattern without one is run every time.

// maxLiteralAlternatives bounds the literals one pattern may need; a wider alternation is
// cheaper to run than to prefilter.
const maxLiteralAlternatives = 16

// parseSimple parses a pattern as regexp.Compile does, simplified, for the prefilters
// (requiredLiterals, leadBytes) to read.
func parseSimple(expr string) (*syntax.Regexp, error) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, err
	}
	return re.Simplify(), nil
}

// requiredLiterals returns a set of strings, ASCII-lower-cased, one of which occurs in every
// text the pattern re (see parseSimple) matches (lower-cased the same way); nil when there
// is no such set.
func requiredLiterals(re *syntax.Regexp) []string {
	switch re.Op {
	case syntax.OpLiteral:
		if s := safeLiteral(re.Rune, re.Flags&syntax.FoldCase != 0); s != "" {
			return []string{s}
		}
	case syntax.OpCapture, syntax.OpPlus:
		return requiredLiterals(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return requiredLiterals(re.Sub[0])
		}
	case syntax.OpConcat:
		var best []string
		for _, sub := range re.Sub {
			if set := requiredLiterals(sub); set != nil && (best == nil || better(set, best)) {
				best = set
			}
		}
		return best
	case syntax.OpAlternate:
		var union []string
		for _, sub := range re.Sub {
			set := requiredLiterals(sub)
			if set == nil {
				return nil
			}
			union = append(union, set...)
		}
		slices.Sort(union)
		union = slices.Compact(union)
		if len(union) > maxLiteralAlternatives {
			return nil
		}
		return union
	}
	return nil
}

// better prefers the set whose shortest literal is longer (fewer false candidates), then
// the smaller set.
func better(a, b []string) bool {
	la, lb := shortest(a), shortest(b)
	if la != lb {
		return la > lb
	}
	return len(a) < len(b)
}

func shortest(set []string) int {
	n := -1
	for _, s := range set {
		if n < 0 || len(s) < n {
			n = len(s)
		}
	}
	return n
}

// safeLiteral is the longest run of runes of a literal that the matcher can look for byte
// by byte after ASCII lower-casing. Under case folding, a rune with a case outside ASCII
// cannot (k folds with the Kelvin sign, s with ſ, é with É); nor can U+FFFD, which the
// regexp also matches on invalid UTF-8.
func safeLiteral(runes []rune, fold bool) string {
	var best, cur []byte
	flush := func() {
		if len(cur) > len(best) {
			best = append(best[:0], cur...)
		}
		cur = cur[:0]
	}
	for _, r := range runes {
		if r == utf8.RuneError || (fold && !foldsInASCII(r)) {
			flush()
			continue
		}
		if r < utf8.RuneSelf {
			cur = append(cur, asciiLower(byte(r)))
		} else {
			cur = utf8.AppendRune(cur, r)
		}
	}
	flush()
	return string(best)
}

// foldsInASCII reports whether every rune simple case folding equates with r is found by
// looking for r's bytes ASCII-lower-cased: r has no other case, or r and all its cases are
// ASCII.
func foldsInASCII(r rune) bool {
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f >= utf8.RuneSelf || r >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func asciiLower(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

// acMatcher is an Aho–Corasick automaton over ASCII-lower-cased bytes. A small automaton
// is a full DFA over byte classes (one table load per byte); a large one keeps sorted edges
// per state and failure links, with the root's transitions dense (most bytes of most texts
// stay there).
type acMatcher struct {
	// dfa[row+class[b]] is the next state's row (state*classes), with dfaOut set when the
	// state has outputs; nil for a large automaton.
	dfa     []uint32
	class   [256]uint8
	classes uint32

	// root is the root's dense row of a large automaton (nil with a DFA).
	root   []uint32
	states []acState
	edges  []acEdge
	// outs holds, per state, the literal ids ending there or at a state its failure chain
	// reaches, so a scan never walks that chain for output.
	outs []uint32
}

type acState struct {
	edgeLo, edgeHi uint32
	fail           uint32
	outLo, outHi   uint32
}

type acEdge struct {
	b    byte
	next uint32
}

// newACMatcher builds the automaton of literals; a text's matches are reported as indexes
// into literals. Literals must be non-empty and lower-cased as asciiLower does.
func newACMatcher(literals []string) *acMatcher { return buildAC(literals, maxDFAEntries) }

// buildAC builds the automaton, as a DFA when it needs at most dfaEntries table entries.
func buildAC(literals []string, dfaEntries int) *acMatcher {
	// Build a trie with map children first; it is flattened below.
	type node struct {
		next map[byte]uint32
		out  []uint32
	}
	nodes := []node{{}}
	for id, lit := range literals {
		s := uint32(0)
		for i := 0; i < len(lit); i++ {
			n, ok := nodes[s].next[lit[i]]
			if !ok {
				if nodes[s].next == nil {
					nodes[s].next = map[byte]uint32{}
				}
				n = uint32(len(nodes))
				nodes[s].next[lit[i]] = n
				nodes = append(nodes, node{})
			}
			s = n
		}
		nodes[s].out = append(nodes[s].out, uint32(id))
	}
	m := &acMatcher{states: make([]acState, len(nodes))}
	for s := range nodes {
		keys := make([]byte, 0, len(nodes[s].next))
		for b := range nodes[s].next {
			keys = append(keys, b)
		}
		slices.Sort(keys)
		m.states[s].edgeLo = uint32(len(m.edges))
		for _, b := range keys {
			m.edges = append(m.edges, acEdge{b, nodes[s].next[b]})
		}
		m.states[s].edgeHi = uint32(len(m.edges))
	}
	// Failure links in breadth-first order, so a state's failure target is done first.
	outs := make([][]uint32, len(nodes))
	queue := make([]uint32, 0, len(nodes))
	m.root = make([]uint32, 256)
	for _, e := range m.edges[m.states[0].edgeLo:m.states[0].edgeHi] {
		m.root[e.b] = e.next
		queue = append(queue, e.next)
	}
	outs[0] = nodes[0].out
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		outs[s] = append(append([]uint32(nil), nodes[s].out...), outs[m.states[s].fail]...)
		for _, e := range m.edges[m.states[s].edgeLo:m.states[s].edgeHi] {
			f := m.states[s].fail
			for {
				if t, ok := m.step(f, e.b); ok {
					m.states[e.next].fail = t
					break
				}
				if f == 0 {
					m.states[e.next].fail = 0
					break
				}
				f = m.states[f].fail
			}
			queue = append(queue, e.next)
		}
	}
	for s := range m.states {
		m.states[s].outLo = uint32(len(m.outs))
		m.outs = append(m.outs, outs[s]...)
		m.states[s].outHi = uint32(len(m.outs))
	}
	if m.buildDFA(dfaEntries) {
		m.root = nil
	}
	return m
}

// maxDFAEntries bounds the DFA table (4 bytes an entry); larger automata stay sparse.
const maxDFAEntries = 1 << 16

// dfaOut flags a DFA entry whose state has outputs.
const dfaOut = 1 << 31

// buildDFA builds the DFA of a small automaton; false when it is too large.
func (m *acMatcher) buildDFA(maxEntries int) bool {
	var used [256]bool
	for _, e := range m.edges {
		used[e.b] = true
	}
	classes := uint32(1)
	var classOf [256]uint8
	for b := range used {
		if used[b] {
			classOf[b] = uint8(classes)
			classes++
		}
	}
	if classes > 255 || uint64(classes)*uint64(len(m.states)) > uint64(maxEntries) {
		return false
	}
	for b := range m.class {
		m.class[b] = classOf[asciiLower(byte(b))]
	}
	m.classes = classes
	m.dfa = make([]uint32, uint32(len(m.states))*classes)
	entry := func(s uint32) uint32 {
		if st := &m.states[s]; st.outHi > st.outLo {
			return s*classes | dfaOut
		}
		return s * classes
	}
	// Breadth-first, so a state's failure target has its row when the state is filled.
	queue := []uint32{0}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		row := m.dfa[s*classes : (s+1)*classes]
		if s != 0 {
			copy(row, m.dfa[m.states[s].fail*classes:(m.states[s].fail+1)*classes])
		}
		for _, e := range m.edges[m.states[s].edgeLo:m.states[s].edgeHi] {
			row[classOf[e.b]] = entry(e.next)
			queue = append(queue, e.next)
		}
	}
	return true
}

// step follows the goto edge of state s on b, if there is one.
func (m *acMatcher) step(s uint32, b byte) (uint32, bool) {
	if s == 0 {
		t := m.root[b]
		return t, t != 0
	}
	edges := m.edges[m.states[s].edgeLo:m.states[s].edgeHi]
	lo, hi := 0, len(edges)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if edges[mid].b < b {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(edges) && edges[lo].b == b {
		return edges[lo].next, true
	}
	return 0, false
}

// scan calls hit with the id of every literal occurrence in text (an id may repeat).
func (m *acMatcher) scan(text string, hit func(id uint32)) {
	s := uint32(0)
	if dfa := m.dfa; dfa != nil {
		row := uint32(0)
		for i := 0; i < len(text); i++ {
			next := dfa[row+uint32(m.class[text[i]])]
			row = next &^ dfaOut
			if next&dfaOut != 0 {
				st := &m.states[row/m.classes]
				for _, id := range m.outs[st.outLo:st.outHi] {
					hit(id)
				}
			}
		}
		return
	}
	for i := 0; i < len(text); i++ {
		b := lowerTable[text[i]]
		if s == 0 {
			// Most bytes of most texts start no literal: one table load.
			if s = m.root[b]; s == 0 {
				continue
			}
		} else {
			for {
				if t, ok := m.step(s, b); ok {
					s = t
					break
				}
				if s == 0 {
					break
				}
				s = m.states[s].fail
			}
		}
		if st := &m.states[s]; st.outHi > st.outLo {
			for _, id := range m.outs[st.outLo:st.outHi] {
				hit(id)
			}
		}
	}
}

var lowerTable = func() (t [256]byte) {
	for i := range t {
		t[i] = asciiLower(byte(i))
	}
	return t
}()
