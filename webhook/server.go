// Package webhook is friendgate's callback server: it turns OpenIM and Tencent Cloud Chat
// friend callbacks into engine requests, decides them against the snapshot in force and
// answers in each protocol's own shape. It holds no Kubernetes client: `serve` feeds its
// Store from files and `webhook` from informers.
package webhook

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/policy"
	"github.com/friendgate/friendgate/internal/text"
	"github.com/friendgate/friendgate/internal/velocity"
	"k8s.io/utils/clock"
)

// ClientDetail says what an OpenIM denial's errDlt, which OpenIM hands to the refused
// user's app, reveals.
type ClientDetail string

const (
	// DetailNone sends an empty errDlt.
	DetailNone ClientDetail = "None"
	// DetailReference sends an opaque reference, "ref:" and 16 hex digits, random per
	// request and logged with the denial, so support can find the deciding policy from
	// what the user sees without the user learning it. The default.
	DetailReference ClientDetail = "Reference"
	// DetailFull sends the deciding policy and entry, namespace/name/kind/entry (and the
	// reason of a refused request).
	DetailFull ClientDetail = "Full"
)

// ParseClientDetail accepts None, Reference or Full, in any case.
func ParseClientDetail(s string) (ClientDetail, error) {
	for _, d := range []ClientDetail{DetailNone, DetailReference, DetailFull} {
		if strings.EqualFold(s, string(d)) {
			return d, nil
		}
	}
	return "", fmt.Errorf("client detail %q: must be None, Reference or Full", s)
}

// newReference returns a fresh opaque reference for a denial.
func newReference() string {
	b := make([]byte, 0, 20)
	b = append(b, "ref:"...)
	n := rand.Uint64()
	for i := 60; i >= 0; i -= 4 {
		b = append(b, hexDigits[n>>uint(i)&0xf])
	}
	return string(b)
}

// FailurePolicy says what a request that cannot be decided gets.
type FailurePolicy string

const (
	// FailAllow lets undecidable requests through (the default: an IM outage is worse
	// than a missed block).
	FailAllow FailurePolicy = "Allow"
	// FailDeny refuses undecidable requests.
	FailDeny FailurePolicy = "Deny"
)

// ParseFailurePolicy accepts Allow or Deny, in any case.
func ParseFailurePolicy(s string) (FailurePolicy, error) {
	switch {
	case strings.EqualFold(s, string(FailAllow)):
		return FailAllow, nil
	case strings.EqualFold(s, string(FailDeny)):
		return FailDeny, nil
	}
	return "", fmt.Errorf("failure policy %q: must be Allow or Deny", s)
}

// DefaultMaxBodyBytes bounds a callback body: a Tencent batch of 1,000 friends with
// maximal wordings and remarks stays well below it.
const DefaultMaxBodyBytes = 1 << 20

// FailureCode is the code of a request refused because it could not be decided or
// authenticated; it is the default deny code, in the range both IM servers accept.
const FailureCode = v1alpha1.DefaultCode

// FailureMessage is the message that goes with FailureCode.
const FailureMessage = "friend request could not be checked"

// Protocol names, the values of the `protocol` label.
const (
	ProtocolOpenIM  = "openim"
	ProtocolTencent = "tencent"
)

// Options configure a Handler.
type Options struct {
	// ClientDetail is what an OpenIM denial's errDlt reveals; empty means Reference.
	ClientDetail ClientDetail
	// FailurePolicy applies to requests that cannot be decided; empty means Allow.
	FailurePolicy FailurePolicy
	// MaxBodyBytes bounds a request body; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxBatchBodyBytes bounds the body of a batch command (an OpenIM import, Tencent's
	// blocking friend callbacks); 0 means DefaultMaxBatchBodyBytes.
	MaxBatchBodyBytes int64
	// MaxBatchItems bounds the items of a batch; 0 means DefaultMaxBatchItems.
	MaxBatchItems int
	// TooLargePolicy answers requests over MaxBodyBytes, MaxBatchBodyBytes or
	// MaxBatchItems, or with an overlong user ID; empty means Deny.
	TooLargePolicy FailurePolicy
	// MaxInflightBodyBytes bounds the body bytes held at once over all requests; a
	// request that would exceed it is answered busy (503). 0 means
	// DefaultMaxInflightBodyBytes.
	MaxInflightBodyBytes int64
	// Upstream, when set, receives the OpenIM callbacks friendgate does not decide (and,
	// with its FriendCommands, the friend commands it allows), and its answers are relayed.
	Upstream *Upstream
	// RequireClientCert refuses callbacks (not probes or metrics) whose connection did not
	// present a client certificate verified against ServerOptions.ClientCAs.
	RequireClientCert bool
	// TencentAuth authenticates Tencent callbacks; nil admits every app unsigned.
	TencentAuth *TencentAuth
	// OpenIMClients are the client addresses OpenIM callbacks are accepted from; empty
	// admits every address (OpenIM sends no credentials).
	OpenIMClients AddrFilter
	// LogAllowEvery logs one allowed item in every N; 0 logs none. Denials and would-deny
	// verdicts are always logged.
	LogAllowEvery uint64
	// Logger receives one line per denial, per would-deny and per refused request.
	Logger logr.Logger
	// Counter counts requests against policies' limits; nil counts nothing (limits never
	// refuse).
	Counter velocity.Counter
	// Clock is the time limits are counted at; nil means the real clock.
	Clock clock.PassiveClock
	// Metrics must be set; see NewMetrics.
	Metrics *Metrics
}

