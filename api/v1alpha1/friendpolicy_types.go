package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EnforcementAction says what a policy's verdicts do.
// +kubebuilder:validation:Enum=Deny;DryRun
type EnforcementAction string

const (
	// EnforcementDeny makes the policy's verdicts refuse the request.
	EnforcementDeny EnforcementAction = "Deny"
	// EnforcementDryRun only logs and counts the policy's verdicts as "would deny".
	EnforcementDryRun EnforcementAction = "DryRun"
)

// EnforcementActions are every enforcement action, as the Enum marker above lists them.
var EnforcementActions = [...]EnforcementAction{EnforcementDeny, EnforcementDryRun}

// Event is the kind of relationship change an IM server asks about.
// +kubebuilder:validation:Enum=FriendRequest;FriendResponse;ImportFriends;AddBlack;SetRemark
type Event string

const (
	// EventFriendRequest is a user sending a friend request.
	EventFriendRequest Event = "FriendRequest"
	// EventFriendResponse is a user answering (accepting) a friend request.
	EventFriendResponse Event = "FriendResponse"
	// EventImportFriends is an administrator importing friends for a user.
	EventImportFriends Event = "ImportFriends"
	// EventAddBlack is a user adding another user to their blacklist.
	EventAddBlack Event = "AddBlack"
	// EventSetRemark is a user setting the remark of a friend.
	EventSetRemark Event = "SetRemark"
)

// Events are every event, as the Enum marker above lists them; the engine indexes events
// by their position here.
var Events = [...]Event{EventFriendRequest, EventFriendResponse, EventImportFriends, EventAddBlack, EventSetRemark}

// DefaultEvents are the events a policy with an empty events list applies to. The CEL rule
// on FriendPolicySpec spells them out too.
var DefaultEvents = []Event{EventFriendRequest, EventFriendResponse, EventImportFriends}

// Subject says which side of a request a blocklist looks up.
// +kubebuilder:validation:Enum=From;To;Either
type Subject string

const (
	// SubjectFrom looks up the user who acts (sends, answers, imports, blocks, remarks).
	SubjectFrom Subject = "From"
	// SubjectTo looks up the other user.
	SubjectTo Subject = "To"
	// SubjectEither looks up both users.
	SubjectEither Subject = "Either"
)

// Subjects are every subject, as the Enum marker above lists them.
var Subjects = [...]Subject{SubjectFrom, SubjectTo, SubjectEither}

// Platforms a rule can name (the Tencent OptPlatform), compared case-insensitively.
const (
	PlatformRESTAPI = "RESTAPI"
	PlatformWeb     = "Web"
	PlatformAndroid = "Android"
	PlatformIOS     = "iOS"
	PlatformWindows = "Windows"
	PlatformMac     = "Mac"
	// PlatformMacOS is another name for PlatformMac.
	PlatformMacOS   = "macOS"
	PlatformIPad    = "iPad"
	PlatformUnknown = "Unknown"
)

// Platforms are every platform name a rule accepts, as the CEL rule on Rule.Platforms
// lists them (in lower case).
var Platforms = [...]string{PlatformRESTAPI, PlatformWeb, PlatformAndroid, PlatformIOS, PlatformWindows, PlatformMac, PlatformMacOS, PlatformIPad, PlatformUnknown}

