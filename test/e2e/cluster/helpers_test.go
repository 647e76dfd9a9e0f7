package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/friendgate/friendgate/internal/testenv"
)

// process is a friendgate role running as a child process, its log kept in a file.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// start runs the friendgate binary with args; the process is stopped when the test ends.
func start(t *testing.T, name string, args ...string) *process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(args) > 0 && (args[0] == "webhook" || args[0] == "run") {
		if !slices.Contains(args, "--metrics-bind-address") {
			// The default port would be shared by the processes of parallel tests.
			args = append(args, "--metrics-bind-address", "127.0.0.1:0")
		}
		if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--metrics-secure") }) {
			// metricValue scrapes in plain HTTP; TestAllInOne scrapes the secured /metrics.
			args = append(args, "--metrics-secure=false")
		}
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			p.signal(syscall.SIGKILL)
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s log (last 4 KiB):\n%s", name, p.tail(4096))
		}
	})
	return p
}

func (p *process) signal(sig os.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(sig)
	}
}

// kill ends the process without letting it clean up, as a node failure would.
func (p *process) kill(t *testing.T) {
	t.Helper()
	p.signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not exit after SIGKILL", p.name)
	}
}

func (p *process) tail(n int) string {
	data, _ := os.ReadFile(p.log)
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// callbackPort waits for a callback server started with --addr 127.0.0.1:0 to log the
// port the kernel gave it: tests that pick free ports themselves race with each other.
func callbackPort(t *testing.T, p *process) int { return listenPort(t, p, "serving callbacks") }

// metricsPort is the port a process serves /metrics on (--metrics-bind-address
// 127.0.0.1:0, which start adds for the callback roles).
func metricsPort(t *testing.T, p *process) int { return listenPort(t, p, "serving metrics") }

// listenPort waits for p's log line msg and returns the port of its addr.
func listenPort(t *testing.T, p *process, msg string) int {
	t.Helper()
	port := 0
	testenv.Eventually(t, 60*time.Second, p.name+" to log "+msg, func() (bool, string) {
		if p.exited() {
			t.Fatalf("%s exited: %v\n%s", p.name, p.err, p.tail(4096))
		}
		data, _ := os.ReadFile(p.log)
		for _, line := range strings.Split(string(data), "\n") {
			var entry struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &entry) != nil || entry.Msg != msg {
				continue
			}
			_, portText, err := net.SplitHostPort(entry.Addr)
			if err != nil {
				t.Fatalf("%s: %s on %q: %v", p.name, msg, entry.Addr, err)
			}
			port, err = strconv.Atoi(portText)
			return err == nil, entry.Addr
		}
		return false, "not yet"
	})
	return port
}

// kubectl runs kubectl with a kubeconfig and returns its stdout, or its error with stderr.
func kubectl(kubeconfig string, stdin string, args ...string) (string, error) {
	cmd := exec.Command(kubectlPath, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func mustKubectl(t *testing.T, kubeconfig, stdin string, args ...string) string {
	t.Helper()
	out, err := kubectl(kubeconfig, stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// writeKubeconfig provisions a user and writes its kubeconfig.
func writeKubeconfig(t *testing.T, dir, file, user string, groups ...string) string {
	t.Helper()
	data, err := env.Kubeconfig(user, groups...)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, file)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// serviceAccountKubeconfig acts as the ServiceAccount namespace/name: same user name and
// groups as its token would give, so the RBAC bindings of the ServiceAccount apply.
func serviceAccountKubeconfig(t *testing.T, dir, namespace, name string) string {
	t.Helper()
	return writeKubeconfig(t, dir, name+".kubeconfig", "system:serviceaccount:"+namespace+":"+name,
		"system:serviceaccounts", "system:serviceaccounts:"+namespace, "system:authenticated")
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// addFriend sends an OpenIM friend request from→bob to a replica and returns "allow" or
// the deny's errDlt (the deciding policy/entry).
func addFriend(port int, from string) (string, error) { return addFriendIn(port, "", from) }

// addFriendIn is addFriend for an OpenIM app: its appID is a segment of the path.
func addFriendIn(port int, app, from string) (string, error) {
	body := fmt.Sprintf(`{"callbackCommand":"callbackBeforeAddFriendCommand","fromUserID":%q,"toUserID":"bob","reqMsg":"hi"}`, from)
	path := "/openim/callbackBeforeAddFriendCommand"
	if app != "" {
		path = "/openim/" + app + "/callbackBeforeAddFriendCommand"
	}
	resp, err := httpClient.Post("http://127.0.0.1:"+strconv.Itoa(port)+path,
		"application/json; charset=utf-8", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, data)
	}
	var a struct {
		ErrDlt   string `json:"errDlt"`
		NextCode int    `json:"nextCode"`
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return "", fmt.Errorf("answer %q: %v", data, err)
	}
	if a.NextCode != 1 {
		return "allow", nil
	}
	return a.ErrDlt, nil
}

// decisionsAre checks that every replica gives want for a request from from.
func decisionsAre(ports []int, from, want string) (bool, string) {
	var states []string
	ok := true
	for _, port := range ports {
		got, err := addFriend(port, from)
		if err != nil {
			got = err.Error()
		}
		states = append(states, fmt.Sprintf(":%d %s", port, got))
		ok = ok && got == want
	}
	return ok, strings.Join(states, ", ")
}

// waitReady waits for a replica's /readyz.
func waitReady(t *testing.T, p *process, port int) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, p.name+" to be ready", func() (bool, string) {
		if p.exited() {
			t.Fatalf("%s exited: %v\n%s", p.name, p.err, p.tail(4096))
		}
		resp, err := httpClient.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}
