package policy

import (
	"maps"
	"math/bits"
	"net/netip"
	"slices"

	"github.com/gaissmai/bart"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/keywords"
)

// The cross-policy index. A decision first asks the index which policy entries can hold
// for the request (the candidates), then confirms only those, in decision order. What is
// indexed, once per snapshot:
//
//   - user IDs of exemptions and inline blocklists: one hash map from ID to entries;
//   - prefixes: one trie, walked once along each ID;
//   - whole-ID patterns: one multi-literal pass over each ID finds the patterns whose
//     required literals occur, and only those run (patterns without a literal always run,
//     once per distinct pattern however many policies share it);
//   - each rule under one of its conditions, the most selective it has: literals of its
//     wording patterns (one multi-literal pass over the wording), the guard of its `when`,
//     its add sources, its client CIDRs (one prefix table), its keyword dictionary (each
//     distinct dictionary runs once per text and decision, for every rule filed under it
//     and every rule confirming it), its platforms. A rule with none of these is a
//     candidate for every request of its events.
//
// Lists read from ConfigMaps are not copied: their sets are probed one by one.
//
// Policies scoped to the same appIDs share one scope index; a request consults the index of
// policies without appIDs and those of the scopes naming its appID.

// Request inputs a pattern can be matched against.
const (
	inputFrom = iota
	inputTo
	inputWording
	numInputs
)

const (
	sideFrom = 1 << inputFrom
	sideTo   = 1 << inputTo
	// entryExempt marks an entryRef to a policy's exemptions rather than a blocklist.
	entryExempt = 0xFF
)

// entryRef points at an exemption or blocklist of a policy, for the sides it looks at.
type entryRef struct {
	policy uint32
	entry  uint8
	sides  uint8
}

// ruleRef points at a rule of a policy.
type ruleRef struct {
	policy uint32
	rule   uint8
}

// scopeIndex indexes the policies of one scope (one set of appIDs, or none).
type scopeIndex struct {
	users    exactIndex[entryRef]
	prefixes prefixTrie[entryRef]
	// lists are the ConfigMap-fed blocklists, probed one by one.
	lists []listRef
	// idPatterns are the distinct whole-ID patterns of the scope's blocklists.
	idPatterns []scopePattern
	idLiterals literalIndex
	idAlways   []uint32
	rules      ruleIndex
	// keywords are the distinct dictionaries (by snapshot id) of rules filed under them.
	keywords []scopeDict
}

// scopeDict is a dictionary (by snapshot id) and the rules filed under it.
type scopeDict struct {
	id   uint32
	refs []ruleRef
}

type listRef struct {
	entryRef
	set *userSet
}

// scopePattern is a pattern (by snapshot pattern id) and the entries using it.
type scopePattern struct {
	id   uint32
	refs []entryRef
}

// literalIndex finds, in one pass over a text, which of a set of literals occur; each
// literal names the items (scope patterns or rules) that need it.
type literalIndex struct {
	ac    *acMatcher
	spans []span
	items []uint32
}

// ruleIndex files each rule of a scope under one condition.
// Parts most scopes do not use are pointers, so an unused one costs a word.
type ruleIndex struct {
	wording     literalIndex
	wordingRefs []ruleRef
	guards      []guardIndex
	addSources  exactIndex[ruleRef]
	cidrs       *bart.Table[[]ruleRef]
	platforms   *[numPlatformBits][]ruleRef
	always      *[len(v1alpha1.Events)][]ruleRef
}

type guardIndex struct {
	field    reqField
	values   exactIndex[ruleRef]
	prefixes prefixTrie[ruleRef]
}

const numPlatformBits = 8

// scratch is the per-decision state, pooled by the snapshot. Arrays indexed by policy or
// pattern are stamped with the decision's epoch instead of being cleared, so a decision
// costs what it touches, not the snapshot's size.
type scratch struct {
	epoch   uint32
	hits    []policyHit
	touched []uint32
	// memo caches a pattern's result per input: memo[id*numInputs+input].
	memo []memoEntry
	// kwMemo caches a dictionary's match per text: kwMemo[id*numKeywordInputs+input].
	kwMemo []kwMemoEntry
	// scanEpoch and seen dedupe literals within one pass of a literalIndex.
	scanEpoch uint32
	seen      []uint32
	act       celActivation
	// Derived from the request on first use.
	ip        netip.Addr
	ipParsed  bool
	platform  uint16
	platDone  bool
	fastCEL   bool
	fastKnown bool
}

