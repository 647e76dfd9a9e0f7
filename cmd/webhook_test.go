package cmd

import (
	"context"
	"testing"
	"time"

	"github.com/friendgate/friendgate/internal/propagation"
	"github.com/friendgate/friendgate/internal/velocity"
)

// modeCounter is a counter whose mode a test sets; it counts nothing.
type modeCounter struct{ mode velocity.Mode }

func (c *modeCounter) Take(*velocity.Limit, velocity.Subject, time.Time) velocity.Outcome {
	return velocity.Counted
}
func (c *modeCounter) Mode() velocity.Mode     { return c.mode }
func (c *modeCounter) Run(ctx context.Context) { <-ctx.Done() }

// TestLimitsCounting: the replica's Lease follows the counter's mode as it changes.
func TestLimitsCounting(t *testing.T) {
	c := &modeCounter{mode: velocity.Shared}
	srv := &callbackServer{counter: c}
	for _, step := range []struct {
		mode velocity.Mode
		want propagation.Counting
	}{
		{velocity.Shared, propagation.CountingShared},
		{velocity.Local, propagation.CountingLocal}, // Redis failed
		{velocity.Shared, propagation.CountingShared},
	} {
		c.mode = step.mode
		if got := srv.limitsCounting(); got != step.want {
			t.Errorf("mode %v: %q, want %q", step.mode, got, step.want)
		}
	}
}
