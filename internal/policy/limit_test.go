package policy

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/velocity"
)

// limit is a limit of 20 requests an hour per key.
func limit(name string, key v1alpha1.LimitKey, events ...v1alpha1.Event) v1alpha1.Limit {
	return v1alpha1.Limit{Name: name, Key: key, Events: events, Limit: 20, Window: hours(1)}
}

// TestDecideLimits checks which limits a decision hands out, and in which order.
func TestDecideLimits(t *testing.T) {
	fr := string(v1alpha1.EventFriendRequest)
	req := Request{Event: fr, AppID: "app1", From: "a", To: "b", ClientIP: "203.0.113.9"}
	with := func(edit func(*Request)) Request {
		r := req
		edit(&r)
		return r
	}
	limits := func(ls ...v1alpha1.Limit) spec { return spec{Limits: ls} }
	tests := []struct {
		name     string
		policies []*v1alpha1.FriendPolicy
		req      Request
		want     string
	}{
		{
			name:     "an allowed request counts against the policy's limit",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", limits(limit("l", "From")))},
			req:      req,
			want:     "allow +limit ns/p/limit/l",
		},
		{
			name:     "a limit's events default to FriendRequest",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", limits(limit("l", "From")))},
			req:      with(func(r *Request) { r.Event = "FriendResponse" }),
			want:     "allow",
		},
		{
			name:     "a limit counts its events only",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", limits(limit("l", "From"), limit("m", "To", "FriendResponse", "ImportFriends")))},
			req:      with(func(r *Request) { r.Event = "ImportFriends" }),
			want:     "allow +limit ns/p/limit/m",
		},
		{
			name:     "a policy's events scope its limits",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Events: []v1alpha1.Event{"AddBlack"}, Limits: []v1alpha1.Limit{limit("l", "From", "AddBlack")}})},
			req:      with(func(r *Request) { r.Event = "AddBlack" }),
			want:     "allow +limit ns/p/limit/l",
		},
		{
			name:     "a policy for other apps does not count",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{AppIDs: []string{"app2"}, Limits: []v1alpha1.Limit{limit("l", "From")}})},
			req:      req,
			want:     "allow",
		},
		{
			name:     "a policy for the request's app counts",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{AppIDs: []string{"app2", "app1"}, Limits: []v1alpha1.Limit{limit("l", "From")}})},
			req:      req,
			want:     "allow +limit ns/p/limit/l",
		},
		{
			name:     "a policy with appIDs does not count a request without an app",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{AppIDs: []string{"app1"}, Limits: []v1alpha1.Limit{limit("l", "From")}})},
			req:      with(func(r *Request) { r.AppID = "" }),
			want:     "allow",
		},
		{
			name: "an exemption of either side silences the policy's limits, not another's",
			policies: []*v1alpha1.FriendPolicy{
				fp("ns", "p", spec{Exemptions: &v1alpha1.Exemptions{Prefixes: []string{"b"}}, Limits: []v1alpha1.Limit{limit("l", "From")}}),
				fp("ns", "q", limits(limit("l", "From"))),
			},
			req:  req,
			want: "allow +limit ns/q/limit/l",
		},
		{
			name: "a request refused by a blocklist counts against no limit",
			policies: []*v1alpha1.FriendPolicy{
				fp("ns", "p", limits(limit("l", "From"))),
				fp("ns", "q", spec{Blocklists: []v1alpha1.Blocklist{{Name: "spam", Users: []string{"a"}}}}),
			},
			req:  req,
			want: "deny ns/q/blocklist/spam 38000",
		},
		{
			name: "a request refused by a rule of the same policy counts against none of its limits",
			policies: []*v1alpha1.FriendPolicy{
				fp("ns", "p", spec{Rules: []v1alpha1.Rule{{Name: "all", When: "true"}}, Limits: []v1alpha1.Limit{limit("l", "From")}}),
			},
			req:  req,
			want: "deny ns/p/rule/all 38000",
		},
		{
			name: "a DryRun verdict refuses nothing, so the request counts",
			policies: []*v1alpha1.FriendPolicy{
				fp("ns", "p", limits(limit("l", "From"))),
				fp("ns", "audit", spec{EnforcementAction: "DryRun", Rules: []v1alpha1.Rule{{Name: "all", When: "true"}}}),
			},
			req:  req,
			want: "allow +dry ns/audit/rule/all +limit ns/p/limit/l",
		},
		{
			name: "a DryRun policy's limits count (shadow mode)",
			policies: []*v1alpha1.FriendPolicy{
				fp("ns", "audit", spec{EnforcementAction: "DryRun", Rules: []v1alpha1.Rule{{Name: "all", When: "true"}}, Limits: []v1alpha1.Limit{limit("l", "From")}}),
			},
			req:  req,
			want: "allow +dry ns/audit/rule/all +limit ns/audit/limit/l",
		},
		{
			name: "policies in priority then namespace/name order, a policy's limits as written",
			policies: []*v1alpha1.FriendPolicy{
				fp("ns", "b", limits(limit("z", "From"), limit("a", "To"))),
				fp("ns", "a", limits(limit("y", "From"))),
				fp("ns", "high", spec{Priority: 5, Limits: []v1alpha1.Limit{limit("x", "From")}}),
			},
			req:  req,
			want: "allow +limit ns/high/limit/x +limit ns/a/limit/y +limit ns/b/limit/z +limit ns/b/limit/a",
		},
		{
			name: "policies with and without appIDs merge in decision order",
			policies: []*v1alpha1.FriendPolicy{
				fp("ns", "all", limits(limit("l", "From"))),
				fp("ns", "app1-high", spec{AppIDs: []string{"app1"}, Priority: 9, Limits: []v1alpha1.Limit{limit("l", "From")}}),
				fp("ns", "both", spec{AppIDs: []string{"app1", "app2"}, Limits: []v1alpha1.Limit{limit("l", "From")}}),
				fp("ns", "app2", spec{AppIDs: []string{"app2"}, Priority: 9, Limits: []v1alpha1.Limit{limit("l", "From")}}),
			},
			req:  req,
			want: "allow +limit ns/app1-high/limit/l +limit ns/all/limit/l +limit ns/both/limit/l",
		},
		{
			name: "an app without limits of its own gets those of policies without appIDs",
			policies: []*v1alpha1.FriendPolicy{
				fp("ns", "all", limits(limit("l", "From"))),
				fp("ns", "app2", spec{AppIDs: []string{"app2"}, Limits: []v1alpha1.Limit{limit("l", "From")}}),
			},
			req:  req,
			want: "allow +limit ns/all/limit/l",
		},
		{
			name:     "every key counts a request that has its subject",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", limits(limit("from", "From"), limit("to", "To"), limit("ip", "ClientIP"), limit("pair", "FromTo")))},
			req:      req,
			want:     "allow +limit ns/p/limit/from +limit ns/p/limit/to +limit ns/p/limit/ip +limit ns/p/limit/pair",
		},
		{
			name:     "a ClientIP limit does not count a request without a client address (OpenIM)",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", limits(limit("from", "From"), limit("ip", "ClientIP"), limit("pair", "FromTo")))},
			req:      with(func(r *Request) { r.ClientIP = "" }),
			want:     "allow +limit ns/p/limit/from +limit ns/p/limit/pair",
		},
		{
			name:     "an empty user ID is no subject",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", limits(limit("from", "From"), limit("to", "To"), limit("ip", "ClientIP"), limit("pair", "FromTo")))},
			req:      with(func(r *Request) { r.To = "" }),
			want:     "allow +limit ns/p/limit/from +limit ns/p/limit/ip",
		},
		{
			name: "an exemption in the middle of the decision order",
			policies: []*v1alpha1.FriendPolicy{
				fp("ns", "a", limits(limit("l", "From"), limit("m", "To"))),
				fp("ns", "b", spec{Exemptions: &v1alpha1.Exemptions{Users: []string{"a"}}, Limits: []v1alpha1.Limit{limit("l", "From")}}),
				fp("ns", "c", limits(limit("l", "From"), limit("m", "To"))),
			},
			req:  req,
			want: "allow +limit ns/a/limit/l +limit ns/a/limit/m +limit ns/c/limit/l +limit ns/c/limit/m",
		},
		{
			name:     "an unknown event counts against nothing",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", limits(limit("l", "From")))},
			req:      with(func(r *Request) { r.Event = "Poke" }),
			want:     "allow",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustBuild(t, tt.policies)
			if got := outcome(s.Decide(&tt.req)); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestCompileLimit checks what a compiled limit holds: the counter's view, the key, the
// verdict with the API's defaults, DryRun.
func TestCompileLimit(t *testing.T) {
	tests := []struct {
		name     string
		action   v1alpha1.EnforcementAction
		limit    v1alpha1.Limit
		velocity velocity.Limit
		verdict  Verdict
	}{
		{
			name:     "defaults",
			limit:    v1alpha1.Limit{Name: "per-sender", Key: "From", Limit: 20, Window: hours(1)},
			velocity: velocity.Limit{ID: "im/anti-spam/per-sender", Rate: 20, Window: time.Hour},
			verdict: Verdict{Policy: "im/anti-spam", Kind: KindLimit, Name: "per-sender", Code: v1alpha1.DefaultCode,
				Message: DefaultLimitMessage, Detail: "im/anti-spam/limit/per-sender"},
		},
		{
			name:   "every field, DryRun",
			action: v1alpha1.EnforcementDryRun,
			limit: v1alpha1.Limit{Name: "pairs", Key: "FromTo", Limit: 3, Window: metav1.Duration{Duration: 90 * time.Second},
				Penalty: &metav1.Duration{Duration: 24 * time.Hour}, Code: 38040, Message: "slow down"},
			velocity: velocity.Limit{ID: "im/anti-spam/pairs", Rate: 3, Window: 90 * time.Second, Penalty: 24 * time.Hour},
			verdict: Verdict{Policy: "im/anti-spam", Kind: KindLimit, Name: "pairs", Code: 38040, Message: "slow down",
				DryRun: true, Detail: "im/anti-spam/limit/pairs"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Compile(fp("im", "anti-spam", spec{EnforcementAction: tt.action, Limits: []v1alpha1.Limit{tt.limit}}), nil, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Limits) != 1 {
				t.Fatalf("%d limits, want 1", len(c.Limits))
			}
			l := c.Limits[0]
			if *l.Velocity != tt.velocity {
				t.Errorf("velocity %+v, want %+v", *l.Velocity, tt.velocity)
			}
			if *l.Verdict != tt.verdict {
				t.Errorf("verdict %+v, want %+v", *l.Verdict, tt.verdict)
			}
			if l.Key != tt.limit.Key || l.DryRun != tt.verdict.DryRun {
				t.Errorf("key %s dryRun %v, want %s %v", l.Key, l.DryRun, tt.limit.Key, tt.verdict.DryRun)
			}
		})
	}
}

func TestLimitSubject(t *testing.T) {
	tencent := Request{AppID: "1400000001", From: "alice", To: "bob", ClientIP: "203.0.113.9"}
	openIM := Request{AppID: "", From: "alice", To: "bob"}
	tests := []struct {
		key  v1alpha1.LimitKey
		req  Request
		want velocity.Subject
		ok   bool
	}{
		{"From", tencent, velocity.Subject{AppID: "1400000001", A: "alice"}, true},
		{"To", tencent, velocity.Subject{AppID: "1400000001", A: "bob"}, true},
		{"ClientIP", tencent, velocity.Subject{AppID: "1400000001", A: "203.0.113.9"}, true},
		{"FromTo", tencent, velocity.Subject{AppID: "1400000001", A: "alice", B: "bob"}, true},
		{"From", openIM, velocity.Subject{A: "alice"}, true},
		{"ClientIP", openIM, velocity.Subject{}, false},
		{"From", Request{To: "bob"}, velocity.Subject{}, false},
		{"To", Request{From: "alice"}, velocity.Subject{}, false},
		{"FromTo", Request{From: "alice"}, velocity.Subject{A: "alice"}, false},
		{"FromTo", Request{To: "bob"}, velocity.Subject{B: "bob"}, false},
	}
	for _, tt := range tests {
		l := &Limit{Key: tt.key}
		got, ok := l.Subject(&tt.req)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("%s of %+v: %+v, %v; want %+v, %v", tt.key, tt.req, got, ok, tt.want, tt.ok)
		}
	}
}

