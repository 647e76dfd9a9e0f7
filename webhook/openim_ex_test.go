package webhook

import (
	"encoding/json"
	"testing"
)

// TestOpenIMExReachesTheEngine checks that the add-friend callback's ex is the request's
// ex, which CEL reads as request.ex.
func TestOpenIMExReachesTheEngine(t *testing.T) {
	s := newTestServer(t, Options{}, true)
	var b openIMRequest
	body := `{"callbackCommand":"callbackBeforeAddFriendCommand","fromUserID":"alice","toUserID":"bob","reqMsg":"hi","ex":"{\"vip\":true}"}`
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Fatal(err)
	}
	items := openIMItems(s.handler.openIM["callbackBeforeAddFriendCommand"], "", &b, nil)
	if len(items) != 1 || items[0].Ex != `{"vip":true}` {
		t.Fatalf("items %+v, want one with ex {\"vip\":true}", items)
	}
}