// Bounds of the schema. Kubebuilder markers take only literals, so each is also written in
// a marker below; TestSchemaMatchesEngine (internal/policy) checks the generated CRD against
// these, and the engine holds policies read from files to them, so a file gets the limits a
// cluster enforces.
const (
	// MinCode is the lowest deny code; Tencent Cloud Chat refuses an item only for codes in [38000, 39000].
	MinCode = 38000
	// MaxCode is the highest deny code.
	MaxCode = 39000
	// DefaultCode is the deny code of a blocklist or rule that sets none.
	DefaultCode = MinCode
	// MinPriority is the lowest policy priority, and the default.
	MinPriority = 0
	// MaxPriority is the highest policy priority.
	MaxPriority = 10000
	// MaxUserIDLength bounds user IDs and prefixes, inline and in ConfigMap lists.
	MaxUserIDLength = 64

	// MaxAppIDs bounds spec.appIDs.
	MaxAppIDs = 100
	// MaxAppIDLength bounds each appID.
	MaxAppIDLength = 64
	// MaxEvents bounds spec.events and a rule's events: each event at most once.
	MaxEvents = len(Events)
	// MaxUsers bounds the inline users of exemptions and of a blocklist.
	MaxUsers = 512
	// MaxPrefixes bounds the prefixes of exemptions and of a blocklist.
	MaxPrefixes = 64
	// MaxPatterns bounds a blocklist's patterns and a rule's wordingPatterns.
	MaxPatterns = 16
	// MaxPatternLength bounds each pattern and wording pattern.
	MaxPatternLength = 256
	// MaxBlocklists bounds spec.blocklists.
	MaxBlocklists = 16
	// MaxRules bounds spec.rules.
	MaxRules = 64
	// MaxNameLength bounds blocklist and rule names: a DNS label.
	MaxNameLength = 63
	// MaxMessageLength bounds a blocklist's or rule's deny message.
	MaxMessageLength = 256
	// MaxPlatforms bounds a rule's platforms.
	MaxPlatforms = 10
	// MaxPlatformLength bounds each platform.
	MaxPlatformLength = 16
	// MaxAddSources bounds a rule's addSources.
	MaxAddSources = 16
	// MaxAddSourceLength bounds each add source.
	MaxAddSourceLength = 32
	// AddSourcePattern is the form of an add source.
	AddSourcePattern = `^AddSource_Type_[A-Za-z0-9]+$`
	// MaxClientCIDRs bounds a rule's clientCIDRs.
	MaxClientCIDRs = 32
	// MaxClientCIDRLength bounds each CIDR: the longest IPv6 CIDR text.
	MaxClientCIDRLength = 43
	// MaxWhenLength bounds a rule's CEL expression.
	MaxWhenLength = 2048
	// MaxStatusConfigMaps bounds status.configMaps.
	MaxStatusConfigMaps = 1024
	// MaxKeywordWords bounds a rule's inline keywords.words; larger dictionaries belong in
	// ConfigMaps (keywords.configMapSelector), which hold up to a million entries.
	MaxKeywordWords = 1000
	// MaxKeywordLength bounds each keyword as written, inline and in ConfigMaps (the
	// matcher's keywords.MaxEntryBytes).
	MaxKeywordLength = 256
	// MaxKeywordInputs bounds keywords.in: each text at most once.
	MaxKeywordInputs = len(KeywordInputs)
	// MaxLimits bounds spec.limits.
	MaxLimits = 16
	// MinLimitCount is the lowest limit: the number of requests allowed per window.
	MinLimitCount = 1
	// MaxLimitCount is the highest limit.
	MaxLimitCount = 1_000_000
)

// Bounds of a limit's window and penalty. The CEL rules on Limit.Window and Limit.Penalty
// spell them out too, as duration('1s') and duration('720h').
const (
	// MinLimitWindow is the shortest window, and the shortest penalty.
	MinLimitWindow = time.Second
	// MaxLimitWindow is the longest window (30 days), and the longest penalty.
	MaxLimitWindow = 720 * time.Hour
)

// KeywordInput is a request text a keyword dictionary reads.
// +kubebuilder:validation:Enum=Wording;Remark
type KeywordInput string

const (
	// KeywordInputWording is the greeting or answer text.
	KeywordInputWording KeywordInput = "Wording"
	// KeywordInputRemark is the remark the user gives the friend.
	KeywordInputRemark KeywordInput = "Remark"
)

// KeywordInputs are every keyword input, as the Enum marker above lists them.
var KeywordInputs = [...]KeywordInput{KeywordInputWording, KeywordInputRemark}

// DefaultKeywordInputs are the texts a dictionary reads when keywords.in is empty; the
// default marker on Keywords.In spells them out too.
var DefaultKeywordInputs = []KeywordInput{KeywordInputWording}

// Defaults of the keyword normalisations that are on unless switched off; the default
// markers on Keywords spell them out too.
const (
	DefaultKeywordFoldCase          = true
	DefaultKeywordFoldCompatibility = true
)

// LimitKey says whom a limit counts requests for, within an app.
// +kubebuilder:validation:Enum=From;To;ClientIP;FromTo
type LimitKey string

