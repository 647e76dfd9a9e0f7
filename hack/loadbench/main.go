// Command loadbench is `make measure-load`: it measures the callback path over loopback as
// callbacks per server CPU-second, for friendgate serve and, in the same invocation, for a
// no-op net/http handler (hack/noopserver) given the same requests. The servers run pinned
// to one core and wrk to another (taskset); a server's CPU time comes from /proc/PID/stat
// before and after each run, so the figure does not depend on what else the machine is
// doing, only on what the server spends per callback. Both servers stay up through a case
// and take the load in alternating slices of a second, so that a shared host's changing
// speed weighs on both alike rather than on whichever ran in a slow minute.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of utime and stime in /proc/PID/stat (USER_HZ, 100 on Linux).
const userHZ = 100

type request struct {
	name, target, body string
}

var (
	openIM = request{"OpenIM 1 item", "/openim/callbackBeforeAddFriendCommand",
		`{"callbackCommand":"callbackBeforeAddFriendCommand","fromUserID":"alice_12345","toUserID":"bob_67890","reqMsg":"hello, we met at the conference yesterday","ex":""}`}
	tencent1 = request{"Tencent 1 item", "/tencent?SdkAppid=1400000001&CallbackCommand=Sns.CallbackPrevFriendAdd&contenttype=json&ClientIP=198.51.100.7&OptPlatform=Android",
		`{"CallbackCommand":"Sns.CallbackPrevFriendAdd","Requester_Account":"alice_12345","From_Account":"alice_12345","FriendItem":[{"To_Account":"bob_67890","Remark":"Bob","GroupName":"work","AddSource":"AddSource_Type_QR","AddWording":"hello, we met at the conference yesterday"}],"AddType":"Add_Type_Both","ForceAddFlags":0,"EventTime":1669872112000}`}
	tencent10 = request{"Tencent 10 items", tencent1.target,
		`{"CallbackCommand":"Sns.CallbackPrevFriendAdd","Requester_Account":"alice_12345","From_Account":"alice_12345","FriendItem":[` +
			`{"To_Account":"u_0","AddWording":"hi"},{"To_Account":"u_1","AddWording":"hi"},{"To_Account":"u_2","AddWording":"hi"},{"To_Account":"u_3","AddWording":"hi"},{"To_Account":"u_4","AddWording":"hi"},` +
			`{"To_Account":"u_5","AddWording":"hi"},{"To_Account":"u_6","AddWording":"hi"},{"To_Account":"u_7","AddWording":"hi"},{"To_Account":"u_8","AddWording":"hi"},{"To_Account":"u_9","AddWording":"hi"}],` +
			`"AddType":"Add_Type_Both","ForceAddFlags":0,"EventTime":1669872112000}`}
)

type options struct {
	friendgate, noop, wrk, samples string
	duration, slice, warmup        time.Duration
	serverCPU, clientCPU           int
	connections, rounds            int
	run                            string
	limits                         bool
}

