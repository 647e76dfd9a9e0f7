package velocity

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
)

// Defaults of LocalOptions.
const (
	DefaultMaxKeys       = 1_000_000
	DefaultSweepInterval = time.Minute
)

// LocalOptions configure a LocalCounter. The zero value is usable.
type LocalOptions struct {
	// MaxKeys bounds the subjects tracked at once (default DefaultMaxKeys). When the
	// table is full, requests of new subjects are Counted without being tracked, and
	// friendgate_velocity_untracked_total counts them.
	MaxKeys int
	// Clock drives Run's sweeps (default the real clock).
	Clock clock.WithTicker
	// SweepInterval is how often Run removes the subjects that have nothing left to
	// remember (default DefaultSweepInterval).
	SweepInterval time.Duration
	// Registerer, when set, registers the counter's metrics (it panics on a duplicate,
	// as prometheus.MustRegister does).
	Registerer prometheus.Registerer
}

// LocalCounter counts in this process's memory with the generic cell rate algorithm
// (GCRA). It is safe for concurrent use; a Take of a subject already tracked allocates
// nothing.
type LocalCounter struct {
	t             *table[cell]
	clock         clock.WithTicker
	sweepInterval time.Duration
	untracked     prometheus.Counter
}

// cell is the state of one subject of one limit, in Unix nanoseconds.
type cell struct {
	// tat is the theoretical arrival time: when the subject's allowance is whole again.
	tat int64
	// penaltyUntil is when the subject's penalty ends.
	penaltyUntil int64
}

// NewLocal returns a LocalCounter; Run must run for it to forget idle subjects.
func NewLocal(opts LocalOptions) *LocalCounter {
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = DefaultSweepInterval
	}
	c := &LocalCounter{
		t:             newTable[cell](opts.MaxKeys),
		clock:         opts.Clock,
		sweepInterval: opts.SweepInterval,
		untracked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "friendgate_velocity_untracked_total",
			Help: "Requests counted without being tracked because the local table of subjects was full.",
		}),
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(c.untracked, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "friendgate_velocity_local_subjects",
			Help: "Subjects of limits tracked in this replica's memory.",
		}, func() float64 { return float64(c.t.len()) }))
	}
	return c
}

// Take counts one request of s against l at now.
func (c *LocalCounter) Take(l *Limit, s Subject, now time.Time) Outcome {
	interval, ok := l.interval()
	if !ok {
		return Counted
	}
	k := makeKey(l, s)
	sh := c.t.shard(&k)
	n := now.UnixNano()
	sh.mu.Lock()
	e := sh.m[k]
	if e == nil {
		if e = c.t.insertLocked(sh, k); e == nil {
			sh.mu.Unlock()
			c.untracked.Inc()
			return Counted
		}
	}
	o := e.take(n, int64(interval), int64(l.Window), int64(l.Penalty))
	sh.mu.Unlock()
	return o
}

// take applies GCRA to one request at n: it is allowed when the theoretical arrival
// time it would push to stays within a window of n, so Rate requests may come back to
// back and then one every interval.
func (e *cell) take(n, interval, window, penalty int64) Outcome {
	if e.penaltyUntil > n {
		return Penalized
	}
	next := max(e.tat, n) + interval
	if next-n > window {
		if penalty > 0 {
			e.penaltyUntil = n + penalty
		}
		return Over
	}
	e.tat = next
	return Counted
}

// Mode returns Local.
func (c *LocalCounter) Mode() Mode { return Local }

// Sweep forgets the subjects whose allowance is whole and penalty over at now: for
// them, no entry and their entry answer alike.
func (c *LocalCounter) Sweep(now time.Time) {
	n := now.UnixNano()
	c.t.sweep(func(e *cell) bool { return e.tat <= n && e.penaltyUntil <= n })
}

// Len is the number of subjects tracked.
func (c *LocalCounter) Len() int { return c.t.len() }

// Run sweeps every SweepInterval until ctx is done.
func (c *LocalCounter) Run(ctx context.Context) {
	t := c.clock.NewTicker(c.sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C():
			c.Sweep(now)
		}
	}
}

// minInterval is the shortest time between two requests a limit may allow on average;
// the Redis counter counts in microseconds.
const minInterval = time.Microsecond

// Validate reports what is wrong with l, naming the field.
func (l *Limit) Validate() error {
	switch {
	case l.ID == "":
		return errors.New("Limit.ID: empty")
	case l.Rate < 1:
		return errors.New("Limit.Rate: must be at least 1")
	case l.Window <= 0:
		return errors.New("Limit.Window: must be positive")
	case l.Window/time.Duration(l.Rate) < minInterval:
		return errors.New("Limit.Window: must be at least a microsecond per request of Rate")
	case l.Penalty < 0:
		return errors.New("Limit.Penalty: must not be negative")
	}
	return nil
}

// interval is the emission interval, Window/Rate; ok is false for a limit that fails
// Validate, which counters count nothing against (every request is Counted), because a
// callback must be answered even when a policy was compiled wrong.
func (l *Limit) interval() (time.Duration, bool) {
	if l.Rate < 1 || l.Window <= 0 || l.Penalty < 0 {
		return 0, false
	}
	i := l.Window / time.Duration(l.Rate)
	return i, i >= minInterval
}
