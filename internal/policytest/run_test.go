package policytest

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/policy"
)

// TestRunFileNotesUnguardedWhen checks that a suite reports the `when` expressions the
// index cannot skip: the samples have two, and the guarded one is not reported.
func TestRunFileNotesUnguardedWhen(t *testing.T) {
	res := RunFile("../../config/samples/samples.friendgate-test.yaml")
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	notes := strings.Join(res.Notes, "\n")
	for _, key := range []string{"default/audit-empty-greetings: spec.rules[0].when", "default/clean-remarks: spec.rules[0].when"} {
		if !strings.Contains(notes, key+": when has no indexable guard") {
			t.Errorf("no note for %s in:\n%s", key, notes)
		}
	}
	if strings.Contains(notes, "default/anti-spam") {
		t.Errorf("a guarded when is reported:\n%s", notes)
	}
}

// TestKeywordExpectation checks that a case can say which dictionary entry must match, and
// that the decision line names it.
func TestKeywordExpectation(t *testing.T) {
	fp := &v1alpha1.FriendPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}, Spec: v1alpha1.FriendPolicySpec{
		Rules: []v1alpha1.Rule{{Name: "bait", Keywords: &v1alpha1.Keywords{Words: []string{"skype", "telegram"}}}},
	}}
	snap, _, err := policy.Build([]*v1alpha1.FriendPolicy{fp}, nil, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	req := policy.Request{Event: "FriendRequest", From: "a", To: "b", Wording: "my Telegram"}
	tests := []struct {
		keyword string
		problem string
	}{
		{"telegram", ""},
		{"skype", `expected keyword "skype", got "telegram"`},
	}
	for _, tt := range tests {
		res := runCase(snap, &Case{Name: "c", Request: req, Expect: Expect{Result: resultDeny, Keyword: tt.keyword}})
		if got := strings.Join(res.Problems, "; "); got != tt.problem {
			t.Errorf("keyword %q: problems %q, want %q", tt.keyword, got, tt.problem)
		}
		if want := `deny 38000 by ns/p rule bait (keyword "telegram")`; res.Got != want {
			t.Errorf("Got %q, want %q", res.Got, want)
		}
	}
}
