package policy

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/friendgate/friendgate/internal/keywords"
)

// Snapshot is an immutable set of compiled policies with their cross-policy index (see
// index.go), so that a decision costs what matches rather than how many policies, rules and
// list entries there are. Share it freely between goroutines.
type Snapshot struct {
	// policies in decision order; a policy's ordinal is its position here.
	policies []*Compiled
	// wildcard indexes the policies without appIDs (nil when there are none); byApp the
	// scopes that name each appID, and its limits.
	wildcard *scopeIndex
	byApp    map[string]appIndex
	// patterns are the distinct patterns of the snapshot, by id.
	patterns   []*pattern
	patternIDs map[*pattern]uint32
	// ruleWording[ruleBase[p]+i] are the pattern ids of rule i of policy p's wording.
	ruleBase    []uint32
	ruleWording [][]uint32
	// dicts are the distinct keyword dictionaries of the snapshot, by id; ruleDict[ruleBase[p]+i]
	// is the id+1 of rule i of policy p's dictionary, 0 when it has none.
	dicts    []*keywordCond
	byDict   map[dictUse]uint32
	ruleDict []uint32
	// wildcardLimits are the candidate limits of the policies without appIDs (nil when
	// none has limits).
	wildcardLimits *limitLists
	// maxLiterals sizes the scratch's literal stamps.
	maxLiterals int
	scratch     sync.Pool
}

// NewSnapshot indexes compiled policies. Two policies with the same Key are a caller bug;
// the later one wins.
func NewSnapshot(compiled []*Compiled) *Snapshot {
	byKey := make(map[string]*Compiled, len(compiled))
	for _, c := range compiled {
		byKey[c.Key] = c
	}
	policies := make([]*Compiled, 0, len(byKey))
	for _, c := range byKey {
		policies = append(policies, c)
	}
	sort.Slice(policies, func(i, j int) bool { return before(policies[i], policies[j]) })

	s := &Snapshot{policies: policies, patternIDs: map[*pattern]uint32{}, byDict: map[dictUse]uint32{}}
	s.ruleBase = make([]uint32, len(policies))
	for p, c := range policies {
		s.ruleBase[p] = uint32(len(s.ruleWording))
		for i := range c.rules {
			var ids []uint32
			for _, wp := range c.rules[i].wording {
				ids = append(ids, s.patternID(wp))
			}
			s.ruleWording = append(s.ruleWording, ids)
			var dict uint32
			if k := c.rules[i].keywords; k != nil {
				dict = s.dictID(k) + 1
			}
			s.ruleDict = append(s.ruleDict, dict)
		}
	}

	// One scope per distinct set of appIDs.
	scopes := map[string]*indexBuilder{}
	var wildcard *indexBuilder
	for p, c := range policies {
		if len(c.appIDs) == 0 {
			if wildcard == nil {
				wildcard = newIndexBuilder(s)
			}
			wildcard.add(uint32(p))
			continue
		}
		key := strings.Join(sortedUnique(c.appIDs), "\x00")
		b, ok := scopes[key]
		if !ok {
			b = newIndexBuilder(s)
			scopes[key] = b
		}
		b.add(uint32(p))
		if !ok {
			b.appIDs = sortedUnique(c.appIDs)
		}
	}
	if wildcard != nil {
		s.wildcard = wildcard.build()
	}
	if len(scopes) > 0 {
		s.byApp = map[string]appIndex{}
		for _, key := range slices.Sorted(maps.Keys(scopes)) {
			b := scopes[key]
			x := b.build()
			for _, app := range b.appIDs {
				a := s.byApp[app]
				a.scopes = append(a.scopes, x)
				s.byApp[app] = a
			}
		}
	}
	s.indexLimits()
	s.patternIDs, s.byDict = nil, nil
	s.scratch.New = func() any { return s.newScratch() }
	return s
}

