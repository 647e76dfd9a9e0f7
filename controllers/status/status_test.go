package status_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/controllers/status"
	"github.com/friendgate/friendgate/internal/testenv"
)

var spammers = v1alpha1.FriendPolicySpec{
	Blocklists: []v1alpha1.Blocklist{{Name: "spammers", Users: []string{"spam_1"}}},
}

// listSpec is a policy whose only blocklist is spam_1 plus the labelled ConfigMaps of its
// namespace that carry team=<team>.
func listSpec(team string) v1alpha1.FriendPolicySpec {
	return v1alpha1.FriendPolicySpec{Blocklists: []v1alpha1.Blocklist{{
		Name:  "spammers",
		Users: []string{"spam_1"},
		ConfigMapSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": team},
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: v1alpha1.LabelList, Operator: metav1.LabelSelectorOpExists}}},
	}}}
}

// listLabels are the labels of a ConfigMap list of a team.
func listLabels(team string) map[string]string {
	return map[string]string{v1alpha1.LabelList: "spammers", "team": team}
}

func TestReplicaCount(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// replicas are given the policy's resourceVersion as read after its creation.
		replicas func(rv string) []fakeReplica
		cond     metav1.ConditionStatus
		reason   string
		enforced string
		// message is Ready's message; %s is the namespace.
		message string
	}{{
		name:     "every replica enforces the policy",
		replicas: func(rv string) []fakeReplica { return []fakeReplica{live("pod-a", rv), live("pod-b", caughtUp)} },
		cond:     metav1.ConditionTrue, reason: v1alpha1.ReasonEnforced, enforced: v1alpha1.EnforcedAll,
		message: "every serving webhook replica enforces generation 1",
	}, {
		name:     "one replica behind",
		replicas: func(rv string) []fakeReplica { return []fakeReplica{live("pod-a", rv), live("pod-b", "1")} },
		cond:     metav1.ConditionFalse, reason: v1alpha1.ReasonPropagating, enforced: "1/2",
		message: "1/2 serving webhook replicas enforce generation 1; behind: pod-b",
	}, {
		name:     "one replica before its first snapshot",
		replicas: func(rv string) []fakeReplica { return []fakeReplica{live("pod-a", ""), live("pod-b", rv)} },
		cond:     metav1.ConditionFalse, reason: v1alpha1.ReasonPropagating, enforced: "1/2",
		message: "1/2 serving webhook replicas enforce generation 1; behind: pod-a",
	}, {
		name:     "no replica",
		replicas: func(string) []fakeReplica { return nil },
		cond:     metav1.ConditionFalse, reason: v1alpha1.ReasonNoReplicas, enforced: v1alpha1.EnforcedNone,
		message: `no webhook replica serves (no live replica Lease in namespace "%s"): generation 1 is enforced nowhere`,
	}, {
		name: "only an expired replica",
		replicas: func(rv string) []fakeReplica {
			return []fakeReplica{{id: "pod-a", watermark: rv, age: time.Minute, duration: 2 * time.Second}}
		},
		cond: metav1.ConditionFalse, reason: v1alpha1.ReasonNoReplicas, enforced: v1alpha1.EnforcedNone,
		message: `no webhook replica serves (no live replica Lease in namespace "%s"): generation 1 is enforced nowhere`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			fp := h.createPolicy("anti-spam", spammers)
			for _, r := range tc.replicas(fp.ResourceVersion) {
				h.setReplica(r)
			}
			msg := tc.message
			if tc.reason == v1alpha1.ReasonNoReplicas {
				msg = fmt.Sprintf(msg, h.ns)
			}
			got := h.waitFor(fp.Name, ready(tc.cond, tc.reason, tc.enforced), message(msg))
			if got.Status.Rules != 0 || got.Status.BlocklistEntries != 1 {
				t.Errorf("rules %d blocklistEntries %d, want 0 and 1", got.Status.Rules, got.Status.BlocklistEntries)
			}
		})
	}
}

