package webhook

import (
	"context"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"github.com/friendgate/friendgate/internal/testenv"
)

// The Date header is the current second's, in the format of RFC 9110, and turns over
// when the second does.
func TestDateHeader(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Date(2026, 12, 2, 23, 59, 58, 700e6, time.FixedZone("CET", 3600)))
	d := newDateHeader(clk)
	check := func(step, want string) {
		t.Helper()
		if got := d.get(); len(got) != 1 || got[0] != want {
			t.Fatalf("%s: Date %q, want [%q]", step, got, want)
		}
	}
	check("at the start", "Wed, 02 Dec 2026 22:59:58 GMT")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		d.run(ctx)
		close(done)
	}()
	// turn waits until run waits for the next second, steps the clock by step and, when
	// that reaches the next second, until run has set its Date.
	turn := func(step time.Duration, want string) {
		t.Helper()
		testenv.Eventually(t, 10*time.Second, "run to wait for the next second", func() (bool, string) {
			return clk.HasWaiters(), "no timer set"
		})
		clk.Step(step)
		testenv.Eventually(t, 10*time.Second, "the Date "+want, func() (bool, string) {
			got := d.get()[0]
			return got == want, got
		})
	}
	turn(299*time.Millisecond, "Wed, 02 Dec 2026 22:59:58 GMT")
	check("1 ms before the second", "Wed, 02 Dec 2026 22:59:58 GMT")
	turn(time.Millisecond, "Wed, 02 Dec 2026 22:59:59 GMT")
	turn(time.Second, "Wed, 02 Dec 2026 23:00:00 GMT")
	turn(25*time.Hour, "Fri, 04 Dec 2026 00:00:00 GMT")

	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its context was done")
	}
}
