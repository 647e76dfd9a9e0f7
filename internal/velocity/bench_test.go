package velocity

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkLocalTake counts requests of subjects already tracked, as a steady flow of
// callbacks does: the cost a limit adds to a decision.
func BenchmarkLocalTake(b *testing.B) {
	l := &Limit{ID: "default/anti-spam/requests-per-sender", Rate: 1 << 40, Window: 1000 * time.Hour}
	subjects := make([]Subject, 1024)
	c := NewLocal(LocalOptions{})
	for i := range subjects {
		subjects[i] = Subject{AppID: "1400000000", A: "user" + strconv.Itoa(i)}
		c.Take(l, subjects[i], t0)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			c.Take(l, subjects[i%len(subjects)], t0)
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				c.Take(l, subjects[i%len(subjects)], t0)
				i++
			}
		})
	})
	// One subject from every core: the worst contention, on one shard's mutex.
	b.Run("parallel-one-subject", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.Take(l, subjects[0], t0)
			}
		})
	})
}

// BenchmarkRedisTake counts requests of distinct subjects in a local redis-server: one
// round trip each, from 1 goroutine (serial) or 2×GOMAXPROCS and 16×GOMAXPROCS at once
// (concurrent callbacks). Besides ns/op it reports p99-ns, the 99th percentile of a
// Take's duration, and the CPU time per Take of this process (client-cpu-ns/op) and of
// redis-server (redis-cpu-ns/op), which a busy machine's wall times hide.
func BenchmarkRedisTake(b *testing.B) {
	srv := startRedis(b)
	l := &Limit{ID: "default/anti-spam/requests-per-sender", Rate: 1 << 40, Window: 1000 * time.Hour}
	subjects := make([]Subject, 1024)
	for i := range subjects {
		subjects[i] = Subject{AppID: "1400000000", A: "user" + strconv.Itoa(i)}
	}
	// A budget far beyond any round trip, so that every Take is measured in Redis.
	c := newTestRedis(b, srv, RedisOptions{Budget: time.Second})
	c.Take(l, subjects[0], t0)
	for _, parallelism := range []int{0, 2, 16} {
		name := "serial"
		if parallelism > 0 {
			name = fmt.Sprintf("parallel-%dx", parallelism)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var mu sync.Mutex
			var all []time.Duration
			var next atomic.Int64
			take := func() time.Duration {
				i := next.Add(1)
				start := time.Now()
				c.Take(l, subjects[i%int64(len(subjects))], t0)
				return time.Since(start)
			}
			clientCPU, redisCPU := processCPU(b), pidCPU(b, srv.cmd.Process.Pid)
			b.ResetTimer()
			if parallelism == 0 {
				all = make([]time.Duration, 0, b.N)
				for range b.N {
					all = append(all, take())
				}
			} else {
				b.SetParallelism(parallelism)
				b.RunParallel(func(pb *testing.PB) {
					var durations []time.Duration
					for pb.Next() {
						durations = append(durations, take())
					}
					mu.Lock()
					all = append(all, durations...)
					mu.Unlock()
				})
			}
			b.StopTimer()
			b.ReportMetric(float64(processCPU(b)-clientCPU)/float64(b.N), "client-cpu-ns/op")
			b.ReportMetric(float64(pidCPU(b, srv.cmd.Process.Pid)-redisCPU)/float64(b.N), "redis-cpu-ns/op")
			slices.Sort(all)
			b.ReportMetric(float64(all[len(all)*99/100]), "p99-ns")
			if c.Mode() != Shared {
				b.Fatal("a Take failed: the counter counts locally")
			}
		})
	}
}

// processCPU is this process's CPU time (user and system) in nanoseconds.
func processCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// pidCPU is a process's CPU time (user and system) in nanoseconds, from /proc, in
// clock ticks of 10ms (Linux's USER_HZ of 100).
func pidCPU(b *testing.B, pid int) int64 {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command, which is in parentheses: utime and stime are the 12th
	// and 13th.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		ticks += n
	}
	return ticks * int64(10*time.Millisecond)
}
