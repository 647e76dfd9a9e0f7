package policy

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

// Vocabularies of the differential test: small, so that random policies and requests meet
// often, with the corner cases of the index in them (IDs that are prefixes of each other,
// case folding with non-ASCII folds such as ſ and the Kelvin sign, patterns without a
// literal, IPv4-mapped addresses, guards that hold and fail, runtime CEL errors).
var (
	diffIDs       = []string{"a", "b", "bot_1", "bot_22", "staff_x", "guest_9", "12345678901", "u1", "u2", "spam_A", "SPAM_b", "K", "ſk", "ab", "abc"}
	diffPrefixes  = []string{"bot_", "b", "bo", "staff_", "guest_", "1", "sp", "SPAM", "ab"}
	diffIDRes     = []string{`[0-9]{11}`, `bot_[0-9]+`, `u[12]`, `(?i)spam_.*`, `g.*9`, `.*`, `a|b`, `ab?c`, `(?i)k`, `staff_(x|y)`}
	diffWordRes   = []string{`https?://`, `(?i)www\.`, `v[i1]a`, `[0-9]{5}`, `(?i)skype`, `hello`, `^$`, `x*`, `(?i)ſ`, `wh(at|o)`, `(?i)加微信|CAFÉ`}
	diffWordings  = []string{"hello there", "see http://x", "WWW.spam", "via", "v1a 12345", "SKYPE me", "", "ſkype", "\u212a", "who", "\xff\xfe", "请加微信", "café", "V.I.A", "ｖｉａ now", "buy  now trivial", "vіа", "hot🍆"}
	diffKeywords  = []string{"via", "skype", "buy now", "加微信", "café", "hello", "k", "🍆", "ВИА", "12345"}
	diffPlatforms = []string{"Web", "Android", "iOS", "Mac", "macOS", "IOS", "Linux", ""}
	diffSources   = []string{"AddSource_Type_Search", "AddSource_Type_QR", "AddSource_Type_X"}
	diffCIDRs     = []string{"10.0.0.0/8", "10.1.0.0/16", "203.0.113.0/24", "2001:db8::/32", "0.0.0.0/0", "10.1.2.3/32"}
	diffIPs       = []string{"10.1.2.3", "10.2.0.1", "203.0.113.9", "::ffff:10.1.2.3", "2001:db8::1", "bad", ""}
	diffWhens     = []string{
		"request.from == 'a'",
		"request.from.startsWith('guest_') && !request.forceAdd",
		"request.to in ['b', 'u1']",
		"request.wording.contains('hello')",
		"true",
		"false",
		"request.appID == 'app1' && request.to.startsWith('b')",
		"'u2' == request.from || request.to == 'a'",
		"request.remark.matches('x')",
		"request.event == 'FriendResponse' && request.from != ''",
		"int(request.wording) > 3",
		"request.platform in ['Web', 'iOS'] && request.eventTime > 5",
		"request.addSource.startsWith('AddSource_Type_S') && request.to == 'b'",
		"request.ex == 'vip' || request.ex.startsWith('{')",
		"request.ex in ['vip', ''] && request.wording != ''",
		"!request.forceAdd && request.to.startsWith('u') && request.from == 'u2' && request.wording.size() < 8",
		"request.from.startsWith('u') && (request.to == 'a' || request.eventTime > 5)",
		"request.wording.trim() == '' || request.remark.size() > 3",
		"request.to.endsWith('1') != request.forceAdd && request.wording.lowerAscii() != 'x'",
	}
	diffApps    = []string{"app1", "app2", ""}
	diffEvents  = []v1alpha1.Event{v1alpha1.EventFriendRequest, v1alpha1.EventFriendResponse, v1alpha1.EventImportFriends, v1alpha1.EventAddBlack, v1alpha1.EventSetRemark}
	diffSubject = []v1alpha1.Subject{"", v1alpha1.SubjectFrom, v1alpha1.SubjectTo, v1alpha1.SubjectEither}
)

// diffGen draws choices from the fuzzer's bytes; when they run out every choice is 0.
type diffGen struct{ data []byte }

func (g *diffGen) n(max int) int {
	if len(g.data) == 0 || max <= 1 {
		return 0
	}
	b := g.data[0]
	g.data = g.data[1:]
	return int(b) % max
}

func (g *diffGen) bool() bool { return g.n(2) == 1 }

