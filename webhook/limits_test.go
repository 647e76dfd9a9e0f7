package webhook

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	testingclock "k8s.io/utils/clock/testing"
)

// TestConnLimiter accepts real loopback connections through a limiter of 2: at the limit
// a stale connection makes room for a new one; with none stale, one more is accepted busy
// and the next are closed at once.
func TestConnLimiter(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(prometheus.NewRegistry())
	l := newConnLimiter(ln, 2, m)
	if l.hardMax != 2+minBusyRoom {
		t.Fatalf("hardMax = %d, want %d", l.hardMax, 2+minBusyRoom)
	}
	l.hardMax = 3 // one busy connection, so that the test needs few
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	accept := func() *limitedConn {
		t.Helper()
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*limitedConn)
	}

	dial()
	first := accept()
	dial()
	second := accept()

	// At the limit, an idle connection makes room; one that has just begun delivering a
	// request does not.
	connState(first, http.StateIdle)
	connState(second, http.StateIdle)
	connState(second, http.StateActive)
	dial()
	third := accept()
	if third.busy {
		t.Fatal("a connection accepted after closing an idle one is busy")
	}
	if !first.removed.Load() || second.removed.Load() {
		t.Fatalf("removed: idle %v, active %v; want the idle one only", first.removed.Load(), second.removed.Load())
	}
	// A connection stalled delivering its request for longer than stallAge makes room too,
	// but not one whose request is being answered, however long that takes.
	second.enter(phaseAnswer)
	third.state.Store(packState(phaseHeader, l.now.Load()-2*stallAge.Milliseconds()))
	dial()
	fourth := accept()
	if fourth.busy || !third.removed.Load() || second.removed.Load() {
		t.Fatalf("busy %v, stalled removed %v, answered removed %v; want false true false", fourth.busy, third.removed.Load(), second.removed.Load())
	}
	if got := testutil.ToFloat64(m.staleClosed); got != 2 {
		t.Fatalf("stale connections closed = %v, want 2", got)
	}

	// With none stale, the next one is accepted busy, and the ones after it are closed.
	dial()
	if !accept().busy {
		t.Fatal("a connection over the limit is not busy")
	}
	refused := []net.Conn{dial(), dial()}
	acceptErr := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		acceptErr <- err
	}()
	for i, c := range refused {
		if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("connection %d over the hard limit: read %d bytes, %v; want it closed (EOF)", i, n, err)
		}
	}
	ln.Close()
	if err := <-acceptErr; err == nil {
		t.Fatal("Accept returned a connection over the hard limit")
	}
	if got := testutil.ToFloat64(m.connsRefused); got != 2 {
		t.Fatalf("connections refused = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.connections); got != 3 {
		t.Fatalf("open connections = %v, want 3", got)
	}
}

// TestConnLimiterReap closes, on each tick, the connections that have been in a phase
// for its whole time limit, and none when the limits are off (TLS, where net/http's own
// timeouts apply).
func TestConnLimiterReap(t *testing.T) {
	timeouts := connTimeouts{header: 5 * time.Second, request: 10 * time.Second, answer: 10 * time.Second, idle: 90 * time.Second}
	tests := []struct {
		name    string
		phase   connPhase
		age     time.Duration
		off     bool
		closed  bool
		counted string
	}{
		{name: "header within its limit", phase: phaseHeader, age: 4900 * time.Millisecond},
		{name: "header at its limit", phase: phaseHeader, age: 5 * time.Second, closed: true, counted: "header"},
		{name: "body within the request's limit", phase: phaseBody, age: 9 * time.Second},
		{name: "body past the request's limit", phase: phaseBody, age: 11 * time.Second, closed: true, counted: "body"},
		{name: "answer within its limit", phase: phaseAnswer, age: 9 * time.Second},
		{name: "answer past its limit", phase: phaseAnswer, age: 10 * time.Second, closed: true, counted: "answer"},
		{name: "idle within its limit", phase: phaseIdle, age: 89 * time.Second},
		{name: "idle past its limit", phase: phaseIdle, age: 91 * time.Second, closed: true, counted: "idle"},
		{name: "limits off", phase: phaseIdle, age: time.Hour, off: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMetrics(prometheus.NewRegistry())
			clk := testingclock.NewFakeClock(time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC))
			l, lc, peer := acceptOne(t, m, func(l *connLimiter) {
				l.clock = clk
				if !tt.off {
					l.timeouts = timeouts
				}
			})
			lc.state.Store(packState(tt.phase, clk.Now().Add(-tt.age).UnixMilli()))

			l.reap(clk.Now())
			if got := lc.removed.Load(); got != tt.closed {
				t.Fatalf("closed = %v, want %v", got, tt.closed)
			}
			if tt.closed {
				if err := peer.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
					t.Fatal(err)
				}
				if _, err := peer.Read(make([]byte, 1)); err != io.EOF {
					t.Fatalf("the peer read %v, want EOF", err)
				}
			}
			for _, phase := range phaseNames {
				want := 0.0
				if phase == tt.counted {
					want = 1
				}
				if got := testutil.ToFloat64(m.timedOut.WithLabelValues(phase)); got != want {
					t.Errorf("timed out in %s = %v, want %v", phase, got, want)
				}
			}
			if got, want := testutil.ToFloat64(m.connections), map[bool]float64{true: 0, false: 1}[tt.closed]; got != want {
				t.Errorf("open connections = %v, want %v", got, want)
			}
		})
	}
}

