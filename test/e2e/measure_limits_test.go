package e2e

import (
	"fmt"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMeasureLimitOvershoot measures limits counted by three replicas of friendgate serve:
// how many of 1,000 requests of one sender at a limit of 100, sent at once across the
// replicas, they allow with Redis healthy and with Redis stopped (the documented worst
// cases: the limit, and R × limit); and what counting through Redis costs a callback
// (latency, callbacks per second, CPU) against counting in memory and against no limit.
// It is a measurement, not a test: run it with `make measure-limits`
// (FRIENDGATE_E2E_LIMITS=1); the figures go to docs/benchmarks.md.
func TestMeasureLimitOvershoot(t *testing.T) {
	if os.Getenv("FRIENDGATE_E2E_LIMITS") == "" {
		t.Skip("measurement: set FRIENDGATE_E2E_LIMITS=1 (make measure-limits)")
	}
	const (
		replicaCount = 3
		limit        = 100
		requests     = 1000
		// callers per replica sending at once.
		callers = 4
	)
	report := fmt.Sprintf("limits measurement: %d replicas of friendgate serve on one policies directory, %s, %d cores, load average %s\n",
		replicaCount, redisVersion(t), runtime.NumCPU(), loadAverage(t))

	// Overshoot: every caller sends its share of the requests of one sender at once.
	report += fmt.Sprintf("\novershoot: %d requests of one sender, %d callers per replica at once, limit %d per hour\n", requests, callers, limit)
	report += fmt.Sprintf("%-40s %8s %-16s %12s %s\n", "counting", "allowed", "by replica", "Redis errors", "expected")
	policies := writePolicies(t, limitPolicies(limit))
	for _, row := range []struct {
		name     string
		flags    []string
		stopped  bool
		expected string
	}{
		{name: "Redis healthy: default budget 5ms", expected: fmt.Sprintf("%d (a count past the budget counts locally)", limit)},
		{name: "Redis healthy: budget 1s", flags: []string{"--redis-budget", "1s"}, expected: strconv.Itoa(limit)},
		{name: "Redis stopped", stopped: true, expected: fmt.Sprintf("R × limit = %d", replicaCount*limit)},
	} {
		t.Run(row.name, func(t *testing.T) {
			rs := startRedis(t)
			replicas := startReplicas(t, replicaCount, policies, append([]string{"--redis-addr", rs.addr()}, row.flags...)...)
			if row.stopped {
				rs.kill()
			}
			allowedBy := make([]int, replicaCount)
			var mu sync.Mutex
			var wg sync.WaitGroup
			workers := replicaCount * callers
			for w := range workers {
				r := w % replicaCount
				n := requests / workers
				if w < requests%workers {
					n++
				}
				wg.Go(func() {
					c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
					defer c.CloseIdleConnections()
					for i := range n {
						status, answer, err := post(c, replicas[r], openIMPath(openIMAdd), openIMAddFriend("flooder", fmt.Sprintf("f_%d_%d", w, i), "hello"))
						if err != nil || status != http.StatusOK || answer != openIMContinue && answer != limitDeny {
							t.Errorf("replica %d: %d %s %v", r, status, answer, err)
							return
						}
						if answer == openIMContinue {
							mu.Lock()
							allowedBy[r]++
							mu.Unlock()
						}
					}
				})
			}
			wg.Wait()
			report += fmt.Sprintf("%-40s %8d %-16s %12v %s\n", row.name, sum(allowedBy), fmt.Sprint(allowedBy), redisErrors(t, replicas), row.expected)
		})
	}

	// Cost: the same callbacks, each from a new sender so that every one is counted
	// (a sender over the limit would be refused from the replica's cache, without a
	// round trip), to replicas without a limit, with the limit counted in memory, and
	// with it counted through Redis: with a budget no round trip misses, so that every
	// count goes to Redis, and with the default budget, past which a count goes to the
	// replica's own counter until the next probe. Configurations alternate over rounds;
	// the report has each figure's median.
	type config struct {
		name     string
		replicas []*server
		redis    *redisServer
	}
	rs := startRedis(t)
	withLimit := writePolicies(t, measurePolicies(limit))
	configs := []*config{
		{name: "no limit", replicas: startReplicas(t, replicaCount, writePolicies(t, measurePolicies(0)), "--redis-addr", rs.addr())},
		{name: "limit in memory", replicas: startReplicas(t, replicaCount, withLimit)},
		{name: "limit in Redis, budget 1s", replicas: startReplicas(t, replicaCount, withLimit, "--redis-addr", rs.addr(), "--redis-budget", "1s"), redis: rs},
		{name: "limit in Redis, budget 5ms", replicas: startReplicas(t, replicaCount, withLimit, "--redis-addr", rs.addr()), redis: rs},
	}
	const (
		rounds = 3
		// latencyRequests go one at a time, round-robin: latency without queueing.
		latencyRequests = 1500
		// throughputRequests go from every caller at once, back to back: the replicas'
		// throughput with the 2 cores saturated.
		throughputRequests = 1000
	)
	const roundTripsMetric = "friendgate_velocity_redis_duration_seconds"
	type figures struct{ p50, p99, perReplica, cpu, redisCPU, viaRedis []float64 }
	results := make([]figures, len(configs))
	for round := range rounds {
		for ci, c := range configs {
			lat := sendLoad(t, c.replicas, 1, latencyRequests, fmt.Sprintf("lat_%d_%d", round, ci))
			cpuBefore := cpuTimes(t, c.replicas)
			roundTripsBefore := sumMetric(t, c.replicas, roundTripsMetric, nil)
			var redisBefore time.Duration
			if c.redis != nil {
				redisBefore = procCPU(t, c.redis.cmd.Process.Pid)
			}
			tp := sendLoad(t, c.replicas, replicaCount*callers, throughputRequests, fmt.Sprintf("tp_%d_%d", round, ci))
			cpu := cpuTimes(t, c.replicas) - cpuBefore
			f := &results[ci]
			f.p50 = append(f.p50, micros(percentile(lat.latencies, 0.50)))
			f.p99 = append(f.p99, micros(percentile(lat.latencies, 0.99)))
			f.perReplica = append(f.perReplica, float64(tp.answered)/tp.elapsed.Seconds()/replicaCount)
			f.cpu = append(f.cpu, micros(cpu)/float64(tp.answered))
			if c.redis != nil {
				f.redisCPU = append(f.redisCPU, micros(procCPU(t, c.redis.cmd.Process.Pid)-redisBefore)/float64(tp.answered))
				f.viaRedis = append(f.viaRedis, 100*(sumMetric(t, c.replicas, roundTripsMetric, nil)-roundTripsBefore)/float64(tp.answered))
			}
		}
	}
	report += fmt.Sprintf("\ncost: every request from a new sender (each counted); medians of %d rounds\n", rounds)
	report += fmt.Sprintf("latency: %d requests one at a time, round-robin; throughput: %d callers (%d per replica) at once, %d requests each, back to back\n",
		latencyRequests, replicaCount*callers, callers, throughputRequests)
	report += fmt.Sprintf("%-27s %7s %7s %19s %17s %15s %15s\n", "counting", "p50 µs", "p99 µs", "callbacks/s/replica", "replica CPU µs/cb", "Redis CPU µs/cb", "counted in Redis")
	for ci, c := range configs {
		f := results[ci]
		redisCPU, viaRedis := "-", "-"
		if c.redis != nil {
			redisCPU, viaRedis = fmt.Sprintf("%.1f", median(f.redisCPU)), fmt.Sprintf("%.0f%%", median(f.viaRedis))
		}
		report += fmt.Sprintf("%-27s %7.0f %7.0f %19.0f %17.1f %15s %15s\n", c.name, median(f.p50), median(f.p99), median(f.perReplica), median(f.cpu), redisCPU, viaRedis)
	}
	for _, c := range configs {
		if c.redis == nil {
			continue
		}
		report += fmt.Sprintf("%s: %.0f round trips (%s, all runs), p50 ≤ %s, p99 ≤ %s (bucket bounds); Redis errors %v (timeouts %v)\n",
			c.name, sumMetric(t, c.replicas, roundTripsMetric, nil), roundTripsMetric,
			histogramQuantile(t, c.replicas, roundTripsMetric, 0.50), histogramQuantile(t, c.replicas, roundTripsMetric, 0.99),
			redisErrors(t, c.replicas), sumMetric(t, c.replicas, "friendgate_velocity_redis_errors_total", map[string]string{"reason": "timeout"}))
	}
	report += fmt.Sprintf("load average after: %s\n", loadAverage(t))

	t.Log("\n" + report)
	if path := os.Getenv("FRIENDGATE_E2E_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// measurePolicies is a blocklist, which every callback is checked against, and with
// limit > 0 limitPolicies' limit beside it.
func measurePolicies(limit int) string {
	blocklist := `
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: spam, namespace: e2e}
spec:
  blocklists:
    - {name: spammers, users: [spam_1], prefixes: [bot_], code: 38001, message: this account cannot add friends}
`
	if limit == 0 {
		return blocklist
	}
	return blocklist + "---" + limitPolicies(limit)
}

// loadResult is what sendLoad saw.
type loadResult struct {
	answered  int
	elapsed   time.Duration
	latencies []time.Duration
}

// sendLoad sends n OpenIM friend requests from each of callers callers at once, each
// request from a sender of its own (prefix_w_i), and checks that every answer allows it.
// Caller w sends to replica w mod R; a single caller sends round-robin.
func sendLoad(t *testing.T, replicas []*server, callers, n int, prefix string) loadResult {
	t.Helper()
	var (
		mu  sync.Mutex
		res loadResult
		wg  sync.WaitGroup
	)
	start := time.Now()
	for w := range callers {
		wg.Go(func() {
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer c.CloseIdleConnections()
			latencies := make([]time.Duration, 0, n)
			for i := range n {
				s := replicas[w%len(replicas)]
				if callers == 1 {
					s = replicas[i%len(replicas)]
				}
				begin := time.Now()
				status, answer, err := post(c, s, openIMPath(openIMAdd), openIMAddFriend(fmt.Sprintf("%s_%d_%d", prefix, w, i), "bob", "hello"))
				latencies = append(latencies, time.Since(begin))
				if err != nil || status != http.StatusOK || answer != openIMContinue {
					t.Errorf("%d %s %v, want 200 %s", status, answer, err, openIMContinue)
					return
				}
			}
			mu.Lock()
			res.latencies = append(res.latencies, latencies...)
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.answered = len(res.latencies)
	return res
}

// userHZ is the unit of utime and stime in /proc/PID/stat (USER_HZ, 100 on Linux).
const userHZ = 100

// procCPU is the CPU time a process has used: utime plus stime of /proc/PID/stat.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name, field 2, is in parentheses and may hold spaces: count from after
	// it. utime and stime are fields 14 and 15, 12 and 13 after the name.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			t.Fatalf("/proc/%d/stat: %v", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ
}

// cpuTimes is the CPU time the replicas have used together.
func cpuTimes(t *testing.T, replicas []*server) time.Duration {
	t.Helper()
	var total time.Duration
	for _, s := range replicas {
		total += procCPU(t, s.cmd.Process.Pid)
	}
	return total
}

// histogramQuantile is the upper bound of the first bucket of the replicas' histogram
// name (summed) that holds the quantile q of its observations.
func histogramQuantile(t *testing.T, replicas []*server, name string, q float64) string {
	t.Helper()
	counts := map[float64]uint64{}
	var total uint64
	for _, s := range replicas {
		for _, m := range s.families(t)[name].GetMetric() {
			h := m.GetHistogram()
			total += h.GetSampleCount()
			for _, b := range h.GetBucket() {
				counts[b.GetUpperBound()] += b.GetCumulativeCount()
			}
		}
	}
	if total == 0 {
		return "-"
	}
	bounds := slices.Sorted(maps.Keys(counts))
	for _, b := range bounds {
		if float64(counts[b]) >= q*float64(total) {
			return time.Duration(b * float64(time.Second)).String()
		}
	}
	return fmt.Sprintf("> %s", time.Duration(bounds[len(bounds)-1]*float64(time.Second)))
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(math.Ceil(p*float64(len(s))))-1)]
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func loadAverage(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(data))[:3], " ")
}

func redisVersion(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("redis-server", "--version").Output()
	if err != nil {
		t.Fatalf("redis-server --version: %v (make redis-server installs it)", err)
	}
	return strings.TrimSpace(string(out))
}
