package webhook

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	clocktesting "k8s.io/utils/clock/testing"
)

const (
	allowOpenIM = `{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}`
	okTencent   = `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`
)

func TestOpenIM(t *testing.T) {
	s := newTestServer(t, Options{}, true)
	tests := []struct {
		name, target, body string
		want               string
	}{
		{"add friend allowed", "/openim/callbackBeforeAddFriendCommand",
			`{"callbackCommand":"callbackBeforeAddFriendCommand","fromUserID":"alice","toUserID":"bob","reqMsg":"hi","ex":""}`, allowOpenIM},
		{"add friend from a spammer", "/openim/callbackBeforeAddFriendCommand",
			`{"fromUserID":"spam_1","toUserID":"bob"}`,
			`{"actionCode":0,"errCode":38001,"errMsg":"spammer","errDlt":"im/anti-spam/blocklist/spammers","nextCode":1}`},
		{"add friend with a link", "/openim/callbackBeforeAddFriendCommand",
			`{"fromUserID":"alice","toUserID":"bob","reqMsg":"see https://x"}`,
			`{"actionCode":0,"errCode":38003,"errMsg":"no links","errDlt":"im/anti-spam/rule/no-links","nextCode":1}`},
		{"exempt user", "/openim/callbackBeforeAddFriendCommand",
			`{"fromUserID":"spam_1","toUserID":"support_1"}`, allowOpenIM},
		{"legacy query form", "/openim?command=callbackBeforeAddFriendCommand",
			`{"fromUserID":"spam_1","toUserID":"bob"}`,
			`{"actionCode":0,"errCode":38001,"errMsg":"spammer","errDlt":"im/anti-spam/blocklist/spammers","nextCode":1}`},
		{"command from the body", "/openim",
			`{"callbackCommand":"callbackBeforeAddFriendCommand","fromUserID":"spam_1","toUserID":"bob"}`,
			`{"actionCode":0,"errCode":38001,"errMsg":"spammer","errDlt":"im/anti-spam/blocklist/spammers","nextCode":1}`},
		{"app segment scopes policies", "/openim/shop/callbackBeforeAddFriendCommand",
			`{"fromUserID":"rival_7","toUserID":"bob"}`,
			`{"actionCode":0,"errCode":38010,"errMsg":"no rivals","errDlt":"im/shop/blocklist/competitors","nextCode":1}`},
		{"legacy form repeating the command in the path", "/openim/callbackBeforeAddFriendCommand?command=callbackBeforeAddFriendCommand",
			`{"fromUserID":"spam_1","toUserID":"bob"}`,
			`{"actionCode":0,"errCode":38001,"errMsg":"spammer","errDlt":"im/anti-spam/blocklist/spammers","nextCode":1}`},
		{"legacy form with an app segment", "/openim/shop?command=callbackBeforeAddFriendCommand",
			`{"fromUserID":"rival_7","toUserID":"bob"}`,
			`{"actionCode":0,"errCode":38010,"errMsg":"no rivals","errDlt":"im/shop/blocklist/competitors","nextCode":1}`},
		{"other apps ignore scoped policies", "/openim/other/callbackBeforeAddFriendCommand",
			`{"fromUserID":"rival_7","toUserID":"bob"}`, allowOpenIM},
		{"trailing slash in the configured URL", "/openim//callbackBeforeAddFriendCommand",
			`{"fromUserID":"spam_1","toUserID":"bob"}`,
			`{"actionCode":0,"errCode":38001,"errMsg":"spammer","errDlt":"im/anti-spam/blocklist/spammers","nextCode":1}`},
		// Agree: fromUserID is the requester (to), blackUserID the responder (from).
		{"agree: responder is a spammer", "/openim/callbackBeforeAddFriendAgreeCommand",
			`{"fromUserID":"bob","blackUserID":"spam_1","HandleResult":1,"HandleMsg":"ok"}`,
			`{"actionCode":0,"errCode":38001,"errMsg":"spammer","errDlt":"im/anti-spam/blocklist/spammers","nextCode":1}`},
		{"agree: requester is protected", "/openim/callbackBeforeAddFriendAgreeCommand",
			`{"fromUserID":"vip_1","blackUserID":"bob","HandleResult":1}`,
			`{"actionCode":0,"errCode":38002,"errMsg":"protected user","errDlt":"im/anti-spam/blocklist/protected","nextCode":1}`},
		{"agree: a spammer requester is not the responder", "/openim/callbackBeforeAddFriendAgreeCommand",
			`{"fromUserID":"spam_1","blackUserID":"bob","HandleResult":1}`, allowOpenIM},
		{"agree: toUserID when blackUserID is absent", "/openim/callbackBeforeAddFriendAgreeCommand",
			`{"fromUserID":"bob","toUserID":"spam_1","HandleResult":1}`,
			`{"actionCode":0,"errCode":38001,"errMsg":"spammer","errDlt":"im/anti-spam/blocklist/spammers","nextCode":1}`},
		{"agree alias callbackBeforeReplyFriendResp", "/openim/callbackBeforeReplyFriendResp",
			`{"fromUserID":"bob","blackUserID":"spam_1"}`,
			`{"actionCode":0,"errCode":38001,"errMsg":"spammer","errDlt":"im/anti-spam/blocklist/spammers","nextCode":1}`},
		{"import: none denied", "/openim/callbackBeforeImportFriendsCommand",
			`{"ownerUserID":"alice","friendUserIDs":["bob","carol"]}`, allowOpenIM},
		{"import: partial", "/openim/callbackBeforeImportFriendsCommand",
			`{"ownerUserID":"alice","friendUserIDs":["bob","vip_1","carol","vip_1"]}`,
			`{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0,"friendUserIDs":["bob","carol"]}`},
		{"import: all denied", "/openim/callbackBeforeImportFriendsCommand",
			`{"ownerUserID":"spam_1","friendUserIDs":["bob","carol"]}`,
			`{"actionCode":0,"errCode":38001,"errMsg":"spammer","errDlt":"im/anti-spam/blocklist/spammers","nextCode":1}`},
		{"import: empty list", "/openim/callbackBeforeImportFriendsCommand",
			`{"ownerUserID":"spam_1","friendUserIDs":[]}`, allowOpenIM},
		{"add black", "/openim/callbackBeforeAddBlackCommand",
			`{"ownerUserID":"alice","blackUserID":"vip_1"}`,
			`{"actionCode":0,"errCode":38002,"errMsg":"protected user","errDlt":"im/anti-spam/blocklist/protected","nextCode":1}`},
		{"set remark", "/openim/callbackBeforeSetFriendRemarkCommand",
			`{"ownerUserID":"spam_1","friendUserID":"bob","remark":"x"}`,
			`{"actionCode":0,"errCode":38001,"errMsg":"spammer","errDlt":"im/anti-spam/blocklist/spammers","nextCode":1}`},
		{"DryRun never denies", "/openim/callbackBeforeAddFriendCommand",
			`{"fromUserID":"watched_1","toUserID":"bob"}`, allowOpenIM},
		{"after command", "/openim/callbackAfterAddFriendCommand", `{"fromUserID":"spam_1"}`, allowOpenIM},
		{"after command with a body it does not read", "/openim/callbackAfterDeleteFriendCommand", `not json`, allowOpenIM},
		{"unknown command", "/openim/callbackBeforeSendSingleMsgCommand", `{"sendID":"spam_1"}`, allowOpenIM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := s.do(http.MethodPost, tt.target, tt.body, "operationID", "op-1")
			if rec.Code != http.StatusOK || rec.Body.String() != tt.want {
				t.Fatalf("POST %s %s\n got %d %s\nwant 200 %s", tt.target, tt.body, rec.Code, rec.Body, tt.want)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			checkParseable(t, ProtocolOpenIM, rec.Body.Bytes())
		})
	}
}

