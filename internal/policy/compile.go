package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp/syntax"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

const (
	// DefaultBlocklistMessage is the deny message of a blocklist that sets none.
	DefaultBlocklistMessage = "blocked by friend policy"
	// DefaultRuleMessage is the deny message of a rule that sets none.
	DefaultRuleMessage = "denied by friend policy"
	// DefaultMaxListEntries is the default of Options.MaxListEntries.
	DefaultMaxListEntries = 2_000_000
)

// Options tune compilation.
type Options struct {
	// MaxListEntries bounds the distinct users of a blocklist with a configMapSelector,
	// inline and from its ConfigMaps together; a larger list is a compile error. Zero means
	// DefaultMaxListEntries. An entry of a blocklist is one of its users, prefixes or
	// patterns, as in BlocklistEntries and status.blocklistEntries.
	MaxListEntries int
}

// Compiled is one FriendPolicy ready to decide requests. It is immutable once built.
type Compiled struct {
	// Key is namespace/name.
	Key string
	// Priority and DryRun come from the spec.
	Priority int32
	DryRun   bool
	// Rules counts the policy's rules.
	Rules int
	// Limits are the policy's limits, as written.
	Limits []*Limit
	// BlocklistEntries counts users, prefixes and patterns over all blocklists, ConfigMap
	// lists included (distinct users per blocklist).
	BlocklistEntries int64
	// ConfigMaps are the names of the ConfigMaps the policy's lists were read from, sorted.
	ConfigMaps []string
	// Warnings are problems that do not stop the policy from being enforced, such as a
	// configMapSelector that selects no ConfigMap.
	Warnings []string
	// Notes say what makes the policy cost more to evaluate than it might, for
	// `friendgate test`.
	Notes []string

	appIDs     []string
	events     uint8
	exempt     userSet
	blocklists []compiledBlocklist
	rules      []compiledRule
}

type compiledBlocklist struct {
	from, to bool
	set      userSet
	selector labels.Selector
	verdict  *Verdict
}

type compiledRule struct {
	events     uint8
	platforms  uint16
	addSources []string
	cidrs      []netip.Prefix
	wording    []*pattern
	keywords   *keywordCond
	when       *whenProgram
	verdict    *Verdict
}

// Compile validates a FriendPolicy and compiles it with the ConfigMaps its blocklists may
// select (those of other namespaces, and those without the friendgate.io/list label, are
// ignored). A policy that is invalid, or whose lists hold an invalid user ID or are too
// large, yields a *CompileError whose Reason says which.
func Compile(fp *v1alpha1.FriendPolicy, configMaps []*corev1.ConfigMap, opts Options) (*Compiled, error) {
	c, errs := compileSpec(fp)
	if len(errs) > 0 {
		return nil, newCompileError(fp, v1alpha1.ReasonInvalid, errs)
	}
	if opts.MaxListEntries <= 0 {
		opts.MaxListEntries = DefaultMaxListEntries
	}
	usedCMs := map[string]bool{}
	for i := range c.blocklists {
		b := &c.blocklists[i]
		spec := &fp.Spec.Blocklists[i]
		if b.selector == nil {
			continue
		}
		path := field.NewPath("spec", "blocklists").Index(i).Child("configMapSelector")
		pieces := []*listPiece{inlinePiece(spec.Users)}
		for _, cm := range sortedConfigMaps(configMaps) {
			if !isList(cm, fp.Namespace) || !b.selector.Matches(labels.Set(cm.Labels)) {
				continue
			}
			usedCMs[cm.Name] = true
			piece, err := configMapPiece(cm)
			if err != nil {
				errs = append(errs, field.Invalid(path, metav1.FormatLabelSelector(spec.ConfigMapSelector), err.Error()))
				break
			}
			pieces = append(pieces, piece)
		}
		if len(pieces) == 1 {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s: selects no ConfigMap labelled %s in namespace %q", path, v1alpha1.LabelList, fp.Namespace))
		}
		list, err := newCompactSet(slices.DeleteFunc(pieces, func(p *listPiece) bool { return p == nil }), opts.MaxListEntries)
		if err != nil {
			errs = append(errs, field.Invalid(path, metav1.FormatLabelSelector(spec.ConfigMapSelector), err.Error()))
			continue
		}
		// The list holds the inline users too.
		b.set.users, b.set.list = nil, list
		c.BlocklistEntries += int64(list.len() - len(spec.Users))
	}
	for i := range c.rules {
		k := c.rules[i].keywords
		if k == nil || k.selector == nil {
			continue
		}
		spec := fp.Spec.Rules[i].Keywords
		path := field.NewPath("spec", "rules").Index(i).Child("keywords", "configMapSelector")
		var selected []*corev1.ConfigMap
		for _, cm := range sortedConfigMaps(configMaps) {
			if isList(cm, fp.Namespace) && k.selector.Matches(labels.Set(cm.Labels)) {
				selected = append(selected, cm)
				usedCMs[cm.Name] = true
			}
		}
		if len(selected) == 0 {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s: selects no ConfigMap labelled %s in namespace %q", path, v1alpha1.LabelList, fp.Namespace))
		}
		dict, err := k.withConfigMaps(selected)
		if err != nil {
			errs = append(errs, field.Invalid(path, metav1.FormatLabelSelector(spec.ConfigMapSelector), err.Error()))
			continue
		}
		// The compiled rule is this compilation's own: the dictionary can be replaced.
		withCMs := *k
		withCMs.dict = dict
		c.rules[i].keywords = &withCMs
	}
	if len(errs) > 0 {
		return nil, newCompileError(fp, v1alpha1.ReasonListError, errs)
	}
	for name := range usedCMs {
		c.ConfigMaps = append(c.ConfigMaps, name)
	}
	sort.Strings(c.ConfigMaps)
	return c, nil
}

