package policy

import (
	"testing"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

type spec = v1alpha1.FriendPolicySpec

func TestDecide(t *testing.T) {
	fr := string(v1alpha1.EventFriendRequest)
	block := func(name string, users ...string) v1alpha1.Blocklist {
		return v1alpha1.Blocklist{Name: name, Users: users}
	}
	tests := []struct {
		name     string
		policies []*v1alpha1.FriendPolicy
		req      Request
		want     string
	}{
		// 1. Candidates: appIDs and events.
		{
			name: "no policy allows",
			req:  Request{Event: fr, From: "a", To: "b"},
			want: "allow",
		},
		{
			name:     "policy without appIDs applies to every app",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Blocklists: []v1alpha1.Blocklist{block("l", "a")}})},
			req:      Request{Event: fr, AppID: "1400000009", From: "a", To: "b"},
			want:     "deny ns/p/blocklist/l 38000",
		},
		{
			name:     "policy with appIDs applies to its apps",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{AppIDs: []string{"1", "2"}, Blocklists: []v1alpha1.Blocklist{block("l", "a")}})},
			req:      Request{Event: fr, AppID: "2", From: "a", To: "b"},
			want:     "deny ns/p/blocklist/l 38000",
		},
		{
			name:     "policy with appIDs ignores other apps",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{AppIDs: []string{"1"}, Blocklists: []v1alpha1.Blocklist{block("l", "a")}})},
			req:      Request{Event: fr, AppID: "3", From: "a", To: "b"},
			want:     "allow",
		},
		{
			name:     "policy with appIDs ignores requests without an app (OpenIM without app segment)",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{AppIDs: []string{"1"}, Blocklists: []v1alpha1.Blocklist{block("l", "a")}})},
			req:      Request{Event: fr, From: "a", To: "b"},
			want:     "allow",
		},
		{
			name:     "empty events mean FriendRequest, FriendResponse and ImportFriends",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Blocklists: []v1alpha1.Blocklist{block("l", "a")}})},
			req:      Request{Event: "ImportFriends", From: "a", To: "b"},
			want:     "deny ns/p/blocklist/l 38000",
		},
		{
			name:     "empty events do not cover AddBlack",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Blocklists: []v1alpha1.Blocklist{block("l", "a")}})},
			req:      Request{Event: "AddBlack", From: "a", To: "b"},
			want:     "allow",
		},
		{
			name:     "listed events only",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Events: []v1alpha1.Event{"SetRemark"}, Blocklists: []v1alpha1.Blocklist{block("l", "a")}})},
			req:      Request{Event: fr, From: "a", To: "b"},
			want:     "allow",
		},
		{
			name:     "unknown event is allowed",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Blocklists: []v1alpha1.Blocklist{block("l", "a")}})},
			req:      Request{Event: "Nonsense", From: "a", To: "b"},
			want:     "allow",
		},
		// 2. Inside one policy: exemptions, then blocklists in order, then rules in order.
		{
			name: "exemption of from silences the policy",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{
				Exemptions: &v1alpha1.Exemptions{Users: []string{"a"}},
				Blocklists: []v1alpha1.Blocklist{block("l", "b")},
			})},
			req:  Request{Event: fr, From: "a", To: "b"},
			want: "allow",
		},
		{
			name: "exemption prefix of to silences the policy",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{
				Exemptions: &v1alpha1.Exemptions{Prefixes: []string{"staff_"}},
				Rules:      []v1alpha1.Rule{{Name: "r", When: "true"}},
			})},
			req:  Request{Event: fr, From: "a", To: "staff_1"},
			want: "allow",
		},
		{
			name: "exemption in one policy does not silence another",
			policies: []*v1alpha1.FriendPolicy{
				fp("ns", "p", spec{Exemptions: &v1alpha1.Exemptions{Users: []string{"a"}}, Blocklists: []v1alpha1.Blocklist{block("l", "a")}}),
				fp("ns", "q", spec{Blocklists: []v1alpha1.Blocklist{block("m", "a")}}),
			},
			req:  Request{Event: fr, From: "a", To: "b"},
			want: "deny ns/q/blocklist/m 38000",
		},
		{
			name: "first matching blocklist in written order decides",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Blocklists: []v1alpha1.Blocklist{
				block("z-first", "x"), {Name: "a-second", Users: []string{"a"}, Code: 38005}, {Name: "third", Users: []string{"a"}, Code: 38006},
			}})},
			req:  Request{Event: fr, From: "a", To: "b"},
			want: "deny ns/p/blocklist/a-second 38005",
		},
		{
			name: "blocklists come before rules",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{
				Rules:      []v1alpha1.Rule{{Name: "r", When: "true", Code: 38100}},
				Blocklists: []v1alpha1.Blocklist{{Name: "l", Users: []string{"a"}, Code: 38200}},
			})},
			req:  Request{Event: fr, From: "a", To: "b"},
			want: "deny ns/p/blocklist/l 38200",
		},
		{
			name: "first matching rule in written order decides",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Rules: []v1alpha1.Rule{
				{Name: "no", When: "false", Code: 38101},
				{Name: "yes", When: "true", Code: 38102},
				{Name: "also", When: "true", Code: 38103},
			}})},
			req:  Request{Event: fr, From: "a", To: "b"},
			want: "deny ns/p/rule/yes 38102",
		},
		{
			name:     "subject From looks at the acting user only",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Blocklists: []v1alpha1.Blocklist{{Name: "l", Subject: v1alpha1.SubjectFrom, Users: []string{"b"}}}})},
			req:      Request{Event: fr, From: "a", To: "b"},
			want:     "allow",
		},
		{
			name:     "subject To looks at the other user",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Blocklists: []v1alpha1.Blocklist{{Name: "l", Subject: v1alpha1.SubjectTo, Users: []string{"b"}}}})},
			req:      Request{Event: fr, From: "a", To: "b"},
			want:     "deny ns/p/blocklist/l 38000",
		},
		{
			name:     "subject Either (default) looks at both",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Blocklists: []v1alpha1.Blocklist{block("l", "b")}})},
			req:      Request{Event: fr, From: "a", To: "b"},
			want:     "deny ns/p/blocklist/l 38000",
		},
		{
			name:     "blocklist pattern must match the whole ID",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Blocklists: []v1alpha1.Blocklist{{Name: "l", Patterns: []string{"[0-9]{3}"}}}})},
			req:      Request{Event: fr, From: "a1234", To: "b"},
			want:     "allow",
		},
		{
			name:     "blocklist pattern matching the whole ID",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Blocklists: []v1alpha1.Blocklist{{Name: "l", Patterns: []string{"x", "[0-9]{3}"}}}})},
			req:      Request{Event: fr, From: "a", To: "123"},
			want:     "deny ns/p/blocklist/l 38000",
		},
		{
			name:     "alternation inside one pattern stays anchored",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Blocklists: []v1alpha1.Blocklist{{Name: "l", Patterns: []string{"ab|cd"}}}})},
			req:      Request{Event: fr, From: "abX", To: "Xcd"},
			want:     "allow",
		},
		{
			name:     "blocklist prefix",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Blocklists: []v1alpha1.Blocklist{{Name: "l", Prefixes: []string{"bot", "bot_x", "zz"}}}})},
			req:      Request{Event: fr, From: "bot_x1", To: "b"},
			want:     "deny ns/p/blocklist/l 38000",
		},
		{
			name: "all conditions of a rule must hold",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Rules: []v1alpha1.Rule{
				{Name: "r", Platforms: []string{"Web"}, AddSources: []string{"AddSource_Type_Search"}},
			}})},
			req:  Request{Event: fr, From: "a", To: "b", Platform: "Web", AddSource: "AddSource_Type_QR"},
			want: "allow",
		},
		{
			name: "a list condition holds when any element matches",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Rules: []v1alpha1.Rule{
				{Name: "r", Platforms: []string{"Android", "Web"}, AddSources: []string{"AddSource_Type_QR", "AddSource_Type_Search"}},
			}})},
			req:  Request{Event: fr, From: "a", To: "b", Platform: "Web", AddSource: "AddSource_Type_Search"},
			want: "deny ns/p/rule/r 38000",
		},
		{
			name:     "platforms compare case-insensitively",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Rules: []v1alpha1.Rule{{Name: "r", Platforms: []string{"iOS"}}}})},
			req:      Request{Event: fr, From: "a", To: "b", Platform: "IOS"},
			want:     "deny ns/p/rule/r 38000",
		},
		{
			name:     "Mac and macOS are one platform",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Rules: []v1alpha1.Rule{{Name: "r", Platforms: []string{"Mac"}}}})},
			req:      Request{Event: fr, From: "a", To: "b", Platform: "macOS"},
			want:     "deny ns/p/rule/r 38000",
		},
		{
			name:     "unknown request platform matches no platform",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Rules: []v1alpha1.Rule{{Name: "r", Platforms: []string{"Unknown"}}}})},
			req:      Request{Event: fr, From: "a", To: "b", Platform: "Linux"},
			want:     "allow",
		},
		{
			name:     "client CIDR holds for an address inside",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Rules: []v1alpha1.Rule{{Name: "r", ClientCIDRs: []string{"10.0.0.0/8", "203.0.113.0/24"}}}})},
			req:      Request{Event: fr, From: "a", To: "b", ClientIP: "203.0.113.9"},
			want:     "deny ns/p/rule/r 38000",
		},
		{
			name:     "client CIDR matches IPv4-mapped IPv6 addresses",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Rules: []v1alpha1.Rule{{Name: "r", ClientCIDRs: []string{"203.0.113.0/24"}}}})},
			req:      Request{Event: fr, From: "a", To: "b", ClientIP: "::ffff:203.0.113.9"},
			want:     "deny ns/p/rule/r 38000",
		},
		{
			name:     "client CIDR does not hold for a missing or bad address",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Rules: []v1alpha1.Rule{{Name: "r", ClientCIDRs: []string{"0.0.0.0/0"}}}})},
			req:      Request{Event: fr, From: "a", To: "b", ClientIP: "not-an-ip"},
			want:     "allow",
		},
		{
			name:     "wording patterns search anywhere in the text",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Rules: []v1alpha1.Rule{{Name: "r", WordingPatterns: []string{"https?://"}}}})},
			req:      Request{Event: fr, From: "a", To: "b", Wording: "see http://x"},
			want:     "deny ns/p/rule/r 38000",
		},
		{
			name: "rule events scope the rule",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Rules: []v1alpha1.Rule{
				{Name: "r", Events: []v1alpha1.Event{"FriendResponse"}, When: "true"},
			}})},
			req:  Request{Event: fr, From: "a", To: "b"},
			want: "allow",
		},
		// 3. DryRun verdicts never deny; every one is reported.
		{
			name: "DryRun never denies but reports would-deny",
			policies: []*v1alpha1.FriendPolicy{
				fp("ns", "d1", spec{EnforcementAction: v1alpha1.EnforcementDryRun, Blocklists: []v1alpha1.Blocklist{block("l", "a")}}),
				fp("ns", "d2", spec{EnforcementAction: v1alpha1.EnforcementDryRun, Priority: 5, Rules: []v1alpha1.Rule{{Name: "r", When: "true"}}}),
			},
			req:  Request{Event: fr, From: "a", To: "b"},
			want: "allow +dry ns/d2/rule/r +dry ns/d1/blocklist/l",
		},
		{
			name: "DryRun verdicts are reported beside a deny",
			policies: []*v1alpha1.FriendPolicy{
				fp("ns", "d", spec{EnforcementAction: v1alpha1.EnforcementDryRun, Priority: 9000, Blocklists: []v1alpha1.Blocklist{block("l", "a")}}),
				fp("ns", "p", spec{Blocklists: []v1alpha1.Blocklist{block("l", "a")}}),
			},
			req:  Request{Event: fr, From: "a", To: "b"},
			want: "deny ns/p/blocklist/l 38000 +dry ns/d/blocklist/l",
		},
		// 4. Several Deny policies: highest priority, then namespace/name.
		{
			name: "highest priority denying policy gives the answer",
			policies: []*v1alpha1.FriendPolicy{
				fp("ns", "low", spec{Priority: 1, Blocklists: []v1alpha1.Blocklist{{Name: "l", Users: []string{"a"}, Code: 38001}}}),
				fp("ns", "high", spec{Priority: 10, Blocklists: []v1alpha1.Blocklist{{Name: "l", Users: []string{"a"}, Code: 38010}}}),
				fp("ns", "silent", spec{Priority: 100, Blocklists: []v1alpha1.Blocklist{block("l", "zzz")}}),
			},
			req:  Request{Event: fr, From: "a", To: "b"},
			want: "deny ns/high/blocklist/l 38010",
		},
		{
			name: "priority ties go to the namespace/name that sorts first",
			policies: []*v1alpha1.FriendPolicy{
				fp("ns-b", "a", spec{Blocklists: []v1alpha1.Blocklist{{Name: "l", Users: []string{"a"}, Code: 38002}}}),
				fp("ns-a", "z", spec{Blocklists: []v1alpha1.Blocklist{{Name: "l", Users: []string{"a"}, Code: 38001}}}),
			},
			req:  Request{Event: fr, From: "a", To: "b"},
			want: "deny ns-a/z/blocklist/l 38001",
		},
		{
			name: "app-scoped and global policies merge in priority order",
			policies: []*v1alpha1.FriendPolicy{
				fp("ns", "global", spec{Priority: 50, Blocklists: []v1alpha1.Blocklist{{Name: "l", Users: []string{"a"}, Code: 38050}}}),
				fp("ns", "scoped", spec{AppIDs: []string{"7"}, Priority: 10, Blocklists: []v1alpha1.Blocklist{{Name: "l", Users: []string{"a"}, Code: 38010}}}),
			},
			req:  Request{Event: fr, AppID: "7", From: "a", To: "b"},
			want: "deny ns/global/blocklist/l 38050",
		},
		// Messages and codes.
		{
			name: "the deciding rule's code and message are the answer",
			policies: []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Rules: []v1alpha1.Rule{
				{Name: "r", When: "true", Code: 38999, Message: "custom"},
			}})},
			req:  Request{Event: fr, From: "a", To: "b"},
			want: "deny ns/p/rule/r 38999",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustBuild(t, tt.policies)
			req := tt.req
			d := s.Decide(&req)
			if got := outcome(d); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if len(d.Errors) > 0 {
				t.Errorf("unexpected errors: %v", d.Errors)
			}
		})
	}
}

