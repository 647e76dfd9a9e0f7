package e2e

import (
	"cmp"
	"fmt"
	"net/http"
	"testing"
)

// semanticsPolicies exercise the decision contract (docs/policy.md). Each policy refuses its own
// users or its own app, so the cases do not interfere.
const semanticsPolicies = `
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: audit, namespace: e2e}
spec:
  enforcementAction: DryRun
  priority: 1000
  blocklists:
    - {name: watched, users: [watched_user], code: 38020, message: would be refused}
---
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: app-scoped, namespace: e2e}
spec:
  appIDs: ["1400000001", imapp]
  blocklists:
    - {name: scoped, users: [scoped_user], code: 38040, message: refused in this app}
---
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: exemptions, namespace: e2e}
spec:
  exemptions: {users: [vip_user], prefixes: [staff_]}
  blocklists:
    - {name: guarded, users: [guarded_user], code: 38045, message: guarded}
---
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: low, namespace: e2e}
spec:
  priority: 10
  blocklists:
    - {name: contested, users: [contested_user], code: 38050, message: low priority}
---
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: high, namespace: e2e}
spec:
  priority: 20
  blocklists:
    - {name: contested, users: [contested_user], code: 38051, message: high priority}
---
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: b-tie, namespace: e2e}
spec:
  priority: 5
  blocklists:
    - {name: tied, users: [tied_user], code: 38053, message: b-tie}
---
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: a-tie, namespace: e2e}
spec:
  priority: 5
  blocklists:
    - {name: tied, users: [tied_user], code: 38052, message: a-tie}
---
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: aa, namespace: e2e-b}
spec:
  priority: 5
  blocklists:
    - {name: tied, users: [ns_tied_user], code: 38055, message: e2e-b/aa}
---
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: zz, namespace: e2e-a}
spec:
  priority: 5
  blocklists:
    - {name: tied, users: [ns_tied_user], code: 38054, message: e2e-a/zz}
---
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: platform-rule, namespace: e2e}
spec:
  appIDs: ["1400000101"]
  rules:
    - {name: web, platforms: [Web], code: 38061, message: not from the web}
---
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: cidr-rule, namespace: e2e}
spec:
  appIDs: ["1400000102"]
  rules:
    - {name: bad-network, clientCIDRs: [203.0.113.0/24, "2001:db8:bad::/48"], code: 38062, message: not from this network}
---
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: wording-rule, namespace: e2e}
spec:
  appIDs: ["1400000103"]
  rules:
    - {name: contacts, wordingPatterns: ['https?://', '(?i)wechat'], code: 38063, message: no contact details}
---
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: when-rule, namespace: e2e}
spec:
  appIDs: ["1400000104"]
  rules:
    - name: guests
      when: "request.from.startsWith('guest_') && !request.forceAdd"
      code: 38064
      message: guests need an admin
---
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: failing-rule, namespace: e2e}
spec:
  appIDs: ["1400000106"]
  rules:
    - {name: numeric-wording, when: "int(request.wording) > 5", code: 38066, message: number too large}
---
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: all-conditions, namespace: e2e}
spec:
  appIDs: ["1400000105"]
  rules:
    - name: android-search-from-network
      platforms: [Android]
      addSources: [AddSource_Type_Search]
      clientCIDRs: [198.51.100.0/24]
      code: 38065
      message: all conditions hold
`

// friendRequest is a Tencent Sns.CallbackPrevFriendAdd with one friend item. Empty fields
// take defaults: app 1400000009 (which no policy is scoped to), from alice, to bob,
// wording hello, AddSource_Type_Android, and tencentPath's OptPlatform and ClientIP.
type friendRequest struct {
	app, platform, clientIP      string
	from, to, wording, addSource string
	forceAdd                     bool
}