func main() {
	var o options
	flag.StringVar(&o.friendgate, "friendgate", "bin/friendgate", "friendgate binary")
	flag.StringVar(&o.noop, "noop", "bin/noopserver", "no-op server binary (hack/noopserver)")
	flag.StringVar(&o.wrk, "wrk", "wrk", "wrk binary")
	flag.StringVar(&o.samples, "samples", "config/samples", "directory of the sample FriendPolicies")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measured load per server and round")
	flag.DurationVar(&o.slice, "slice", time.Second, "length of each turn of load (whole seconds); the servers alternate turns until each has had --duration")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each case")
	flag.IntVar(&o.serverCPU, "server-cpu", 0, "core the server is pinned to")
	flag.IntVar(&o.clientCPU, "client-cpu", 1, "core wrk is pinned to")
	flag.IntVar(&o.connections, "connections", 16, "wrk's keep-alive connections")
	flag.IntVar(&o.rounds, "rounds", 5, "runs of each case (the machine's noise: the report gives medians)")
	flag.StringVar(&o.run, "run", "", "only the cases whose \"policies / callback\" matches this regular expression")
	flag.BoolVar(&o.limits, "with-limits", false, "keep the samples' request limits, which the cases leave out: one sender's callbacks back to back are then a flood, and each is a would-deny per limit")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	dir, err := os.MkdirTemp("", "loadbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sets := []struct {
		name   string
		global int
	}{{"samples", 0}, {"samples + 10 global", 10}, {"samples + 1,000 global", 1000}}
	cases := []struct {
		set    int
		req    request
		target float64
	}{
		{0, openIM, 0.8}, {0, tencent1, 0.8}, {0, tencent10, 0.5},
		{1, openIM, 0.8}, {1, tencent1, 0.8},
		{2, openIM, 0.8}, {2, tencent1, 0.8},
	}

	only, err := regexp.Compile(o.run)
	if err != nil {
		return fmt.Errorf("--run: %w", err)
	}
	if o.slice < time.Second || o.slice%time.Second != 0 || o.duration < o.slice {
		return errors.New("--slice must be whole seconds, at least 1s, and --duration at least --slice")
	}
	if o.rounds < 1 {
		return errors.New("--rounds must be at least 1")
	}
	turns := int(o.duration / o.slice)
	fmt.Printf("loadbench: %d turns of %s per server and round after %s warm-up, servers on core %d, wrk on core %d (-t1 -c%d), %d rounds\n",
		turns, o.slice, o.warmup, o.serverCPU, o.clientCPU, o.connections, o.rounds)
	fmt.Println("Both servers run through a case and take the same requests in alternating turns; a round's figure sums its turns, the table gives medians over the rounds.")
	if o.limits {
		fmt.Println("With the samples' request limits (--with-limits): after the first few callbacks every one is a would-deny per limit.")
	}
	fmt.Println()
	fmt.Println("| policies | callback | friendgate callbacks/CPU-s | no-op callbacks/CPU-s | ratio (median, range) | 95 % CI of the median | target |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|")
	for _, c := range cases {
		set := sets[c.set]
		if !only.MatchString(set.name + " / " + c.req.name) {
			continue
		}
		policies := filepath.Join(dir, fmt.Sprintf("policies-%d", set.global))
		if err := writePolicies(policies, o.samples, set.global, o.limits); err != nil {
			return err
		}
		fg, noop, ratios, err := measureCase(o, dir, c.req, policies, turns)
		if err != nil {
			return fmt.Errorf("%s, %s: %w", set.name, c.req.name, err)
		}
		slices.Sort(ratios)
		ci := "– (fewer than 6 rounds)"
		if lo, hi, ok := medianCI(ratios); ok {
			ci = fmt.Sprintf("%.3f–%.3f", lo, hi)
		}
		fmt.Printf("| %s | %s | %.0f | %.0f | %.2f (%.2f–%.2f) | %s | ≥ %.1f |\n", set.name, c.req.name, median(fg), median(noop),
			median(ratios), ratios[0], ratios[len(ratios)-1], ci, c.target)
	}
	return nil
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	return s[len(s)/2]
}

// medianCI is a distribution-free confidence interval of at least 95 % for the median of
// the population sorted was drawn from: its k-th smallest and k-th largest values, for
// the largest k such that fewer than k of n draws fall below the median with probability
// at most 2.5 % (binomial, p = 1/2). The rounds' ratios are not normal (a slow minute on a
// shared host gives outliers), so no mean and standard deviation. ok is false below six
// rounds, too few for any such interval.
func medianCI(sorted []float64) (lo, hi float64, ok bool) {
	n := len(sorted)
	// below is P(X < k) for X ~ Binomial(n, 1/2).
	k, below := 0, 0.0
	for k < n/2 {
		p := binomialHalf(n, k)
		if below+p > 0.025 {
			break
		}
		below += p
		k++
	}
	if k == 0 {
		return 0, 0, false
	}
	return sorted[k-1], sorted[n-k], true
}