// isList reports whether cm can feed the lists of policies in namespace: it must be
// there and carry the friendgate.io/list label. Webhook replicas watch only such
// ConfigMaps, so files and `friendgate test` must see lists the same way.
func isList(cm *corev1.ConfigMap, namespace string) bool {
	_, labelled := cm.Labels[v1alpha1.LabelList]
	return cm.Namespace == namespace && labelled
}

func sortedConfigMaps(cms []*corev1.ConfigMap) []*corev1.ConfigMap {
	out := append([]*corev1.ConfigMap(nil), cms...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// The paths of the spec's list elements, made once: validating and compiling thousands of
// policies names them every time, and a field.Path never changes once made.
var (
	specPath       = field.NewPath("spec")
	blocklistPaths = elementPaths("blocklists", v1alpha1.MaxBlocklists)
	rulePaths      = elementPaths("rules", v1alpha1.MaxRules)
	limitPaths     = elementPaths("limits", v1alpha1.MaxLimits)
)

func elementPaths(list string, n int) []*field.Path {
	paths := make([]*field.Path, n)
	for i := range paths {
		paths[i] = specPath.Child(list).Index(i)
	}
	return paths
}

// elementPath is spec.<list>[i], made anew only past the list's maximum (an error).
func elementPath(paths []*field.Path, list string, i int) *field.Path {
	if i < len(paths) {
		return paths[i]
	}
	return specPath.Child(list).Index(i)
}

// compileSpec validates and compiles a policy with its inline lists only.
func compileSpec(fp *v1alpha1.FriendPolicy) (*Compiled, field.ErrorList) {
	spec := &fp.Spec
	errs := validateSpec(spec)
	if fp.Name == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "name"), ""))
	}

	key := fp.Namespace + "/" + fp.Name
	c := &Compiled{
		Key:      key,
		Priority: spec.Priority,
		DryRun:   spec.EnforcementAction == v1alpha1.EnforcementDryRun,
		Rules:    len(spec.Rules),
		appIDs:   append([]string(nil), spec.AppIDs...),
		events:   eventMask(spec.Events, v1alpha1.DefaultEvents),
	}
	if ex := spec.Exemptions; ex != nil {
		c.exempt, _ = newUserSet(ex.Users, ex.Prefixes, nil)
	}

	for i := range spec.Blocklists {
		b := &spec.Blocklists[i]
		p := elementPath(blocklistPaths, "blocklists", i)
		cb := compiledBlocklist{
			from:    b.Subject != v1alpha1.SubjectTo,
			to:      b.Subject != v1alpha1.SubjectFrom,
			verdict: newVerdict(c, KindBlocklist, b.Name, b.Code, b.Message, DefaultBlocklistMessage),
		}
		// validateSpec reports an invalid selector; such a blocklist reads no ConfigMap.
		cb.selector, _ = b.ListSelector()
		if pErrs := checkPatterns(b.Patterns, p, "patterns", anchorPattern); len(pErrs) > 0 {
			errs = append(errs, pErrs...)
		} else if set, err := newUserSet(b.Users, b.Prefixes, b.Patterns); err != nil {
			errs = append(errs, field.Invalid(p.Child("patterns"), b.Patterns, err.Error()))
		} else {
			cb.set = set
		}
		c.BlocklistEntries += int64(len(b.Users) + len(b.Prefixes) + len(b.Patterns))
		c.blocklists = append(c.blocklists, cb)
	}

	for i := range spec.Rules {
		r := &spec.Rules[i]
		p := elementPath(rulePaths, "rules", i)
		cr := compiledRule{
			events:     eventMask(r.Events, nil),
			addSources: r.AddSources,
			verdict:    newVerdict(c, KindRule, r.Name, r.Code, r.Message, DefaultRuleMessage),
		}
		for _, pl := range r.Platforms {
			cr.platforms |= platformBit(pl)
		}
		for _, s := range r.ClientCIDRs {
			if pfx, err := netip.ParsePrefix(s); err == nil {
				cr.cidrs = append(cr.cidrs, pfx.Masked())
			}
		}
		if pErrs := checkPatterns(r.WordingPatterns, p, "wordingPatterns", nil); len(pErrs) > 0 {
			errs = append(errs, pErrs...)
		} else {
			for _, wp := range r.WordingPatterns {
				cp, err := compilePattern(wp)
				if err != nil {
					errs = append(errs, field.Invalid(p.Child("wordingPatterns"), r.WordingPatterns, err.Error()))
					continue
				}
				cr.wording = append(cr.wording, cp)
			}
		}
		if k := r.Keywords; k != nil && keywordsCompilable(k) {
			cond, kErrs := compileKeywords(k, p.Child("keywords"))
			errs = append(errs, kErrs...)
			cr.keywords = cond
		}
		if r.When != "" && len(r.When) <= v1alpha1.MaxWhenLength {
			w, err := internWhen(r.When)
			if err != nil {
				errs = append(errs, field.Invalid(p.Child("when"), r.When, err.Error()))
			} else if w.guard == nil {
				c.Notes = append(c.Notes, fmt.Sprintf("%s: when has no indexable guard, so it runs for every request the rule's other conditions let through (a top-level && term request.<field> == 'value', request.<field>.startsWith('value') or request.<field> in ['a', 'b'] would let the index skip it)", p.Child("when")))
			}
			cr.when = w
		}
		c.rules = append(c.rules, cr)
	}

	for i := range spec.Limits {
		c.Limits = append(c.Limits, newLimit(c, &spec.Limits[i]))
	}
	return c, errs
}

