package policy

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

var (
	groupKind   = schema.GroupKind{Group: v1alpha1.GroupVersion.Group, Kind: "FriendPolicy"}
	addSourceRE = regexp.MustCompile(v1alpha1.AddSourcePattern)
	// platformsMessage says which platforms are known, as the CRD's CEL rule does.
	platformsMessage = "must be " + oneOf(v1alpha1.Platforms[:])
)

// CompileError is why a policy does not compile: its field errors, and whether the spec is
// at fault or one of its ConfigMap lists, so a caller can report which without validating
// again. Its message is the Kubernetes field-error form (FriendPolicy.friendgate.io
// "namespace/name" is invalid: [spec.rules[0].when: Invalid value: ...]), and it unwraps to
// the matching *apierrors.StatusError.
type CompileError struct {
	// Reason is v1alpha1.ReasonInvalid when the spec does not compile, or
	// v1alpha1.ReasonListError when it does but a list selected by configMapSelector
	// cannot be used.
	Reason string
	// Errs are the field errors, at least one.
	Errs   field.ErrorList
	status error
}

func newCompileError(fp *v1alpha1.FriendPolicy, reason string, errs field.ErrorList) *CompileError {
	name := fp.Name
	if fp.Namespace != "" {
		name = fp.Namespace + "/" + fp.Name
	}
	return &CompileError{Reason: reason, Errs: errs, status: apierrors.NewInvalid(groupKind, name, errs)}
}

func (e *CompileError) Error() string { return e.status.Error() }

// Unwrap lets apierrors.IsInvalid and errors.As see the Kubernetes form.
func (e *CompileError) Unwrap() error { return e.status }

// Validate checks a FriendPolicy's spec: everything the CRD schema checks, plus what only
// the engine can (RE2 patterns, CIDRs, CEL expressions).
func Validate(fp *v1alpha1.FriendPolicy) field.ErrorList {
	_, errs := compileSpec(fp)
	return errs
}

func validateSpec(spec *v1alpha1.FriendPolicySpec) field.ErrorList {
	path := specPath
	var errs field.ErrorList
	errs = append(errs, validateStrings(spec.AppIDs, path, "appIDs", v1alpha1.MaxAppIDs, v1alpha1.MaxAppIDLength, nil)...)
	errs = append(errs, validateEvents(spec.Events, path, "events")...)
	if a := spec.EnforcementAction; a != "" && !slices.Contains(v1alpha1.EnforcementActions[:], a) {
		errs = append(errs, field.NotSupported(path.Child("enforcementAction"), a, v1alpha1.EnforcementActions[:]))
	}
	if spec.Priority < v1alpha1.MinPriority || spec.Priority > v1alpha1.MaxPriority {
		errs = append(errs, field.Invalid(path.Child("priority"), spec.Priority, fmt.Sprintf("must be between %d and %d", v1alpha1.MinPriority, v1alpha1.MaxPriority)))
	}
	if ex := spec.Exemptions; ex != nil {
		p := path.Child("exemptions")
		errs = append(errs, validateStrings(ex.Users, p, "users", v1alpha1.MaxUsers, v1alpha1.MaxUserIDLength, ValidateUserID)...)
		errs = append(errs, validateStrings(ex.Prefixes, p, "prefixes", v1alpha1.MaxPrefixes, v1alpha1.MaxUserIDLength, ValidateUserID)...)
	}
	if len(spec.Blocklists) > v1alpha1.MaxBlocklists {
		errs = append(errs, field.TooMany(path.Child("blocklists"), len(spec.Blocklists), v1alpha1.MaxBlocklists))
	}
	names := map[string]bool{}
	for i := range spec.Blocklists {
		errs = append(errs, validateBlocklist(&spec.Blocklists[i], elementPath(blocklistPaths, "blocklists", i), names)...)
	}
	if len(spec.Rules) > v1alpha1.MaxRules {
		errs = append(errs, field.TooMany(path.Child("rules"), len(spec.Rules), v1alpha1.MaxRules))
	}
	policyEvents := spec.Events
	if len(policyEvents) == 0 {
		policyEvents = v1alpha1.DefaultEvents
	}
	names = map[string]bool{}
	for i := range spec.Rules {
		r := &spec.Rules[i]
		p := elementPath(rulePaths, "rules", i)
		errs = append(errs, validateName(r.Name, p, names)...)
		errs = append(errs, validateEvents(r.Events, p, "events")...)
		for j, e := range r.Events {
			if !slices.Contains(policyEvents, e) {
				errs = append(errs, field.Invalid(p.Child("events").Index(j), e, "must be one of the policy's events"))
			}
		}
		errs = append(errs, validateStrings(r.Platforms, p, "platforms", v1alpha1.MaxPlatforms, v1alpha1.MaxPlatformLength, func(s string) string {
			if platformBit(s) == 0 {
				return platformsMessage
			}
			return ""
		})...)
		errs = append(errs, validateStrings(r.AddSources, p, "addSources", v1alpha1.MaxAddSources, v1alpha1.MaxAddSourceLength, func(s string) string {
			if !addSourceRE.MatchString(s) {
				return "must look like AddSource_Type_<keyword>"
			}
			return ""
		})...)
		errs = append(errs, validateStrings(r.ClientCIDRs, p, "clientCIDRs", v1alpha1.MaxClientCIDRs, v1alpha1.MaxClientCIDRLength, func(s string) string {
			if _, err := netip.ParsePrefix(s); err != nil {
				return "must be a CIDR range such as 203.0.113.0/24 or 2001:db8::/32"
			}
			return ""
		})...)
		errs = append(errs, validateStrings(r.WordingPatterns, p, "wordingPatterns", v1alpha1.MaxPatterns, v1alpha1.MaxPatternLength, nil)...)
		if len(r.When) > v1alpha1.MaxWhenLength {
			errs = append(errs, field.TooLong(p.Child("when"), "", v1alpha1.MaxWhenLength))
		}
		if r.Keywords != nil {
			errs = append(errs, validateKeywords(r.Keywords, p.Child("keywords"))...)
		}
		if len(r.Platforms) == 0 && len(r.AddSources) == 0 && len(r.ClientCIDRs) == 0 && len(r.WordingPatterns) == 0 && r.Keywords == nil && r.When == "" {
			errs = append(errs, field.Required(p, "a rule needs at least one condition: platforms, addSources, clientCIDRs, wordingPatterns, keywords or when"))
		}
		errs = append(errs, validateCodeMessage(r.Code, r.Message, p)...)
	}
	if len(spec.Limits) > v1alpha1.MaxLimits {
		errs = append(errs, field.TooMany(path.Child("limits"), len(spec.Limits), v1alpha1.MaxLimits))
	}
	names = map[string]bool{}
	for i := range spec.Limits {
		errs = append(errs, validateLimit(&spec.Limits[i], elementPath(limitPaths, "limits", i), policyEvents, names)...)
	}
	return errs
}