// TestConnPhases follows a connection through the hooks net/http calls: a request's body
// is timed from the request's start, its answer and the idle time after it from their own.
func TestConnPhases(t *testing.T) {
	l, lc, _ := acceptOne(t, NewMetrics(prometheus.NewRegistry()), func(*connLimiter) {})
	c := net.Conn(lc)
	r := httptest.NewRequest(http.MethodPost, "/openim", nil)
	r = r.WithContext(connContext(r.Context(), c))
	check := func(step string, want connPhase, wantAt int64) {
		t.Helper()
		if phase, at := unpackState(lc.state.Load()); phase != want || at != wantAt {
			t.Fatalf("%s: phase %s since %d, want %s since %d", step, phaseNames[phase], at, phaseNames[want], wantAt)
		}
	}
	start := l.now.Load()
	check("accepted", phaseHeader, start)
	l.now.Add(1000)
	connState(c, http.StateActive)
	check("request begun", phaseHeader, start+1000)
	l.now.Add(1000)
	if startRequest(r) {
		t.Fatal("a connection within the limit is busy")
	}
	check("header read", phaseBody, start+1000)
	l.now.Add(1000)
	delivered(r)
	check("body delivered", phaseAnswer, start+3000)
	l.now.Add(1000)
	connState(c, http.StateIdle)
	check("answered", phaseIdle, start+4000)
}

// acceptOne listens on loopback through a limiter of 4 (set up by setup), dials it once
// and accepts: the limiter, the accepted connection and its peer, all closed when the
// test ends.
func acceptOne(t *testing.T, m *Metrics, setup func(*connLimiter)) (*connLimiter, *limitedConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	l := newConnLimiter(ln, 4, m)
	setup(l)
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return l, c.(*limitedConn), peer
}

// blockingBody hands out its data, then blocks until release is closed.
type blockingBody struct {
	data    *strings.Reader
	reading chan struct{} // closed when the data is used up
	release chan struct{}
}

func (b *blockingBody) Read(p []byte) (int, error) {
	if b.data.Len() > 0 {
		return b.data.Read(p)
	}
	select {
	case <-b.reading:
	default:
		close(b.reading)
	}
	<-b.release
	return 0, io.ErrUnexpectedEOF
}

func (*blockingBody) Close() error { return nil }

