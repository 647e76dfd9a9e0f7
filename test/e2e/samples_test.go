package e2e

import (
	"net/http"
	"path/filepath"
	"testing"

	"github.com/friendgate/friendgate/internal/testenv"
)

// TestSamples serves config/samples, the policies the README points users at.
func TestSamples(t *testing.T) {
	t.Parallel()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, filepath.Join(root, "config", "samples"))
	const webshop = "1400000001"
	webSearch := func(app string) string {
		return tencentPath(app, "Sns.CallbackPrevFriendAdd", "OptPlatform", "Web")
	}
	searchBody := `{"CallbackCommand":"Sns.CallbackPrevFriendAdd","From_Account":"alice","FriendItem":[{"To_Account":"bob","AddSource":"AddSource_Type_Search","AddWording":"hello"}],"AddType":"Add_Type_Both","ForceAddFlags":0}`

	s.checkAll(t, []exchange{
		{name: "ordinary request", path: openIMPath("callbackBeforeAddFriendCommand"), body: openIMAddFriend("alice", "bob", "hi, we met at the meetup"),
			wantStatus: http.StatusOK, wantBody: openIMContinue},
		{name: "spammer from the ConfigMap list", path: openIMPath("callbackBeforeAddFriendCommand"), body: openIMAddFriend("spam_1003", "bob", "hello"),
			wantStatus: http.StatusOK, wantBody: openIMDeny(38001, "this account cannot add friends", "default/anti-spam/blocklist/known-spammers")},
		{name: "guest without admin force", path: openIMPath("callbackBeforeAddFriendCommand"), body: openIMAddFriend("guest_9", "bob", "hello"),
			wantStatus: http.StatusOK, wantBody: openIMDeny(38003, "guest accounts cannot send friend requests", "default/anti-spam/rule/guests-need-admin")},
		{name: "guest forced by an admin", path: tencentPath("1400000002", "Sns.CallbackPrevFriendAdd"),
			body:       `{"CallbackCommand":"Sns.CallbackPrevFriendAdd","From_Account":"guest_9","FriendItem":[{"To_Account":"bob","AddWording":"hello"}],"ForceAddFlags":1}`,
			wantStatus: http.StatusOK, wantBody: tencentResult(allowed("bob"))},
		{name: "web search on the webshop app", path: webSearch(webshop), body: searchBody,
			wantStatus: http.StatusOK, wantBody: tencentResult(denied("bob", 38010, "add friends from the mobile app"))},
		{name: "web search on another app", path: webSearch("1400000002"), body: searchBody,
			wantStatus: http.StatusOK, wantBody: tencentResult(allowed("bob"))},
		{name: "answer from an abusive network", path: tencentPath(webshop, "Sns.CallbackPrevFriendResponse", "ClientIP", "203.0.113.77"),
			body:       `{"CallbackCommand":"Sns.CallbackPrevFriendResponse","From_Account":"bob","ResponseFriendItem":[{"To_Account":"alice","ResponseAction":"Response_Action_Agree"}]}`,
			wantStatus: http.StatusOK, wantBody: tencentResult(denied("alice", 38011, "requests from this network are refused"))},
		{name: "blacklisting an official account", path: openIMPath("callbackBeforeAddBlackCommand"),
			body:       `{"callbackCommand":"callbackBeforeAddBlackCommand","ownerUserID":"alice","blackUserID":"official_news"}`,
			wantStatus: http.StatusOK, wantBody: openIMDeny(38030, "official accounts cannot be blacklisted", "default/official-accounts/blocklist/officials")},
		{name: "remark with a link", path: openIMPath("callbackBeforeSetFriendRemarkCommand"),
			body:       `{"callbackCommand":"callbackBeforeSetFriendRemarkCommand","ownerUserID":"alice","friendUserID":"bob","remark":"http://x.example"}`,
			wantStatus: http.StatusOK, wantBody: openIMDeny(38031, "remarks cannot contain links", "default/clean-remarks/rule/remark-links")},
	})

	t.Run("empty greeting is only audited", func(t *testing.T) {
		t.Parallel()
		s.check(t, exchange{path: openIMPath("callbackBeforeAddFriendCommand"), body: openIMAddFriend("alice", "quiet_target", "  "),
			wantStatus: http.StatusOK, wantBody: openIMContinue})
		s.waitLog(t, map[string]string{"msg": "would deny (dry run)", "to": "quiet_target", "policy": "default/audit-empty-greetings", "code": "38020"})
	})
	t.Run("keyword dictionary from a ConfigMap, logged but not told", func(t *testing.T) {
		t.Parallel()
		s.check(t, exchange{path: openIMPath("callbackBeforeAddFriendCommand"), body: openIMAddFriend("alice", "kw_target", "add my S.K.Y.P.E: x"),
			wantStatus: http.StatusOK, wantBody: openIMDeny(38004, "this greeting looks like spam", "default/anti-spam/rule/contact-bait")})
		s.waitLog(t, map[string]string{"msg": "denied", "to": "kw_target", "keyword": "skype", "keywordSource": "ConfigMap spam-words key words.txt"})
	})
}