const (
	// LimitKeyFrom counts per user who acts (sends, answers, imports, blocks, remarks).
	LimitKeyFrom LimitKey = "From"
	// LimitKeyTo counts per other user.
	LimitKeyTo LimitKey = "To"
	// LimitKeyClientIP counts per client address; only Tencent Cloud Chat sends one.
	LimitKeyClientIP LimitKey = "ClientIP"
	// LimitKeyFromTo counts per pair of users, in that direction.
	LimitKeyFromTo LimitKey = "FromTo"
)

// LimitKeys are every limit key, as the Enum marker above lists them.
var LimitKeys = [...]LimitKey{LimitKeyFrom, LimitKeyTo, LimitKeyClientIP, LimitKeyFromTo}

// DefaultLimitEvents are the events a limit with an empty events list counts; the default
// marker on Limit.Events and the CEL rule on FriendPolicySpec spell them out too.
var DefaultLimitEvents = []Event{EventFriendRequest}

// FriendPolicySpec declares who may befriend whom.
// +kubebuilder:validation:XValidation:rule="!has(self.rules) || self.rules.all(r, !has(r.events) || r.events.all(e, e in (has(self.events) && size(self.events) > 0 ? self.events : ['FriendRequest', 'FriendResponse', 'ImportFriends'])))",message="every event of a rule must be one of the policy's events (FriendRequest, FriendResponse and ImportFriends when the policy lists none)",fieldPath=".rules"
// +kubebuilder:validation:XValidation:rule="!has(self.limits) || self.limits.all(l, (has(l.events) && size(l.events) > 0 ? l.events : ['FriendRequest']).all(e, e in (has(self.events) && size(self.events) > 0 ? self.events : ['FriendRequest', 'FriendResponse', 'ImportFriends'])))",message="every event of a limit must be one of the policy's events (FriendRequest, FriendResponse and ImportFriends when the policy lists none; a limit's events default to FriendRequest)",fieldPath=".limits"
type FriendPolicySpec struct {
	// appIDs limits the policy to these IM applications: the Tencent Cloud Chat SdkAppid,
	// or the OpenIM app segment of the callback path. Empty means every application.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=64
	AppIDs []string `json:"appIDs,omitempty"`

	// events limits the policy to these events. Empty means FriendRequest, FriendResponse
	// and ImportFriends; AddBlack and SetRemark apply only when listed.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=5
	Events []Event `json:"events,omitempty"`

	// enforcementAction is Deny (verdicts refuse the request) or DryRun (verdicts are
	// only logged and counted as "would deny").
	// +optional
	// +kubebuilder:default=Deny
	EnforcementAction EnforcementAction `json:"enforcementAction,omitempty"`

	// priority orders denying policies: when several Deny policies refuse a request, the
	// answer's code and message come from the one with the highest priority; ties go to the
	// policy whose namespace/name sorts first.
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	Priority int32 `json:"priority,omitempty"`

	// exemptions are users this policy never denies: when either side of a request matches,
	// the policy says nothing about it.
	// +optional
	Exemptions *Exemptions `json:"exemptions,omitempty"`

	// blocklists refuse requests involving listed users. They are tried in the order
	// written, before the rules; the first that matches decides.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Blocklists []Blocklist `json:"blocklists,omitempty"`

	// rules refuse requests whose conditions all hold. They are tried in the order written,
	// after the blocklists; the first that matches decides.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Rules []Rule `json:"rules,omitempty"`

	// limits refuse a request once its sender (or recipient, client address, or pair)
	// made too many in a window: "at most 20 friend requests per sender per hour". Only a
	// request no blocklist or rule of any policy refuses counts, and only against the
	// limits of policies that apply to it and do not exempt it; limits are counted in
	// decision order, and the first over its limit refuses. A DryRun policy's limits count
	// and report "would deny" but never refuse.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Limits []Limit `json:"limits,omitempty"`
}

