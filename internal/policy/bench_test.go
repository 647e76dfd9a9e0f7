package policy

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/friendgate/friendgate/internal/keywords/keywordstest"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/velocity"
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
		if got := countCandidates(s, &allowedRequest); got != 4 {
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

// benchLimits are three limits a policy might hold: per sender, per client address, per pair.
var benchLimits = []v1alpha1.Limit{
	{Name: "per-sender", Key: v1alpha1.LimitKeyFrom, Limit: 20, Window: metav1.Duration{Duration: time.Hour}},
	{Name: "per-address", Key: v1alpha1.LimitKeyClientIP, Limit: 200, Window: metav1.Duration{Duration: time.Hour}},
	{Name: "per-pair", Key: v1alpha1.LimitKeyFromTo, Limit: 3, Window: metav1.Duration{Duration: 24 * time.Hour}},
}

// BenchmarkDecideLimits measures what limits add to a decision: BenchmarkDecide's 10,000
// policies (four candidates per request), without limits and with benchLimits in every
// policy. The engine only lists the limits that apply; counting is the caller's.
func BenchmarkDecideLimits(b *testing.B) {
	const n = 10_000
	for _, limits := range [][]v1alpha1.Limit{nil, benchLimits} {
		policies := []*v1alpha1.FriendPolicy{
			benchPolicy("global-a", nil, 10), benchPolicy("global-b", nil, 5), benchPolicy("global-c", nil, 0),
		}
		for i := range n - len(policies) {
			policies = append(policies, benchPolicy("tenant-"+strconv.Itoa(i), []string{"app-" + strconv.Itoa(i)}, 1))
		}
		for _, p := range policies {
			p.Spec.Limits = limits
		}
		s := mustBuild(b, policies)
		openIM := allowedRequest
		openIM.ClientIP = ""
		for _, tt := range []struct {
			name string
			req  Request
			want int
		}{
			{"allow", allowedRequest, 4 * len(limits)},
			{"allow-no-client-ip", openIM, 4 * (len(limits) * 2 / 3)},
		} {
			if got := len(s.Decide(&tt.req).Limits); got != tt.want {
				b.Fatalf("%s: %d limits apply, want %d", tt.name, got, tt.want)
			}
			b.Run(fmt.Sprintf("limits=%d/%s", tt.want, tt.name), func(b *testing.B) {
				benchDecide(b, s, tt.req, false)
			})
		}
	}
}

// globalPolicy is policy i of BenchmarkDecideGlobalPolicies: no appIDs, so it applies to
// every request, and everything in it is its own: users, a prefix, a whole-ID pattern with
// a literal part, wording literals, the constant of a CEL guard. One rule (web + search)
// is the same in every policy, as a shared baseline rule would be.
func globalPolicy(i int) *v1alpha1.FriendPolicy {
	id := strconv.Itoa(i)
	users := make([]string, 20)
	for j := range users {
		users[j] = "spammer_" + id + "_" + strconv.Itoa(j)
	}
	return fp("bench", "global-"+id, v1alpha1.FriendPolicySpec{
		Priority:   int32(i % 7),
		Exemptions: &v1alpha1.Exemptions{Users: []string{"support_" + id}, Prefixes: []string{"staff" + id + "_"}},
		Blocklists: []v1alpha1.Blocklist{{
			Name: "spammers", Users: users, Prefixes: []string{"bot" + id + "_"}, Patterns: []string{`camp` + id + `_[0-9]+`},
		}},
		Rules: []v1alpha1.Rule{
			{Name: "links", Events: []v1alpha1.Event{"FriendRequest"}, WordingPatterns: []string{`promo` + id + `\.example`, `(?i)code-` + id + `-[0-9]+`}},
			{Name: "web-search", Platforms: []string{"Web"}, AddSources: []string{"AddSource_Type_Search"}},
			{Name: "guests", When: "request.from.startsWith('guest" + id + "_') && !request.forceAdd"},
		},
	})
}

// BenchmarkDecideGlobalPolicies measures a decision when every policy applies to every
// request, at growing numbers of policies that differ from one another. allow matches
// nothing, so its cost must not follow the number of policies; the deny cases are refused
// by the policy in the middle of the decision order's input (i = n/2).
func BenchmarkDecideGlobalPolicies(b *testing.B) {
	for _, n := range []int{10, 100, 1_000, 10_000} {
		policies := make([]*v1alpha1.FriendPolicy, n)
		for i := range policies {
			policies[i] = globalPolicy(i)
		}
		s := mustBuild(b, policies)
		if got := countCandidates(s, &allowedRequest); got != n {
			b.Fatalf("policies=%d: the request has %d candidates, want all", n, got)
		}
		mid := strconv.Itoa(n / 2)
		b.Run(fmt.Sprintf("policies=%d/allow", n), func(b *testing.B) {
			benchDecide(b, s, allowedRequest, false)
		})
		user := allowedRequest
		user.To = "spammer_" + mid + "_7"
		b.Run(fmt.Sprintf("policies=%d/deny-user", n), func(b *testing.B) {
			benchDecide(b, s, user, true)
		})
		pattern := allowedRequest
		pattern.From = "camp" + mid + "_2024"
		b.Run(fmt.Sprintf("policies=%d/deny-pattern", n), func(b *testing.B) {
			benchDecide(b, s, pattern, true)
		})
		wording := allowedRequest
		wording.Wording = "get CODE-" + mid + "-77 at promo" + mid + ".example now"
		b.Run(fmt.Sprintf("policies=%d/deny-wording", n), func(b *testing.B) {
			benchDecide(b, s, wording, true)
		})
		guest := allowedRequest
		guest.From = "guest" + mid + "_1"
		b.Run(fmt.Sprintf("policies=%d/deny-when", n), func(b *testing.B) {
			benchDecide(b, s, guest, true)
		})
	}
}

// largeList is a 1,000,000-entry list in ten ConfigMaps of 100,000 user IDs each (the way
// a list outgrows the 1 MiB object limit), and a policy that selects it.
func largeList() (*v1alpha1.FriendPolicy, []*corev1.ConfigMap) {
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
		cm := configMap("bench", "list-"+strconv.Itoa(part), map[string]string{v1alpha1.LabelList: "big"}, map[string]string{"users.txt": sb.String()})
		cm.ResourceVersion = "1"
		cms = append(cms, cm)
	}
	p := fp("bench", "big", v1alpha1.FriendPolicySpec{Blocklists: []v1alpha1.Blocklist{{
		Name: "big", ConfigMapSelector: &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.LabelList: "big"}},
	}}})
	return p, cms
}