// TestDecisionLimitsAreClipped checks that appending to Decision.Limits cannot write into
// the snapshot's lists, which later decisions hand out.
func TestDecisionLimitsAreClipped(t *testing.T) {
	s := mustBuild(t, []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Limits: []v1alpha1.Limit{limit("a", "From"), limit("b", "ClientIP")}})})
	r := Request{Event: "FriendRequest", From: "alice", To: "bob"}
	d := s.Decide(&r)
	if cap(d.Limits) != len(d.Limits) {
		t.Fatalf("Decision.Limits has room beyond its %d limits (cap %d)", len(d.Limits), cap(d.Limits))
	}
	_ = append(d.Limits, &Limit{})
	r.ClientIP = "203.0.113.9"
	if got := limitsOutcome(s.Decide(&r).Limits); got != " +limit ns/p/limit/a +limit ns/p/limit/b" {
		t.Errorf("after an append to an earlier decision's limits: %s", got)
	}
}

// TestDecideLimitsAllocateNothing checks that a decision with limits allocates nothing, a
// request without a client address included, and allocates one slice when an exemption
// drops limits from the middle of the list.
func TestDecideLimitsAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	s := mustBuild(t, []*v1alpha1.FriendPolicy{
		fp("ns", "a", spec{Priority: 2, Limits: []v1alpha1.Limit{limit("from", "From"), limit("ip", "ClientIP"), limit("pair", "FromTo")}}),
		fp("ns", "b", spec{Priority: 1, Exemptions: &v1alpha1.Exemptions{Users: []string{"staff"}},
			Rules: []v1alpha1.Rule{{Name: "links", WordingPatterns: []string{`https?://`}}}, Limits: []v1alpha1.Limit{limit("from", "From")}}),
		fp("ns", "c", spec{AppIDs: []string{"app1"}, Limits: []v1alpha1.Limit{limit("to", "To")}}),
	})
	tencent := Request{Event: "FriendRequest", AppID: "app1", From: "alice", To: "bob", ClientIP: "203.0.113.9"}
	openIM := tencent
	openIM.ClientIP = ""
	exempt := tencent
	exempt.To = "staff"
	for _, tt := range []struct {
		name   string
		req    Request
		limits int
		allocs float64
	}{
		{"every limit", tencent, 5, 0},
		{"no client address", openIM, 4, 0},
		{"an exemption in the middle", exempt, 4, 1},
	} {
		if got := len(s.Decide(&tt.req).Limits); got != tt.limits {
			t.Errorf("%s: %d limits, want %d", tt.name, got, tt.limits)
		}
		if n := testing.AllocsPerRun(100, func() { s.Decide(&tt.req) }); n != tt.allocs {
			t.Errorf("%s: %v allocations per decision, want %v", tt.name, n, tt.allocs)
		}
	}
}

