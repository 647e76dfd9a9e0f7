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

func TestCountingOf(t *testing.T) {
	live := []propagation.Status{
		{ID: "pod-a", LimitsCounting: propagation.CountingShared},
		{ID: "pod-b", LimitsCounting: propagation.CountingLocal},
		{ID: "pod-c", LimitsCounting: propagation.CountingUnknown},
		{ID: "pod-d", LimitsCounting: propagation.CountingShared},
	}
	if got, want := countingOf(liveCounting(live)), (limitsCounting{live: 4, alone: 2, unknown: 1}); got != want {
		t.Errorf("countingOf = %+v, want %+v", got, want)
	}
}

func TestDescribeLimitsCounting(t *testing.T) {
	for _, tc := range []struct {
		name    string
		c       limitsCounting
		status  metav1.ConditionStatus
		reason  string
		value   string
		message string
	}{
		{"no replica", limitsCounting{}, metav1.ConditionUnknown, v1alpha1.ReasonNoReplicas, v1alpha1.LimitsCountingNone,
			"no webhook replica serves: limits are counted nowhere"},
		{"one replica, through Redis", limitsCounting{live: 1}, metav1.ConditionTrue, v1alpha1.ReasonShared, v1alpha1.LimitsCountingShared,
			"every serving webhook replica counts limits through Redis, together"},
		{"every replica through Redis", limitsCounting{live: 5}, metav1.ConditionTrue, v1alpha1.ReasonShared, v1alpha1.LimitsCountingShared,
			"every serving webhook replica counts limits through Redis, together"},
		{"one replica, in memory", limitsCounting{live: 1, alone: 1}, metav1.ConditionTrue, v1alpha1.ReasonSingleReplica, v1alpha1.LimitsCountingSingleReplica,
			"one webhook replica serves and counts limits alone: its counts are complete, until it restarts or a second replica serves without Redis"},
		{"one replica that does not say", limitsCounting{live: 1, alone: 1, unknown: 1}, metav1.ConditionTrue, v1alpha1.ReasonSingleReplica, v1alpha1.LimitsCountingSingleReplica,
			"one webhook replica serves and counts limits alone: its counts are complete, until it restarts or a second replica serves without Redis"},
		{"two replicas in memory", limitsCounting{live: 2, alone: 2}, metav1.ConditionFalse, v1alpha1.ReasonCountedPerReplica, v1alpha1.LimitsCountingPerReplica,
			"2 of 2 serving webhook replicas count limits alone (no Redis, or Redis failing): counts are split 2 ways, so a sender may get up to 2 times each limit"},
		// Two through Redis share one count; the third keeps its own.
		{"Redis failing for one replica of three", limitsCounting{live: 3, alone: 1}, metav1.ConditionFalse, v1alpha1.ReasonCountedPerReplica, v1alpha1.LimitsCountingPerReplica,
			"1 of 3 serving webhook replicas count limits alone (no Redis, or Redis failing): counts are split 2 ways, so a sender may get up to 2 times each limit"},
		{"older replicas among them", limitsCounting{live: 4, alone: 3, unknown: 2}, metav1.ConditionFalse, v1alpha1.ReasonCountedPerReplica, v1alpha1.LimitsCountingPerReplica,
			"3 of 4 serving webhook replicas count limits alone (no Redis, or Redis failing): counts are split 4 ways, so a sender may get up to 4 times each limit; " +
				"2 of them do not say how they count (a version older than the friendgate.io/limits-counting annotation)"},
	} {
		cond, value := describeLimitsCounting(tc.c)
		if cond.Status != tc.status || cond.Reason != tc.reason || value != tc.value || cond.Message != tc.message {
			t.Errorf("%s: %s %s %q %q, want %s %s %q %q", tc.name, cond.Status, cond.Reason, value, cond.Message, tc.status, tc.reason, tc.value, tc.message)
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
	invalidRules := []v1alpha1.Rule{{Name: "guests", When: "request.from"}}
	invalid := compile(v1alpha1.FriendPolicySpec{Rules: invalidRules})
	perSender := []v1alpha1.Limit{{Name: "per-sender", Key: v1alpha1.LimitKeyFrom, Limit: 20, Window: metav1.Duration{Duration: time.Hour}}}
	limited := compile(v1alpha1.FriendPolicySpec{Limits: perSender})
	invalidLimited := compile(v1alpha1.FriendPolicySpec{Limits: perSender, Rules: invalidRules})
	if enforced.err != nil || invalid.err == nil || limited.err != nil || invalidLimited.err == nil {
		t.Fatalf("fixtures: %v, %v, %v, %v", enforced.err, invalid.err, limited.err, invalidLimited.err)
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
		lc     limitsCounting
		// want
		// Messages are not compared: see TestDescribePropagation and TestDescribeLimitsCounting.
		ready, stalled, limits *metav1.Condition
		enforced               string
		limitsCounting         string
		blocklistEntries       int64
		configMaps             []string
		keepsOtherCondition    bool
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
	}, {
		name: "limits counted per replica",
		res:  limited, p: reach{live: 2}, lc: limitsCounting{live: 2, alone: 2},
		ready:    &metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonEnforced, LastTransitionTime: metav1.NewTime(t1)},
		limits:   &metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonCountedPerReplica, LastTransitionTime: metav1.NewTime(t1)},
		enforced: v1alpha1.EnforcedAll, limitsCounting: v1alpha1.LimitsCountingPerReplica,
	}, {
		name: "limits shared again: the transition time moves, Ready's stays",
		before: []metav1.Condition{
			condition(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonEnforced, t0),
			condition(v1alpha1.ConditionLimitsShared, metav1.ConditionFalse, v1alpha1.ReasonCountedPerReplica, t0),
		},
		res: limited, p: reach{live: 2}, lc: limitsCounting{live: 2},
		ready:    &metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonEnforced, LastTransitionTime: metav1.NewTime(t0)},
		limits:   &metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonShared, LastTransitionTime: metav1.NewTime(t1)},
		enforced: v1alpha1.EnforcedAll, limitsCounting: v1alpha1.LimitsCountingShared,
	}, {
		name:   "from a single replica to Redis: still True, the transition time stays",
		before: []metav1.Condition{condition(v1alpha1.ConditionLimitsShared, metav1.ConditionTrue, v1alpha1.ReasonSingleReplica, t0)},
		res:    limited, p: reach{live: 1}, lc: limitsCounting{live: 1},
		ready:    &metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonEnforced, LastTransitionTime: metav1.NewTime(t1)},
		limits:   &metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonShared, LastTransitionTime: metav1.NewTime(t0)},
		enforced: v1alpha1.EnforcedAll, limitsCounting: v1alpha1.LimitsCountingShared,
	}, {
		name: "limits with no replica: Unknown",
		res:  limited, p: reach{}, lc: limitsCounting{},
		ready:    &metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonNoReplicas, LastTransitionTime: metav1.NewTime(t1)},
		limits:   &metav1.Condition{Status: metav1.ConditionUnknown, Reason: v1alpha1.ReasonNoReplicas, LastTransitionTime: metav1.NewTime(t1)},
		enforced: v1alpha1.EnforcedNone, limitsCounting: v1alpha1.LimitsCountingNone,
	}, {
		name:   "limits removed from the spec: the condition goes",
		before: []metav1.Condition{condition(v1alpha1.ConditionLimitsShared, metav1.ConditionFalse, v1alpha1.ReasonCountedPerReplica, t0)},
		res:    enforced, p: reach{live: 2}, lc: limitsCounting{live: 2, alone: 2},
		ready:    &metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonEnforced, LastTransitionTime: metav1.NewTime(t1)},
		enforced: v1alpha1.EnforcedAll, blocklistEntries: 3, configMaps: []string{"list-1"},
	}, {
		name:   "limits in a spec that does not compile: none in force, no condition",
		before: []metav1.Condition{condition(v1alpha1.ConditionLimitsShared, metav1.ConditionTrue, v1alpha1.ReasonShared, t0)},
		res:    invalidLimited, p: reach{live: 2}, lc: limitsCounting{live: 2, alone: 2},
		ready:    &metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonInvalid, LastTransitionTime: metav1.NewTime(t1)},
		stalled:  &metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonInvalid, LastTransitionTime: metav1.NewTime(t1)},
		enforced: v1alpha1.EnforcedNone,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			fp := &v1alpha1.FriendPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "p", Generation: 3}}
			fp.Status.Conditions = slices.Clone(tc.before)
			st := desiredStatus(fp, tc.res, tc.p, tc.lc, "friendgate-system", t1)
			if st.ObservedGeneration != 3 || st.Enforced != tc.enforced || st.LimitsCounting != tc.limitsCounting ||
				st.BlocklistEntries != tc.blocklistEntries || !slices.Equal(st.ConfigMaps, tc.configMaps) {
				t.Errorf("status %+v, want observedGeneration 3, enforced %q, limitsCounting %q, %d entries, ConfigMaps %v",
					st, tc.enforced, tc.limitsCounting, tc.blocklistEntries, tc.configMaps)
			}
			checkCondition(t, st.Conditions, v1alpha1.ConditionReady, tc.ready)
			checkCondition(t, st.Conditions, v1alpha1.ConditionStalled, tc.stalled)
			checkCondition(t, st.Conditions, v1alpha1.ConditionLimitsShared, tc.limits)
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
		st := desiredStatus(&v1alpha1.FriendPolicy{}, compileResult{compiled: c}, reach{}, limitsCounting{}, "friendgate-system", t1)
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
