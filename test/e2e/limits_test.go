package e2e

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/friendgate/friendgate/internal/testenv"
)

// Limits across replicas: several `friendgate serve` processes on one policies directory
// act as the replicas of one deployment; with the same --redis-addr they count every
// limit together, without it each counts alone (docs/policy.md, "Limits").

const (
	limitPolicy = "e2e/limits"
	limitName   = "per-sender"
	limitCode   = 38040
	limitMsg    = "too many friend requests, try again later"
	openIMAdd   = "callbackBeforeAddFriendCommand"
	tencentAdd  = "Sns.CallbackPrevFriendAdd"
)

// limitDeny is the OpenIM answer refusing a request over the limit, naming it (the tests
// run with --client-detail Full).
var limitDeny = openIMDeny(limitCode, limitMsg, limitPolicy+"/limit/"+limitName)

// limitPolicies is one policy limiting each sender's friend requests to limit per hour.
// An hour is far longer than any test, so nothing refills while one runs.
func limitPolicies(limit int) string {
	return fmt.Sprintf(`
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: limits, namespace: e2e}
spec:
  limits:
    - name: %s
      key: From
      limit: %d
      window: 1h
      code: %d
      message: %s
`, limitName, limit, limitCode, limitMsg)
}

// redisFlags point a replica at r. Counting tests take a generous budget, as
// internal/velocity's do, so that a scheduling delay of this busy machine does not send a
// count to the local fallback and blur what is shared; TestLimitsRedisRestartUnderLoad
// keeps the default.
func redisFlags(r *redisServer) []string {
	return []string{"--redis-addr", r.addr(), "--redis-budget", "1s"}
}

// startReplicas starts n `friendgate serve` processes on the same policies and flags,
// as the replicas of one deployment, and waits until each is ready. At cleanup they get
// SIGTERM together, so that their drain periods overlap, and each must exit 0.
func startReplicas(t *testing.T, n int, policies string, flags ...string) []*server {
	t.Helper()
	replicas := make([]*server, n)
	for i := range replicas {
		replicas[i] = launch(t, policies, flags...)
	}
	t.Cleanup(func() {
		for _, s := range replicas {
			s.terminate(t)
		}
		for _, s := range replicas {
			s.waitExit(t)
		}
	})
	for _, s := range replicas {
		s.waitStatus(t, "/readyz", http.StatusOK, startTimeout)
	}
	return replicas
}

// sumMetric sums a metric over the replicas.
func sumMetric(t *testing.T, replicas []*server, name string, labels map[string]string) float64 {
	t.Helper()
	var sum float64
	for _, s := range replicas {
		sum += s.metric(t, name, labels)
	}
	return sum
}

// limitOutcome is friendgate_limit_requests_total's labels for the test limit and outcome.
func limitOutcome(outcome string) map[string]string {
	return map[string]string{"policy": limitPolicy, "limit": limitName, "outcome": outcome}
}

// sendRoundRobin sends n OpenIM friend requests from sender, the i-th to replica i mod
// len(replicas), and returns how many each replica allowed. Every answer must be the
// plain continue or the limit's refusal.
func sendRoundRobin(t *testing.T, replicas []*server, sender string, n int) []int {
	t.Helper()
	allowedBy := make([]int, len(replicas))
	for i := range n {
		r := i % len(replicas)
		ex := exchange{path: openIMPath(openIMAdd), body: openIMAddFriend(sender, fmt.Sprintf("friend_%d", i), "hello")}
		got := replicas[r].do(t, ex)
		switch {
		case got.status == http.StatusOK && got.body == openIMContinue:
			allowedBy[r]++
		case got.status == http.StatusOK && got.body == limitDeny:
		default:
			t.Fatalf("request %d to replica %d: %d %s, want 200 with %s or %s", i, r, got.status, got.body, openIMContinue, limitDeny)
		}
	}
	return allowedBy
}

func sum(xs []int) int {
	total := 0
	for _, x := range xs {
		total += x
	}
	return total
}

