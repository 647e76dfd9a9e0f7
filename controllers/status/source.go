package status

import (
	"context"
	"errors"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// Source returns the Tracker as a source for the status controller: h gets one generic
// event per Change.
//
// The Tracker is a syncing source rather than a manager Runnable so that the controller
// starts its workers only once the Lease informer has synced: a reconcile before that
// would see no replica and flash NoReplicas on every policy at each leader change. It
// also runs only on the leader, with the controller. A Tracker can be started once.
func (t *Tracker) Source(h handler.TypedEventHandler[Change, reconcile.Request]) source.TypedSyncingSource[reconcile.Request] {
	return &trackerSource{tracker: t, handler: h, synced: make(chan error, 1)}
}

type trackerSource struct {
	tracker *Tracker
	handler handler.TypedEventHandler[Change, reconcile.Request]
	// synced gets the error that stopped the start, or is closed once the Tracker holds
	// every Lease the informer listed.
	synced      chan error
	cancelStart context.CancelFunc
}

func (s *trackerSource) String() string {
	return fmt.Sprintf("webhook replica Leases in namespace %q", s.tracker.namespace)
}

// Start implements source.Source; it returns at once and follows the Leases until ctx ends.
func (s *trackerSource) Start(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	if !s.tracker.started.CompareAndSwap(false, true) {
		return errors.New("the replica Lease tracker is already started")
	}
	// GetInformer blocks until the informer syncs, which may never happen (RBAC):
	// WaitForSync cancels it when the controller gives up.
	ctx, s.cancelStart = context.WithCancel(ctx)
	go func() {
		inf, err := s.tracker.informers.GetInformer(ctx, &coordinationv1.Lease{})
		if err != nil {
			s.synced <- fmt.Errorf("getting the Lease informer: %w", err)
			return
		}
		reg, err := inf.AddEventHandler(s.tracker.eventHandler())
		if err != nil {
			s.synced <- fmt.Errorf("watching Leases: %w", err)
			return
		}
		defer func() { _ = inf.RemoveEventHandler(reg) }()
		if !toolscache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
			s.synced <- errors.New("the Lease informer did not sync")
			return
		}
		close(s.synced)
		s.tracker.run(ctx, func(c Change) {
			s.handler.Generic(ctx, event.TypedGenericEvent[Change]{Object: c}, q)
		})
	}()
	return nil
}

// WaitForSync implements source.TypedSyncingSource.
func (s *trackerSource) WaitForSync(ctx context.Context) error {
	select {
	case err := <-s.synced:
		return err
	case <-ctx.Done():
		s.cancelStart()
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil
		}
		return fmt.Errorf("timed out waiting for %s to sync", s)
	}
}