func TestTencent(t *testing.T) {
	s := newTestServer(t, Options{}, true)
	const q = "/tencent?SdkAppid=1400000001&contenttype=json&ClientIP=203.0.113.9&OptPlatform=iOS&CallbackCommand="
	tests := []struct {
		name, target, body, want string
	}{
		{"friend add batch with mixed items", q + "Sns.CallbackPrevFriendAdd",
			`{"CallbackCommand":"Sns.CallbackPrevFriendAdd","Requester_Account":"alice","From_Account":"alice","FriendItem":[` +
				`{"To_Account":"bob","Remark":"","GroupName":"","AddSource":"AddSource_Type_Search","AddWording":"hi"},` +
				`{"To_Account":"vip_1","AddWording":"hi"},` +
				`{"To_Account":"carol","AddWording":"visit http://spam"},` +
				`{"To_Account":"rival_2"}],"AddType":"Add_Type_Both","ForceAddFlags":0,"EventTime":1669872112000}`,
			`{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ResultItem":[` +
				`{"To_Account":"bob","ResultCode":0,"ResultInfo":""},` +
				`{"To_Account":"vip_1","ResultCode":38002,"ResultInfo":"protected user"},` +
				`{"To_Account":"carol","ResultCode":38003,"ResultInfo":"no links"},` +
				`{"To_Account":"rival_2","ResultCode":38010,"ResultInfo":"no rivals"}]}`},
		{"friend response: From_Account is the responder", q + "Sns.CallbackPrevFriendResponse",
			`{"From_Account":"spam_1","ResponseFriendItem":[{"To_Account":"bob","Remark":"","TagName":"","ResponseAction":"Response_Action_AgreeAndAdd"}],"EventTime":1}`,
			`{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ResultItem":[{"To_Account":"bob","ResultCode":38001,"ResultInfo":"spammer"}]}`},
		{"friend response: To_Account is the requester", q + "Sns.CallbackPrevFriendResponse",
			`{"From_Account":"bob","ResponseFriendItem":[{"To_Account":"spam_1"},{"To_Account":"vip_1"}]}`,
			`{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ResultItem":[{"To_Account":"spam_1","ResultCode":0,"ResultInfo":""},{"To_Account":"vip_1","ResultCode":38002,"ResultInfo":"protected user"}]}`},
		{"no items", q + "Sns.CallbackPrevFriendAdd", `{"From_Account":"alice","FriendItem":[]}`,
			`{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ResultItem":[]}`},
		{"another app ignores scoped policies", "/tencent?SdkAppid=1400000002&CallbackCommand=Sns.CallbackPrevFriendAdd",
			`{"From_Account":"alice","FriendItem":[{"To_Account":"rival_2"}]}`,
			`{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ResultItem":[{"To_Account":"rival_2","ResultCode":0,"ResultInfo":""}]}`},
		{"notification", q + "Sns.CallbackFriendAdd", `{"PairList":[{"From_Account":"a","To_Account":"b","Initiator_Account":"a"}]}`, okTencent},
		{"blacklist notification", q + "Sns.CallbackBlackListAdd", `{"PairList":[]}`, okTencent},
		{"unknown command", q + "C2C.CallbackBeforeSendMsg", `{}`, okTencent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := s.do(http.MethodPost, tt.target, tt.body)
			if rec.Code != http.StatusOK || rec.Body.String() != tt.want {
				t.Fatalf("POST %s %s\n got %d %s\nwant 200 %s", tt.target, tt.body, rec.Code, rec.Body, tt.want)
			}
			checkParseable(t, ProtocolTencent, rec.Body.Bytes())
		})
	}
}

