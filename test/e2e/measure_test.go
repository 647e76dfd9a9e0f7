package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMeasureHostile measures one replica under a flood of slow bodies: rounds of
// connections that each announce a 1 MiB body and send 8 KiB of it, while honest callers
// keep calling. It reports the replica's resident memory (after the rounds and at its
// peak) and the latency of the honest callbacks. It is a measurement, not a test: run it
// with `make measure-hostile` (FRIENDGATE_E2E_HOSTILE=1); the figures go to
// docs/benchmarks.md. FRIENDGATE_E2E_BINARY measures another build (e.g. an older one)
// the same way.
func TestMeasureHostile(t *testing.T) {
	if os.Getenv("FRIENDGATE_E2E_HOSTILE") == "" {
		t.Skip("measurement: set FRIENDGATE_E2E_HOSTILE=1 (make measure-hostile)")
	}
	const (
		rounds    = 4
		conns     = 1000
		announced = 1 << 20
		sent      = 8 << 10
		// hold is how long each round's connections stay open after sending: the server
		// reads the 8 KiB within milliseconds, so the memory is taken by then.
		hold    = 3 * time.Second
		workers = 4
	)
	if bin := os.Getenv("FRIENDGATE_E2E_BINARY"); bin != "" {
		buildOnce.Do(func() { binPath = bin })
	}
	s := startServer(t, writePolicies(t, protocolPolicies))
	pid := s.cmd.Process.Pid
	before := procStatus(t, pid, "VmRSS")

	// Honest callers: a few keep-alive connections calling back to back, as an IM server's
	// connection pool does, from before the first round to after the last.
	honest := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	stop := make(chan struct{})
	var (
		mu        sync.Mutex
		latencies []time.Duration
		failures  []string
		wg        sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				from := "alice"
				if (i+w)%2 == 0 {
					from = "spam_1"
				}
				body := openIMAddFriend(from, "bob", "hello")
				start := time.Now()
				resp, err := honest.Post("http://"+s.addr+"/openim/callbackBeforeAddFriendCommand", "application/json", strings.NewReader(body))
				var answer []byte
				if err == nil {
					answer = make([]byte, 512)
					n, _ := resp.Body.Read(answer)
					answer = answer[:n]
					resp.Body.Close()
				}
				d := time.Since(start)
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, err.Error())
				case resp.StatusCode != http.StatusOK:
					failures = append(failures, fmt.Sprintf("%d %s", resp.StatusCode, answer))
				default:
					latencies = append(latencies, d)
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}

	header := fmt.Sprintf("POST /openim/callbackBeforeAddFriendCommand HTTP/1.1\r\nHost: friendgate\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", announced)
	payload := []byte(header + strings.Repeat(" ", sent))
	var dialErrors int
	for r := range rounds {
		open := make([]net.Conn, conns)
		var dials sync.WaitGroup
		for i := range conns {
			dials.Go(func() {
				c, err := net.DialTimeout("tcp", s.addr, 10*time.Second)
				if err != nil {
					return
				}
				if err := c.SetDeadline(time.Now().Add(time.Minute)); err != nil {
					c.Close()
					return
				}
				if _, err := c.Write(payload); err != nil {
					c.Close()
					return
				}
				open[i] = c
			})
		}
		dials.Wait()
		time.Sleep(hold)
		peakRound := procStatus(t, pid, "VmRSS")
		n := 0
		for _, c := range open {
			if c != nil {
				n++
				c.Close()
			}
		}
		dialErrors += conns - n
		t.Logf("round %d: %d connections held, RSS %s", r+1, n, mib(peakRound))
	}
	close(stop)
	wg.Wait()
	after := procStatus(t, pid, "VmRSS")
	peak := procStatus(t, pid, "VmHWM")

	slices.Sort(latencies)
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))]
	}
	report := fmt.Sprintf(`hostile measurement: %d rounds of %d connections announcing %d bytes and sending %d
RSS before: %s
RSS after the rounds: %s
RSS peak (VmHWM): %s
connections not established or not sent: %d
honest callbacks: %d answered 200, %d failed
honest latency: p50 %s, p99 %s, max %s
`, rounds, conns, announced, sent, mib(before), mib(after), mib(peak), dialErrors,
		len(latencies), len(failures), pct(0.50), pct(0.99), pct(1))
	if len(failures) > 0 {
		report += "first failures: " + strings.Join(failures[:min(5, len(failures))], "; ") + "\n"
	}
	t.Log("\n" + report)
	if path := os.Getenv("FRIENDGATE_E2E_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.waitStatus(t, "/healthz", http.StatusOK, startTimeout)
}

// procStatus reads a kB field of /proc/PID/status, in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s of %d: %q", field, pid, v)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