func TestDefaultMessages(t *testing.T) {
	s := mustBuild(t, []*v1alpha1.FriendPolicy{fp("ns", "p", spec{
		Blocklists: []v1alpha1.Blocklist{{Name: "l", Users: []string{"a"}}},
		Rules:      []v1alpha1.Rule{{Name: "r", When: "true"}},
	})})
	for _, tt := range []struct {
		from, msg string
	}{{"a", DefaultBlocklistMessage}, {"x", DefaultRuleMessage}} {
		d := s.Decide(&Request{Event: "FriendRequest", From: tt.from, To: "b"})
		if d.Deny == nil || d.Deny.Message != tt.msg || d.Deny.Code != v1alpha1.DefaultCode {
			t.Errorf("from %s: got %+v, want message %q code %d", tt.from, d.Deny, tt.msg, v1alpha1.DefaultCode)
		}
	}
}

// TestCELRequestFields checks that every Request field reaches CEL under the name and type
// docs/policy.md gives it.
func TestCELRequestFields(t *testing.T) {
	req := Request{
		Event: "FriendRequest", AppID: "1400000001", From: "u1", To: "u2", Wording: "hello",
		Remark: "rm", GroupName: "g", AddSource: "AddSource_Type_Search", AddType: "Add_Type_Both",
		ForceAdd: true, ResponseAction: "Response_Action_Agree", Platform: "Web",
		ClientIP: "203.0.113.1", EventTime: 1669872112000, Ex: `{"vip":true}`,
	}
	exprs := []string{
		"request.event == 'FriendRequest'",
		"request.appID == '1400000001'",
		"request.from == 'u1'",
		"request.to == 'u2'",
		"request.wording == 'hello'",
		"request.remark == 'rm'",
		"request.groupName == 'g'",
		"request.addSource == 'AddSource_Type_Search'",
		"request.addType == 'Add_Type_Both'",
		"request.forceAdd == true",
		"request.responseAction == 'Response_Action_Agree'",
		"request.platform == 'Web'",
		"request.clientIP == '203.0.113.1'",
		"request.eventTime == 1669872112000",
		`request.ex == '{"vip":true}'`,
		"request.wording.upperAscii() == 'HELLO'",
	}
	for _, expr := range exprs {
		t.Run(expr, func(t *testing.T) {
			s := mustBuild(t, []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Rules: []v1alpha1.Rule{{Name: "r", When: expr}}})})
			r := req
			if d := s.Decide(&r); d.Deny == nil || len(d.Errors) > 0 {
				t.Errorf("%s did not hold: %+v", expr, d)
			}
			r.From, r.AppID, r.ForceAdd, r.EventTime, r.Wording = "other", "other", false, 1, "bye"
			r.Event, r.To, r.Remark, r.GroupName, r.AddSource, r.AddType = "FriendResponse", "x", "x", "x", "AddSource_Type_X", "x"
			r.ResponseAction, r.Platform, r.ClientIP, r.Ex = "x", "x", "x", "x"
			if d := s.Decide(&r); d.Deny != nil {
				t.Errorf("%s held for a different request", expr)
			}
		})
	}
}