// BenchmarkDecideLargeBlocklist looks users up in a 1,000,000-entry list read from ConfigMaps.
func BenchmarkDecideLargeBlocklist(b *testing.B) {
	p, cms := largeList()
	s := mustBuild(b, []*v1alpha1.FriendPolicy{p}, cms...)
	hit := Request{Event: "FriendRequest", From: "alice", To: "user_765432"}
	miss := Request{Event: "FriendRequest", From: "alice", To: "user_x765432"}
	b.Run("entries=1000000/hit", func(b *testing.B) { benchDecide(b, s, hit, true) })
	b.Run("entries=1000000/miss", func(b *testing.B) { benchDecide(b, s, miss, false) })
}

// BenchmarkLargeBlocklistMemory reports what a compiled 1,000,000-entry list keeps on the
// heap per entry beyond the ConfigMaps' data (which the informer holds anyway): list-B/entry.
// data-B/entry is the ConfigMaps' data itself.
func BenchmarkLargeBlocklistMemory(b *testing.B) {
	p, cms := largeList()
	data := 0
	for _, cm := range cms {
		data += len(cm.Data["users.txt"])
	}
	for b.Loop() {
		before := liveHeap()
		c, err := Compile(p, cms, Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(liveHeap()-before)/float64(c.BlocklistEntries), "list-B/entry")
		b.ReportMetric(float64(data)/float64(c.BlocklistEntries), "data-B/entry")
		runtime.KeepAlive(c)
	}
}

