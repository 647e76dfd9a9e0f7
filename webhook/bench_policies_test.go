package webhook

import (
	"bytes"
	"net/http"
	"strconv"
	"syscall"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/policy"
)

// BenchmarkHandlerGlobalPolicies is BenchmarkHandler's single-goroutine cases with the
// webhook tests' three policies, then with 1,000 more that apply to every request, each
// with its own users, prefix, whole-ID pattern, wording pattern and CEL guard (as
// BenchmarkDecideGlobalPolicies in internal/policy): the decision must not dominate the
// callback's cost. cpu-ns/op is the process's CPU time per callback.
func BenchmarkHandlerGlobalPolicies(b *testing.B) {
	policies := testPolicies()
	for i := range 1_000 {
		id := strconv.Itoa(i)
		policies = append(policies, &v1alpha1.FriendPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "global-" + id},
			Spec: v1alpha1.FriendPolicySpec{
				Blocklists: []v1alpha1.Blocklist{{
					Name: "spammers", Users: []string{"spammer_" + id + "_1", "spammer_" + id + "_2"},
					Prefixes: []string{"bot" + id + "_"}, Patterns: []string{`camp` + id + `_[0-9]+`},
				}},
				Rules: []v1alpha1.Rule{
					{Name: "links", WordingPatterns: []string{`promo` + id + `\.example`}},
					{Name: "guests", When: "request.from.startsWith('guest" + id + "_') && !request.forceAdd"},
				},
			},
		})
	}
	for _, set := range []struct {
		name     string
		policies []*v1alpha1.FriendPolicy
	}{{"policies=3", testPolicies()}, {"policies=1003", policies}} {
		snap, _, err := policy.Build(set.policies, nil, policy.Options{})
		if err != nil {
			b.Fatal(err)
		}
		s := newTestServer(b, Options{}, false)
		s.store.Set(snap)
		for _, bc := range benchCases {
			check := s.do(http.MethodPost, bc.target, bc.body)
			if check.Code != 200 || bytes.Contains(check.Body.Bytes(), []byte(`38`)) != bc.deny {
				b.Fatalf("%s: unexpected answer %d %s", bc.name, check.Code, check.Body)
			}
			b.Run(set.name+"/"+bc.name, func(b *testing.B) { serveBench(b, s.handler, bc.target, bc.body) })
		}
	}
}

// processCPU is the CPU time the process has used, in nanoseconds: on a shared machine,
// wall time also counts the time other processes held the core.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
