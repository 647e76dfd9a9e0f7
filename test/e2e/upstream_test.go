package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// backend is an existing OpenIM webhook backend on loopback: it records the callbacks it
// gets and answers each command as told.
type backend struct {
	*httptest.Server
	mu       sync.Mutex
	received []backendCall
	release  chan struct{} // callbackBeforeUserRegisterCommand waits for it
	once     sync.Once
}

// unblock answers the waiting callbacks, and those to come.
func (b *backend) unblock() { b.once.Do(func() { close(b.release) }) }

type backendCall struct{ path, operationID, body string }

func newBackend(t *testing.T) *backend {
	b := &backend{release: make(chan struct{})}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.received = append(b.received, backendCall{r.URL.Path, r.Header.Get("operationID"), string(body)})
		b.mu.Unlock()
		switch r.URL.Path {
		case "/hook/callbackBeforeSendSingleMsgCommand":
			io.WriteString(w, `{"actionCode":0,"errCode":5001,"errMsg":"no ads","errDlt":"","nextCode":1}`)
		case "/hook/callbackBeforeAddFriendCommand":
			io.WriteString(w, `{"actionCode":0,"errCode":6001,"errMsg":"backend says no","errDlt":"","nextCode":1}`)
		case "/hook/callbackBeforeCreateGroupCommand":
			io.WriteString(w, `not json`)
		case "/hook/callbackBeforeUserRegisterCommand":
			<-b.release
		default:
			io.WriteString(w, openIMContinue)
		}
	}))
	t.Cleanup(func() {
		b.unblock()
		b.Close()
	})
	return b
}

func (b *backend) calls() []backendCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]backendCall(nil), b.received...)
}