func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

func benchDecide(b *testing.B, s *Snapshot, req Request, wantDeny bool) {
	if d := s.Decide(&req); (d.Deny != nil) != wantDeny || len(d.Errors) > 0 {
		b.Fatalf("unexpected decision %+v", d)
	}
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		s.Decide(&req)
	}
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

// processCPU is the CPU time the process has used, in nanoseconds. On a shared machine
// wall time also counts the time other processes held the core; CPU time does not.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// countCandidates counts the policies that apply to r's event and appID.
func countCandidates(s *Snapshot, r *Request) int {
	n := 0
	for _, c := range s.Policies() {
		if c.events&(1<<eventIndex(r.Event)) != 0 && (len(c.appIDs) == 0 || slices.Contains(c.appIDs, r.AppID)) {
			n++
		}
	}
	return n
}

// BenchmarkBuildScopedPolicies builds a snapshot of 10,000 policies, each scoped to its own
// appID with a small blocklist, a wording rule and a CEL rule, as a multi-tenant install
// generated from one template has: the expressions are the same in every policy. It
// reports the live heap the snapshot keeps per policy.
func BenchmarkBuildScopedPolicies(b *testing.B) {
	const n = 10_000
	policies := make([]*v1alpha1.FriendPolicy, n)
	for i := range policies {
		id := strconv.Itoa(i)
		policies[i] = fp("tenant-"+id, "anti-spam", v1alpha1.FriendPolicySpec{
			AppIDs:     []string{"app-" + id},
			Blocklists: []v1alpha1.Blocklist{{Name: "spammers", Users: []string{"spam_" + id + "_1", "spam_" + id + "_2", "spam_" + id + "_3"}, Prefixes: []string{"bot_"}}},
			Rules: []v1alpha1.Rule{
				{Name: "no-links", WordingPatterns: []string{`https?://`, `(?i)www\.`}},
				{Name: "guests", When: "request.from.startsWith('guest_') && !request.forceAdd"},
			},
		})
	}
	benchBuild(b, policies)
}

// BenchmarkBuildGlobalPolicies builds BenchmarkDecideGlobalPolicies' 1,000 policies, each
// with expressions of its own (users, prefixes, patterns and a `when` guard constant), and
// reports the live heap the snapshot keeps per policy: mostly compiled regular expressions
// and CEL programs, the garbage collector's marking work in a running replica.
func BenchmarkBuildGlobalPolicies(b *testing.B) {
	const n = 1_000
	policies := make([]*v1alpha1.FriendPolicy, n)
	for i := range policies {
		policies[i] = globalPolicy(i)
	}
	benchBuild(b, policies)
}

// benchBuild builds policies into a snapshot per iteration and reports the live heap the
// snapshot keeps per policy.
func benchBuild(b *testing.B, policies []*v1alpha1.FriendPolicy) {
	for b.Loop() {
		before := liveHeap()
		s, _, err := Build(policies, nil, Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(liveHeap()-before)/float64(len(policies)), "heap-B/policy")
		runtime.KeepAlive(s)
	}
}

// keywordWording is a 256-byte greeting in Latin, Chinese and fullwidth letters that matches
// none of keywordWords: a passing request reads all of it.
const keywordWording = "Hi! I saw your profile in the hiking group and would love to be friends. " +
	"I'm Anna, 28, from Lyon, I work as a nurse. 你好，很高兴认识你！ Message me any " +
	"time, I'm usually online in the evening after my work. ｈａｐｐｙ weekend :) see you!!!!"