// TestReplicaExpiry: a replica that stops renewing its Lease drops out of the count when
// the Lease expires, with no Lease event to announce it: a policy that waited only on it
// is enforced, and the summary no longer names it.
func TestReplicaExpiry(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.setReplica(live("pod-a", caughtUp))
	h.setReplica(live("pod-b", "1"))
	fp := h.createPolicy("anti-spam", spammers)
	h.waitFor(fp.Name, ready(metav1.ConditionFalse, v1alpha1.ReasonPropagating, "1/2"))
	h.waitForSummary("pod-a", "pod-b")

	// pod-b's last renewal, of a 2 s Lease. Once the Tracker holds it, time moves past its
	// expiry with no Lease event to announce it.
	h.setReplica(fakeReplica{id: "pod-b", watermark: "1", duration: 2 * time.Second})
	testenv.Eventually(t, waitTimeout, "the Tracker to read pod-b's last renewal", func() (bool, string) {
		live := h.r.Replicas.Live(h.clock.Now().Add(2 * time.Second))
		return len(live) == 1, fmt.Sprintf("%d replicas alive in 2 s", len(live))
	})
	h.clock.Step(2 * time.Second)
	h.waitFor(fp.Name, ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll),
		message("every serving webhook replica enforces generation 1"))
	h.waitForSummary("pod-a")
}

func TestGenerationTracking(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	fp := h.createPolicy("anti-spam", spammers)
	h.setReplica(live("pod-a", fp.ResourceVersion))
	h.waitFor(fp.Name, ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll))

	fp = h.updatePolicy(fp.Name, func(s *v1alpha1.FriendPolicySpec) {
		s.Rules = []v1alpha1.Rule{{Name: "no-links", WordingPatterns: []string{`https?://`}}}
		s.Limits = []v1alpha1.Limit{{Name: "per-sender", Key: v1alpha1.LimitKeyFrom, Limit: 20, Window: metav1.Duration{Duration: time.Hour}}}
	})
	if fp.Generation != 2 {
		t.Fatalf("generation %d after the first spec update, want 2", fp.Generation)
	}
	got := h.waitFor(fp.Name, ready(metav1.ConditionFalse, v1alpha1.ReasonPropagating, "0/1"),
		message("0/1 serving webhook replicas enforce generation 2; behind: pod-a"))
	if got.Status.Rules != 1 || got.Status.Limits != 1 {
		t.Errorf("rules %d limits %d, want 1 and 1", got.Status.Rules, got.Status.Limits)
	}

	// pod-a applies the update: its watermark moves to the policy's new resourceVersion.
	h.setReplica(live("pod-a", fp.ResourceVersion))
	h.waitFor(fp.Name, ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll),
		message("every serving webhook replica enforces generation 2"))

	for _, e := range h.events.of(fp.Name) {
		if e.Reason == v1alpha1.ReasonPropagating {
			t.Errorf("Event %+v: Propagating is routine and gets no Event", e)
		}
	}
}

func TestInvalidSpec(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		spec v1alpha1.FriendPolicySpec
		want []string
	}{{
		name: "RE2 has no lookahead",
		spec: v1alpha1.FriendPolicySpec{Blocklists: []v1alpha1.Blocklist{{Name: "bots", Patterns: []string{`(?=bot)`}}}},
		want: []string{"spec.blocklists[0].patterns[0]", "not a valid RE2 regular expression"},
	}, {
		name: "wording pattern",
		spec: v1alpha1.FriendPolicySpec{Rules: []v1alpha1.Rule{{Name: "links", WordingPatterns: []string{`https?://`, `(unclosed`}}}},
		want: []string{"spec.rules[0].wordingPatterns[1]", "missing closing )"},
	}, {
		name: "when is not a bool",
		spec: v1alpha1.FriendPolicySpec{Rules: []v1alpha1.Rule{{Name: "guests", When: "request.from"}}},
		want: []string{"spec.rules[0].when", "must evaluate to a bool"},
	}, {
		name: "when names an unknown field",
		spec: v1alpha1.FriendPolicySpec{Rules: []v1alpha1.Rule{{Name: "guests", When: "request.sender == 'x'"}}},
		want: []string{"spec.rules[0].when", "sender"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.setReplica(live("pod-a", caughtUp))
			fp := h.createPolicy("broken", tc.spec) // the schema lets it through
			got := h.waitFor(fp.Name, ready(metav1.ConditionFalse, v1alpha1.ReasonInvalid, v1alpha1.EnforcedNone),
				message(append([]string{"the spec does not compile: "}, tc.want...)...))
			if got.Status.Rules != 0 || got.Status.BlocklistEntries != 0 {
				t.Errorf("rules %d blocklistEntries %d, want 0 and 0 (nothing is enforced)",
					got.Status.Rules, got.Status.BlocklistEntries)
			}
		})
	}
}

