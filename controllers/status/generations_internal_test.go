package status

import (
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/propagation"
)

// replicas builds the Now or Before of a Change from "id:watermark[:counting]" (counting
// defaults to Shared), with Lease names.
func replicas(specs ...string) map[string]Served {
	m := map[string]Served{}
	for _, spec := range specs {
		parts := strings.Split(spec, ":")
		s := Served{Watermark: parts[1], LimitsCounting: propagation.CountingShared}
		if len(parts) > 2 {
			s.LimitsCounting = propagation.Counting(parts[2])
		}
		m[propagation.LeaseName(parts[0])] = s
	}
	return m
}

// TestAffectedBy: an announcement of the replicas re-evaluates, from memory, only the
// policies whose status it can change.
func TestAffectedBy(t *testing.T) {
	var m seenGenerations
	for _, p := range []struct {
		name, readAt string
		awaiting     bool
		limits       bool
	}{
		{"old", "10", false, false},
		{"newer", "20", false, false},
		{"propagating", "30", true, false},
		{"limited", "1", false, true},
	} {
		fp := &v1alpha1.FriendPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: p.name, UID: "u-" + types.UID(p.name), Generation: 1, ResourceVersion: p.readAt}}
		m.current(fp)
		m.setAwaiting(types.NamespacedName{Namespace: "team", Name: p.name}, p.awaiting)
		m.setHasLimits(types.NamespacedName{Namespace: "team", Name: p.name}, p.limits)
	}
	two := replicas("a:30", "b:25")
	twoAlone := replicas("a:30:Local", "b:25:Local")
	for _, tc := range []struct {
		name string
		c    Change
		want string
	}{
		{"a watermark moves forward", Change{Before: two, Now: replicas("a:31", "b:25")}, "propagating"},
		{"a replica leaves", Change{Before: two, Now: replicas("a:30")}, "propagating"},
		{"a caught-up replica joins", Change{Before: two, Now: replicas("a:30", "b:25", "c:31")}, "propagating"},
		{"a replica joins with a snapshot older than one policy", Change{Before: two, Now: replicas("a:30", "b:25", "c:15")}, "newer,propagating"},
		{"a replica restarts under its name, behind", Change{Before: two, Now: replicas("a:30", "b:5")}, "newer,old,propagating"},
		{"the last replica leaves", Change{Before: two, Now: replicas()}, "limited,newer,old,propagating"},
		{"the first replica joins", Change{Now: two, Initial: true}, "limited,newer,old,propagating"},

		{"a replica's Redis fails", Change{Before: two, Now: replicas("a:30:Local", "b:25")}, "limited,propagating"},
		{"Redis answers again", Change{Before: twoAlone, Now: two}, "limited,propagating"},
		{"one of two counting alone leaves: a single replica", Change{Before: twoAlone, Now: replicas("a:30:Local")}, "limited,propagating"},
		{"a third replica counting alone joins: the count in the message", Change{Before: twoAlone, Now: replicas("a:30:Local", "b:25:Local", "c:31:Local")}, "limited,propagating"},
		{"a replica that does not say joins", Change{Before: two, Now: replicas("a:30", "b:25", "c:31:")}, "limited,propagating"},
		{"which replica counts alone changes, not how many", Change{Before: replicas("a:30:Local", "b:25", "c:31"), Now: replicas("a:30", "b:25:Local", "c:31")}, "propagating"},
		{"a replica counting through Redis joins others that do", Change{Before: two, Now: replicas("a:30", "b:25", "c:31")}, "propagating"},
	} {
		var got []string
		for _, key := range m.affectedBy(tc.c) {
			got = append(got, key.Name)
		}
		slices.Sort(got)
		if strings.Join(got, ",") != tc.want {
			t.Errorf("%s: re-evaluates %v, want %s", tc.name, got, tc.want)
		}
	}

	m.forget(types.NamespacedName{Namespace: "team", Name: "propagating"})
	m.forget(types.NamespacedName{Namespace: "team", Name: "limited"})
	if got := m.affectedBy(Change{Before: two, Now: twoAlone}); len(got) != 0 {
		t.Errorf("after the propagating and limited policies were deleted: re-evaluates %v, want none", got)
	}
}
