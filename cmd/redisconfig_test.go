package cmd

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/spf13/pflag"

	"github.com/friendgate/friendgate/internal/testcert"
)

func TestRedisConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	ca, caPEM := testCA(t)
	caFile := write("ca.crt", caPEM)
	passwordFile := write("password", "s3cret\n")
	crlfPasswordFile := write("password-crlf", "s3cret\r\n")
	emptyPasswordFile := write("password-empty", "\n")
	notPEM := write("not-pem", "not a certificate\n")
	missing := filepath.Join(dir, "missing")

	tests := []struct {
		name   string
		change func(*redisFlags)
		want   string // a substring of the error; empty: no error
		check  func(*testing.T, *redisConfig)
	}{
		{name: "no address: in memory", change: func(*redisFlags) {}, check: func(t *testing.T, c *redisConfig) {
			if c != nil {
				t.Errorf("got %v, want nil", c)
			}
		}},
		{name: "address only: the defaults", change: func(r *redisFlags) { r.addr = "redis-master.openim.svc.cluster.local:6379" },
			check: func(t *testing.T, c *redisConfig) {
				want := redisConfig{Addr: "redis-master.openim.svc.cluster.local:6379", KeyPrefix: "friendgate:", Budget: 5 * time.Millisecond}
				if *c != want {
					t.Errorf("got %+v, want %+v", *c, want)
				}
			}},
		{name: "every setting", change: func(r *redisFlags) {
			*r = redisFlags{addr: "10.0.0.7:6380", username: "friendgate", passwordFile: passwordFile, db: 3, keyPrefix: "fg:prod:",
				tls: true, tlsCAFile: caFile, tlsServerName: "redis.example.com", budget: 2 * time.Millisecond}
		}, check: func(t *testing.T, c *redisConfig) {
			if c.Addr != "10.0.0.7:6380" || c.Username != "friendgate" || c.Password != "s3cret" || c.DB != 3 ||
				c.KeyPrefix != "fg:prod:" || c.Budget != 2*time.Millisecond {
				t.Errorf("got %+v", *c)
			}
			if c.TLS == nil || c.TLS.MinVersion != tls.VersionTLS12 || c.TLS.ServerName != "redis.example.com" {
				t.Fatalf("TLS %+v, want TLS 1.2 or later with server name redis.example.com", c.TLS)
			}
			if c.TLS.RootCAs == nil || !c.TLS.RootCAs.Equal(certPool(ca)) {
				t.Error("the CA file is not the TLS roots")
			}
		}},
		{name: "CRLF trimmed from the password", change: func(r *redisFlags) { r.addr, r.passwordFile = "redis:6379", crlfPasswordFile },
			check: func(t *testing.T, c *redisConfig) {
				if c.Password != "s3cret" {
					t.Errorf("password %q, want s3cret", c.Password)
				}
			}},
		{name: "TLS with the system roots and the address's host", change: func(r *redisFlags) { r.addr, r.tls = "[fd00::7]:6379", true },
			check: func(t *testing.T, c *redisConfig) {
				if c.TLS == nil || c.TLS.RootCAs != nil || c.TLS.ServerName != "fd00::7" {
					t.Errorf("TLS %+v, want system roots and server name fd00::7", c.TLS)
				}
			}},
		{name: "budget at the lower bound", change: func(r *redisFlags) { r.addr, r.budget = "redis:6379", 100*time.Microsecond }},
		{name: "budget at the upper bound", change: func(r *redisFlags) { r.addr, r.budget = "redis:6379", time.Second }},
		{name: "prefix of 64 bytes", change: func(r *redisFlags) { r.addr, r.keyPrefix = "redis:6379", strings.Repeat("p", 64) }},

		{name: "username without an address", change: func(r *redisFlags) { r.username = "u" }, want: "--redis-username needs --redis-addr"},
		{name: "password without an address", change: func(r *redisFlags) { r.passwordFile = passwordFile }, want: "--redis-password-file needs --redis-addr"},
		{name: "TLS without an address", change: func(r *redisFlags) { r.tls = true }, want: "--redis-tls needs --redis-addr"},
		{name: "no port", change: func(r *redisFlags) { r.addr = "redis" }, want: "--redis-addr must be host:port"},
		{name: "URL", change: func(r *redisFlags) { r.addr = "redis://redis:6379" }, want: "--redis-addr must be host:port, not a URL"},
		{name: "no host", change: func(r *redisFlags) { r.addr = ":6379" }, want: "--redis-addr \":6379\" has no host"},
		{name: "port not a number", change: func(r *redisFlags) { r.addr = "redis:http" }, want: "--redis-addr \"redis:http\": the port"},
		{name: "port 0", change: func(r *redisFlags) { r.addr = "redis:0" }, want: "the port must be between 1 and 65535"},
		{name: "port too large", change: func(r *redisFlags) { r.addr = "redis:65536" }, want: "the port must be between 1 and 65535"},
		{name: "negative db", change: func(r *redisFlags) { r.addr, r.db = "redis:6379", -1 }, want: "--redis-db must not be negative, not -1"},
		{name: "empty prefix", change: func(r *redisFlags) { r.addr, r.keyPrefix = "redis:6379", "" }, want: "--redis-key-prefix must not be empty"},
		{name: "prefix too long", change: func(r *redisFlags) { r.addr, r.keyPrefix = "redis:6379", strings.Repeat("p", 65) },
			want: "--redis-key-prefix must be at most 64 bytes, not 65"},
		{name: "budget too short", change: func(r *redisFlags) { r.addr, r.budget = "redis:6379", 99*time.Microsecond },
			want: "--redis-budget must be between 100µs and 1s, not 99µs"},
		{name: "budget too long", change: func(r *redisFlags) { r.addr, r.budget = "redis:6379", 2*time.Second },
			want: "--redis-budget must be between 100µs and 1s, not 2s"},
		{name: "password file missing", change: func(r *redisFlags) { r.addr, r.passwordFile = "redis:6379", missing },
			want: "--redis-password-file: open " + missing},
		{name: "password file empty", change: func(r *redisFlags) { r.addr, r.passwordFile = "redis:6379", emptyPasswordFile },
			want: "--redis-password-file: " + emptyPasswordFile + " is empty"},
		{name: "CA file without TLS", change: func(r *redisFlags) { r.addr, r.tlsCAFile = "redis:6379", caFile }, want: "--redis-tls-ca-file needs --redis-tls"},
		{name: "server name without TLS", change: func(r *redisFlags) { r.addr, r.tlsServerName = "redis:6379", "redis" },
			want: "--redis-tls-server-name needs --redis-tls"},
		{name: "CA file missing", change: func(r *redisFlags) { r.addr, r.tls, r.tlsCAFile = "redis:6379", true, missing },
			want: "--redis-tls-ca-file: open " + missing},
		{name: "CA file without a certificate", change: func(r *redisFlags) { r.addr, r.tls, r.tlsCAFile = "redis:6379", true, notPEM },
			want: "--redis-tls-ca-file: no PEM certificate in " + notPEM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f callbackFlags
			f.bind(pflag.NewFlagSet("serve", pflag.ContinueOnError))
			tt.change(&f.redis)
			c, err := f.redisConfig()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("no error, want one containing %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("error %q, want one containing %q", err, tt.want)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// TestRedisConfigHidesThePassword: logging the configuration, with logr or fmt, says
// whether there is a password but never what it is.
func TestRedisConfigHidesThePassword(t *testing.T) {
	c := &redisConfig{Addr: "redis:6379", Password: "s3cret", KeyPrefix: "friendgate:", Budget: 5 * time.Millisecond}
	var logged strings.Builder
	log := funcr.New(func(_, args string) { logged.WriteString(args) }, funcr.Options{})
	log.Info("limits counted through Redis", "redis", c)
	for name, out := range map[string]string{
		"logr": logged.String(), "%v": fmt.Sprintf("%v", c), "%+v": fmt.Sprintf("%+v", c),
	} {
		if strings.Contains(out, "s3cret") {
			t.Errorf("%s shows the password: %s", name, out)
		}
		if !strings.Contains(out, "redis:6379") || !strings.Contains(out, "hasPassword") {
			t.Errorf("%s does not show the address and whether there is a password: %s", name, out)
		}
	}
}

// TestRedisFlagsInHelp: `serve --help` and `webhook --help` list every Redis flag and say
// what happens without Redis.
func TestRedisFlagsInHelp(t *testing.T) {
	for _, command := range []string{"serve", "webhook"} {
		t.Run(command, func(t *testing.T) {
			root := newRootCommand()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetArgs([]string{command, "--help"})
			if err := root.Execute(); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{
				"--redis-addr string", "each counts alone", "--redis-username string", "--redis-password-file string",
				"--redis-db int", `--redis-key-prefix string`, `(default "friendgate:")`, "--redis-tls ",
				"--redis-tls-ca-file string", "--redis-tls-server-name string", "--redis-budget duration", "(default 5ms)",
			} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("%s --help does not show %q", command, want)
				}
			}
		})
	}
}

// testCA returns a CA certificate and its PEM encoding.
func testCA(t *testing.T) (*x509.Certificate, string) {
	t.Helper()
	ca := testcert.NewCA(t, "friendgate test Redis CA")
	return ca.Cert, string(ca.PEM())
}

func certPool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