// Handler answers IM callbacks from a Store. It is safe for concurrent use.
type Handler struct {
	store   *Store
	opts    Options
	log     logr.Logger
	items   itemLogger
	calls   sync.Pool
	allowed atomic.Uint64
	budget  byteBudget

	openIM       map[string]*command
	openIMOther  *command
	tencent      map[string]*command
	tencentOther *command
}

// command is one entry of a protocol's command table with its metrics resolved.
type command struct {
	name    string
	event   string
	kind    commandKind
	metrics *commandMetrics
}

type commandKind uint8

const (
	kindNotify commandKind = iota // answered with the plain success answer
	kindAddFriend
	kindAddFriendAgree
	kindImportFriends
	kindAddBlack
	kindSetRemark
	kindPrevFriendAdd
	kindPrevFriendResponse
)

// otherCommand is the `command` label of commands friendgate does not know, so a caller
// cannot grow the label set without bound.
const otherCommand = "other"

// NewHandler returns a handler deciding from store.
func NewHandler(store *Store, opts Options) *Handler {
	if opts.FailurePolicy == "" {
		opts.FailurePolicy = FailAllow
	}
	if opts.ClientDetail == "" {
		opts.ClientDetail = DetailReference
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxBatchBodyBytes <= 0 {
		opts.MaxBatchBodyBytes = DefaultMaxBatchBodyBytes
	}
	if opts.MaxBatchItems <= 0 {
		opts.MaxBatchItems = DefaultMaxBatchItems
	}
	if opts.TooLargePolicy == "" {
		opts.TooLargePolicy = FailDeny
	}
	if opts.MaxInflightBodyBytes <= 0 {
		opts.MaxInflightBodyBytes = DefaultMaxInflightBodyBytes
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	h := &Handler{
		store:   store,
		opts:    opts,
		log:     opts.Logger,
		items:   newItemLogger(opts.Logger),
		budget:  byteBudget{max: opts.MaxInflightBodyBytes},
		openIM:  map[string]*command{},
		tencent: map[string]*command{},
	}
	opts.Metrics.budget.Store(&h.budget)
	h.calls.New = func() any { return new(call) }
	for name, kind := range openIMCommands {
		h.openIM[name] = h.newCommand(ProtocolOpenIM, name, kind)
	}
	h.openIMOther = h.newCommand(ProtocolOpenIM, otherCommand, kindNotify)
	for name, kind := range tencentCommands {
		h.tencent[name] = h.newCommand(ProtocolTencent, name, kind)
	}
	h.tencentOther = h.newCommand(ProtocolTencent, otherCommand, kindNotify)
	return h
}

func (h *Handler) newCommand(protocol, name string, kind commandKind) *command {
	event := kindEvents[kind]
	return &command{name: name, event: event, kind: kind, metrics: h.opts.Metrics.command(protocol, name, event)}
}

var kindEvents = map[commandKind]string{
	kindAddFriend:          string(v1alpha1.EventFriendRequest),
	kindAddFriendAgree:     string(v1alpha1.EventFriendResponse),
	kindImportFriends:      string(v1alpha1.EventImportFriends),
	kindAddBlack:           string(v1alpha1.EventAddBlack),
	kindSetRemark:          string(v1alpha1.EventSetRemark),
	kindPrevFriendAdd:      string(v1alpha1.EventFriendRequest),
	kindPrevFriendResponse: string(v1alpha1.EventFriendResponse),
}

// ServeHTTP routes /openim and /openim/... to the OpenIM adapter, /tencent to the Tencent
// adapter, and serves /healthz and /readyz (/metrics has a port of its own, see
// MetricsServer). The path is cleaned first (empty and dot segments, as in
// //openim/cmd, /openim/cmd/ or /tencent/.), so a stray
// slash in a console URL still reaches its adapter; a POST to any other path is answered
// in the shape of the protocol it looks like (see unroutable). It routes by itself rather
// than through http.ServeMux, which answers unclean paths with a redirect that an IM
// server would not follow.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	urlPath := cleanPath(r.URL.Path)
	// A connection accepted over --max-connections gets one answer, then is closed.
	busy := startRequest(r)
	if busy {
		w.Header().Set("Connection", "close")
	}
	switch {
	case urlPath == "/openim" || strings.HasPrefix(urlPath, "/openim/"):
		h.serveOpenIM(w, r, urlPath, busy)
	case urlPath == "/tencent":
		h.serveTencent(w, r, busy)
	case urlPath == "/healthz":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	case urlPath == "/readyz":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !h.store.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "policies not loaded yet\n")
			return
		}
		fmt.Fprintf(w, "ok: snapshot generation %d\n", h.store.Generation())
	case r.Method == http.MethodPost:
		h.unroutable(w, r, urlPath)
	default:
		http.NotFound(w, r)
	}
}

