package webhook

import (
	"cmp"
	"net/http"
	"strings"

	"github.com/friendgate/friendgate/internal/policy"
	"github.com/friendgate/friendgate/internal/text"
)

// openIMCommands are the OpenIM callbacks friendgate answers, by the exact command string
// the server sends (docs/callback-server.md, "Commands"). Any other command gets the plain
// continue answer.
var openIMCommands = map[string]commandKind{
	"callbackBeforeAddFriendCommand":       kindAddFriend,
	"callbackBeforeAddFriendAgreeCommand":  kindAddFriendAgree,
	"callbackBeforeReplyFriendResp":        kindAddFriendAgree, // an alias some OpenIM documentation uses for agree
	"callbackBeforeImportFriendsCommand":   kindImportFriends,
	"callbackBeforeAddBlackCommand":        kindAddBlack,
	"callbackBeforeSetFriendRemarkCommand": kindSetRemark,
	"callbackAfterAddFriendCommand":        kindNotify,
	"callbackAfterAddFriendAgreeCommand":   kindNotify,
	"callbackAfterDeleteFriendCommand":     kindNotify,
	"callbackAfterImportFriendsCommand":    kindNotify,
	"callbackAfterSetFriendRemarkCommand":  kindNotify,
	"callbackAfterRemoveBlackCommand":      kindNotify,
}

// openIMRequest is the union of the friend callbacks' bodies (see decodeOpenIM). Keys
// match case-insensitively, which also covers servers that spell HandleMsg handleMsg.
type openIMRequest struct {
	CallbackCommand string   `json:"callbackCommand"`
	FromUserID      string   `json:"fromUserID"`
	ToUserID        string   `json:"toUserID"`
	BlackUserID     string   `json:"blackUserID"`
	OwnerUserID     string   `json:"ownerUserID"`
	FriendUserID    string   `json:"friendUserID"`
	FriendUserIDs   []string `json:"friendUserIDs"`
	ReqMsg          string   `json:"reqMsg"`
	HandleMsg       string   `json:"HandleMsg"`
	Remark          string   `json:"remark"`
	Ex              string   `json:"ex"`
}

func (r *openIMRequest) reset() {
	ids := r.FriendUserIDs
	clear(ids[:cap(ids)])
	*r = openIMRequest{FriendUserIDs: ids[:0]}
}

// operationIDHeader is OpenIM's trace header, operationID, in the canonical form
// net/http stores it under: Header.Get would canonicalise the name, an allocation, on
// every callback.
var operationIDHeader = http.CanonicalHeaderKey("operationID")

// operationID is the request's trace ID for the log lines, cut to maxOperationIDBytes:
// the header may be as long as the caller likes.
func operationID(r *http.Request) string {
	return text.Truncate(firstValue(r.Header[operationIDHeader]), maxOperationIDBytes)
}

// maxOperationIDBytes is far above OpenIM's operation IDs (a few dozen bytes).
const maxOperationIDBytes = 128

// openIMRoute reads the app and command from the request URL: /openim/<command> (v3.4.2
// and later), /openim/<appID>/<command>, and the older /openim?command=<command> and
// /openim/<appID>?command=<command>. Empty path segments, as a configured URL with a
// trailing slash produces, are ignored. The command is "" when the URL names none.
func openIMRoute(path string, r *http.Request) (appID, command string, ok bool) {
	rest := strings.Trim(strings.TrimPrefix(path, "/openim"), "/")
	var segs [3]string
	n := 0
	for rest != "" {
		seg, tail, _ := strings.Cut(rest, "/")
		rest = tail
		if seg == "" {
			continue
		}
		if n == len(segs) {
			return "", "", false
		}
		segs[n] = seg
		n++
	}
	query := ""
	if r.URL.RawQuery != "" {
		query = r.URL.Query().Get("command")
	}
	switch {
	case n == 0:
		return "", query, true
	case n == 1 && query != "" && query != segs[0]:
		return segs[0], query, true
	case n == 1:
		return "", segs[0], true
	case n == 2 && (query == "" || query == segs[1]):
		return segs[0], segs[1], true
	}
	return "", "", false
}

func (h *Handler) openIMCommand(name string) *command {
	if cmd, ok := h.openIM[name]; ok {
		return cmd
	}
	return h.openIMOther
}

