package webhook

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/friendgate/friendgate/internal/policy"
	"github.com/friendgate/friendgate/internal/text"
)

// tencentCommands are the Tencent Cloud Chat callbacks friendgate answers. Any other
// CallbackCommand gets the plain OK answer.
var tencentCommands = map[string]commandKind{
	"Sns.CallbackPrevFriendAdd":      kindPrevFriendAdd,
	"Sns.CallbackPrevFriendResponse": kindPrevFriendResponse,
	"Sns.CallbackFriendAdd":          kindNotify,
	"Sns.CallbackFriendDelete":       kindNotify,
	"Sns.CallbackBlackListAdd":       kindNotify,
	"Sns.CallbackBlackListDelete":    kindNotify,
}

// tencentRequest is the union of the two blocking friend callbacks' bodies.
type tencentRequest struct {
	CallbackCommand    string                `json:"CallbackCommand"`
	FromAccount        string                `json:"From_Account"`
	FriendItem         []tencentFriendItem   `json:"FriendItem"`
	ResponseFriendItem []tencentResponseItem `json:"ResponseFriendItem"`
	AddType            string                `json:"AddType"`
	ForceAddFlags      int64                 `json:"ForceAddFlags"`
	EventTime          int64                 `json:"EventTime"`
}

type tencentFriendItem struct {
	ToAccount  string `json:"To_Account"`
	Remark     string `json:"Remark"`
	GroupName  string `json:"GroupName"`
	AddSource  string `json:"AddSource"`
	AddWording string `json:"AddWording"`
}

type tencentResponseItem struct {
	ToAccount      string `json:"To_Account"`
	Remark         string `json:"Remark"`
	TagName        string `json:"TagName"`
	ResponseAction string `json:"ResponseAction"`
}

func (r *tencentRequest) reset() {
	fi, ri := r.FriendItem, r.ResponseFriendItem
	clear(fi[:cap(fi)])
	clear(ri[:cap(ri)])
	*r = tencentRequest{FriendItem: fi[:0], ResponseFriendItem: ri[:0]}
}

// tencentQuery holds the query parameters Tencent sends with every callback.
type tencentQuery struct {
	appID, command, clientIP, platform, sign, requestTime string
}

func parseTencentQuery(raw string) tencentQuery {
	var q tencentQuery
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		var dst *string
		switch k {
		case "SdkAppid":
			dst = &q.appID
		case "CallbackCommand":
			dst = &q.command
		case "ClientIP":
			dst = &q.clientIP
		case "OptPlatform":
			dst = &q.platform
		case "Sign":
			dst = &q.sign
		case "RequestTime":
			dst = &q.requestTime
		default:
			continue
		}
		// Tencent's values (digits, an IP address, a platform name) rarely need unescaping.
		if strings.IndexByte(v, '%') < 0 && strings.IndexByte(v, '+') < 0 {
			*dst = v
		} else if u, err := url.QueryUnescape(v); err == nil {
			*dst = u
		}
	}
	return q
}

func (h *Handler) tencentCommand(name string) *command {
	if cmd, ok := h.tencent[name]; ok {
		return cmd
	}
	return h.tencentOther
}

func (h *Handler) serveTencent(w http.ResponseWriter, r *http.Request, busy bool) {
	start := monotonic()
	c := h.getCall()
	q := parseTencentQuery(r.URL.RawQuery)
	cmd := h.tencentCommand(q.command)
	// One deferred call, so that the compiler inlines it at each return rather than
	// queueing it (which it does for more than 15 returns times defers).
	defer func() {
		observeLatency(cmd, start)
		h.putCall(c)
	}()
	if busy {
		h.failTencent(w, c, cmd, h.shed(ShedConnections), false)
		return
	}
	if rf := h.clientCertRefusal(r, ProtocolTencent); rf != nil {
		h.failTencent(w, c, cmd, rf, false)
		return
	}
	if auth := h.opts.TencentAuth; auth != nil {
		if status, reason := auth.Check(q.appID, q.sign, q.requestTime); status != 0 {
			h.opts.Metrics.authFailures.WithLabelValues(ProtocolTencent, reason).Inc()
			h.failTencent(w, c, cmd, &refusal{unauthenticated, status, "authentication failed: " + reason + " (SdkAppid " + text.Truncate(q.appID, 32) + ")"}, false)
			return
		}
	}
	limit := h.opts.MaxBodyBytes
	if cmd.kind != kindNotify {
		limit = h.opts.MaxBatchBodyBytes
	}
	if rf := h.readBody(r, c, limit); rf != nil {
		h.failTencent(w, c, cmd, rf, false)
		return
	}
	if cmd.kind == kindNotify && q.command != "" {
		cmd.metrics.status(http.StatusOK)
		writeJSON(w, http.StatusOK, append(c.out[:0], tencentOK...))
		return
	}
	c.tencentBody.reset()
	if err := decodeTencent(&c.decoder, c.body, h.opts.MaxBatchItems, &c.tencentBody); err != nil {
		h.failTencent(w, c, cmd, decodeRefusal(err), false)
		return
	}
	// Tencent names the command in the query and in the body. A request naming none
	// cannot be routed, and one whose two names disagree was altered or forged on its way:
	// neither is decided (the failure policy answers).
	switch inBody := c.tencentBody.CallbackCommand; {
	case q.command == "" && inBody == "":
		h.failTencent(w, c, cmd, undecided(http.StatusBadRequest, "no callback command: neither the query's nor the body's CallbackCommand names one"), false)
		return
	case q.command == "":
		cmd = h.tencentCommand(inBody)
		if cmd.kind == kindNotify {
			cmd.metrics.status(http.StatusOK)
			writeJSON(w, http.StatusOK, append(c.out[:0], tencentOK...))
			return
		}
	case inBody != "" && inBody != q.command && h.tencentCommand(inBody).kind != cmd.kind:
		c.items = tencentItems(cmd, &q, &c.tencentBody, c.items[:0])
		h.failTencent(w, c, cmd, undecided(http.StatusBadRequest, "the query's CallbackCommand "+text.Truncate(q.command, 64)+" and the body's "+text.Truncate(inBody, 64)+" disagree"), true)
		return
	}
	c.items = tencentItems(cmd, &q, &c.tencentBody, c.items[:0])
	rf := checkUserIDs(c.items)
	if rf == nil {
		rf = h.reserveItems(c)
	}
	if rf != nil {
		h.failTencent(w, c, cmd, rf, true)
		return
	}
	snap := h.store.Snapshot()
	if snap == nil {
		h.failTencent(w, c, cmd, undecided(http.StatusServiceUnavailable, "policies are not loaded yet"), true)
		return
	}
	c.verdicts = growVerdicts(c.verdicts, len(c.items))
	h.decide(snap, cmd, c, ProtocolTencent, "")

	out := append(c.out[:0], tencentOKOpen...)
	for i := range c.items {
		if i > 0 {
			out = append(out, ',')
		}
		if v := c.verdicts[i]; v != nil {
			out = appendTencentItem(out, c.items[i].To, int64(v.Code), v.Message)
		} else {
			out = appendTencentItem(out, c.items[i].To, 0, "")
		}
	}
	out = append(out, "]}"...)
	c.out = out
	cmd.metrics.status(http.StatusOK)
	writeJSON(w, http.StatusOK, out)
}

