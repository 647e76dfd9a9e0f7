// Package velocity counts requests against policies' limits ("at most N friend requests
// per user per window"): in memory for `friendgate serve` and a single replica, or shared
// by every replica through Redis. It has no Kubernetes client, so every role shares it.
//
// # Counting
//
// Both counters use the generic cell rate algorithm (GCRA). A limit of Rate per Window
// has the emission interval T = Window/Rate; each subject has a theoretical arrival time
// TAT. A request at now is Counted when max(TAT, now) + T ≤ now + Window, and TAT
// becomes max(TAT, now) + T; otherwise it is Over and not counted. So Rate requests may
// come back to back, then one every T; a subject idle for a Window has its whole
// allowance back. In any period of length D, at most Rate + D/T requests are counted: a
// burst is at most Rate, where a fixed window lets 2 × Rate through around its edge, and
// one Window can see 2 × Rate only from a subject that was idle for a Window before. A
// limit with a Penalty refuses the subject (Penalized, not counted) for Penalty after
// its first Over.
//
// LocalCounter counts in this process's memory. RedisCounter runs the same algorithm in
// a Lua script in Redis, so that every replica counts each subject once; now comes from
// the replica, in microseconds, so the replicas' clocks must be synchronised (NTP): a
// replica whose clock runs δ ahead of the others may count up to ⌈δ/T⌉ requests more.
//
// # Failure and worst-case overshoot
//
// A Take never waits on Redis longer than the budget (a few milliseconds): the deadline
// bounds the pool wait, the dial and the reply, and there are no retries. On an error or
// a timeout, that request is counted by the local fallback counter, and the counter
// counts locally (Mode Local) without asking Redis until a probe (a PING every second)
// finds it answering again. With R replicas, the worst-case overshoot of one subject is:
//
//   - Redis healthy: none. The script is atomic, so all replicas' requests advance one
//     TAT. (A Take that timed out may have been counted in Redis too: that refuses more,
//     never less.)
//   - Redis failed: each replica counts alone, so up to R × Rate per Window. In a window
//     that straddles the failure or the recovery, the store taking over has not seen the
//     other's counts: up to (R + 1) × Rate. A Redis restarted empty starts counting over:
//     up to Rate more.
//   - The cache of refusals adds none: a RedisCounter remembers a subject Redis refused
//     until the time Redis said it would be allowed again, and answers Over or Penalized
//     without a round trip until then. Other replicas' requests only push that time
//     later, so the cache only refuses what Redis would refuse.
//   - A subject not tracked because a LocalCounter's table is full (MaxKeys) is not
//     limited at all; friendgate_velocity_untracked_total counts its requests.
//
// Measured (TestRedisOvershoot): 3 replicas sending 1,000 requests of one subject at a
// limit of 100: 100 counted with Redis healthy, 300 with Redis down.
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
	// Counted is a request within the limit, and counted.
	Counted Outcome = iota
	// Over is a request that would exceed the limit; it is not counted.
	Over
	// Penalized is a request of a subject that went over the limit less than Penalty
	// ago; it is not counted.
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