func (h *Handler) serveOpenIM(w http.ResponseWriter, r *http.Request, path string, busy bool) {
	start := monotonic()
	c := h.getCall()
	traceID := operationID(r)

	appID, name, ok := openIMRoute(path, r)
	cmd := h.openIMCommand(name)
	// The command may be read from the body later on: record the latency under the final
	// one. One deferred call, so that the compiler inlines it at each return rather than
	// queueing it (which it does for more than 15 returns times defers).
	defer func() {
		observeLatency(cmd, start)
		h.putCall(c)
	}()
	// Only a URL that names a notification or another command friendgate does not
	// decide gets "continue" whatever goes wrong; a request whose command is unknown
	// because the URL or body could not be read gets the failure policy.
	continues := ok && name != "" && cmd.kind == kindNotify
	if busy {
		h.failOpenIM(w, c, cmd, continues, traceID, h.shed(ShedConnections))
		return
	}
	if !ok {
		h.failOpenIM(w, c, cmd, continues, traceID, undecided(http.StatusNotFound, "unknown callback path "+text.Truncate(path, 128)))
		return
	}
	if rf := h.clientCertRefusal(r, ProtocolOpenIM); rf != nil {
		h.failOpenIM(w, c, cmd, continues, traceID, rf)
		return
	}
	if !h.opts.OpenIMClients.Allows(r.RemoteAddr) {
		h.opts.Metrics.authFailures.WithLabelValues(ProtocolOpenIM, ReasonClientAddress).Inc()
		h.failOpenIM(w, c, cmd, continues, traceID, &refusal{unauthenticated, http.StatusForbidden, "client address " + r.RemoteAddr + " is not allowed"})
		return
	}
	limit := h.opts.MaxBodyBytes
	if cmd.kind == kindImportFriends {
		limit = h.opts.MaxBatchBodyBytes
	}
	if rf := h.readBody(r, c, limit); rf != nil {
		h.failOpenIM(w, c, cmd, continues, traceID, rf)
		return
	}
	if name == "" || cmd.kind != kindNotify {
		c.openIMBody.reset()
		if err := decodeOpenIM(&c.decoder, c.body, h.opts.MaxBatchItems, &c.openIMBody); err != nil {
			h.failOpenIM(w, c, cmd, continues, traceID, decodeRefusal(err))
			return
		}
		if rf := h.resolveOpenIMCommand(&cmd, name, c.openIMBody.CallbackCommand); rf != nil {
			h.failOpenIM(w, c, cmd, continues, traceID, rf)
			return
		}
	}
	if cmd.kind == kindNotify {
		if h.opts.Upstream != nil {
			h.forwardOpenIM(w, r, c, cmd, cmp.Or(name, c.openIMBody.CallbackCommand), traceID)
			return
		}
		cmd.metrics.status(http.StatusOK)
		writeJSON(w, http.StatusOK, appendOpenIMContinue(c.out[:0]))
		return
	}
	snap := h.store.Snapshot()
	if snap == nil {
		h.failOpenIM(w, c, cmd, continues, traceID, undecided(http.StatusServiceUnavailable, "policies are not loaded yet"))
		return
	}
	c.items = openIMItems(cmd, appID, &c.openIMBody, c.items[:0])
	rf := checkUserIDs(c.items)
	if rf == nil {
		rf = h.reserveItems(c)
	}
	if rf != nil {
		h.failOpenIM(w, c, cmd, continues, traceID, rf)
		return
	}
	c.verdicts = growVerdicts(c.verdicts, len(c.items))
	denied := h.decide(snap, cmd, c, ProtocolOpenIM, traceID)
	if !denied && h.opts.Upstream != nil && h.opts.Upstream.friendCommands {
		h.forwardOpenIM(w, r, c, cmd, cmp.Or(name, c.openIMBody.CallbackCommand), traceID)
		return
	}

	out := c.out[:0]
	switch {
	case !denied:
		out = appendOpenIMContinue(out)
	case cmd.kind == kindImportFriends:
		out = h.appendOpenIMImport(out, c)
	default:
		v := c.verdicts[0]
		out = appendOpenIMDeny(out, int64(v.Code), v.Message, h.clientDetail(c, v))
	}
	c.out = out
	cmd.metrics.status(http.StatusOK)
	writeJSON(w, http.StatusOK, out)
}

