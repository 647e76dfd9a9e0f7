package policy

import (
	"net/netip"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/keywords"
)

// The reference evaluator is the engine's first evaluate loop, kept as the straightforward
// meaning of docs/policy.md: every policy, every blocklist, every rule, in order, with one
// regular expression per list and CEL over the Request through reflection. It shares
// nothing with the indexed core but the spec, so the differential test compares two
// independent readings of the contract.

type refPolicy struct {
	key        string
	priority   int32
	dryRun     bool
	appIDs     []string
	events     []string
	exempt     refSet
	blocklists []refBlocklist
	rules      []refRule
	limits     []refLimit
}

type refLimit struct {
	name   string
	events []string
	key    v1alpha1.LimitKey
}

// counts reports whether r counts against the limit, its policy applying and not
// exempting r: r's event is one of the limit's and r has the limit's subject.
func (l *refLimit) counts(r *Request) bool {
	if !refContains(l.events, r.Event) {
		return false
	}
	switch l.key {
	case v1alpha1.LimitKeyFrom:
		return r.From != ""
	case v1alpha1.LimitKeyTo:
		return r.To != ""
	case v1alpha1.LimitKeyClientIP:
		return r.ClientIP != ""
	case v1alpha1.LimitKeyFromTo:
		return r.From != "" && r.To != ""
	}
	return false
}

type refSet struct {
	users    map[string]bool
	prefixes []string
	pattern  *regexp.Regexp
}

func (s *refSet) contains(id string) bool {
	if s.users[id] {
		return true
	}
	for _, p := range s.prefixes {
		if strings.HasPrefix(id, p) {
			return true
		}
	}
	return s.pattern != nil && s.pattern.MatchString(id)
}

type refBlocklist struct {
	name     string
	from, to bool
	set      refSet
	code     int32
}

type refRule struct {
	name       string
	events     []string
	platforms  []string
	addSources []string
	cidrs      []netip.Prefix
	wording    *regexp.Regexp
	keywords   *keywords.Dictionary
	kwInputs   []v1alpha1.KeywordInput
	when       cel.Program
	code       int32
}

func refCompile(t testing.TB, fp *v1alpha1.FriendPolicy, cms []*corev1.ConfigMap) *refPolicy {
	t.Helper()
	spec := &fp.Spec
	p := &refPolicy{
		key:      fp.Namespace + "/" + fp.Name,
		priority: spec.Priority,
		dryRun:   spec.EnforcementAction == v1alpha1.EnforcementDryRun,
		appIDs:   spec.AppIDs,
	}
	for _, e := range spec.Events {
		p.events = append(p.events, string(e))
	}
	if len(p.events) == 0 {
		for _, e := range v1alpha1.DefaultEvents {
			p.events = append(p.events, string(e))
		}
	}
	if ex := spec.Exemptions; ex != nil {
		p.exempt = refNewSet(ex.Users, ex.Prefixes, nil)
	}
	for _, b := range spec.Blocklists {
		rb := refBlocklist{
			name: b.Name,
			from: b.Subject != v1alpha1.SubjectTo,
			to:   b.Subject != v1alpha1.SubjectFrom,
			set:  refNewSet(b.Users, b.Prefixes, b.Patterns),
			code: b.Code,
		}
		if b.ConfigMapSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(b.ConfigMapSelector)
			if err != nil {
				t.Fatal(err)
			}
			for _, cm := range cms {
				if _, ok := cm.Labels[v1alpha1.LabelList]; !ok || cm.Namespace != fp.Namespace || !sel.Matches(labels.Set(cm.Labels)) {
					continue
				}
				for _, data := range cm.Data {
					for _, line := range strings.Split(data, "\n") {
						if line = strings.TrimSpace(line); line != "" && line[0] != '#' {
							rb.set.users[line] = true
						}
					}
				}
			}
		}
		p.blocklists = append(p.blocklists, rb)
	}
	for _, r := range spec.Rules {
		rr := refRule{name: r.Name, platforms: r.Platforms, addSources: r.AddSources, code: r.Code}
		for _, e := range r.Events {
			rr.events = append(rr.events, string(e))
		}
		for _, c := range r.ClientCIDRs {
			rr.cidrs = append(rr.cidrs, netip.MustParsePrefix(c).Masked())
		}
		if len(r.WordingPatterns) > 0 {
			rr.wording = regexp.MustCompile(refAlternatives(r.WordingPatterns))
		}
		if r.When != "" {
			rr.when = refCompileWhen(t, r.When)
		}
		if k := r.Keywords; k != nil {
			rr.keywords, rr.kwInputs = refCompileKeywords(t, fp.Namespace, k, cms), k.In
			if len(rr.kwInputs) == 0 {
				rr.kwInputs = []v1alpha1.KeywordInput{v1alpha1.KeywordInputWording}
			}
		}
		p.rules = append(p.rules, rr)
	}
	for _, l := range spec.Limits {
		rl := refLimit{name: l.Name, key: l.Key}
		for _, e := range l.Events {
			rl.events = append(rl.events, string(e))
		}
		if len(rl.events) == 0 {
			rl.events = []string{string(v1alpha1.EventFriendRequest)}
		}
		p.limits = append(p.limits, rl)
	}
	return p
}