// TestBodyMemoryFollowsBytes holds requests that announce 1 MiB and send a few KiB: each
// reserves only what it received, and a request beyond the in-flight budget is shed.
func TestBodyMemoryFollowsBytes(t *testing.T) {
	s := newTestServer(t, Options{FailurePolicy: FailDeny, MaxBodyBytes: 1 << 20, MaxInflightBodyBytes: 3 * bodyReserveStep}, true)
	const target = "/openim/callbackBeforeAddFriendCommand"
	hold := func(sent int) (release func()) {
		body := &blockingBody{data: strings.NewReader(strings.Repeat("x", sent)), reading: make(chan struct{}), release: make(chan struct{})}
		req := httptest.NewRequest("POST", target, nil)
		req.Body, req.ContentLength = body, 1<<20
		done := make(chan *httptest.ResponseRecorder)
		go func() {
			rec := httptest.NewRecorder()
			s.handler.ServeHTTP(rec, req)
			done <- rec
		}()
		<-body.reading
		return func() {
			close(body.release)
			if rec := <-done; rec.Code != http.StatusBadRequest {
				t.Errorf("held request: got %d %s, want 400 (the body ended early)", rec.Code, rec.Body)
			}
		}
	}
	releaseA := hold(100)
	if got := s.handler.budget.used.Load(); got != bodyReserveStep {
		t.Fatalf("in flight after 100 bytes of an announced 1 MiB: %d, want %d", got, bodyReserveStep)
	}
	releaseB := hold(bodyReserveStep + 1)
	if got := s.handler.budget.used.Load(); got != 3*bodyReserveStep {
		t.Fatalf("in flight: %d, want %d", got, 3*bodyReserveStep)
	}

	rec := s.do("POST", target, `{"fromUserID":"spam_1","toUserID":"bob"}`)
	want := `{"actionCode":0,"errCode":38000,"errMsg":"friend request could not be checked","errDlt":"friendgate: server busy: too many request bytes in flight","nextCode":1}`
	if rec.Code != http.StatusServiceUnavailable || rec.Body.String() != want || rec.Header().Get("Connection") != "close" {
		t.Fatalf("over the budget: got %d %s (Connection %q), want 503 %s and Connection: close", rec.Code, rec.Body, rec.Header().Get("Connection"), want)
	}
	if got := testutil.ToFloat64(s.metrics.shedBody); got != 1 {
		t.Fatalf("shed for body bytes = %v, want 1", got)
	}

	releaseA()
	releaseB()
	if got := s.handler.budget.used.Load(); got != 0 {
		t.Fatalf("in flight after every request was answered: %d, want 0", got)
	}
	rec = s.do("POST", target, `{"fromUserID":"spam_1","toUserID":"bob"}`)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"errCode":38001`) {
		t.Fatalf("after the budget was released: got %d %s, want the spammer denied", rec.Code, rec.Body)
	}
}

// TestTencentItemsOverBudget: a Tencent batch whose body fits the in-flight budget but
// whose decoded items do not is shed after its items are known, so it is answered in a
// 200 that Tencent reads, each item refused by the failure policy (Deny), and counted.
func TestTencentItemsOverBudget(t *testing.T) {
	s := newTestServer(t, Options{FailurePolicy: FailDeny, MaxBodyBytes: 1 << 20, MaxInflightBodyBytes: 2 * bodyReserveStep}, true)
	var items []string
	var want []string
	for i := range 64 {
		items = append(items, fmt.Sprintf(`{"To_Account":"u%d"}`, i))
		want = append(want, fmt.Sprintf(`{"To_Account":"u%d","ResultCode":38000,"ResultInfo":"friend request could not be checked"}`, i))
	}
	body := `{"From_Account":"alice","FriendItem":[` + strings.Join(items, ",") + `]}`
	if int64(len(body)) > bodyReserveStep || 64*itemCost <= bodyReserveStep {
		t.Fatalf("the body (%d bytes) must fit one reservation and its items (%d bytes) must not fit the rest", len(body), 64*itemCost)
	}
	rec := s.do("POST", "/tencent?SdkAppid=1&CallbackCommand=Sns.CallbackPrevFriendAdd", body)
	wantBody := `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"friendgate: server busy: too many request bytes in flight","ResultItem":[` + strings.Join(want, ",") + `]}`
	if rec.Code != http.StatusOK || rec.Body.String() != wantBody || rec.Header().Get("Connection") != "close" {
		t.Fatalf("got %d %s (Connection %q), want 200 %s and Connection: close", rec.Code, rec.Body, rec.Header().Get("Connection"), wantBody)
	}
	if got := testutil.ToFloat64(s.metrics.shedBody); got != 1 {
		t.Errorf("shed for body bytes = %v, want 1", got)
	}
	if got := s.handler.budget.used.Load(); got != 0 {
		t.Errorf("in flight after the answer: %d, want 0", got)
	}
}

// deadlineConn counts the deadlines set on it.
type deadlineConn struct {
	net.Conn
	reads, writes []time.Time
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.reads = append(c.reads, t)
	return nil
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.writes = append(c.writes, t)
	return nil
}

// TestDeadlineClears checks that a limited connection passes on every deadline except the
// clear of one not set, and that a busy connection keeps its deadline.
func TestDeadlineClears(t *testing.T) {
	at := time.Unix(1700000000, 0)
	var none time.Time
	for _, tc := range []struct {
		name       string
		busy       bool
		set        []time.Time
		wantPassed []time.Time
	}{
		{"clears of no deadline", false, []time.Time{none, none}, nil},
		{"set then cleared", false, []time.Time{none, at, none, none}, []time.Time{at, none}},
		{"moved, then cleared", false, []time.Time{at, at.Add(time.Second), none}, []time.Time{at, at.Add(time.Second), none}},
		{"busy keeps its deadline", true, []time.Time{none, at.Add(time.Hour), none}, []time.Time{at, at, at}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, write := range []bool{false, true} {
				if write && tc.busy {
					continue // only the read deadline is a busy connection's
				}
				conn := &deadlineConn{}
				c := &limitedConn{Conn: conn, busy: tc.busy, busyUntil: at, readSet: tc.busy}
				for _, d := range tc.set {
					if write {
						_ = c.SetWriteDeadline(d)
					} else {
						_ = c.SetReadDeadline(d)
					}
				}
				got := conn.reads
				if write {
					got = conn.writes
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.wantPassed) {
					t.Errorf("write %t: passed on %v, want %v", write, got, tc.wantPassed)
				}
			}
		})
	}
}

// TestDeadlineClearsOnRealConnection reads through a limited loopback connection whose
// read deadline passed: the read times out, and once the deadline is cleared (twice, the
// second skipped) the next read gets the peer's data.
func TestDeadlineClearsOnRealConnection(t *testing.T) {
	_, lc, peer := acceptOne(t, NewMetrics(prometheus.NewRegistry()), func(*connLimiter) {})
	if err := lc.SetReadDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	var ne net.Error
	if _, err := lc.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	for range 2 {
		if err := lc.SetReadDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := peer.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if n, err := lc.Read(make([]byte, 1)); n != 1 || err != nil {
		t.Fatalf("read after the clear: %d, %v", n, err)
	}
}
