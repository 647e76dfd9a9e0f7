package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Hostile-input tests: callers that try to exhaust the server or confuse it. Every answer
// must be well-formed in its protocol's shape, the process must stay up, and honest
// callers must be answered meanwhile. The attacks are bounded in count and, through the
// server's own timeouts, in time; nothing here asserts how long anything takes.

// attackTimeout bounds each raw connection of an attack: it only guards against a hung test.
const attackTimeout = 30 * time.Second

// rawConn is a connection an attacker drives by hand.
type rawConn struct {
	net.Conn
	answers *bufio.Reader
}

func dialRaw(t *testing.T, s *server) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatalf("dialing %s: %v", s.addr, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(attackTimeout)); err != nil {
		t.Fatal(err)
	}
	return &rawConn{Conn: c, answers: bufio.NewReader(c)}
}

// startSlowBody sends the headers of a POST announcing announced body bytes, and sent of them.
func (c *rawConn) startSlowBody(t *testing.T, path string, announced, sent int) {
	t.Helper()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: friendgate\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		path, announced, strings.Repeat(" ", sent))
}

// readAnswer reads one HTTP answer from the connection.
func (c *rawConn) readAnswer(t *testing.T) response {
	t.Helper()
	resp, err := http.ReadResponse(c.answers, nil)
	if err != nil {
		t.Fatalf("reading an answer: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading an answer's body: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// gauge reads a metric without labels.
func (s *server) gauge(t *testing.T, name string) float64 {
	t.Helper()
	return s.metric(t, name, nil)
}

// waitGauge waits until the metric name equals want.
func (s *server) waitGauge(t *testing.T, name string, want float64) {
	t.Helper()
	s.eventually(t, changeTimeout, fmt.Sprintf("%s is %v", name, want), func() (bool, string) {
		got := s.gauge(t, name)
		return got == want, fmt.Sprint(got)
	})
}

// wellFormed fails unless body is an answer the protocol's server parses: valid UTF-8 JSON
// with exactly the protocol's fields, of the right types.
func wellFormed(t *testing.T, protocol, body string) {
	t.Helper()
	if !utf8.ValidString(body) {
		t.Fatalf("answer is not valid UTF-8: %q", body)
	}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	switch protocol {
	case "openim":
		var a struct {
			ActionCode    *int      `json:"actionCode"`
			ErrCode       *int      `json:"errCode"`
			ErrMsg        *string   `json:"errMsg"`
			ErrDlt        *string   `json:"errDlt"`
			NextCode      *int      `json:"nextCode"`
			FriendUserIDs *[]string `json:"friendUserIDs"`
		}
		if err := dec.Decode(&a); err != nil || a.ActionCode == nil || a.ErrCode == nil || a.ErrMsg == nil || a.ErrDlt == nil || a.NextCode == nil {
			t.Fatalf("OpenIM answer %q is not well-formed (%v)", body, err)
		}
		if *a.NextCode == 1 && *a.ErrCode <= 0 {
			t.Fatalf("OpenIM answer %q denies with errCode %d, which OpenIM turns into an internal error", body, *a.ErrCode)
		}
	case "tencent":
		var a struct {
			ActionStatus *string `json:"ActionStatus"`
			ErrorCode    *int    `json:"ErrorCode"`
			ErrorInfo    *string `json:"ErrorInfo"`
			ResultItem   []struct {
				ToAccount  *string `json:"To_Account"`
				ResultCode *int    `json:"ResultCode"`
				ResultInfo *string `json:"ResultInfo"`
			} `json:"ResultItem"`
		}
		if err := dec.Decode(&a); err != nil || a.ActionStatus == nil || a.ErrorCode == nil || a.ErrorInfo == nil {
			t.Fatalf("Tencent answer %q is not well-formed (%v)", body, err)
		}
		for _, it := range a.ResultItem {
			if it.ToAccount == nil || it.ResultCode == nil || it.ResultInfo == nil {
				t.Fatalf("Tencent answer %q has an incomplete ResultItem", body)
			}
		}
	default:
		t.Fatalf("unknown protocol %q", protocol)
	}
	if dec.More() {
		t.Fatalf("answer %q has trailing data", body)
	}
}

// checkHonest sends honest callbacks of both protocols and checks they are decided.
func (s *server) checkHonest(t *testing.T) {
	t.Helper()
	s.check(t, exchange{path: openIMPath("callbackBeforeAddFriendCommand"), body: openIMAddFriend("spam_1", "bob", "hello"),
		wantStatus: http.StatusOK, wantBody: spammerDeny})
	s.check(t, exchange{path: tencentPath(vendorApp, "Sns.CallbackPrevFriendAdd"), body: friendAdd("alice", "bob", "spam_1"),
		wantStatus: http.StatusOK, wantBody: tencentResult(allowed("bob"), denied("spam_1", 38001, "this account cannot add friends"))})
}

// checkHonestAtLimit is checkHonest on a server at its connection limit: each check may
// first be answered busy (the connection the previous answer came on can still count as
// busy for a moment after the caller has read it, and slow bodies younger than a second
// are not closed for a newcomer), and is then decided.
func (s *server) checkHonestAtLimit(t *testing.T, deny bool) {
	t.Helper()
	busy := openIMUndecided(deny, "server busy: too many connections")
	for _, ex := range []exchange{
		{path: openIMPath("callbackBeforeAddFriendCommand"), body: openIMAddFriend("spam_1", "bob", "hello"), wantStatus: http.StatusOK, wantBody: spammerDeny},
		{path: tencentPath(vendorApp, "Sns.CallbackPrevFriendAdd"), body: friendAdd("alice", "bob", "spam_1"), wantStatus: http.StatusOK,
			wantBody: tencentResult(allowed("bob"), denied("spam_1", 38001, "this account cannot add friends"))},
	} {
		s.eventually(t, changeTimeout, "an honest caller is decided: "+ex.path, func() (bool, string) {
			got := s.do(t, ex)
			if got.status == http.StatusServiceUnavailable && (got.body == busy || got.body == tencentFail(http.StatusServiceUnavailable, "server busy: too many connections")) {
				return false, got.body
			}
			if got.status != ex.wantStatus || got.body != ex.wantBody {
				t.Fatalf("%s\n got: %d %s\nwant: %d %s (or the busy answer)", ex, got.status, got.body, ex.wantStatus, ex.wantBody)
			}
			return true, ""
		})
	}
}

// checkBusy sends honest callbacks of both protocols while the server is at a bound and
// checks they get the busy answer at once: 503 and the failure policy's answer.
func (s *server) checkBusy(t *testing.T, deny bool, reason string) {
	t.Helper()
	s.check(t, exchange{path: openIMPath("callbackBeforeAddFriendCommand"), body: openIMAddFriend("spam_1", "bob", "hello"),
		wantStatus: http.StatusServiceUnavailable, wantBody: openIMUndecided(deny, reason)})
	s.check(t, exchange{path: tencentPath(vendorApp, "Sns.CallbackPrevFriendAdd"), body: friendAdd("alice", "bob"),
		wantStatus: http.StatusServiceUnavailable, wantBody: tencentFail(http.StatusServiceUnavailable, reason)})
}

// TestLoadShedding fills each bound of the server with slow bodies (a body announced and
// never finished holds its connection and what it sent until the read timeout). At the
// connection limit the stalled connections make room for honest callers; at the body
// budget honest callers get the busy answer, counted, and are decided again once the
// attackers go. The announced size of a body costs nothing: memory is reserved as bytes
// arrive. (The busy answer at the connection limit needs connections that are neither
// idle nor stalled: TestBusyConnections.)
func TestLoadShedding(t *testing.T) {
	t.Parallel()
	policies := writePolicies(t, protocolPolicies)
	const addFriend = "/openim/callbackBeforeAddFriendCommand"
	for _, fp := range failurePolicies {
		t.Run(fp.name+"/connections", func(t *testing.T) {
			t.Parallel()
			// Three slow bodies fill the limit, so an honest caller is decided only once one
			// of them is closed to make room. (Were the connection that asked whether the
			// server is ready still being answered when the third arrives, that body would be
			// answered busy and the idle /readyz connection closed in its stead.)
			s := startServer(t, policies, "--failure-policy", fp.name, "--max-connections", "3")
			for range 3 {
				dialRaw(t, s).startSlowBody(t, addFriend, 1<<20, 1)
			}
			// A connection of its own each time: an idle one kept by a shared client would
			// let the honest caller in without a new connection.
			fresh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			// While the slow bodies are young, honest callers are answered busy; once they
			// have stalled for a second, they make room and honest callers are decided.
			ex := exchange{path: addFriend, body: openIMAddFriend("spam_1", "bob", "hello"), client: fresh}
			s.eventually(t, changeTimeout, "an honest caller is decided", func() (bool, string) {
				got := s.do(t, ex)
				wellFormed(t, "openim", got.body)
				if got.status == http.StatusServiceUnavailable && got.body == openIMUndecided(fp.deny, "server busy: too many connections") {
					return false, got.body
				}
				if got.status != http.StatusOK || got.body != spammerDeny {
					t.Fatalf("honest caller: got %d %s, want 200 %s (or the busy answer)", got.status, got.body, spammerDeny)
				}
				return true, ""
			})
			if got := s.gauge(t, "friendgate_callback_stale_connections_closed_total"); got < 1 {
				t.Errorf("stale connections closed: %v, want a slow body closed to make room", got)
			}
			s.checkHonestAtLimit(t, fp.deny)
		})
		t.Run(fp.name+"/body bytes", func(t *testing.T) {
			t.Parallel()
			s := startServer(t, policies, "--failure-policy", fp.name,
				"--max-body-bytes", "8192", "--max-batch-body-bytes", "8192", "--max-inflight-body-bytes", "16384")
			var slow []*rawConn
			for range 2 {
				c := dialRaw(t, s)
				// 4,097 bytes take two 4 KiB reservations: two such bodies fill 16 KiB.
				c.startSlowBody(t, addFriend, 8000, 4097)
				slow = append(slow, c)
			}
			s.waitGauge(t, "friendgate_callback_inflight_body_bytes", 16384)
			s.checkBusy(t, fp.deny, "server busy: too many request bytes in flight")
			s.checkMetric(t, "friendgate_callback_shed_total", map[string]string{"reason": "body_bytes"}, 2)

			for _, c := range slow {
				c.Close()
			}
			s.waitGauge(t, "friendgate_callback_inflight_body_bytes", 0)
			s.checkHonest(t)
		})
	}
}

// TestIdleConnections opens more idle keep-alive connections than --max-connections: the
// idlest make room, and honest callers are decided.
func TestIdleConnections(t *testing.T) {
	t.Parallel()
	s := startServer(t, writePolicies(t, protocolPolicies), "--max-connections", "8")
	for range 16 {
		c := dialRaw(t, s)
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: friendgate\r\n\r\n")
		if got := c.readAnswer(t); got.status != http.StatusOK {
			t.Fatalf("GET /healthz: %d %s", got.status, got.body)
		}
		// The connection stays open and idle.
	}
	s.checkHonest(t)
	if got := s.gauge(t, "friendgate_callback_stale_connections_closed_total"); got < 8 {
		t.Errorf("stale connections closed: %v, want at least 8", got)
	}
}

// TestSlowConnectionsTimeOut: a caller that stops halfway through a request's header, or
// through its body, has its connection closed by the server's phase limits (5 s for a
// header, 10 s for a whole request), counted by phase, while honest callers are decided.
func TestSlowConnectionsTimeOut(t *testing.T) {
	t.Parallel()
	s := startServer(t, writePolicies(t, protocolPolicies))
	header := dialRaw(t, s)
	fmt.Fprintf(header, "POST /openim/callbackBeforeAddFriendCommand HTTP/1.1\r\nHost: friendgate\r\n")
	body := dialRaw(t, s)
	body.startSlowBody(t, "/openim/callbackBeforeAddFriendCommand", 100, 10)
	s.checkHonest(t)
	for name, c := range map[string]*rawConn{"half a header": header, "part of a body": body} {
		if n, err := c.Read(make([]byte, 512)); err != io.EOF {
			t.Errorf("%s: read %d bytes, %v; want the server to close the connection", name, n, err)
		}
	}
	for _, phase := range []string{"header", "body"} {
		if got := s.metric(t, "friendgate_callback_connections_timed_out_total", map[string]string{"phase": phase}); got != 1 {
			t.Errorf("connections timed out in phase %s: %v, want 1", phase, got)
		}
	}
}

// TestPipelining sends several callbacks back to back on one connection before reading
// any answer: each is answered, in order.
func TestPipelining(t *testing.T) {
	t.Parallel()
	s := startServer(t, writePolicies(t, protocolPolicies))
	c := dialRaw(t, s)
	var reqs bytes.Buffer
	users := []string{"spam_1", "alice", "bot_7", "carol"}
	for _, from := range users {
		body := openIMAddFriend(from, "bob", "hello")
		fmt.Fprintf(&reqs, "POST /openim/callbackBeforeAddFriendCommand HTTP/1.1\r\nHost: friendgate\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
	if _, err := c.Write(reqs.Bytes()); err != nil {
		t.Fatal(err)
	}
	for _, from := range users {
		got := c.readAnswer(t)
		want := openIMContinue
		if from == "spam_1" || from == "bot_7" {
			want = spammerDeny
		}
		if got.status != http.StatusOK || got.body != want {
			t.Errorf("pipelined request from %s: got %d %s, want 200 %s", from, got.status, got.body, want)
		}
	}
}

// TestRouting sends callbacks to unclean, wrong and ambiguous URLs: a stray slash or dot
// segment still reaches its adapter, and what cannot be routed is never answered as if it
// had been decided: under --failure-policy Deny it is refused.
func TestRouting(t *testing.T) {
	t.Parallel()
	policies := writePolicies(t, protocolPolicies)
	const addFriend = "callbackBeforeAddFriendCommand"
	spam := openIMAddFriend("spam_1", "bob", "hello")
	spamNoCommand := `{"fromUserID":"spam_1","toUserID":"bob","reqMsg":"hello"}`
	tencentSpam := friendAdd("alice", "spam_1")
	tencentDenied := tencentResult(denied("spam_1", 38001, "this account cannot add friends"))
	for _, fp := range failurePolicies {
		t.Run(fp.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, policies, "--failure-policy", fp.name)
			tencentQuery := strings.TrimPrefix(tencentPath(vendorApp, "Sns.CallbackPrevFriendAdd"), "/tencent")
			s.checkAll(t, []exchange{
				{name: "doubled leading slash, OpenIM", path: "//openim/" + addFriend, body: spam, wantStatus: http.StatusOK, wantBody: spammerDeny},
				{name: "doubled leading slash, Tencent", path: "//tencent" + tencentQuery, body: tencentSpam, wantStatus: http.StatusOK, wantBody: tencentDenied},
				{name: "trailing slash, Tencent", path: "/tencent/" + tencentQuery, body: tencentSpam, wantStatus: http.StatusOK, wantBody: tencentDenied},
				{name: "dot segments", path: "/openim/./" + addFriend + "/.", body: spam, wantStatus: http.StatusOK, wantBody: spammerDeny},
				// /openim/<command>/.. is /openim: the command comes from the body.
				{name: "dot-dot segment, command in the body", path: "/openim/" + addFriend + "/..", body: spam, wantStatus: http.StatusOK, wantBody: spammerDeny},
				{name: "dot-dot segment, no command anywhere", path: "/openim/" + addFriend + "/..", body: spamNoCommand,
					wantStatus: http.StatusBadRequest, wantBody: openIMUndecided(fp.deny, "no callback command: neither the URL nor the body's callbackCommand names one")},
				{name: "no command anywhere", path: "/openim", body: spamNoCommand,
					wantStatus: http.StatusBadRequest, wantBody: openIMUndecided(fp.deny, "no callback command: neither the URL nor the body's callbackCommand names one")},
				{name: "URL and body disagree", path: openIMPath("callbackBeforeAddBlackCommand"), body: spam,
					wantStatus: http.StatusBadRequest, wantBody: openIMUndecided(fp.deny, "the URL's command callbackBeforeAddBlackCommand and the body's callbackCommand callbackBeforeAddFriendCommand disagree")},
				{name: "URL names a notification", path: openIMPath("callbackAfterAddFriendCommand"), body: spam, wantStatus: http.StatusOK, wantBody: openIMContinue},
				{name: "path without /openim", path: "/" + addFriend, body: spam,
					wantStatus: http.StatusNotFound, wantBody: openIMUndecided(fp.deny, "no callback endpoint at /"+addFriend+": configure the URL as http(s)://HOST/openim or http(s)://HOST/tencent")},
				{name: "path without /tencent", path: "/callback" + tencentQuery, body: tencentSpam,
					wantStatus: http.StatusNotFound, wantBody: tencentFail(http.StatusNotFound, "no callback endpoint at /callback: configure the URL as http(s)://HOST/openim or http(s)://HOST/tencent")},
				{name: "Tencent command only in the body", path: "/tencent?SdkAppid=" + vendorApp, body: tencentSpam, wantStatus: http.StatusOK, wantBody: tencentDenied},
				{name: "Tencent command nowhere", path: "/tencent?SdkAppid=" + vendorApp, body: `{"From_Account":"alice","FriendItem":[{"To_Account":"spam_1"}]}`,
					wantStatus: http.StatusBadRequest, wantBody: tencentFail(http.StatusBadRequest, "no callback command: neither the query's nor the body's CallbackCommand names one")},
				{name: "Tencent query and body disagree", path: tencentPath(vendorApp, "Sns.CallbackPrevFriendAdd"),
					body:       strings.Replace(tencentSpam, `"Sns.CallbackPrevFriendAdd"`, `"Sns.CallbackFriendDelete"`, 1),
					wantStatus: http.StatusOK,
					wantBody:   tencentUndecided("the query's CallbackCommand Sns.CallbackPrevFriendAdd and the body's Sns.CallbackFriendDelete disagree", undecidedItem("spam_1", fp.deny))},
			})
		})
	}
}

// friendIDs is a JSON array of n user IDs.
func friendIDs(n int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"user_%06d"`, i)
	}
	b.WriteByte(']')
	return b.String()
}

// TestLargeImports sends OpenIM imports larger than --max-body-bytes: they are decided up
// to --max-batch-items friends, and beyond that refused (never let through unchecked)
// unless --too-large-policy Allow says so.
func TestLargeImports(t *testing.T) {
	t.Parallel()
	policies := writePolicies(t, protocolPolicies)
	importPath := openIMPath("callbackBeforeImportFriendsCommand")
	body := func(owner string, ids string) string {
		return fmt.Sprintf(`{"callbackCommand":"callbackBeforeImportFriendsCommand","ownerUserID":%q,"friendUserIDs":%s}`, owner, ids)
	}
	// 90,000 IDs are about 1.2 MiB: more than --max-body-bytes, which once meant 413 and
	// "continue" for the whole list.
	const many = 90_000
	withSpammers := strings.Replace(friendIDs(many), `"user_000001"`, `"spam_1"`, 1)
	withSpammers = strings.Replace(withSpammers, `"user_089999"`, `"bot_9"`, 1)
	wantAllowed := strings.Replace(strings.Replace(friendIDs(many), `"user_000001",`, "", 1), `,"user_089999"`, "", 1)
	longID := strings.Repeat("x", 1025)

	s := startServer(t, policies, "--max-batch-items", fmt.Sprint(many))
	s.checkAll(t, []exchange{
		{name: "large import with spammers", path: importPath, body: body("alice", withSpammers),
			wantStatus: http.StatusOK, wantBody: strings.TrimSuffix(openIMContinue, "}") + `,"friendUserIDs":` + wantAllowed + "}"},
		{name: "large import by a spammer", path: importPath, body: body("spam_1", friendIDs(many)),
			wantStatus: http.StatusOK, wantBody: spammerDeny},
		{name: "import over --max-batch-items", path: importPath, body: body("alice", friendIDs(many+1)),
			wantStatus: http.StatusRequestEntityTooLarge, wantBody: openIMUndecided(true, fmt.Sprintf("%d friend IDs in one request, more than the limit of %d", many+1, many))},
		{name: "import over --max-batch-body-bytes", path: importPath, body: body("alice", friendIDs(many)) + strings.Repeat(" ", 16<<20),
			wantStatus: http.StatusRequestEntityTooLarge, wantBody: openIMUndecided(true, "body of … bytes is larger than the limit of 16777216")},
		// An ID over 1 KiB is over a bound: the too-large policy (Deny) answers each item,
		// in a 200 so that Tencent reads it.
		{name: "Tencent friend add to an ID over 1 KiB", path: tencentPath(vendorApp, "Sns.CallbackPrevFriendAdd"), body: friendAdd("alice", "bob", longID),
			wantStatus: http.StatusOK, wantBody: tencentUndecided("the to user ID of item 1 is 1025 bytes long, more than the limit of 1024",
				undecidedItem("bob", true), undecidedItem(longID, true))},
	})

	t.Run("too-large policy Allow", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, policies, "--max-batch-items", "10", "--too-large-policy", "Allow", "--failure-policy", "Deny")
		s.check(t, exchange{path: importPath, body: body("alice", friendIDs(11)),
			wantStatus: http.StatusRequestEntityTooLarge, wantBody: openIMContinue})
	})
}

// TestClientDetail: by default an OpenIM denial tells the refused user's app an opaque
// reference, not the policy or list that caught them; the log line has the reference with
// the deciding policy and entry and the operationID.
func TestClientDetail(t *testing.T) {
	t.Parallel()
	policies := writePolicies(t, protocolPolicies)
	spam := openIMAddFriend("spam_1", "bob", "hello")
	t.Run("default", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, policies, "--client-detail", "Reference")
		got := s.do(t, exchange{path: openIMPath("callbackBeforeAddFriendCommand"), body: spam, operationID: "op-ref-1"})
		var a struct{ ErrDlt string }
		if err := json.Unmarshal([]byte(got.body), &a); err != nil || got.status != http.StatusOK || !bodyMatches(got.body, openIMDeny(38001, "this account cannot add friends", "ref:…")) {
			t.Fatalf("got %d %s (%v), want a denial with an opaque reference", got.status, got.body, err)
		}
		if strings.Contains(got.body, "spam") || len(a.ErrDlt) != len("ref:")+16 {
			t.Fatalf("errDlt %q reveals more than a reference", a.ErrDlt)
		}
		s.waitLog(t, map[string]string{"msg": "denied", "reference": a.ErrDlt, "operationID": "op-ref-1",
			"policy": "e2e/spam", "entry": "e2e/spam/blocklist/spammers"})
	})
	t.Run("default, request not decided", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, policies, "--client-detail", "Reference", "--failure-policy", "Deny")
		got := s.do(t, exchange{path: openIMPath("callbackBeforeAddFriendCommand"), body: `{"fromUserID":`, operationID: "op-ref-2"})
		var a struct{ ErrDlt string }
		if err := json.Unmarshal([]byte(got.body), &a); err != nil || got.status != http.StatusBadRequest || !bodyMatches(got.body, openIMDeny(failureCode, failureMessage, "ref:…")) {
			t.Fatalf("got %d %s (%v), want a refusal with an opaque reference", got.status, got.body, err)
		}
		if len(a.ErrDlt) != len("ref:")+16 {
			t.Fatalf("errDlt %q reveals more than a reference", a.ErrDlt)
		}
		s.waitLog(t, map[string]string{"msg": "request not decided", "reference": a.ErrDlt, "operationID": "op-ref-2",
			"reason": "malformed JSON body: unexpected end of JSON input (at byte 14)"})
	})
	t.Run("None", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, policies, "--client-detail", "None", "--failure-policy", "Deny")
		s.check(t, exchange{path: openIMPath("callbackBeforeAddFriendCommand"), body: spam,
			wantStatus: http.StatusOK, wantBody: openIMDeny(38001, "this account cannot add friends", "")})
		s.check(t, exchange{path: openIMPath("callbackBeforeAddFriendCommand"), body: `{"fromUserID":`,
			wantStatus: http.StatusBadRequest, wantBody: openIMDeny(failureCode, failureMessage, "")})
	})
}

// TestUsualSuspects throws the usual hostile inputs at one server while slow and idle
// connections hold on: every answer is well-formed in its protocol's shape, honest
// callbacks are decided meanwhile, and the process stays up.
func TestUsualSuspects(t *testing.T) {
	t.Parallel()
	// The honest callers' app is accepted unsigned; signedApp must sign.
	const signedApp = "1400000009"
	tokens := tokensDir(t, map[string]string{vendorApp: "", signedApp: vendorToken})
	s := startServer(t, writePolicies(t, protocolPolicies), "--failure-policy", "Deny", "--tencent-tokens-dir", tokens)

	// Slow headers, slow bodies and idle connections, held while the rest runs.
	for range 5 {
		fmt.Fprintf(dialRaw(t, s), "POST /openim/callbackBeforeAddFriendCommand HTTP/1.1\r\nHost: friendgate\r\nContent-Le")
		dialRaw(t, s).startSlowBody(t, "/openim/callbackBeforeAddFriendCommand", 1<<20, 100)
	}
	for range 10 {
		c := dialRaw(t, s)
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: friendgate\r\n\r\n")
		c.readAnswer(t)
	}

	now := fmt.Sprint(time.Now().Unix())
	signed := func(requestTime, sign string) string {
		return tencentPath(signedApp, "Sns.CallbackPrevFriendAdd", "RequestTime", requestTime, "Sign", sign)
	}
	deep := strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000)
	// The bulk is in a field friendgate does not read (ex is a string: request.ex).
	huge := `{"fromUserID":"alice","toUserID":"bob","payload":[` + strings.Repeat(`{"a":[1,2,3,"xxxxxxxx"]},`, 40_000) + `{}]}`
	for _, c := range []struct {
		name, protocol, path, body string
		status                     int
	}{
		{"deeply nested JSON", "openim", openIMPath("callbackBeforeAddFriendCommand"), `{"fromUserID":` + deep + `}`, http.StatusBadRequest},
		{"deeply nested JSON, Tencent", "tencent", signed(now, sign(vendorToken, now)), `{"FriendItem":` + deep + `}`, http.StatusBadRequest},
		{"huge JSON within the limit", "openim", openIMPath("callbackBeforeAddFriendCommand"), huge, http.StatusOK},
		{"huge JSON over the limit", "openim", openIMPath("callbackBeforeAddFriendCommand"), huge + strings.Repeat(" ", 1<<20), http.StatusRequestEntityTooLarge},
		{"a number for a user ID", "openim", openIMPath("callbackBeforeAddFriendCommand"), `{"fromUserID":7,"toUserID":"bob"}`, http.StatusBadRequest},
		{"an object for the friend list", "openim", openIMPath("callbackBeforeImportFriendsCommand"), `{"ownerUserID":"a","friendUserIDs":{"x":1}}`, http.StatusBadRequest},
		{"a string for the items", "tencent", signed(now, sign(vendorToken, now)), `{"From_Account":"a","FriendItem":"bob"}`, http.StatusBadRequest},
		{"an array for the body", "openim", openIMPath("callbackBeforeAddFriendCommand"), `["spam_1","bob"]`, http.StatusBadRequest},
		{"not UTF-8 in a user ID", "openim", openIMPath("callbackBeforeAddFriendCommand"), "{\"fromUserID\":\"spam_1\xff\xfe\",\"toUserID\":\"b\xc3\"}", http.StatusOK},
		{"not UTF-8 in a Tencent item", "tencent", signed(now, sign(vendorToken, now)), "{\"From_Account\":\"a\",\"FriendItem\":[{\"To_Account\":\"\xff<script>\"}]}", http.StatusOK},
		{"NUL bytes and control characters", "openim", openIMPath("callbackBeforeAddFriendCommand"), "{\"fromUserID\":\"a\\u0000\\u001f\",\"toUserID\":\"b\",\"reqMsg\":\"\\u2028\"}", http.StatusOK},
		{"forged Tencent signature", "tencent", signed(now, sign("guessed", now)), friendAdd("alice", "bob"), http.StatusUnauthorized},
		{"stale Tencent signature", "tencent", signed("1669872112", vendorSign), friendAdd("alice", "bob"), http.StatusUnauthorized},
		{"Tencent signature from the future", "tencent", signed(fmt.Sprint(time.Now().Add(time.Hour).Unix()), sign(vendorToken, fmt.Sprint(time.Now().Add(time.Hour).Unix()))), friendAdd("alice", "bob"), http.StatusUnauthorized},
		{"Tencent signature of another length", "tencent", signed(now, "abc"), friendAdd("alice", "bob"), http.StatusUnauthorized},
		{"empty body", "openim", openIMPath("callbackBeforeAddFriendCommand"), ``, http.StatusBadRequest},
		{"trailing garbage", "openim", openIMPath("callbackBeforeAddFriendCommand"), openIMAddFriend("alice", "bob", "") + "}{", http.StatusBadRequest},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := s.do(t, exchange{path: c.path, body: c.body})
			if got.status != c.status {
				t.Errorf("status %d, want %d; answer %.300s", got.status, c.status, got.body)
			}
			wellFormed(t, c.protocol, got.body)
		})
	}
	s.checkHonest(t)
	s.waitStatus(t, "/healthz", http.StatusOK, startTimeout)
}
