package webhook

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	ctrlzap "sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/friendgate/friendgate/internal/manifest"
	"github.com/friendgate/friendgate/internal/policy"
	"github.com/friendgate/friendgate/internal/velocity"
)

// benchWriter is a ResponseWriter that keeps nothing, so the benchmarks measure the
// handler: read, decode, decide, encode.
type benchWriter struct {
	header http.Header
	status int
	n      int
}

func (w *benchWriter) Header() http.Header         { return w.header }
func (w *benchWriter) WriteHeader(status int)      { w.status = status }
func (w *benchWriter) Write(b []byte) (int, error) { w.n += len(b); return len(b), nil }

// benchBody is a reusable request body.
type benchBody struct{ bytes.Reader }

func (*benchBody) Close() error { return nil }

var benchCases = []struct {
	name, target, body string
	deny               bool
}{
	{"openim/add-friend/allow", "/openim/callbackBeforeAddFriendCommand",
		`{"callbackCommand":"callbackBeforeAddFriendCommand","fromUserID":"alice_12345","toUserID":"bob_67890","reqMsg":"hello, we met at the conference yesterday","ex":""}`, false},
	{"openim/add-friend/deny", "/openim/callbackBeforeAddFriendCommand",
		`{"callbackCommand":"callbackBeforeAddFriendCommand","fromUserID":"spam_1","toUserID":"bob_67890","reqMsg":"hello","ex":""}`, true},
	{"tencent/prev-friend-add/1-item", "/tencent?SdkAppid=1400000001&CallbackCommand=Sns.CallbackPrevFriendAdd&contenttype=json&ClientIP=198.51.100.7&OptPlatform=Android",
		`{"CallbackCommand":"Sns.CallbackPrevFriendAdd","Requester_Account":"alice_12345","From_Account":"alice_12345","FriendItem":[{"To_Account":"bob_67890","Remark":"Bob","GroupName":"work","AddSource":"AddSource_Type_QR","AddWording":"hello, we met at the conference yesterday"}],"AddType":"Add_Type_Both","ForceAddFlags":0,"EventTime":1669872112000}`, false},
	{"tencent/prev-friend-add/10-items", "/tencent?SdkAppid=1400000001&CallbackCommand=Sns.CallbackPrevFriendAdd&contenttype=json&ClientIP=198.51.100.7&OptPlatform=Android",
		`{"CallbackCommand":"Sns.CallbackPrevFriendAdd","Requester_Account":"alice_12345","From_Account":"alice_12345","FriendItem":[` +
			`{"To_Account":"u_0","AddWording":"hi"},{"To_Account":"u_1","AddWording":"hi"},{"To_Account":"u_2","AddWording":"hi"},{"To_Account":"vip_1","AddWording":"hi"},{"To_Account":"u_4","AddWording":"hi"},` +
			`{"To_Account":"u_5","AddWording":"hi"},{"To_Account":"u_6","AddWording":"hi"},{"To_Account":"u_7","AddWording":"hi"},{"To_Account":"u_8","AddWording":"hi"},{"To_Account":"u_9","AddWording":"hi"}],` +
			`"AddType":"Add_Type_Both","ForceAddFlags":0,"EventTime":1669872112000}`, true},
}

