package status

import (
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/policy"
	"github.com/friendgate/friendgate/internal/propagation"
)

func TestReachOf(t *testing.T) {
	live := []propagation.Status{
		{ID: "pod-a", Watermark: ""},   // before its first snapshot
		{ID: "pod-b", Watermark: "9"},  // behind
		{ID: "pod-c", Watermark: "10"}, // read the generation where it was first read
		{ID: "pod-d", Watermark: "12"}, // later
	}
	p := reachOf(live, "10")
	if p.live != 4 || !slices.Equal(p.behind, []string{"pod-a", "pod-b"}) || p.enforced() != 2 {
		t.Errorf("reachOf = %+v (enforced %d), want 4 live, pod-a and pod-b behind, 2 enforced", p, p.enforced())
	}
}

func TestDescribePropagation(t *testing.T) {
	many := reach{live: 8, behind: []string{"r1", "r2", "r3", "r4", "r5", "r6", "r7"}}
	for _, tc := range []struct {
		name    string
		p       reach
		reason  string
		message string
	}{
		{"no replica", reach{}, v1alpha1.ReasonNoReplicas, `no webhook replica serves (no live replica Lease in namespace "friendgate-system"): generation 3 is enforced nowhere`},
		{"every replica", reach{live: 2}, v1alpha1.ReasonEnforced, "every serving webhook replica enforces generation 3"},
		{"one behind", reach{live: 3, behind: []string{"pod-b"}}, v1alpha1.ReasonPropagating, "2/3 serving webhook replicas enforce generation 3; behind: pod-b"},
		{"more behind than named", many, v1alpha1.ReasonPropagating, "1/8 serving webhook replicas enforce generation 3; behind: r1, r2, r3, r4, r5 and 2 more"},
	} {
		reason, message := describePropagation(3, tc.p, "friendgate-system")
		if reason != tc.reason || message != tc.message {
			t.Errorf("%s: %s %q, want %s %q", tc.name, reason, message, tc.reason, tc.message)
		}
	}
}

// compile compiles a policy of namespace team with the given ConfigMaps, as the
// reconciler does, and classifies the outcome.
func compile(spec v1alpha1.FriendPolicySpec, cms ...*corev1.ConfigMap) compileResult {
	fp := &v1alpha1.FriendPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "p", Generation: 3}, Spec: spec}
	c, err := policy.Compile(fp, cms, policy.Options{})
	return classify(c, err)
}

func listConfigMap(users string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "list-1", Labels: map[string]string{v1alpha1.LabelList: "spam"}},
		Data:       map[string]string{"users.txt": users},
	}
}

var fromLists = v1alpha1.FriendPolicySpec{Blocklists: []v1alpha1.Blocklist{{
	Name: "spam", Users: []string{"spam_1"},
	ConfigMapSelector: &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.LabelList: "spam"}},
}}}

func TestClassify(t *testing.T) {
	invalidSpec := v1alpha1.FriendPolicySpec{Blocklists: []v1alpha1.Blocklist{{Name: "bots", Patterns: []string{`(?=bot)`}}}}
	for _, tc := range []struct {
		name     string
		spec     v1alpha1.FriendPolicySpec
		cms      []*corev1.ConfigMap
		reason   string // "" when it compiles
		compiled bool
	}{
		{"compiles", fromLists, []*corev1.ConfigMap{listConfigMap("spam_2\n")}, "", true},
		{"the spec does not compile", invalidSpec, nil, v1alpha1.ReasonInvalid, false},
		{"a list cannot be used", fromLists, []*corev1.ConfigMap{listConfigMap("has space\n")}, v1alpha1.ReasonListError, false},
		{"both: the spec comes first", v1alpha1.FriendPolicySpec{Blocklists: append(slices.Clone(fromLists.Blocklists), invalidSpec.Blocklists...)},
			[]*corev1.ConfigMap{listConfigMap("has space\n")}, v1alpha1.ReasonInvalid, false},
	} {
		res := compile(tc.spec, tc.cms...)
		if res.reason != tc.reason || (res.compiled != nil) != tc.compiled || (res.err != nil) != (tc.reason != "") {
			t.Errorf("%s: reason %q, compiled %v, err %v; want reason %q, compiled %v", tc.name, res.reason, res.compiled != nil, res.err, tc.reason, tc.compiled)
		}
	}
}

