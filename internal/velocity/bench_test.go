package velocity

import (
	"strconv"
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
}