func TestUndecidableRequests(t *testing.T) {
	const (
		openIM  = "/openim/callbackBeforeAddFriendCommand"
		tencent = "/tencent?SdkAppid=1&CallbackCommand=Sns.CallbackPrevFriendAdd"
		denyIM  = `{"actionCode":0,"errCode":38000,"errMsg":"friend request could not be checked","errDlt":"friendgate: `
	)
	big := `{"fromUserID":"` + strings.Repeat("a", 2000) + `"}`
	tests := []struct {
		name          string
		policy        FailurePolicy
		loaded        bool
		method        string
		target, body  string
		contentType   string
		wantStatus    int
		wantBodyStart string
	}{
		{"malformed OpenIM, Allow", FailAllow, true, "POST", openIM, `{"fromUserID":`, "", 400, allowOpenIM},
		{"malformed OpenIM, Deny", FailDeny, true, "POST", openIM, `{"fromUserID":`, "", 400, denyIM + "malformed JSON body"},
		{"wrong JSON type", FailDeny, true, "POST", openIM, `{"fromUserID":7}`, "", 400, denyIM + "malformed JSON body"},
		// Over a size bound the too-large policy (Deny by default) answers, not the failure policy.
		{"oversized OpenIM", FailAllow, true, "POST", openIM, big, "", 413, denyIM + "body of 2017 bytes is larger than the limit of 1024"},
		{"GET", FailDeny, true, "GET", openIM, "", "", 405, denyIM + "method GET not allowed"},
		{"form content type", FailAllow, true, "POST", openIM, `{}`, "application/x-www-form-urlencoded", 415, allowOpenIM},
		{"not loaded, Allow", FailAllow, false, "POST", openIM, `{"fromUserID":"a","toUserID":"b"}`, "", 503, allowOpenIM},
		{"not loaded, Deny", FailDeny, false, "POST", openIM, `{"fromUserID":"a","toUserID":"b"}`, "", 503, denyIM + "policies are not loaded yet"},
		{"unknown OpenIM path", FailAllow, true, "POST", "/openim/a/b/c", `{}`, "", 404, allowOpenIM},
		{"unknown OpenIM path, Deny", FailDeny, true, "POST", "/openim/a/b/c", `{}`, "", 404, denyIM + "unknown callback path"},
		{"command only in a malformed body, Deny", FailDeny, true, "POST", "/openim", `{"callbackCommand":`, "", 400, denyIM + "malformed JSON body"},
		{"notification with a malformed body, Deny", FailDeny, true, "POST", "/openim/callbackAfterAddFriendCommand", `{`, "", 200, allowOpenIM},
		{"malformed Tencent", FailAllow, true, "POST", tencent, `[`, "", 400, `{"ActionStatus":"FAIL","ErrorCode":400,"ErrorInfo":"friendgate: malformed JSON body`},
		{"oversized Tencent", FailDeny, true, "POST", tencent, big, "", 413, `{"ActionStatus":"FAIL","ErrorCode":413,"ErrorInfo":"friendgate: body of`},
		{"not loaded Tencent, Allow", FailAllow, false, "POST", tencent, `{"From_Account":"a","FriendItem":[{"To_Account":"b"}]}`, "", 200,
			`{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"friendgate: policies are not loaded yet","ResultItem":[{"To_Account":"b","ResultCode":0,"ResultInfo":""}]}`},
		{"not loaded Tencent, Deny", FailDeny, false, "POST", tencent, `{"From_Account":"a","FriendItem":[{"To_Account":"b"}]}`, "", 200,
			`{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"friendgate: policies are not loaded yet","ResultItem":[{"To_Account":"b","ResultCode":38000,"ResultInfo":"friend request could not be checked"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, Options{FailurePolicy: tt.policy, MaxBodyBytes: 1024, MaxBatchBodyBytes: 1024}, tt.loaded)
			var rec = s.do(tt.method, tt.target, tt.body)
			if tt.contentType != "" {
				rec = s.do(tt.method, tt.target, tt.body, "Content-Type", tt.contentType)
			}
			if rec.Code != tt.wantStatus || !strings.HasPrefix(rec.Body.String(), tt.wantBodyStart) {
				t.Fatalf("%s %s %.40s\n got %d %s\nwant %d %s...", tt.method, tt.target, tt.body, rec.Code, rec.Body, tt.wantStatus, tt.wantBodyStart)
			}
			protocol := ProtocolOpenIM
			if strings.HasPrefix(tt.target, "/tencent") {
				protocol = ProtocolTencent
			}
			checkParseable(t, protocol, rec.Body.Bytes())
			if tt.method == "GET" && rec.Header().Get("Allow") != "POST" {
				t.Errorf("405 without Allow: POST")
			}
		})
	}
}

func TestTencentAuthentication(t *testing.T) {
	auth := NewTencentAuth(time.Minute, clocktesting.NewFakePassiveClock(time.Unix(1669872112, 0)))
	auth.SetTokens(map[string]string{"1400000001": "xxxxyyyy", "1400000002": ""})
	const vendorSign = "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"
	tests := []struct {
		name, app, sign, time string
		wantStatus            int
		wantReason            string
	}{
		{"vendor example", "1400000001", vendorSign, "1669872112", 0, ""},
		{"upper-case hex", "1400000001", strings.ToUpper(vendorSign), "1669872112", 0, ""},
		{"59 s early", "1400000001", Sign("xxxxyyyy", "1669872171"), "1669872171", 0, ""},
		{"stale", "1400000001", Sign("xxxxyyyy", "1669872000"), "1669872000", 401, ReasonStaleRequestTime},
		{"from the future", "1400000001", Sign("xxxxyyyy", "1669872200"), "1669872200", 401, ReasonStaleRequestTime},
		{"wrong sign", "1400000001", Sign("other", "1669872112"), "1669872112", 401, ReasonBadSignature},
		{"sign of another time", "1400000001", vendorSign, "1669872113", 401, ReasonBadSignature},
		{"short sign", "1400000001", vendorSign[:10], "1669872112", 401, ReasonBadSignature},
		{"not hex", "1400000001", strings.Repeat("z", 64), "1669872112", 401, ReasonBadSignature},
		{"no sign", "1400000001", "", "1669872112", 401, ReasonMissingSignature},
		{"no time", "1400000001", vendorSign, "", 401, ReasonMissingSignature},
		{"time not a number", "1400000001", vendorSign, "soon", 401, ReasonBadRequestTime},
		{"unknown app", "1400000009", vendorSign, "1669872112", 403, ReasonUnknownApp},
		{"app without a token", "1400000002", "", "", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, reason := auth.Check(tt.app, tt.sign, tt.time)
			if status != tt.wantStatus || reason != tt.wantReason {
				t.Fatalf("Check(%q, %q, %q) = %d %q, want %d %q", tt.app, tt.sign, tt.time, status, reason, tt.wantStatus, tt.wantReason)
			}
		})
	}
	if got := Sign("xxxxyyyy", "1669872112"); got != vendorSign {
		t.Fatalf("Sign of the vendor example = %s, want %s", got, vendorSign)
	}

	t.Run("handler refuses before evaluating", func(t *testing.T) {
		s := newTestServer(t, Options{TencentAuth: auth}, true)
		rec := s.do("POST", "/tencent?SdkAppid=1400000001&CallbackCommand=Sns.CallbackPrevFriendAdd&RequestTime=1669872112&Sign=00", `{`)
		want := `{"ActionStatus":"FAIL","ErrorCode":401,"ErrorInfo":"friendgate: authentication failed: bad_signature (SdkAppid 1400000001)"}`
		if rec.Code != 401 || rec.Body.String() != want {
			t.Fatalf("got %d %s, want 401 %s", rec.Code, rec.Body, want)
		}
		rec = s.do("POST", "/tencent?SdkAppid=1400000001&CallbackCommand=Sns.CallbackPrevFriendAdd&RequestTime=1669872112&Sign="+vendorSign,
			`{"From_Account":"spam_1","FriendItem":[{"To_Account":"bob"}]}`)
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"ResultCode":38001`) {
			t.Fatalf("signed request: got %d %s", rec.Code, rec.Body)
		}
		if got := testutil.ToFloat64(s.metrics.authFailures.WithLabelValues(ProtocolTencent, ReasonBadSignature)); got != 1 {
			t.Fatalf("auth failures = %v, want 1", got)
		}
	})
}

