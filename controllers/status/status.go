package status

import (
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/policy"
	"github.com/friendgate/friendgate/internal/propagation"
	"github.com/friendgate/friendgate/internal/text"
)

const (
	// maxMessage bounds the Ready message: enough for several field errors, short
	// enough for kubectl describe.
	maxMessage = 1024
	// maxBehind bounds the replica IDs a Propagating message names.
	maxBehind = 5
)

// reach is how far a policy's current generation has reached the live replicas.
type reach struct {
	live int
	// behind are the IDs of the live replicas that do not enforce it yet, sorted.
	behind []string
}

// reachOf counts the live replicas (sorted by ID) against the resourceVersion the
// policy's current generation was read at.
func reachOf(live []propagation.Status, since string) reach {
	p := reach{live: len(live)}
	for _, s := range live {
		if !s.Enforces(since) {
			p.behind = append(p.behind, s.ID)
		}
	}
	return p
}

func (p reach) enforced() int { return p.live - len(p.behind) }

// limitsCounting is how the live replicas count limits.
type limitsCounting struct {
	live int
	// alone are the live replicas that count in their own memory or do not say how they
	// count (propagation.Counting.Alone); unknown are those that do not say.
	alone, unknown int
}

// countingOf tallies how the replicas count limits.
func countingOf(replicas iter.Seq[propagation.Counting]) limitsCounting {
	var c limitsCounting
	for counting := range replicas {
		c.live++
		if counting.Alone() {
			c.alone++
		}
		if counting == propagation.CountingUnknown {
			c.unknown++
		}
	}
	return c
}

// liveCounting is how the live replicas count limits.
func liveCounting(live []propagation.Status) iter.Seq[propagation.Counting] {
	return func(yield func(propagation.Counting) bool) {
		for _, s := range live {
			if !yield(s.LimitsCounting) {
				return
			}
		}
	}
}

// counters is how many separate counts the replicas keep of a sender: one shared by those
// counting through Redis, and one for each replica counting alone.
func (c limitsCounting) counters() int {
	if c.live > c.alone {
		return c.alone + 1
	}
	return c.alone
}

// describeLimitsCounting gives the LimitsShared condition's status, reason and message (the
// rest is the caller's) and the matching status.limitsCounting. Only a split count's
// message names replica counts, as only a Propagating Ready does: a policy whose limits
// every replica counts through Redis is not rewritten when replicas join or leave.
func describeLimitsCounting(c limitsCounting) (cond metav1.Condition, value string) {
	switch {
	case c.live == 0:
		return metav1.Condition{Status: metav1.ConditionUnknown, Reason: v1alpha1.ReasonNoReplicas,
			Message: "no webhook replica serves: limits are counted nowhere"}, v1alpha1.LimitsCountingNone
	case c.alone == 0:
		return metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonShared,
			Message: "every serving webhook replica counts limits through Redis, together"}, v1alpha1.LimitsCountingShared
	case c.live == 1:
		return metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSingleReplica,
			Message: "one webhook replica serves and counts limits alone: its counts are complete, " +
				"until it restarts or a second replica serves without Redis"}, v1alpha1.LimitsCountingSingleReplica
	}
	msg := fmt.Sprintf("%d of %d serving webhook replicas count limits alone (no Redis, or Redis failing): "+
		"counts are split %d ways, so a sender may get up to %d times each limit", c.alone, c.live, c.counters(), c.counters())
	if c.unknown > 0 {
		msg += fmt.Sprintf("; %d of them do not say how they count (a version older than the %s annotation)",
			c.unknown, propagation.LimitsCountingAnnotation)
	}
	return metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonCountedPerReplica, Message: msg},
		v1alpha1.LimitsCountingPerReplica
}

// compileResult is the outcome of compiling a policy with its ConfigMap lists.
type compileResult struct {
	compiled *policy.Compiled
	err      error
	// reason is Invalid or ListError when err is set.
	reason string
}

// classify tells a spec that does not compile (Invalid) from lists that cannot be used
// (ListError), as the engine's CompileError says; any other error counts as Invalid.
func classify(compiled *policy.Compiled, err error) compileResult {
	if err == nil {
		return compileResult{compiled: compiled}
	}
	if ce, ok := errors.AsType[*policy.CompileError](err); ok {
		return compileResult{err: err, reason: ce.Reason}
	}
	return compileResult{err: err, reason: v1alpha1.ReasonInvalid}
}

