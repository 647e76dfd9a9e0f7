package e2e

import (
	"net/http"
	"testing"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	s := startServer(t, writePolicies(t, protocolPolicies))
	const (
		openIMAdd  = "callbackBeforeAddFriendCommand"
		tencentAdd = "Sns.CallbackPrevFriendAdd"
	)
	for _, ex := range []exchange{
		{path: openIMPath(openIMAdd), body: openIMAddFriend("spam_1", "bob", "hello"), wantStatus: http.StatusOK, wantBody: spammerDeny},
		{path: openIMPath(openIMAdd), body: openIMAddFriend("alice", "bob", "hello"), wantStatus: http.StatusOK, wantBody: openIMContinue},
		{path: tencentPath(vendorApp, tencentAdd), body: friendAdd("alice", "bob", "spam_1"), wantStatus: http.StatusOK,
			wantBody: tencentResult(allowed("bob"), denied("spam_1", 38001, "this account cannot add friends"))},
	} {
		s.check(t, ex)
	}

	for _, m := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"friendgate_decisions_total", map[string]string{"protocol": "openim", "command": openIMAdd, "event": "FriendRequest", "result": "deny", "policy": "e2e/spam"}, 1},
		{"friendgate_decisions_total", map[string]string{"protocol": "openim", "command": openIMAdd, "event": "FriendRequest", "result": "allow"}, 1},
		{"friendgate_decisions_total", map[string]string{"protocol": "tencent", "command": tencentAdd, "event": "FriendRequest", "result": "deny", "policy": "e2e/spam"}, 1},
		{"friendgate_decisions_total", map[string]string{"protocol": "tencent", "command": tencentAdd, "event": "FriendRequest", "result": "allow"}, 1},
		{"friendgate_callback_requests_total", map[string]string{"protocol": "openim", "command": openIMAdd, "code": "200"}, 2},
		{"friendgate_callback_requests_total", map[string]string{"protocol": "tencent", "command": tencentAdd, "code": "200"}, 1},
		{"friendgate_callback_duration_seconds", map[string]string{"protocol": "openim", "command": openIMAdd}, 2},
		{"friendgate_callback_duration_seconds", map[string]string{"protocol": "tencent", "command": tencentAdd}, 1},
		{"friendgate_snapshot_policies", nil, 4},
	} {
		s.checkMetric(t, m.name, m.labels, m.want)
	}
}
