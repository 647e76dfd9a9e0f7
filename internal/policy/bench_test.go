package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

// benchPolicy is a realistic policy: exemptions, a blocklist with users, prefixes and a
// pattern, a wording rule, a platform/source rule and a CEL rule.
func benchPolicy(name string, appIDs []string, priority int32) *v1alpha1.FriendPolicy {
	users := make([]string, 50)
	for i := range users {
		users[i] = fmt.Sprintf("%s_spam_%d", name, i)
	}
	return fp("bench", name, v1alpha1.FriendPolicySpec{
		AppIDs:     appIDs,
		Priority:   priority,
		Exemptions: &v1alpha1.Exemptions{Users: []string{"support_1"}, Prefixes: []string{"staff_"}},
		Blocklists: []v1alpha1.Blocklist{{Name: "spammers", Users: users, Prefixes: []string{"bot_", "spam_"}, Patterns: []string{`^[0-9]{11}$`}}},
		Rules: []v1alpha1.Rule{
			{Name: "no-links", Events: []v1alpha1.Event{"FriendRequest"}, WordingPatterns: []string{`https?://`, `(?i)www\.`}},
			{Name: "web-search", Platforms: []string{"Web"}, AddSources: []string{"AddSource_Type_Search"}},
			{Name: "guests", When: "request.from.startsWith('guest_') && !request.forceAdd"},
		},
	})
}

// allowedRequest's appID belongs to tenant-1, which every BenchmarkDecide size has.
var allowedRequest = Request{
	Event: "FriendRequest", AppID: "app-1", From: "alice_12345", To: "bob_67890",
	Wording: "hello, we met at the conference yesterday", Platform: "Android",
	AddSource: "AddSource_Type_QR", ClientIP: "198.51.100.7",
}

// BenchmarkDecide measures one decision against snapshots of growing size. Policies are
// scoped to their own appID (as in a multi-tenant install) plus three global policies, so
// the index keeps the candidates at four whatever the total. The request is allowed, the
// worst case: every candidate runs every check.
func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{10, 1_000, 10_000} {
		policies := []*v1alpha1.FriendPolicy{
			benchPolicy("global-a", nil, 10), benchPolicy("global-b", nil, 5), benchPolicy("global-c", nil, 0),
		}
		for i := range n - len(policies) {
			policies = append(policies, benchPolicy("tenant-"+strconv.Itoa(i), []string{"app-" + strconv.Itoa(i)}, 1))
		}
		s := mustBuild(b, policies)
		if got := candidates(s, &allowedRequest); got != 4 {
			b.Fatalf("policies=%d: the request has %d candidates, want exactly 4", n, got)
		}
		b.Run(fmt.Sprintf("policies=%d/allow", n), func(b *testing.B) {
			benchDecide(b, s, allowedRequest, false)
		})
		deny := allowedRequest
		deny.Wording = "visit https://spam.example"
		b.Run(fmt.Sprintf("policies=%d/deny-wording", n), func(b *testing.B) {
			benchDecide(b, s, deny, true)
		})
	}
}

// BenchmarkDecideGlobalPolicies shows the cost when every policy applies to every request:
// it grows with the number of candidates, as it must.
func BenchmarkDecideGlobalPolicies(b *testing.B) {
	for _, n := range []int{10, 100} {
		var policies []*v1alpha1.FriendPolicy
		for i := range n {
			policies = append(policies, benchPolicy("global-"+strconv.Itoa(i), nil, 0))
		}
		s := mustBuild(b, policies)
		b.Run(fmt.Sprintf("policies=%d/allow", n), func(b *testing.B) {
			benchDecide(b, s, allowedRequest, false)
		})
	}
}

// BenchmarkDecideLargeBlocklist looks users up in a 1,000,000-entry list read from ConfigMaps.
func BenchmarkDecideLargeBlocklist(b *testing.B) {
	const entries = 1_000_000
	const perConfigMap = 100_000
	var cms []*corev1.ConfigMap
	for part := 0; part < entries/perConfigMap; part++ {
		var sb strings.Builder
		for i := part * perConfigMap; i < (part+1)*perConfigMap; i++ {
			sb.WriteString("user_")
			sb.WriteString(strconv.Itoa(i))
			sb.WriteByte('\n')
		}
		cms = append(cms, configMap("bench", "list-"+strconv.Itoa(part), map[string]string{v1alpha1.LabelList: "big"}, map[string]string{"users.txt": sb.String()}))
	}
	p := fp("bench", "big", v1alpha1.FriendPolicySpec{Blocklists: []v1alpha1.Blocklist{{
		Name: "big", ConfigMapSelector: &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.LabelList: "big"}},
	}}})
	s := mustBuild(b, []*v1alpha1.FriendPolicy{p}, cms...)
	hit := Request{Event: "FriendRequest", From: "alice", To: "user_765432"}
	miss := Request{Event: "FriendRequest", From: "alice", To: "user_x765432"}
	b.Run("entries=1000000/hit", func(b *testing.B) { benchDecide(b, s, hit, true) })
	b.Run("entries=1000000/miss", func(b *testing.B) { benchDecide(b, s, miss, false) })
}

func benchDecide(b *testing.B, s *Snapshot, req Request, wantDeny bool) {
	if d := s.Decide(&req); (d.Deny != nil) != wantDeny || len(d.Errors) > 0 {
		b.Fatalf("unexpected decision %+v", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Decide(&req)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

// candidates counts the policies that apply to r's event and appID.
func candidates(s *Snapshot, r *Request) int {
	n := 0
	for _, c := range s.Policies() {
		if c.events&(1<<eventIndex(r.Event)) != 0 && (len(c.appIDs) == 0 || slices.Contains(c.appIDs, r.AppID)) {
			n++
		}
	}
	return n
}