func TestListError(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.setReplica(live("pod-a", caughtUp))
	h.createConfigMap("trust-safety-1", listLabels("trust-safety"), "spam_2", "has space")
	fp := h.createPolicy("anti-spam", listSpec("trust-safety"))
	h.waitFor(fp.Name, ready(metav1.ConditionFalse, v1alpha1.ReasonListError, v1alpha1.EnforcedNone),
		message("a ConfigMap list cannot be used: spec.blocklists[0].configMapSelector",
			`ConfigMap trust-safety-1 key "users.txt" line 2: user ID "has space"`))

	h.updateConfigMap("trust-safety-1", func(cm *corev1.ConfigMap) { cm.Data["users.txt"] = "spam_2\nspam_3\n" })
	h.waitFor(fp.Name, ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll), entries(3, "trust-safety-1"))
}

// TestConfigMapFanIn: every change of a labelled ConfigMap reaches the policies that
// select it, before or after the change.
func TestConfigMapFanIn(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.setReplica(live("pod-a", caughtUp))
	ts := h.createPolicy("trust-safety", listSpec("trust-safety"))
	growth := h.createPolicy("growth", listSpec("growth"))
	h.waitFor(ts.Name, ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll), entries(1))
	h.waitFor(growth.Name, ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll), entries(1))

	steps := []struct {
		name         string
		do           func()
		ts, growth   int64
		tsCMs, grCMs []string
	}{{
		name: "a ConfigMap without the list label is not a list",
		do: func() {
			h.createConfigMap("unlabelled", map[string]string{"team": "trust-safety"}, "spam_7", "spam_8")
			h.createConfigMap("ts-1", listLabels("trust-safety"), "spam_2", "spam_3", "# reviewed 2026-11-01", "")
		},
		ts: 3, tsCMs: []string{"ts-1"}, growth: 1,
	}, {
		name: "labelling a ConfigMap makes it a list",
		do: func() {
			h.updateConfigMap("unlabelled", func(cm *corev1.ConfigMap) { cm.Labels[v1alpha1.LabelList] = "spammers" })
		},
		ts: 5, tsCMs: []string{"ts-1", "unlabelled"}, growth: 1,
	}, {
		name: "editing a list",
		do: func() {
			h.updateConfigMap("ts-1", func(cm *corev1.ConfigMap) { cm.Data["more.txt"] = "spam_4\nspam_1\n" })
		},
		ts: 6, tsCMs: []string{"ts-1", "unlabelled"}, growth: 1,
	}, {
		name: "moving a list to another team",
		do: func() {
			h.updateConfigMap("ts-1", func(cm *corev1.ConfigMap) { cm.Labels["team"] = "growth" })
		},
		ts: 3, tsCMs: []string{"unlabelled"}, growth: 4, grCMs: []string{"ts-1"},
	}, {
		name: "removing the list label",
		do: func() {
			h.updateConfigMap("ts-1", func(cm *corev1.ConfigMap) { delete(cm.Labels, v1alpha1.LabelList) })
		},
		ts: 3, tsCMs: []string{"unlabelled"}, growth: 1,
	}, {
		name: "deleting a list",
		do:   func() { h.deleteConfigMap("unlabelled") },
		ts:   1, growth: 1,
	}}
	for _, s := range steps {
		t.Log(s.name)
		s.do()
		h.waitFor(ts.Name, ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll), entries(s.ts, s.tsCMs...))
		h.waitFor(growth.Name, ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll), entries(s.growth, s.grCMs...))
	}
}

