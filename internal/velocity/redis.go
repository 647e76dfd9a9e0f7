package velocity

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"k8s.io/utils/clock"
)

// Defaults of RedisOptions.
const (
	DefaultKeyPrefix     = "friendgate:"
	DefaultBudget        = 5 * time.Millisecond
	DefaultProbeInterval = time.Second
	DefaultCacheMaxKeys  = 100_000
)

// RedisOptions configure a RedisCounter.
type RedisOptions struct {
	// Addr is Redis's host:port.
	Addr string
	// Username and Password authenticate (AUTH); both may be empty.
	Username, Password string
	// DB is the database number.
	DB int
	// TLS, when set, connects with TLS.
	TLS *tls.Config
	// KeyPrefix starts every key (default DefaultKeyPrefix), so that friendgate can share
	// a Redis with other applications, OpenIM's own included. It must not contain '{' or
	// '}', which would break the keys' hash tag.
	KeyPrefix string
	// Budget is the longest a Take waits on Redis (default DefaultBudget); past it, the
	// request is counted by Fallback.
	Budget time.Duration
	// Fallback counts while Redis fails (default a LocalCounter with default options,
	// registered with Registerer). Run sweeps it: it needs no Run of its own.
	Fallback *LocalCounter
	// Clock drives Run's probes and sweeps (default the real clock).
	Clock clock.WithTicker
	// ProbeInterval is how often Run pings a failed Redis (default DefaultProbeInterval).
	ProbeInterval time.Duration
	// CacheMaxKeys bounds the subjects remembered as over their limit (default
	// DefaultCacheMaxKeys); past it, they are asked of Redis every time.
	CacheMaxKeys int
	// Logger logs each switch between shared and local counting.
	Logger logr.Logger
	// Registerer, when set, registers the counter's metrics.
	Registerer prometheus.Registerer
}

// RedisCounter counts in Redis, shared by every replica configured alike, with GCRA in
// a Lua script (see the package documentation for what happens when Redis fails).
type RedisCounter struct {
	client        *redis.Client
	addr          string
	prefix        string
	budget        time.Duration
	probeInterval time.Duration
	fallback      *LocalCounter
	clock         clock.WithTicker
	log           logr.Logger
	// cache remembers the subjects Redis refused until the time they will be allowed,
	// so that their further requests are refused without a round trip.
	cache  *table[cached]
	shared atomic.Bool
	// timeoutsInARow counts the round trips past the budget since the last one that
	// answered (see fail).
	timeoutsInARow atomic.Int32

	duration     prometheus.Histogram
	timeouts     prometheus.Counter
	errorsOther  prometheus.Counter
	sharedGauge  prometheus.Gauge
	cacheAnswers prometheus.Counter
}

// cached is a refusal Redis answered, and until when (Unix microseconds) it holds.
type cached struct {
	until   int64
	outcome Outcome
}

// gcra is the counter's script. It counts in microseconds: every value is an integer
// below 2^53, so Lua's doubles compute it exactly. KEYS[1] is the subject's hash: t, its
// theoretical arrival time, and p, when its penalty ends. ARGV: now, the emission
// interval, the window and the penalty. It returns the outcome (0 Counted, 1 Over,
// 2 Penalized), and for a refusal until when further requests will be refused and with
// which outcome.
var gcra = redis.NewScript(`
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local penalty = tonumber(ARGV[4])
-- Integers are written as such: Redis would write a Lua number with 14 or 17 digits.
local function set(field, value, expiresAt)
  redis.call('HSET', KEYS[1], field, string.format('%.0f', value))
  redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.ceil((expiresAt - now) / 1000)))
end
local state = redis.call('HMGET', KEYS[1], 't', 'p')
local tat = tonumber(state[1]) or now
local penalized = tonumber(state[2]) or 0
if penalized > now then
  return {2, penalized, 2}
end
if tat < now then
  tat = now
end
local nxt = tat + interval
if nxt - now <= window then
  set('t', nxt, nxt)
  return {0, 0, 0}
end
if penalty == 0 then
  return {1, nxt - window, 1}
end
penalized = now + penalty
set('p', penalized, math.max(tat, penalized))
return {1, penalized, 2}
`)