func TestOpenIMClientAddresses(t *testing.T) {
	filter, err := ParseAddrFilter([]string{"10.0.0.0/8", " 192.0.2.10 ", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"10.1.2.3:5000":        true,
		"192.0.2.10:1":         true,
		"192.0.2.11:1":         false,
		"[::ffff:10.0.0.1]:80": true,
		"[fd00::1]:80":         true,
		"[2001:db8::1]:80":     false,
		"not an address":       false,
		"127.0.0.1:8080":       false,
	} {
		if got := filter.Allows(addr); got != want {
			t.Errorf("Allows(%q) = %v, want %v", addr, got, want)
		}
	}
	if !(AddrFilter(nil)).Allows("198.51.100.1:1") {
		t.Error("an empty filter must admit everyone")
	}
	if _, err := ParseAddrFilter([]string{"10.0.0.0/33"}); err == nil {
		t.Error("10.0.0.0/33 parsed")
	}

	s := newTestServer(t, Options{OpenIMClients: filter, FailurePolicy: FailAllow}, true)
	rec := s.do("POST", "/openim/callbackBeforeAddFriendCommand", `{"fromUserID":"a","toUserID":"b"}`) // from 192.0.2.10
	if rec.Code != 200 {
		t.Fatalf("allowed client: %d %s", rec.Code, rec.Body)
	}
	s.handler.opts.OpenIMClients = AddrFilter{filter[0]}
	rec = s.do("POST", "/openim/callbackBeforeAddFriendCommand", `{"fromUserID":"a","toUserID":"b"}`)
	if rec.Code != 403 || !strings.Contains(rec.Body.String(), `"nextCode":1`) {
		t.Fatalf("refused client must get 403 and a deny whatever the failure policy: %d %s", rec.Code, rec.Body)
	}
}

func TestReadTencentTokens(t *testing.T) {
	dir := t.TempDir()
	// The layout of a mounted Secret: ..data links to a timestamped directory.
	writeFile(t, dir+"/..2026_11_23/1400000001", "xxxxyyyy\n")
	writeFile(t, dir+"/..2026_11_23/1400000002", "")
	symlink(t, "..2026_11_23", dir+"/..data")
	symlink(t, "..data/1400000001", dir+"/1400000001")
	symlink(t, "..data/1400000002", dir+"/1400000002")
	got, err := ReadTencentTokens(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["1400000001"] != "xxxxyyyy" || got["1400000002"] != "" {
		t.Fatalf("tokens = %q", got)
	}
	writeFile(t, dir+"/big", strings.Repeat("x", maxTokenSize+1))
	if _, err := ReadTencentTokens(dir); err == nil || !strings.Contains(err.Error(), "big") {
		t.Fatalf("an oversized token file: err = %v", err)
	}
	if _, err := ReadTencentTokens(dir + "/missing"); err == nil {
		t.Fatal("a missing directory must be an error")
	}
}

func TestReadyz(t *testing.T) {
	s := newTestServer(t, Options{}, false)
	if rec := s.do("GET", "/readyz", ""); rec.Code != 503 {
		t.Fatalf("readyz before the first snapshot: %d", rec.Code)
	}
	if rec := s.do("GET", "/healthz", ""); rec.Code != 200 {
		t.Fatalf("healthz: %d", rec.Code)
	}
	s.store.Set(nil)
	if rec := s.do("GET", "/readyz", ""); rec.Code != 200 || !strings.Contains(rec.Body.String(), "generation 1") {
		t.Fatalf("readyz after a snapshot: %d %s", rec.Code, rec.Body)
	}
}

func TestDecisionMetrics(t *testing.T) {
	s := newTestServer(t, Options{}, true)
	for _, body := range []string{
		`{"fromUserID":"spam_1","toUserID":"bob"}`,
		`{"fromUserID":"spam_1","toUserID":"carol"}`,
		`{"fromUserID":"watched_1","toUserID":"bob"}`,
		`{"fromUserID":"alice","toUserID":"bob"}`,
	} {
		s.do("POST", "/openim/callbackBeforeAddFriendCommand", body)
	}
	s.do("POST", "/openim/callbackBeforeAddFriendCommand", `{`)
	const cmd = "callbackBeforeAddFriendCommand"
	for _, tt := range []struct {
		result, policy string
		want           float64
	}{
		{ResultDeny, "im/anti-spam", 2},
		{ResultWouldDeny, "im/audit", 1},
		{ResultAllow, "", 2},
		{ResultError, "", 1},
	} {
		got := testutil.ToFloat64(s.metrics.decisions.WithLabelValues(ProtocolOpenIM, cmd, "FriendRequest", tt.result, tt.policy))
		if got != tt.want {
			t.Errorf("decisions{result=%s,policy=%s} = %v, want %v", tt.result, tt.policy, got, tt.want)
		}
	}
	if got := testutil.ToFloat64(s.metrics.requests.WithLabelValues(ProtocolOpenIM, cmd, "400")); got != 1 {
		t.Errorf("requests{code=400} = %v, want 1", got)
	}
	h, err := s.metrics.latency.GetMetricWithLabelValues(ProtocolOpenIM, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if n := histogramCount(t, h); n != 5 {
		t.Errorf("latency observations = %d, want 5 (4 decided, 1 refused)", n)
	}
}

func histogramCount(t *testing.T, o prometheus.Observer) uint64 {
	t.Helper()
	var m dto.Metric
	if err := o.(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"/openim":                     "/openim",
		"//openim/cmd":                "/openim/cmd",
		"/openim/cmd/":                "/openim/cmd",
		"/openim/./cmd/.":             "/openim/cmd",
		"/openim/cmd/..":              "/openim",
		"/tencent/":                   "/tencent",
		"/openim/../../tencent":       "/tencent",
		"":                            "/",
		"openim":                      "/openim",
		"/openim/app//callbackBefore": "/openim/app/callbackBefore",
	} {
		if got := cleanPath(in); got != want {
			t.Errorf("cleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnroutable(t *testing.T) {
	s := newTestServer(t, Options{FailurePolicy: FailDeny}, true)
	rec := s.do("GET", "/nothing", "")
	if rec.Code != 404 || strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		t.Errorf("GET of an unknown path: %d %q, want a plain 404", rec.Code, rec.Header().Get("Content-Type"))
	}
	rec = s.do("POST", "/nothing", `{"fromUserID":"a","toUserID":"b"}`)
	if rec.Code != 404 || !strings.Contains(rec.Body.String(), `"nextCode":1`) {
		t.Errorf("POST to an unknown path under Deny: %d %s, want 404 and an OpenIM refusal", rec.Code, rec.Body)
	}
	checkParseable(t, ProtocolOpenIM, rec.Body.Bytes())
	rec = s.do("POST", "/nothing?SdkAppid=1&CallbackCommand=Sns.CallbackPrevFriendAdd", `{}`)
	if rec.Code != 404 || !strings.Contains(rec.Body.String(), `"ActionStatus":"FAIL"`) {
		t.Errorf("POST with a Tencent query to an unknown path: %d %s, want 404 and a Tencent FAIL", rec.Code, rec.Body)
	}
	checkParseable(t, ProtocolTencent, rec.Body.Bytes())
}

// TestClientDetail: what an OpenIM denial's errDlt reveals, by setting. The default
// reveals no policy: an opaque reference that the log line carries with the deciding
// policy and entry.
func TestClientDetail(t *testing.T) {
	body := `{"fromUserID":"spam_1","toUserID":"bob"}`
	for _, tt := range []struct {
		detail ClientDetail
		want   string // a regular expression for errDlt
	}{
		{DetailReference, `^ref:[0-9a-f]{16}$`},
		{DetailNone, `^$`},
		{DetailFull, `^im/anti-spam/blocklist/spammers$`},
	} {
		t.Run(string(tt.detail), func(t *testing.T) {
			var lines []string
			log := funcr.New(func(_, args string) { lines = append(lines, args) }, funcr.Options{})
			s := newTestServer(t, Options{ClientDetail: tt.detail, Logger: log}, true)
			rec := s.do("POST", "/openim/callbackBeforeAddFriendCommand", body, "operationID", "op-42")
			var a openIMAnswer
			if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil || a.ErrDlt == nil || *a.NextCode != 1 {
				t.Fatalf("answer %s: %v", rec.Body, err)
			}
			if !regexp.MustCompile(tt.want).MatchString(*a.ErrDlt) {
				t.Fatalf("errDlt %q, want it to match %s", *a.ErrDlt, tt.want)
			}
			if len(lines) != 1 {
				t.Fatalf("logged %d lines, want 1: %q", len(lines), lines)
			}
			for _, want := range []string{`"operationID"="op-42"`, `"policy"="im/anti-spam"`, `"entry"="im/anti-spam/blocklist/spammers"`} {
				if !strings.Contains(lines[0], want) {
					t.Errorf("log line %s lacks %s", lines[0], want)
				}
			}
			if tt.detail == DetailReference && !strings.Contains(lines[0], `"reference"="`+*a.ErrDlt+`"`) {
				t.Errorf("log line %s lacks the reference %s", lines[0], *a.ErrDlt)
			}
			again := s.do("POST", "/openim/callbackBeforeAddFriendCommand", body)
			if tt.detail == DetailReference && strings.Contains(again.Body.String(), *a.ErrDlt) {
				t.Errorf("two denials share the reference %s", *a.ErrDlt)
			}
		})
	}
	if _, err := ParseClientDetail("policy"); err == nil {
		t.Error("ParseClientDetail accepted policy")
	}
	if d, err := ParseClientDetail("reference"); err != nil || d != DetailReference {
		t.Errorf("ParseClientDetail(reference) = %q, %v", d, err)
	}
}

// TestKeywordLogged: a keyword rule's denial logs which dictionary entry matched; the
// answer does not say.
func TestKeywordLogged(t *testing.T) {
	var lines []string
	log := funcr.New(func(_, args string) { lines = append(lines, args) }, funcr.Options{})
	s := newTestServer(t, Options{Logger: log}, true)
	rec := s.do("POST", "/openim/shop/callbackBeforeAddFriendCommand", `{"fromUserID":"alice","toUserID":"bob","reqMsg":"my t.e.l.e.g.r.a.m: @x"}`)
	var a openIMAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil || a.ErrCode == nil || *a.ErrCode != 38011 {
		t.Fatalf("answer %s: %v", rec.Body, err)
	}
	if strings.Contains(rec.Body.String(), "telegram") {
		t.Errorf("the answer reveals the keyword: %s", rec.Body)
	}
	if len(lines) != 1 {
		t.Fatalf("logged %d lines, want 1: %q", len(lines), lines)
	}
	for _, want := range []string{`"entry"="im/shop/rule/contact-bait"`, `"keyword"="telegram"`, `"keywordSource"="words"`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("log line %s lacks %s", lines[0], want)
		}
	}
}

func TestRequireClientCert(t *testing.T) {
	s := newTestServer(t, Options{RequireClientCert: true}, true)
	rec := s.do("POST", "/openim/callbackBeforeAddFriendCommand", `{"fromUserID":"a","toUserID":"b"}`)
	want := `{"actionCode":0,"errCode":38000,"errMsg":"friend request could not be checked","errDlt":"friendgate: a client certificate signed by the configured CA is required","nextCode":1}`
	if rec.Code != 403 || rec.Body.String() != want {
		t.Fatalf("callback without a client certificate: %d %s, want 403 %s", rec.Code, rec.Body, want)
	}
	if rec := s.do("GET", "/healthz", ""); rec.Code != 200 {
		t.Fatalf("probe without a client certificate: %d, want 200", rec.Code)
	}
	if got := testutil.ToFloat64(s.metrics.authFailures.WithLabelValues(ProtocolOpenIM, ReasonClientCertificate)); got != 1 {
		t.Fatalf("auth failures = %v, want 1", got)
	}
}

// TestOperationIDCut: the operationID header reaches the log lines cut to a bound, however
// long the caller made it.
func TestOperationIDCut(t *testing.T) {
	for _, tt := range []struct{ header, want string }{
		{"", ""},
		{"op-1", "op-1"},
		{strings.Repeat("a", maxOperationIDBytes), strings.Repeat("a", maxOperationIDBytes)},
		{strings.Repeat("a", 60<<10), strings.Repeat("a", maxOperationIDBytes-3) + "..."},
	} {
		r := httptest.NewRequest(http.MethodPost, "/openim/callbackBeforeAddFriendCommand", nil)
		if tt.header != "" {
			r.Header.Set("operationID", tt.header)
		}
		if got := operationID(r); got != tt.want {
			t.Errorf("operationID of a %d-byte header: %d bytes %.20q, want %d bytes", len(tt.header), len(got), got, len(tt.want))
		}
	}
}
