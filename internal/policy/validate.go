package policy

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"unicode"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

// Bounds mirror the CRD schema's, so a policy read from a file is held to the same limits
// as one applied to a cluster.
const (
	maxAppIDs          = 100
	maxAppIDLength     = 64
	maxInlineUsers     = 512
	maxPrefixes        = 64
	maxPatterns        = 16
	maxPatternLength   = 256
	maxBlocklists      = 16
	maxRules           = 64
	maxPlatforms       = 10
	maxAddSources      = 16
	maxCIDRs           = 32
	maxWhenLength      = 2048
	maxMessageLength   = 256
	maxAddSourceLength = 32
)

var (
	groupKind    = schema.GroupKind{Group: v1alpha1.GroupVersion.Group, Kind: "FriendPolicy"}
	addSourceRE  = regexp.MustCompile(`^AddSource_Type_[A-Za-z0-9]+$`)
	validEvents  = []string{string(v1alpha1.EventFriendRequest), string(v1alpha1.EventFriendResponse), string(v1alpha1.EventImportFriends), string(v1alpha1.EventAddBlack), string(v1alpha1.EventSetRemark)}
	validActions = []string{string(v1alpha1.EnforcementDeny), string(v1alpha1.EnforcementDryRun)}
	validSubject = []string{string(v1alpha1.SubjectFrom), string(v1alpha1.SubjectTo), string(v1alpha1.SubjectEither)}
)

// InvalidError wraps a policy's field errors in the Kubernetes form
// (FriendPolicy.friendgate.io "name" is invalid: [spec.rules[0].when: Invalid value: ...]).
func InvalidError(fp *v1alpha1.FriendPolicy, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	name := fp.Name
	if fp.Namespace != "" {
		name = fp.Namespace + "/" + fp.Name
	}
	return apierrors.NewInvalid(groupKind, name, errs)
}

// Validate checks a FriendPolicy's spec: everything the CRD schema checks, plus what only
// the engine can (RE2 patterns, CIDRs, CEL expressions).
func Validate(fp *v1alpha1.FriendPolicy) field.ErrorList {
	_, errs := compileSpec(fp)
	return errs
}

func validateSpec(spec *v1alpha1.FriendPolicySpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateStrings(spec.AppIDs, path.Child("appIDs"), maxAppIDs, maxAppIDLength, nil)...)
	errs = append(errs, validateEvents(spec.Events, path.Child("events"))...)
	if a := spec.EnforcementAction; a != "" && !contains(validActions, string(a)) {
		errs = append(errs, field.NotSupported(path.Child("enforcementAction"), a, validActions))
	}
	if spec.Priority < 0 || spec.Priority > v1alpha1.MaxPriority {
		errs = append(errs, field.Invalid(path.Child("priority"), spec.Priority, fmt.Sprintf("must be between 0 and %d", v1alpha1.MaxPriority)))
	}
	if ex := spec.Exemptions; ex != nil {
		p := path.Child("exemptions")
		errs = append(errs, validateStrings(ex.Users, p.Child("users"), maxInlineUsers, v1alpha1.MaxUserIDLength, ValidateUserID)...)
		errs = append(errs, validateStrings(ex.Prefixes, p.Child("prefixes"), maxPrefixes, v1alpha1.MaxUserIDLength, ValidateUserID)...)
	}
	if len(spec.Blocklists) > maxBlocklists {
		errs = append(errs, field.TooMany(path.Child("blocklists"), len(spec.Blocklists), maxBlocklists))
	}
	names := map[string]bool{}
	for i := range spec.Blocklists {
		b := &spec.Blocklists[i]
		p := path.Child("blocklists").Index(i)
		errs = append(errs, validateName(b.Name, p.Child("name"), names)...)
		if s := b.Subject; s != "" && !contains(validSubject, string(s)) {
			errs = append(errs, field.NotSupported(p.Child("subject"), s, validSubject))
		}
		errs = append(errs, validateStrings(b.Users, p.Child("users"), maxInlineUsers, v1alpha1.MaxUserIDLength, ValidateUserID)...)
		errs = append(errs, validateStrings(b.Prefixes, p.Child("prefixes"), maxPrefixes, v1alpha1.MaxUserIDLength, ValidateUserID)...)
		errs = append(errs, validateStrings(b.Patterns, p.Child("patterns"), maxPatterns, maxPatternLength, nil)...)
		if b.ConfigMapSelector != nil {
			if _, err := metav1.LabelSelectorAsSelector(b.ConfigMapSelector); err != nil {
				errs = append(errs, field.Invalid(p.Child("configMapSelector"), b.ConfigMapSelector, err.Error()))
			} else if !selectsListLabel(b.ConfigMapSelector) {
				errs = append(errs, field.Invalid(p.Child("configMapSelector"), metav1.FormatLabelSelector(b.ConfigMapSelector),
					"configMapSelector must select on the label "+v1alpha1.LabelList+", which replicas read lists by: add matchLabels: {"+v1alpha1.LabelList+": <list name>} (and that label to the ConfigMaps)"))
			}
		}
		if len(b.Users) == 0 && len(b.Prefixes) == 0 && len(b.Patterns) == 0 && b.ConfigMapSelector == nil {
			errs = append(errs, field.Required(p, "a blocklist needs at least one of users, prefixes, patterns or configMapSelector"))
		}
		errs = append(errs, validateCodeMessage(b.Code, b.Message, p)...)
	}
	if len(spec.Rules) > maxRules {
		errs = append(errs, field.TooMany(path.Child("rules"), len(spec.Rules), maxRules))
	}
	policyEvents := spec.Events
	if len(policyEvents) == 0 {
		policyEvents = v1alpha1.DefaultEvents
	}
	names = map[string]bool{}
	for i := range spec.Rules {
		r := &spec.Rules[i]
		p := path.Child("rules").Index(i)
		errs = append(errs, validateName(r.Name, p.Child("name"), names)...)
		errs = append(errs, validateEvents(r.Events, p.Child("events"))...)
		for j, e := range r.Events {
			if !containsEvent(policyEvents, e) {
				errs = append(errs, field.Invalid(p.Child("events").Index(j), e, "must be one of the policy's events"))
			}
		}
		errs = append(errs, validateStrings(r.Platforms, p.Child("platforms"), maxPlatforms, 16, func(s string) string {
			if platformBit(s) == 0 {
				return "must be RESTAPI, Web, Android, iOS, Windows, Mac, macOS, iPad or Unknown"
			}
			return ""
		})...)
		errs = append(errs, validateStrings(r.AddSources, p.Child("addSources"), maxAddSources, maxAddSourceLength, func(s string) string {
			if !addSourceRE.MatchString(s) {
				return "must look like AddSource_Type_<keyword>"
			}
			return ""
		})...)
		errs = append(errs, validateStrings(r.ClientCIDRs, p.Child("clientCIDRs"), maxCIDRs, 43, func(s string) string {
			if _, err := netip.ParsePrefix(s); err != nil {
				return "must be a CIDR range such as 203.0.113.0/24 or 2001:db8::/32"
			}
			return ""
		})...)
		errs = append(errs, validateStrings(r.WordingPatterns, p.Child("wordingPatterns"), maxPatterns, maxPatternLength, nil)...)
		if len(r.When) > maxWhenLength {
			errs = append(errs, field.TooLong(p.Child("when"), "", maxWhenLength))
		}
		if len(r.Platforms) == 0 && len(r.AddSources) == 0 && len(r.ClientCIDRs) == 0 && len(r.WordingPatterns) == 0 && r.When == "" {
			errs = append(errs, field.Required(p, "a rule needs at least one condition: platforms, addSources, clientCIDRs, wordingPatterns or when"))
		}
		errs = append(errs, validateCodeMessage(r.Code, r.Message, p)...)
	}
	return errs
}

