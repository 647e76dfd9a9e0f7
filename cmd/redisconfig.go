package cmd

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

const (
	// defaultRedisKeyPrefix keeps friendgate's keys apart from OpenIM's when they share a Redis.
	defaultRedisKeyPrefix = "friendgate:"
	// defaultRedisBudget is a round trip to a Redis in the same cluster with room to spare,
	// and small against the IM servers' callback timeouts (OpenIM's is 5s).
	defaultRedisBudget = 5 * time.Millisecond
	minRedisBudget     = 100 * time.Microsecond
	maxRedisBudget     = time.Second
	maxRedisKeyPrefix  = 64
)

// redisConfig is the Redis the webhook replicas share limit counters through, validated
// from the --redis-* flags.
type redisConfig struct {
	// Addr is host:port.
	Addr string
	// Username is the ACL user; empty for the default user.
	Username string
	// Password is empty for none. MarshalLog and String leave it out.
	Password string
	DB       int
	// KeyPrefix starts every key friendgate writes.
	KeyPrefix string
	// TLS is nil for plain TCP.
	TLS *tls.Config
	// Budget is the longest a callback waits on Redis.
	Budget time.Duration
}

// MarshalLog is what logr logs of the configuration: everything but the password.
func (c *redisConfig) MarshalLog() any {
	return map[string]any{
		"addr":        c.Addr,
		"username":    c.Username,
		"hasPassword": c.Password != "",
		"db":          c.DB,
		"keyPrefix":   c.KeyPrefix,
		"tls":         c.TLS != nil,
		"budget":      c.Budget.String(),
	}
}

// String keeps the password out of fmt's %v and %s.
func (c *redisConfig) String() string {
	return fmt.Sprint(c.MarshalLog())
}

// redisConfig validates the --redis-* flags; it returns nil, and counting stays in
// memory, when --redis-addr is empty.
func (f *callbackFlags) redisConfig() (*redisConfig, error) {
	r := &f.redis
	if r.addr == "" {
		for _, o := range []struct {
			flag  string
			given bool
		}{
			{"--redis-username", r.username != ""}, {"--redis-password-file", r.passwordFile != ""}, {"--redis-tls", r.tls},
			{"--redis-tls-ca-file", r.tlsCAFile != ""}, {"--redis-tls-server-name", r.tlsServerName != ""},
		} {
			if o.given {
				return nil, fmt.Errorf("%s needs --redis-addr", o.flag)
			}
		}
		return nil, nil
	}
	host, err := redisHost(r.addr)
	if err != nil {
		return nil, err
	}
	c := &redisConfig{Addr: r.addr, Username: r.username, DB: r.db, KeyPrefix: r.keyPrefix, Budget: r.budget}
	if r.db < 0 {
		return nil, fmt.Errorf("--redis-db must not be negative, not %d", r.db)
	}
	if r.keyPrefix == "" {
		return nil, fmt.Errorf("--redis-key-prefix must not be empty: friendgate's keys must not collide with others in a shared Redis")
	}
	if len(r.keyPrefix) > maxRedisKeyPrefix {
		return nil, fmt.Errorf("--redis-key-prefix must be at most %d bytes, not %d", maxRedisKeyPrefix, len(r.keyPrefix))
	}
	if r.budget < minRedisBudget || r.budget > maxRedisBudget {
		return nil, fmt.Errorf("--redis-budget must be between %s and %s, not %s", minRedisBudget, maxRedisBudget, r.budget)
	}
	if r.passwordFile != "" {
		data, err := os.ReadFile(r.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("--redis-password-file: %w", err)
		}
		// Files written by echo or editors end in a newline, and a Secret created from
		// one keeps it.
		if c.Password = strings.TrimRight(string(data), "\r\n"); c.Password == "" {
			return nil, fmt.Errorf("--redis-password-file: %s is empty", r.passwordFile)
		}
	}
	if !r.tls {
		if r.tlsCAFile != "" {
			return nil, fmt.Errorf("--redis-tls-ca-file needs --redis-tls")
		}
		if r.tlsServerName != "" {
			return nil, fmt.Errorf("--redis-tls-server-name needs --redis-tls")
		}
		return c, nil
	}
	c.TLS = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if r.tlsServerName != "" {
		c.TLS.ServerName = r.tlsServerName
	}
	if r.tlsCAFile != "" {
		pem, err := os.ReadFile(r.tlsCAFile)
		if err != nil {
			return nil, fmt.Errorf("--redis-tls-ca-file: %w", err)
		}
		c.TLS.RootCAs = x509.NewCertPool()
		if !c.TLS.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--redis-tls-ca-file: no PEM certificate in %s", r.tlsCAFile)
		}
	}
	return c, nil
}

// redisHost returns the host of a host:port address, or an error naming --redis-addr.
func redisHost(addr string) (string, error) {
	if strings.Contains(addr, "://") {
		return "", fmt.Errorf("--redis-addr must be host:port, not a URL: %q", addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--redis-addr must be host:port: %w", err)
	}
	if host == "" {
		return "", fmt.Errorf("--redis-addr %q has no host", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", fmt.Errorf("--redis-addr %q: the port must be between 1 and 65535", addr)
	}
	return host, nil
}
