package velocity

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	testingclock "k8s.io/utils/clock/testing"
)

// testBudget is the budget of the tests that check counting, not timeouts: generous,
// so that a busy test machine does not send their Takes to the fallback.
const testBudget = time.Second

// logLines records a logger's lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, prefix+" "+args)
	}, funcr.Options{})
}

func (l *logLines) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// newTestRedis returns a RedisCounter of srv with the given options completed, closed
// when the test ends.
func newTestRedis(t testing.TB, srv *redisServer, opts RedisOptions) *RedisCounter {
	t.Helper()
	opts.Addr = srv.addr()
	if opts.Budget == 0 {
		opts.Budget = testBudget
	}
	c, err := NewRedis(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// runCounter runs c.Run until the test ends.
func runCounter(t *testing.T, c *RedisCounter) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func roundTrips(t *testing.T, c *RedisCounter) uint64 {
	t.Helper()
	var m dto.Metric
	if err := c.duration.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

func TestRedisTake(t *testing.T) {
	srv := startRedis(t)
	for i, tc := range takeCases() {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestRedis(t, srv, RedisOptions{KeyPrefix: fmt.Sprintf("take%d:", i)})
			runSteps(t, tc.limit, tc.steps, c.Take)
			if c.Mode() != Shared {
				t.Fatalf("Mode() = %v, want Shared", c.Mode())
			}
		})
	}
}

// TestRedisReplicas counts one subject through several counters, as replicas would.
func TestRedisReplicas(t *testing.T) {
	srv := startRedis(t)
	for _, replicas := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d replicas", replicas), func(t *testing.T) {
			prefix := fmt.Sprintf("replicas%d:", replicas)
			cs := make([]*RedisCounter, replicas)
			for i := range cs {
				cs[i] = newTestRedis(t, srv, RedisOptions{KeyPrefix: prefix})
			}
			l := &Limit{ID: "ns/p/l", Rate: 5, Window: time.Minute, Penalty: 10 * time.Minute}
			take := func(at time.Duration, n int) (counted, over, penalized int) {
				for i := range n {
					switch cs[i%replicas].Take(l, alice, t0.Add(at)) {
					case Counted:
						counted++
					case Over:
						over++
					case Penalized:
						penalized++
					}
				}
				return
			}
			if counted, over, penalized := take(0, 30); counted != 5 || over != 1 || penalized != 24 {
				t.Fatalf("30 requests at once: %d counted, %d over, %d penalized; want 5, 1, 24", counted, over, penalized)
			}
			// Every replica refuses during the penalty, whether it saw the Over or not.
			if counted, _, penalized := take(10*time.Minute-time.Millisecond, replicas); counted != 0 || penalized != replicas {
				t.Fatalf("just before the penalty ends: %d counted, %d penalized; want 0, %d", counted, penalized, replicas)
			}
			if counted, over, _ := take(10*time.Minute, 10); counted != 5 || over != 1 {
				t.Fatalf("when the penalty ends: %d counted, %d over; want 5, 1", counted, over)
			}
			for _, c := range cs {
				if c.Mode() != Shared {
					t.Fatalf("Mode() = %v, want Shared", c.Mode())
				}
			}
		})
	}
}

// TestRedisOvershoot measures what the package documentation states: with Redis
// healthy, replicas together count exactly Rate; each counting alone, R × Rate.
func TestRedisOvershoot(t *testing.T) {
	const replicas, requests, rate = 3, 1000, 100
	for _, tc := range []struct {
		name        string
		redisDown   bool
		wantCounted int64
	}{
		{"Redis healthy", false, rate},
		{"Redis down", true, replicas * rate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startRedis(t)
			if tc.redisDown {
				srv.stop()
			}
			l := &Limit{ID: "ns/p/l", Rate: rate, Window: time.Hour}
			var counted atomic.Int64
			var wg sync.WaitGroup
			for r := range replicas {
				c := newTestRedis(t, srv, RedisOptions{})
				n := requests / replicas
				if r < requests%replicas {
					n++
				}
				wg.Go(func() {
					for range n {
						if c.Take(l, alice, t0) == Counted {
							counted.Add(1)
						}
					}
				})
			}
			wg.Wait()
			t.Logf("%d replicas, %d requests of one subject at a limit of %d: %d counted", replicas, requests, rate, counted.Load())
			if counted.Load() != tc.wantCounted {
				t.Fatalf("%d counted, want %d", counted.Load(), tc.wantCounted)
			}
		})
	}
}