// cleanPath resolves empty, "." and ".." segments, and drops a trailing slash.
func cleanPath(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	return path.Clean(p) // returns p itself when it is clean
}

// clientCertRefusal refuses a callback without a verified client certificate, when one is
// required.
func (h *Handler) clientCertRefusal(r *http.Request, protocol string) *refusal {
	if !h.opts.RequireClientCert || (r.TLS != nil && len(r.TLS.VerifiedChains) > 0) {
		return nil
	}
	h.opts.Metrics.authFailures.WithLabelValues(protocol, ReasonClientCertificate).Inc()
	return &refusal{unauthenticated, http.StatusForbidden, "a client certificate signed by the configured CA is required"}
}

// unroutable answers a POST to a path that is no callback endpoint, such as a console
// URL missing its /openim or /tencent. Friendgate cannot tell which command it is, so it
// answers 404 in the shape of the protocol the request looks like (Tencent when the query
// carries SdkAppid or CallbackCommand, OpenIM otherwise) with the failure policy: under
// Deny an OpenIM server refuses the operation rather than have it pass unchecked.
func (h *Handler) unroutable(w http.ResponseWriter, r *http.Request, urlPath string) {
	c := h.getCall()
	defer h.putCall(c)
	rf := undecided(http.StatusNotFound, "no callback endpoint at "+text.Truncate(urlPath, 128)+": configure the URL as http(s)://HOST/openim or http(s)://HOST/tencent")
	q := r.URL.RawQuery
	if strings.Contains(q, "SdkAppid=") || strings.Contains(q, "CallbackCommand=") {
		h.failTencent(w, c, h.tencentOther, rf, false)
		return
	}
	h.failOpenIM(w, c, h.openIMOther, false, operationID(r), rf)
}

// call is the per-request scratch space, pooled so a steady stream of callbacks reuses
// its buffers.
type call struct {
	body  []byte
	out   []byte
	items []policy.Request
	// verdicts[i] is the deny verdict of items[i], nil when it is allowed.
	verdicts    []*policy.Verdict
	openIMBody  openIMRequest
	tencentBody tencentRequest
	decoder     bodyDecoder
	// reserved is what this request holds of the in-flight body budget.
	reserved int64
	// reference is the opaque reference of a denial, under ClientDetail Reference.
	reference string
}

// maxPooledBytes keeps an occasional huge request from pinning its buffers in the pool.
const maxPooledBytes = 64 << 10

func (h *Handler) getCall() *call { return h.calls.Get().(*call) }

func (h *Handler) putCall(c *call) {
	h.budget.release(c.reserved)
	c.reserved, c.reference = 0, ""
	c.decoder = bodyDecoder{} // holds the body's string
	if cap(c.body) > maxPooledBytes || cap(c.out) > maxPooledBytes || cap(c.items) > 1024 {
		return
	}
	c.body, c.out = c.body[:0], c.out[:0]
	clear(c.items[:cap(c.items)])
	c.items = c.items[:0]
	clear(c.verdicts[:cap(c.verdicts)])
	c.verdicts = c.verdicts[:0]
	h.calls.Put(c)
}

