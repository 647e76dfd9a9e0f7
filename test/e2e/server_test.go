package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const (
	// startTimeout bounds the wait for a started server to answer its probes.
	startTimeout = 20 * time.Second
	// stopTimeout bounds the wait for exit after SIGTERM; it exceeds the default
	// --shutdown-timeout of 15 s.
	stopTimeout = 20 * time.Second
	// changeTimeout bounds the wait for a change on disk (policies, tokens) to take effect.
	changeTimeout = 10 * time.Second
	pollInterval  = 25 * time.Millisecond
)

// client talks to every server. Its timeout only guards against a hung test: answers take
// microseconds.
var client = &http.Client{Timeout: 10 * time.Second}

// server is one running `friendgate serve` process.
type server struct {
	addr string // host:port it serves callbacks on
	// metricsAddr is the host:port it serves /metrics on.
	metricsAddr string
	args        []string
	cmd         *exec.Cmd
	output      *syncBuffer   // stdout and stderr: the zap JSON log
	exited      chan struct{} // closed once the process has exited and cmd.ProcessState is set
}

// startServer starts friendgate serve on the policies and waits until /readyz says the
// policies are loaded. The process gets SIGTERM at cleanup and must exit 0.
func startServer(t *testing.T, policies string, flags ...string) *server {
	t.Helper()
	s := launch(t, policies, flags...)
	s.waitStatus(t, "/readyz", http.StatusOK, startTimeout)
	return s
}

// launch starts `friendgate serve --policies DIR --addr 127.0.0.1:0 --metrics-bind-address 127.0.0.1:0 --client-detail Full FLAGS...` and waits
// until it answers /healthz, which it does before any policy is loaded. The process gets
// SIGTERM at cleanup and must exit 0.
func launch(t *testing.T, policies string, flags ...string) *server {
	t.Helper()
	s := spawn(t, policies, flags...)
	t.Cleanup(func() { s.stop(t) })
	s.waitListening(t)
	s.waitStatus(t, "/healthz", http.StatusOK, startTimeout)
	return s
}

// spawn starts `friendgate serve --policies DIR --addr 127.0.0.1:0 --metrics-bind-address 127.0.0.1:0 --client-detail Full FLAGS...`. At cleanup
// it kills the process if it is still running and, if the test failed, logs its output.
func spawn(t *testing.T, policies string, flags ...string) *server {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped in -short mode")
	}
	// Port 0: the kernel picks free ports, so parallel tests cannot race for them; the
	// server logs the addresses it got (see waitListening).
	// --client-detail Full puts the deciding entry in OpenIM answers, which most tests
	// check; TestClientDetail checks the default. A later flag overrides it.
	s := &server{
		args:   append([]string{"serve", "--policies", policies, "--addr", "127.0.0.1:0", "--metrics-bind-address", "127.0.0.1:0", "--client-detail", "Full"}, flags...),
		output: new(syncBuffer),
		exited: make(chan struct{}),
	}
	s.cmd = exec.Command(friendgateBinary(t), s.args...)
	s.cmd.Stdout, s.cmd.Stderr = s.output, s.output
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting friendgate %s: %v", strings.Join(s.args, " "), err)
	}
	go func() {
		_ = s.cmd.Wait() // the exit status is read from cmd.ProcessState
		close(s.exited)
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill() // fails only once it has exited
		<-s.exited
		if t.Failed() {
			t.Logf("output of friendgate %s:\n%s", strings.Join(s.args, " "), s.output)
		}
	})
	return s
}

// waitListening waits for the log lines saying where the server listens and sets s.addr
// and s.metricsAddr.
func (s *server) waitListening(t *testing.T) {
	t.Helper()
	s.eventually(t, startTimeout, "the server logs where it listens", func() (bool, string) {
		for _, e := range s.logEntries() {
			if addr, ok := e["addr"].(string); ok {
				switch e["msg"] {
				case "serving callbacks":
					s.addr = addr
				case "serving metrics":
					s.metricsAddr = addr
				}
			}
		}
		if s.addr == "" || s.metricsAddr == "" {
			return false, fmt.Sprintf("callbacks on %q, metrics on %q", s.addr, s.metricsAddr)
		}
		return true, ""
	})
}

// terminate sends SIGTERM, as Kubernetes does to stop a pod.
func (s *server) terminate(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("sending SIGTERM to friendgate: %v", err)
	}
}

// waitExit waits for the process to exit and fails the test unless it exits 0.
func (s *server) waitExit(t *testing.T) {
	t.Helper()
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill() // fails only once it has exited
		<-s.exited
		t.Errorf("friendgate did not exit within %s of SIGTERM; killed it", stopTimeout)
		return
	}
	if !s.cmd.ProcessState.Success() {
		t.Errorf("friendgate ended with %s after SIGTERM, want exit status 0", s.cmd.ProcessState)
	}
}

