package status

import (
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

// TestAffectedBy: an announcement of the replicas re-evaluates, from memory, only the
// policies whose status it can change.
func TestAffectedBy(t *testing.T) {
	var m seenGenerations
	for _, p := range []struct {
		name, readAt string
		awaiting     bool
	}{
		{"old", "10", false},
		{"newer", "20", false},
		{"propagating", "30", true},
	} {
		fp := &v1alpha1.FriendPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: p.name, UID: "u-" + types.UID(p.name), Generation: 1, ResourceVersion: p.readAt}}
		m.current(fp)
		m.setAwaiting(types.NamespacedName{Namespace: "team", Name: p.name}, p.awaiting)
	}
	two := map[string]string{"friendgate-webhook-a": "30", "friendgate-webhook-b": "25"}
	for _, tc := range []struct {
		name string
		c    Change
		want string
	}{
		{"a watermark moves forward", Change{Before: two, Now: map[string]string{"friendgate-webhook-a": "31", "friendgate-webhook-b": "25"}}, "propagating"},
		{"a replica leaves", Change{Before: two, Now: map[string]string{"friendgate-webhook-a": "30"}}, "propagating"},
		{"a caught-up replica joins", Change{Before: two, Now: map[string]string{"friendgate-webhook-a": "30", "friendgate-webhook-b": "25", "friendgate-webhook-c": "31"}}, "propagating"},
		{"a replica joins with a snapshot older than one policy", Change{Before: two, Now: map[string]string{"friendgate-webhook-a": "30", "friendgate-webhook-b": "25", "friendgate-webhook-c": "15"}}, "newer,propagating"},
		{"a replica restarts under its name, behind", Change{Before: two, Now: map[string]string{"friendgate-webhook-a": "30", "friendgate-webhook-b": "5"}}, "newer,old,propagating"},
		{"the last replica leaves", Change{Before: two, Now: map[string]string{}}, "newer,old,propagating"},
		{"the first replica joins", Change{Now: two, Initial: true}, "newer,old,propagating"},
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
	if got := m.affectedBy(Change{Before: two, Now: two}); len(got) != 0 {
		t.Errorf("after the propagating policy was deleted: re-evaluates %v, want none", got)
	}
}