// checkPatterns parses each RE2 pattern of the list child of parent alone, so an error
// names the pattern at fault. A pattern whose compiled form (compiled as form gives, or as
// it is when form is nil) is in the pattern cache was checked when it was compiled:
// identical patterns across thousands of policies are parsed once.
func checkPatterns(patterns []string, parent *field.Path, child string, form func(string) string) field.ErrorList {
	var errs field.ErrorList
	for i, p := range patterns {
		key := p
		if form != nil {
			key = form(p)
		}
		if patternCache.has(key) {
			continue
		}
		if _, err := syntax.Parse(p, syntax.Perl); err != nil {
			errs = append(errs, field.Invalid(parent.Child(child).Index(i), p, "not a valid RE2 regular expression: "+err.Error()))
		}
	}
	return errs
}

func newVerdict(c *Compiled, kind Kind, name string, code int32, message, defaultMessage string) *Verdict {
	if code == 0 {
		code = v1alpha1.DefaultCode
	}
	if message == "" {
		message = defaultMessage
	}
	return &Verdict{
		Policy:  c.Key,
		Kind:    kind,
		Name:    name,
		Code:    code,
		Message: message,
		DryRun:  c.DryRun,
		Detail:  c.Key + "/" + string(kind) + "/" + name,
	}
}