func TestLimitsSharedAcrossReplicas(t *testing.T) {
	t.Parallel()
	const (
		limit = 10
		// perReplica requests reach each replica: more than the limit, so that each
		// replica alone would refuse some.
		perReplica = limit + 5
	)
	policies := writePolicies(t, limitPolicies(limit))
	for _, tc := range []struct {
		replicas int
		redis    bool
	}{
		{replicas: 2, redis: true},
		{replicas: 3, redis: true},
		{replicas: 2, redis: false},
		{replicas: 3, redis: false},
	} {
		name := fmt.Sprintf("%d replicas, ", tc.replicas)
		if tc.redis {
			name += "one Redis"
		} else {
			name += "no Redis"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var flags []string
			if tc.redis {
				flags = redisFlags(startRedis(t))
			}
			replicas := startReplicas(t, tc.replicas, policies, flags...)
			// Without Redis there is no such gauge, which reads 0.
			wantShared := 0.0
			if tc.redis {
				wantShared = 1
			}
			for _, s := range replicas {
				s.checkMetric(t, "friendgate_velocity_shared", nil, wantShared)
			}

			n := perReplica * tc.replicas
			allowedBy := sendRoundRobin(t, replicas, "alice", n)
			t.Logf("%d requests of one sender round-robin: allowed by each replica %v", n, allowedBy)
			wantCounted := limit
			if tc.redis {
				// Shared: the replicas together allow the limit, whoever answers.
				if got := sum(allowedBy); got != limit {
					t.Errorf("allowed %d of %d requests (%v by replica), want %d: the replicas count one allowance", got, n, allowedBy, limit)
				}
			} else {
				// Alone: each replica allows the limit, so the sender gets R × limit.
				for i, got := range allowedBy {
					if got != limit {
						t.Errorf("replica %d allowed %d of its %d requests, want %d: each replica counts alone", i, got, perReplica, limit)
					}
				}
				wantCounted = limit * tc.replicas
			}
			if got := sumMetric(t, replicas, "friendgate_limit_requests_total", limitOutcome("counted")); got != float64(wantCounted) {
				t.Errorf("friendgate_limit_requests_total{outcome=counted} over the replicas = %v, want %d", got, wantCounted)
			}
			if got := sumMetric(t, replicas, "friendgate_limit_requests_total", limitOutcome("limited")); got != float64(n-wantCounted) {
				t.Errorf("friendgate_limit_requests_total{outcome=limited} over the replicas = %v, want %d", got, n-wantCounted)
			}

			// A Tencent batch counts each friend in input order, against the same
			// allowance whichever replica answers: batches of 4 from a new sender, 12
			// friends to each replica.
			const app = "1400000001"
			batch := func(i int) []string {
				return []string{fmt.Sprintf("f%d_a", i), fmt.Sprintf("f%d_b", i), fmt.Sprintf("f%d_c", i), fmt.Sprintf("f%d_d", i)}
			}
			left := make([]int, tc.replicas) // each replica's allowance when counting alone
			for i := range left {
				left[i] = limit
			}
			shared := limit
			for i := range 3 * tc.replicas {
				r := i % tc.replicas
				to := batch(i)
				want := make([]resultItem, len(to))
				for j, id := range to {
					allowance := &left[r]
					if tc.redis {
						allowance = &shared
					}
					if *allowance > 0 {
						*allowance--
						want[j] = allowed(id)
					} else {
						want[j] = denied(id, limitCode, limitMsg)
					}
				}
				replicas[r].check(t, exchange{name: fmt.Sprintf("batch %d to replica %d", i, r), path: tencentPath(app, tencentAdd),
					body: friendAdd("bob", to...), wantStatus: http.StatusOK, wantBody: tencentResult(want...)})
			}
			if tc.redis {
				for i, s := range replicas {
					if got := s.metric(t, "friendgate_velocity_redis_errors_total", nil); got != 0 {
						t.Errorf("replica %d: friendgate_velocity_redis_errors_total = %v, want 0: a count went to the local fallback", i, got)
					}
				}
			}
		})
	}
}