func TestDesiredStatus(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Minute)
	enforced := compile(fromLists, listConfigMap("spam_2\nspam_3\n"))
	invalid := compile(v1alpha1.FriendPolicySpec{Rules: []v1alpha1.Rule{{Name: "guests", When: "request.from"}}})
	if enforced.err != nil || invalid.err == nil {
		t.Fatalf("fixtures: %v, %v", enforced.err, invalid.err)
	}
	condition := func(typ string, status metav1.ConditionStatus, reason string, at time.Time) metav1.Condition {
		return metav1.Condition{Type: typ, Status: status, Reason: reason, ObservedGeneration: 2, LastTransitionTime: metav1.NewTime(at)}
	}
	other := condition("Reconciling", metav1.ConditionFalse, "Other", t0)

	for _, tc := range []struct {
		name   string
		before []metav1.Condition
		res    compileResult
		p      reach
		// want
		ready, stalled      *metav1.Condition // Message is not compared: see TestDescribePropagation
		enforced            string
		blocklistEntries    int64
		configMaps          []string
		keepsOtherCondition bool
	}{{
		name:   "enforced everywhere",
		before: []metav1.Condition{other},
		res:    enforced, p: reach{live: 2},
		ready:    &metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonEnforced, LastTransitionTime: metav1.NewTime(t1)},
		enforced: v1alpha1.EnforcedAll, blocklistEntries: 3, configMaps: []string{"list-1"}, keepsOtherCondition: true,
	}, {
		name:   "still False: the transition time stays",
		before: []metav1.Condition{condition(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonNoReplicas, t0)},
		res:    enforced, p: reach{live: 2, behind: []string{"pod-b"}},
		ready:    &metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonPropagating, LastTransitionTime: metav1.NewTime(t0)},
		enforced: "1/2", blocklistEntries: 3, configMaps: []string{"list-1"},
	}, {
		name:   "invalid: Stalled, nothing enforced",
		before: []metav1.Condition{condition(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonEnforced, t0)},
		res:    invalid, p: reach{live: 2},
		ready:    &metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonInvalid, LastTransitionTime: metav1.NewTime(t1)},
		stalled:  &metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonInvalid, LastTransitionTime: metav1.NewTime(t1)},
		enforced: v1alpha1.EnforcedNone,
	}, {
		name:   "fixed: Stalled goes",
		before: []metav1.Condition{condition(v1alpha1.ConditionStalled, metav1.ConditionTrue, v1alpha1.ReasonInvalid, t0)},
		res:    enforced, p: reach{},
		ready:    &metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonNoReplicas, LastTransitionTime: metav1.NewTime(t1)},
		enforced: v1alpha1.EnforcedNone, blocklistEntries: 3, configMaps: []string{"list-1"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			fp := &v1alpha1.FriendPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "p", Generation: 3}}
			fp.Status.Conditions = slices.Clone(tc.before)
			st := desiredStatus(fp, tc.res, tc.p, "friendgate-system", t1)
			if st.ObservedGeneration != 3 || st.Enforced != tc.enforced ||
				st.BlocklistEntries != tc.blocklistEntries || !slices.Equal(st.ConfigMaps, tc.configMaps) {
				t.Errorf("status %+v, want observedGeneration 3, enforced %q, %d entries, ConfigMaps %v",
					st, tc.enforced, tc.blocklistEntries, tc.configMaps)
			}
			checkCondition(t, st.Conditions, v1alpha1.ConditionReady, tc.ready)
			checkCondition(t, st.Conditions, v1alpha1.ConditionStalled, tc.stalled)
			if got := meta.FindStatusCondition(st.Conditions, other.Type) != nil; got != tc.keepsOtherCondition {
				t.Errorf("other condition kept = %v, want %v", got, tc.keepsOtherCondition)
			}
			if fp.Status.Conditions != nil && !slices.EqualFunc(fp.Status.Conditions, tc.before, func(a, b metav1.Condition) bool { return a == b }) {
				t.Errorf("desiredStatus changed the policy's conditions")
			}
		})
	}

	t.Run("ConfigMaps are bounded as the API bounds them", func(t *testing.T) {
		c := &policy.Compiled{}
		for i := range v1alpha1.MaxStatusConfigMaps + 5 {
			c.ConfigMaps = append(c.ConfigMaps, fmt.Sprintf("list-%04d", i))
		}
		st := desiredStatus(&v1alpha1.FriendPolicy{}, compileResult{compiled: c}, reach{}, "friendgate-system", t1)
		if len(st.ConfigMaps) != v1alpha1.MaxStatusConfigMaps {
			t.Errorf("%d ConfigMaps in the status, want %d", len(st.ConfigMaps), v1alpha1.MaxStatusConfigMaps)
		}
	})
}

// checkCondition compares the condition of type typ with want (nil: absent), message aside.
func checkCondition(t *testing.T, conditions []metav1.Condition, typ string, want *metav1.Condition) {
	t.Helper()
	got := meta.FindStatusCondition(conditions, typ)
	switch {
	case want == nil && got != nil:
		t.Errorf("%s = %+v, want none", typ, *got)
	case want == nil:
	case got == nil:
		t.Errorf("no %s condition, want %+v", typ, *want)
	case got.Status != want.Status || got.Reason != want.Reason || got.ObservedGeneration != 3 || !got.LastTransitionTime.Equal(&want.LastTransitionTime) || got.Message == "":
		t.Errorf("%s = %+v, want status %s reason %s observedGeneration 3 lastTransitionTime %v and a message",
			typ, *got, want.Status, want.Reason, want.LastTransitionTime)
	}
}