func TestRedisKeysExpire(t *testing.T) {
	srv := startRedis(t)
	c := newTestRedis(t, srv, RedisOptions{})
	rc := srv.client("")
	defer rc.Close()
	l := &Limit{ID: "ns/p/l", Rate: 2, Window: time.Minute, Penalty: time.Hour}
	k := makeKey(l, alice)
	ttl := func() time.Duration {
		t.Helper()
		d, err := rc.PTTL(t.Context(), c.key(&k)).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	c.Take(l, alice, t0)
	// The key lives until the allowance is whole again: one interval after one request.
	if d := ttl(); d <= 29*time.Second || d > 30*time.Second {
		t.Fatalf("after one request: PTTL %v, want 30s (less the time since)", d)
	}
	c.Take(l, alice, t0)
	c.Take(l, alice, t0)
	if d := ttl(); d <= 59*time.Minute || d > time.Hour {
		t.Fatalf("once penalized: PTTL %v, want the penalty, 1h (less the time since)", d)
	}
}

func TestRedisCachesRefusals(t *testing.T) {
	srv := startRedis(t)
	c := newTestRedis(t, srv, RedisOptions{Registerer: prometheus.NewPedanticRegistry()})
	l := &Limit{ID: "ns/p/l", Rate: 2, Window: 2 * time.Second}
	runSteps(t, *l, []step{{s: alice, want: Counted}, {s: alice, want: Counted}, {s: alice, want: Over}}, c.Take)
	before := roundTrips(t, c)
	// Refused until one interval has passed, without asking Redis.
	runSteps(t, *l, repeat(5, step{at: time.Second - time.Microsecond, s: alice, want: Over}), c.Take)
	if got := roundTrips(t, c) - before; got != 0 {
		t.Fatalf("refusals from the cache took %d round trips, want 0", got)
	}
	if got := testutil.ToFloat64(c.cacheAnswers); got != 5 {
		t.Fatalf("friendgate_velocity_redis_cache_refusals_total = %v, want 5", got)
	}
	runSteps(t, *l, []step{{at: time.Second, s: alice, want: Counted}}, c.Take)
	if got := roundTrips(t, c) - before; got != 1 {
		t.Fatalf("after the refusal's time: %d round trips, want 1", got)
	}
}

// TestRedisFailover kills Redis: the counter counts alone, says so once, and counts
// shared again once Redis answers, restarted empty.
func TestRedisFailover(t *testing.T) {
	srv := startRedis(t)
	clk := testingclock.NewFakeClock(t0)
	var logs logLines
	reg := prometheus.NewPedanticRegistry()
	c := newTestRedis(t, srv, RedisOptions{Clock: clk, Logger: logs.logger(), Registerer: reg})
	runCounter(t, c)
	l := &Limit{ID: "ns/p/l", Rate: 3, Window: time.Minute}
	metric := func(name string, labels ...string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				if len(labels) == 0 || len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == labels[0] {
					return m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	wantState := func(mode Mode, shared float64) {
		t.Helper()
		if c.Mode() != mode {
			t.Fatalf("Mode() = %v, want %v", c.Mode(), mode)
		}
		if got := metric("friendgate_velocity_shared"); got != shared {
			t.Fatalf("friendgate_velocity_shared = %v, want %v", got, shared)
		}
	}

	runSteps(t, *l, []step{{s: alice, want: Counted}}, c.Take)
	wantState(Shared, 1)

	srv.stop()
	// The first Take finds Redis gone; it and the next count in the fallback, which
	// knows nothing of the request counted in Redis.
	runSteps(t, *l, concat(repeat(3, step{s: alice, want: Counted}), repeat(5, step{s: alice, want: Over})), c.Take)
	wantState(Local, 0)
	if got := metric("friendgate_velocity_redis_errors_total", "error"); got != 1 {
		t.Fatalf("friendgate_velocity_redis_errors_total{reason=error} = %v, want 1: only the first Take asks Redis", got)
	}
	if lines := logs.get(); len(lines) != 1 || !strings.Contains(lines[0], "Redis failed") {
		t.Fatalf("logs: %q, want one line saying Redis failed", lines)
	}

	if err := srv.start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		clk.Step(time.Second)
		return c.Mode() == Shared
	}, "a probe to find Redis back")
	wantState(Shared, 1)
	if lines := logs.get(); len(lines) != 2 || !strings.Contains(lines[1], "Redis answers again") {
		t.Fatalf("logs: %q, want a second line saying Redis answers again", lines)
	}
	// Redis restarted empty: counting starts over.
	runSteps(t, *l, concat(repeat(3, step{s: alice, want: Counted}), []step{{s: alice, want: Over}}), c.Take)
}

// TestRedisStalled stops Redis (SIGSTOP): a Take gives up at the budget and counts in
// the fallback; the counter keeps asking Redis until maxTimeoutsInARow Takes in a row
// timed out, then counts locally.
func TestRedisStalled(t *testing.T) {
	srv := startRedis(t)
	c := newTestRedis(t, srv, RedisOptions{Budget: 100 * time.Millisecond})
	l := &Limit{ID: "ns/p/l", Rate: 10, Window: time.Minute}
	runSteps(t, *l, []step{{s: alice, want: Counted}}, c.Take)
	srv.signal(syscall.SIGSTOP)
	for i := 1; i <= maxTimeoutsInARow; i++ {
		runSteps(t, *l, []step{{s: alice, want: Counted}}, c.Take)
		if got := testutil.ToFloat64(c.timeouts); got != float64(i) {
			t.Fatalf("after %d stalled Takes: friendgate_velocity_redis_errors_total{reason=timeout} = %v, want %d", i, got, i)
		}
		want := Shared
		if i == maxTimeoutsInARow {
			want = Local
		}
		if c.Mode() != want {
			t.Fatalf("after %d stalled Takes: Mode() = %v, want %v", i, c.Mode(), want)
		}
	}
	if got := testutil.ToFloat64(c.errorsOther); got != 0 {
		t.Fatalf("friendgate_velocity_redis_errors_total{reason=error} = %v, want 0", got)
	}
}

func TestRedisPassword(t *testing.T) {
	const password = "s3cret-p4ss"
	srv := startRedis(t, "--requirepass", password)
	for _, tc := range []struct {
		name               string
		username, password string
		want               Mode
	}{
		{"password", "", password, Shared},
		{"ACL user and password", "default", password, Shared},
		{"wrong password", "", "wrong-p4ss", Local},
		{"no password", "", "", Local},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs logLines
			c := newTestRedis(t, srv, RedisOptions{Username: tc.username, Password: tc.password, Logger: logs.logger()})
			l := &Limit{ID: "ns/p/l", Rate: 3, Window: time.Minute}
			runSteps(t, *l, []step{{s: alice, want: Counted}}, c.Take)
			if c.Mode() != tc.want {
				t.Fatalf("Mode() = %v, want %v", c.Mode(), tc.want)
			}
			for _, line := range logs.get() {
				if strings.Contains(line, "p4ss") {
					t.Errorf("a log line shows the password: %s", line)
				}
			}
		})
	}
}