// NewRedis returns a RedisCounter; it does not wait for Redis, and counts shared from
// the start. Run must run for it to return to shared counting after a failure.
func NewRedis(opts RedisOptions) (*RedisCounter, error) {
	if opts.Addr == "" {
		return nil, errors.New("RedisOptions.Addr: empty")
	}
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = DefaultKeyPrefix
	}
	if strings.ContainsAny(opts.KeyPrefix, "{}") {
		return nil, fmt.Errorf("RedisOptions.KeyPrefix: %q contains '{' or '}', which would break the keys' hash tag", opts.KeyPrefix)
	}
	if opts.Budget < 0 {
		return nil, fmt.Errorf("RedisOptions.Budget: %v is negative", opts.Budget)
	}
	if opts.Budget == 0 {
		opts.Budget = DefaultBudget
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = DefaultProbeInterval
	}
	if opts.CacheMaxKeys <= 0 {
		opts.CacheMaxKeys = DefaultCacheMaxKeys
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Fallback == nil {
		opts.Fallback = NewLocal(LocalOptions{Clock: opts.Clock, Registerer: opts.Registerer})
	}
	c := &RedisCounter{
		client: redis.NewClient(&redis.Options{
			Addr:      opts.Addr,
			Username:  opts.Username,
			Password:  opts.Password,
			DB:        opts.DB,
			TLSConfig: opts.TLS,
			// Every wait is bounded by the Take's context, so by the budget: a retry
			// or its backoff would only spend it.
			ContextTimeoutEnabled: true,
			MaxRetries:            -1,
			DialerRetries:         1,
			// Fewer round trips to open a connection: no CLIENT SETINFO, no
			// maintenance notifications (a Redis Enterprise feature).
			DisableIdentity:          true,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		}),
		addr:          opts.Addr,
		prefix:        opts.KeyPrefix,
		budget:        opts.Budget,
		probeInterval: opts.ProbeInterval,
		fallback:      opts.Fallback,
		clock:         opts.Clock,
		log:           opts.Logger,
		cache:         newTable[cached](opts.CacheMaxKeys),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "friendgate_velocity_redis_duration_seconds",
			Help: "Round trips of counting requests in Redis, failed ones included.",
			// From 50µs to about 100ms, around the budget of a few milliseconds.
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 12),
		}),
		sharedGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "friendgate_velocity_shared",
			Help: "1 when requests are counted in Redis, shared by the replicas; 0 when this replica counts alone because Redis failed.",
		}),
		cacheAnswers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "friendgate_velocity_redis_cache_refusals_total",
			Help: "Requests refused without a round trip, because Redis had refused their subject until a later time.",
		}),
	}
	errorsTotal := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "friendgate_velocity_redis_errors_total",
		Help: "Failed counts in Redis by reason: timeout (past the budget) or error; each request is then counted locally.",
	}, []string{"reason"})
	c.timeouts = errorsTotal.WithLabelValues("timeout")
	c.errorsOther = errorsTotal.WithLabelValues("error")
	if opts.Registerer != nil {
		for _, m := range []prometheus.Collector{c.duration, errorsTotal, c.sharedGauge, c.cacheAnswers} {
			if err := opts.Registerer.Register(m); err != nil {
				return nil, fmt.Errorf("RedisOptions.Registerer: %w", err)
			}
		}
	}
	c.shared.Store(true)
	c.sharedGauge.Set(1)
	routeRedisLogs.Do(func() { redis.SetLogger(redisLogger{opts.Logger.V(1)}) })
	return c, nil
}

// routeRedisLogs sends go-redis's own logs, process-wide, to the first counter's logger
// at V(1): a failed Redis is said once by the counter, not by go-redis at every dial.
var routeRedisLogs sync.Once

type redisLogger struct{ log logr.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Info(fmt.Sprintf(format, v...))
}

// Take counts one request of s against l at now. now must come from a clock every
// replica agrees on (NTP): the replicas' theoretical arrival times are compared in Redis.
func (c *RedisCounter) Take(l *Limit, s Subject, now time.Time) Outcome {
	interval, ok := l.interval()
	if !ok {
		return Counted
	}
	us := now.UnixMicro()
	k := makeKey(l, s)
	if o, ok := c.cached(&k, us); ok {
		c.cacheAnswers.Inc()
		return o
	}
	if !c.shared.Load() {
		return c.fallback.Take(l, s, now)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.budget)
	start := time.Now()
	r, err := gcra.Run(ctx, c.client, []string{c.key(&k)},
		us, interval.Microseconds(), l.Window.Microseconds(), l.Penalty.Microseconds()).Int64Slice()
	cancel()
	c.duration.Observe(time.Since(start).Seconds())
	if err == nil && (len(r) != 3 || r[0] < int64(Counted) || r[0] > int64(Penalized)) {
		err = fmt.Errorf("the script returned %v, want an outcome, a time and an outcome", r)
	}
	if err != nil {
		c.fail(err)
		return c.fallback.Take(l, s, now)
	}
	c.timeoutsInARow.Store(0)
	o := Outcome(r[0])
	if o != Counted {
		c.remember(k, r[1], Outcome(r[2]))
	}
	return o
}

