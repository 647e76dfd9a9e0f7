package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

// Snapshot is an immutable set of compiled policies, indexed by event and appID so that a
// decision only visits the policies that can apply to it. Share it freely between goroutines.
type Snapshot struct {
	byEvent  [len(v1alpha1.Events)]eventPolicies
	policies []*Compiled
}

// eventPolicies holds, for one event, the candidate policies of every appID named by some
// policy, and those of any other appID.
type eventPolicies struct {
	byApp map[string]*candidates
	any   *candidates
}

// candidates are the policies that apply to one (event, appID), in decision order: highest
// priority first, then namespace/name.
type candidates struct {
	deny   []*Compiled
	dryRun []*Compiled
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

	s := &Snapshot{policies: policies}
	for ei := range v1alpha1.Events {
		var wildcard []*Compiled
		scoped := map[string][]*Compiled{}
		for _, c := range policies {
			if c.events&(1<<ei) == 0 {
				continue
			}
			if len(c.appIDs) == 0 {
				wildcard = append(wildcard, c)
				continue
			}
			for _, app := range c.appIDs {
				scoped[app] = append(scoped[app], c)
			}
		}
		ep := eventPolicies{any: newCandidates(wildcard)}
		if len(scoped) > 0 {
			ep.byApp = make(map[string]*candidates, len(scoped))
			for app, list := range scoped {
				ep.byApp[app] = newCandidates(mergeOrdered(list, wildcard))
			}
		}
		s.byEvent[ei] = ep
	}
	return s
}

// before is the decision order: higher priority first, then namespace/name.
func before(a, b *Compiled) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	return a.Key < b.Key
}

func mergeOrdered(a, b []*Compiled) []*Compiled {
	out := make([]*Compiled, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if before(a[0], b[0]) {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}

func newCandidates(list []*Compiled) *candidates {
	if len(list) == 0 {
		return nil
	}
	c := &candidates{}
	for _, p := range list {
		if p.DryRun {
			c.dryRun = append(c.dryRun, p)
		} else {
			c.deny = append(c.deny, p)
		}
	}
	return c
}

// Policies returns the snapshot's policies in decision order. Do not modify them.
func (s *Snapshot) Policies() []*Compiled { return s.policies }

// Decide answers one request. Deny policies are tried in decision order and the first that
// refuses decides; every DryRun policy is evaluated so its "would deny" can be reported.
func (s *Snapshot) Decide(r *Request) Decision {
	var d Decision
	c := s.candidatesFor(r)
	if c == nil {
		return d
	}
	ei := eventIndex(r.Event)
	for _, p := range c.deny {
		if v := p.evaluate(r, ei, &d.Errors); v != nil {
			d.Deny = v
			break
		}
	}
	for _, p := range c.dryRun {
		if v := p.evaluate(r, ei, &d.Errors); v != nil {
			d.WouldDeny = append(d.WouldDeny, v)
		}
	}
	return d
}

func (s *Snapshot) candidatesFor(r *Request) *candidates {
	ei := eventIndex(r.Event)
	if s == nil || ei < 0 {
		return nil
	}
	ep := &s.byEvent[ei]
	if c, ok := ep.byApp[r.AppID]; ok {
		return c
	}
	return ep.any
}

// evaluate returns the policy's verdict for r, or nil when the policy says nothing.
func (c *Compiled) evaluate(r *Request, ei int, errs *[]error) *Verdict {
	if c.exempt.contains(r.From) || c.exempt.contains(r.To) {
		return nil
	}
	for i := range c.blocklists {
		b := &c.blocklists[i]
		if (b.from && b.set.contains(r.From)) || (b.to && b.set.contains(r.To)) {
			return b.verdict
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
		if rule.wording != nil && !rule.wording.MatchString(r.Wording) {
			continue
		}
		if rule.when != nil {
			ok, err := evalWhen(rule.when, r)
			if err != nil {
				*errs = append(*errs, fmt.Errorf("%s: when: %w", rule.verdict.Detail, err))
			}
			if !ok {
				continue
			}
		}
		return rule.verdict
	}
	return nil
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
			t.Verdict = c.evaluate(r, ei, &errs)
			if t.Verdict != nil {
				t.Reason = fmt.Sprintf("%s %s matches", t.Verdict.Kind, t.Verdict.Name)
			} else {
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