func TestCELRuntimeErrorDoesNotMatch(t *testing.T) {
	s := mustBuild(t, []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Rules: []v1alpha1.Rule{
		{Name: "boom", When: "int(request.wording) > 3"},
		{Name: "next", When: "true", Code: 38009},
	}})})
	d := s.Decide(&Request{Event: "FriendRequest", From: "a", To: "b", Wording: "not a number"})
	if d.Deny == nil || d.Deny.Name != "next" {
		t.Fatalf("got %+v, want the next rule to decide", d.Deny)
	}
	if len(d.Errors) != 1 {
		t.Fatalf("got errors %v, want one", d.Errors)
	}
}

func TestCELCostLimitStopsHostileExpression(t *testing.T) {
	// Each .replace doubles the string; the cost limit must stop it long before memory does.
	expr := "request.wording" + repeat(".replace('a', 'aa')", 40) + ".size() > 0"
	s := mustBuild(t, []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Rules: []v1alpha1.Rule{{Name: "r", When: expr}}})})
	d := s.Decide(&Request{Event: "FriendRequest", From: "a", To: "b", Wording: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"})
	if d.Deny != nil {
		t.Fatalf("hostile expression matched: %+v", d.Deny)
	}
	if len(d.Errors) != 1 {
		t.Fatalf("got errors %v, want a cost limit error", d.Errors)
	}
}

func repeat(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}

func TestExplain(t *testing.T) {
	s := mustBuild(t, []*v1alpha1.FriendPolicy{
		fp("ns", "scoped", spec{AppIDs: []string{"1"}, Blocklists: []v1alpha1.Blocklist{{Name: "l", Users: []string{"a"}}}}),
		fp("ns", "blacks", spec{Events: []v1alpha1.Event{"AddBlack"}, Blocklists: []v1alpha1.Blocklist{{Name: "l", Users: []string{"a"}}}}),
		fp("ns", "exempting", spec{Exemptions: &v1alpha1.Exemptions{Prefixes: []string{"b"}}, Blocklists: []v1alpha1.Blocklist{{Name: "l", Users: []string{"a"}}}}),
		fp("ns", "denying", spec{Priority: 1, Blocklists: []v1alpha1.Blocklist{{Name: "l", Users: []string{"a"}}}}),
		fp("ns", "silent", spec{Rules: []v1alpha1.Rule{{Name: "r", When: "false"}}}),
	})
	got := map[string]string{}
	for _, tr := range s.Explain(&Request{Event: "FriendRequest", AppID: "2", From: "a", To: "bob"}) {
		got[tr.Policy] = tr.Reason
	}
	want := map[string]string{
		"ns/scoped":    `does not apply to appID "2" (appIDs: 1)`,
		"ns/blacks":    "does not apply to event FriendRequest",
		"ns/exempting": `exempts to "bob" (prefix b)`,
		"ns/denying":   "blocklist l matches",
		"ns/silent":    "no blocklist or rule matches",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: got %q, want %q", k, got[k], w)
		}
	}
}

func TestNilSnapshotAllows(t *testing.T) {
	var s *Snapshot
	if d := s.Decide(&Request{Event: "FriendRequest", From: "a"}); d.Deny != nil {
		t.Fatal("nil snapshot denied")
	}
}

func TestBuildCountsRules(t *testing.T) {
	p := fp("ns", "p", spec{Rules: []v1alpha1.Rule{{Name: "r", When: "true"}}})
	_, compiled, err := Build([]*v1alpha1.FriendPolicy{p}, nil, Options{})
	if err != nil || len(compiled) != 1 || compiled[0].Rules != 1 {
		t.Fatalf("got %+v, %v", compiled, err)
	}
}
