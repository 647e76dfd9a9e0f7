package policy

import (
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

// fp builds a FriendPolicy in namespace ns.
func fp(ns, name string, spec v1alpha1.FriendPolicySpec) *v1alpha1.FriendPolicy {
	return &v1alpha1.FriendPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 1}, Spec: spec}
}

func configMap(ns, name string, labels map[string]string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Data: data}
}

func mustBuild(t testing.TB, policies []*v1alpha1.FriendPolicy, cms ...*corev1.ConfigMap) *Snapshot {
	t.Helper()
	s, _, err := Build(policies, cms, Options{})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return s
}

// outcome renders a decision compactly: "allow", or "deny <Detail> <code>", plus
// "+dry <Detail>" for each DryRun verdict (Detail: ns/name/blocklist|rule/name) and
// "+limit <Detail>" for each limit the request counts against.
func outcome(d Decision) string {
	s := "allow"
	if d.Deny != nil {
		s = "deny " + d.Deny.Detail + " " + strconv.Itoa(int(d.Deny.Code))
	}
	for _, v := range d.WouldDeny {
		s += " +dry " + v.Detail
	}
	return s + limitsOutcome(d.Limits)
}

// limitsOutcome renders the limits of a decision as outcome does.
func limitsOutcome(limits []*Limit) string {
	s := ""
	for _, l := range limits {
		s += " +limit " + l.Verdict.Detail
	}
	return s
}
