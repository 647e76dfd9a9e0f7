package policytest

import (
	"os"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/policy"
	"github.com/friendgate/friendgate/internal/velocity"
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
		res := runCase(snap, &Case{Name: "c", Request: req, Expect: Expect{Result: resultDeny, Keyword: tt.keyword}}, velocity.NewLocal(velocity.LocalOptions{}), suiteEpoch)
		if got := strings.Join(res.Problems, "; "); got != tt.problem {
			t.Errorf("keyword %q: problems %q, want %q", tt.keyword, got, tt.problem)
		}
		if want := `deny 38000 by ns/p rule bait (keyword "telegram")`; res.Got != want {
			t.Errorf("Got %q, want %q", res.Got, want)
		}
	}
}

// TestLimitCases: a suite sends a request N times and expects the N+1th refused by a
// limit, counts across its cases, and moves its clock on with after.
func TestLimitCases(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/policy.yaml", `apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: velocity, namespace: im}
spec:
  limits:
  - {name: per-sender, key: From, limit: 3, window: 1h, penalty: 2h, code: 38040}
`)
	suite := func(cases string) string {
		return "apiVersion: friendgate.io/v1alpha1\nkind: FriendPolicyTest\nmetadata: {name: limits}\ncases:\n" + cases
	}
	req := "    request: {event: FriendRequest, appID: app1, from: bob, to: carol}\n"
	tests := []struct {
		name, cases string
		problems    []string
	}{
		{name: "the limit's requests pass, the next is refused, and the penalty outlasts the window", cases: "" +
			"  - name: three pass\n    repeat: 3\n" + req + "    expect: {result: allow}\n" +
			"  - name: the fourth is refused\n" + req + "    expect: {result: deny, code: 38040, policy: im/velocity, entry: per-sender}\n" +
			"  - name: an hour later the penalty still refuses\n    after: 1h\n" + req + "    expect: {result: deny, entry: per-sender}\n" +
			"  - name: once the penalty is over bob may send again\n    after: 1h\n" + req + "    expect: {result: allow}\n"},
		{name: "a repeat that goes over names the request that failed", cases: "" +
			"  - name: five\n    repeat: 5\n" + req + "    expect: {result: allow}\n",
			problems: []string{"five: request 4 of 5: expected allow, got deny 38040 by im/velocity limit per-sender"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := dir + "/limits.friendgate-test.yaml"
			writeFile(t, path, suite(tt.cases))
			res := RunFile(path)
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			var problems []string
			for _, c := range res.Cases {
				for _, p := range c.Problems {
					problems = append(problems, c.Name+": "+p)
				}
			}
			if strings.Join(problems, "\n") != strings.Join(tt.problems, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(tt.problems, "\n"))
			}
		})
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
