package webhook

import (
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/policy"
	"github.com/friendgate/friendgate/internal/velocity"
)

// limitServer serves a policy limiting each sender to 3 friend requests an hour (code
// 38040) and a DryRun policy that would limit them to 2, counting in memory on clk.
func limitServer(t *testing.T, clk *testingclock.FakeClock) *testServer {
	t.Helper()
	hour := metav1.Duration{Duration: time.Hour}
	snap, _, err := policy.Build([]*v1alpha1.FriendPolicy{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "im", Name: "velocity", Generation: 1},
			Spec: v1alpha1.FriendPolicySpec{Limits: []v1alpha1.Limit{
				{Name: "per-sender", Key: v1alpha1.LimitKeyFrom, Limit: 3, Window: hour, Code: 38040, Message: "too many friend requests"},
			}},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "im", Name: "shadow", Generation: 1},
			Spec: v1alpha1.FriendPolicySpec{EnforcementAction: v1alpha1.EnforcementDryRun, Limits: []v1alpha1.Limit{
				{Name: "strict", Key: v1alpha1.LimitKeyFrom, Limit: 2, Window: hour},
			}},
		},
	}, nil, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, Options{Counter: velocity.NewLocal(velocity.LocalOptions{}), Clock: clk}, false)
	s.store.Set(snap)
	return s
}

// TestLimits: an OpenIM sender's fourth request in an hour is refused by the limit, the
// DryRun limit only reports, and an hour later the sender may send again.
func TestLimits(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC))
	s := limitServer(t, clk)
	send := func(from string) string {
		t.Helper()
		w := s.do(http.MethodPost, "/openim/app1/callbackBeforeAddFriendCommand", fmt.Sprintf(`{"fromUserID":%q,"toUserID":"bob","reqMsg":"hi"}`, from))
		if w.Code != http.StatusOK {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		return w.Body.String()
	}
	for i := range 3 {
		if got := send("alice"); got != openIMContinue {
			t.Fatalf("request %d: %s, want continue", i+1, got)
		}
	}
	if got := send("alice"); !strings.Contains(got, `"errCode":38040`) || !strings.Contains(got, "im/velocity/limit/per-sender") {
		t.Fatalf("fourth request: %s, want refused by im/velocity/limit/per-sender", got)
	}
	if got := send("carol"); got != openIMContinue {
		t.Fatalf("another sender: %s, want continue", got)
	}
	clk.Step(time.Hour)
	if got := send("alice"); got != openIMContinue {
		t.Fatalf("an hour later: %s, want continue", got)
	}
	for _, c := range []struct {
		policy, limit, outcome string
		want                   float64
	}{
		{"im/velocity", "per-sender", LimitCounted, 5},
		{"im/velocity", "per-sender", LimitLimited, 1},
		{"im/shadow", "strict", LimitCounted, 4},
		{"im/shadow", "strict", LimitWouldLimit, 2},
	} {
		if got := testutil.ToFloat64(s.metrics.limits.vec.WithLabelValues(c.policy, c.limit, c.outcome)); got != c.want {
			t.Errorf("friendgate_limit_requests_total{policy=%s,limit=%s,outcome=%s} = %v, want %v", c.policy, c.limit, c.outcome, got, c.want)
		}
	}
}

