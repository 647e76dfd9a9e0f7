package e2e

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// Answers that do not depend on the request (docs/callback-server.md).
const (
	openIMContinue = `{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}`
	tencentOK      = `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`

	// failureCode and failureMessage refuse a request that could not be authenticated, or
	// could not be decided under --failure-policy Deny.
	failureCode    = 38000
	failureMessage = "friend request could not be checked"
)

// exchange is one callback request and the answer friendgate must give it.
type exchange struct {
	name        string
	method      string // POST when empty
	path        string // path and query
	contentType string // application/json; charset=utf-8 when empty
	operationID string // OpenIM's trace header, when set
	chunked     bool   // send the body without a Content-Length
	body        string
	// client sends the request; the shared client when nil.
	client *http.Client

	wantStatus int
	// wantBody is the exact answer. An ellipsis (…) stands for any JSON string content: it
	// marks the parts that are not friendgate's to choose, such as the client's port or
	// Go's JSON error text.
	wantBody string
}

func (ex exchange) String() string {
	body := ex.body
	if len(body) > 200 {
		body = fmt.Sprintf("%s... (%d bytes)", body[:200], len(body))
	}
	return fmt.Sprintf("%s %s\n%s", cmp.Or(ex.method, http.MethodPost), ex.path, body)
}

// response is what the server answered.
type response struct {
	status int
	header http.Header
	body   string
}

// do sends the exchange's request and returns the answer.
func (s *server) do(t *testing.T, ex exchange) response {
	t.Helper()
	var body io.Reader = strings.NewReader(ex.body)
	if ex.chunked {
		body = io.MultiReader(body) // hides the length, so the request is chunked
	}
	req, err := http.NewRequest(cmp.Or(ex.method, http.MethodPost), "http://"+s.addr+ex.path, body)
	if err != nil {
		t.Fatalf("%s\nbuilding the request: %v", ex, err)
	}
	req.Header.Set("Content-Type", cmp.Or(ex.contentType, "application/json; charset=utf-8"))
	if ex.operationID != "" {
		req.Header.Set("operationID", ex.operationID)
	}
	resp, err := cmp.Or(ex.client, client).Do(req)
	if err != nil {
		t.Fatalf("%s\nsending: %v", ex, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s\nreading the answer: %v", ex, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(answer)}
}

// check sends the exchange's request and compares the answer with the wanted one.
func (s *server) check(t *testing.T, ex exchange) {
	t.Helper()
	got := s.do(t, ex)
	if got.status != ex.wantStatus || !bodyMatches(got.body, ex.wantBody) {
		t.Errorf("%s\n got: %d %s\nwant: %d %s", ex, got.status, got.body, ex.wantStatus, ex.wantBody)
	}
	if ct := got.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("%s\nanswer Content-Type %q, want application/json; charset=utf-8", ex, ct)
	}
}

// checkAll runs every exchange as a parallel subtest.
func (s *server) checkAll(t *testing.T, exchanges []exchange) {
	t.Helper()
	for _, ex := range exchanges {
		t.Run(ex.name, func(t *testing.T) {
			t.Parallel()
			s.check(t, ex)
		})
	}
}

// bodyMatches reports whether got is want, where each ellipsis in want stands for any
// JSON string content.
func bodyMatches(got, want string) bool {
	if !strings.Contains(want, "…") {
		return got == want
	}
	parts := strings.Split(want, "…")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile(`^` + strings.Join(parts, `(?:[^"\\]|\\.)*`) + `$`).MatchString(got)
}

// jsonString encodes s as a JSON string, as friendgate does.
func jsonString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // a string always encodes
	}
	return string(b)
}

// openIMDeny is the OpenIM answer that refuses the operation.
func openIMDeny(code int, message, detail string) string {
	return fmt.Sprintf(`{"actionCode":0,"errCode":%d,"errMsg":%s,"errDlt":%s,"nextCode":1}`,
		code, jsonString(message), jsonString(detail))
}

// openIMImport is the answer to an import of which only the allowed friends go ahead.
func openIMImport(allowed ...string) string {
	ids := make([]string, len(allowed))
	for i, id := range allowed {
		ids[i] = jsonString(id)
	}
	return strings.TrimSuffix(openIMContinue, "}") + `,"friendUserIDs":[` + strings.Join(ids, ",") + "]}"
}

// openIMPath is the v3.4.2+ callback URL of a command: /openim/<command>.
func openIMPath(command string) string { return "/openim/" + command }

// openIMAddFriend is a callbackBeforeAddFriendCommand body.
func openIMAddFriend(from, to, reqMsg string) string {
	return fmt.Sprintf(`{"callbackCommand":"callbackBeforeAddFriendCommand","fromUserID":%s,"toUserID":%s,"reqMsg":%s,"ex":""}`,
		jsonString(from), jsonString(to), jsonString(reqMsg))
}

