package webhook

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// The fuzz targets send arbitrary paths, queries and bodies through the whole handler and
// require a status friendgate means to send and an answer the IM server can parse.

var fuzzStatuses = map[int]bool{200: true, 400: true, 401: true, 403: true, 404: true, 413: true}

func FuzzOpenIM(f *testing.F) {
	for _, seed := range []struct{ command, body string }{
		{"callbackBeforeAddFriendCommand", `{"fromUserID":"spam_1","toUserID":"bob","reqMsg":"http://x"}`},
		{"callbackBeforeAddFriendAgreeCommand", `{"fromUserID":"vip_1","blackUserID":"bob","HandleResult":1}`},
		{"callbackBeforeImportFriendsCommand", `{"ownerUserID":"a","friendUserIDs":["vip_1","b",""]}`},
		{"callbackBeforeAddBlackCommand", `{"ownerUserID":"a","blackUserID":"vip_1"}`},
		{"callbackBeforeSetFriendRemarkCommand", `{"ownerUserID":"spam_1","friendUserID":"b","remark":"\u0000"}`},
		{"", `{"callbackCommand":"callbackBeforeAddFriendCommand","fromUserID":"spam_1"}`},
		{"callbackAfterAddFriendCommand", `{`},
		{"shop/callbackBeforeAddFriendCommand", `{"fromUserID":"rival_1"}`},
		{"callbackBeforeAddFriendCommand", `null`},
		{"callbackBeforeAddFriendCommand", `{"fromUserID":"\xff"}`},
	} {
		f.Add(seed.command, seed.body)
	}
	s := newTestServer(f, Options{MaxBodyBytes: 4096, FailurePolicy: FailDeny}, true)
	f.Fuzz(func(t *testing.T, command, body string) {
		req := httptest.NewRequest(http.MethodPost, "/openim/", bytes.NewBufferString(body))
		req.URL.Path = "/openim/" + command
		req.RemoteAddr = "192.0.2.1:1"
		rec := httptest.NewRecorder()
		s.handler.ServeHTTP(rec, req)
		if !fuzzStatuses[rec.Code] {
			t.Fatalf("POST /openim/%q %q: status %d", command, body, rec.Code)
		}
		checkParseable(t, ProtocolOpenIM, rec.Body.Bytes())
	})
}

func FuzzTencent(f *testing.F) {
	for _, seed := range []struct{ command, body string }{
		{"Sns.CallbackPrevFriendAdd", `{"From_Account":"a","FriendItem":[{"To_Account":"vip_1"},{"To_Account":"b","AddWording":"https://"}],"ForceAddFlags":1}`},
		{"Sns.CallbackPrevFriendResponse", `{"From_Account":"spam_1","ResponseFriendItem":[{"To_Account":"b","ResponseAction":"Response_Action_Agree"}]}`},
		{"Sns.CallbackFriendAdd", `{"PairList":[]}`},
		{"Sns.CallbackPrevFriendAdd", `{"FriendItem":null}`},
		{"Sns.CallbackPrevFriendAdd", `{"FriendItem":[{"To_Account":"\ud800"}]}`},
		{"x&Sign=1", `[]`},
	} {
		f.Add(seed.command, "1400000001", seed.body)
	}
	s := newTestServer(f, Options{MaxBodyBytes: 4096, FailurePolicy: FailAllow}, true)
	f.Fuzz(func(t *testing.T, command, appID, body string) {
		target := "/tencent?SdkAppid=" + url.QueryEscape(appID) + "&CallbackCommand=" + url.QueryEscape(command) + "&OptPlatform=Web&ClientIP=203.0.113.1"
		req := httptest.NewRequest(http.MethodPost, target, bytes.NewBufferString(body))
		rec := httptest.NewRecorder()
		s.handler.ServeHTTP(rec, req)
		if !fuzzStatuses[rec.Code] {
			t.Fatalf("POST %s %q: status %d", target, body, rec.Code)
		}
		checkParseable(t, ProtocolTencent, rec.Body.Bytes())
	})
}