func (r friendRequest) exchange(name string, want resultItem) exchange {
	to := cmp.Or(r.to, "bob")
	force := 0
	if r.forceAdd {
		force = 1
	}
	body := fmt.Sprintf(`{"CallbackCommand":"Sns.CallbackPrevFriendAdd","Requester_Account":%[1]s,"From_Account":%[1]s,`+
		`"FriendItem":[{"To_Account":%s,"Remark":"","GroupName":"","AddSource":%s,"AddWording":%s}],`+
		`"AddType":"Add_Type_Both","ForceAddFlags":%d,"EventTime":1767225600000}`,
		jsonString(cmp.Or(r.from, "alice")), jsonString(to), jsonString(cmp.Or(r.addSource, "AddSource_Type_Android")),
		jsonString(cmp.Or(r.wording, "hello")), force)
	var params []string
	if r.platform != "" {
		params = append(params, "OptPlatform", r.platform)
	}
	if r.clientIP != "" {
		params = append(params, "ClientIP", r.clientIP)
	}
	want.to = to
	return exchange{
		name:       name,
		path:       tencentPath(cmp.Or(r.app, "1400000009"), "Sns.CallbackPrevFriendAdd", params...),
		body:       body,
		wantStatus: http.StatusOK,
		wantBody:   tencentResult(want),
	}
}

// verdict is the item verdict of a deny code and message; its To_Account is filled in by
// friendRequest.exchange.
func verdict(code int, message string) resultItem { return resultItem{code: code, info: message} }