// validateLimit checks one limit at p; policyEvents are the policy's events, defaults
// spelt out, and names the limit names seen before it.
func validateLimit(l *v1alpha1.Limit, p *field.Path, policyEvents []v1alpha1.Event, names map[string]bool) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateName(l.Name, p, names)...)
	errs = append(errs, validateEvents(l.Events, p, "events")...)
	for j, e := range l.Events {
		if !slices.Contains(policyEvents, e) {
			errs = append(errs, field.Invalid(p.Child("events").Index(j), e, "must be one of the policy's events"))
		}
	}
	if len(l.Events) == 0 {
		for _, e := range v1alpha1.DefaultLimitEvents {
			if !slices.Contains(policyEvents, e) {
				errs = append(errs, field.Required(p.Child("events"), fmt.Sprintf("a limit's events default to %s, which is not one of the policy's events: list the events to count", e)))
			}
		}
	}
	switch k := l.Key; {
	case k == "":
		errs = append(errs, field.Required(p.Child("key"), "must be "+oneOf(limitKeyNames)))
	case !slices.Contains(v1alpha1.LimitKeys[:], k):
		errs = append(errs, field.NotSupported(p.Child("key"), k, v1alpha1.LimitKeys[:]))
	}
	if l.Limit < v1alpha1.MinLimitCount || l.Limit > v1alpha1.MaxLimitCount {
		errs = append(errs, field.Invalid(p.Child("limit"), l.Limit, fmt.Sprintf("must be between %d and %d", v1alpha1.MinLimitCount, v1alpha1.MaxLimitCount)))
	}
	errs = append(errs, validateLimitDuration(l.Window.Duration, p.Child("window"))...)
	if l.Penalty != nil {
		errs = append(errs, validateLimitDuration(l.Penalty.Duration, p.Child("penalty"))...)
	}
	errs = append(errs, validateCodeMessage(l.Code, l.Message, p)...)
	return errs
}

// limitKeyNames are the limit keys as strings, for messages.
var limitKeyNames = func() []string {
	names := make([]string, len(v1alpha1.LimitKeys))
	for i, k := range v1alpha1.LimitKeys {
		names[i] = string(k)
	}
	return names
}()