// appIndex is what a snapshot keeps for one appID that policies name: the scopes naming
// it, and the candidate limits of its requests when a policy naming it has limits (those
// of the policies without appIDs included; nil otherwise, as those are the wildcard's).
type appIndex struct {
	scopes []*scopeIndex
	limits *limitLists
}

func sortedUnique(list []string) []string {
	out := slices.Clone(list)
	slices.Sort(out)
	return slices.Compact(out)
}

// patternID numbers the distinct patterns while the snapshot is built.
func (s *Snapshot) patternID(p *pattern) uint32 {
	id, ok := s.patternIDs[p]
	if !ok {
		id = uint32(len(s.patterns))
		s.patterns = append(s.patterns, p)
		s.patternIDs[p] = id
	}
	return id
}

// dictUse is a dictionary and the texts it reads: rules sharing both share one id, so the
// dictionary runs at most once per text and request.
type dictUse struct {
	dict   *keywords.Dictionary
	inputs uint8
}

// dictID numbers the distinct dictionary uses while the snapshot is built.
func (s *Snapshot) dictID(k *keywordCond) uint32 {
	u := dictUse{k.dict, k.inputs}
	id, ok := s.byDict[u]
	if !ok {
		id = uint32(len(s.dicts))
		s.dicts = append(s.dicts, k)
		s.byDict[u] = id
	}
	return id
}

// before is the decision order: higher priority first, then namespace/name.
func before(a, b *Compiled) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	return a.Key < b.Key
}

// Policies returns the snapshot's policies in decision order. Do not modify them.
func (s *Snapshot) Policies() []*Compiled { return s.policies }

// Decide answers one request. The index gives the candidate entries; they are confirmed
// policy by policy in decision order. The first Deny policy that refuses decides; every
// DryRun policy with a verdict is reported. A request no policy refuses gets the limits it
// counts against.
func (s *Snapshot) Decide(r *Request) Decision {
	var d Decision
	ei := eventIndex(r.Event)
	if s == nil || ei < 0 {
		return d
	}
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	sc.begin(r)
	if s.wildcard != nil {
		s.collect(s.wildcard, sc, r, ei)
	}
	app := s.byApp[r.AppID]
	for _, x := range app.scopes {
		s.collect(x, sc, r, ei)
	}
	slices.Sort(sc.touched)
	for _, p := range sc.touched {
		c := s.policies[p]
		if c.events&(1<<ei) == 0 || (d.Deny != nil && !c.DryRun) {
			continue
		}
		v, rule := s.verdict(sc, p, r, ei, &d.Errors)
		if v != nil && rule >= 0 {
			if id := s.ruleDict[s.ruleBase[p]+uint32(rule)]; id != 0 {
				d.Keywords = append(d.Keywords, s.keywordMatch(sc, id-1, v))
			}
		}
		switch {
		case v == nil:
		case c.DryRun:
			d.WouldDeny = append(d.WouldDeny, v)
		default:
			d.Deny = v
		}
	}
	if d.Deny == nil && (app.limits != nil || s.wildcardLimits != nil) {
		d.Limits = s.limits(sc, r, ei, app.limits)
	}
	sc.act.reset(nil)
	return d
}

