package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestTencent(t *testing.T) {
	t.Parallel()
	s := startServer(t, writePolicies(t, protocolPolicies))

	const (
		app      = "1400000001"
		add      = "Sns.CallbackPrevFriendAdd"
		response = "Sns.CallbackPrevFriendResponse"
	)
	spammer := func(to string) resultItem { return denied(to, 38001, "this account cannot add friends") }
	// responseBody answers friend requests: From_Account responds, each To_Account requested.
	responseBody := func(responder string, requesters ...string) string {
		items := make([]string, len(requesters))
		for i, r := range requesters {
			items[i] = `{"To_Account":` + jsonString(r) + `,"Remark":"","TagName":"","ResponseAction":"Response_Action_AgreeAndAdd"}`
		}
		return fmt.Sprintf(`{"CallbackCommand":"Sns.CallbackPrevFriendResponse","Requester_Account":%[1]s,"From_Account":%[1]s,"ResponseFriendItem":[%s],"EventTime":1767225600000}`,
			jsonString(responder), strings.Join(items, ","))
	}

	s.checkAll(t, []exchange{
		// Sns.CallbackPrevFriendAdd: one ResultItem per FriendItem, in input order.
		{name: "friend add batch with mixed verdicts", path: tencentPath(app, add),
			body: `{"CallbackCommand":"Sns.CallbackPrevFriendAdd","Requester_Account":"alice","From_Account":"alice","FriendItem":[` +
				`{"To_Account":"bob","Remark":"","GroupName":"","AddSource":"AddSource_Type_Android","AddWording":"hello"},` +
				`{"To_Account":"spam_1","Remark":"","GroupName":"","AddSource":"AddSource_Type_Android","AddWording":"hello"},` +
				`{"To_Account":"carol","Remark":"","GroupName":"","AddSource":"AddSource_Type_Android","AddWording":"see https://spam.example"},` +
				`{"To_Account":"bot_2","Remark":"","GroupName":"","AddSource":"AddSource_Type_Android","AddWording":"hello"},` +
				`{"To_Account":"dave","Remark":"","GroupName":"","AddSource":"AddSource_Type_Android","AddWording":"hello"}` +
				`],"AddType":"Add_Type_Both","ForceAddFlags":0,"EventTime":1767225600000}`,
			wantStatus: http.StatusOK,
			wantBody: `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ResultItem":[` +
				`{"To_Account":"bob","ResultCode":0,"ResultInfo":""},` +
				`{"To_Account":"spam_1","ResultCode":38001,"ResultInfo":"this account cannot add friends"},` +
				`{"To_Account":"carol","ResultCode":38002,"ResultInfo":"links are not allowed"},` +
				`{"To_Account":"bot_2","ResultCode":38001,"ResultInfo":"this account cannot add friends"},` +
				`{"To_Account":"dave","ResultCode":0,"ResultInfo":""}]}`},
		{name: "friend add from a blocklisted user", path: tencentPath(app, add), body: friendAdd("spam_1", "bob", "carol"),
			wantStatus: http.StatusOK, wantBody: tencentResult(spammer("bob"), spammer("carol"))},
		{name: "friend add allowed", path: tencentPath(app, add), body: friendAdd("alice", "bob"),
			wantStatus: http.StatusOK, wantBody: tencentResult(allowed("bob"))},
		{name: "friend add without items", path: tencentPath(app, add), body: friendAdd("alice"),
			wantStatus: http.StatusOK, wantBody: tencentResult()},

		// Sns.CallbackPrevFriendResponse: From_Account is the responder (from), each
		// To_Account the original requester (to).
		{name: "friend response by a responder blocklisted as From", path: tencentPath(app, response),
			body:       responseBody("muted_responder", "alice"),
			wantStatus: http.StatusOK, wantBody: tencentResult(denied("alice", 38011, "this account cannot accept friends"))},
		{name: "friend response batch maps To_Account to the requester", path: tencentPath(app, response),
			body:       responseBody("alice", "muted_responder", "muted_requester", "bob"),
			wantStatus: http.StatusOK, wantBody: tencentResult(allowed("muted_responder"), denied("muted_requester", 38012, "this request cannot be accepted"), allowed("bob"))},

		// Notifications and unknown commands get the plain OK, even for blocklisted users.
		{name: "Sns.CallbackFriendAdd", path: tencentPath(app, "Sns.CallbackFriendAdd"),
			body:       `{"CallbackCommand":"Sns.CallbackFriendAdd","PairList":[{"From_Account":"spam_1","To_Account":"bot_1","Initiator_Account":"spam_1"}],"ClientCmd":"friend_add","Admin_Account":"","ForceFlag":0,"EventTime":1767225600000}`,
			wantStatus: http.StatusOK, wantBody: tencentOK},
		{name: "Sns.CallbackFriendDelete", path: tencentPath(app, "Sns.CallbackFriendDelete"),
			body:       `{"CallbackCommand":"Sns.CallbackFriendDelete","PairList":[{"From_Account":"spam_1","To_Account":"bot_1"}],"EventTime":1767225600000}`,
			wantStatus: http.StatusOK, wantBody: tencentOK},
		{name: "Sns.CallbackBlackListAdd", path: tencentPath(app, "Sns.CallbackBlackListAdd"),
			body:       `{"CallbackCommand":"Sns.CallbackBlackListAdd","PairList":[{"From_Account":"alice","To_Account":"official_news"}],"EventTime":1767225600000}`,
			wantStatus: http.StatusOK, wantBody: tencentOK},
		{name: "Sns.CallbackBlackListDelete", path: tencentPath(app, "Sns.CallbackBlackListDelete"),
			body:       `{"CallbackCommand":"Sns.CallbackBlackListDelete","PairList":[{"From_Account":"alice","To_Account":"official_news"}],"EventTime":1767225600000}`,
			wantStatus: http.StatusOK, wantBody: tencentOK},
		{name: "unknown command", path: tencentPath(app, "C2C.CallbackBeforeSendMsg"),
			body:       `{"CallbackCommand":"C2C.CallbackBeforeSendMsg","From_Account":"spam_1","To_Account":"bob"}`,
			wantStatus: http.StatusOK, wantBody: tencentOK},
	})
}