// refCompileKeywords compiles a dictionary straight from its words and the lines of the
// ConfigMaps it selects, with the API's defaults spelt out.
func refCompileKeywords(t testing.TB, namespace string, k *v1alpha1.Keywords, cms []*corev1.ConfigMap) *keywords.Dictionary {
	t.Helper()
	opts := keywords.Options{
		FoldCase:          k.FoldCase == nil || *k.FoldCase,
		FoldCompatibility: k.FoldCompatibility == nil || *k.FoldCompatibility,
		IgnoreSeparators:  k.IgnoreSeparators,
		FoldConfusables:   k.FoldConfusables,
		WholeWords:        k.WholeWords,
	}
	words := append([]string(nil), k.Words...)
	if k.ConfigMapSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(k.ConfigMapSelector)
		if err != nil {
			t.Fatal(err)
		}
		sorted := append([]*corev1.ConfigMap(nil), cms...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
		for _, cm := range sorted {
			if _, ok := cm.Labels[v1alpha1.LabelList]; !ok || cm.Namespace != namespace || !sel.Matches(labels.Set(cm.Labels)) {
				continue
			}
			keys := make([]string, 0, len(cm.Data))
			for key := range cm.Data {
				keys = append(keys, key)
			}
			sort.Strings(keys)
			for _, key := range keys {
				for _, line := range strings.Split(cm.Data[key], "\n") {
					if line = strings.TrimSpace(line); line != "" && line[0] != '#' {
						words = append(words, line)
					}
				}
			}
		}
	}
	d, err := keywords.Compile(opts, words...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// keyword is the entry of the first of the rule's texts the dictionary matches.
func (r *refRule) keyword(req *Request) (string, bool) {
	for _, in := range v1alpha1.KeywordInputs {
		if !refContains(r.kwInputs, in) {
			continue
		}
		text := req.Wording
		if in == v1alpha1.KeywordInputRemark {
			text = req.Remark
		}
		if m, ok := r.keywords.Match(text); ok {
			return m.Entry, true
		}
	}
	return "", false
}

func refNewSet(users, prefixes, patterns []string) refSet {
	s := refSet{users: map[string]bool{}, prefixes: prefixes}
	for _, u := range users {
		s.users[u] = true
	}
	if len(patterns) > 0 {
		s.pattern = regexp.MustCompile(`^(?:` + refAlternatives(patterns) + `)$`)
	}
	return s
}

func refAlternatives(patterns []string) string {
	groups := make([]string, len(patterns))
	for i, p := range patterns {
		groups[i] = "(?:" + p + ")"
	}
	return strings.Join(groups, "|")
}

var refCELEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		ext.NativeTypes(reflect.TypeFor[Request](), ext.ParseStructTags(true)),
		cel.Variable("request", cel.ObjectType(reflect.TypeFor[Request]().String())),
		ext.Strings(),
	)
})

// refPrograms keeps the reference's programs by expression: building an environment and
// planning a program take far longer than a fuzz iteration.
var refPrograms sync.Map

func refCompileWhen(t testing.TB, expr string) cel.Program {
	t.Helper()
	if prg, ok := refPrograms.Load(expr); ok {
		return prg.(cel.Program)
	}
	env, err := refCELEnv()
	if err != nil {
		t.Fatal(err)
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		t.Fatalf("%s: %v", expr, iss.Err())
	}
	prg, err := env.Program(ast, cel.CostLimit(celCostLimit))
	if err != nil {
		t.Fatal(err)
	}
	refPrograms.Store(expr, prg)
	return prg
}

type refActivation struct{ r *Request }

func (a refActivation) ResolveName(name string) (any, bool) {
	if name == "request" {
		return a.r, true
	}
	return nil, false
}

