package admission

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

// friendPolicy returns a FriendPolicy named p in namespace im with the given spec.
func friendPolicy(spec v1alpha1.FriendPolicySpec) *v1alpha1.FriendPolicy {
	return &v1alpha1.FriendPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "im", Name: "p"}, Spec: spec}
}

func rule(r v1alpha1.Rule) v1alpha1.FriendPolicySpec {
	if r.Name == "" {
		r.Name = "r"
	}
	return v1alpha1.FriendPolicySpec{Rules: []v1alpha1.Rule{r}}
}

func blocklist(b v1alpha1.Blocklist) v1alpha1.FriendPolicySpec {
	if b.Name == "" {
		b.Name = "b"
	}
	return v1alpha1.FriendPolicySpec{Blocklists: []v1alpha1.Blocklist{b}}
}

// validSpec returns a policy spec that compiles, new at each call: clients write the
// server's defaults back into the object they create.
func validSpec() v1alpha1.FriendPolicySpec {
	return v1alpha1.FriendPolicySpec{
		Blocklists: []v1alpha1.Blocklist{{
			Name:              "spammers",
			Users:             []string{"spam_1"},
			Patterns:          []string{`^[0-9]{11}$`},
			ConfigMapSelector: &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.LabelList: "spammers"}},
		}},
		Rules: []v1alpha1.Rule{{
			Name:            "no-links",
			WordingPatterns: []string{`https?://`},
			When:            "request.from.startsWith('guest_') && !request.forceAdd",
		}},
		Limits: []v1alpha1.Limit{{
			Name:    "per-sender",
			Key:     v1alpha1.LimitKeyFrom,
			Limit:   20,
			Window:  metav1.Duration{Duration: time.Hour},
			Penalty: &metav1.Duration{Duration: 24 * time.Hour},
		}},
	}
}

// causes renders an Invalid error's causes as "field: message", the way kubectl lists them.
func causes(t *testing.T, err error) []string {
	t.Helper()
	if !apierrors.IsInvalid(err) {
		t.Fatalf("error %v (%T) is not an Invalid status error", err, err)
	}
	status := err.(apierrors.APIStatus).Status()
	if status.Details == nil || status.Details.Kind != "FriendPolicy" || status.Details.Group != "friendgate.io" || status.Details.Name != "p" {
		t.Errorf("status details %+v do not name FriendPolicy.friendgate.io p", status.Details)
	}
	var out []string
	for _, c := range status.Details.Causes {
		out = append(out, c.Field+": "+c.Message)
	}
	return out
}

