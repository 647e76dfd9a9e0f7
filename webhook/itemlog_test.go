package webhook

import (
	"reflect"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/policy"
)

// logrOnly hides zapr's underlying logger, so the handler writes through logr as it does
// for any sink that is not zap.
type logrOnly struct{ logr.LogSink }

// Init leaves the wrapped sink as zapr.NewLogger initialised it: the wrapper's promoted
// methods are not frames of the call stack, so the caller zapr reports is unchanged.
func (logrOnly) Init(logr.RuntimeInfo) {}

// loggedLine is what a test compares of a log entry.
type loggedLine struct {
	msg    string
	fields map[string]any
	caller string
}

// TestItemLines: the per-item lines say the same whether they go straight to zap (the
// binary's logger) or through logr (any other sink): the same messages, fields and values
// and the same caller.
func TestItemLines(t *testing.T) {
	requests := []struct{ target, body string }{
		// Denied by a keyword rule: the dictionary entry and the reference.
		{"/openim/shop/callbackBeforeAddFriendCommand", `{"fromUserID":"alice","toUserID":"bob","reqMsg":"my t.e.l.e.g.r.a.m"}`},
		// Would be denied by the DryRun policy, then allowed (and sampled).
		{"/tencent?SdkAppid=1400000001&CallbackCommand=Sns.CallbackPrevFriendAdd", `{"CallbackCommand":"Sns.CallbackPrevFriendAdd","From_Account":"watched_1","FriendItem":[{"To_Account":"bob"}]}`},
		// Denied by a blocklist, with the operationID.
		{"/openim/callbackBeforeAddFriendCommand", `{"fromUserID":"spam_1","toUserID":"bob"}`},
	}
	run := func(t *testing.T, hide bool) []loggedLine {
		core, logs := observer.New(zapcore.InfoLevel)
		log := zapr.NewLogger(zap.New(core, zap.AddCaller()))
		if hide {
			log = logr.New(logrOnly{log.GetSink()})
		}
		s := newTestServer(t, Options{ClientDetail: DetailReference, LogAllowEvery: 1, Logger: log}, true)
		if (s.handler.items.zap != nil) == hide {
			t.Fatalf("hide %v: the handler writes through zap: %v", hide, s.handler.items.zap != nil)
		}
		for _, r := range requests {
			if rec := s.do("POST", r.target, r.body, "operationID", "op-7"); rec.Code != 200 {
				t.Fatalf("%s: %d %s", r.target, rec.Code, rec.Body)
			}
		}
		var lines []loggedLine
		for _, e := range logs.All() {
			fields := e.ContextMap()
			if ref, ok := fields["reference"].(string); ok && len(ref) == len("ref:")+16 {
				fields["reference"] = "ref:…" // random per denial
			}
			lines = append(lines, loggedLine{e.Message, fields, e.Caller.Function})
		}
		return lines
	}
	viaZap, viaLogr := run(t, false), run(t, true)
	want := []loggedLine{
		{"denied", map[string]any{"protocol": "openim", "command": "callbackBeforeAddFriendCommand", "operationID": "op-7",
			"event": "FriendRequest", "appID": "shop", "from": "alice", "to": "bob", "policy": "im/shop", "entry": "im/shop/rule/contact-bait",
			"code": int32(38011), "message": "no bait", "keyword": "telegram", "keywordSource": "words", "reference": "ref:…"}, ""},
		{"would deny (dry run)", map[string]any{"protocol": "tencent", "command": "Sns.CallbackPrevFriendAdd",
			"event": "FriendRequest", "appID": "1400000001", "from": "watched_1", "to": "bob", "policy": "im/audit", "entry": "im/audit/blocklist/watch",
			"code": int32(v1alpha1.DefaultCode), "message": policy.DefaultBlocklistMessage}, ""},
		{"allowed (sampled)", map[string]any{"protocol": "tencent", "command": "Sns.CallbackPrevFriendAdd",
			"event": "FriendRequest", "appID": "1400000001", "from": "watched_1", "to": "bob", "sampleEvery": uint64(1)}, ""},
		{"denied", map[string]any{"protocol": "openim", "command": "callbackBeforeAddFriendCommand", "operationID": "op-7",
			"event": "FriendRequest", "appID": "", "from": "spam_1", "to": "bob", "policy": "im/anti-spam", "entry": "im/anti-spam/blocklist/spammers",
			"code": int32(38001), "message": "spammer", "reference": "ref:…"}, ""},
	}
	const writer = "github.com/friendgate/friendgate/webhook.(*itemLogger).write"
	for i := range want {
		want[i].caller = writer
	}
	if !reflect.DeepEqual(viaZap, want) {
		t.Errorf("through zap:\n got %v\nwant %v", viaZap, want)
	}
	if !reflect.DeepEqual(viaLogr, want) {
		t.Errorf("through logr:\n got %v\nwant %v", viaLogr, want)
	}
}

// TestItemLineDropped: a line the zap logger drops (its sampler, its level) costs no
// allocation, so a flood of would-deny verdicts costs only the sampler's check.
func TestItemLineDropped(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	sampled := zapcore.NewSamplerWithOptions(core, 1<<62, 1, 0) // one line per message, then none
	l := newItemLogger(zapr.NewLogger(zap.New(sampled)))
	cmd := &command{name: "callbackBeforeAddFriendCommand"}
	item := &policy.Request{Event: "FriendRequest", AppID: "app", From: "alice", To: "bob"}
	d := &policy.Decision{}
	v := &policy.Verdict{Policy: "ns/p", Detail: "ns/p/limit/per-sender", Code: 38040, Message: "slow down"}
	line := itemLine{protocol: ProtocolOpenIM, cmd: cmd, item: item}
	line.decided("would deny (dry run)", d, v)
	l.write(&line)
	if allocs := testing.AllocsPerRun(100, func() { l.write(&line) }); allocs != 0 {
		t.Errorf("a dropped line allocates %v times", allocs)
	}
	if n := logs.Len(); n != 1 {
		t.Errorf("%d lines written, want the sampler's first only", n)
	}
}

// TestItemLoggerVerbosity: a logger given with a verbosity keeps it, through logr.
func TestItemLoggerVerbosity(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	log := zapr.NewLogger(zap.New(core))
	if l := newItemLogger(log); l.zap == nil {
		t.Error("a zapr logger at verbosity 0 is not written to through zap")
	}
	l := newItemLogger(log.V(1))
	if l.zap != nil {
		t.Error("a zapr logger at verbosity 1 is written to through zap, at info level")
	}
	line := itemLine{msg: "allowed (sampled)", protocol: ProtocolOpenIM, cmd: &command{name: "c"}, item: &policy.Request{}}
	l.write(&line)
	if n := logs.Len(); n != 0 {
		t.Errorf("%d lines written at verbosity 1 to a core at info level, want none", n)
	}
}