// refusal is why a request is not decided: what kind of refusal it is, which says what
// the caller gets, the HTTP status and a reason for the log and the answer.
type refusal struct {
	kind   refusalKind
	status int
	reason string
}

type refusalKind uint8

const (
	// undecidable: the failure policy answers (malformed body, policies not loaded).
	undecidable refusalKind = iota
	// unauthenticated: the caller failed authentication and is refused whatever the
	// failure policy.
	unauthenticated
	// overloaded: the server is at one of its bounds and sheds the request unread; the
	// failure policy answers.
	overloaded
	// upstreamFailed: the upstream webhook did not answer a forwarded callback; the
	// upstream's failure policy answers.
	upstreamFailed
	// oversized: the request is over a bound of its own (body, items, user ID); the
	// too-large policy answers, so a batch too large to check never passes unchecked
	// unless the operator chose so.
	oversized
)

// lets reports whether the answer to a refused request lets the operation go ahead.
func (h *Handler) lets(rf *refusal) bool {
	switch rf.kind {
	case unauthenticated:
		return false
	case oversized:
		return h.opts.TooLargePolicy == FailAllow
	case upstreamFailed:
		return h.opts.Upstream.failurePolicy == FailAllow
	}
	return h.opts.FailurePolicy == FailAllow
}

// decodeRefusal is the refusal of a body that did not decode: too large (a bound of
// batch) or malformed.
func decodeRefusal(err error) *refusal {
	var tl *tooLarge
	if errors.As(err, &tl) {
		return &refusal{oversized, http.StatusRequestEntityTooLarge, tl.reason}
	}
	return undecided(http.StatusBadRequest, "malformed JSON body: "+err.Error())
}

// reserveItems reserves what the decoded items of c hold from the in-flight budget.
func (h *Handler) reserveItems(c *call) *refusal {
	if len(c.items) <= 1 {
		return nil // within the body's first reservation
	}
	n := int64(len(c.items)) * itemCost
	if !h.budget.reserve(n) {
		return h.shed(ShedBodyBytes)
	}
	c.reserved += n
	return nil
}

func undecided(status int, reason string) *refusal { return &refusal{undecidable, status, reason} }

// shed refuses a request because the server is at a bound, and counts it.
func (h *Handler) shed(reason string) *refusal {
	if reason == ShedConnections {
		h.opts.Metrics.shedConns.Inc()
		return &refusal{overloaded, http.StatusServiceUnavailable, "server busy: too many connections"}
	}
	h.opts.Metrics.shedBody.Inc()
	return &refusal{overloaded, http.StatusServiceUnavailable, "server busy: too many request bytes in flight"}
}

// readBody checks the method and content type and reads the body into c.body. The buffer
// grows with the bytes received, never on the word of Content-Length, and each 4 KiB of
// it is reserved from the in-flight budget before it is read into.
func (h *Handler) readBody(r *http.Request, c *call, limit int64) *refusal {
	if r.Method != http.MethodPost {
		return undecided(http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: callbacks are POST")
	}
	// Read under the canonical name net/http stores it under: Header.Get would
	// canonicalise the name on every callback.
	if ct := firstValue(r.Header["Content-Type"]); ct != "" && !commonJSONType(ct) {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !jsonMediaType(mt) {
			return undecided(http.StatusUnsupportedMediaType, fmt.Sprintf("content type %q is not JSON", text.Truncate(ct, 64)))
		}
	}
	if r.ContentLength > limit {
		return &refusal{oversized, http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes is larger than the limit of %d", r.ContentLength, limit)}
	}
	c.body = c.body[:0]
	for {
		buf := c.body
		if int64(len(buf)) == c.reserved {
			if !h.budget.reserve(bodyReserveStep) {
				return h.shed(ShedBodyBytes)
			}
			c.reserved += bodyReserveStep
		}
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, bodyReserveStep)
		}
		// Read one byte past the limit, to tell a body at the limit from a larger one.
		end := min(int64(cap(buf)), c.reserved, limit+1)
		n, err := r.Body.Read(buf[len(buf):end])
		buf = buf[:len(buf)+n]
		c.body = buf
		if int64(len(buf)) > limit {
			return &refusal{oversized, http.StatusRequestEntityTooLarge, fmt.Sprintf("body is larger than the limit of %d bytes", limit)}
		}
		if err == io.EOF {
			delivered(r)
			// A body read to its end and closed spares net/http, before it answers,
			// a read of what is left of it (with a reader allocated per request).
			r.Body.Close()
			return nil
		}
		if err != nil {
			return undecided(http.StatusBadRequest, "reading the body: "+err.Error())
		}
	}
}

