package webhook

import (
	"maps"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/friendgate/friendgate/internal/policy"
	"github.com/friendgate/friendgate/internal/velocity"
)

// Outcomes of a request counted against a limit, the `outcome` label of
// friendgate_limit_requests_total.
const (
	LimitCounted    = "counted"
	LimitLimited    = "limited"
	LimitWouldLimit = "would_limit"
)

// limitCounters are friendgate_limit_requests_total's series by policy, limit and
// outcome, resolved on first use and then read without a lock.
type limitCounters struct {
	vec *prometheus.CounterVec
	mu  sync.Mutex
	m   atomic.Pointer[map[limitOutcome]prometheus.Counter]
}

type limitOutcome struct {
	id      string
	outcome string
}

func newLimitCounters(reg prometheus.Registerer) *limitCounters {
	c := &limitCounters{vec: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "friendgate_limit_requests_total",
		Help: "Request items counted against a policy's limit, by policy, limit and outcome: counted (within the limit), limited (refused: over the limit or in its penalty), would_limit (a DryRun policy's limit that would have refused).",
	}, []string{"policy", "limit", "outcome"})}
	c.m.Store(&map[limitOutcome]prometheus.Counter{})
	reg.MustRegister(c.vec)
	return c
}

func (c *limitCounters) get(l *policy.Limit, outcome string) prometheus.Counter {
	key := limitOutcome{l.Velocity.ID, outcome}
	if ctr, ok := (*c.m.Load())[key]; ok {
		return ctr
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.m.Load()
	if ctr, ok := old[key]; ok {
		return ctr
	}
	ctr := c.vec.WithLabelValues(l.Verdict.Policy, l.Verdict.Name, outcome)
	next := maps.Clone(old)
	next[key] = ctr
	c.m.Store(&next)
	return ctr
}

// countLimits counts an allowed item against the limits it meets (see
// policy.Decision.CountLimits) and records the outcomes.
func (h *Handler) countLimits(d *policy.Decision, item *policy.Request) {
	if d.Deny != nil || len(d.Limits) == 0 || h.opts.Counter == nil {
		return
	}
	d.CountLimits(item, h.opts.Counter, h.opts.Clock.Now(), h.limitSeen)
}

// limitSeen counts one limit's outcome in the metrics.
func (h *Handler) limitSeen(l *policy.Limit, o velocity.Outcome) {
	switch {
	case o == velocity.Counted:
		h.opts.Metrics.limits.get(l, LimitCounted).Inc()
	case l.DryRun:
		h.opts.Metrics.limits.get(l, LimitWouldLimit).Inc()
	default:
		h.opts.Metrics.limits.get(l, LimitLimited).Inc()
	}
}
