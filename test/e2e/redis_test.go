package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/friendgate/friendgate/internal/testenv"
)

// redisServer is a redis-server started by a test on a free loopback port, without
// persistence, and killed by its PID when the test ends. internal/velocity's tests start
// theirs the same way.
type redisServer struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
	// exited is closed once cmd has been reaped.
	exited chan struct{}
}

// startRedis starts a redis-server. Without one installed the test fails (the e2e tests
// are skipped with -short, as the velocity package's Redis tests are).
func startRedis(t *testing.T) *redisServer {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped in -short mode")
	}
	r := &redisServer{t: t, port: testenv.FreePort(t), dir: t.TempDir()}
	t.Cleanup(r.kill)
	r.start()
	return r
}

func (r *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// start starts the server, on the same port as before if it ran already, empty (there is
// no persistence), and waits until it answers PING.
func (r *redisServer) start() {
	t := r.t
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server not found: run `make redis-server` to install it (or go test -short to skip the end-to-end tests)")
	}
	logFile := filepath.Join(r.dir, "redis.log")
	out, err := os.OpenFile(logFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	r.cmd = exec.Command(path, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir)
	r.cmd.Stdout, r.cmd.Stderr = out, out
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	r.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(r.cmd, r.exited)
	// Poll for its first answer: a bound, not a timing assertion.
	deadline := time.Now().Add(startTimeout)
	for {
		err := r.ping()
		if err == nil {
			return
		}
		select {
		case <-r.exited:
			r.cmd = nil
			log, _ := os.ReadFile(logFile)
			t.Fatalf("redis-server exited:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile)
			t.Fatalf("redis-server does not answer on %s (%v):\n%s", r.addr(), err, log)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ping sends PING in Redis's protocol and expects PONG.
func (r *redisServer) ping() error {
	c, err := net.DialTimeout("tcp", r.addr(), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// kill kills the server by its PID, as a crashed or evicted Redis goes, and reaps it. A
// killed server may start again on the same port; kill may be called again.
func (r *redisServer) kill() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill() // fails only once it has exited
	<-r.exited
	r.cmd = nil
}