// Events are indexed by position in v1alpha1.Events; masks are bit sets over those positions.
func eventIndex(e string) int {
	for i, x := range v1alpha1.Events {
		if string(x) == e {
			return i
		}
	}
	return -1
}

// eventMask is the bit set of events, or of defaults when events is empty (0 when both are).
func eventMask(events, defaults []v1alpha1.Event) uint8 {
	if len(events) == 0 {
		events = defaults
	}
	var m uint8
	for _, e := range events {
		if i := eventIndex(string(e)); i >= 0 {
			m |= 1 << i
		}
	}
	return m
}

// platform is a platform name and its bit in a rule's mask.
type platform struct {
	name string
	bit  uint16
}

// platformBits give each platform its position in v1alpha1.Platforms as its bit, except
// that macOS shares Mac's, being the same platform.
var platformBits = func() (bits [len(v1alpha1.Platforms)]platform) {
	mac := slices.Index(v1alpha1.Platforms[:], v1alpha1.PlatformMac)
	for i, name := range v1alpha1.Platforms {
		bits[i] = platform{name: name, bit: 1 << i}
		if name == v1alpha1.PlatformMacOS {
			bits[i].bit = 1 << mac
		}
	}
	return bits
}()

// platformBit is the bit of a platform, compared case-insensitively; 0 for an unknown one.
func platformBit(s string) uint16 {
	for _, p := range platformBits {
		if strings.EqualFold(s, p.name) {
			return p.bit
		}
	}
	return 0
}

// Build compiles every policy with the ConfigMaps of its namespace and indexes the ones that
// compile into a snapshot. The error joins the failures, one per policy; those policies are
// left out of the snapshot.
func Build(policies []*v1alpha1.FriendPolicy, configMaps []*corev1.ConfigMap, opts Options) (*Snapshot, []*Compiled, error) {
	byNamespace := map[string][]*corev1.ConfigMap{}
	for _, cm := range configMaps {
		byNamespace[cm.Namespace] = append(byNamespace[cm.Namespace], cm)
	}
	jobs := make([]Job, len(policies))
	for i, fp := range policies {
		jobs[i] = Job{Policy: fp, ConfigMaps: byNamespace[fp.Namespace]}
	}
	CompileAll(jobs, opts)
	compiled := make([]*Compiled, 0, len(policies))
	var errs []error
	for _, j := range jobs {
		if j.Err != nil {
			errs = append(errs, j.Err)
			continue
		}
		compiled = append(compiled, j.Compiled)
	}
	return NewSnapshot(compiled), compiled, errors.Join(errs...)
}

// Job is one policy to compile with the ConfigMaps it may select, and, once CompileAll
// returns, what Compile made of it.
type Job struct {
	Policy     *v1alpha1.FriendPolicy
	ConfigMaps []*corev1.ConfigMap

	Compiled *Compiled
	Err      error
}

// minJobsPerWorker keeps a handful of policies on one goroutine: starting more costs more
// than it saves.
const minJobsPerWorker = 64

// CompileAll compiles every job, on as many goroutines as the process may run at once:
// policies compile independently (shared expressions are interned under a lock), and an
// install of thousands of policies is ready sooner.
func CompileAll(jobs []Job, opts Options) {
	workers := min(runtime.GOMAXPROCS(0), (len(jobs)+minJobsPerWorker-1)/minJobsPerWorker)
	if workers <= 1 {
		for i := range jobs {
			jobs[i].Compiled, jobs[i].Err = Compile(jobs[i].Policy, jobs[i].ConfigMaps, opts)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(jobs); i = int(next.Add(1) - 1) {
				jobs[i].Compiled, jobs[i].Err = Compile(jobs[i].Policy, jobs[i].ConfigMaps, opts)
			}
		})
	}
	wg.Wait()
}
