package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// maxBody is the --max-body-bytes of the failure tests.
const maxBody = 1024

// failurePolicies are the two values of --failure-policy; deny says which one.
var failurePolicies = []struct {
	name string
	deny bool
}{{"Allow", false}, {"Deny", true}}

func TestUndecidableRequests(t *testing.T) {
	t.Parallel()
	policies := writePolicies(t, protocolPolicies)
	addFriend := openIMPath("callbackBeforeAddFriendCommand")
	tencentAdd := tencentPath(vendorApp, "Sns.CallbackPrevFriendAdd")
	// openIMSized is a friend request from alice to bob whose body is exactly size bytes.
	openIMSized := func(size int) string {
		body := openIMAddFriend("alice", "bob", "")
		return strings.Replace(body, `"reqMsg":""`, `"reqMsg":"`+strings.Repeat("x", size-len(body))+`"`, 1)
	}
	tencentTooLarge := strings.Replace(friendAdd("alice", "bob"), "hello", strings.Repeat("x", maxBody), 1)

	for _, fp := range failurePolicies {
		t.Run(fp.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, policies, "--failure-policy", fp.name, "--max-body-bytes", fmt.Sprint(maxBody), "--max-batch-body-bytes", fmt.Sprint(maxBody))
			s.checkAll(t, []exchange{
				{name: "OpenIM malformed JSON", path: addFriend, body: `{"fromUserID":"alice",`,
					wantStatus: http.StatusBadRequest, wantBody: openIMUndecided(fp.deny, "malformed JSON body: …")},
				{name: "OpenIM body at the size limit", path: addFriend, body: openIMSized(maxBody),
					wantStatus: http.StatusOK, wantBody: openIMContinue},
				{name: "OpenIM body over the size limit", path: addFriend, body: openIMSized(maxBody + 1),
					// Over a size bound --too-large-policy (Deny) answers, whatever the failure policy.
					wantStatus: http.StatusRequestEntityTooLarge, wantBody: openIMUndecided(true, "body of 1025 bytes is larger than the limit of 1024")},
				{name: "OpenIM chunked body over the size limit", path: addFriend, body: openIMSized(maxBody + 1), chunked: true,
					wantStatus: http.StatusRequestEntityTooLarge, wantBody: openIMUndecided(true, "body is larger than the limit of 1024 bytes")},
				{name: "OpenIM GET", method: http.MethodGet, path: addFriend,
					wantStatus: http.StatusMethodNotAllowed, wantBody: openIMUndecided(fp.deny, "method GET not allowed: callbacks are POST")},
				{name: "OpenIM body that is not JSON by its type", path: addFriend, contentType: "application/xml", body: "<friend/>",
					wantStatus: http.StatusUnsupportedMediaType, wantBody: openIMUndecided(fp.deny, `content type "application/xml" is not JSON`)},
				// Without a command in the URL, an undecidable request may be a blocking one:
				// the failure policy applies (docs/callback-server.md, "Requests that are not decided").
				{name: "OpenIM malformed JSON with the command only in the body", path: "/openim", body: `{"callbackCommand":"callbackBeforeAddFriendCommand","fromUserID":`,
					wantStatus: http.StatusBadRequest, wantBody: openIMUndecided(fp.deny, "malformed JSON body: …")},
				{name: "OpenIM path with too many segments", path: "/openim/a/b/callbackBeforeAddFriendCommand", body: openIMAddFriend("alice", "bob", "hello"),
					wantStatus: http.StatusNotFound, wantBody: openIMUndecided(fp.deny, "unknown callback path /openim/a/b/callbackBeforeAddFriendCommand")},
				{name: "OpenIM notification with a malformed body", path: openIMPath("callbackAfterAddFriendCommand"), body: `{"fromUserID":`,
					wantStatus: http.StatusOK, wantBody: openIMContinue},

				{name: "Tencent malformed JSON", path: tencentAdd, body: `{"From_Account":"alice",`,
					wantStatus: http.StatusBadRequest, wantBody: tencentFail(http.StatusBadRequest, "malformed JSON body: …")},
				{name: "Tencent body over the size limit", path: tencentAdd, body: tencentTooLarge,
					wantStatus: http.StatusRequestEntityTooLarge,
					wantBody:   tencentFail(http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes is larger than the limit of 1024", len(tencentTooLarge)))},
				{name: "Tencent GET", method: http.MethodGet, path: tencentAdd,
					wantStatus: http.StatusMethodNotAllowed, wantBody: tencentFail(http.StatusMethodNotAllowed, "method GET not allowed: callbacks are POST")},
			})
			t.Run("405 names the allowed method", func(t *testing.T) {
				t.Parallel()
				for _, path := range []string{addFriend, tencentAdd} {
					if got := s.do(t, exchange{method: http.MethodGet, path: path}).header.Get("Allow"); got != http.MethodPost {
						t.Errorf("GET %s: Allow header %q, want POST", path, got)
					}
				}
			})
		})
	}
}

// invalidPolicy does not compile: a rule needs at least one condition.
const invalidPolicy = `
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: spam, namespace: e2e}
spec:
  rules:
    - {name: no-condition, code: 38001}
`

func TestNotReady(t *testing.T) {
	t.Parallel()
	for _, fp := range failurePolicies {
		t.Run(fp.name, func(t *testing.T) {
			t.Parallel()
			dir := writePolicies(t, invalidPolicy)
			s := launch(t, dir, "--failure-policy", fp.name)
			const reason = "policies are not loaded yet"

			t.Run("requests", func(t *testing.T) {
				t.Run("readyz", func(t *testing.T) {
					t.Parallel()
					if status, body := s.get(t, "/readyz"); status != http.StatusServiceUnavailable {
						t.Errorf("GET /readyz: got %d %q, want 503", status, body)
					}
				})
				s.checkAll(t, []exchange{
					{name: "OpenIM friend request", path: openIMPath("callbackBeforeAddFriendCommand"), body: openIMAddFriend("alice", "bob", "hello"),
						wantStatus: http.StatusServiceUnavailable, wantBody: openIMUndecided(fp.deny, reason)},
					{name: "OpenIM notification", path: openIMPath("callbackAfterAddFriendCommand"), body: openIMAddFriend("alice", "bob", "hello"),
						wantStatus: http.StatusOK, wantBody: openIMContinue},
					{name: "Tencent friend add", path: tencentPath(vendorApp, "Sns.CallbackPrevFriendAdd"), body: friendAdd("alice", "bob", "spam_1"),
						wantStatus: http.StatusOK,
						wantBody:   tencentUndecided(reason, undecidedItem("bob", fp.deny), undecidedItem("spam_1", fp.deny))},
					{name: "Tencent notification", path: tencentPath(vendorApp, "Sns.CallbackFriendDelete"),
						body:       `{"CallbackCommand":"Sns.CallbackFriendDelete","PairList":[{"From_Account":"alice","To_Account":"bob"}]}`,
						wantStatus: http.StatusOK, wantBody: tencentOK},
				})
			})

			t.Run("a valid policy makes it ready", func(t *testing.T) {
				writeFile(t, filepath.Join(dir, "policies.yaml"), protocolPolicies)
				s.waitStatus(t, "/readyz", http.StatusOK, changeTimeout)
				s.check(t, exchange{path: openIMPath("callbackBeforeAddFriendCommand"), body: openIMAddFriend("spam_1", "bob", "hello"),
					wantStatus: http.StatusOK, wantBody: spammerDeny})
			})
		})
	}
}