// TestLimitsTencentBatch: each friend item of a Tencent batch counts once, in order, so
// a batch of 5 from one sender at a limit of 3 has its last 2 items refused.
func TestLimitsTencentBatch(t *testing.T) {
	s := limitServer(t, testingclock.NewFakeClock(time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)))
	items := make([]string, 5)
	for i := range items {
		items[i] = fmt.Sprintf(`{"To_Account":"u_%d","AddWording":"hi"}`, i)
	}
	w := s.do(http.MethodPost, "/tencent?SdkAppid=1400000001&CallbackCommand=Sns.CallbackPrevFriendAdd",
		`{"CallbackCommand":"Sns.CallbackPrevFriendAdd","From_Account":"alice","FriendItem":[`+strings.Join(items, ",")+`]}`)
	want := `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ResultItem":[` +
		`{"To_Account":"u_0","ResultCode":0,"ResultInfo":""},{"To_Account":"u_1","ResultCode":0,"ResultInfo":""},{"To_Account":"u_2","ResultCode":0,"ResultInfo":""},` +
		`{"To_Account":"u_3","ResultCode":38040,"ResultInfo":"too many friend requests"},{"To_Account":"u_4","ResultCode":38040,"ResultInfo":"too many friend requests"}]}`
	if w.Code != http.StatusOK || w.Body.String() != want {
		t.Fatalf("got %d %s\nwant %s", w.Code, w.Body, want)
	}
}

// TestRemovedPolicySeries: when a policy leaves the snapshot, its decision and limit
// series go with it (a policy per campaign or tenant must not leave series behind for the
// replica's life); the series of the policies that stay keep their counts, and a policy
// that comes back starts afresh.
func TestRemovedPolicySeries(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC))
	s := limitServer(t, clk)
	all := s.store.Snapshot().Policies()
	send := func(from string) {
		t.Helper()
		if w := s.do(http.MethodPost, "/openim/app1/callbackBeforeAddFriendCommand", fmt.Sprintf(`{"fromUserID":%q,"toUserID":"bob"}`, from)); w.Code != http.StatusOK {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	for range 4 {
		send("alice")
	}
	// series lists friendgate_limit_requests_total and friendgate_decisions_total by their
	// policy label and the other labels that vary here.
	series := func() map[string]float64 {
		t.Helper()
		families, err := s.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, f := range families {
			if f.GetName() != "friendgate_limit_requests_total" && f.GetName() != "friendgate_decisions_total" {
				continue
			}
			for _, m := range f.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["policy"] == "" {
					continue
				}
				got[f.GetName()+"{"+labels["policy"]+","+labels["limit"]+labels["result"]+","+labels["outcome"]+"}"] = m.GetCounter().GetValue()
			}
		}
		return got
	}
	want := map[string]float64{
		"friendgate_limit_requests_total{im/velocity,per-sender,counted}": 3,
		"friendgate_limit_requests_total{im/velocity,per-sender,limited}": 1,
		"friendgate_limit_requests_total{im/shadow,strict,counted}":       2,
		"friendgate_limit_requests_total{im/shadow,strict,would_limit}":   2,
		"friendgate_decisions_total{im/velocity,deny,}":                   1,
		"friendgate_decisions_total{im/shadow,would-deny,}":               2,
	}
	if got := series(); !maps.Equal(got, want) {
		t.Fatalf("series before the removal:\n got %v\nwant %v", got, want)
	}

	var velocityOnly []*policy.Compiled
	for _, c := range all {
		if c.Key == "im/velocity" {
			velocityOnly = append(velocityOnly, c)
		}
	}
	s.store.Set(policy.NewSnapshot(velocityOnly))
	for k := range want {
		if strings.Contains(k, "im/shadow") {
			delete(want, k)
		}
	}
	if got := series(); !maps.Equal(got, want) {
		t.Fatalf("series after im/shadow was removed:\n got %v\nwant %v", got, want)
	}

	s.store.Set(policy.NewSnapshot(all))
	send("carol")
	send("carol")
	send("carol")
	want["friendgate_limit_requests_total{im/velocity,per-sender,counted}"] = 6
	want["friendgate_limit_requests_total{im/shadow,strict,counted}"] = 2
	want["friendgate_limit_requests_total{im/shadow,strict,would_limit}"] = 1
	want["friendgate_decisions_total{im/shadow,would-deny,}"] = 1
	if got := series(); !maps.Equal(got, want) {
		t.Fatalf("series after im/shadow came back:\n got %v\nwant %v", got, want)
	}
}
