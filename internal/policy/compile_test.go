package policy

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

func TestValidate(t *testing.T) {
	okRule := v1alpha1.Rule{Name: "r", When: "true"}
	okLimit := v1alpha1.Limit{Name: "l", Key: "From", Limit: 20, Window: hours(1)}
	tests := []struct {
		name string
		spec v1alpha1.FriendPolicySpec
		// want are substrings of the error, each naming a field path; empty means valid.
		want []string
	}{
		{name: "minimal rule", spec: spec{Rules: []v1alpha1.Rule{okRule}}},
		{name: "empty policy is valid and says nothing", spec: spec{}},
		{name: "rule with no condition", spec: spec{Rules: []v1alpha1.Rule{{Name: "r", Events: []v1alpha1.Event{"FriendRequest"}}}},
			want: []string{"spec.rules[0]: Required value: a rule needs at least one condition"}},
		{name: "blocklist with no source", spec: spec{Blocklists: []v1alpha1.Blocklist{{Name: "l"}}},
			want: []string{"spec.blocklists[0]: Required value"}},
		{name: "duplicate rule names", spec: spec{Rules: []v1alpha1.Rule{okRule, okRule}},
			want: []string{`spec.rules[1].name: Duplicate value: "r"`}},
		{name: "duplicate blocklist names", spec: spec{Blocklists: []v1alpha1.Blocklist{{Name: "l", Users: []string{"a"}}, {Name: "l", Users: []string{"b"}}}},
			want: []string{`spec.blocklists[1].name: Duplicate value: "l"`}},
		{name: "name not a DNS label", spec: spec{Rules: []v1alpha1.Rule{{Name: "No_Good", When: "true"}}},
			want: []string{`spec.rules[0].name: Invalid value: "No_Good"`}},
		{name: "code below range", spec: spec{Rules: []v1alpha1.Rule{{Name: "r", When: "true", Code: 37999}}},
			want: []string{"spec.rules[0].code: Invalid value: 37999: must be between 38000 and 39000"}},
		{name: "code above range", spec: spec{Blocklists: []v1alpha1.Blocklist{{Name: "l", Users: []string{"a"}, Code: 39001}}},
			want: []string{"spec.blocklists[0].code: Invalid value: 39001"}},
		{name: "priority out of range", spec: spec{Priority: 10001},
			want: []string{"spec.priority: Invalid value: 10001"}},
		{name: "unknown enforcement action", spec: spec{EnforcementAction: "Warn"},
			want: []string{`spec.enforcementAction: Unsupported value: "Warn"`}},
		{name: "unknown event", spec: spec{Events: []v1alpha1.Event{"Poke"}},
			want: []string{`spec.events[0]: Unsupported value: "Poke"`}},
		{name: "unknown subject", spec: spec{Blocklists: []v1alpha1.Blocklist{{Name: "l", Subject: "Both", Users: []string{"a"}}}},
			want: []string{`spec.blocklists[0].subject: Unsupported value: "Both"`}},
		{name: "rule event outside the policy's events", spec: spec{Events: []v1alpha1.Event{"FriendRequest"}, Rules: []v1alpha1.Rule{{Name: "r", When: "true", Events: []v1alpha1.Event{"FriendResponse"}}}},
			want: []string{`spec.rules[0].events[0]: Invalid value: "FriendResponse": must be one of the policy's events`}},
		{name: "rule event outside the default events", spec: spec{Rules: []v1alpha1.Rule{{Name: "r", When: "true", Events: []v1alpha1.Event{"AddBlack"}}}},
			want: []string{`spec.rules[0].events[0]: Invalid value: "AddBlack"`}},
		{name: "bad blocklist pattern", spec: spec{Blocklists: []v1alpha1.Blocklist{{Name: "l", Patterns: []string{"ok", "(unclosed"}}}},
			want: []string{`spec.blocklists[0].patterns[1]: Invalid value: "(unclosed": not a valid RE2 regular expression`}},
		{name: "lookaround is not RE2", spec: spec{Rules: []v1alpha1.Rule{{Name: "r", WordingPatterns: []string{"(?!x)y"}}}},
			want: []string{"spec.rules[0].wordingPatterns[0]: Invalid value"}},
		{name: "bad CIDR", spec: spec{Rules: []v1alpha1.Rule{{Name: "r", ClientCIDRs: []string{"10.0.0.0/33"}}}},
			want: []string{`spec.rules[0].clientCIDRs[0]: Invalid value: "10.0.0.0/33"`}},
		{name: "unknown platform", spec: spec{Rules: []v1alpha1.Rule{{Name: "r", Platforms: []string{"Symbian"}}}},
			want: []string{`spec.rules[0].platforms[0]: Invalid value: "Symbian"`}},
		{name: "bad add source", spec: spec{Rules: []v1alpha1.Rule{{Name: "r", AddSources: []string{"Search"}}}},
			want: []string{`spec.rules[0].addSources[0]: Invalid value: "Search"`}},
		{name: "CEL syntax error", spec: spec{Rules: []v1alpha1.Rule{{Name: "r", When: "request.from =="}}},
			want: []string{"spec.rules[0].when: Invalid value"}},
		{name: "CEL unknown field", spec: spec{Rules: []v1alpha1.Rule{{Name: "r", When: "request.sender == 'x'"}}},
			want: []string{"undefined field 'sender'"}},
		{name: "CEL not a bool", spec: spec{Rules: []v1alpha1.Rule{{Name: "r", When: "request.from"}}},
			want: []string{"spec.rules[0].when: Invalid value: \"request.from\": must evaluate to a bool, not string"}},
		{name: "CEL type error", spec: spec{Rules: []v1alpha1.Rule{{Name: "r", When: "request.eventTime == 'x'"}}},
			want: []string{"spec.rules[0].when: Invalid value"}},
		{name: "user ID with white space", spec: spec{Exemptions: &v1alpha1.Exemptions{Users: []string{"a b"}}},
			want: []string{`spec.exemptions.users[0]: Invalid value: "a b": must not contain white space`}},
		{name: "user ID too long", spec: spec{Blocklists: []v1alpha1.Blocklist{{Name: "l", Users: []string{strings.Repeat("x", 65)}}}},
			want: []string{"spec.blocklists[0].users[0]: Too long"}},
		{name: "too many rules", spec: spec{Rules: manyRules(65)},
			want: []string{"spec.rules: Too many: 65: must have at most 64 items"}},
		{name: "bad label selector", spec: spec{Blocklists: []v1alpha1.Blocklist{{Name: "l", ConfigMapSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"bad key!": "x"}}}}},
			want: []string{"spec.blocklists[0].configMapSelector: Invalid value"}},
		{name: "label selector not on the list label", spec: spec{Blocklists: []v1alpha1.Blocklist{{Name: "l", ConfigMapSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"list": "spammers"}}}}},
			want: []string{`spec.blocklists[0].configMapSelector: Invalid value: "list=spammers": configMapSelector must select on the label friendgate.io/list`}},
		{name: "label selector excluding the list label", spec: spec{Blocklists: []v1alpha1.Blocklist{{Name: "l", ConfigMapSelector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: v1alpha1.LabelList, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"x"}}}}}}},
			want: []string{"must select on the label friendgate.io/list"}},
		{name: "minimal limit", spec: spec{Limits: []v1alpha1.Limit{okLimit}}},
		{name: "limit with every field", spec: spec{Events: []v1alpha1.Event{"FriendRequest", "FriendResponse"}, Limits: []v1alpha1.Limit{{
			Name: "l", Events: []v1alpha1.Event{"FriendResponse"}, Key: "FromTo", Limit: 1_000_000, Window: hours(720),
			Penalty: &metav1.Duration{Duration: time.Second}, Code: 39000, Message: strings.Repeat("m", 256)}}}},
		{name: "ClientIP limit on events only OpenIM sends", spec: spec{Events: []v1alpha1.Event{"ImportFriends"}, Limits: []v1alpha1.Limit{{
			Name: "l", Events: []v1alpha1.Event{"ImportFriends"}, Key: "ClientIP", Limit: 5, Window: hours(1)}}}},
		{name: "duplicate limit names", spec: spec{Limits: []v1alpha1.Limit{okLimit, okLimit}},
			want: []string{`spec.limits[1].name: Duplicate value: "l"`}},
		{name: "limit named like a rule", spec: spec{Rules: []v1alpha1.Rule{{Name: "l", When: "true"}}, Limits: []v1alpha1.Limit{okLimit}}},
		{name: "limit name not a DNS label", spec: spec{Limits: []v1alpha1.Limit{{Name: "Per_Sender", Key: "From", Limit: 1, Window: hours(1)}}},
			want: []string{`spec.limits[0].name: Invalid value: "Per_Sender"`}},
		{name: "limit without key, count or window", spec: spec{Limits: []v1alpha1.Limit{{Name: "l"}}},
			want: []string{"spec.limits[0].key: Required value: must be From, To, ClientIP or FromTo",
				"spec.limits[0].limit: Invalid value: 0: must be between 1 and 1000000",
				`spec.limits[0].window: Invalid value: "0s": must be between 1s and 720h`}},
		{name: "unknown limit key", spec: spec{Limits: []v1alpha1.Limit{{Name: "l", Key: "Device", Limit: 1, Window: hours(1)}}},
			want: []string{`spec.limits[0].key: Unsupported value: "Device"`}},
		{name: "limit above range", spec: spec{Limits: []v1alpha1.Limit{{Name: "l", Key: "From", Limit: 1_000_001, Window: hours(1)}}},
			want: []string{"spec.limits[0].limit: Invalid value: 1000001"}},
		{name: "window below range", spec: spec{Limits: []v1alpha1.Limit{{Name: "l", Key: "From", Limit: 1, Window: metav1.Duration{Duration: 999 * time.Millisecond}}}},
			want: []string{`spec.limits[0].window: Invalid value: "999ms": must be between 1s and 720h`}},
		{name: "window above range", spec: spec{Limits: []v1alpha1.Limit{{Name: "l", Key: "From", Limit: 1, Window: hours(721)}}},
			want: []string{`spec.limits[0].window: Invalid value: "721h": must be between 1s and 720h`}},
		{name: "penalty out of range", spec: spec{Limits: []v1alpha1.Limit{{Name: "l", Key: "From", Limit: 1, Window: hours(1), Penalty: &metav1.Duration{}}}},
			want: []string{`spec.limits[0].penalty: Invalid value: "0s"`}},
		{name: "limit code and message", spec: spec{Limits: []v1alpha1.Limit{{Name: "l", Key: "From", Limit: 1, Window: hours(1), Code: 37000, Message: strings.Repeat("m", 257)}}},
			want: []string{"spec.limits[0].code: Invalid value: 37000", "spec.limits[0].message: Too long"}},
		{name: "limit event outside the policy's events", spec: spec{Events: []v1alpha1.Event{"FriendRequest"}, Limits: []v1alpha1.Limit{{
			Name: "l", Events: []v1alpha1.Event{"FriendRequest", "AddBlack"}, Key: "From", Limit: 1, Window: hours(1)}}},
			want: []string{`spec.limits[0].events[1]: Invalid value: "AddBlack": must be one of the policy's events`}},
		{name: "unknown and duplicate limit events", spec: spec{Limits: []v1alpha1.Limit{{
			Name: "l", Events: []v1alpha1.Event{"Poke", "FriendRequest", "FriendRequest"}, Key: "From", Limit: 1, Window: hours(1)}}},
			want: []string{`spec.limits[0].events[0]: Unsupported value: "Poke"`, `spec.limits[0].events[2]: Duplicate value: "FriendRequest"`}},
		{name: "limit's default event outside the policy's events", spec: spec{Events: []v1alpha1.Event{"AddBlack"}, Limits: []v1alpha1.Limit{okLimit}},
			want: []string{"spec.limits[0].events: Required value: a limit's events default to FriendRequest, which is not one of the policy's events"}},
		{name: "too many limits", spec: spec{Limits: manyLimits(17)},
			want: []string{"spec.limits: Too many: 17: must have at most 16 items"}},
		{name: "all errors are reported at once", spec: spec{Priority: -1, Rules: []v1alpha1.Rule{{Name: "r"}, {Name: "s", When: "1"}}},
			want: []string{"spec.priority", "spec.rules[0]: Required value", "spec.rules[1].when"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(fp("ns", "p", tt.spec), nil, Options{})
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !strings.HasPrefix(err.Error(), `FriendPolicy.friendgate.io "ns/p" is invalid: `) {
				t.Errorf("error does not name the policy: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func hours(n int) metav1.Duration { return metav1.Duration{Duration: time.Duration(n) * time.Hour} }

func manyLimits(n int) []v1alpha1.Limit {
	limits := make([]v1alpha1.Limit, n)
	for i := range limits {
		limits[i] = v1alpha1.Limit{Name: "l" + formatName(i), Key: "From", Limit: 1, Window: hours(1)}
	}
	return limits
}

func manyRules(n int) []v1alpha1.Rule {
	rules := make([]v1alpha1.Rule, n)
	for i := range rules {
		rules[i] = v1alpha1.Rule{Name: "r" + formatName(i), When: "true"}
	}
	return rules
}

func formatName(i int) string { return string(rune('a'+i/26)) + string(rune('a'+i%26)) }

func TestConfigMapLists(t *testing.T) {
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.LabelList: "spam"}}
	policy := fp("ns", "p", spec{Blocklists: []v1alpha1.Blocklist{{Name: "l", Users: []string{"inline"}, ConfigMapSelector: sel}}})
	spam := map[string]string{"list": "spam", v1alpha1.LabelList: "spam"}
	cms := []*corev1.ConfigMap{
		configMap("ns", "part-1", spam, map[string]string{"a.txt": "  u1 \n\n# comment\nu2\r\n", "b.txt": "u3"}),
		configMap("ns", "part-2", spam, map[string]string{"c.txt": "u4\nu1\ninline\n"}),
		configMap("ns", "unlabelled", nil, map[string]string{"x": "other1"}),
		configMap("other-ns", "foreign", spam, map[string]string{"x": "other2"}),
		// Selected, but without friendgate.io/list: replicas never see it, so neither may Compile.
		configMap("ns", "not-a-list", map[string]string{"list": "spam"}, map[string]string{"x": "other3"}),
	}
	c, err := Compile(policy, cms, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.BlocklistEntries, int64(5); got != want {
		t.Errorf("BlocklistEntries = %d, want %d (inline, u1..u4)", got, want)
	}
	if got := strings.Join(c.ConfigMaps, ","); got != "part-1,part-2" {
		t.Errorf("ConfigMaps = %s", got)
	}
	s := NewSnapshot([]*Compiled{c})
	for id, want := range map[string]bool{"u1": true, "u2": true, "u3": true, "u4": true, "inline": true, "# comment": false, "other1": false, "other2": false, "other3": false, "": false} {
		if got := s.Decide(&Request{Event: "FriendRequest", From: id, To: "zz"}).Deny != nil; got != want {
			t.Errorf("%q denied = %v, want %v", id, got, want)
		}
	}
}

func TestConfigMapListErrors(t *testing.T) {
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.LabelList: "spam"}}
	policy := fp("ns", "p", spec{Blocklists: []v1alpha1.Blocklist{{Name: "l", ConfigMapSelector: sel}}})
	spam := map[string]string{"list": "spam", v1alpha1.LabelList: "spam"}
	tests := []struct {
		name string
		cms  []*corev1.ConfigMap
		opts Options
		want string
	}{
		{
			name: "invalid user ID names the ConfigMap, key and line",
			cms:  []*corev1.ConfigMap{configMap("ns", "bad", spam, map[string]string{"k": "ok\nhas space\n"})},
			want: `spec.blocklists[0].configMapSelector: Invalid value: "friendgate.io/list=spam": ConfigMap bad key "k" line 2: user ID "has space" must not contain white space`,
		},
		{
			name: "list too large",
			cms:  []*corev1.ConfigMap{configMap("ns", "big", spam, map[string]string{"k": "a\nb\nc\n"})},
			opts: Options{MaxListEntries: 2},
			want: "the list has more than 2 user IDs (ConfigMap big key \"k\" line 3)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(policy, tt.cms, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

// A blocklist's set is built once, from its inline users, prefixes and patterns, and the
// ConfigMap users are added to it: none of the inline parts may be lost.
func TestConfigMapListsKeepInlinePrefixesAndPatterns(t *testing.T) {
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.LabelList: "spam"}}
	policy := fp("ns", "p", spec{Blocklists: []v1alpha1.Blocklist{{
		Name: "l", Users: []string{"inline"}, Prefixes: []string{"bot_"}, Patterns: []string{`spam\d+`}, ConfigMapSelector: sel,
	}}})
	cms := []*corev1.ConfigMap{configMap("ns", "part-1", map[string]string{v1alpha1.LabelList: "spam"}, map[string]string{"k": "listed\ninline\n"})}
	c, err := Compile(policy, cms, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.BlocklistEntries, int64(4); got != want {
		t.Errorf("BlocklistEntries = %d, want %d (inline, bot_, the pattern, listed)", got, want)
	}
	s := NewSnapshot([]*Compiled{c})
	for id, want := range map[string]bool{"inline": true, "listed": true, "bot_7": true, "spam42": true, "spam": false, "alice": false} {
		if got := s.Decide(&Request{Event: "FriendRequest", From: id, To: "zz"}).Deny != nil; got != want {
			t.Errorf("%q denied = %v, want %v", id, got, want)
		}
	}
}

// TestCompileErrorReason checks that a compile error says whether the spec or a list is at
// fault, through Build's joined error too, and keeps the Kubernetes Invalid form.
func TestCompileErrorReason(t *testing.T) {
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.LabelList: "spam"}}
	badList := configMap("ns", "bad", map[string]string{v1alpha1.LabelList: "spam"}, map[string]string{"k": "has space"})
	tests := []struct {
		name string
		spec v1alpha1.FriendPolicySpec
		want string // the Reason
		path string // the one field error's
	}{
		{"invalid spec", spec{Rules: []v1alpha1.Rule{{Name: "r", When: "request.from"}}}, v1alpha1.ReasonInvalid, "spec.rules[0].when"},
		{"bad pattern", spec{Blocklists: []v1alpha1.Blocklist{{Name: "l", Patterns: []string{"("}, ConfigMapSelector: sel}}}, v1alpha1.ReasonInvalid, "spec.blocklists[0].patterns[0]"},
		{"unusable list", spec{Blocklists: []v1alpha1.Blocklist{{Name: "l", ConfigMapSelector: sel}}}, v1alpha1.ReasonListError, "spec.blocklists[0].configMapSelector"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policy := fp("ns", "p", tt.spec)
			_, compileErr := Compile(policy, []*corev1.ConfigMap{badList}, Options{})
			_, _, buildErr := Build([]*v1alpha1.FriendPolicy{policy}, []*corev1.ConfigMap{badList}, Options{})
			for name, err := range map[string]error{"Compile": compileErr, "Build": buildErr} {
				var ce *CompileError
				if !errors.As(err, &ce) {
					t.Fatalf("%s: %v is not a *CompileError", name, err)
				}
				if ce.Reason != tt.want {
					t.Errorf("%s: reason %s, want %s", name, ce.Reason, tt.want)
				}
				if len(ce.Errs) != 1 || ce.Errs[0].Field != tt.path {
					t.Errorf("%s: field errors %v, want one at %s", name, ce.Errs, tt.path)
				}
				if !apierrors.IsInvalid(err) {
					t.Errorf("%s: %v is not a Kubernetes Invalid error", name, err)
				}
			}
			// Validate sees spec errors only: list errors need the ConfigMaps.
			if got := len(Validate(policy)) > 0; got != (tt.want == v1alpha1.ReasonInvalid) {
				t.Errorf("Validate reports errors = %v for reason %s", got, tt.want)
			}
		})
	}
}

