package e2e

import (
	"fmt"
	"net/http"
	"testing"
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

// limitOutcomes are friendgate_limit_requests_total's labels for the test limit.
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