// openIMItems maps a callback to engine requests (docs/policy.md).
func openIMItems(cmd *command, appID string, b *openIMRequest, items []policy.Request) []policy.Request {
	item := policy.Request{Event: cmd.event, AppID: appID, Ex: b.Ex}
	switch cmd.kind {
	case kindAddFriend:
		item.From, item.To, item.Wording = b.FromUserID, b.ToUserID, b.ReqMsg
	case kindAddFriendAgree:
		// fromUserID is the original requester; the user accepting arrives as blackUserID
		// (toUserID in some documentation).
		item.From, item.To, item.Wording = b.BlackUserID, b.FromUserID, b.HandleMsg
		if item.From == "" {
			item.From = b.ToUserID
		}
	case kindImportFriends:
		item.From = b.OwnerUserID
		for _, id := range b.FriendUserIDs {
			item.To = id
			items = append(items, item)
		}
		return items
	case kindAddBlack:
		item.From, item.To = b.OwnerUserID, b.BlackUserID
	case kindSetRemark:
		item.From, item.To, item.Remark = b.OwnerUserID, b.FriendUserID, b.Remark
	}
	return append(items, item)
}

// resolveOpenIMCommand settles the command of a request the URL names (name) and whose
// body names (inBody). OpenIM sends the same command in both, so a disagreement means the
// request was altered or forged on its way: it is not decided (the failure policy
// answers) rather than answered for a command the server did not ask about. A request
// naming no command at all cannot be routed either.
func (h *Handler) resolveOpenIMCommand(cmd **command, name, inBody string) *refusal {
	switch {
	case name == "" && inBody == "":
		return undecided(http.StatusBadRequest, "no callback command: neither the URL nor the body's callbackCommand names one")
	case name == "":
		*cmd = h.openIMCommand(inBody)
	case inBody != "" && inBody != name && h.openIMCommand(inBody).kind != (*cmd).kind:
		return undecided(http.StatusBadRequest, "the URL's command "+text.Truncate(name, 64)+" and the body's callbackCommand "+text.Truncate(inBody, 64)+" disagree")
	}
	return nil
}

// clientDetail is the errDlt of a denial by v (see ClientDetail).
func (h *Handler) clientDetail(c *call, v *policy.Verdict) string {
	switch h.opts.ClientDetail {
	case DetailFull:
		return v.Detail
	case DetailReference:
		return c.reference
	}
	return ""
}

// failOpenIM answers a request that was not decided. Callers failing authentication are
// always refused; otherwise the operation continues when the URL named a command that is
// never refused (continues), else the failure policy decides.
func (h *Handler) failOpenIM(w http.ResponseWriter, c *call, cmd *command, continues bool, traceID string, rf *refusal) {
	out := c.out[:0]
	if (continues && rf.kind != unauthenticated) || h.lets(rf) {
		h.refused(w, cmd, ProtocolOpenIM, traceID, "", rf)
		out = appendOpenIMContinue(out)
	} else {
		// The reason may name internal addresses (an upstream's error, the caller's own):
		// only Full hands it to the refused user's app.
		var detail, reference string
		switch h.opts.ClientDetail {
		case DetailFull:
			detail = "friendgate: " + rf.reason
		case DetailReference:
			reference = newReference()
			detail = reference
		}
		h.refused(w, cmd, ProtocolOpenIM, traceID, reference, rf)
		msg := FailureMessage
		if rf.kind == upstreamFailed {
			msg = "the callback could not be completed"
		}
		out = appendOpenIMDeny(out, FailureCode, msg, detail)
	}
	c.out = out
	writeJSON(w, rf.status, out)
}

const openIMContinue = `{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}`

func appendOpenIMContinue(b []byte) []byte { return append(b, openIMContinue...) }

// appendOpenIMDeny writes the answer OpenIM treats as a refusal: actionCode 0 and
// nextCode 1, with a non-zero errCode it hands to the client.
func appendOpenIMDeny(b []byte, code int64, msg, detail string) []byte {
	b = append(b, `{"actionCode":0,"errCode":`...)
	b = appendInt(b, code)
	b = append(b, `,"errMsg":`...)
	b = appendString(b, msg)
	b = append(b, `,"errDlt":`...)
	b = appendString(b, detail)
	return append(b, `,"nextCode":1}`...)
}

// appendOpenIMImport answers an import with denied friends: the allowed ones replace the
// list, in input order; when none is allowed the whole import is refused with the first
// denied item's verdict, because an empty list would mean "unchanged".
func (h *Handler) appendOpenIMImport(b []byte, c *call) []byte {
	allowed := 0
	for _, v := range c.verdicts {
		if v == nil {
			allowed++
		}
	}
	if allowed == 0 {
		v := c.verdicts[0]
		return appendOpenIMDeny(b, int64(v.Code), v.Message, h.clientDetail(c, v))
	}
	b = append(b, openIMContinue[:len(openIMContinue)-1]...)
	b = append(b, `,"friendUserIDs":[`...)
	first := true
	for i, v := range c.verdicts {
		if v != nil {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, c.items[i].To)
	}
	return append(b, "]}"...)
}