// stop sends SIGTERM and checks that the process exits 0. It may be called again once the
// process has exited.
func (s *server) stop(t *testing.T) {
	t.Helper()
	s.terminate(t)
	s.waitExit(t)
}

// eventually calls check every pollInterval until it reports done, and fails the test with
// what and check's last report once timeout has passed or the process has exited. (The
// process's output is logged at cleanup.)
func (s *server) eventually(t *testing.T, timeout time.Duration, what string, check func() (done bool, last string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done, last := check()
		if done {
			return
		}
		select {
		case <-s.exited:
			t.Fatalf("friendgate ended (%s) while waiting until %s; last: %s", s.cmd.ProcessState, what, last)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s until %s; last: %s", timeout, what, last)
		}
		time.Sleep(pollInterval)
	}
}

// waitStatus waits until GET path answers want.
func (s *server) waitStatus(t *testing.T, path string, want int, timeout time.Duration) {
	t.Helper()
	s.eventually(t, timeout, fmt.Sprintf("GET %s answers %d", path, want), func() (bool, string) {
		resp, err := client.Get("http://" + s.addr + path)
		if err != nil {
			return false, err.Error()
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == want, fmt.Sprintf("%d %q", resp.StatusCode, body)
	})
}

// get fetches path and returns its status and body.
func (s *server) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := client.Get("http://" + s.addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

// logEntries returns the JSON log lines the process has written so far.
func (s *server) logEntries() []map[string]any {
	var entries []map[string]any
	for line := range strings.Lines(s.output.String()) {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) == nil {
			entries = append(entries, e)
		}
	}
	return entries
}

// waitLog waits for a log line holding every field of want (compared as fmt.Sprint of the
// decoded JSON value) and returns it.
func (s *server) waitLog(t *testing.T, want map[string]string) map[string]any {
	t.Helper()
	var found map[string]any
	s.eventually(t, changeTimeout, fmt.Sprintf("a log line has %v", want), func() (bool, string) {
		for _, e := range s.logEntries() {
			if hasFields(e, want) {
				found = e
				return true, ""
			}
		}
		return false, "no such line"
	})
	return found
}

func hasFields(entry map[string]any, want map[string]string) bool {
	for k, v := range want {
		got, ok := entry[k]
		if !ok || fmt.Sprint(got) != v {
			return false
		}
	}
	return true
}

// scrapeClient scrapes /metrics on a connection of its own that it closes, so that a
// scrape leaves no connection open to count against the server's limits.
var scrapeClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// metric scrapes /metrics and sums the series of family name whose labels include labels:
// counter and gauge values, or for a histogram its number of observations. A family or
// series that does not exist counts 0.
func (s *server) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	var sum float64
	for _, m := range s.families(t)[name].GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// families scrapes /metrics and returns its metric families by name.
func (s *server) families(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := scrapeClient.Get("http://" + s.metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d, %v; want 200", resp.StatusCode, err)
	}
	text := string(data)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return families
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	matched := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			matched++
		}
	}
	return matched == len(want)
}

// checkMetric checks that name{labels} sums to want.
func (s *server) checkMetric(t *testing.T, name string, labels map[string]string, want float64) {
	t.Helper()
	if got := s.metric(t, name, labels); got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

// syncBuffer collects the process output, which exec copies from its own goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// writePolicies writes manifests into a new directory and returns the directory.
func writePolicies(t *testing.T, manifests string) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "policies.yaml"), manifests)
	return dir
}

// writeFile replaces a file's content atomically, as a Kubernetes volume update or a
// careful editor does, so a watcher never reads it half written. The temporary name starts
// with a dot, which friendgate ignores in policy and token directories.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestMetricsPort: /metrics is served on --metrics-bind-address only, so a callback port
// exposed to the IM servers (Tencent calls from the internet) does not expose the
// metrics; the metrics port serves nothing else.
func TestMetricsPort(t *testing.T) {
	t.Parallel()
	s := startServer(t, writePolicies(t, protocolPolicies))
	if status, body := s.get(t, "/metrics"); status != http.StatusNotFound {
		t.Errorf("GET /metrics on the callback port: %d %.200q, want 404", status, body)
	}
	if got := s.metric(t, "friendgate_snapshot_policies", nil); got < 1 {
		t.Errorf("friendgate_snapshot_policies on the metrics port = %v, want at least 1", got)
	}
	for _, path := range []string{"/openim/callbackBeforeAddFriendCommand", "/healthz"} {
		resp, err := client.Get("http://" + s.metricsAddr + path)
		if err != nil {
			t.Fatalf("GET %s on the metrics port: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s on the metrics port: %d, want 404", path, resp.StatusCode)
		}
	}
}
