package cluster

import (
	"context"
	"slices"
	"sync"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/propagation"
)

// policy reads a FriendPolicy of policyNamespace.
func (c *cluster) policy(t *testing.T, name string) *v1alpha1.FriendPolicy {
	t.Helper()
	fp := &v1alpha1.FriendPolicy{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: policyNamespace, Name: name}, fp); err != nil {
		t.Fatal(err)
	}
	return fp
}

// watchObjects watches list's kind in namespace from now until the test ends, calling
// seen for every event.
func watchObjects(t *testing.T, namespace string, list client.ObjectList, seen func(watch.Event)) {
	t.Helper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	// From the collection's current resourceVersion: no initial ADDED event per object
	// (thousands in TestScale), and no change after now missed.
	if err := wc.List(context.Background(), list, client.InNamespace(namespace), client.Limit(1)); err != nil {
		t.Fatal(err)
	}
	w, err := wc.Watch(context.Background(), list, client.InNamespace(namespace),
		&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.GetResourceVersion()}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			seen(ev)
		}
	}()
	t.Cleanup(func() { w.Stop(); <-done })
}

// writeLog is every write of the FriendPolicies of a namespace, as "Ready status/reason"
// after the write, by policy name.
type writeLog struct {
	mu     sync.Mutex
	writes map[string][]string
}

func watchWrites(t *testing.T, namespace string) *writeLog {
	t.Helper()
	log := &writeLog{writes: map[string][]string{}}
	watchObjects(t, namespace, &v1alpha1.FriendPolicyList{}, func(ev watch.Event) {
		fp, ok := ev.Object.(*v1alpha1.FriendPolicy)
		if !ok || ev.Type != watch.Modified {
			return
		}
		log.mu.Lock()
		log.writes[fp.Name] = append(log.writes[fp.Name], readyState(fp))
		log.mu.Unlock()
	})
	return log
}

func (w *writeLog) of(name string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.writes[name])
}

// readyState is "status/reason" of a policy's Ready condition.
func readyState(fp *v1alpha1.FriendPolicy) string {
	c := meta.FindStatusCondition(fp.Status.Conditions, v1alpha1.ConditionReady)
	if c == nil {
		return "no Ready"
	}
	return string(c.Status) + "/" + c.Reason
}

// leaseLog keeps the first version of every replica Lease created in a namespace.
type leaseLog struct {
	mu      sync.Mutex
	created map[string]propagation.Status
}

func watchLeases(t *testing.T, namespace string) *leaseLog {
	t.Helper()
	log := &leaseLog{created: map[string]propagation.Status{}}
	watchObjects(t, namespace, &coordinationv1.LeaseList{}, func(ev watch.Event) {
		l, ok := ev.Object.(*coordinationv1.Lease)
		if !ok || ev.Type != watch.Added {
			return
		}
		st, ok := propagation.FromLease(l)
		if !ok {
			return
		}
		log.mu.Lock()
		if _, seen := log.created[l.Name]; !seen {
			log.created[l.Name] = st
		}
		log.mu.Unlock()
	})
	return log
}

func (l *leaseLog) first(name string) (propagation.Status, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.created[name]
	return st, ok
}