type policyHit struct {
	epoch  uint32
	exempt bool
	blocks uint16
	rules  uint64
}

type memoEntry struct {
	epoch uint32
	match bool
}

type kwMemoEntry struct {
	epoch uint32
	ok    bool
	m     keywords.Match
}

func (s *Snapshot) newScratch() *scratch {
	return &scratch{
		hits:   make([]policyHit, len(s.policies)),
		memo:   make([]memoEntry, len(s.patterns)*numInputs),
		kwMemo: make([]kwMemoEntry, len(s.dicts)*numKeywordInputs),
		seen:   make([]uint32, s.maxLiterals),
	}
}

func (sc *scratch) begin(r *Request) {
	sc.epoch++
	if sc.epoch == 0 {
		clear(sc.hits)
		clear(sc.memo)
		clear(sc.kwMemo)
		sc.epoch = 1
	}
	sc.touched = sc.touched[:0]
	sc.act.reset(r)
	sc.ipParsed, sc.platDone, sc.fastKnown = false, false, false
}

func (sc *scratch) platformBit() uint16 {
	if !sc.platDone {
		sc.platform, sc.platDone = platformBit(sc.act.r.Platform), true
	}
	return sc.platform
}

func (sc *scratch) fitsFastCEL() bool {
	if !sc.fastKnown {
		sc.fastCEL, sc.fastKnown = fitsFastCEL(sc.act.r), true
	}
	return sc.fastCEL
}

func (sc *scratch) hit(policy uint32) *policyHit {
	h := &sc.hits[policy]
	if h.epoch != sc.epoch {
		*h = policyHit{epoch: sc.epoch}
		sc.touched = append(sc.touched, policy)
	}
	return h
}

func (sc *scratch) markEntries(refs []entryRef, side uint8) {
	for _, ref := range refs {
		if ref.sides&side == 0 {
			continue
		}
		h := sc.hit(ref.policy)
		if ref.entry == entryExempt {
			h.exempt = true
		} else {
			h.blocks |= 1 << ref.entry
		}
	}
}

func (sc *scratch) markRules(refs []ruleRef) {
	for _, ref := range refs {
		sc.hit(ref.policy).rules |= 1 << ref.rule
	}
}

// clientIP parses the request's client address once per decision.
func (sc *scratch) clientIP() netip.Addr {
	if !sc.ipParsed {
		ip, _ := netip.ParseAddr(sc.act.r.ClientIP)
		sc.ip, sc.ipParsed = ip.Unmap(), true
	}
	return sc.ip
}

// scan runs a literal pass over text and calls fn once per item of each literal found.
func (sc *scratch) scan(x *literalIndex, text string, fn func(item uint32)) {
	if x.ac == nil {
		return
	}
	sc.scanEpoch++
	if sc.scanEpoch == 0 {
		clear(sc.seen)
		sc.scanEpoch = 1
	}
	x.ac.scan(text, func(lit uint32) {
		if sc.seen[lit] == sc.scanEpoch {
			return
		}
		sc.seen[lit] = sc.scanEpoch
		for _, item := range x.items[x.spans[lit].lo:x.spans[lit].hi] {
			fn(item)
		}
	})
}

// matches runs pattern id on one input of the request, once per decision.
func (s *Snapshot) matches(sc *scratch, id uint32, input int, text string) bool {
	m := &sc.memo[int(id)*numInputs+input]
	if m.epoch != sc.epoch {
		m.epoch, m.match = sc.epoch, s.patterns[id].match(text)
	}
	return m.match
}

// dictMatch runs dictionary id on one text of the request, once per decision.
func (s *Snapshot) dictMatch(sc *scratch, id uint32, input int) *kwMemoEntry {
	m := &sc.kwMemo[int(id)*numKeywordInputs+input]
	if m.epoch != sc.epoch {
		k := s.dicts[id]
		m.epoch = sc.epoch
		m.m, m.ok = k.dict.Match(k.text(sc.act.r, input))
	}
	return m
}

// dictHolds reports whether dictionary id matches one of the texts it reads.
func (s *Snapshot) dictHolds(sc *scratch, id uint32) bool {
	for input := range numKeywordInputs {
		if s.dicts[id].inputs&(1<<input) != 0 && s.dictMatch(sc, id, input).ok {
			return true
		}
	}
	return false
}