func TestPolicySemantics(t *testing.T) {
	t.Parallel()
	s := startServer(t, writePolicies(t, semanticsPolicies))
	pass := resultItem{}
	// openIM is an OpenIM friend request through /openim/<app>/<command>, or /openim/<command>
	// when app is empty.
	openIM := func(name, app, from, to, want string) exchange {
		path := openIMPath("callbackBeforeAddFriendCommand")
		if app != "" {
			path = "/openim/" + app + "/callbackBeforeAddFriendCommand"
		}
		return exchange{name: name, path: path, body: openIMAddFriend(from, to, "hello"), wantStatus: http.StatusOK, wantBody: want}
	}

	t.Run("appID scoping", func(t *testing.T) {
		t.Parallel()
		scoped := verdict(38040, "refused in this app")
		scopedDeny := openIMDeny(38040, "refused in this app", "e2e/app-scoped/blocklist/scoped")
		s.checkAll(t, []exchange{
			friendRequest{app: "1400000001", to: "scoped_user"}.exchange("Tencent app in appIDs", scoped),
			friendRequest{app: "1400000002", to: "scoped_user"}.exchange("Tencent app not in appIDs", pass),
			openIM("OpenIM app segment in appIDs", "imapp", "alice", "scoped_user", scopedDeny),
			openIM("OpenIM app segment not in appIDs", "otherapp", "alice", "scoped_user", openIMContinue),
			openIM("OpenIM path without app segment", "", "alice", "scoped_user", openIMContinue),
			{name: "OpenIM legacy query form with app segment", path: "/openim/imapp?command=callbackBeforeAddFriendCommand",
				body: openIMAddFriend("alice", "scoped_user", "hello"), wantStatus: http.StatusOK, wantBody: scopedDeny},
		})
	})

	t.Run("exemptions", func(t *testing.T) {
		t.Parallel()
		s.checkAll(t, []exchange{
			openIM("no exemption", "", "alice", "guarded_user", openIMDeny(38045, "guarded", "e2e/exemptions/blocklist/guarded")),
			openIM("exempt user on the acting side", "", "vip_user", "guarded_user", openIMContinue),
			openIM("exempt prefix on the other side", "", "guarded_user", "staff_ann", openIMContinue),
		})
	})

	t.Run("priority", func(t *testing.T) {
		t.Parallel()
		s.checkAll(t, []exchange{
			openIM("higher priority decides", "", "alice", "contested_user", openIMDeny(38051, "high priority", "e2e/high/blocklist/contested")),
			openIM("tie goes to the first name", "", "alice", "tied_user", openIMDeny(38052, "a-tie", "e2e/a-tie/blocklist/tied")),
			openIM("tie goes to the first namespace", "", "alice", "ns_tied_user", openIMDeny(38054, "e2e-a/zz", "e2e-a/zz/blocklist/tied")),
		})
	})

	t.Run("rule conditions", func(t *testing.T) {
		t.Parallel()
		const platformApp, cidrApp, wordingApp, whenApp, allApp = "1400000101", "1400000102", "1400000103", "1400000104", "1400000105"
		web := verdict(38061, "not from the web")
		network := verdict(38062, "not from this network")
		contacts := verdict(38063, "no contact details")
		guests := verdict(38064, "guests need an admin")
		all := verdict(38065, "all conditions hold")
		s.checkAll(t, []exchange{
			friendRequest{app: platformApp, platform: "Web"}.exchange("platform as written", web),
			friendRequest{app: platformApp, platform: "web"}.exchange("platform in lower case", web),
			friendRequest{app: platformApp, platform: "WEB"}.exchange("platform in upper case", web),
			friendRequest{app: platformApp, platform: "Android"}.exchange("other platform", pass),

			friendRequest{app: cidrApp, clientIP: "203.0.113.9"}.exchange("client in IPv4 CIDR", network),
			friendRequest{app: cidrApp, clientIP: "2001:db8:bad::1"}.exchange("client in IPv6 CIDR", network),
			friendRequest{app: cidrApp, clientIP: "::ffff:203.0.113.9"}.exchange("IPv4-mapped client in IPv4 CIDR", network),
			friendRequest{app: cidrApp, clientIP: "203.0.114.9"}.exchange("client outside the CIDRs", pass),
			friendRequest{app: cidrApp, clientIP: "not-an-ip"}.exchange("unparsable client IP", pass),

			friendRequest{app: wordingApp, wording: "see http://shop.example"}.exchange("wording matches the first pattern", contacts),
			friendRequest{app: wordingApp, wording: "add me on WeChat"}.exchange("wording matches a case-insensitive pattern", contacts),
			friendRequest{app: wordingApp, wording: "hello there"}.exchange("wording matches no pattern", pass),

			friendRequest{app: whenApp, from: "guest_9"}.exchange("CEL when holds", guests),
			friendRequest{app: whenApp, from: "guest_9", forceAdd: true}.exchange("CEL when fails on forceAdd", pass),
			friendRequest{app: whenApp, from: "alice"}.exchange("CEL when fails on from", pass),

			friendRequest{app: allApp, platform: "Android", addSource: "AddSource_Type_Search", clientIP: "198.51.100.7"}.exchange("every condition holds", all),
			friendRequest{app: allApp, platform: "iOS", addSource: "AddSource_Type_Search", clientIP: "198.51.100.7"}.exchange("platform does not hold", pass),
			friendRequest{app: allApp, platform: "Android", addSource: "AddSource_Type_QR", clientIP: "198.51.100.7"}.exchange("add source does not hold", pass),
			friendRequest{app: allApp, platform: "Android", addSource: "AddSource_Type_Search", clientIP: "192.0.2.7"}.exchange("client CIDR does not hold", pass),
		})
	})

	t.Run("a when expression that fails at run time does not match", func(t *testing.T) {
		t.Parallel()
		const app = "1400000106"
		s.check(t, friendRequest{app: app, wording: "10"}.exchange("", verdict(38066, "number too large")))
		s.check(t, friendRequest{app: app, wording: "ten"}.exchange("", pass))
		s.checkMetric(t, "friendgate_rule_evaluation_errors_total", nil, 1)
	})

	t.Run("DryRun", func(t *testing.T) {
		t.Parallel()
		s.check(t, friendRequest{to: "watched_user"}.exchange("", pass))
		line := s.waitLog(t, map[string]string{
			"msg":      "would deny (dry run)",
			"protocol": "tencent",
			"command":  "Sns.CallbackPrevFriendAdd",
			"from":     "alice",
			"to":       "watched_user",
			"policy":   "e2e/audit",
			"entry":    "e2e/audit/blocklist/watched",
			"code":     "38020",
		})
		// docs/callback-server.md, "Logs": DryRun lines carry the message too.
		if got := line["message"]; got != "would be refused" {
			t.Errorf("would-deny log line has message %v, want %q; line: %v", got, "would be refused", line)
		}
		s.checkMetric(t, "friendgate_decisions_total", map[string]string{"policy": "e2e/audit", "result": "would-deny"}, 1)
		s.checkMetric(t, "friendgate_decisions_total", map[string]string{"policy": "e2e/audit", "result": "deny"}, 0)
	})
}