// Limit allows `limit` requests per key per `window`, smoothly (GCRA): a key quiet for a
// window may send `limit` back to back, then one every window/limit.
type Limit struct {
	// name identifies the limit in answers, logs and metrics. A DNS label, unique among the
	// policy's limits.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// events are the events the limit counts, a subset of the policy's events. Defaults to
	// FriendRequest.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=5
	// +kubebuilder:default={FriendRequest}
	Events []Event `json:"events,omitempty"`

	// key says whom requests are counted for, per appID: From (the user who acts), To (the
	// other user), ClientIP (the client address; only Tencent Cloud Chat sends one, so the
	// limit never counts OpenIM requests) or FromTo (the pair).
	Key LimitKey `json:"key"`

	// limit is the number of requests allowed per key per window, 1 to 1,000,000: a key
	// quiet for a window may send this many back to back, then one every window/limit.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	Limit int32 `json:"limit"`

	// window is the period the limit spans, 1s to 720h (30 days), such as 1h or 24h.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('720h')",message="window must be between 1s and 720h"
	Window metav1.Duration `json:"window"`

	// penalty, when set, refuses every request of a key for this long once the key went
	// over the limit, 1s to 720h.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('720h')",message="penalty must be between 1s and 720h"
	Penalty *metav1.Duration `json:"penalty,omitempty"`

	// code is the deny code sent to the IM server, 38000 to 39000.
	// +optional
	// +kubebuilder:default=38000
	// +kubebuilder:validation:Minimum=38000
	// +kubebuilder:validation:Maximum=39000
	Code int32 `json:"code,omitempty"`

	// message is the deny message sent to the IM server. Defaults to "too many requests,
	// try again later".
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Message string `json:"message,omitempty"`
}

// Exemptions are users a policy never denies.
type Exemptions struct {
	// users are exact user IDs.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=512
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:Pattern=`^\S+$`
	Users []string `json:"users,omitempty"`

	// prefixes match every user ID that starts with one of them.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:Pattern=`^\S+$`
	Prefixes []string `json:"prefixes,omitempty"`
}

// Blocklist refuses requests whose subject user is listed.
// +kubebuilder:validation:XValidation:rule="(has(self.users) && size(self.users) > 0) || (has(self.prefixes) && size(self.prefixes) > 0) || (has(self.patterns) && size(self.patterns) > 0) || has(self.configMapSelector)",message="a blocklist needs at least one of users, prefixes, patterns or configMapSelector"
type Blocklist struct {
	// name identifies the blocklist in answers, logs and metrics. A DNS label, unique in the policy.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// subject says which user is looked up: From (the user who acts), To (the other user)
	// or Either.
	// +optional
	// +kubebuilder:default=Either
	Subject Subject `json:"subject,omitempty"`

	// users are exact user IDs.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=512
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:Pattern=`^\S+$`
	Users []string `json:"users,omitempty"`

	// prefixes match every user ID that starts with one of them.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:Pattern=`^\S+$`
	Prefixes []string `json:"prefixes,omitempty"`

	// patterns are RE2 regular expressions that must match the WHOLE user ID.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	Patterns []string `json:"patterns,omitempty"`

	// configMapSelector selects ConfigMaps in the policy's namespace whose data values list
	// more user IDs, one per line; blank lines and lines starting with # are ignored. It
	// must select on the label friendgate.io/list (matchLabels, or matchExpressions with
	// In or Exists): replicas read only ConfigMaps carrying it. (The schema checks
	// matchLabels; matchExpressions are checked by the admission webhook, as scanning
	// them is beyond the schema's cost budget.)
	// +optional
	// +kubebuilder:validation:XValidation:rule="(has(self.matchLabels) && 'friendgate.io/list' in self.matchLabels) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",message="configMapSelector must select on the label friendgate.io/list, which replicas read lists by: add matchLabels: {friendgate.io/list: <list name>} (and that label to the ConfigMaps)"
	ConfigMapSelector *metav1.LabelSelector `json:"configMapSelector,omitempty"`

	// code is the deny code sent to the IM server, 38000 to 39000.
	// +optional
	// +kubebuilder:default=38000
	// +kubebuilder:validation:Minimum=38000
	// +kubebuilder:validation:Maximum=39000
	Code int32 `json:"code,omitempty"`

	// message is the deny message sent to the IM server. Defaults to "blocked by friend policy".
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Message string `json:"message,omitempty"`
}