// firstValue is a header's first value, or "" when it has none.
func firstValue(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// commonJSONType tells the content types IM servers send from those worth parsing:
// mime.ParseMediaType allocates a map of parameters for every callback.
func commonJSONType(ct string) bool {
	return strings.EqualFold(ct, "application/json; charset=utf-8") || strings.EqualFold(ct, "application/json")
}

// jsonMediaType accepts JSON and, because neither IM server documents the header and a
// refused callback fails the user's action, text/plain.
func jsonMediaType(mt string) bool {
	switch {
	case mt == "application/json", mt == "text/json", mt == "text/plain":
		return true
	case strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"):
		return true
	}
	return false
}

func growVerdicts(v []*policy.Verdict, n int) []*policy.Verdict {
	if cap(v) < n {
		return make([]*policy.Verdict, n)
	}
	return v[:n]
}

// decide decides c.items against snap into c.verdicts, records metrics and logs, and
// returns whether any item was denied.
func (h *Handler) decide(snap *policy.Snapshot, cmd *command, c *call, protocol, operationID string) bool {
	denied := false
	m := cmd.metrics
	for i := range c.items {
		item := &c.items[i]
		d := snap.Decide(item)
		h.countLimits(&d, item)
		line := itemLine{protocol: protocol, cmd: cmd, operationID: operationID, item: item}
		for _, v := range d.WouldDeny {
			m.wouldByPolicy.get(v.Policy).Inc()
			line.decided("would deny (dry run)", &d, v)
			h.items.write(&line)
		}
		if len(d.Errors) > 0 {
			h.opts.Metrics.ruleErrors.Add(float64(len(d.Errors)))
			for _, err := range d.Errors {
				h.log.Error(err, "rule expression failed; the rule does not match", "protocol", protocol, "command", cmd.name)
			}
		}
		c.verdicts[i] = d.Deny
		if v := d.Deny; v != nil {
			denied = true
			m.denyByPolicy.get(v.Policy).Inc()
			line.decided("denied", &d, v)
			if protocol == ProtocolOpenIM && h.opts.ClientDetail == DetailReference {
				if c.reference == "" {
					c.reference = newReference()
				}
				line.reference = c.reference
			}
			h.items.write(&line)
			continue
		}
		m.allow.Inc()
		if n := h.opts.LogAllowEvery; n > 0 && h.allowed.Add(1)%n == 0 {
			line.msg, line.verdict, line.sampleEvery = "allowed (sampled)", nil, n
			h.items.write(&line)
		}
	}
	return denied
}

// refused logs and counts a request that was not decided. A server at a bound also drops
// the connection, rather than read the rest of a body it will not use.
func (h *Handler) refused(w http.ResponseWriter, cmd *command, protocol, operationID, reference string, rf *refusal) {
	if rf.kind == overloaded {
		w.Header().Set("Connection", "close")
	}
	m := cmd.metrics
	m.status(rf.status)
	if m.errors != nil && rf.kind != unauthenticated {
		m.errors.Inc()
	}
	args := []any{"protocol", protocol, "command", cmd.name, "status", rf.status, "reason", rf.reason, "failurePolicy", h.opts.FailurePolicy}
	if operationID != "" {
		args = append(args, "operationID", operationID)
	}
	if reference != "" {
		args = append(args, "reference", reference)
	}
	if rf.kind == overloaded {
		// Counted in friendgate_callback_shed_total; a line each would add to the load.
		h.log.V(1).Info("request not decided", args...)
		return
	}
	h.log.Info("request not decided", args...)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	hdr := w.Header()
	hdr["Content-Type"] = jsonContentType
	if status == http.StatusMethodNotAllowed {
		hdr.Set("Allow", http.MethodPost)
	}
	w.WriteHeader(status)
	w.Write(body)
}

var jsonContentType = []string{"application/json; charset=utf-8"}

// observeLatency records the latency of a request that began at start (monotonic),
// answered or refused, under its command.
func observeLatency(cmd *command, start time.Duration) {
	cmd.metrics.latency.Observe((monotonic() - start).Seconds())
}

// processStart is monotonic's origin.
var processStart = time.Now()

// monotonic is the time since the process started. It reads only the monotonic clock,
// where time.Now reads the wall clock too: a latency needs no wall time.
func monotonic() time.Duration { return time.Since(processStart) }
