// Package velocity counts requests against policies' limits ("at most N friend requests
// per user per window"): in memory for `friendgate serve` and a single replica, or shared
// by every replica through Redis. It has no Kubernetes client, so every role shares it.
package velocity

import "time"

// Limit is what a counter knows of one compiled limit of a policy.
type Limit struct {
	// ID names the limit uniquely and identically on every replica (namespace/name/limit);
	// it is part of the counter's key.
	ID string
	// Rate requests are allowed per Window.
	Rate   int64
	Window time.Duration
	// Penalty, when non-zero, refuses a subject for this long once it went over the limit.
	Penalty time.Duration
}

// Subject is whom a request counts for, within an app: From, To or ClientIP in A, or
// the pair From and To in A and B.
type Subject struct {
	AppID, A, B string
}

// Outcome is the result of counting one request.
type Outcome uint8

const (
	// Counted means the request was within the limit, and is counted.
	Counted Outcome = iota
	// Over means the request would exceed the limit; it is not counted.
	Over
	// Penalized means the subject went over the limit less than Penalty ago; the
	// request is not counted.
	Penalized
)

// Mode is how a counter counts at the moment.
type Mode uint8

const (
	// Local counts in this process only.
	Local Mode = iota
	// Shared counts through Redis, with every replica configured alike.
	Shared
)

// Counter counts requests against limits. Implementations are safe for concurrent use
// and never keep a caller waiting longer than their budget.
type Counter interface {
	// Take counts one request of s against l at now.
	Take(l *Limit, s Subject, now time.Time) Outcome
	// Mode says whether requests are counted locally or shared at the moment.
	Mode() Mode
}
