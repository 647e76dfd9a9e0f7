package velocity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"debug/elf"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/friendgate/friendgate/internal/testcert"
)

// redisServer is a redis-server started by a test on a free loopback port, without
// persistence, and stopped by its PID when the test ends.
type redisServer struct {
	t    testing.TB
	port int
	// tls serves TLS instead of plain TCP on port.
	tls  *serverTLS
	args []string
	cmd  *exec.Cmd
	// exited is closed once cmd has been reaped.
	exited chan struct{}
}

// serverTLS is the files of a TLS server and the client configuration trusting it.
type serverTLS struct {
	certFile, keyFile, caFile string
	client                    *tls.Config
}

// redisServerPath finds redis-server; without it, a test fails unless -short.
func redisServerPath(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if testing.Short() {
			t.Skip("redis-server not found (make redis-server installs it)")
		}
		t.Fatal("redis-server not found: run `make redis-server` to install it (or go test -short to skip the tests against Redis)")
	}
	return path
}

// startRedis starts a redis-server with args added to its command line.
func startRedis(t testing.TB, args ...string) *redisServer {
	t.Helper()
	s := &redisServer{t: t, port: freePort(t), args: args}
	t.Cleanup(s.stop)
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	return s
}

// startRedisTLS starts a redis-server that serves only TLS, with a certificate for
// 127.0.0.1 signed by a CA of the test's own.
func startRedisTLS(t *testing.T) *redisServer {
	t.Helper()
	s := &redisServer{t: t, port: freePort(t), tls: newServerTLS(t)}
	t.Cleanup(s.stop)
	if err := s.start(); err != nil {
		if !linksOpenSSL(t, redisServerPath(t)) {
			t.Skipf("this redis-server was built without TLS (it does not link libssl), so the TLS test cannot run: %v", err)
		}
		t.Fatal(err)
	}
	return s
}

// linksOpenSSL reports whether the executable at path links libssl, as a redis-server
// built with TLS does (Debian's does).
func linksOpenSSL(t testing.TB, path string) bool {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(libs, func(lib string) bool { return strings.HasPrefix(lib, "libssl.") })
}

func (s *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// start starts the server, on the same port as before if it ran already.
func (s *redisServer) start() error {
	t := s.t
	t.Helper()
	dir := t.TempDir()
	args := []string{"--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--dir", dir}
	if s.tls != nil {
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(s.port),
			"--tls-cert-file", s.tls.certFile, "--tls-key-file", s.tls.keyFile,
			"--tls-ca-cert-file", s.tls.caFile, "--tls-auth-clients", "no")
	} else {
		args = append(args, "--port", strconv.Itoa(s.port))
	}
	logFile := filepath.Join(dir, "redis.log")
	out, err := os.Create(logFile)
	if err != nil {
		return err
	}
	defer out.Close()
	s.cmd = exec.Command(redisServerPath(t), append(args, s.args...)...)
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %w", err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(s.cmd, s.exited)
	// Poll for its first answer: a bound, not a timing assertion.
	deadline := time.Now().Add(10 * time.Second)
	for s.ping() != nil {
		select {
		case <-s.exited:
			s.cmd = nil
			log, _ := os.ReadFile(logFile)
			return fmt.Errorf("redis-server exited:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile)
			return fmt.Errorf("redis-server does not answer on %s:\n%s", s.addr(), log)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

func (s *redisServer) ping() error {
	c := s.client("")
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := c.Ping(ctx).Err()
	if err != nil && redis.HasErrorPrefix(err, "NOAUTH") {
		return nil // up, and asking for a password
	}
	return err
}

// client is a plain client of the server, for the tests' own inspections.
func (s *redisServer) client(password string) *redis.Client {
	opts := &redis.Options{Addr: s.addr(), Password: password, MaxRetries: -1, DisableIdentity: true}
	if s.tls != nil {
		opts.TLSConfig = s.tls.client
	}
	return redis.NewClient(opts)
}

// stop kills the server by its PID and reaps it; a stopped server may start again on
// the same port.
func (s *redisServer) stop() {
	if s.cmd == nil {
		return
	}
	p := s.cmd.Process
	_ = p.Signal(syscall.SIGCONT) // in case the test stopped it
	_ = p.Kill()
	<-s.exited
	s.cmd = nil
}

// signal sends sig to the server's PID.
func (s *redisServer) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signalling redis-server: %v", err)
	}
}

// freePort is a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// newServerTLS writes a CA and a certificate for 127.0.0.1 signed by it.
func newServerTLS(t *testing.T) *serverTLS {
	t.Helper()
	dir := t.TempDir()
	ca := testcert.NewCA(t, "friendgate test CA")
	certPEM, keyPEM := ca.Server(t, "redis", net.IPv4(127, 0, 0, 1))
	st := &serverTLS{
		certFile: filepath.Join(dir, "redis.crt"),
		keyFile:  filepath.Join(dir, "redis.key"),
		caFile:   filepath.Join(dir, "ca.crt"),
	}
	for file, data := range map[string][]byte{st.certFile: certPEM, st.keyFile: keyPEM, st.caFile: ca.PEM()} {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	st.client = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return st
}