// openIMUndecided is the OpenIM answer to a request friendgate could not decide, under
// the failure policy Deny (deny is true) or Allow.
func openIMUndecided(deny bool, reason string) string {
	if !deny {
		return openIMContinue
	}
	return openIMDeny(failureCode, failureMessage, "friendgate: "+reason)
}

// resultItem is one entry of a Tencent answer's ResultItem.
type resultItem struct {
	to   string
	code int
	info string
}

func allowed(to string) resultItem { return resultItem{to: to} }

func denied(to string, code int, info string) resultItem {
	return resultItem{to: to, code: code, info: info}
}

// undecidedItem is the item verdict for a request that could not be decided.
func undecidedItem(to string, deny bool) resultItem {
	if !deny {
		return allowed(to)
	}
	return denied(to, failureCode, failureMessage)
}

func resultItems(items []resultItem) string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = fmt.Sprintf(`{"To_Account":%s,"ResultCode":%d,"ResultInfo":%s}`, jsonString(it.to), it.code, jsonString(it.info))
	}
	return `"ResultItem":[` + strings.Join(out, ",") + "]"
}

// tencentResult is the answer to a blocking Tencent callback: one ResultItem per item.
func tencentResult(items ...resultItem) string {
	return strings.TrimSuffix(tencentOK, "}") + "," + resultItems(items) + "}"
}

// tencentFail is the answer to a Tencent callback that was refused before its items were read.
func tencentFail(status int, info string) string {
	return fmt.Sprintf(`{"ActionStatus":"FAIL","ErrorCode":%d,"ErrorInfo":%s}`, status, jsonString("friendgate: "+info))
}

// tencentUndecided is the answer to a Tencent callback whose items were read but could
// not be decided: an HTTP 200 whose items carry the failure policy's verdict, since
// Tencent would apply its console's setting to any other status.
func tencentUndecided(info string, items ...resultItem) string {
	return fmt.Sprintf(`{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":%s,`, jsonString("friendgate: "+info)) + resultItems(items) + "}"
}

// tencentPath is the URL Tencent calls for a command of an app. params are further query
// parameters as name, value pairs; they replace the defaults (ClientIP 192.0.2.10,
// OptPlatform iOS).
func tencentPath(app, command string, params ...string) string {
	q := url.Values{
		"SdkAppid":        {app},
		"CallbackCommand": {command},
		"contenttype":     {"json"},
		"ClientIP":        {"192.0.2.10"},
		"OptPlatform":     {"iOS"},
	}
	for i := 0; i+1 < len(params); i += 2 {
		q.Set(params[i], params[i+1])
	}
	return "/tencent?" + q.Encode()
}

// friendAdd is a Sns.CallbackPrevFriendAdd body from one user to others.
func friendAdd(from string, to ...string) string {
	items := make([]string, len(to))
	for i, id := range to {
		items[i] = fmt.Sprintf(`{"To_Account":%s,"Remark":"","GroupName":"","AddSource":"AddSource_Type_Android","AddWording":"hello"}`, jsonString(id))
	}
	return fmt.Sprintf(`{"CallbackCommand":"Sns.CallbackPrevFriendAdd","Requester_Account":%[1]s,"From_Account":%[1]s,"FriendItem":[%s],"AddType":"Add_Type_Both","ForceAddFlags":0,"EventTime":1767225600000}`,
		jsonString(from), strings.Join(items, ","))
}

// protocolPolicies are the policies the OpenIM and Tencent protocol tests run against:
// one per event, with codes that say which entry refused a request.
const protocolPolicies = `
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: spam, namespace: e2e}
spec:
  blocklists:
    - name: spammers
      users: [spam_1]
      prefixes: [bot_]
      code: 38001
      message: this account cannot add friends
  rules:
    - name: no-links
      events: [FriendRequest]
      wordingPatterns: ['https?://']
      code: 38002
      message: links are not allowed
---
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: responses, namespace: e2e}
spec:
  events: [FriendResponse]
  blocklists:
    - name: muted-responders
      subject: From
      users: [muted_responder]
      code: 38011
      message: this account cannot accept friends
    - name: muted-requesters
      subject: To
      users: [muted_requester]
      code: 38012
      message: this request cannot be accepted
  rules:
    - name: no-links-in-answers
      wordingPatterns: ['https?://']
      code: 38013
      message: links are not allowed in answers
---
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: blacklist, namespace: e2e}
spec:
  events: [AddBlack]
  blocklists:
    - name: officials
      subject: To
      prefixes: [official_]
      code: 38030
      message: official accounts cannot be blacklisted
---
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: remarks, namespace: e2e}
spec:
  events: [SetRemark]
  blocklists:
    - name: protected
      subject: To
      users: [protected_user]
      code: 38031
      message: this remark cannot be changed
  rules:
    - name: remark-links
      when: "request.remark.contains('://')"
      code: 38032
      message: remarks cannot contain links
`
