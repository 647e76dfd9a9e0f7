package webhook

import (
	"maps"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a request is answered "busy" without being decided: the `reason` label of
// friendgate_callback_shed_total.
const (
	ShedConnections = "connections"
	ShedBodyBytes   = "body_bytes"
)

// Decision results, the values of the `result` label.
const (
	ResultAllow     = "allow"
	ResultDeny      = "deny"
	ResultWouldDeny = "would-deny"
	ResultError     = "error"
)

// Metrics are the callback server's Prometheus metrics. Label values that the hot path
// needs are resolved once (per command, or per policy on its first verdict), so answering
// a callback touches only atomics: no label hashing and no lock.
type Metrics struct {
	requests         *prometheus.CounterVec
	decisions        *prometheus.CounterVec
	latency          *prometheus.HistogramVec
	authFailures     *prometheus.CounterVec
	ruleErrors       prometheus.Counter
	reloadErrors     *prometheus.CounterVec
	reloads          prometheus.Counter
	generation       prometheus.Gauge
	policies         prometheus.Gauge
	entries          prometheus.Gauge
	lastReloadSec    prometheus.Gauge
	upstreamRequests *prometheus.CounterVec
	upstreamLatency  prometheus.Histogram
	shedConns        prometheus.Counter
	shedBody         prometheus.Counter
	connections      prometheus.Gauge
	connsRefused     prometheus.Counter
	staleClosed      prometheus.Counter
	timedOut         *prometheus.CounterVec
	limits           *limitCounters
	// budget is the in-flight body budget of the handler using these metrics.
	budget atomic.Pointer[byteBudget]

	mu       sync.Mutex
	commands map[string]*commandMetrics
}

// latencyBuckets run from 5µs to about 0.33s: answers take microseconds, and the IM
// servers give up at 2 s (Tencent) or 5 s (OpenIM's shipped config).
var latencyBuckets = prometheus.ExponentialBuckets(5e-6, 2, 17)

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "friendgate_callback_requests_total",
			Help: "Callback HTTP requests by protocol, command and HTTP status code.",
		}, []string{"protocol", "command", "code"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "friendgate_decisions_total",
			Help: "Decisions per request item by protocol, command, event, result (allow, deny, would-deny, error) and deciding policy (namespace/name).",
		}, []string{"protocol", "command", "event", "result", "policy"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "friendgate_callback_duration_seconds",
			Help:    "Time from reading a callback request to writing its answer, by protocol and command.",
			Buckets: latencyBuckets,
		}, []string{"protocol", "command"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "friendgate_auth_failures_total",
			Help: "Callback requests refused before evaluation, by protocol and reason.",
		}, []string{"protocol", "reason"}),
		ruleErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "friendgate_rule_evaluation_errors_total",
			Help: "Runtime errors of rule `when` expressions; a rule whose expression fails does not match.",
		}),
		reloadErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "friendgate_snapshot_reload_errors_total",
			Help: "Policy reloads that failed and left the last good snapshot in force, by source.",
		}, []string{"source"}),
		reloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "friendgate_snapshot_reloads_total",
			Help: "Policy snapshots swapped in.",
		}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "friendgate_snapshot_generation",
			Help: "Sequence number of the snapshot in force; 0 until the first one is loaded.",
		}),
		policies: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "friendgate_snapshot_policies",
			Help: "Policies in the snapshot in force.",
		}),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "friendgate_snapshot_blocklist_entries",
			Help: "Blocklist entries (users, prefixes and patterns, ConfigMap lists included) in the snapshot in force.",
		}),
		lastReloadSec: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "friendgate_snapshot_last_reload_timestamp_seconds",
			Help: "Unix time at which the snapshot in force was swapped in.",
		}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "friendgate_callback_connections",
			Help: "Open connections of the callback listener, including those over --max-connections that are being answered busy.",
		}),
		connsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "friendgate_callback_connections_refused_total",
			Help: "Connections closed as soon as accepted because even the room for busy answers (an eighth over --max-connections) was taken.",
		}),
		staleClosed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "friendgate_callback_stale_connections_closed_total",
			Help: "Connections closed to make room for a new one at --max-connections: idle keep-alive connections, or connections stalled delivering a request for more than a second.",
		}),
		timedOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "friendgate_callback_connections_timed_out_total",
			Help: "Plain-HTTP connections closed for taking too long in a phase, by phase (header: 5 s to send a request's header; body: 10 s from the request's start to deliver its body; answer: 10 s to take the answer; idle: 90 s between requests).",
		}, []string{"phase"}),
		upstreamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "friendgate_upstream_requests_total",
			Help: "OpenIM callbacks forwarded to --openim-upstream, by result (ok, error, timeout).",
		}, []string{"result"}),
		upstreamLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "friendgate_upstream_duration_seconds",
			Help:    "Time the upstream webhook took to answer a forwarded callback.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		commands: map[string]*commandMetrics{},
	}
	shed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "friendgate_callback_shed_total",
		Help: "Callback requests answered 503 without a decision because the server was at a bound, by reason (connections: the connection came over --max-connections; body_bytes: --max-inflight-body-bytes).",
	}, []string{"reason"})
	m.shedConns = shed.WithLabelValues(ShedConnections)
	m.shedBody = shed.WithLabelValues(ShedBodyBytes)
	inflight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "friendgate_callback_inflight_body_bytes",
		Help: "Bytes of callback bodies received and not yet answered, reserved in 4 KiB steps; bounded by --max-inflight-body-bytes.",
	}, func() float64 {
		if b := m.budget.Load(); b != nil {
			return float64(b.used.Load())
		}
		return 0
	})
	m.limits = newLimitCounters(reg)
	reg.MustRegister(m.requests, m.decisions, m.latency, m.authFailures, m.ruleErrors,
		m.reloadErrors, m.reloads, m.generation, m.policies, m.entries, m.lastReloadSec,
		m.upstreamRequests, m.upstreamLatency, shed, m.connections, m.connsRefused, m.staleClosed, m.timedOut, inflight)
	return m
}

