package webhook

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http/httptest"
	"testing"
	"unicode/utf8"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/policy"
)

// testPolicies cover every decision path the adapters map: a blocklist on each side, a
// wording rule, an app-scoped policy with a keyword rule and a DryRun policy.
func testPolicies() []*v1alpha1.FriendPolicy {
	return []*v1alpha1.FriendPolicy{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "im", Name: "anti-spam", Generation: 1},
			Spec: v1alpha1.FriendPolicySpec{
				Events:     []v1alpha1.Event{"FriendRequest", "FriendResponse", "ImportFriends", "AddBlack", "SetRemark"},
				Priority:   10,
				Exemptions: &v1alpha1.Exemptions{Users: []string{"support_1"}},
				Blocklists: []v1alpha1.Blocklist{
					{Name: "spammers", Subject: v1alpha1.SubjectFrom, Users: []string{"spam_1"}, Code: 38001, Message: "spammer"},
					{Name: "protected", Subject: v1alpha1.SubjectTo, Users: []string{"vip_1"}, Code: 38002, Message: "protected user"},
				},
				Rules: []v1alpha1.Rule{{Name: "no-links", WordingPatterns: []string{`https?://`}, Code: 38003, Message: "no links"}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "im", Name: "shop", Generation: 1},
			Spec: v1alpha1.FriendPolicySpec{
				AppIDs:     []string{"1400000001", "shop"},
				Blocklists: []v1alpha1.Blocklist{{Name: "competitors", Prefixes: []string{"rival_"}, Code: 38010, Message: "no rivals"}},
				Rules:      []v1alpha1.Rule{{Name: "contact-bait", Keywords: &v1alpha1.Keywords{Words: []string{"telegram"}, IgnoreSeparators: true}, Code: 38011, Message: "no bait"}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "im", Name: "audit", Generation: 1},
			Spec: v1alpha1.FriendPolicySpec{
				EnforcementAction: v1alpha1.EnforcementDryRun,
				Blocklists:        []v1alpha1.Blocklist{{Name: "watch", Users: []string{"watched_1"}}},
			},
		},
	}
}

type testServer struct {
	handler *Handler
	store   *Store
	metrics *Metrics
	reg     *prometheus.Registry
}

// newTestServer returns a handler loaded with testPolicies unless empty is set.
func newTestServer(tb testing.TB, opts Options, loaded bool) *testServer {
	tb.Helper()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	store := NewStore(m)
	if loaded {
		snap, _, err := policy.Build(testPolicies(), nil, policy.Options{})
		if err != nil {
			tb.Fatalf("Build: %v", err)
		}
		store.Set(snap)
	}
	opts.Metrics = m
	if opts.ClientDetail == "" {
		// Most tests check which entry decided from the answer.
		opts.ClientDetail = DetailFull
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = logr.Discard()
	}
	h := NewHandler(store, opts)
	return &testServer{handler: h, store: store, metrics: m, reg: reg}
}

func (s *testServer) do(method, target, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, bytes.NewBufferString(body))
	req.RemoteAddr = "192.0.2.10:40000"
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	s.handler.ServeHTTP(rec, req)
	return rec
}

// openIMAnswer is the OpenIM answer with exactly the fields the server parses.
type openIMAnswer struct {
	ActionCode    *int      `json:"actionCode"`
	ErrCode       *int      `json:"errCode"`
	ErrMsg        *string   `json:"errMsg"`
	ErrDlt        *string   `json:"errDlt"`
	NextCode      *int      `json:"nextCode"`
	FriendUserIDs *[]string `json:"friendUserIDs,omitempty"`
}

type tencentAnswer struct {
	ActionStatus *string `json:"ActionStatus"`
	ErrorCode    *int    `json:"ErrorCode"`
	ErrorInfo    *string `json:"ErrorInfo"`
	ResultItem   *[]struct {
		ToAccount  *string `json:"To_Account"`
		ResultCode *int    `json:"ResultCode"`
		ResultInfo *string `json:"ResultInfo"`
	} `json:"ResultItem,omitempty"`
}

// checkParseable fails unless body is what the protocol's server can parse: valid UTF-8
// JSON with the protocol's fields, all present and of the right JSON types, and nothing else.
func checkParseable(t *testing.T, protocol string, body []byte) {
	t.Helper()
	if !utf8.Valid(body) {
		t.Fatalf("answer is not valid UTF-8: %q", body)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	switch protocol {
	case ProtocolOpenIM:
		var a openIMAnswer
		if err := dec.Decode(&a); err != nil {
			t.Fatalf("OpenIM answer %q does not parse: %v", body, err)
		}
		if a.ActionCode == nil || a.ErrCode == nil || a.ErrMsg == nil || a.ErrDlt == nil || a.NextCode == nil {
			t.Fatalf("OpenIM answer %q lacks a field", body)
		}
		if *a.NextCode == 1 && *a.ErrCode == 0 {
			t.Fatalf("OpenIM answer %q denies with errCode 0", body)
		}
	case ProtocolTencent:
		var a tencentAnswer
		if err := dec.Decode(&a); err != nil {
			t.Fatalf("Tencent answer %q does not parse: %v", body, err)
		}
		if a.ActionStatus == nil || a.ErrorCode == nil || a.ErrorInfo == nil {
			t.Fatalf("Tencent answer %q lacks a field", body)
		}
		if a.ResultItem != nil {
			for _, it := range *a.ResultItem {
				if it.ToAccount == nil || it.ResultCode == nil || it.ResultInfo == nil {
					t.Fatalf("Tencent answer %q has an incomplete ResultItem", body)
				}
			}
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("answer %q has trailing data", body)
	}
}
