package webhook

import (
	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/friendgate/friendgate/internal/policy"
)

// itemLogger writes the per-item decision lines (denied, would deny, sampled allows): the
// only lines a steady stream of callbacks writes. A sender flooding past a DryRun limit
// gets one would-deny line per limit and request, and the binary's zap logger drops
// almost all of them in its sampler; built as logr key/value pairs, each dropped line
// would still cost a dozen allocations. Through zap, Logger.Check asks the sampler first
// and the fields, which need no allocation, are built only for a line that is written.
// Any other logr sink gets the same key/value pairs through logr.
type itemLogger struct {
	log logr.Logger
	zap *zap.Logger // nil unless log's sink is zapr
}

func newItemLogger(log logr.Logger) itemLogger {
	l := itemLogger{log: log}
	// A logger with a verbosity writes at a zap level of its own: leave it to logr.
	if u, ok := log.GetSink().(zapr.Underlier); ok && log.GetV() == 0 {
		// zapr's logger skips the two frames of logr.Logger.Info and zapr's Info; this
		// one is called directly, so a development logger's caller is the line's writer.
		l.zap = u.GetUnderlying().WithOptions(zap.AddCallerSkip(-2))
	}
	return l
}

// itemLine is one item's decision line.
type itemLine struct {
	msg, protocol string
	cmd           *command
	operationID   string
	item          *policy.Request
	// verdict is the deciding policy entry, nil on an allowed item's line.
	verdict *policy.Verdict
	// keyword and keywordSource say, for a keyword rule's verdict, which dictionary entry
	// matched: the log's, never the user's to see.
	keyword, keywordSource string
	// reference is a denial's opaque reference (ClientDetail Reference), or "".
	reference string
	// sampleEvery is the sampling of allowed items' lines, or 0.
	sampleEvery uint64
}

// decided makes line the line of verdict v of decision d.
func (line *itemLine) decided(msg string, d *policy.Decision, v *policy.Verdict) {
	line.msg, line.verdict = msg, v
	line.keyword, line.keywordSource = "", ""
	if m, ok := d.Keyword(v); ok {
		line.keyword, line.keywordSource = m.Entry, m.Source
	}
}

func (l *itemLogger) write(line *itemLine) {
	if l.zap != nil {
		if ce := l.zap.Check(zapcore.InfoLevel, line.msg); ce != nil {
			ce.Write(line.fields(make([]zap.Field, 0, 18))...)
		}
		return
	}
	if !l.log.Enabled() {
		return
	}
	fields := line.fields(make([]zap.Field, 0, 18))
	kv := make([]any, 0, 2*len(fields))
	for _, f := range fields {
		kv = append(kv, f.Key, fieldValue(f))
	}
	l.log.Info(line.msg, kv...)
}

// fields are the line's fields, in the order the log has always given them: the request,
// then the deciding entry and, for a keyword rule, the dictionary entry.
func (line *itemLine) fields(f []zap.Field) []zap.Field {
	f = append(f, zap.String("protocol", line.protocol), zap.String("command", line.cmd.name))
	if line.operationID != "" {
		f = append(f, zap.String("operationID", line.operationID))
	}
	it := line.item
	f = append(f, zap.String("event", it.Event), zap.String("appID", it.AppID), zap.String("from", it.From), zap.String("to", it.To))
	if v := line.verdict; v != nil {
		f = append(f, zap.String("policy", v.Policy), zap.String("entry", v.Detail), zap.Int32("code", v.Code), zap.String("message", v.Message))
		if line.keyword != "" {
			f = append(f, zap.String("keyword", line.keyword), zap.String("keywordSource", line.keywordSource))
		}
	}
	if line.reference != "" {
		f = append(f, zap.String("reference", line.reference))
	}
	if line.sampleEvery != 0 {
		f = append(f, zap.Uint64("sampleEvery", line.sampleEvery))
	}
	return f
}

// fieldValue is the value of a field built by itemLine.fields, for logr.
func fieldValue(f zap.Field) any {
	switch f.Type {
	case zapcore.StringType:
		return f.String
	case zapcore.Int32Type:
		return int32(f.Integer)
	case zapcore.Uint64Type:
		return uint64(f.Integer)
	}
	return f.Interface
}