// ReloadFailed counts a failed reload from source (for example "files" or "kubernetes").
func (m *Metrics) ReloadFailed(source string) { m.reloadErrors.WithLabelValues(source).Inc() }

// commandMetrics are the series of one (protocol, command), resolved once.
type commandMetrics struct {
	m                           *Metrics
	protocol, command, event    string
	latency                     prometheus.Observer
	ok                          prometheus.Counter
	allow, errors               prometheus.Counter
	denyByPolicy, wouldByPolicy policyCounters
}

// command returns the metrics of a command, creating them on first use. Handlers call it
// once per command table entry at start-up, not per request.
func (m *Metrics) command(protocol, command, event string) *commandMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := protocol + "\x00" + command
	if c, ok := m.commands[key]; ok {
		return c
	}
	c := &commandMetrics{
		m:        m,
		protocol: protocol,
		command:  command,
		event:    event,
		latency:  m.latency.WithLabelValues(protocol, command),
		ok:       m.requests.WithLabelValues(protocol, command, "200"),
	}
	if event != "" {
		c.allow = m.decisions.WithLabelValues(protocol, command, event, ResultAllow, "")
		c.errors = m.decisions.WithLabelValues(protocol, command, event, ResultError, "")
	}
	c.denyByPolicy.init(m.decisions, protocol, command, event, ResultDeny)
	c.wouldByPolicy.init(m.decisions, protocol, command, event, ResultWouldDeny)
	m.commands[key] = c
	return c
}

func (c *commandMetrics) status(code int) {
	if code == 200 {
		c.ok.Inc()
		return
	}
	c.m.requests.WithLabelValues(c.protocol, c.command, strconv.Itoa(code)).Inc()
}

// counterCache maps keys to a metric's series with a copy-on-write map: lookups are a
// lock-free map read, and a key's series is resolved (label hashing, a lock) only the
// first time it is seen.
type counterCache[K comparable] struct {
	mu sync.Mutex
	m  atomic.Pointer[map[K]prometheus.Counter]
}

// get returns key's series, resolving it on first use.
func (c *counterCache[K]) get(key K, resolve func() prometheus.Counter) prometheus.Counter {
	if m := c.m.Load(); m != nil {
		if ctr, ok := (*m)[key]; ok {
			return ctr
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var old map[K]prometheus.Counter
	if m := c.m.Load(); m != nil {
		old = *m
	}
	if ctr, ok := old[key]; ok {
		return ctr
	}
	ctr := resolve()
	next := maps.Clone(old)
	if next == nil {
		next = map[K]prometheus.Counter{}
	}
	next[key] = ctr
	c.m.Store(&next)
	return ctr
}

// prune drops the keys keep refuses and hands each to drop (which deletes its series), so
// a cache does not outlive what its keys name.
func (c *counterCache[K]) prune(keep func(K) bool, drop func(K)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.m.Load()
	if m == nil {
		return
	}
	next := make(map[K]prometheus.Counter, len(*m))
	for k, ctr := range *m {
		if keep(k) {
			next[k] = ctr
		} else {
			drop(k)
		}
	}
	if len(next) != len(*m) {
		c.m.Store(&next)
	}
}

// policyCounters are a decision counter's series by policy, for one command and result.
type policyCounters struct {
	vec    *prometheus.CounterVec
	labels [4]string
	cache  counterCache[string]
}

func (p *policyCounters) init(vec *prometheus.CounterVec, protocol, command, event, result string) {
	p.vec = vec
	p.labels = [4]string{protocol, command, event, result}
}

func (p *policyCounters) get(policy string) prometheus.Counter {
	return p.cache.get(policy, func() prometheus.Counter {
		return p.vec.WithLabelValues(p.labels[0], p.labels[1], p.labels[2], p.labels[3], policy)
	})
}

// forget deletes the series of policies that are not live.
func (p *policyCounters) forget(live map[string]bool) {
	p.cache.prune(func(policy string) bool { return live[policy] }, func(policy string) {
		p.vec.DeleteLabelValues(p.labels[0], p.labels[1], p.labels[2], p.labels[3], policy)
	})
}

// forgetPolicies deletes the per-policy series (decisions, limits) of policies that are
// no longer in the snapshot, so that a policy per campaign or per tenant, removed, does
// not leave its series behind for the life of the replica.
func (m *Metrics) forgetPolicies(live map[string]bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.commands {
		c.denyByPolicy.forget(live)
		c.wouldByPolicy.forget(live)
	}
	m.limits.forget(live)
}
