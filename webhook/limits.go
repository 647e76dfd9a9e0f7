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

// stallAge is how long a connection may take to deliver a request before it counts as
// stalled: an IM server sends a callback in milliseconds.
const stallAge = time.Second

// connLimiter bounds the open connections of a listener. Up to max connections are served
// normally. When a connection arrives at the limit, the stalest connection is closed to
// make room: of those idle between requests and those stalled delivering one (for longer
// than stallAge), the one whose last sign of life is oldest. A connection whose request is
// being answered is never closed. When none is stale, the new connection is still
// accepted, up to an eighth more (at least minBusyRoom), only to answer its request
// "busy" (the protocol's answer, 503) and close; beyond that it is closed at once. So a
// flood of connections costs a bounded amount of memory, slow callers make way for fast
// ones, and an honest caller gets a well-formed answer rather than a hang whenever the
// server can afford one.
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
		lc.since.Store(time.Now().UnixNano())
		l.mu.Lock()
		if len(l.conns) >= l.max && l.closeStalestLocked() {
			l.metrics.staleClosed.Inc()
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
			// Fails only on a closed connection, whose next read fails anyway.
			_ = c.SetReadDeadline(lc.busyUntil)
		}
		l.conns[lc] = struct{}{}
		l.mu.Unlock()
		l.metrics.connections.Inc()
		return lc, nil
	}
}

// closeStalestLocked closes the stalest connection (see connLimiter), if any.
func (l *connLimiter) closeStalestLocked() bool {
	now := time.Now().UnixNano()
	var stalest *limitedConn
	var stalestAt, stalestSince int64
	for c := range l.conns {
		since := c.since.Load()
		at := since
		switch {
		case c.busy, since == 0:
			continue // answered busy and about to close anyway, or being answered
		case since < 0:
			at = -since // idle
		case now-since < int64(stallAge):
			continue // delivering a request, not for long
		}
		if stalest == nil || at < stalestAt {
			stalest, stalestAt, stalestSince = c, at, since
		}
	}
	// Only a connection whose state has not changed meanwhile is closed.
	if stalest == nil || !stalest.since.CompareAndSwap(stalestSince, 0) {
		return false
	}
	delete(l.conns, stalest)
	stalest.removed.Store(true)
	l.metrics.connections.Dec()
	stalest.Conn.Close()
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
	// since is when the connection last showed a sign of life, in Unix ns: positive while
	// it delivers a request (since it was accepted or its request began), negative while
	// it is idle between requests (since it turned idle), 0 while its request is answered.
	since   atomic.Int64
	removed atomic.Bool
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
	if err := c.SetWriteDeadline(t); err != nil {
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

// connState is the http.Server's ConnState hook: it tracks which connections are idle
// and which are delivering a request.
func connState(c net.Conn, state http.ConnState) {
	lc := asLimited(c)
	if lc == nil {
		return
	}
	switch state {
	case http.StateIdle:
		lc.since.Store(-time.Now().UnixNano())
	case http.StateActive:
		lc.since.Store(time.Now().UnixNano())
	}
}

type connKey struct{}

// connContext is the http.Server's ConnContext hook: it gives the handler the connection
// its requests arrive on.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if lc := asLimited(c); lc != nil {
		return context.WithValue(ctx, connKey{}, lc)
	}
	return ctx
}

func requestConn(r *http.Request) *limitedConn {
	lc, _ := r.Context().Value(connKey{}).(*limitedConn)
	return lc
}

// overConnectionLimit reports whether r came on a connection accepted over the limit.
func overConnectionLimit(r *http.Request) bool {
	lc := requestConn(r)
	return lc != nil && lc.busy
}

// delivered marks r's request as delivered: its connection is being answered and is not
// closed to make room for another.
func delivered(r *http.Request) {
	if lc := requestConn(r); lc != nil {
		lc.since.Store(0)
	}
}