// some picks up to max distinct items of vocab (possibly none).
func some[T comparable](g *diffGen, vocab []T, max int) []T {
	var out []T
	seen := map[T]bool{}
	for range g.n(max + 1) {
		v := vocab[g.n(len(vocab))]
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

func (g *diffGen) policies() ([]*v1alpha1.FriendPolicy, []*corev1.ConfigMap) {
	var policies []*v1alpha1.FriendPolicy
	var cms []*corev1.ConfigMap
	for i := range 1 + g.n(6) {
		name := "p" + strconv.Itoa(i)
		s := v1alpha1.FriendPolicySpec{
			AppIDs:   some(g, diffApps[:2], 2),
			Events:   some(g, diffEvents, 2),
			Priority: int32(g.n(3)),
		}
		if g.n(4) == 0 {
			s.EnforcementAction = v1alpha1.EnforcementDryRun
		}
		if g.n(3) == 0 {
			s.Exemptions = &v1alpha1.Exemptions{Users: some(g, diffIDs, 2), Prefixes: some(g, diffPrefixes, 1)}
		}
		for j := range g.n(4) {
			b := v1alpha1.Blocklist{
				Name:     "l" + strconv.Itoa(j),
				Subject:  diffSubject[g.n(len(diffSubject))],
				Users:    some(g, diffIDs, 3),
				Prefixes: some(g, diffPrefixes, 2),
				Patterns: some(g, diffIDRes, 2),
				Code:     int32(38000 + g.n(3)),
			}
			if g.n(4) == 0 {
				list := "list-" + name + "-" + strconv.Itoa(j)
				b.ConfigMapSelector = &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.LabelList: list}}
				data := ""
				for _, u := range some(g, diffIDs, 4) {
					data += u + "\n"
				}
				cms = append(cms, configMap("ns", list, map[string]string{v1alpha1.LabelList: list}, map[string]string{"ids": data}))
			}
			if len(b.Users)+len(b.Prefixes)+len(b.Patterns) == 0 && b.ConfigMapSelector == nil {
				b.Users = []string{diffIDs[g.n(len(diffIDs))]}
			}
			s.Blocklists = append(s.Blocklists, b)
		}
		events := s.Events
		if len(events) == 0 {
			events = v1alpha1.DefaultEvents
		}
		for j := range g.n(5) {
			r := v1alpha1.Rule{
				Name:            "r" + strconv.Itoa(j),
				Events:          some(g, events, 1),
				Platforms:       some(g, diffPlatforms[:5], 2),
				AddSources:      some(g, diffSources, 2),
				ClientCIDRs:     some(g, diffCIDRs, 2),
				WordingPatterns: some(g, diffWordRes, 2),
				Code:            int32(38100 + g.n(3)),
			}
			// Most rules keep one or two conditions, so that they can hold.
			switch g.n(4) {
			case 0:
				r.Platforms, r.AddSources, r.ClientCIDRs = nil, nil, nil
			case 1:
				r.WordingPatterns, r.ClientCIDRs = nil, nil
			case 2:
				r.Platforms, r.AddSources, r.WordingPatterns = nil, nil, nil
			}
			if g.n(2) == 0 {
				r.When = diffWhens[g.n(len(diffWhens))]
			}
			if g.n(3) == 0 {
				r.Keywords, cms = g.keywords(name+"-"+r.Name, cms)
			}
			if len(r.Platforms)+len(r.AddSources)+len(r.ClientCIDRs)+len(r.WordingPatterns) == 0 && r.Keywords == nil && r.When == "" {
				r.When = diffWhens[g.n(len(diffWhens))]
			}
			s.Rules = append(s.Rules, r)
		}
		for j := range g.n(4) {
			l := v1alpha1.Limit{
				Name:   "n" + strconv.Itoa(j),
				Events: some(g, events, 2),
				Key:    v1alpha1.LimitKeys[g.n(len(v1alpha1.LimitKeys))],
				Limit:  int32(1 + g.n(100)),
				Window: metav1.Duration{Duration: time.Duration(1+g.n(100)) * time.Minute},
				Code:   int32(38200 + g.n(3)),
			}
			// An empty list means FriendRequest, which must be one of the policy's events.
			if len(l.Events) == 0 && !slices.Contains(events, v1alpha1.EventFriendRequest) {
				l.Events = events[:1]
			}
			s.Limits = append(s.Limits, l)
		}
		policies = append(policies, fp("ns", name, s))
	}
	return policies, cms
}