// TestStatusNotRewritten: a reconcile that finds nothing new writes nothing.
func TestStatusNotRewritten(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.setReplica(live("pod-a", caughtUp))
	h.createConfigMap("ts-1", listLabels("trust-safety"), "spam_2")
	fp := h.waitFor(h.createPolicy("anti-spam", listSpec("trust-safety")).Name,
		ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll), entries(2, "ts-1"))
	h.waitForCache(fp)
	// The reconcile records the Enforced Event after its status write, which the test may
	// see first.
	testenv.Eventually(t, waitTimeout, "the Enforced Event", func() (bool, string) {
		got := h.events.of(fp.Name)
		return slices.ContainsFunc(got, func(e recordedEvent) bool { return e.Reason == v1alpha1.ReasonEnforced }), fmt.Sprintf("%+v", got)
	})
	events := len(h.events.of(fp.Name))

	// A renewal changes nothing the status says.
	h.setReplica(live("pod-a", caughtUp))
	for range 2 {
		if _, err := h.r.Reconcile(context.Background(), reconcile.Request{NamespacedName: client.ObjectKeyFromObject(fp)}); err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
	}
	after := &v1alpha1.FriendPolicy{}
	if err := h.api.Get(context.Background(), client.ObjectKeyFromObject(fp), after); err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != fp.ResourceVersion {
		t.Errorf("resourceVersion %s after no-op reconciles, want %s unchanged", after.ResourceVersion, fp.ResourceVersion)
	}
	if n := len(h.events.of(fp.Name)); n != events {
		t.Errorf("%d Events after no-op reconciles, want %d: %+v", n, events, h.events.of(fp.Name)[events:])
	}
}

// TestEvents: Ready transitions and empty ConfigMap lists are announced once each, as
// events.k8s.io Events on the policy.
func TestEvents(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	fp := h.createPolicy("anti-spam", listSpec("trust-safety"))
	h.waitFor(fp.Name, ready(metav1.ConditionFalse, v1alpha1.ReasonNoReplicas, v1alpha1.EnforcedNone))
	h.setReplica(live("pod-a", caughtUp))
	h.waitFor(fp.Name, ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll))
	h.updatePolicy(fp.Name, func(s *v1alpha1.FriendPolicySpec) { s.Blocklists[0].Patterns = []string{`(?=bot)`} })
	h.waitFor(fp.Name, ready(metav1.ConditionFalse, v1alpha1.ReasonInvalid, v1alpha1.EnforcedNone))

	want := []struct{ Type, Reason string }{
		{corev1.EventTypeWarning, v1alpha1.ReasonNoReplicas},
		{corev1.EventTypeWarning, status.ReasonNoConfigMaps},
		{corev1.EventTypeNormal, v1alpha1.ReasonEnforced},
		{corev1.EventTypeWarning, v1alpha1.ReasonInvalid},
	}
	// An Event is recorded after its status write, so the status can be seen first.
	var got []struct{ Type, Reason string }
	testenv.Eventually(t, waitTimeout, fmt.Sprintf("%d Events", len(want)), func() (bool, string) {
		got = got[:0]
		for _, e := range h.events.of(fp.Name) {
			got = append(got, struct{ Type, Reason string }{e.Type, e.Reason})
		}
		return len(got) >= len(want), fmt.Sprintf("%+v", got)
	})
	if !slices.Equal(got, want) {
		t.Errorf("Events %+v, want %+v", h.events.of(fp.Name), want)
	}

	testenv.Eventually(t, waitTimeout, "the Events to reach the API server", func() (bool, string) {
		var list eventsv1.EventList
		if err := h.api.List(context.Background(), &list, client.InNamespace(h.ns)); err != nil {
			return false, err.Error()
		}
		seen := map[string]string{}
		for _, e := range list.Items {
			if e.Regarding.Kind == "FriendPolicy" && e.Regarding.Name == fp.Name {
				seen[e.Reason] = e.Type
			}
		}
		for _, w := range want {
			if seen[w.Reason] != w.Type {
				return false, fmt.Sprintf("reasons seen: %v", seen)
			}
		}
		return true, ""
	})
}

// TestJoiningReplicaFlipsNoReady: a replica joins with the watermark of its first
// snapshot. The policies that snapshot holds stay Ready=True and are not even rewritten;
// a policy changed after it waits for the joiner too.
func TestJoiningReplicaFlipsNoReady(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.setReplica(live("pod-a", caughtUp))
	var unchanged []*v1alpha1.FriendPolicy
	snapshotAt := ""
	for _, name := range []string{"old-1", "old-2", "old-3"} {
		fp := h.waitFor(h.createPolicy(name, spammers).Name, ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll))
		unchanged = append(unchanged, fp)
		snapshotAt = fp.ResourceVersion
	}
	changed := h.waitFor(h.createPolicy("changed", spammers).Name, ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll))
	h.waitForSummary("pod-a")
	writes := h.recordWrites()

	// pod-b's first snapshot holds the old policies, not the changed one.
	h.setReplica(live("pod-b", snapshotAt))
	h.waitFor(changed.Name, ready(metav1.ConditionFalse, v1alpha1.ReasonPropagating, "1/2"), message("behind: pod-b"))
	h.waitForSummary("pod-a", "pod-b")
	h.setReplica(live("pod-b", caughtUp))
	h.waitFor(changed.Name, ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll))
	// A reconcile after the join finds nothing to write either.
	h.reconcileAll(unchanged...)

	for _, fp := range unchanged {
		if w := writes.of(fp.Name); len(w) > 0 {
			t.Errorf("%s, which pod-b's snapshot holds, was written %d times on the join: %v", fp.Name, len(w), w)
		}
	}
	// The watch that records writes may deliver the last one after the Get that saw it.
	testenv.Eventually(t, 10*time.Second, "the write log to see "+changed.Name+"'s writes", func() (bool, string) {
		w := writes.of(changed.Name)
		return slices.Equal(w, []string{"False/Propagating", "True/Enforced"}), fmt.Sprintf("writes %v, want Propagating then Enforced", w)
	})
}