func validateName(name string, path *field.Path, seen map[string]bool) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Label(name) {
		errs = append(errs, field.Invalid(path, name, msg))
	}
	if seen[name] {
		errs = append(errs, field.Duplicate(path, name))
	}
	seen[name] = true
	return errs
}

func validateEvents(events []v1alpha1.Event, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	seen := map[v1alpha1.Event]bool{}
	for i, e := range events {
		if !contains(validEvents, string(e)) {
			errs = append(errs, field.NotSupported(path.Index(i), e, validEvents))
		}
		if seen[e] {
			errs = append(errs, field.Duplicate(path.Index(i), e))
		}
		seen[e] = true
	}
	return errs
}

// validateStrings checks a list's length, its items' lengths, duplicates and, with check,
// each item's form (check returns a reason, or "" when the item is fine).
func validateStrings(items []string, path *field.Path, maxItems, maxLength int, check func(string) string) field.ErrorList {
	var errs field.ErrorList
	if len(items) > maxItems {
		errs = append(errs, field.TooMany(path, len(items), maxItems))
	}
	seen := make(map[string]bool, len(items))
	for i, s := range items {
		p := path.Index(i)
		switch {
		case s == "":
			errs = append(errs, field.Required(p, "must not be empty"))
		case len(s) > maxLength:
			errs = append(errs, field.TooLong(p, "", maxLength))
		case seen[s]:
			errs = append(errs, field.Duplicate(p, s))
		case check != nil:
			if msg := check(s); msg != "" {
				errs = append(errs, field.Invalid(p, s, msg))
			}
		}
		seen[s] = true
	}
	return errs
}

func validateCodeMessage(code int32, message string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if code != 0 && (code < v1alpha1.MinCode || code > v1alpha1.MaxCode) {
		errs = append(errs, field.Invalid(path.Child("code"), code, fmt.Sprintf("must be between %d and %d", v1alpha1.MinCode, v1alpha1.MaxCode)))
	}
	if len(message) > maxMessageLength {
		errs = append(errs, field.TooLong(path.Child("message"), "", maxMessageLength))
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

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func containsEvent(list []v1alpha1.Event, e v1alpha1.Event) bool {
	for _, x := range list {
		if x == e {
			return true
		}
	}
	return false
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
