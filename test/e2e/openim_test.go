package e2e

import (
	"fmt"
	"net/http"
	"testing"
)

// Deny answers of protocolPolicies.
var (
	spammerDeny    = openIMDeny(38001, "this account cannot add friends", "e2e/spam/blocklist/spammers")
	linkDeny       = openIMDeny(38002, "links are not allowed", "e2e/spam/rule/no-links")
	responderDeny  = openIMDeny(38011, "this account cannot accept friends", "e2e/responses/blocklist/muted-responders")
	requesterDeny  = openIMDeny(38012, "this request cannot be accepted", "e2e/responses/blocklist/muted-requesters")
	answerLinkDeny = openIMDeny(38013, "links are not allowed in answers", "e2e/responses/rule/no-links-in-answers")
	officialDeny   = openIMDeny(38030, "official accounts cannot be blacklisted", "e2e/blacklist/blocklist/officials")
	protectedDeny  = openIMDeny(38031, "this remark cannot be changed", "e2e/remarks/blocklist/protected")
	remarkLinkDeny = openIMDeny(38032, "remarks cannot contain links", "e2e/remarks/rule/remark-links")
)

func TestOpenIM(t *testing.T) {
	t.Parallel()
	s := startServer(t, writePolicies(t, protocolPolicies))

	const (
		addFriend     = "callbackBeforeAddFriendCommand"
		agree         = "callbackBeforeAddFriendAgreeCommand"
		importFriends = "callbackBeforeImportFriendsCommand"
		addBlack      = "callbackBeforeAddBlackCommand"
		setRemark     = "callbackBeforeSetFriendRemarkCommand"
	)
	// agreeBody sends the accepting user under blackUserID, as the OpenIM server does.
	agreeBody := func(requester, responder, msg string) string {
		return fmt.Sprintf(`{"callbackCommand":"callbackBeforeAddFriendAgreeCommand","fromUserID":%s,"blackUserID":%s,"HandleResult":1,"HandleMsg":%s}`,
			jsonString(requester), jsonString(responder), jsonString(msg))
	}
	// importBody imports friends, a JSON array, for owner.
	importBody := func(owner string, friends string) string {
		return fmt.Sprintf(`{"callbackCommand":"callbackBeforeImportFriendsCommand","ownerUserID":%s,"friendUserIDs":%s}`, jsonString(owner), friends)
	}
	spamBody := openIMAddFriend("spam_1", "bob", "hello")

	s.checkAll(t, []exchange{
		// callbackBeforeAddFriendCommand: from = fromUserID, to = toUserID, wording = reqMsg.
		{name: "add friend allowed", path: openIMPath(addFriend), body: openIMAddFriend("alice", "bob", "hi, we met at the meetup"),
			wantStatus: http.StatusOK, wantBody: openIMContinue},
		{name: "add friend from a blocklisted user", path: openIMPath(addFriend), body: spamBody,
			wantStatus: http.StatusOK, wantBody: spammerDeny},
		{name: "add friend to a blocklisted prefix", path: openIMPath(addFriend), body: openIMAddFriend("alice", "bot_7", "hello"),
			wantStatus: http.StatusOK, wantBody: spammerDeny},
		{name: "add friend denied by a wording rule", path: openIMPath(addFriend), body: openIMAddFriend("alice", "bob", "see https://spam.example"),
			wantStatus: http.StatusOK, wantBody: linkDeny},

		// The URL forms of OpenIM versions; each must still find the command.
		{name: "path with app segment", path: "/openim/imapp/" + addFriend, body: spamBody,
			wantStatus: http.StatusOK, wantBody: spammerDeny},
		{name: "legacy query form", path: "/openim?command=" + addFriend, body: spamBody,
			wantStatus: http.StatusOK, wantBody: spammerDeny},
		{name: "legacy query form with app segment", path: "/openim/imapp?command=" + addFriend, body: spamBody,
			wantStatus: http.StatusOK, wantBody: spammerDeny},
		{name: "trailing slash", path: "/openim/" + addFriend + "/", body: spamBody,
			wantStatus: http.StatusOK, wantBody: spammerDeny},
		{name: "empty path segment", path: "/openim//" + addFriend, body: spamBody,
			wantStatus: http.StatusOK, wantBody: spammerDeny},
		{name: "command only in the body", path: "/openim", body: spamBody,
			wantStatus: http.StatusOK, wantBody: spammerDeny},

		// callbackBeforeAddFriendAgreeCommand: from = blackUserID (the responder),
		// to = fromUserID (the original requester), wording = HandleMsg.
		{name: "agree allowed", path: openIMPath(agree), body: agreeBody("alice", "bob", "welcome"),
			wantStatus: http.StatusOK, wantBody: openIMContinue},
		{name: "agree by a responder blocklisted as From", path: openIMPath(agree), body: agreeBody("alice", "muted_responder", ""),
			wantStatus: http.StatusOK, wantBody: responderDeny},
		{name: "agree to a requester blocklisted as To", path: openIMPath(agree), body: agreeBody("muted_requester", "bob", ""),
			wantStatus: http.StatusOK, wantBody: requesterDeny},
		{name: "agree: fromUserID is not the acting user", path: openIMPath(agree), body: agreeBody("muted_responder", "bob", ""),
			wantStatus: http.StatusOK, wantBody: openIMContinue},
		{name: "agree: blackUserID is not the other user", path: openIMPath(agree), body: agreeBody("alice", "muted_requester", ""),
			wantStatus: http.StatusOK, wantBody: openIMContinue},
		{name: "agree with the responder as toUserID", path: openIMPath(agree),
			body:       `{"callbackCommand":"callbackBeforeAddFriendAgreeCommand","fromUserID":"alice","toUserID":"muted_responder","HandleResult":1,"HandleMsg":""}`,
			wantStatus: http.StatusOK, wantBody: responderDeny},
		{name: "agree denied by a rule on HandleMsg", path: openIMPath(agree), body: agreeBody("alice", "bob", "my shop: http://shop.example"),
			wantStatus: http.StatusOK, wantBody: answerLinkDeny},
		{name: "agree under its alias callbackBeforeReplyFriendResp", path: openIMPath("callbackBeforeReplyFriendResp"),
			body:       `{"callbackCommand":"callbackBeforeReplyFriendResp","fromUserID":"alice","toUserID":"muted_responder"}`,
			wantStatus: http.StatusOK, wantBody: responderDeny},

		// callbackBeforeImportFriendsCommand: one item per friend; a partial deny answers the
		// allowed friends in input order.
		{name: "import with some friends denied", path: openIMPath(importFriends),
			body:       importBody("admin", `["alice","spam_1","bob","bot_7","carol"]`),
			wantStatus: http.StatusOK, wantBody: openIMImport("alice", "bob", "carol")},
		{name: "import with every friend denied", path: openIMPath(importFriends), body: importBody("admin", `["spam_1","bot_7"]`),
			wantStatus: http.StatusOK, wantBody: spammerDeny},
		{name: "import with no friend denied", path: openIMPath(importFriends), body: importBody("admin", `["alice","bob"]`),
			wantStatus: http.StatusOK, wantBody: openIMContinue},
		{name: "import for a blocklisted owner", path: openIMPath(importFriends), body: importBody("spam_1", `["alice","bob"]`),
			wantStatus: http.StatusOK, wantBody: spammerDeny},

		// callbackBeforeAddBlackCommand: from = ownerUserID, to = blackUserID.
		{name: "add black denied", path: openIMPath(addBlack),
			body:       `{"callbackCommand":"callbackBeforeAddBlackCommand","ownerUserID":"alice","blackUserID":"official_news"}`,
			wantStatus: http.StatusOK, wantBody: officialDeny},
		{name: "add black by the protected user allowed", path: openIMPath(addBlack),
			body:       `{"callbackCommand":"callbackBeforeAddBlackCommand","ownerUserID":"official_news","blackUserID":"alice"}`,
			wantStatus: http.StatusOK, wantBody: openIMContinue},

		// callbackBeforeSetFriendRemarkCommand: from = ownerUserID, to = friendUserID.
		{name: "set remark denied by a rule on the remark", path: openIMPath(setRemark),
			body:       `{"callbackCommand":"callbackBeforeSetFriendRemarkCommand","ownerUserID":"alice","friendUserID":"bob","remark":"http://x.example"}`,
			wantStatus: http.StatusOK, wantBody: remarkLinkDeny},
		{name: "set remark on a blocklisted friend", path: openIMPath(setRemark),
			body:       `{"callbackCommand":"callbackBeforeSetFriendRemarkCommand","ownerUserID":"alice","friendUserID":"protected_user","remark":"colleague"}`,
			wantStatus: http.StatusOK, wantBody: protectedDeny},
		{name: "set remark by the blocklisted user allowed", path: openIMPath(setRemark),
			body:       `{"callbackCommand":"callbackBeforeSetFriendRemarkCommand","ownerUserID":"protected_user","friendUserID":"alice","remark":"colleague"}`,
			wantStatus: http.StatusOK, wantBody: openIMContinue},
	})

	// Notifications and unknown commands continue, even for users every policy refuses.
	var notifications []exchange
	for _, command := range []string{
		"callbackAfterAddFriendCommand",
		"callbackAfterAddFriendAgreeCommand",
		"callbackAfterDeleteFriendCommand",
		"callbackAfterImportFriendsCommand",
		"callbackAfterSetFriendRemarkCommand",
		"callbackAfterRemoveBlackCommand",
		"callbackBeforeSendSingleMsgCommand",
	} {
		body := `{"callbackCommand":` + jsonString(command) + `,"fromUserID":"spam_1","toUserID":"bot_1","ownerUserID":"spam_1","friendUserIDs":["bot_1"],"blackUserID":"official_news"}`
		notifications = append(notifications,
			exchange{name: command, path: openIMPath(command), body: body, wantStatus: http.StatusOK, wantBody: openIMContinue},
			exchange{name: command + " in the legacy query form", path: "/openim?command=" + command, body: body, wantStatus: http.StatusOK, wantBody: openIMContinue})
	}
	s.checkAll(t, notifications)

	t.Run("a denial is logged with its operationID", func(t *testing.T) {
		t.Parallel()
		s.check(t, exchange{path: openIMPath(addFriend), operationID: "op-e2e-7f3a", body: openIMAddFriend("alice", "bot_log", "hello"),
			wantStatus: http.StatusOK, wantBody: spammerDeny})
		s.waitLog(t, map[string]string{
			"msg":         "denied",
			"operationID": "op-e2e-7f3a",
			"protocol":    "openim",
			"command":     addFriend,
			"from":        "alice",
			"to":          "bot_log",
			"policy":      "e2e/spam",
			"entry":       "e2e/spam/blocklist/spammers",
			"code":        "38001",
		})
	})
}