// BenchmarkHandler measures the full in-process HTTP path per protocol: body read, JSON
// decode, decision, answer encoding and metrics. /parallel runs it on every core, as a
// server under load does, and reports requests per second.
func BenchmarkHandler(b *testing.B) {
	s := newTestServer(b, Options{}, true)
	for _, bc := range benchCases {
		check := s.do(http.MethodPost, bc.target, bc.body)
		if check.Code != 200 || bytes.Contains(check.Body.Bytes(), []byte(`38`)) != bc.deny {
			b.Fatalf("%s: unexpected answer %d %s", bc.name, check.Code, check.Body)
		}
		data := []byte(bc.body)
		b.Run(bc.name, func(b *testing.B) {
			serveBench(b, s.handler, bc.target, bc.body)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req, w, body := benchRequest(bc.target, bc.body)
				for pb.Next() {
					body.Reset(data)
					s.handler.ServeHTTP(w, req)
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// BenchmarkHandlerAsServed runs the handler as `friendgate serve --policies config/samples`
// does: the samples, the process's own velocity counter and the binary's logger (zap in
// production mode, whose sampler drops most repeats of a line) writing to io.Discard. The
// requests are the load benchmark's (hack/loadbench), sent again and again by one sender,
// so after the first few the samples' DryRun limits are over and every request is a
// would-deny: one log line per limit, almost all of them dropped by the sampler.
func BenchmarkHandlerAsServed(b *testing.B) {
	set, err := manifest.Load("../config/samples")
	if err != nil {
		b.Fatal(err)
	}
	snap, _, err := policy.Build(set.Policies, set.ConfigMaps, policy.Options{})
	if err != nil {
		b.Fatal(err)
	}
	s := newTestServer(b, Options{
		ClientDetail: DetailReference,
		Counter:      velocity.NewLocal(velocity.LocalOptions{}),
		Logger:       ctrlzap.New(ctrlzap.WriteTo(io.Discard)),
	}, false)
	s.store.Set(snap)
	for _, bc := range benchCases {
		if bc.deny { // the allowed single items are the load benchmark's
			continue
		}
		b.Run(bc.name, func(b *testing.B) {
			if status := serveBench(b, s.handler, bc.target, bc.body); status != http.StatusOK {
				b.Fatalf("status %d", status)
			}
		})
	}
	if got := testutil.ToFloat64(s.metrics.decisions.WithLabelValues(ProtocolTencent, "Sns.CallbackPrevFriendAdd", "FriendRequest", ResultWouldDeny, "default/request-limits")); got == 0 {
		b.Fatal("no would-deny counted: the benchmark does not measure the flooding sender it describes")
	}
}

// BenchmarkDecideShare decides the items of the benchmark requests alone, to compare with
// BenchmarkHandler: deciding must be a small part of answering.
func BenchmarkDecideShare(b *testing.B) {
	s := newTestServer(b, Options{}, true)
	snap := s.store.Snapshot()
	for _, bc := range benchCases {
		c := s.handler.getCall()
		req, _, _ := benchRequest(bc.target, bc.body)
		c.body = []byte(bc.body)
		var cmd *command
		if req.URL.Path == "/tencent" {
			q := parseTencentQuery(req.URL.RawQuery)
			cmd = s.handler.tencent[q.command]
			if err := json.Unmarshal(c.body, &c.tencentBody); err != nil {
				b.Fatal(err)
			}
			c.items = tencentItems(cmd, &q, &c.tencentBody, nil)
		} else {
			_, name, _ := openIMRoute(req.URL.Path, req)
			cmd = s.handler.openIM[name]
			if err := json.Unmarshal(c.body, &c.openIMBody); err != nil {
				b.Fatal(err)
			}
			c.items = openIMItems(cmd, "", &c.openIMBody, nil)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for i := range c.items {
					_ = snap.Decide(&c.items[i])
				}
			}
		})
	}
}

// serveBench measures h answering target and body back to back on one goroutine,
// reporting allocations and CPU time per callback; it returns the last answer's status.
func serveBench(b *testing.B, h http.Handler, target, body string) int {
	data := []byte(body)
	req, w, rb := benchRequest(target, body)
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		rb.Reset(data)
		w.status = 0
		h.ServeHTTP(w, req)
	}
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
	return w.status
}

func benchRequest(target, body string) (*http.Request, *benchWriter, *benchBody) {
	req := httptest.NewRequest(http.MethodPost, target, nil)
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("operationID", "bench-op")
	req.RemoteAddr = "192.0.2.1:1000"
	bb := &benchBody{}
	bb.Reset([]byte(body))
	req.Body = bb
	req.ContentLength = int64(len(body))
	return req, &benchWriter{header: http.Header{}}, bb
}

var _ io.ReadCloser = (*benchBody)(nil)

// BenchmarkDecode reads the benchmark requests' bodies alone: the decoder's part of
// BenchmarkHandler.
func BenchmarkDecode(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			body := []byte(bc.body)
			c := &call{}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if strings.HasPrefix(bc.target, "/tencent") {
					c.tencentBody.reset()
					err = decodeTencent(&c.decoder, body, 100, &c.tencentBody)
				} else {
					c.openIMBody.reset()
					err = decodeOpenIM(&c.decoder, body, 100, &c.openIMBody)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