// cached returns the refusal remembered for k at us, if any.
func (c *RedisCounter) cached(k *key, us int64) (Outcome, bool) {
	sh := c.cache.shard(k)
	sh.mu.Lock()
	e := sh.m[*k]
	var o Outcome
	hit := e != nil && e.until > us
	if hit {
		o = e.outcome
	}
	sh.mu.Unlock()
	return o, hit
}

func (c *RedisCounter) remember(k key, until int64, o Outcome) {
	sh := c.cache.shard(&k)
	sh.mu.Lock()
	e := sh.m[k]
	if e == nil {
		e = c.cache.insertLocked(sh, k)
	}
	if e != nil {
		e.until, e.outcome = until, o
	}
	sh.mu.Unlock()
}

// key is the subject's Redis key: the prefix, the app as hash tag, so that an app's keys
// share a Redis Cluster slot, then the limit and the subject's parts, escaped so that
// distinct subjects never share a key.
func (c *RedisCounter) key(k *key) string {
	var b strings.Builder
	b.Grow(len(c.prefix) + len(k.app) + len(k.limit) + len(k.a) + len(k.b) + 5)
	b.WriteString(c.prefix)
	b.WriteByte('{')
	writeEscaped(&b, k.app)
	b.WriteString("}:")
	writeEscaped(&b, k.limit)
	b.WriteByte(':')
	writeEscaped(&b, k.a)
	b.WriteByte(':')
	writeEscaped(&b, k.b)
	return b.String()
}

// writeEscaped writes s with '%', ':', '{' and '}' percent-encoded.
func writeEscaped(b *strings.Builder, s string) {
	for {
		i := strings.IndexAny(s, "%:{}")
		if i < 0 {
			b.WriteString(s)
			return
		}
		b.WriteString(s[:i])
		fmt.Fprintf(b, "%%%02X", s[i])
		s = s[i+1:]
	}
}

// fail counts err and, on the first failure, switches to local counting until a probe
// finds Redis answering again.
// maxTimeoutsInARow is how many round trips in a row may run past the budget before the
// counter stops asking Redis. A lone timeout on a busy node counts only its request
// locally: switching at once would let this replica's empty local counter allow a whole
// limit again until the next probe.
const maxTimeoutsInARow = 3

func (c *RedisCounter) fail(err error) {
	reason := "error"
	if isTimeout(err) {
		reason = "timeout"
		c.timeouts.Inc()
		if c.timeoutsInARow.Add(1) < maxTimeoutsInARow {
			return
		}
	} else {
		c.errorsOther.Inc()
	}
	if c.shared.CompareAndSwap(true, false) {
		c.sharedGauge.Set(0)
		c.log.Error(err, "Redis failed: each replica counts limits alone until it answers again", "addr", c.addr, "reason", reason)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// Mode is Shared while Redis answers, and Local from a failure until a probe finds it
// answering again.
func (c *RedisCounter) Mode() Mode {
	if c.shared.Load() {
		return Shared
	}
	return Local
}

// Run probes a failed Redis every ProbeInterval and sweeps the cache and the fallback
// counter every SweepInterval of the fallback, until ctx is done.
func (c *RedisCounter) Run(ctx context.Context) {
	probe := c.clock.NewTicker(c.probeInterval)
	defer probe.Stop()
	sweep := c.clock.NewTicker(c.fallback.sweepInterval)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-probe.C():
			if !c.shared.Load() && c.probe(ctx) {
				c.shared.Store(true)
				c.sharedGauge.Set(1)
				c.log.Info("Redis answers again: replicas count limits together", "addr", c.addr)
			}
		case now := <-sweep.C():
			us := now.UnixMicro()
			c.cache.sweep(func(e *cached) bool { return e.until <= us })
			c.fallback.Sweep(now)
		}
	}
}

// probe reports whether Redis answers a PING within the budget. A first PING may take
// up to the probe interval, to open a connection (with TLS, several round trips) that
// the Takes then reuse.
func (c *RedisCounter) probe(ctx context.Context) bool {
	for _, timeout := range []time.Duration{c.probeInterval, c.budget} {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := c.client.Ping(pctx).Err()
		cancel()
		if err != nil {
			c.log.V(1).Info("Redis probe failed", "addr", c.addr, "err", err.Error())
			return false
		}
	}
	return true
}

// Close closes the connections to Redis.
func (c *RedisCounter) Close() error { return c.client.Close() }