// binomialHalf is P(X = k) for X ~ Binomial(n, 1/2), through logarithms so that no
// factor underflows however many rounds there are.
func binomialHalf(n, k int) float64 {
	lg := func(x int) float64 { v, _ := math.Lgamma(float64(x + 1)); return v }
	return math.Exp(lg(n) - lg(k) - lg(n-k) - float64(n)*math.Ln2)
}

// measureCase starts the no-op server and friendgate (serving policies), and returns, for
// each round, the callbacks per CPU-second of each and their ratio. Each round is turns
// turns of o.slice per server, the servers alternating and the order of each pair flipping
// from one to the next.
func measureCase(o options, dir string, req request, policies string, turns int) (fg, noop, ratios []float64, err error) {
	servers := make([]*server, 2)
	for i, args := range [][]string{{o.noop}, {o.friendgate, "serve", "--policies", policies, "--metrics-bind-address", "0"}} {
		s, err := start(o, args[0], args[1:]...)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", filepath.Base(args[0]), err)
		}
		defer s.stop()
		servers[i] = s
	}
	script := filepath.Join(dir, "post.lua")
	lua := fmt.Sprintf("wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json; charset=utf-8\"\nwrk.body = [==[%s]==]\n", req.body)
	if err := os.WriteFile(script, []byte(lua), 0o600); err != nil {
		return nil, nil, nil, err
	}
	for _, s := range servers {
		if err := check(s.base, req); err != nil {
			return nil, nil, nil, err
		}
		if _, err := load(o, script, s.base+req.target, o.warmup); err != nil {
			return nil, nil, nil, err
		}
	}
	for r := range o.rounds {
		var callbacks, ticks [2]int64
		for t := range turns {
			for k := range 2 {
				i := k
				if (r*turns+t)%2 == 1 {
					i = 1 - k
				}
				n, used, err := servers[i].turn(o, script, req)
				if err != nil {
					return nil, nil, nil, err
				}
				callbacks[i] += n
				ticks[i] += used
			}
		}
		if ticks[0] == 0 || ticks[1] == 0 {
			return nil, nil, nil, errors.New("a server used no measurable CPU time")
		}
		n := float64(callbacks[0]) / (float64(ticks[0]) / userHZ)
		f := float64(callbacks[1]) / (float64(ticks[1]) / userHZ)
		noop, fg, ratios = append(noop, n), append(fg, f), append(ratios, f/n)
	}
	return fg, noop, ratios, nil
}

// server is a server under measurement, pinned to the server core.
type server struct {
	cmd  *exec.Cmd
	base string
	stop func()
}