// TestBuildSharesLimitLists checks that appIDs whose policies have the same limits share
// one set of lists, so a policy naming many appIDs costs one.
func TestBuildSharesLimitLists(t *testing.T) {
	apps := []string{"app1", "app2", "app3"}
	s := mustBuild(t, []*v1alpha1.FriendPolicy{
		fp("ns", "all", spec{Limits: []v1alpha1.Limit{limit("l", "From")}}),
		fp("ns", "tenants", spec{AppIDs: apps, Limits: []v1alpha1.Limit{limit("l", "From")}}),
		fp("ns", "app3", spec{AppIDs: []string{"app3"}, Limits: []v1alpha1.Limit{limit("l", "From")}}),
	})
	app1, app2, app3 := s.byApp["app1"].limits, s.byApp["app2"].limits, s.byApp["app3"].limits
	if app1 == nil || app1 != app2 || app1 == app3 || app3 == nil {
		t.Errorf("lists: app1 %p app2 %p app3 %p; want app1 and app2 to share theirs, app3 its own", app1, app2, app3)
	}
}

// TestCountLimits counts allowed requests against their limits in decision order: the
// first enforcing limit over refuses, a DryRun one reports and lets counting go on.
func TestCountLimits(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	two := func(name string, key v1alpha1.LimitKey) v1alpha1.Limit {
		return v1alpha1.Limit{Name: name, Key: key, Limit: 2, Window: hours(1), Code: 38040}
	}
	enforce := fp("ns", "enforce", spec{Priority: 1, Limits: []v1alpha1.Limit{two("per-sender", "From"), two("per-pair", "FromTo")}})
	dry := fp("ns", "dry", spec{Priority: 2, EnforcementAction: v1alpha1.EnforcementDryRun, Limits: []v1alpha1.Limit{two("audit", "From")}})
	tests := []struct {
		name     string
		policies []*v1alpha1.FriendPolicy
		sends    []Request
		at       time.Duration // after t0, for the last request
		want     string        // the last request's decision
		counted  []string      // the limits the last request was counted against, in order
	}{
		{name: "within the limit", policies: []*v1alpha1.FriendPolicy{enforce},
			sends: reqs("a>b", "a>c"), want: "allow", counted: []string{"per-sender:counted", "per-pair:counted"}},
		{name: "over the first limit refuses, the next is not counted", policies: []*v1alpha1.FriendPolicy{enforce},
			sends: reqs("a>b", "a>c", "a>d"), want: "deny ns/enforce/limit/per-sender", counted: []string{"per-sender:over"}},
		{name: "over a later limit refuses after the earlier counted", policies: []*v1alpha1.FriendPolicy{fp("ns", "enforce", spec{Limits: []v1alpha1.Limit{
			{Name: "per-sender", Key: "From", Limit: 10, Window: hours(1)}, two("per-pair", "FromTo")}})},
			sends: reqs("a>b", "a>b", "a>b"), want: "deny ns/enforce/limit/per-pair", counted: []string{"per-sender:counted", "per-pair:over"}},
		{name: "a window later the sender may send again", policies: []*v1alpha1.FriendPolicy{enforce},
			sends: reqs("a>b", "a>c", "a>d"), at: time.Hour, want: "allow", counted: []string{"per-sender:counted", "per-pair:counted"}},
		{name: "DryRun over reports and counting goes on", policies: []*v1alpha1.FriendPolicy{dry, fp("ns", "enforce", spec{Priority: 1, Limits: []v1alpha1.Limit{
			{Name: "per-sender", Key: "From", Limit: 10, Window: hours(1)}, two("per-pair", "FromTo")}})},
			sends: reqs("a>b", "a>c", "a>d"), want: "allow +dry ns/dry/limit/audit", counted: []string{"audit:over", "per-sender:counted", "per-pair:counted"}},
		{name: "DryRun over is a would-deny beside an allow", policies: []*v1alpha1.FriendPolicy{dry},
			sends: reqs("a>b", "a>c", "a>d"), want: "allow +dry ns/dry/limit/audit", counted: []string{"audit:over"}},
		{name: "a refused request counts against no limit", policies: []*v1alpha1.FriendPolicy{fp("ns", "enforce", spec{
			Blocklists: []v1alpha1.Blocklist{{Name: "spam", Users: []string{"a"}}}, Limits: []v1alpha1.Limit{two("per-sender", "From")}})},
			sends: reqs("a>b"), want: "deny ns/enforce/blocklist/spam"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustBuild(t, tt.policies)
			counter := velocity.NewLocal(velocity.LocalOptions{})
			var d Decision
			var counted []string
			for i, r := range tt.sends {
				at := t0
				if i == len(tt.sends)-1 {
					at = t0.Add(tt.at)
				}
				counted = nil
				d = s.Decide(&r)
				if d.Deny == nil {
					d.CountLimits(&r, counter, at, func(l *Limit, o velocity.Outcome) {
						counted = append(counted, l.Verdict.Name+":"+map[velocity.Outcome]string{velocity.Counted: "counted", velocity.Over: "over", velocity.Penalized: "penalized"}[o])
					})
				}
			}
			if got := describeDecision(&d); got != tt.want {
				t.Errorf("decision %q, want %q", got, tt.want)
			}
			if strings.Join(counted, ",") != strings.Join(tt.counted, ",") {
				t.Errorf("counted %v, want %v", counted, tt.counted)
			}
		})
	}
}

