package webhook

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the bounds no client behaviour can exceed. A connection costs the server
// about 30 KiB (goroutine, buffers; more with TLS) and an in-flight body what has been
// received of it, so the defaults hold a replica to roughly 100 MiB beyond its policies,
// well within the chart's memory limit, while leaving room for far more concurrent
// callbacks than two IM servers send (answers take microseconds).
const (
	DefaultMaxConnections       = 1024
	DefaultMaxInflightBodyBytes = 64 << 20
)

// bodyReserveStep is the granularity of in-flight body reservations: a small callback
// takes one reservation, and a large one reserves as its bytes arrive, never on the
// word of its Content-Length.
const bodyReserveStep = 4 << 10

// byteBudget bounds the bytes of request bodies held at once, over all requests. It never
// blocks: a request that does not fit is answered "busy" at once.
type byteBudget struct {
	max  int64
	used atomic.Int64
}

func (b *byteBudget) reserve(n int64) bool {
	if b.used.Add(n) > b.max {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *byteBudget) release(n int64) { b.used.Add(-n) }

// busyReadTimeout bounds how long a connection accepted over the limit may take to send
// its request headers before it is answered "busy" and closed: an honest IM server sends
// them at once, and each such connection holds a goroutine.
const busyReadTimeout = time.Second

// minBusyRoom is the least number of connections accepted over the limit to be answered
// busy, so that a small limit still answers rather than resets callers arriving while
// the last busy connection is being closed.
const minBusyRoom = 16

// connLimiter bounds the open connections of a listener. Up to max connections are served
// normally. When a connection arrives at the limit, the connection idle the longest (a
// keep-alive connection between requests) is closed to make room; when none is idle, the
// new connection is still accepted, up to an eighth more (at least minBusyRoom), only to
// answer its request "busy" (the protocol's answer, 503) and close; beyond that it is
// closed at once. So a
// flood of connections costs a bounded amount of memory, and an honest caller gets a
// well-formed answer rather than a hang whenever the server can afford one.
type connLimiter struct {
	net.Listener
	max, hardMax int
	metrics      *Metrics

	mu    sync.Mutex
	conns map[*limitedConn]struct{}
}

func newConnLimiter(ln net.Listener, limit int, m *Metrics) *connLimiter {
	return &connLimiter{Listener: ln, max: limit, hardMax: limit + max(limit/8, minBusyRoom), metrics: m, conns: map[*limitedConn]struct{}{}}
}

func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		lc := &limitedConn{Conn: c, limiter: l}
		l.mu.Lock()
		if len(l.conns) >= l.max && l.closeIdlestLocked() {
			l.metrics.idleClosed.Inc()
		}
		n := len(l.conns)
		if n >= l.hardMax {
			l.mu.Unlock()
			c.Close()
			l.metrics.connsRefused.Inc()
			continue
		}
		if n >= l.max {
			lc.busy = true
			lc.busyUntil = time.Now().Add(busyReadTimeout)
			c.SetReadDeadline(lc.busyUntil)
		}
		l.conns[lc] = struct{}{}
		l.mu.Unlock()
		l.metrics.connections.Inc()
		return lc, nil
	}
}

// closeIdlestLocked closes the connection that has been idle the longest, if any.
func (l *connLimiter) closeIdlestLocked() bool {
	var idlest *limitedConn
	var since int64
	for c := range l.conns {
		if s := c.idleSince.Load(); s != 0 && (idlest == nil || s < since) {
			idlest, since = c, s
		}
	}
	// A request may have started on it meanwhile: only a connection still idle is closed.
	if idlest == nil || !idlest.idleSince.CompareAndSwap(since, 0) {
		return false
	}
	delete(l.conns, idlest)
	idlest.removed.Store(true)
	l.metrics.connections.Dec()
	idlest.Conn.Close()
	return true
}

func (l *connLimiter) remove(c *limitedConn) {
	if c.removed.Swap(true) {
		return
	}
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	l.metrics.connections.Dec()
}

// limitedConn is a connection counted by a connLimiter.
type limitedConn struct {
	net.Conn
	limiter *connLimiter
	// busy connections were accepted over the limit: their request is answered "busy".
	busy      bool
	busyUntil time.Time
	// idleSince is when the connection last turned idle (Unix ns), 0 while it is not.
	idleSince atomic.Int64
	removed   atomic.Bool
}

func (c *limitedConn) Close() error {
	c.limiter.remove(c)
	return c.Conn.Close()
}

// SetReadDeadline keeps a busy connection's deadline: net/http moves it for each phase of
// reading a request.
func (c *limitedConn) SetReadDeadline(t time.Time) error {
	if c.busy && (t.IsZero() || t.After(c.busyUntil)) {
		t = c.busyUntil
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *limitedConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

// asLimited returns the limitedConn under c, which net/http may hand over wrapped in TLS.
func asLimited(c net.Conn) *limitedConn {
	switch c := c.(type) {
	case *limitedConn:
		return c
	case *tls.Conn:
		lc, _ := c.NetConn().(*limitedConn)
		return lc
	}
	return nil
}

// connState is the http.Server's ConnState hook: it tracks which connections are idle.
func connState(c net.Conn, state http.ConnState) {
	lc := asLimited(c)
	if lc == nil {
		return
	}
	switch state {
	case http.StateIdle:
		lc.idleSince.Store(time.Now().UnixNano())
	case http.StateActive:
		lc.idleSince.Store(0)
	}
}

type busyKey struct{}

// connContext is the http.Server's ConnContext hook: it marks the requests of a
// connection accepted over the limit.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if lc := asLimited(c); lc != nil && lc.busy {
		return context.WithValue(ctx, busyKey{}, true)
	}
	return ctx
}

// overConnectionLimit reports whether r came on a connection accepted over the limit.
func overConnectionLimit(r *http.Request) bool {
	busy, _ := r.Context().Value(busyKey{}).(bool)
	return busy
}