// TestLeavingReplicaRewritesNoStatus: a replica leaving (its Lease deleted on SIGTERM)
// rewrites only the statuses of the policies that waited on it.
func TestLeavingReplicaRewritesNoStatus(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.setReplica(live("pod-a", caughtUp))
	var unchanged []*v1alpha1.FriendPolicy
	for _, name := range []string{"old-1", "old-2", "old-3"} {
		unchanged = append(unchanged, h.waitFor(h.createPolicy(name, spammers).Name,
			ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll)))
	}
	h.setReplica(live("pod-b", unchanged[len(unchanged)-1].ResourceVersion))
	h.waitForSummary("pod-a", "pod-b")
	// pod-b is stuck before this policy's creation.
	waiting := h.waitFor(h.createPolicy("waiting", spammers).Name,
		ready(metav1.ConditionFalse, v1alpha1.ReasonPropagating, "1/2"), message("behind: pod-b"))
	writes := h.recordWrites()

	h.deleteReplica("pod-b")
	h.waitFor(waiting.Name, ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll))
	h.waitForSummary("pod-a")
	// A policy created afterwards is reconciled after whatever the leave enqueued.
	h.waitFor(h.createPolicy("sentinel", spammers).Name, ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll))
	h.reconcileAll(unchanged...)

	for _, fp := range unchanged {
		if w := writes.of(fp.Name); len(w) > 0 {
			t.Errorf("%s, enforced everywhere, was written %d times on the leave: %v", fp.Name, len(w), w)
		}
	}
	if w := writes.of(waiting.Name); !slices.Equal(w, []string{"True/Enforced"}) {
		t.Errorf("writes of %s: %v, want one, to Enforced", waiting.Name, w)
	}
}

// TestChangedPolicyWaitsForEveryReplica: kubectl wait --for=condition=Ready on a changed
// policy returns only once every serving replica enforces the new generation.
func TestChangedPolicyWaitsForEveryReplica(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	fp := h.createPolicy("anti-spam", spammers)
	h.setReplica(live("pod-a", caughtUp))
	h.setReplica(live("pod-b", caughtUp))
	h.setReplica(live("pod-c", caughtUp))
	fp = h.waitFor(fp.Name, ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll))
	before := fp.ResourceVersion
	h.setReplica(live("pod-a", before))
	h.setReplica(live("pod-b", before))
	h.setReplica(live("pod-c", before))

	fp = h.updatePolicy(fp.Name, func(s *v1alpha1.FriendPolicySpec) { s.Blocklists[0].Users = []string{"spam_2"} })
	h.waitFor(fp.Name, ready(metav1.ConditionFalse, v1alpha1.ReasonPropagating, "0/3"), message("behind: pod-a, pod-b, pod-c"))
	h.setReplica(live("pod-a", fp.ResourceVersion))
	h.waitFor(fp.Name, ready(metav1.ConditionFalse, v1alpha1.ReasonPropagating, "1/3"), message("behind: pod-b, pod-c"))
	h.setReplica(live("pod-c", fp.ResourceVersion))
	h.waitFor(fp.Name, ready(metav1.ConditionFalse, v1alpha1.ReasonPropagating, "2/3"), message("behind: pod-b"))
	h.setReplica(live("pod-b", fp.ResourceVersion))
	h.waitFor(fp.Name, ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll),
		message("every serving webhook replica enforces generation 2"))
}