// BenchmarkDecideKeywords measures a decision by a rule whose dictionary (from a ConfigMap)
// holds 100 to 100,000 words, every normalisation on, against a 256-byte wording: allow
// reads the whole wording; deny finds a word, disguised, at its end.
func BenchmarkDecideKeywords(b *testing.B) {
	if len(keywordWording) != 256 {
		b.Fatalf("the wording is %d bytes, want 256", len(keywordWording))
	}
	for _, n := range []int{100, 100_000} {
		words := keywordstest.Words(n)
		cm := configMap("bench", "words", map[string]string{v1alpha1.LabelList: "words"}, map[string]string{"words.txt": strings.Join(words, "\n")})
		// Its own version per size: compiled dictionaries are cached by ConfigMap version.
		cm.UID, cm.ResourceVersion = "words", strconv.Itoa(n)
		p := fp("bench", "keywords", v1alpha1.FriendPolicySpec{Rules: []v1alpha1.Rule{{Name: "words", Keywords: &v1alpha1.Keywords{
			ConfigMapSelector: &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.LabelList: "words"}},
			IgnoreSeparators:  true, FoldConfusables: true, WholeWords: true,
		}}}})
		s := mustBuild(b, []*v1alpha1.FriendPolicy{p}, cm)
		if got := s.dicts[0].dict.Len(); got != n {
			b.Fatalf("the dictionary holds %d words, want %d", got, n)
		}
		allow := Request{Event: "FriendRequest", From: "alice", To: "bob", Wording: keywordWording}
		b.Run(fmt.Sprintf("words=%d/allow", n), func(b *testing.B) { benchDecide(b, s, allow, false) })
		// The last Latin word, upper-cased and dotted, in place of the wording's last word.
		var last string
		for _, w := range slices.Backward(words) {
			if w[0] < utf8.RuneSelf && !strings.Contains(w, " ") {
				last = w
				break
			}
		}
		deny := allow
		deny.Wording = keywordWording[:len(keywordWording)-len("see you")] + strings.ToUpper(strings.Join(strings.Split(last, ""), "."))
		b.Run(fmt.Sprintf("words=%d/deny", n), func(b *testing.B) { benchDecide(b, s, deny, true) })
	}
}

// BenchmarkDecideCountLocal measures a decision with its limits counted in memory:
// BenchmarkDecide's 10,000 policies, with a per-sender limit in one of the four that
// apply, then in all four; the request stays within the limits (the clock moves on by
// the limit's interval between requests).
func BenchmarkDecideCountLocal(b *testing.B) {
	perSender := []v1alpha1.Limit{{Name: "per-sender", Key: v1alpha1.LimitKeyFrom, Limit: 1_000_000, Window: metav1.Duration{Duration: time.Second}}}
	for _, withLimit := range []int{0, 1, 4} {
		policies := []*v1alpha1.FriendPolicy{
			benchPolicy("global-a", nil, 10), benchPolicy("global-b", nil, 5), benchPolicy("global-c", nil, 0),
		}
		for i := range 10_000 - len(policies) {
			policies = append(policies, benchPolicy("tenant-"+strconv.Itoa(i), []string{"app-" + strconv.Itoa(i)}, 1))
		}
		for i, p := range []*v1alpha1.FriendPolicy{policies[0], policies[1], policies[2], policies[4]} {
			if i < withLimit {
				p.Spec.Limits = perSender
			}
		}
		s := mustBuild(b, policies)
		req := allowedRequest
		if got := len(s.Decide(&req).Limits); got != withLimit {
			b.Fatalf("%d limits apply, want %d", got, withLimit)
		}
		counter := velocity.NewLocal(velocity.LocalOptions{})
		now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
		b.Run(fmt.Sprintf("limits=%d", withLimit), func(b *testing.B) {
			b.ReportAllocs()
			cpu := processCPU()
			for b.Loop() {
				d := s.Decide(&req)
				d.CountLimits(&req, counter, now, nil)
				if d.Deny != nil {
					b.Fatal("refused")
				}
				now = now.Add(time.Microsecond)
			}
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}