func TestConfigMapSelectorMatchingNothingWarns(t *testing.T) {
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.LabelList: "spam"}}
	c, err := Compile(fp("ns", "p", spec{Blocklists: []v1alpha1.Blocklist{{Name: "l", ConfigMapSelector: sel}}}), nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], `spec.blocklists[0].configMapSelector: selects no ConfigMap labelled friendgate.io/list in namespace "ns"`) {
		t.Fatalf("warnings = %q", c.Warnings)
	}
}

func TestBuildReportsEveryInvalidPolicyAndKeepsTheRest(t *testing.T) {
	good := fp("ns", "good", spec{Rules: []v1alpha1.Rule{{Name: "r", When: "true"}}})
	bad1 := fp("ns", "bad1", spec{Rules: []v1alpha1.Rule{{Name: "r"}}})
	bad2 := fp("ns", "bad2", spec{Priority: -5})
	s, compiled, err := Build([]*v1alpha1.FriendPolicy{bad1, good, bad2}, nil, Options{})
	if err == nil || !strings.Contains(err.Error(), `"ns/bad1"`) || !strings.Contains(err.Error(), `"ns/bad2"`) {
		t.Fatalf("error %v should name both invalid policies", err)
	}
	if len(compiled) != 1 || s.Decide(&Request{Event: "FriendRequest", From: "a"}).Deny == nil {
		t.Fatal("the valid policy should still be compiled and enforced")
	}
}

func TestPrefixFree(t *testing.T) {
	tests := []struct {
		prefixes []string
		id       string
		want     bool
	}{
		{[]string{"a", "ab", "b"}, "ac", true},
		{[]string{"ab", "b"}, "ac", false},
		{[]string{"bot_", "bot_x", "c"}, "bot_", true},
		{[]string{"bot_"}, "bot", false},
		{[]string{"x"}, "", false},
		{[]string{"aa", "ab", "abc", "b"}, "abd", true},
		{[]string{"aa", "abc", "b"}, "abd", false},
	}
	for _, tt := range tests {
		s, _ := newUserSet(nil, tt.prefixes, nil)
		if got := s.contains(tt.id); got != tt.want {
			t.Errorf("prefixes %v contains(%q) = %v, want %v", tt.prefixes, tt.id, got, tt.want)
		}
	}
}