// keywords draws a keyword condition, its words inline or in a ConfigMap of its own.
func (g *diffGen) keywords(list string, cms []*corev1.ConfigMap) (*v1alpha1.Keywords, []*corev1.ConfigMap) {
	k := &v1alpha1.Keywords{
		Words:            some(g, diffKeywords, 3),
		In:               [][]v1alpha1.KeywordInput{nil, {"Wording"}, {"Remark"}, {"Remark", "Wording"}}[g.n(4)],
		IgnoreSeparators: g.bool(),
		FoldConfusables:  g.bool(),
		WholeWords:       g.bool(),
	}
	if g.n(4) == 0 {
		k.FoldCase = new(bool)
	}
	if g.n(4) == 0 {
		k.FoldCompatibility = new(bool)
	}
	if g.n(3) == 0 {
		list = "words-" + list
		k.ConfigMapSelector = &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.LabelList: list}}
		data := "# words\n"
		for _, w := range some(g, diffKeywords, 4) {
			data += " " + w + "\n"
		}
		cms = append(cms, configMap("ns", list, map[string]string{v1alpha1.LabelList: list}, map[string]string{"words": data}))
	}
	if len(k.Words) == 0 && k.ConfigMapSelector == nil {
		k.Words = []string{diffKeywords[g.n(len(diffKeywords))]}
	}
	return k, cms
}

// diffReqIDs are the user IDs of requests: those of the policies, and none, which no
// limit counts.
var diffReqIDs = append(slices.Clone(diffIDs), "")

func (g *diffGen) request() Request {
	return Request{
		Event:     string(diffEvents[g.n(len(diffEvents))]),
		AppID:     diffApps[g.n(len(diffApps))],
		From:      diffReqIDs[g.n(len(diffReqIDs))],
		To:        diffReqIDs[g.n(len(diffReqIDs))],
		Wording:   diffWordings[g.n(len(diffWordings))],
		Remark:    diffWordings[g.n(len(diffWordings))],
		AddSource: diffSources[g.n(len(diffSources))],
		ForceAdd:  g.bool(),
		Platform:  diffPlatforms[g.n(len(diffPlatforms))],
		ClientIP:  diffIPs[g.n(len(diffIPs))],
		EventTime: int64(g.n(10)),
		Ex:        []string{"", "vip", `{"a":1}`}[g.n(3)],
	}
}

// FuzzDecideMatchesReference builds random policies and requests and checks that the
// engine's decision (verdict, deciding policy and entry, code, would-deny list, the limits
// the request counts against) is the reference evaluator's.
func FuzzDecideMatchesReference(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		seed := make([]byte, 64+rng.IntN(256))
		for i := range seed {
			seed[i] = byte(rng.Uint32())
		}
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &diffGen{data: data}
		policies, cms := g.policies()
		s, _, err := Build(policies, cms, Options{})
		if err != nil {
			t.Fatalf("generated an invalid policy: %v", err)
		}
		ref := make([]*refPolicy, len(policies))
		for i, p := range policies {
			ref[i] = refCompile(t, p, cms)
		}
		for range 1 + g.n(8) {
			req := g.request()
			want := refDecide(ref, &req)
			if got := keywordOutcome(s.Decide(&req)); got != want {
				t.Fatalf("request %+v\npolicies %s\ngot  %s\nwant %s", req, describePolicies(policies), got, want)
			}
			// Explanations walk each policy without the index; they must agree too.
			for _, tr := range s.Explain(&req) {
				got, want := "none", "none"
				if tr.Verdict != nil {
					got = tr.Verdict.Detail
					if tr.Keyword != nil {
						got += refKeyword(tr.Keyword.Entry)
					}
				}
				for _, p := range ref {
					if v := p.evaluate(&req); p.key == tr.Policy && v != nil {
						want = v.detail() + refKeyword(v.keyword)
					}
				}
				if got != want {
					t.Fatalf("request %+v\npolicies %s\nExplain: %s says %s, want %s", req, describePolicies(policies), tr.Policy, got, want)
				}
			}
		}
	})
}

// keywordOutcome is outcome with the keyword that made each verdict hold, as refDecide
// writes it.
func keywordOutcome(d Decision) string {
	s := "allow"
	kw := func(v *Verdict) string {
		m, _ := d.Keyword(v)
		return refKeyword(m.Entry)
	}
	if d.Deny != nil {
		s = "deny " + d.Deny.Detail + " " + strconv.Itoa(int(d.Deny.Code)) + kw(d.Deny)
	}
	for _, v := range d.WouldDeny {
		s += " +dry " + v.Detail + kw(v)
	}
	return s + limitsOutcome(d.Limits)
}

func describePolicies(policies []*v1alpha1.FriendPolicy) string {
	out := ""
	for _, p := range policies {
		out += "\n  " + p.Name + ": " + marshalSpec(p.Spec)
	}
	return out
}

func marshalSpec(s v1alpha1.FriendPolicySpec) string {
	b, err := json.Marshal(s)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
