// Package policy is friendgate's engine: it compiles FriendPolicies into an immutable
// Snapshot and decides requests against it. It has no Kubernetes client, so the
// controller, the webhook, `serve` and `test` all decide the same way.
package policy

// Request is one item of a callback as the engine sees it; CEL expressions see it as
// `request`. The field names are the ones docs/policy.md lists.
type Request struct {
	// Event is FriendRequest, FriendResponse, ImportFriends, AddBlack or SetRemark.
	Event string `json:"event" cel:"event"`
	// AppID is the Tencent SdkAppid or the OpenIM app segment of the path ("" when none).
	AppID string `json:"appID,omitempty" cel:"appID"`
	// From is the user who acts: sends the request, answers it, owns the import, blacklist or remark.
	From string `json:"from" cel:"from"`
	// To is the other user.
	To string `json:"to" cel:"to"`
	// Wording is the greeting or answer text.
	Wording string `json:"wording,omitempty" cel:"wording"`
	// Remark is the remark text.
	Remark string `json:"remark,omitempty" cel:"remark"`
	// GroupName is the friend group (Tencent GroupName or TagName).
	GroupName string `json:"groupName,omitempty" cel:"groupName"`
	// AddSource is the Tencent AddSource, such as AddSource_Type_Search.
	AddSource string `json:"addSource,omitempty" cel:"addSource"`
	// AddType is the Tencent AddType as sent.
	AddType string `json:"addType,omitempty" cel:"addType"`
	// ForceAdd is true when Tencent ForceAddFlags is 1.
	ForceAdd bool `json:"forceAdd,omitempty" cel:"forceAdd"`
	// ResponseAction is the Tencent ResponseAction as sent.
	ResponseAction string `json:"responseAction,omitempty" cel:"responseAction"`
	// Platform is the Tencent OptPlatform as sent.
	Platform string `json:"platform,omitempty" cel:"platform"`
	// ClientIP is the Tencent ClientIP as sent.
	ClientIP string `json:"clientIP,omitempty" cel:"clientIP"`
	// Ex is OpenIM's ex: metadata the app sends with the request ("" when none).
	Ex string `json:"ex,omitempty" cel:"ex"`
	// EventTime is the event time in milliseconds, 0 when absent.
	EventTime int64 `json:"eventTime,omitempty" cel:"eventTime"`
}

// Kind says which part of a policy gave a verdict: a blocklist, a rule or a limit.
type Kind string

const (
	// KindBlocklist marks a verdict given by a blocklist.
	KindBlocklist Kind = "blocklist"
	// KindRule marks a verdict given by a rule.
	KindRule Kind = "rule"
	// KindLimit marks a verdict given by a limit; the engine never gives one itself (see
	// Decision.Limits).
	KindLimit Kind = "limit"
)

// Verdict is what a policy's blocklist, rule or limit answers to a request it would deny.
// Verdicts are built once at compile time and shared, so deciding allocates nothing for
// them; treat them as read-only.
type Verdict struct {
	// Policy is the deciding policy as namespace/name.
	Policy string
	// Kind is blocklist, rule or limit.
	Kind Kind
	// Name is the blocklist's, rule's or limit's name: the deciding "entry" of
	// docs/policy.md and of test suites.
	Name string
	// Code is the deny code, 38000 to 39000.
	Code int32
	// Message is the deny message.
	Message string
	// DryRun is true when the policy's enforcementAction is DryRun.
	DryRun bool
	// Detail is Policy/Kind/Name (namespace/name/blocklist/spammers,
	// namespace/name/limit/per-sender), ready for OpenIM's errDlt and for logs.
	Detail string
}

// Decision is the engine's answer for one Request.
type Decision struct {
	// Deny is the verdict of the highest-priority Deny policy that refuses the request, or
	// nil when the request is allowed.
	Deny *Verdict
	// WouldDeny lists the verdicts of DryRun policies that would have refused the request.
	// It is nil in the common case, so allowing allocates nothing.
	WouldDeny []*Verdict
	// Errors are runtime failures of `when` expressions; a rule whose expression fails does
	// not match.
	Errors []error
	// Limits are the limits the request counts against, in decision order: those of the
	// policies that apply to it (appIDs, the policy's and the limit's events) and do not
	// exempt it, whose subject is not empty (see Limit.Subject). Policies come in priority
	// then namespace/name order, a policy's limits as written. Limits is nil when Deny is
	// set: a refused request counts against no limit. The engine does not count: the
	// caller takes each limit in order, and the first enforcing (not DryRun) limit that is
	// over (velocity.Over or Penalized) refuses the request with its Verdict, the limits
	// after it not being counted; a DryRun limit over reports would-deny. The slice
	// usually points into the snapshot: do not modify it.
	Limits []*Limit
	// Keywords say, for Deny and each WouldDeny verdict given by a rule with a keyword
	// condition, which dictionary entry matched (see Keyword). Verdicts are shared, so the
	// match is kept here. For logs and tooling, never for the user who sent the request.
	Keywords []KeywordMatch
}

// Denied reports whether the request is refused.
func (d *Decision) Denied() bool { return d.Deny != nil }