// tencentItems maps a callback to engine requests, one per friend item (docs/policy.md).
func tencentItems(cmd *command, q *tencentQuery, b *tencentRequest, items []policy.Request) []policy.Request {
	base := policy.Request{
		Event:     cmd.event,
		AppID:     q.appID,
		From:      b.FromAccount,
		Platform:  q.platform,
		ClientIP:  q.clientIP,
		EventTime: b.EventTime,
	}
	switch cmd.kind {
	case kindPrevFriendAdd:
		base.AddType = b.AddType
		base.ForceAdd = b.ForceAddFlags == 1
		for i := range b.FriendItem {
			f := &b.FriendItem[i]
			item := base
			item.To, item.Remark, item.GroupName, item.AddSource, item.Wording = f.ToAccount, f.Remark, f.GroupName, f.AddSource, f.AddWording
			items = append(items, item)
		}
	case kindPrevFriendResponse:
		// From_Account is the user answering; To_Account is the original requester.
		for i := range b.ResponseFriendItem {
			f := &b.ResponseFriendItem[i]
			item := base
			item.To, item.Remark, item.GroupName, item.ResponseAction = f.ToAccount, f.Remark, f.TagName, f.ResponseAction
			items = append(items, item)
		}
	}
	return items
}

// failTencent answers a request that was not decided. Tencent counts any non-200
// answer as a failed callback and applies the console's own setting (by default, let
// it through), so when the items are known (withItems) the answer is an HTTP 200 whose
// ResultItem gives each item the verdict of the policy that applies (see lets), the
// only way --failure-policy Deny or --too-large-policy reaches Tencent; ErrorInfo
// carries the reason. A request whose items are unknown (not read, not understood, not
// authenticated) gets ActionStatus FAIL with the HTTP status as ErrorCode.
func (h *Handler) failTencent(w http.ResponseWriter, c *call, cmd *command, rf *refusal, withItems bool) {
	if !withItems {
		h.refused(w, cmd, ProtocolTencent, "", "", rf)
		out := append(c.out[:0], `{"ActionStatus":"FAIL","ErrorCode":`...)
		out = appendInt(out, int64(rf.status))
		out = append(out, `,"ErrorInfo":`...)
		out = appendString(out, "friendgate: "+rf.reason)
		out = append(out, '}')
		c.out = out
		writeJSON(w, rf.status, out)
		return
	}
	h.refused(w, cmd, ProtocolTencent, "", "", &refusal{rf.kind, http.StatusOK, rf.reason})
	out := append(c.out[:0], `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":`...)
	out = appendString(out, "friendgate: "+rf.reason)
	out = append(out, `,"ResultItem":[`...)
	lets := h.lets(rf)
	for i := range c.items {
		if i > 0 {
			out = append(out, ',')
		}
		if lets {
			out = appendTencentItem(out, c.items[i].To, 0, "")
		} else {
			out = appendTencentItem(out, c.items[i].To, FailureCode, FailureMessage)
		}
	}
	out = append(out, "]}"...)
	c.out = out
	writeJSON(w, http.StatusOK, out)
}

const (
	tencentOK     = `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`
	tencentOKOpen = `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ResultItem":[`
)

func appendTencentItem(b []byte, to string, code int64, info string) []byte {
	b = append(b, `{"To_Account":`...)
	b = appendString(b, to)
	b = append(b, `,"ResultCode":`...)
	b = appendInt(b, code)
	b = append(b, `,"ResultInfo":`...)
	b = appendString(b, info)
	return append(b, '}')
}