// Rule refuses requests for which all of its conditions hold. A list-valued condition holds
// when any of its elements matches.
// +kubebuilder:validation:XValidation:rule="(has(self.platforms) && size(self.platforms) > 0) || (has(self.addSources) && size(self.addSources) > 0) || (has(self.clientCIDRs) && size(self.clientCIDRs) > 0) || (has(self.wordingPatterns) && size(self.wordingPatterns) > 0) || has(self.keywords) || (has(self.when) && size(self.when) > 0)",message="a rule needs at least one condition: platforms, addSources, clientCIDRs, wordingPatterns, keywords or when"
type Rule struct {
	// name identifies the rule in answers, logs and metrics. A DNS label, unique in the policy.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// events limits the rule to these events, a subset of the policy's events. Empty means
	// all of the policy's events. Events scope a rule; they are not a condition.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=5
	Events []Event `json:"events,omitempty"`

	// platforms holds when the client platform (Tencent OptPlatform) is one of these,
	// compared case-insensitively: RESTAPI, Web, Android, iOS, Windows, Mac (or macOS), iPad, Unknown.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=10
	// +kubebuilder:validation:items:MaxLength=16
	// +kubebuilder:validation:XValidation:rule="self.all(p, p.lowerAscii() in ['restapi', 'web', 'android', 'ios', 'windows', 'mac', 'macos', 'ipad', 'unknown'])",message="platforms must be RESTAPI, Web, Android, iOS, Windows, Mac, macOS, iPad or Unknown"
	Platforms []string `json:"platforms,omitempty"`

	// addSources holds when the request's AddSource is one of these exact values,
	// for example AddSource_Type_Search.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=32
	// +kubebuilder:validation:items:Pattern=`^AddSource_Type_[A-Za-z0-9]+$`
	AddSources []string `json:"addSources,omitempty"`

	// clientCIDRs holds when the client IP address is in one of these CIDR ranges.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=43
	// +kubebuilder:validation:XValidation:rule="self.all(c, isCIDR(c))",message="clientCIDRs must be CIDR ranges such as 203.0.113.0/24 or 2001:db8::/32"
	ClientCIDRs []string `json:"clientCIDRs,omitempty"`

	// wordingPatterns holds when one of these RE2 regular expressions is found anywhere in
	// the request's wording (greeting or answer text).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	WordingPatterns []string `json:"wordingPatterns,omitempty"`

	// keywords holds when the wording (and, if chosen, the remark) contains a word or
	// phrase of a dictionary, matched in one pass whatever the dictionary's size.
	// +optional
	Keywords *Keywords `json:"keywords,omitempty"`

	// when is a CEL expression over `request` that must evaluate to true, for example
	// "request.from.startsWith('guest_') && !request.forceAdd". request has the fields
	// event, appID, from, to, wording, remark, groupName, addSource, addType, forceAdd,
	// responseAction, platform, clientIP, eventTime and ex (OpenIM's ex).
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	When string `json:"when,omitempty"`

	// code is the deny code sent to the IM server, 38000 to 39000.
	// +optional
	// +kubebuilder:default=38000
	// +kubebuilder:validation:Minimum=38000
	// +kubebuilder:validation:Maximum=39000
	Code int32 `json:"code,omitempty"`

	// message is the deny message sent to the IM server. Defaults to "denied by friend policy".
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Message string `json:"message,omitempty"`
}