func (a refActivation) Parent() interpreter.Activation { return nil }

// refVerdict is a policy's verdict in the reference: its key, entry kind and name, code.
type refVerdict struct {
	policy string
	kind   Kind
	entry  string
	code   int32
	// keyword is the dictionary entry that made a keyword rule hold.
	keyword string
}

// applies reports whether the policy has a say on r: it applies to r's event and app and
// exempts neither side.
func (p *refPolicy) applies(r *Request) bool {
	if !refContains(p.events, r.Event) || (len(p.appIDs) > 0 && !refContains(p.appIDs, r.AppID)) {
		return false
	}
	return !p.exempt.contains(r.From) && !p.exempt.contains(r.To)
}

func (p *refPolicy) evaluate(r *Request) *refVerdict {
	if !p.applies(r) {
		return nil
	}
	for _, b := range p.blocklists {
		if (b.from && b.set.contains(r.From)) || (b.to && b.set.contains(r.To)) {
			return &refVerdict{p.key, KindBlocklist, b.name, refCode(b.code), ""}
		}
	}
	ip, _ := netip.ParseAddr(r.ClientIP)
	ip = ip.Unmap()
rules:
	for _, rule := range p.rules {
		if len(rule.events) > 0 && !refContains(rule.events, r.Event) {
			continue
		}
		if len(rule.platforms) > 0 {
			found := false
			for _, pl := range rule.platforms {
				found = found || refSamePlatform(pl, r.Platform)
			}
			if !found {
				continue
			}
		}
		if len(rule.addSources) > 0 && !refContains(rule.addSources, r.AddSource) {
			continue
		}
		if len(rule.cidrs) > 0 {
			found := false
			for _, c := range rule.cidrs {
				found = found || (ip.IsValid() && c.Contains(ip))
			}
			if !found {
				continue
			}
		}
		if rule.wording != nil && !rule.wording.MatchString(r.Wording) {
			continue
		}
		var keyword string
		if rule.keywords != nil {
			var ok bool
			if keyword, ok = rule.keyword(r); !ok {
				continue
			}
		}
		if rule.when != nil {
			out, _, err := rule.when.Eval(refActivation{r})
			if err != nil || out.Value() != true {
				continue rules
			}
		}
		return &refVerdict{p.key, KindRule, rule.name, refCode(rule.code), keyword}
	}
	return nil
}

func refSamePlatform(a, b string) bool {
	norm := func(s string) string {
		if strings.EqualFold(s, "macOS") {
			return "mac"
		}
		return strings.ToLower(s)
	}
	return norm(a) == norm(b)
}

func refCode(c int32) int32 {
	if c == 0 {
		return v1alpha1.DefaultCode
	}
	return c
}

func refContains[S ~string](list []S, s S) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// refDecide is the decision docs/policy.md describes: Deny policies in order of priority then
// namespace/name, the first verdict decides; every DryRun verdict is reported, in the same
// order; a request no policy refuses counts against the limits of every policy that has a
// say on it, in the same order, each policy's limits as written.
func refDecide(policies []*refPolicy, r *Request) string {
	sorted := append([]*refPolicy(nil), policies...)
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].priority != sorted[j].priority {
			return sorted[i].priority > sorted[j].priority
		}
		return sorted[i].key < sorted[j].key
	})
	var deny *refVerdict
	var dry []*refVerdict
	for _, p := range sorted {
		if p.dryRun {
			if v := p.evaluate(r); v != nil {
				dry = append(dry, v)
			}
		} else if deny == nil {
			deny = p.evaluate(r)
		}
	}
	s := "allow"
	if deny != nil {
		s = "deny " + deny.detail() + " " + strconv.Itoa(int(deny.code)) + refKeyword(deny.keyword)
	}
	for _, v := range dry {
		s += " +dry " + v.detail() + refKeyword(v.keyword)
	}
	if deny != nil {
		return s
	}
	for _, p := range sorted {
		if !p.applies(r) {
			continue
		}
		for _, l := range p.limits {
			if l.counts(r) {
				s += " +limit " + p.key + "/" + string(KindLimit) + "/" + l.name
			}
		}
	}
	return s
}

func refKeyword(entry string) string {
	if entry == "" {
		return ""
	}
	return " keyword=" + strconv.Quote(entry)
}

func (v *refVerdict) detail() string { return v.policy + "/" + string(v.kind) + "/" + v.entry }