func TestValidateCreate(t *testing.T) {
	tests := []struct {
		name string
		spec v1alpha1.FriendPolicySpec
		// want holds a prefix of each cause ("field: message"), in order; none means allowed.
		want []string
	}{
		{name: "valid", spec: validSpec()},
		{name: "RE2 pattern of a blocklist", spec: blocklist(v1alpha1.Blocklist{Patterns: []string{`ok`, `(unclosed`}}),
			want: []string{"spec.blocklists[0].patterns[1]: Invalid value: \"(unclosed\": not a valid RE2 regular expression"}},
		{name: "Perl lookahead is not RE2", spec: rule(v1alpha1.Rule{WordingPatterns: []string{`(?=http)`}}),
			want: []string{"spec.rules[0].wordingPatterns[0]: Invalid value: \"(?=http)\": not a valid RE2 regular expression"}},
		{name: "CEL that is not a bool", spec: rule(v1alpha1.Rule{When: "request.from"}),
			want: []string{"spec.rules[0].when: Invalid value: \"request.from\": must evaluate to a bool, not string"}},
		{name: "CEL over an unknown field", spec: rule(v1alpha1.Rule{When: "request.sender == 'x'"}),
			want: []string{"spec.rules[0].when: Invalid value: \"request.sender == 'x'\":"}},
		// The CRD's CEL rule checks matchLabels only; expressions are checked here.
		{name: "list selector excluding friendgate.io/list", spec: blocklist(v1alpha1.Blocklist{ConfigMapSelector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: v1alpha1.LabelList, Operator: metav1.LabelSelectorOpDoesNotExist}}}}),
			want: []string{`spec.blocklists[0].configMapSelector: Invalid value: "!friendgate.io/list": configMapSelector must select on the label friendgate.io/list`}},
		{name: "CEL syntax", spec: rule(v1alpha1.Rule{When: "request.from ==="}),
			want: []string{"spec.rules[0].when: Invalid value:"}},
		{name: "limit out of bounds", spec: v1alpha1.FriendPolicySpec{Limits: []v1alpha1.Limit{{Name: "l", Key: v1alpha1.LimitKeyFromTo, Limit: 5, Window: metav1.Duration{Duration: 31 * 24 * time.Hour}}}},
			want: []string{`spec.limits[0].window: Invalid value: "744h": must be between 1s and 720h`}},
		{name: "every error, each with its path",
			spec: v1alpha1.FriendPolicySpec{
				Blocklists: []v1alpha1.Blocklist{{Name: "b", Patterns: []string{`[`}}},
				Rules:      []v1alpha1.Rule{{Name: "ok", When: "true"}, {Name: "bad", When: "1 + 1", WordingPatterns: []string{`\`}}},
			},
			want: []string{
				"spec.blocklists[0].patterns[0]: Invalid value",
				"spec.rules[1].wordingPatterns[0]: Invalid value",
				"spec.rules[1].when: Invalid value: \"1 + 1\": must evaluate to a bool, not int",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			warnings, err := Validator{}.ValidateCreate(context.Background(), friendPolicy(tt.spec))
			if len(warnings) > 0 {
				t.Errorf("warnings %q, want none", warnings)
			}
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			got := causes(t, err)
			if len(got) != len(tt.want) {
				t.Fatalf("causes %q, want %d starting with %q", got, len(tt.want), tt.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("cause %d = %q, want it to start with %q", i, got[i], tt.want[i])
				}
			}
			// The message is what kubectl prints first.
			if msg := err.Error(); !strings.HasPrefix(msg, `FriendPolicy.friendgate.io "p" is invalid: `) {
				t.Errorf("message %q does not start like the API server's own", msg)
			}
		})
	}
}

func TestValidateUpdate(t *testing.T) {
	invalidSpec := rule(v1alpha1.Rule{When: "request.from"})
	relabelled := func(spec v1alpha1.FriendPolicySpec) *v1alpha1.FriendPolicy {
		fp := friendPolicy(spec)
		fp.Labels = map[string]string{"team": "trust"}
		return fp
	}
	tests := []struct {
		name     string
		old, new *v1alpha1.FriendPolicy
		// wantCause is a prefix of the only cause of the refusal; "" means allowed.
		wantCause string
		// wantWarning is a prefix of the only warning; "" means none.
		wantWarning string
	}{
		{name: "valid change", old: friendPolicy(validSpec()), new: friendPolicy(rule(v1alpha1.Rule{When: "request.forceAdd"}))},
		{name: "change to an invalid spec", old: friendPolicy(validSpec()), new: friendPolicy(invalidSpec),
			wantCause: "spec.rules[0].when: Invalid value"},
		{name: "invalid spec changed but still invalid", old: friendPolicy(invalidSpec), new: friendPolicy(rule(v1alpha1.Rule{When: "1"})),
			wantCause: "spec.rules[0].when: Invalid value: \"1\": must evaluate to a bool, not int"},
		{name: "metadata change keeps an invalid spec", old: friendPolicy(invalidSpec), new: relabelled(invalidSpec),
			wantWarning: "the spec does not compile, so the policy is not enforced: spec.rules[0].when: Invalid value"},
		{name: "invalid spec fixed", old: friendPolicy(invalidSpec), new: friendPolicy(validSpec())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			warnings, err := Validator{}.ValidateUpdate(context.Background(), tt.old, tt.new)
			switch {
			case tt.wantCause == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.wantCause != "":
				if got := causes(t, err); len(got) != 1 || !strings.HasPrefix(got[0], tt.wantCause) {
					t.Errorf("causes %q, want one starting with %q", got, tt.wantCause)
				}
			}
			switch {
			case tt.wantWarning == "" && len(warnings) > 0:
				t.Errorf("warnings %q, want none", warnings)
			case tt.wantWarning != "" && (len(warnings) != 1 || !strings.HasPrefix(warnings[0], tt.wantWarning)):
				t.Errorf("warnings %q, want one starting with %q", warnings, tt.wantWarning)
			}
		})
	}
}

func TestValidateDeleteAllowsInvalidPolicies(t *testing.T) {
	warnings, err := Validator{}.ValidateDelete(context.Background(), friendPolicy(rule(v1alpha1.Rule{When: "request.from"})))
	if err != nil || len(warnings) > 0 {
		t.Errorf("ValidateDelete = %q, %v; want it allowed", warnings, err)
	}
}
