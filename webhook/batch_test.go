package webhook

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func ids(prefix string, n int) string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%q", fmt.Sprintf("%s%d", prefix, i))
	}
	return "[" + strings.Join(out, ",") + "]"
}

// TestBatchBounds: a batch within the bounds is decided item by item, one over them is
// refused with 413 and the too-large policy's answer, which is Deny unless chosen.
func TestBatchBounds(t *testing.T) {
	const (
		importPath = "/openim/callbackBeforeImportFriendsCommand"
		tencent    = "/tencent?SdkAppid=1&CallbackCommand=Sns.CallbackPrevFriendAdd"
		tooLarge   = `{"actionCode":0,"errCode":38000,"errMsg":"friend request could not be checked","errDlt":"friendgate: `
	)
	items := func(n int) string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf(`{"To_Account":"u%d"}`, i)
		}
		return "[" + strings.Join(out, ",") + "]"
	}
	long := strings.Repeat("x", maxUserIDBytes+1)
	tests := []struct {
		name       string
		opts       Options
		target     string
		body       string
		wantStatus int
		wantStart  string
	}{
		{"import at the item limit", Options{MaxBatchItems: 5}, importPath,
			`{"ownerUserID":"alice","friendUserIDs":["bob","vip_1","c","d","e"]}`, 200,
			`{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0,"friendUserIDs":["bob","c","d","e"]}`},
		{"import over the item limit", Options{MaxBatchItems: 5}, importPath,
			`{"ownerUserID":"alice","friendUserIDs":` + ids("u", 6) + `}`, 413, tooLarge + "6 friend IDs in one request, more than the limit of 5"},
		{"import over the item limit, too-large policy Allow", Options{MaxBatchItems: 5, TooLargePolicy: FailAllow}, importPath,
			`{"ownerUserID":"alice","friendUserIDs":` + ids("u", 6) + `}`, 413, allowOpenIM},
		{"import over the item limit under failure policy Allow", Options{MaxBatchItems: 5, FailurePolicy: FailAllow}, importPath,
			`{"ownerUserID":"alice","friendUserIDs":` + ids("u", 6) + `}`, 413, tooLarge},
		{"import with an overlong ID", Options{}, importPath,
			`{"ownerUserID":"alice","friendUserIDs":["bob","` + long + `"]}`, 413, tooLarge + "the to user ID of item 1 is 1025 bytes long"},
		{"import by an overlong owner", Options{}, importPath,
			`{"ownerUserID":"` + long + `","friendUserIDs":["bob"]}`, 413, tooLarge + "the from user ID of item 0 is 1025 bytes long"},
		{"OpenIM add-friend from an overlong ID", Options{}, "/openim/callbackBeforeAddFriendCommand",
			`{"fromUserID":"` + long + `","toUserID":"bob"}`, 413, tooLarge + "the from user ID of item 0"},
		{"OpenIM add-friend at the ID limit", Options{}, "/openim/callbackBeforeAddFriendCommand",
			`{"fromUserID":"` + long[1:] + `","toUserID":"bob"}`, 200, allowOpenIM},
		{"Tencent to an overlong ID", Options{}, tencent,
			`{"From_Account":"alice","FriendItem":[{"To_Account":"bob"},{"To_Account":"` + long + `"}]}`, 200,
			`{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"friendgate: the to user ID of item 1 is 1025 bytes long, more than the limit of 1024","ResultItem":[{"To_Account":"bob","ResultCode":38000,"ResultInfo":"friend request could not be checked"},{"To_Account":"` + long + `","ResultCode":38000,`},
		{"Tencent to an overlong ID, too-large policy Allow", Options{TooLargePolicy: FailAllow}, tencent,
			`{"From_Account":"alice","FriendItem":[{"To_Account":"` + long + `"}]}`, 200,
			`{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"friendgate: the to user ID of item 0 is 1025 bytes long, more than the limit of 1024","ResultItem":[{"To_Account":"` + long + `","ResultCode":0,"ResultInfo":""}]}`},
		{"Tencent from an overlong ID", Options{}, tencent,
			`{"From_Account":"` + long + `","FriendItem":[{"To_Account":"bob"}]}`, 200,
			`{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"friendgate: the from user ID of item 0 is 1025 bytes long, more than the limit of 1024","ResultItem":[{"To_Account":"bob","ResultCode":38000,"ResultInfo":"friend request could not be checked"}]}`},
		{"import over the body limit, within the batch limit", Options{MaxBodyBytes: 1024, MaxBatchBodyBytes: 1 << 20}, importPath,
			`{"ownerUserID":"alice","friendUserIDs":` + ids("user_", 2000) + `}`, 200, allowOpenIM},
		{"import over the batch body limit", Options{MaxBodyBytes: 1024, MaxBatchBodyBytes: 4096}, importPath,
			`{"ownerUserID":"alice","friendUserIDs":` + ids("user_", 2000) + `}`, 413, tooLarge + "body of"},
		{"import IDs of the wrong type", Options{}, importPath,
			`{"ownerUserID":"alice","friendUserIDs":[1,2]}`, 400, allowOpenIM},
		{"Tencent at the item limit", Options{MaxBatchItems: 3}, tencent,
			`{"From_Account":"spam_1","FriendItem":` + items(3) + `}`, 200, `{"ActionStatus":"OK"`},
		{"Tencent over the item limit", Options{MaxBatchItems: 3}, tencent,
			`{"From_Account":"spam_1","FriendItem":` + items(4) + `}`, 413,
			`{"ActionStatus":"FAIL","ErrorCode":413,"ErrorInfo":"friendgate: 4 items in one request, more than the limit of 3"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, tt.opts, true)
			rec := s.do(http.MethodPost, tt.target, tt.body)
			if rec.Code != tt.wantStatus || !strings.HasPrefix(rec.Body.String(), tt.wantStart) {
				t.Fatalf("got %d %s\nwant %d %s...", rec.Code, rec.Body, tt.wantStatus, tt.wantStart)
			}
			protocol := ProtocolOpenIM
			if strings.HasPrefix(tt.target, "/tencent") {
				protocol = ProtocolTencent
			}
			checkParseable(t, protocol, rec.Body.Bytes())
			if got := s.handler.budget.used.Load(); got != 0 {
				t.Fatalf("in-flight bytes after the answer: %d, want 0", got)
			}
		})
	}
}
