// Package runnable adapts functions to controller-runtime manager Runnables.
package runnable

import "context"

// OnEveryReplica is a manager Runnable that runs whether or not this process is the
// leader: controller-runtime runs a Runnable that does not say so on the leader only.
type OnEveryReplica func(context.Context) error

// Start runs the function until ctx is done.
func (f OnEveryReplica) Start(ctx context.Context) error { return f(ctx) }

// NeedLeaderElection is false: every replica runs it.
func (OnEveryReplica) NeedLeaderElection() bool { return false }