func TestRedisTLS(t *testing.T) {
	srv := startRedisTLS(t)
	for _, tc := range []struct {
		name string
		tls  *tls.Config
		want Mode
	}{
		{"TLS trusting the server's CA", srv.tls.client, Shared},
		{"TLS trusting the system's CAs only", &tls.Config{MinVersion: tls.VersionTLS12}, Local},
		{"plain TCP", nil, Local},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewRedis(RedisOptions{Addr: srv.addr(), TLS: tc.tls, Budget: testBudget})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			l := &Limit{ID: "ns/p/l", Rate: 1, Window: time.Minute}
			c.Take(l, alice, t0)
			if c.Mode() != tc.want {
				t.Fatalf("Mode() = %v, want %v", c.Mode(), tc.want)
			}
		})
	}
}

func TestRedisKey(t *testing.T) {
	c, err := NewRedis(RedisOptions{Addr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range []struct {
		l    string
		s    Subject
		want string
	}{
		{"ns/p/l", Subject{AppID: "1400000000", A: "alice"}, "friendgate:{1400000000}:ns/p/l:alice:"},
		{"ns/p/l", Subject{AppID: "app", A: "alice", B: "bob"}, "friendgate:{app}:ns/p/l:alice:bob"},
		{"ns/p/l", Subject{AppID: "app", A: "alice:bob"}, "friendgate:{app}:ns/p/l:alice%3Abob:"},
		{"ns/p/l", Subject{AppID: "a}p{p", A: "100%"}, "friendgate:{a%7Dp%7Bp}:ns/p/l:100%25:"},
		{"ns/p/l", Subject{AppID: "app", A: "::1", B: ""}, "friendgate:{app}:ns/p/l:%3A%3A1:"},
	} {
		k := makeKey(&Limit{ID: tc.l}, tc.s)
		if got := c.key(&k); got != tc.want {
			t.Errorf("key(%q, %+v) = %q, want %q", tc.l, tc.s, got, tc.want)
		}
	}
}

func TestNewRedisOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts RedisOptions
		want string
	}{
		{"no address", RedisOptions{}, "RedisOptions.Addr: empty"},
		{"hash tag in prefix", RedisOptions{Addr: "redis:6379", KeyPrefix: "fg{x}:"}, `RedisOptions.KeyPrefix: "fg{x}:" contains '{' or '}', which would break the keys' hash tag`},
		{"negative budget", RedisOptions{Addr: "redis:6379", Budget: -time.Millisecond}, "RedisOptions.Budget: -1ms is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewRedis(tc.opts)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("NewRedis: %v, want %s", err, tc.want)
			}
		})
	}
}