// keywordMatch reports the match of dictionary id that made v's rule hold.
func (s *Snapshot) keywordMatch(sc *scratch, id uint32, v *Verdict) KeywordMatch {
	for input := range numKeywordInputs {
		if s.dicts[id].inputs&(1<<input) != 0 {
			if m := s.dictMatch(sc, id, input); m.ok {
				return *newKeywordMatch(v, input, m.m)
			}
		}
	}
	return KeywordMatch{Verdict: v}
}

// collect marks every entry of the scope that can hold for r.
func (s *Snapshot) collect(x *scopeIndex, sc *scratch, r *Request, ei int) {
	ids := [2]string{inputFrom: r.From, inputTo: r.To}
	for input, id := range ids {
		side := uint8(1) << input
		sc.markEntries(x.users.get(id), side)
		x.prefixes.walk(id, func(refs []entryRef) { sc.markEntries(refs, side) })
		sc.scan(&x.idLiterals, id, func(i uint32) {
			p := &x.idPatterns[i]
			if s.matches(sc, p.id, input, id) {
				sc.markEntries(p.refs, side)
			}
		})
		for _, pi := range x.idAlways {
			p := &x.idPatterns[pi]
			if s.matches(sc, p.id, input, id) {
				sc.markEntries(p.refs, side)
			}
		}
		for i := range x.lists {
			l := &x.lists[i]
			// The list's prefixes and patterns are in the index; only its users are probed.
			if l.sides&side != 0 && l.set.list.contains(id) {
				sc.hit(l.policy).blocks |= 1 << l.entry
			}
		}
	}

	ri := &x.rules
	sc.scan(&ri.wording, r.Wording, func(i uint32) { sc.markRules(ri.wordingRefs[i : i+1]) })
	for i := range ri.guards {
		g := &ri.guards[i]
		v := r.str(g.field)
		sc.markRules(g.values.get(v))
		g.prefixes.walk(v, sc.markRules)
	}
	sc.markRules(ri.addSources.get(r.AddSource))
	if ri.cidrs != nil {
		if refs, ok := ri.cidrs.Lookup(sc.clientIP()); ok {
			sc.markRules(refs)
		}
	}
	if ri.platforms != nil {
		if p := sc.platformBit(); p != 0 {
			sc.markRules(ri.platforms[bits.TrailingZeros16(p)])
		}
	}
	if ri.always != nil {
		sc.markRules(ri.always[ei])
	}
	for i := range x.keywords {
		if k := &x.keywords[i]; s.dictHolds(sc, k.id) {
			sc.markRules(k.refs)
		}
	}
}

// verdict confirms the candidates of policy p in the order docs/policy.md gives: exemptions,
// blocklists in order, rules in order. rule is the deciding rule's index, -1 when none
// decides.
func (s *Snapshot) verdict(sc *scratch, p uint32, r *Request, ei int, errs *[]error) (v *Verdict, rule int) {
	h := &sc.hits[p]
	c := s.policies[p]
	if h.exempt {
		return nil, -1
	}
	if h.blocks != 0 {
		return c.blocklists[bits.TrailingZeros16(h.blocks)].verdict, -1
	}
	for m := h.rules; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		if s.ruleHolds(sc, p, i, r, ei, errs) {
			return c.rules[i].verdict, i
		}
	}
	return nil, -1
}