// TestUpstream puts friendgate in front of an existing OpenIM webhook backend: commands
// friendgate does not decide are forwarded with their operationID and body and the
// backend's answer relayed; the friend commands it allows are forwarded too when asked;
// a backend that fails or hangs gets the upstream failure policy's answer.
func TestUpstream(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	s := startServer(t, writePolicies(t, protocolPolicies), "--openim-upstream", b.URL+"/hook",
		"--openim-upstream-friend-commands", "--openim-upstream-timeout", "500ms")
	msg := `{"callbackCommand":"callbackBeforeSendSingleMsgCommand","sendID":"alice","recvID":"bob","content":"buy now"}`
	s.check(t, exchange{name: "message callback", path: openIMPath("callbackBeforeSendSingleMsgCommand"), body: msg, operationID: "op-msg",
		wantStatus: http.StatusOK, wantBody: `{"actionCode":0,"errCode":5001,"errMsg":"no ads","errDlt":"","nextCode":1}`})
	if got := b.calls(); len(got) != 1 || got[0] != (backendCall{"/hook/callbackBeforeSendSingleMsgCommand", "op-msg", msg}) {
		t.Fatalf("backend got %+v, want the message callback as sent", got)
	}
	s.check(t, exchange{name: "friend request friendgate allows", path: openIMPath("callbackBeforeAddFriendCommand"), body: openIMAddFriend("alice", "bob", "hi"),
		wantStatus: http.StatusOK, wantBody: `{"actionCode":0,"errCode":6001,"errMsg":"backend says no","errDlt":"","nextCode":1}`})
	s.check(t, exchange{name: "friend request friendgate denies", path: openIMPath("callbackBeforeAddFriendCommand"), body: openIMAddFriend("spam_1", "bob", "hi"),
		wantStatus: http.StatusOK, wantBody: spammerDeny})
	if got := len(b.calls()); got != 2 {
		t.Errorf("backend got %d callbacks, want 2: a denied friend request is not forwarded", got)
	}
	s.check(t, exchange{name: "notification", path: openIMPath("callbackAfterAddFriendCommand"), body: `{}`,
		wantStatus: http.StatusOK, wantBody: openIMContinue})
	s.check(t, exchange{name: "backend answers garbage", path: openIMPath("callbackBeforeCreateGroupCommand"), body: `{}`,
		wantStatus: http.StatusBadGateway, wantBody: openIMDeny(failureCode, "the callback could not be completed", "friendgate: the upstream webhook did not answer: answer is not JSON")})
	s.check(t, exchange{name: "backend hangs", path: openIMPath("callbackBeforeUserRegisterCommand"), body: `{}`,
		wantStatus: http.StatusGatewayTimeout, wantBody: openIMDeny(failureCode, "the callback could not be completed", "friendgate: the upstream webhook did not answer: …")})
	// A command named only in the body becomes a path segment of the backend's URL: one
	// that is not letters and digits could point the callback elsewhere, so it is not sent.
	for _, name := range []string{"..", "a/../../admin", "callback%2F..", "callbackBefore AddFriend"} {
		s.check(t, exchange{name: "command " + name, path: "/openim", body: fmt.Sprintf(`{"callbackCommand":%q}`, name),
			wantStatus: http.StatusBadRequest, wantBody: openIMDeny(failureCode, "the callback could not be completed",
				fmt.Sprintf("friendgate: command %q is not forwarded to the upstream webhook: a command name is letters and digits", name))})
	}
	if got := len(b.calls()); got != 5 {
		t.Errorf("backend got %d callbacks, want 5: none with a command that is not letters and digits", got)
	}
	s.checkMetric(t, "friendgate_upstream_requests_total", map[string]string{"result": "ok"}, 3)
	s.checkMetric(t, "friendgate_upstream_requests_total", map[string]string{"result": "error"}, 1)
	s.checkMetric(t, "friendgate_upstream_requests_total", map[string]string{"result": "timeout"}, 1)

	t.Run("upstream failure policy Allow", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, writePolicies(t, protocolPolicies), "--openim-upstream", b.URL+"/hook", "--openim-upstream-failure-policy", "Allow")
		s.check(t, exchange{path: openIMPath("callbackBeforeCreateGroupCommand"), body: `{}`, wantStatus: http.StatusBadGateway, wantBody: openIMContinue})
		// Without --openim-upstream-friend-commands friendgate alone answers friend callbacks.
		s.check(t, exchange{path: openIMPath("callbackBeforeAddFriendCommand"), body: openIMAddFriend("alice", "bob", "hi"), wantStatus: http.StatusOK, wantBody: openIMContinue})
	})
}

// TestBusyConnections fills --max-connections with callbacks whose upstream has not
// answered yet: connections being answered are never closed to make room, so an honest
// caller gets the busy answer (503 and the failure policy's), and is decided again once
// they are answered.
func TestBusyConnections(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	s := startServer(t, writePolicies(t, protocolPolicies), "--max-connections", "2", "--failure-policy", "Deny",
		"--openim-upstream", b.URL+"/hook", "--openim-upstream-timeout", "60s")
	// One at a time: a connection still delivering its request after a second is stale and
	// may make room for the next one (a loaded machine can take that long), whereas one
	// waiting on the upstream is being answered and never is.
	for i := range 2 {
		dialRaw(t, s).startSlowBody(t, openIMPath("callbackBeforeUserRegisterCommand"), 2, 2)
		s.eventually(t, changeTimeout, fmt.Sprintf("callback %d to wait on the upstream", i+1), func() (bool, string) {
			n := len(b.calls())
			return n == i+1, fmt.Sprint(n)
		})
	}
	s.checkBusy(t, true, "server busy: too many connections")
	s.checkMetric(t, "friendgate_callback_shed_total", map[string]string{"reason": "connections"}, 2)
	b.unblock()
	s.eventually(t, changeTimeout, "an honest caller is decided", func() (bool, string) {
		got := s.do(t, exchange{path: openIMPath("callbackBeforeAddFriendCommand"), body: openIMAddFriend("spam_1", "bob", "hi")})
		wellFormed(t, "openim", got.body)
		return got.status == http.StatusOK && got.body == spammerDeny, got.body
	})
}
