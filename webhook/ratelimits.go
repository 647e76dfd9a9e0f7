package webhook

import (
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

// limitCounters are friendgate_limit_requests_total's series by limit and outcome.
type limitCounters struct {
	vec   *prometheus.CounterVec
	cache counterCache[limitOutcome]
}

type limitOutcome struct {
	policy, limit, outcome string
}

func newLimitCounters(reg prometheus.Registerer) *limitCounters {
	c := &limitCounters{vec: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "friendgate_limit_requests_total",
		Help: "Request items counted against a policy's limit, by policy, limit and outcome: counted (within the limit), limited (refused: over the limit or in its penalty), would_limit (a DryRun policy's limit that would have refused).",
	}, []string{"policy", "limit", "outcome"})}
	reg.MustRegister(c.vec)
	return c
}

func (c *limitCounters) get(l *policy.Limit, outcome string) prometheus.Counter {
	return c.cache.get(limitOutcome{l.Verdict.Policy, l.Verdict.Name, outcome}, func() prometheus.Counter {
		return c.vec.WithLabelValues(l.Verdict.Policy, l.Verdict.Name, outcome)
	})
}

// forget deletes the series of policies that are not live.
func (c *limitCounters) forget(live map[string]bool) {
	c.cache.prune(func(k limitOutcome) bool { return live[k.policy] }, func(k limitOutcome) {
		c.vec.DeleteLabelValues(k.policy, k.limit, k.outcome)
	})
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