func (s *Snapshot) ruleHolds(sc *scratch, p uint32, i int, r *Request, ei int, errs *[]error) bool {
	rule := &s.policies[p].rules[i]
	if rule.events != 0 && rule.events&(1<<ei) == 0 {
		return false
	}
	if rule.platforms != 0 && rule.platforms&sc.platformBit() == 0 {
		return false
	}
	if len(rule.addSources) > 0 && !slices.Contains(rule.addSources, r.AddSource) {
		return false
	}
	if len(rule.cidrs) > 0 && !inAny(rule.cidrs, sc.clientIP()) {
		return false
	}
	if ids := s.ruleWording[s.ruleBase[p]+uint32(i)]; len(ids) > 0 {
		found := false
		for _, id := range ids {
			if s.matches(sc, id, inputWording, r.Wording) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if id := s.ruleDict[s.ruleBase[p]+uint32(i)]; id != 0 && !s.dictHolds(sc, id-1) {
		return false
	}
	if rule.when != nil {
		ok, err := rule.when.eval(&sc.act, sc.fitsFastCEL())
		if err != nil {
			*errs = append(*errs, whenError(rule.verdict, err))
		}
		return ok
	}
	return true
}

// indexBuilder gathers a scope's entries before they are laid out.
type indexBuilder struct {
	s        *Snapshot
	appIDs   []string
	users    keyed[entryRef]
	prefixes keyed[entryRef]
	lists    []listRef
	idPats   map[uint32]int
	x        *scopeIndex

	wordingLits map[string][]ruleRef
	guards      [numStringFields]*guardBuilder
	addSources  keyed[ruleRef]
	cidrs       map[netip.Prefix][]ruleRef
	dicts       map[uint32]int
}

type guardBuilder struct {
	values, prefixes keyed[ruleRef]
}

func newIndexBuilder(s *Snapshot) *indexBuilder {
	// The maps are made on first use: a snapshot of thousands of app-scoped policies has as
	// many scopes, most of which use one or two of them.
	return &indexBuilder{s: s, x: &scopeIndex{}}
}

// add files policy p (its ordinal in the snapshot) in the scope.
func (b *indexBuilder) add(p uint32) {
	c := b.s.policies[p]
	exempt := entryRef{policy: p, entry: entryExempt, sides: sideFrom | sideTo}
	for _, u := range c.exempt.users {
		b.users.add(u, exempt)
	}
	for _, pfx := range c.exempt.prefixes {
		b.prefixes.add(pfx, exempt)
	}
	for i := range c.blocklists {
		bl := &c.blocklists[i]
		ref := entryRef{policy: p, entry: uint8(i)}
		if bl.from {
			ref.sides |= sideFrom
		}
		if bl.to {
			ref.sides |= sideTo
		}
		if bl.selector != nil {
			b.lists = append(b.lists, listRef{entryRef: ref, set: &bl.set})
		} else {
			for _, u := range bl.set.users {
				b.users.add(u, ref)
			}
		}
		for _, pfx := range bl.set.prefixes {
			b.prefixes.add(pfx, ref)
		}
		for _, pat := range bl.set.patterns {
			id := b.s.patternID(pat)
			k, ok := b.idPats[id]
			if !ok {
				k = len(b.x.idPatterns)
				if b.idPats == nil {
					b.idPats = map[uint32]int{}
				}
				b.idPats[id] = k
				b.x.idPatterns = append(b.x.idPatterns, scopePattern{id: id})
			}
			b.x.idPatterns[k].refs = append(b.x.idPatterns[k].refs, ref)
		}
	}
	for i := range c.rules {
		b.addRule(c, ruleRef{policy: p, rule: uint8(i)})
	}
}

// addRule files a rule under its most selective indexable condition.
func (b *indexBuilder) addRule(c *Compiled, ref ruleRef) {
	rule := &c.rules[ref.rule]
	var guard *celGuard
	if rule.when != nil {
		guard = rule.when.guard
	}
	switch {
	case guard != nil && !guard.prefix:
		b.guard(guard.field).values.addAll(guard.values, ref)
	case wordingIndexable(rule.wording):
		for _, wp := range rule.wording {
			for _, lit := range wp.literals {
				if b.wordingLits == nil {
					b.wordingLits = map[string][]ruleRef{}
				}
				b.wordingLits[lit] = append(b.wordingLits[lit], ref)
			}
		}
	case guard != nil:
		b.guard(guard.field).prefixes.addAll(guard.values, ref)
	case len(rule.addSources) > 0:
		b.addSources.addAll(rule.addSources, ref)
	case len(rule.cidrs) > 0:
		for _, pfx := range rule.cidrs {
			if b.cidrs == nil {
				b.cidrs = map[netip.Prefix][]ruleRef{}
			}
			b.cidrs[pfx] = append(b.cidrs[pfx], ref)
		}
	case rule.keywords != nil:
		// One pass of the dictionary over the text (memoised per decision) decides for
		// every rule that shares it; cheaper conditions above are preferred, since the
		// dictionary then runs only for the requests they let through.
		id := b.s.ruleDict[b.s.ruleBase[ref.policy]+uint32(ref.rule)] - 1
		k, ok := b.dicts[id]
		if !ok {
			k = len(b.x.keywords)
			if b.dicts == nil {
				b.dicts = map[uint32]int{}
			}
			b.dicts[id] = k
			b.x.keywords = append(b.x.keywords, scopeDict{id: id})
		}
		b.x.keywords[k].refs = append(b.x.keywords[k].refs, ref)
	case rule.platforms != 0:
		ri := &b.x.rules
		if ri.platforms == nil {
			ri.platforms = new([numPlatformBits][]ruleRef)
		}
		for bit := range numPlatformBits {
			if rule.platforms&(1<<bit) != 0 {
				ri.platforms[bit] = append(ri.platforms[bit], ref)
			}
		}
	default:
		events := rule.events
		if events == 0 {
			events = c.events
		}
		ri := &b.x.rules
		if ri.always == nil {
			ri.always = new([len(v1alpha1.Events)][]ruleRef)
		}
		for ei := range v1alpha1.Events {
			if events&(1<<ei) != 0 {
				ri.always[ei] = append(ri.always[ei], ref)
			}
		}
	}
}

func (k *keyed[V]) addAll(keys []string, v V) {
	for _, key := range keys {
		k.add(key, v)
	}
}

func (b *indexBuilder) guard(f reqField) *guardBuilder {
	if b.guards[f] == nil {
		b.guards[f] = &guardBuilder{}
	}
	return b.guards[f]
}

func wordingIndexable(patterns []*pattern) bool {
	for _, p := range patterns {
		if p.literals == nil {
			return false
		}
	}
	return len(patterns) > 0
}

// build lays the scope out.
func (b *indexBuilder) build() *scopeIndex {
	x := b.x
	x.users = newExactIndex(&b.users)
	x.prefixes = newPrefixTrie(&b.prefixes)
	x.lists = b.lists

	idLits := map[string][]uint32{}
	for k, sp := range x.idPatterns {
		lp := b.s.patterns[sp.id].literals
		if lp == nil {
			x.idAlways = append(x.idAlways, uint32(k))
			continue
		}
		for _, lit := range lp {
			idLits[lit] = append(idLits[lit], uint32(k))
		}
	}
	// Literals in sorted order: scopes with the same literals share one automaton.
	lits := slices.Sorted(maps.Keys(idLits))
	litItems := make([][]uint32, len(lits))
	for i, lit := range lits {
		litItems[i] = idLits[lit]
	}
	x.idLiterals = b.s.literalIndex(lits, litItems)

	ri := &x.rules
	lits, litItems = lits[:0], litItems[:0]
	for _, lit := range slices.Sorted(maps.Keys(b.wordingLits)) {
		var items []uint32
		for _, ref := range b.wordingLits[lit] {
			items = append(items, uint32(len(ri.wordingRefs)))
			ri.wordingRefs = append(ri.wordingRefs, ref)
		}
		lits = append(lits, lit)
		litItems = append(litItems, items)
	}
	ri.wording = b.s.literalIndex(lits, litItems)
	for f, g := range b.guards {
		if g != nil {
			ri.guards = append(ri.guards, guardIndex{field: reqField(f), values: newExactIndex(&g.values), prefixes: newPrefixTrie(&g.prefixes)})
		}
	}
	ri.addSources = newExactIndex(&b.addSources)
	if len(b.cidrs) > 0 {
		ri.cidrs = cidrTable(b.cidrs)
	}
	return x
}

// cidrTable stores, under each prefix, the rules of every prefix that contains it: the
// longest-prefix match of an address then yields every rule one of whose CIDRs holds it.
func cidrTable(byPrefix map[netip.Prefix][]ruleRef) *bart.Table[[]ruleRef] {
	plain := new(bart.Table[[]ruleRef])
	for pfx, refs := range byPrefix {
		plain.Insert(pfx, refs)
	}
	closed := new(bart.Table[[]ruleRef])
	for pfx := range byPrefix {
		var all []ruleRef
		for _, refs := range plain.Supernets(pfx) {
			all = append(all, refs...)
		}
		closed.Insert(pfx, all)
	}
	return closed
}

// literalIndex builds a literalIndex whose literal i names items[i].
func (s *Snapshot) literalIndex(lits []string, items [][]uint32) literalIndex {
	if len(lits) == 0 {
		return literalIndex{}
	}
	x := literalIndex{ac: sharedACMatcher(lits), spans: make([]span, len(lits))}
	for i, it := range items {
		x.spans[i] = span{uint32(len(x.items)), 0}
		x.items = append(x.items, it...)
		x.spans[i].hi = uint32(len(x.items))
	}
	s.maxLiterals = max(s.maxLiterals, len(lits))
	return x
}