// Keywords is a keyword dictionary: inline words and words from labelled ConfigMaps, with
// the normalisation a moderator chooses. Case and Unicode compatibility folding are on by
// default: they undo what costs a spammer nothing (VIA, ｖｉａ) and hardly ever join two
// words a moderator meant apart. Ignoring separators, confusables and whole-word matching
// are off by default, as each changes what a word means: without separators "buy now"
// also matches "buynow" and text across word gaps, confusables read digits as letters
// (2024 as "2o2a"), and whole words miss words glued into others ("viagra123").
// +kubebuilder:validation:XValidation:rule="(has(self.words) && size(self.words) > 0) || has(self.configMapSelector)",message="keywords need words or a configMapSelector"
type Keywords struct {
	// words are the dictionary's inline words and phrases.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	Words []string `json:"words,omitempty"`

	// configMapSelector selects ConfigMaps in the policy's namespace whose data values list
	// more words, one per line; blank lines and lines starting with # are ignored. It must
	// select on the label friendgate.io/list, as a blocklist's configMapSelector must.
	// +optional
	// +kubebuilder:validation:XValidation:rule="(has(self.matchLabels) && 'friendgate.io/list' in self.matchLabels) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",message="configMapSelector must select on the label friendgate.io/list, which replicas read lists by: add matchLabels: {friendgate.io/list: <list name>} (and that label to the ConfigMaps)"
	ConfigMapSelector *metav1.LabelSelector `json:"configMapSelector,omitempty"`

	// in are the texts the dictionary reads: Wording (the greeting or answer text) and/or
	// Remark. The condition holds when any of them contains a word.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=2
	// +kubebuilder:default={Wording}
	In []KeywordInput `json:"in,omitempty"`

	// foldCase ignores case: VIA and Via match via.
	// +optional
	// +kubebuilder:default=true
	FoldCase *bool `json:"foldCase,omitempty"`

	// foldCompatibility folds Unicode compatibility forms (NFKC): fullwidth, circled and
	// mathematical letters and digits match the plain ones (ｖｉａ matches via).
	// +optional
	// +kubebuilder:default=true
	FoldCompatibility *bool `json:"foldCompatibility,omitempty"`

	// ignoreSeparators drops white space, punctuation and symbols such as + | ~ ^ from
	// words and text alike: V.I.A and v i a match via, and buy now matches buynow.
	// +optional
	IgnoreSeparators bool `json:"ignoreSeparators,omitempty"`

	// foldConfusables reads leetspeak (0 as o, 1 as i, 3 as e, 4 as a, 5 as s, 7 as t, @
	// as a, $ as s) and Cyrillic and Greek look-alikes as Latin letters: v1a and vіа
	// (Cyrillic і, а) match via. Meant for dictionaries of Latin-script words.
	// +optional
	FoldConfusables bool `json:"foldConfusables,omitempty"`

	// wholeWords matches a word only where it neither starts nor ends inside a word of the
	// text: via matches "buy via me", not "trivial". Off, a word matches anywhere.
	// Chinese, Japanese, Korean, Thai and similar scripts match anywhere either way.
	// +optional
	WholeWords bool `json:"wholeWords,omitempty"`
}

// ConditionReady is the kstatus condition that says whether the policy is valid and enforced.
const ConditionReady = "Ready"

// ConditionStalled is the kstatus condition set, with Ready's reason and message, while the
// policy cannot be enforced until someone changes it (Invalid or ListError), so GitOps
// tools report it failed at once instead of waiting for it to become Ready.
const ConditionStalled = "Stalled"

// Reasons of the Ready condition.
const (
	// ReasonEnforced: the policy compiled and every serving webhook replica enforces its
	// current generation (Ready=True).
	ReasonEnforced = "Enforced"
	// ReasonPropagating: the policy compiled; some serving webhook replicas still enforce
	// an older generation.
	ReasonPropagating = "Propagating"
	// ReasonNoReplicas: the policy compiled, but no webhook replica serves, so it is
	// enforced nowhere.
	ReasonNoReplicas = "NoReplicas"
	// ReasonInvalid: the spec does not compile (a pattern, CIDR or CEL expression the
	// schema could not check).
	ReasonInvalid = "Invalid"
	// ReasonListError: a list or keyword dictionary selected by configMapSelector cannot be
	// used: a line is not a valid user ID or keyword, or the list is too large.
	ReasonListError = "ListError"
)

// ConditionLimitsShared says, on a policy with limits, whether the serving webhook replicas
// count them together (True) or each alone (False: a sender may get up to one limit's
// worth from each replica). A policy without limits has none.
const ConditionLimitsShared = "LimitsShared"

// Reasons of the LimitsShared condition. While no replica serves it is Unknown with
// ReasonNoReplicas.
const (
	// ReasonShared: every serving webhook replica counts limits through Redis
	// (LimitsShared=True).
	ReasonShared = "Shared"
	// ReasonSingleReplica: one webhook replica serves and counts limits in its memory; its
	// counts are complete (LimitsShared=True).
	ReasonSingleReplica = "SingleReplica"
	// ReasonCountedPerReplica: the serving replicas' counts are split: more than one
	// replica serves and some count alone (without Redis, Redis failing, or a version that
	// does not say), LimitsShared=False.
	ReasonCountedPerReplica = "CountedPerReplica"
)