// lateBound is the longest a callback may take in TestLimitsRedisRestartUnderLoad: a
// correctness bound, not a benchmark. A count waits on Redis at most the budget (5 ms by
// default) and never on a dead Redis longer, so an answer takes microseconds plus the
// budget; a second leaves room for this busy 2-core machine's scheduling while staying
// below half of the shortest IM server timeout (Tencent Cloud Chat gives up after 2 s,
// OpenIM's shipped configuration after 5 s), past which a late answer is a failed one.
const lateBound = time.Second

// callbackLoad is callers that keep sending callbacks to replicas, each from a sender of
// its own so that no limit refuses them, and check every answer.
type callbackLoad struct {
	stop chan struct{}
	// gate is held for reading around each callback; pause takes it for writing.
	gate     sync.RWMutex
	wg       sync.WaitGroup
	answers  atomic.Int64
	mu       sync.Mutex
	failures []string        // answers that are not the expected 200 and body
	late     []time.Duration // answers slower than lateBound
	slowest  time.Duration
}

// startLoad starts perReplica callers for each replica. Each sends back to back on a
// keep-alive connection, alternately an OpenIM friend request and a Tencent batch of two,
// pausing a moment between answers as an IM server's traffic does rather than holding
// both cores busy.
func startLoad(replicas []*server, perReplica int) *callbackLoad {
	l := &callbackLoad{stop: make(chan struct{})}
	for w := range perReplica * len(replicas) {
		s := replicas[w%len(replicas)]
		l.wg.Go(func() {
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer c.CloseIdleConnections()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				sender := fmt.Sprintf("load_%d_%d", w, i)
				path, body, want := openIMPath(openIMAdd), openIMAddFriend(sender, "bob", "hello"), openIMContinue
				if i%2 == 1 {
					path, body = tencentPath("1400000001", tencentAdd), friendAdd(sender, "bob", "carol")
					want = tencentResult(allowed("bob"), allowed("carol"))
				}
				l.gate.RLock()
				start := time.Now()
				status, answer, err := post(c, s, path, body)
				d := time.Since(start)
				l.gate.RUnlock()
				l.record(d, func() string {
					switch {
					case err != nil:
						return err.Error()
					case status != http.StatusOK || answer != want:
						return fmt.Sprintf("POST %s %s: %d %s, want 200 %s", path, body, status, answer, want)
					}
					return ""
				}())
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	return l
}

// pause waits for the callbacks in flight and holds the others until resume is called.
func (l *callbackLoad) pause() (resume func()) {
	l.gate.Lock()
	return l.gate.Unlock
}

func post(c *http.Client, s *server, path, body string) (int, string, error) {
	resp, err := c.Post("http://"+s.addr+path, "application/json; charset=utf-8", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(answer), err
}

func (l *callbackLoad) record(d time.Duration, failure string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if failure != "" {
		l.failures = append(l.failures, failure)
	}
	if d > lateBound {
		l.late = append(l.late, d)
	}
	l.slowest = max(l.slowest, d)
	l.answers.Add(1)
}

// waitAnswers waits until the callers have had n more answers.
func (l *callbackLoad) waitAnswers(t *testing.T, n int64) {
	t.Helper()
	from := l.answers.Load()
	testenv.Eventually(t, changeTimeout, fmt.Sprintf("%d more answers under load", n), func() (bool, string) {
		got := l.answers.Load() - from
		return got >= n, fmt.Sprintf("%d answers", got)
	})
}

// finish stops the callers and fails the test for every failed or late answer.
func (l *callbackLoad) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	t.Logf("load: %d answers, slowest %s", l.answers.Load(), l.slowest)
	if len(l.failures) > 0 {
		t.Errorf("%d of %d callbacks failed; the first: %s", len(l.failures), l.answers.Load(), strings.Join(l.failures[:min(5, len(l.failures))], "\n"))
	}
	if len(l.late) > 0 {
		t.Errorf("%d of %d callbacks took longer than %s: %v", len(l.late), l.answers.Load(), lateBound, l.late[:min(10, len(l.late))])
	}
}

// readiness polls every replica's /readyz until stopped and remembers every answer but 200.
type readiness struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	polls    atomic.Int64
	mu       sync.Mutex
	failures []string
}

func watchReadiness(replicas []*server) *readiness {
	r := &readiness{stop: make(chan struct{})}
	for i, s := range replicas {
		r.wg.Go(func() {
			for {
				select {
				case <-r.stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				status, body, err := get(scrapeClient, s, "/readyz")
				r.polls.Add(1)
				if err != nil || status != http.StatusOK {
					r.mu.Lock()
					r.failures = append(r.failures, fmt.Sprintf("replica %d: %d %q %v", i, status, body, err))
					r.mu.Unlock()
				}
			}
		})
	}
	return r
}

func get(c *http.Client, s *server, path string) (int, string, error) {
	resp, err := c.Get("http://" + s.addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func (r *readiness) finish(t *testing.T) {
	t.Helper()
	close(r.stop)
	r.wg.Wait()
	if len(r.failures) > 0 {
		t.Errorf("/readyz answered other than 200 %d times of %d; the first: %s", len(r.failures), r.polls.Load(), strings.Join(r.failures[:min(5, len(r.failures))], "\n"))
	}
}

// redisErrors sums friendgate_velocity_redis_errors_total over the replicas.
func redisErrors(t *testing.T, replicas []*server) float64 {
	t.Helper()
	return sumMetric(t, replicas, "friendgate_velocity_redis_errors_total", nil)
}

// waitShared waits until every replica counts through Redis.
func waitShared(t *testing.T, replicas []*server) {
	t.Helper()
	for i, s := range replicas {
		s.eventually(t, changeTimeout, fmt.Sprintf("replica %d counts through Redis", i), func() (bool, string) {
			got := s.gauge(t, "friendgate_velocity_shared")
			return got == 1, fmt.Sprintf("friendgate_velocity_shared %v", got)
		})
	}
}

// sharedCountAttempts bounds the attempts of checkSharedCount. Under `make test` other
// packages' tests share the two cores, so a count can miss the budget even without load.
const sharedCountAttempts = 10

// checkSharedCount checks that the replicas count one allowance through Redis: once each
// counts through Redis, it sends (limit + 5) × R requests of a new sender round-robin,
// which they must allow exactly limit of between them.
//
// A count that misses the budget goes to its replica's own counter, which then counts
// alone until the next probe, as documented: a busy machine's scheduling delay can do
// that. Then only the documented worst case, (R + 1) × limit, holds, and the check starts
// over with another sender, up to sharedCountAttempts times.
func checkSharedCount(t *testing.T, replicas []*server, sender string, limit int) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		// Errors are read first: a replica whose count fails after waitShared saw it
		// shared counts alone, and that error must count as one during the check.
		errorsBefore := redisErrors(t, replicas)
		waitShared(t, replicas)
		name := fmt.Sprintf("%s_%d", sender, attempt)
		allowedBy := sendRoundRobin(t, replicas, name, (limit+5)*len(replicas))
		got := sum(allowedBy)
		errs := redisErrors(t, replicas) - errorsBefore
		if errs == 0 {
			if got != limit {
				t.Errorf("%s: allowed %d (%v by replica), want %d: the replicas count through Redis", name, got, allowedBy, limit)
			}
			return
		}
		t.Logf("%s: %v Redis errors while counting, so some replicas counted alone: allowed %v", name, errs, allowedBy)
		if bound := (len(replicas) + 1) * limit; got > bound {
			t.Errorf("%s: allowed %d (%v by replica), want at most (R + 1) × limit = %d", name, got, allowedBy, bound)
		}
		if attempt == sharedCountAttempts {
			t.Errorf("%s: Redis failed during each of %d checks: the replicas' sharing is unchecked", sender, attempt)
			return
		}
	}
}

// switchLines are a replica's log lines saying it counts alone (false) or shared again
// (true), in order.
func switchLines(s *server) []bool {
	var switches []bool
	for _, e := range s.logEntries() {
		msg, _ := e["msg"].(string)
		switch {
		case strings.HasPrefix(msg, "Redis failed: each replica counts limits alone"):
			switches = append(switches, false)
		case strings.HasPrefix(msg, "Redis answers again: replicas count limits together"):
			switches = append(switches, true)
		}
	}
	return switches
}

// TestLimitsRedisRestartUnderLoad kills Redis under load and starts it again, empty, on
// the same port: every callback is answered in time, the replicas stay ready, count alone
// meanwhile and say so, and count together again once Redis is back.
//
// It does not run in parallel: it runs alone, before the parallel tests, so that its
// latency bound is about friendgate rather than the rest of the suite on two cores.
func TestLimitsRedisRestartUnderLoad(t *testing.T) {
	const (
		replicaCount = 3
		limit        = 10
	)
	rs := startRedis(t)
	// The default budget: the one callbacks wait on in production.
	replicas := startReplicas(t, replicaCount, writePolicies(t, limitPolicies(limit)), "--redis-addr", rs.addr())
	ready := watchReadiness(replicas)
	load := startLoad(replicas, 2)
	// Finish the load before the replicas stop (cleanups run last first).
	t.Cleanup(func() {
		select {
		case <-load.stop:
		default:
			close(load.stop)
			load.wg.Wait()
		}
	})

	load.waitAnswers(t, 200)
	// The count is checked with the load held: a single count of the load past the
	// budget, which a busy CI machine's scheduling makes likely in any second, would make
	// a replica count alone for the check (each of 10 attempts did in a make test run).
	resume := load.pause()
	checkSharedCount(t, replicas, "before_kill", limit)
	resume()

	rs.kill()
	// Each replica finds out at its next count and goes on counting alone.
	for i, s := range replicas {
		s.eventually(t, changeTimeout, fmt.Sprintf("replica %d counts alone", i), func() (bool, string) {
			got := s.gauge(t, "friendgate_velocity_shared")
			return got == 0, fmt.Sprintf("friendgate_velocity_shared %v", got)
		})
	}
	load.waitAnswers(t, 300)
	// Counting alone, each replica allows the limit: R × limit, the documented worst case.
	if allowedBy := sendRoundRobin(t, replicas, "during_outage", (limit+5)*replicaCount); !slices.Equal(allowedBy, slices.Repeat([]int{limit}, replicaCount)) {
		t.Errorf("with Redis down: allowed by replica %v, want %d by each", allowedBy, limit)
	}

	rs.start()
	// A probe every second finds Redis back.
	waitShared(t, replicas)
	load.waitAnswers(t, 200)
	load.finish(t)
	ready.finish(t)

	// With the load stopped nothing counts, so nothing fails: once a probe has found
	// Redis, a replica that timed out meanwhile counts shared again, and stays so.
	waitShared(t, replicas)
	for i, s := range replicas {
		// The reason depends on where a count was when Redis died: a refused or closed
		// connection is an error, one already past the budget a timeout.
		if got := s.metric(t, "friendgate_velocity_redis_errors_total", nil); got == 0 {
			t.Errorf("replica %d: friendgate_velocity_redis_errors_total = 0, want > 0: Redis was down", i)
		}
		// A switch is logged once: the lines alternate, from counting alone (false) to
		// counting shared again (true), and end shared.
		var switches []bool
		s.eventually(t, changeTimeout, fmt.Sprintf("replica %d logs that it counts alone, then shared again", i), func() (bool, string) {
			switches = switchLines(s)
			alternate := len(switches) >= 2 && len(switches)%2 == 0
			for j, shared := range switches {
				alternate = alternate && shared == (j%2 == 1)
			}
			return alternate, fmt.Sprintf("switches %v (false: counting alone, true: shared again)", switches)
		})
		t.Logf("replica %d: Redis errors %v (timeouts %v), %d switches", i,
			s.metric(t, "friendgate_velocity_redis_errors_total", nil),
			s.metric(t, "friendgate_velocity_redis_errors_total", map[string]string{"reason": "timeout"}), len(switches))
	}
	checkSharedCount(t, replicas, "after_restart", limit)
}