// start starts bin with args and waits until it listens (and, for friendgate, is ready).
func start(o options, bin string, args ...string) (*server, error) {
	ctx, cancel := context.WithCancel(context.Background())
	args = append(args, "--addr", "127.0.0.1:0")
	cmd := exec.CommandContext(ctx, "taskset", append([]string{"-c", strconv.Itoa(o.serverCPU), bin}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	s := &server{cmd: cmd, stop: func() {
		cancel()
		_ = cmd.Wait()
	}}
	addr, err := listenAddr(out)
	if err != nil {
		s.stop()
		return nil, err
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	s.base = "http://" + addr
	if err := waitReady(s.base, bin == o.noop); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// turn loads s with req from wrk pinned to the client core for one slice, and returns the
// callbacks s answered and the CPU ticks it used meanwhile.
func (s *server) turn(o options, script string, req request) (callbacks, ticks int64, err error) {
	before, err := cpuTicks(s.cmd.Process.Pid)
	if err != nil {
		return 0, 0, err
	}
	n, err := load(o, script, s.base+req.target, o.slice)
	if err != nil {
		return 0, 0, err
	}
	after, err := cpuTicks(s.cmd.Process.Pid)
	if err != nil {
		return 0, 0, err
	}
	return n, after - before, nil
}

// listenAddr reads the address a server listens on from its output: noopserver prints it,
// friendgate logs it ("serving callbacks").
func listenAddr(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	logged := regexp.MustCompile(`"msg":"serving callbacks".*"addr":"([^"]+)"`)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "127.0.0.1:") {
			return line, nil
		}
		if m := logged.FindStringSubmatch(line); m != nil {
			return m[1], nil
		}
	}
	return "", fmt.Errorf("the server exited before listening: %v", sc.Err())
}

func waitReady(base string, noop bool) error {
	if noop {
		return nil
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("not ready within a minute")
}

// check sends req once: a case that answers an error would measure the wrong path.
func check(base string, req request) error {
	resp, err := http.Post(base+req.target, "application/json; charset=utf-8", strings.NewReader(req.body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d: %s", req.target, resp.StatusCode, body)
	}
	return nil
}

var wrkRequests = regexp.MustCompile(`(\d+) requests in`)

// load runs wrk for d and returns how many requests it completed; any non-2xx answer or
// socket error is an error.
func load(o options, script, url string, d time.Duration) (int64, error) {
	out, err := exec.Command("taskset", "-c", strconv.Itoa(o.clientCPU), o.wrk, "-t1", "-c"+strconv.Itoa(o.connections),
		"-d"+strconv.Itoa(int(d.Seconds()))+"s", "-s", script, url).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("wrk: %v: %s", err, out)
	}
	if strings.Contains(string(out), "Non-2xx") || strings.Contains(string(out), "Socket errors") {
		return 0, fmt.Errorf("wrk saw errors:\n%s", out)
	}
	m := wrkRequests.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no request count in wrk's output:\n%s", out)
	}
	return strconv.ParseInt(string(m[1]), 10, 64)
}

// cpuTicks is a process's user + system CPU time in USER_HZ ticks, from /proc/PID/stat.
func cpuTicks(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name (which may hold spaces) start with the state,
	// field 3; utime and stime are fields 14 and 15.
	_, rest, ok := strings.Cut(string(data), ") ")
	fields := strings.Fields(rest)
	if !ok || len(fields) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, data)
	}
	utime, err := strconv.ParseInt(fields[11], 10, 64)
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseInt(fields[12], 10, 64)
	if err != nil {
		return 0, err
	}
	return utime + stime, nil
}

// writePolicies writes the sample FriendPolicies to dir (the request limits only when
// limits is set), and n global policies that apply to every request, each with its own
// users, prefix, whole-ID pattern, wording pattern and guarded CEL rule (as the engine's
// BenchmarkDecideGlobalPolicies).
func writePolicies(dir, samples string, n int, limits bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(samples, "friendgate_v1alpha1_friendpolicy_*.yaml"))
	if err != nil {
		return err
	}
	for _, f := range files {
		// The same request sent back to back from one user is what a request limit
		// exists to flag: every callback would be a logged would-deny. The limits' own
		// cost is measured by the counters' benchmarks (docs/benchmarks.md), and the
		// flood by --with-limits.
		if !limits && strings.HasSuffix(f, "_limits.yaml") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o600); err != nil {
			return err
		}
	}
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, `---
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: global-%[1]d, namespace: load}
spec:
  blocklists:
  - {name: spammers, users: [spammer_%[1]d_1, spammer_%[1]d_2], prefixes: [bot%[1]d_], patterns: ['camp%[1]d_[0-9]+']}
  rules:
  - {name: links, wordingPatterns: ['promo%[1]d\.example']}
  - {name: guests, when: "request.from.startsWith('guest%[1]d_') && !request.forceAdd"}
`, i)
	}
	return os.WriteFile(filepath.Join(dir, "global.yaml"), []byte(sb.String()), 0o600)
}
