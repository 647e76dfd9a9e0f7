package webhook

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
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

// reapInterval is how often the limiter's clock ticks and, on plain HTTP, how often it
// closes connections past their phase's time limit: the limits are that much coarse.
const reapInterval = 250 * time.Millisecond

// connPhase is where a connection is in its cycle of requests.
type connPhase int64

const (
	phaseHeader connPhase = iota // accepted, or a request begun, until its header is read
	phaseBody                    // the handler reads the body; the time counts from the request's start
	phaseAnswer                  // the body is in: deciding and writing the answer
	phaseIdle                    // between requests
	phaseClosed                  // closed by the limiter
	phaseBits   = 3
)

var phaseNames = [...]string{phaseHeader: "header", phaseBody: "body", phaseAnswer: "answer", phaseIdle: "idle"}

// connTimeouts bound the phases of a connection; zero is no bound. On plain HTTP the
// limiter enforces them (see reap) instead of net/http's per-request deadlines, which
// cost four timer updates on every callback; over TLS, where HTTP/2 multiplexes requests
// on a connection, net/http's own timeouts apply instead.
type connTimeouts struct {
	header, request, answer, idle time.Duration
}

func (t *connTimeouts) of(p connPhase) time.Duration {
	switch p {
	case phaseHeader:
		return t.header
	case phaseBody:
		return t.request
	case phaseAnswer:
		return t.answer
	case phaseIdle:
		return t.idle
	}
	return 0
}

// connState packs a phase and when it began (Unix milliseconds) into one word, so that
// the limiter reads the two together and claims a connection with one compare-and-swap.
func packState(p connPhase, atMilli int64) int64 { return atMilli<<phaseBits | int64(p) }

func unpackState(s int64) (connPhase, int64) {
	return connPhase(s & (1<<phaseBits - 1)), s >> phaseBits
}

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
	timeouts     connTimeouts
	clock        clock.WithTicker
	// now is the limiter's clock in Unix milliseconds, advanced by Accept and each
	// reapInterval: marking a connection's phase reads it instead of the system clock.
	now atomic.Int64

	mu    sync.Mutex
	conns map[*limitedConn]struct{}
}

func newConnLimiter(ln net.Listener, limit int, m *Metrics) *connLimiter {
	l := &connLimiter{Listener: ln, max: limit, hardMax: limit + max(limit/8, minBusyRoom), metrics: m, clock: clock.RealClock{}, conns: map[*limitedConn]struct{}{}}
	l.now.Store(l.clock.Now().UnixMilli())
	return l
}

// run advances the limiter's clock and closes the connections past their phase's time
// limit, until ctx is done.
func (l *connLimiter) run(ctx context.Context) {
	t := l.clock.NewTicker(reapInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C():
			l.reap(now)
		}
	}
}

// reap closes the connections that have been in their phase longer than its limit.
func (l *connLimiter) reap(now time.Time) {
	ms := now.UnixMilli()
	l.now.Store(ms)
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		s := c.state.Load()
		phase, at := unpackState(s)
		limit := l.timeouts.of(phase)
		if limit <= 0 || ms-at < limit.Milliseconds() || !c.state.CompareAndSwap(s, packState(phaseClosed, ms)) {
			continue
		}
		l.closeLocked(c)
		l.metrics.timedOut.WithLabelValues(phaseNames[phase]).Inc()
	}
}

func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		now := l.clock.Now()
		l.now.Store(now.UnixMilli())
		lc := &limitedConn{Conn: c, limiter: l}
		lc.state.Store(packState(phaseHeader, now.UnixMilli()))
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
			lc.busyUntil = now.Add(busyReadTimeout)
			// Fails only on a closed connection, whose next read fails anyway.
			_ = c.SetReadDeadline(lc.busyUntil)
			lc.readSet = true
		}
		l.conns[lc] = struct{}{}
		l.mu.Unlock()
		l.metrics.connections.Inc()
		return lc, nil
	}
}

// closeStalestLocked closes the stalest connection (see connLimiter), if any.
func (l *connLimiter) closeStalestLocked() bool {
	now := l.now.Load()
	var stalest *limitedConn
	var stalestAt, stalestState int64
	for c := range l.conns {
		s := c.state.Load()
		phase, at := unpackState(s)
		switch {
		case c.busy, phase == phaseAnswer, phase == phaseClosed:
			continue // answered busy and about to close anyway, or being answered
		case phase == phaseIdle:
		case now-at < stallAge.Milliseconds():
			continue // delivering a request, not for long
		}
		if stalest == nil || at < stalestAt {
			stalest, stalestAt, stalestState = c, at, s
		}
	}
	if stalest == nil || !stalest.state.CompareAndSwap(stalestState, packState(phaseClosed, now)) {
		return false
	}
	l.closeLocked(stalest)
	return true
}

// closeLocked closes c, which the caller has claimed (phaseClosed), and forgets it,
// unless net/http is closing it already.
func (l *connLimiter) closeLocked(c *limitedConn) {
	if c.removed.Swap(true) {
		return
	}
	delete(l.conns, c)
	l.metrics.connections.Dec()
	c.Conn.Close()
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
	// state is the connection's phase and when it began (see packState).
	state   atomic.Int64
	removed atomic.Bool

	// deadlines guards readSet and writeSet, whether Conn has a read or a write deadline.
	// net/http clears a connection's deadlines six times for each request. On plain HTTP,
	// where the limiter enforces the timeouts, the only deadline set is the one that stops
	// net/http's background read, so five clears find none, and each would still update
	// the poller: a clear of no deadline is skipped.
	deadlines         sync.Mutex
	readSet, writeSet bool
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
	c.deadlines.Lock()
	defer c.deadlines.Unlock()
	if t.IsZero() && !c.readSet {
		return nil
	}
	c.readSet = !t.IsZero()
	return c.Conn.SetReadDeadline(t)
}

func (c *limitedConn) SetWriteDeadline(t time.Time) error {
	c.deadlines.Lock()
	defer c.deadlines.Unlock()
	if t.IsZero() && !c.writeSet {
		return nil
	}
	c.writeSet = !t.IsZero()
	return c.Conn.SetWriteDeadline(t)
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

// enter moves c to phase p from now.
func (c *limitedConn) enter(p connPhase) { c.state.Store(packState(p, c.limiter.now.Load())) }

// connState is the http.Server's ConnState hook: it tracks which connections are idle
// and which are delivering a request.
func connState(c net.Conn, state http.ConnState) {
	lc := asLimited(c)
	if lc == nil {
		return
	}
	switch state {
	case http.StateIdle:
		lc.enter(phaseIdle)
	case http.StateActive:
		lc.enter(phaseHeader)
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

// startRequest marks r's header as read, its body to come, and reports whether r came on
// a connection accepted over the limit.
func startRequest(r *http.Request) (busy bool) {
	lc := requestConn(r)
	if lc == nil {
		return false
	}
	s := lc.state.Load()
	if phase, at := unpackState(s); phase == phaseHeader {
		lc.state.CompareAndSwap(s, packState(phaseBody, at))
	}
	return lc.busy
}

// delivered marks r's request as delivered: its connection is being answered and is not
// closed to make room for another.
func delivered(r *http.Request) {
	if lc := requestConn(r); lc != nil {
		lc.enter(phaseAnswer)
	}
}
