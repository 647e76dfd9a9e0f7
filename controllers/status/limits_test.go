package status_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/propagation"
	"github.com/friendgate/friendgate/internal/testenv"
)

// limited is a policy with one limit.
var limited = v1alpha1.FriendPolicySpec{Limits: []v1alpha1.Limit{{
	Name: "per-sender", Key: v1alpha1.LimitKeyFrom, Limit: 20, Window: metav1.Duration{Duration: time.Hour},
}}}

const (
	sharedMessage = "every serving webhook replica counts limits through Redis, together"
	singleMessage = "one webhook replica serves and counts limits alone: its counts are complete, " +
		"until it restarts or a second replica serves without Redis"
)

func splitMessage(alone, live, ways int) string {
	return fmt.Sprintf("%d of %d serving webhook replicas count limits alone (no Redis, or Redis failing): "+
		"counts are split %d ways, so a sender may get up to %d times each limit", alone, live, ways, ways)
}

// TestLimitsShared: a policy with limits says whether the serving replicas, as their
// Leases say, count them together.
func TestLimitsShared(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		spec     v1alpha1.FriendPolicySpec
		replicas []fakeReplica
		// want; cond "" expects no LimitsShared condition
		cond     metav1.ConditionStatus
		reason   string
		counting string
		message  string
	}{{
		name:     "two replicas count in memory",
		spec:     limited,
		replicas: []fakeReplica{counting("pod-a", propagation.CountingLocal), counting("pod-b", propagation.CountingLocal)},
		cond:     metav1.ConditionFalse, reason: v1alpha1.ReasonCountedPerReplica, counting: v1alpha1.LimitsCountingPerReplica,
		message: splitMessage(2, 2, 2),
	}, {
		name:     "both count through Redis",
		spec:     limited,
		replicas: []fakeReplica{counting("pod-a", propagation.CountingShared), counting("pod-b", propagation.CountingShared)},
		cond:     metav1.ConditionTrue, reason: v1alpha1.ReasonShared, counting: v1alpha1.LimitsCountingShared,
		message: sharedMessage,
	}, {
		name:     "one replica, in memory",
		spec:     limited,
		replicas: []fakeReplica{counting("pod-a", propagation.CountingLocal)},
		cond:     metav1.ConditionTrue, reason: v1alpha1.ReasonSingleReplica, counting: v1alpha1.LimitsCountingSingleReplica,
		message: singleMessage,
	}, {
		name:     "an older replica that does not say, beside one through Redis",
		spec:     limited,
		replicas: []fakeReplica{counting("pod-a", propagation.CountingShared), live("pod-b", caughtUp)},
		cond:     metav1.ConditionFalse, reason: v1alpha1.ReasonCountedPerReplica, counting: v1alpha1.LimitsCountingPerReplica,
		message: splitMessage(1, 2, 2) + "; 1 of them do not say how they count (a version older than the friendgate.io/limits-counting annotation)",
	}, {
		name:     "a policy without limits",
		spec:     spammers,
		replicas: []fakeReplica{counting("pod-a", propagation.CountingLocal), counting("pod-b", propagation.CountingLocal)},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			for _, r := range tc.replicas {
				h.setReplica(r)
			}
			want := []expectation{ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll), limitsShared(tc.cond, tc.reason, tc.counting)}
			if tc.message != "" {
				want = append(want, limitsMessage(tc.message))
			}
			h.waitFor(h.createPolicy("anti-spam", tc.spec).Name, want...)
		})
	}
}

// TestLimitsSharedFollowsReplicas: a replica whose Redis fails or answers again, joins or
// leaves, re-evaluates the policies with limits, and only those; the transitions to and
// from counting per replica are Events, and the summary names the replicas counting alone.
func TestLimitsSharedFollowsReplicas(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.setReplica(counting("pod-a", propagation.CountingShared))
	h.setReplica(counting("pod-b", propagation.CountingShared))
	fp := h.waitFor(h.createPolicy("limited", limited).Name, ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll),
		limitsShared(metav1.ConditionTrue, v1alpha1.ReasonShared, v1alpha1.LimitsCountingShared))
	plain := h.waitFor(h.createPolicy("plain", spammers).Name, ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll))
	h.waitForCountingAlone()
	writes := h.recordWrites()

	perReplica := limitsShared(metav1.ConditionFalse, v1alpha1.ReasonCountedPerReplica, v1alpha1.LimitsCountingPerReplica)
	for _, step := range []struct {
		name  string
		apply func()
		want  []expectation
		alone []string
	}{{
		name:  "pod-a's Redis fails",
		apply: func() { h.setReplica(counting("pod-a", propagation.CountingLocal)) },
		want:  []expectation{perReplica, limitsMessage(splitMessage(1, 2, 2))},
		alone: []string{"pod-a"},
	}, {
		name:  "pod-b's fails too",
		apply: func() { h.setReplica(counting("pod-b", propagation.CountingLocal)) },
		want:  []expectation{perReplica, limitsMessage(splitMessage(2, 2, 2))},
		alone: []string{"pod-a", "pod-b"},
	}, {
		name:  "pod-b leaves",
		apply: func() { h.deleteReplica("pod-b") },
		want:  []expectation{limitsShared(metav1.ConditionTrue, v1alpha1.ReasonSingleReplica, v1alpha1.LimitsCountingSingleReplica)},
		alone: []string{"pod-a"},
	}, {
		name:  "pod-b comes back through Redis",
		apply: func() { h.setReplica(counting("pod-b", propagation.CountingShared)) },
		want:  []expectation{perReplica, limitsMessage(splitMessage(1, 2, 2))},
		alone: []string{"pod-a"},
	}, {
		name:  "pod-a's Redis answers again",
		apply: func() { h.setReplica(counting("pod-a", propagation.CountingShared)) },
		want:  []expectation{limitsShared(metav1.ConditionTrue, v1alpha1.ReasonShared, v1alpha1.LimitsCountingShared), limitsMessage(sharedMessage)},
		alone: nil,
	}} {
		step.apply()
		h.waitFor(fp.Name, step.want...)
		h.waitForCountingAlone(step.alone...)
	}
	// A policy created afterwards is reconciled after whatever the last change enqueued.
	h.waitFor(h.createPolicy("sentinel", spammers).Name, ready(metav1.ConditionTrue, v1alpha1.ReasonEnforced, v1alpha1.EnforcedAll))

	if w := writes.of(plain.Name); len(w) > 0 {
		t.Errorf("%s, without limits, was written %d times as replicas changed how they count: %v", plain.Name, len(w), w)
	}
	type event struct{ Type, Reason string }
	want := []event{
		{corev1.EventTypeWarning, v1alpha1.ReasonCountedPerReplica},
		{corev1.EventTypeNormal, v1alpha1.ReasonSingleReplica},
		{corev1.EventTypeWarning, v1alpha1.ReasonCountedPerReplica},
		{corev1.EventTypeNormal, v1alpha1.ReasonShared},
	}
	// An Event is recorded after its status write, so the status can be seen first.
	var got []event
	testenv.Eventually(t, waitTimeout, fmt.Sprintf("%d LimitsShared Events", len(want)), func() (bool, string) {
		got = got[:0]
		for _, e := range h.events.of(fp.Name) {
			if e.Reason != v1alpha1.ReasonEnforced {
				got = append(got, event{e.Type, e.Reason})
			}
		}
		return len(got) >= len(want), fmt.Sprintf("%+v", got)
	})
	if !slices.Equal(got, want) {
		t.Errorf("Events %+v, want %+v", h.events.of(fp.Name), want)
	}
}