// Values of status.limitsCounting, one for each LimitsShared reason.
const (
	// LimitsCountingShared: ReasonShared.
	LimitsCountingShared = "shared"
	// LimitsCountingSingleReplica: ReasonSingleReplica.
	LimitsCountingSingleReplica = "single-replica"
	// LimitsCountingPerReplica: ReasonCountedPerReplica.
	LimitsCountingPerReplica = "per-replica"
	// LimitsCountingNone: no webhook replica serves (ReasonNoReplicas).
	LimitsCountingNone = "none"
)

// Values of status.enforced besides the "k/n" of a Propagating policy.
const (
	// EnforcedAll: every serving webhook replica enforces observedGeneration.
	EnforcedAll = "all"
	// EnforcedNone: no webhook replica enforces observedGeneration (NoReplicas, Invalid,
	// ListError).
	EnforcedNone = "none"
)

// FriendPolicyStatus is the observed state of a FriendPolicy.
type FriendPolicyStatus struct {
	// observedGeneration is the generation of the spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions hold the Ready condition: True when the policy compiled and its lists
	// resolved, False with a reason and message saying what is wrong otherwise; and, on a
	// policy with limits, LimitsShared: whether the replicas count them together.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// rules is the number of rules in the policy.
	// +optional
	Rules int32 `json:"rules,omitempty"`

	// limits is the number of limits in the policy.
	// +optional
	Limits int32 `json:"limits,omitempty"`

	// blocklistEntries is the number of users, prefixes and patterns in all blocklists,
	// ConfigMap lists included.
	// +optional
	BlocklistEntries int64 `json:"blocklistEntries,omitempty"`

	// configMaps are the names of the ConfigMaps the blocklists and keyword dictionaries
	// were read from.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=1024
	ConfigMaps []string `json:"configMaps,omitempty"`

	// enforced says which serving webhook replicas enforce observedGeneration, for kubectl
	// get: "all" (Ready=True), "k/n" while the generation propagates, "none" otherwise.
	// It carries counts only while the policy is Propagating, so replicas joining and
	// leaving do not rewrite every policy's status; the live replica count is in the
	// controller's summary ConfigMap (docs/operator.md).
	// +optional
	Enforced string `json:"enforced,omitempty"`

	// limitsCounting says how the serving webhook replicas count the policy's limits, for
	// kubectl get -o wide: "shared" (through Redis), "single-replica" (one replica serves
	// and counts alone, completely), "per-replica" (several count alone: a sender may get
	// up to one limit's worth from each), "none" (no replica serves). Absent when the
	// policy has no limits. The LimitsShared condition says the same with counts.
	// +optional
	LimitsCounting string `json:"limitsCounting,omitempty"`
}

// FriendPolicy declares blocklists, exemptions and rules that decide whether two users of
// an IM service may become friends.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=fp,categories=friendgate
// +kubebuilder:printcolumn:name="Action",type=string,JSONPath=`.spec.enforcementAction`
// +kubebuilder:printcolumn:name="Priority",type=integer,JSONPath=`.spec.priority`,priority=1
// +kubebuilder:printcolumn:name="Rules",type=integer,JSONPath=`.status.rules`
// +kubebuilder:printcolumn:name="Limits",type=integer,JSONPath=`.status.limits`
// +kubebuilder:printcolumn:name="Counting",type=string,JSONPath=`.status.limitsCounting`,priority=1
// +kubebuilder:printcolumn:name="Entries",type=integer,JSONPath=`.status.blocklistEntries`
// +kubebuilder:printcolumn:name="Enforced",type=string,JSONPath=`.status.enforced`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type FriendPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec declares the policy.
	Spec FriendPolicySpec `json:"spec"`

	// status is written by the friendgate controller.
	// +optional
	Status FriendPolicyStatus `json:"status,omitempty"`
}

// FriendPolicyList is a list of FriendPolicies.
// +kubebuilder:object:root=true
type FriendPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []FriendPolicy `json:"items"`
}