// TestCountLimitsAppendsWouldDeny: DryRun limits over add their verdicts, in order, after
// the would-deny verdicts Decide gave, to the decision being counted and to nothing the
// next decision sees.
func TestCountLimitsAppendsWouldDeny(t *testing.T) {
	one := func(name string, key v1alpha1.LimitKey) v1alpha1.Limit {
		return v1alpha1.Limit{Name: name, Key: key, Limit: 1, Window: hours(1)}
	}
	s := mustBuild(t, []*v1alpha1.FriendPolicy{
		fp("ns", "watch", spec{EnforcementAction: v1alpha1.EnforcementDryRun, Blocklists: []v1alpha1.Blocklist{{Name: "watched", Users: []string{"a"}}}}),
		fp("ns", "audit", spec{EnforcementAction: v1alpha1.EnforcementDryRun, Limits: []v1alpha1.Limit{one("per-sender", "From"), one("per-pair", "FromTo")}}),
	})
	counter := velocity.NewLocal(velocity.LocalOptions{})
	t0 := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	r := reqs("a>b")[0]
	for i, want := range []string{
		"allow +dry ns/watch/blocklist/watched",
		"allow +dry ns/watch/blocklist/watched +dry ns/audit/limit/per-sender +dry ns/audit/limit/per-pair",
		"allow +dry ns/watch/blocklist/watched +dry ns/audit/limit/per-sender +dry ns/audit/limit/per-pair",
	} {
		d := s.Decide(&r)
		if got := describeDecision(&d); got != "allow +dry ns/watch/blocklist/watched" {
			t.Fatalf("request %d: Decide gave %q after earlier requests were counted", i, got)
		}
		d.CountLimits(&r, counter, t0, nil)
		if got := describeDecision(&d); got != want {
			t.Errorf("request %d: %q after counting, want %q", i, got, want)
		}
	}
}

// reqs are FriendRequests "from>to" in app1.
func reqs(pairs ...string) []Request {
	out := make([]Request, len(pairs))
	for i, p := range pairs {
		from, to, _ := strings.Cut(p, ">")
		out[i] = Request{Event: string(v1alpha1.EventFriendRequest), AppID: "app1", From: from, To: to}
	}
	return out
}

// describeDecision renders a decision after counting: "allow" or "deny <Detail>", plus
// "+dry <Detail>" for each would-deny.
func describeDecision(d *Decision) string {
	s := "allow"
	if d.Deny != nil {
		s = "deny " + d.Deny.Detail
	}
	for _, v := range d.WouldDeny {
		s += " +dry " + v.Detail
	}
	return s
}