// desiredStatus is the status fp should have. Conditions other than Ready, Stalled and
// LimitsShared are kept, and a condition's lastTransitionTime only moves when its status
// changes.
//
// Only a Propagating status names replica counts: the status of a policy that every
// serving replica enforces, or that no replica can enforce, does not change when replicas
// join or leave, so it is not rewritten then.
func desiredStatus(fp *v1alpha1.FriendPolicy, res compileResult, p reach, lc limitsCounting, leaseNamespace string, now time.Time) v1alpha1.FriendPolicyStatus {
	st := v1alpha1.FriendPolicyStatus{
		ObservedGeneration: fp.Generation,
		Conditions:         slices.Clone(fp.Status.Conditions),
		Enforced:           v1alpha1.EnforcedNone,
	}
	ready := metav1.Condition{
		Type:               v1alpha1.ConditionReady,
		Status:             metav1.ConditionFalse,
		ObservedGeneration: fp.Generation,
		LastTransitionTime: metav1.NewTime(now),
	}
	if res.err != nil {
		// Replicas leave a policy that does not compile out of their snapshots: none enforces it.
		ready.Reason = res.reason
		ready.Message = describeFailure(res)
	} else {
		c := res.compiled
		st.Rules = int32(c.Rules)
		st.Limits = int32(len(c.Limits))
		st.BlocklistEntries = c.BlocklistEntries
		st.ConfigMaps = c.ConfigMaps[:min(len(c.ConfigMaps), v1alpha1.MaxStatusConfigMaps)]
		ready.Reason, ready.Message = describePropagation(fp.Generation, p, leaseNamespace)
		switch ready.Reason {
		case v1alpha1.ReasonEnforced:
			ready.Status = metav1.ConditionTrue
			st.Enforced = v1alpha1.EnforcedAll
		case v1alpha1.ReasonPropagating:
			st.Enforced = fmt.Sprintf("%d/%d", p.enforced(), p.live)
		}
	}
	meta.SetStatusCondition(&st.Conditions, ready)
	if res.err != nil {
		stalled := ready
		stalled.Type, stalled.Status = v1alpha1.ConditionStalled, metav1.ConditionTrue
		meta.SetStatusCondition(&st.Conditions, stalled)
	} else {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionStalled)
	}
	// A policy that does not compile has no limits in force: st.Limits is 0.
	if st.Limits > 0 {
		var limits metav1.Condition
		limits, st.LimitsCounting = describeLimitsCounting(lc)
		limits.Type, limits.ObservedGeneration, limits.LastTransitionTime = v1alpha1.ConditionLimitsShared, fp.Generation, metav1.NewTime(now)
		meta.SetStatusCondition(&st.Conditions, limits)
	} else {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionLimitsShared)
	}
	return st
}

// describePropagation gives Ready's reason and message. The Enforced message names no
// count, so that it stays the same whichever replicas serve.
func describePropagation(generation int64, p reach, leaseNamespace string) (reason, message string) {
	if p.live == 0 {
		return v1alpha1.ReasonNoReplicas, fmt.Sprintf(
			"no webhook replica serves (no live replica Lease in namespace %q): generation %d is enforced nowhere", leaseNamespace, generation)
	}
	if len(p.behind) == 0 {
		return v1alpha1.ReasonEnforced, fmt.Sprintf("every serving webhook replica enforces generation %d", generation)
	}
	behind := strings.Join(p.behind[:min(len(p.behind), maxBehind)], ", ")
	if more := len(p.behind) - maxBehind; more > 0 {
		behind += fmt.Sprintf(" and %d more", more)
	}
	return v1alpha1.ReasonPropagating, fmt.Sprintf("%d/%d serving webhook replicas enforce generation %d; behind: %s", p.enforced(), p.live, generation, behind)
}

func describeFailure(res compileResult) string {
	prefix := "the spec does not compile: "
	if res.reason == v1alpha1.ReasonListError {
		prefix = "a ConfigMap list cannot be used: "
	}
	return text.Truncate(prefix+fieldErrors(res.err), maxMessage)
}

// fieldErrors lists the field errors of an Invalid error as "path: reason; ...", without
// the "FriendPolicy ... is invalid" preamble the condition's reason already says.
func fieldErrors(err error) string {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return err.Error()
	}
	details := status.Status().Details
	if details == nil || len(details.Causes) == 0 {
		return err.Error()
	}
	msgs := make([]string, len(details.Causes))
	for i, c := range details.Causes {
		msgs[i] = c.Field + ": " + c.Message
	}
	return strings.Join(msgs, "; ")
}