// TestRedisRestartUnderLoad kills and restarts Redis while callbacks keep counting:
// every Take answers, and the counter says each switch once and ends shared.
func TestRedisRestartUnderLoad(t *testing.T) {
	srv := startRedis(t)
	clk := testingclock.NewFakeClock(t0)
	var logs logLines
	c := newTestRedis(t, srv, RedisOptions{Clock: clk, Logger: logs.logger()})
	runCounter(t, c)
	l := &Limit{ID: "ns/p/l", Rate: 1000, Window: time.Second}

	stop := make(chan struct{})
	var takes, invalid atomic.Int64
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			s := Subject{AppID: "app1", A: fmt.Sprintf("user%d", g)}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if o := c.Take(l, s, t0.Add(time.Duration(i)*time.Millisecond)); o > Penalized {
					invalid.Add(1)
				}
				takes.Add(1)
			}
		})
	}
	// Let some Takes through in each phase; bounded waits, no timing assertions.
	waitTakes := func(n int64) {
		from := takes.Load()
		waitFor(t, func() bool { return takes.Load() >= from+n }, "%d more Takes", n)
	}
	waitTakes(100)
	srv.stop()
	waitTakes(100)
	if c.Mode() != Local {
		t.Fatalf("with Redis down: Mode() = %v, want Local", c.Mode())
	}
	if err := srv.start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		clk.Step(time.Second)
		return c.Mode() == Shared
	}, "a probe to find Redis back")
	waitTakes(100)
	close(stop)
	wg.Wait()

	if invalid.Load() != 0 {
		t.Fatalf("%d Takes returned no valid outcome", invalid.Load())
	}
	lines := logs.get()
	for i, line := range lines {
		want := []string{"Redis failed", "Redis answers again"}[i%2]
		if !strings.Contains(line, want) {
			t.Fatalf("log line %d: %q, want %q: switches alternate, one line each", i, line, want)
		}
	}
	if len(lines) < 2 {
		t.Fatalf("logs: %q, want a failure and a recovery", lines)
	}
	t.Logf("%d Takes, %d log lines", takes.Load(), len(lines))
}