// validateLimitDuration checks a limit's window or penalty, whose bounds are the same.
func validateLimitDuration(d time.Duration, path *field.Path) field.ErrorList {
	if d < v1alpha1.MinLimitWindow || d > v1alpha1.MaxLimitWindow {
		return field.ErrorList{field.Invalid(path, shortDuration(d),
			fmt.Sprintf("must be between %s and %s", shortDuration(v1alpha1.MinLimitWindow), shortDuration(v1alpha1.MaxLimitWindow)))}
	}
	return nil
}

// shortDuration writes d the way a user would: 720h rather than 720h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// validateBlocklist checks one blocklist at p; names holds the names seen before it.
func validateBlocklist(b *v1alpha1.Blocklist, p *field.Path, names map[string]bool) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateName(b.Name, p, names)...)
	if s := b.Subject; s != "" && !slices.Contains(v1alpha1.Subjects[:], s) {
		errs = append(errs, field.NotSupported(p.Child("subject"), s, v1alpha1.Subjects[:]))
	}
	errs = append(errs, validateStrings(b.Users, p, "users", v1alpha1.MaxUsers, v1alpha1.MaxUserIDLength, ValidateUserID)...)
	errs = append(errs, validateStrings(b.Prefixes, p, "prefixes", v1alpha1.MaxPrefixes, v1alpha1.MaxUserIDLength, ValidateUserID)...)
	errs = append(errs, validateStrings(b.Patterns, p, "patterns", v1alpha1.MaxPatterns, v1alpha1.MaxPatternLength, nil)...)
	errs = append(errs, validateSelector(b.ConfigMapSelector, p)...)
	if len(b.Users) == 0 && len(b.Prefixes) == 0 && len(b.Patterns) == 0 && b.ConfigMapSelector == nil {
		errs = append(errs, field.Required(p, "a blocklist needs at least one of users, prefixes, patterns or configMapSelector"))
	}
	errs = append(errs, validateCodeMessage(b.Code, b.Message, p)...)
	return errs
}

// validateSelector checks the configMapSelector of parent (nil is fine).
func validateSelector(s *metav1.LabelSelector, parent *field.Path) field.ErrorList {
	if s == nil {
		return nil
	}
	if _, err := metav1.LabelSelectorAsSelector(s); err != nil {
		return field.ErrorList{field.Invalid(parent.Child("configMapSelector"), s, err.Error())}
	}
	if !selectsListLabel(s) {
		return field.ErrorList{field.Invalid(parent.Child("configMapSelector"), metav1.FormatLabelSelector(s),
			"configMapSelector must select on the label "+v1alpha1.LabelList+", which replicas read lists by: add matchLabels: {"+v1alpha1.LabelList+": <list name>} (and that label to the ConfigMaps)")}
	}
	return nil
}

// validateKeywords checks a rule's keywords at p, except what only compiling the
// dictionary finds (words empty or too long after normalisation).
func validateKeywords(k *v1alpha1.Keywords, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateStrings(k.Words, p, "words", v1alpha1.MaxKeywordWords, v1alpha1.MaxKeywordLength, nil)...)
	path := p.Child("in")
	if len(k.In) > v1alpha1.MaxKeywordInputs {
		errs = append(errs, field.TooMany(path, len(k.In), v1alpha1.MaxKeywordInputs))
	}
	for i, in := range k.In {
		if !slices.Contains(v1alpha1.KeywordInputs[:], in) {
			errs = append(errs, field.NotSupported(path.Index(i), in, v1alpha1.KeywordInputs[:]))
		} else if slices.Contains(k.In[:i], in) {
			errs = append(errs, field.Duplicate(path.Index(i), in))
		}
	}
	errs = append(errs, validateSelector(k.ConfigMapSelector, p)...)
	if len(k.Words) == 0 && k.ConfigMapSelector == nil {
		errs = append(errs, field.Required(p, "keywords need words or a configMapSelector"))
	}
	return errs
}

// keywordsCompilable reports whether validateKeywords found the inline words fit to build
// a dictionary from, so that compiling it reports no error twice.
func keywordsCompilable(k *v1alpha1.Keywords) bool {
	if len(k.Words) > v1alpha1.MaxKeywordWords {
		return false
	}
	for _, w := range k.Words {
		if w == "" || len(w) > v1alpha1.MaxKeywordLength {
			return false
		}
	}
	return true
}