// evaluate returns the policy's verdict for r, or nil when the policy says nothing, and the
// keyword match that made the deciding rule hold, if it has a keyword condition. It walks
// the policy without the index, for explanations.
func (c *Compiled) evaluate(r *Request, ei int, errs *[]error) (*Verdict, *KeywordMatch) {
	if c.exempt.contains(r.From) || c.exempt.contains(r.To) {
		return nil, nil
	}
	for i := range c.blocklists {
		b := &c.blocklists[i]
		if (b.from && b.set.contains(r.From)) || (b.to && b.set.contains(r.To)) {
			return b.verdict, nil
		}
	}
	var ip netip.Addr
	ipParsed := false
	for i := range c.rules {
		rule := &c.rules[i]
		if rule.events != 0 && rule.events&(1<<ei) == 0 {
			continue
		}
		if rule.platforms != 0 && rule.platforms&platformBit(r.Platform) == 0 {
			continue
		}
		if len(rule.addSources) > 0 && !slices.Contains(rule.addSources, r.AddSource) {
			continue
		}
		if len(rule.cidrs) > 0 {
			if !ipParsed {
				ip, _ = netip.ParseAddr(r.ClientIP)
				ip, ipParsed = ip.Unmap(), true
			}
			if !inAny(rule.cidrs, ip) {
				continue
			}
		}
		if len(rule.wording) > 0 && !slices.ContainsFunc(rule.wording, func(p *pattern) bool { return p.match(r.Wording) }) {
			continue
		}
		var kw *KeywordMatch
		if rule.keywords != nil {
			var ok bool
			if kw, ok = rule.keywords.match(r, rule.verdict); !ok {
				continue
			}
		}
		if rule.when != nil {
			var act celActivation
			act.reset(r)
			ok, err := rule.when.eval(&act, fitsFastCEL(r))
			if err != nil {
				*errs = append(*errs, whenError(rule.verdict, err))
			}
			if !ok {
				continue
			}
		}
		return rule.verdict, kw
	}
	return nil, nil
}

func whenError(v *Verdict, err error) error {
	return fmt.Errorf("%s: when: %w", v.Detail, err)
}

func inAny(prefixes []netip.Prefix, ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Trace says what one policy made of a request, for `friendgate test` explanations.
type Trace struct {
	// Policy is namespace/name.
	Policy string
	// DryRun is true for DryRun policies.
	DryRun bool
	// Verdict is the policy's verdict, nil when it said nothing.
	Verdict *Verdict
	// Reason says in words why the policy decided as it did.
	Reason string
	// Keyword is the dictionary entry that made the deciding rule hold, nil when the
	// verdict did not come from a keyword condition.
	Keyword *KeywordMatch
}

// Explain reports what every policy in the snapshot made of r, in decision order. It is
// slow and meant for tooling, not for answering callbacks.
func (s *Snapshot) Explain(r *Request) []Trace {
	ei := eventIndex(r.Event)
	traces := make([]Trace, 0, len(s.policies))
	for _, c := range s.policies {
		t := Trace{Policy: c.Key, DryRun: c.DryRun}
		switch {
		case ei < 0:
			t.Reason = fmt.Sprintf("event %q is not one friendgate knows", r.Event)
		case c.events&(1<<ei) == 0:
			t.Reason = fmt.Sprintf("does not apply to event %s", r.Event)
		case len(c.appIDs) > 0 && !slices.Contains(c.appIDs, r.AppID):
			t.Reason = fmt.Sprintf("does not apply to appID %q (appIDs: %s)", r.AppID, strings.Join(c.appIDs, ", "))
		case c.exempt.contains(r.From):
			t.Reason = fmt.Sprintf("exempts from %q (%s)", r.From, c.exempt.describe(r.From))
		case c.exempt.contains(r.To):
			t.Reason = fmt.Sprintf("exempts to %q (%s)", r.To, c.exempt.describe(r.To))
		default:
			var errs []error
			t.Verdict, t.Keyword = c.evaluate(r, ei, &errs)
			switch {
			case t.Keyword != nil:
				m := t.Keyword
				t.Reason = fmt.Sprintf("%s %s matches: %s %q", t.Verdict.Kind, t.Verdict.Name, m, keywordInputText(r, m.Input)[m.Start:m.End])
			case t.Verdict != nil:
				t.Reason = fmt.Sprintf("%s %s matches", t.Verdict.Kind, t.Verdict.Name)
			default:
				t.Reason = "no blocklist or rule matches"
			}
			for _, err := range errs {
				t.Reason += "; error: " + err.Error()
			}
		}
		traces = append(traces, t)
	}
	return traces
}