// validateName checks the name of parent; seen holds the names of its siblings before it.
// Paths are made only for errors: a build validates thousands of policies that have none.
func validateName(name string, parent *field.Path, seen map[string]bool) field.ErrorList {
	var errs field.ErrorList
	if !isDNS1123Label(name) {
		for _, msg := range validation.IsDNS1123Label(name) {
			errs = append(errs, field.Invalid(parent.Child("name"), name, msg))
		}
	}
	if seen[name] {
		errs = append(errs, field.Duplicate(parent.Child("name"), name))
	}
	seen[name] = true
	return errs
}

// validateEvents checks the event list child of parent.
func validateEvents(events []v1alpha1.Event, parent *field.Path, child string) field.ErrorList {
	var errs field.ErrorList
	if len(events) > v1alpha1.MaxEvents {
		errs = append(errs, field.TooMany(parent.Child(child), len(events), v1alpha1.MaxEvents))
	}
	for i, e := range events {
		if !slices.Contains(v1alpha1.Events[:], e) {
			errs = append(errs, field.NotSupported(parent.Child(child).Index(i), e, v1alpha1.Events[:]))
		}
		if slices.Contains(events[:i], e) {
			errs = append(errs, field.Duplicate(parent.Child(child).Index(i), e))
		}
	}
	return errs
}

// linearDuplicates is the list length up to which duplicates are found by comparing
// with the items before, without a map.
const linearDuplicates = 16

// isDNS1123Label is validation.IsDNS1123Label's test without its regular expression,
// which was a tenth of validating a small policy; that function still says what is wrong.
func isDNS1123Label(s string) bool {
	if len(s) == 0 || len(s) > validation.DNS1123LabelMaxLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

// validateStrings checks the list child of parent: its length, its items' lengths,
// duplicates and, with check, each item's form (check returns a reason, or "" when the
// item is fine).
func validateStrings(items []string, parent *field.Path, child string, maxItems, maxLength int, check func(string) string) field.ErrorList {
	var errs field.ErrorList
	if len(items) > maxItems {
		errs = append(errs, field.TooMany(parent.Child(child), len(items), maxItems))
	}
	var seen map[string]bool
	if len(items) > linearDuplicates {
		seen = make(map[string]bool, len(items))
	}
	for i, s := range items {
		duplicate := false
		if seen != nil {
			duplicate = seen[s]
			seen[s] = true
		} else {
			duplicate = slices.Contains(items[:i], s)
		}
		switch {
		case s == "":
			errs = append(errs, field.Required(parent.Child(child).Index(i), "must not be empty"))
		case len(s) > maxLength:
			errs = append(errs, field.TooLong(parent.Child(child).Index(i), "", maxLength))
		case duplicate:
			errs = append(errs, field.Duplicate(parent.Child(child).Index(i), s))
		case check != nil:
			if msg := check(s); msg != "" {
				errs = append(errs, field.Invalid(parent.Child(child).Index(i), s, msg))
			}
		}
	}
	return errs
}

func validateCodeMessage(code int32, message string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if code != 0 && (code < v1alpha1.MinCode || code > v1alpha1.MaxCode) {
		errs = append(errs, field.Invalid(path.Child("code"), code, fmt.Sprintf("must be between %d and %d", v1alpha1.MinCode, v1alpha1.MaxCode)))
	}
	if len(message) > v1alpha1.MaxMessageLength {
		errs = append(errs, field.TooLong(path.Child("message"), "", v1alpha1.MaxMessageLength))
	}
	return errs
}

// ValidateUserID says why id is not a valid user ID, or "" when it is. User IDs are 1 to
// 64 bytes of printable, non-space characters: every ID Tencent Cloud Chat and OpenIM issue.
func ValidateUserID(id string) string {
	if id == "" {
		return "must not be empty"
	}
	if len(id) > v1alpha1.MaxUserIDLength {
		return fmt.Sprintf("must be at most %d bytes", v1alpha1.MaxUserIDLength)
	}
	if strings.IndexFunc(id, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
		return "must not contain white space or control characters"
	}
	return ""
}

// oneOf lists names as "a, b or c".
func oneOf(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// selectsListLabel reports whether s can only match ConfigMaps labelled friendgate.io/list,
// the only ones replicas read; any other selector would silently select nothing in a
// cluster. (The CRD's CEL rule on configMapSelector says the same.)
func selectsListLabel(s *metav1.LabelSelector) bool {
	if _, ok := s.MatchLabels[v1alpha1.LabelList]; ok {
		return true
	}
	for _, e := range s.MatchExpressions {
		if e.Key == v1alpha1.LabelList && (e.Operator == metav1.LabelSelectorOpIn || e.Operator == metav1.LabelSelectorOpExists) {
			return true
		}
	}
	return false
}
