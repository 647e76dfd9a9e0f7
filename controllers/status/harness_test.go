package status_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/yaml"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/controllers/status"
	"github.com/friendgate/friendgate/internal/propagation"
	"github.com/friendgate/friendgate/internal/testenv"
)

const (
	// waitTimeout bounds every wait for the controller; generous for a loaded 2-core machine.
	waitTimeout = 30 * time.Second
	// caughtUp is the watermark of a replica that has applied every FriendPolicy change
	// the tests make.
	caughtUp = "999999999999"
)

// harness is a running status controller whose manager sees only one namespace, which
// also holds the replica Leases. Its clock, which Leases are renewed and expire on, moves
// only when a test steps it.
type harness struct {
	t     *testing.T
	ns    string
	clock *clocktesting.FakeClock
	// api reads and writes the API server directly.
	api client.Client
	// cached is the manager's client, reading through the controller's cache.
	cached client.Client
	r      *status.Reconciler
	events *eventLog
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	ns := env.NewNamespace(t, "status")
	var logs logBuffer
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Logger:                 funcr.New(logs.add, funcr.Options{}),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache: cache.Options{
			DefaultNamespaces: map[string]cache.Config{ns: {}},
			ByObject:          status.CacheByObject(ns),
		},
		// Every test runs the same controller in its own manager.
		Controller: config.Controller{SkipNameValidation: new(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{
		t:      t,
		ns:     ns,
		clock:  clocktesting.NewFakeClock(time.Now()),
		api:    env.Client,
		cached: mgr.GetClient(),
		events: &eventLog{EventRecorder: mgr.GetEventRecorder("friendgate-controller")},
	}
	h.r = &status.Reconciler{
		Client:   mgr.GetClient(),
		Recorder: h.events,
		Replicas: status.NewTracker(mgr.GetCache(), ns, h.clock),
		Clock:    h.clock,
	}
	if err := h.r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("controller log:\n%s", logs.String())
		}
	})
	testenv.StartManager(t, mgr)
	return h
}

// logBuffer keeps the manager's log, shown only when a test fails: a logger writing to
// t.Log would panic when a goroutine logs after the test ended.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) add(prefix, args string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, "%s %s %s\n", time.Now().Format("15:04:05.000"), prefix, args)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// eventLog passes Events on to the real recorder and keeps a copy, so tests can tell
// exactly which Events the reconciler emitted and when.
type eventLog struct {
	events.EventRecorder
	mu  sync.Mutex
	got []recordedEvent
}

type recordedEvent struct {
	Object, Type, Reason, Note string
}

func (l *eventLog) Eventf(regarding, related runtime.Object, eventType, reason, action, note string, args ...any) {
	l.mu.Lock()
	l.got = append(l.got, recordedEvent{regarding.(client.Object).GetName(), eventType, reason, fmt.Sprintf(note, args...)})
	l.mu.Unlock()
	l.EventRecorder.Eventf(regarding, related, eventType, reason, action, note, args...)
}

// of returns the Events emitted about the named policy, in order.
func (l *eventLog) of(name string) []recordedEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []recordedEvent
	for _, e := range l.got {
		if e.Object == name {
			out = append(out, e)
		}
	}
	return out
}

func (h *harness) createPolicy(name string, spec v1alpha1.FriendPolicySpec) *v1alpha1.FriendPolicy {
	h.t.Helper()
	fp := &v1alpha1.FriendPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: name}, Spec: spec}
	if err := h.api.Create(context.Background(), fp); err != nil {
		h.t.Fatalf("creating FriendPolicy %s: %v", name, err)
	}
	return fp
}

// updatePolicy changes a policy's spec and returns the policy as written.
func (h *harness) updatePolicy(name string, change func(*v1alpha1.FriendPolicySpec)) *v1alpha1.FriendPolicy {
	h.t.Helper()
	fp := &v1alpha1.FriendPolicy{}
	if err := h.api.Get(context.Background(), client.ObjectKey{Namespace: h.ns, Name: name}, fp); err != nil {
		h.t.Fatal(err)
	}
	change(&fp.Spec)
	if err := h.api.Update(context.Background(), fp); err != nil {
		h.t.Fatalf("updating FriendPolicy %s: %v", name, err)
	}
	return fp
}

// fakeReplica is a webhook replica as its Lease describes it.
type fakeReplica struct {
	id        string
	watermark string
	// limitsCounting is how it counts limits; unknown (the zero value) leaves the
	// annotation out, as an older replica does.
	limitsCounting propagation.Counting
	// age is how long before the harness clock's now the replica renewed.
	age      time.Duration
	duration time.Duration
}

// live is a replica that has just renewed a 30 s Lease.
func live(id, watermark string) fakeReplica {
	return fakeReplica{id: id, watermark: watermark, duration: 30 * time.Second}
}

// counting is a caught-up replica that has just renewed a 30 s Lease and counts limits so.
func counting(id string, c propagation.Counting) fakeReplica {
	r := live(id, caughtUp)
	r.limitsCounting = c
	return r
}

// setReplica creates or updates the replica's Lease as the webhook would.
func (h *harness) setReplica(r fakeReplica) {
	h.t.Helper()
	ctx := context.Background()
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: propagation.LeaseName(r.id)}}
	err := h.api.Get(ctx, client.ObjectKeyFromObject(l), l)
	if err != nil && !apierrors.IsNotFound(err) {
		h.t.Fatal(err)
	}
	propagation.Report{ID: r.id, Watermark: r.watermark, LimitsCounting: r.limitsCounting, Renewed: h.clock.Now().Add(-r.age), Duration: r.duration}.Write(l)
	if apierrors.IsNotFound(err) {
		err = h.api.Create(ctx, l)
	} else {
		err = h.api.Update(ctx, l)
	}
	if err != nil {
		h.t.Fatalf("writing the Lease of replica %s: %v", r.id, err)
	}
}

func (h *harness) createConfigMap(name string, labels map[string]string, users ...string) {
	h.t.Helper()
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: name, Labels: labels},
		Data:       map[string]string{"users.txt": strings.Join(users, "\n") + "\n"},
	}
	if err := h.api.Create(context.Background(), cm); err != nil {
		h.t.Fatalf("creating ConfigMap %s: %v", name, err)
	}
}

func (h *harness) updateConfigMap(name string, change func(*corev1.ConfigMap)) {
	h.t.Helper()
	cm := &corev1.ConfigMap{}
	if err := h.api.Get(context.Background(), client.ObjectKey{Namespace: h.ns, Name: name}, cm); err != nil {
		h.t.Fatal(err)
	}
	change(cm)
	if err := h.api.Update(context.Background(), cm); err != nil {
		h.t.Fatalf("updating ConfigMap %s: %v", name, err)
	}
}

func (h *harness) deleteConfigMap(name string) {
	h.t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: name}}
	if err := h.api.Delete(context.Background(), cm); err != nil {
		h.t.Fatalf("deleting ConfigMap %s: %v", name, err)
	}
}

// expectation is a check of a policy as read from the API server; it returns what does
// not match, or "".
type expectation func(fp *v1alpha1.FriendPolicy) string

// waitFor polls the policy until every expectation holds and returns it, or fails the
// test after waitTimeout showing what still differs and the status.
func (h *harness) waitFor(name string, want ...expectation) *v1alpha1.FriendPolicy {
	h.t.Helper()
	var fp *v1alpha1.FriendPolicy
	testenv.Eventually(h.t, waitTimeout, "FriendPolicy "+h.ns+"/"+name, func() (bool, string) {
		fp = &v1alpha1.FriendPolicy{}
		if err := h.api.Get(context.Background(), client.ObjectKey{Namespace: h.ns, Name: name}, fp); err != nil {
			return false, err.Error()
		}
		for _, w := range want {
			if m := w(fp); m != "" {
				st, _ := yaml.Marshal(fp.Status)
				return false, m + "\nstatus:\n" + string(st)
			}
		}
		return true, ""
	})
	return fp
}

// ready expects the current generation reported with this Ready status, reason and
// enforced count.
func ready(cond metav1.ConditionStatus, reason, enforced string) expectation {
	return func(fp *v1alpha1.FriendPolicy) string {
		c := meta.FindStatusCondition(fp.Status.Conditions, v1alpha1.ConditionReady)
		switch {
		case fp.Status.ObservedGeneration != fp.Generation:
			return fmt.Sprintf("observedGeneration %d, generation %d", fp.Status.ObservedGeneration, fp.Generation)
		case c == nil:
			return "no Ready condition"
		case c.ObservedGeneration != fp.Generation:
			return fmt.Sprintf("Ready describes generation %d, not %d", c.ObservedGeneration, fp.Generation)
		case c.Status != cond || c.Reason != reason || fp.Status.Enforced != enforced:
			return fmt.Sprintf("Ready=%s %s enforced %q, want Ready=%s %s enforced %q", c.Status, c.Reason, fp.Status.Enforced, cond, reason, enforced)
		}
		// kstatus: Stalled=True exactly while only a change of the policy or its lists helps.
		stalled := meta.FindStatusCondition(fp.Status.Conditions, v1alpha1.ConditionStalled)
		wantStalled := reason == v1alpha1.ReasonInvalid || reason == v1alpha1.ReasonListError
		if gotStalled := stalled != nil && stalled.Status == metav1.ConditionTrue && stalled.Reason == reason; gotStalled != wantStalled {
			return fmt.Sprintf("Stalled condition %+v with Ready reason %s", stalled, reason)
		}
		return ""
	}
}

// message expects Ready's message to contain every part.
func message(parts ...string) expectation {
	return func(fp *v1alpha1.FriendPolicy) string {
		c := meta.FindStatusCondition(fp.Status.Conditions, v1alpha1.ConditionReady)
		if c == nil {
			return "no Ready condition"
		}
		for _, p := range parts {
			if !strings.Contains(c.Message, p) {
				return fmt.Sprintf("Ready message %q lacks %q", c.Message, p)
			}
		}
		return ""
	}
}

// limitsShared expects the LimitsShared condition with this status and reason, and
// status.limitsCounting; an empty cond expects neither the condition nor the field.
func limitsShared(cond metav1.ConditionStatus, reason, counting string) expectation {
	return func(fp *v1alpha1.FriendPolicy) string {
		c := meta.FindStatusCondition(fp.Status.Conditions, v1alpha1.ConditionLimitsShared)
		switch {
		case cond == "" && (c != nil || fp.Status.LimitsCounting != ""):
			return fmt.Sprintf("LimitsShared %+v, limitsCounting %q, want neither", c, fp.Status.LimitsCounting)
		case cond == "":
			return ""
		case c == nil:
			return "no LimitsShared condition"
		case c.ObservedGeneration != fp.Generation:
			return fmt.Sprintf("LimitsShared describes generation %d, not %d", c.ObservedGeneration, fp.Generation)
		case c.Status != cond || c.Reason != reason || fp.Status.LimitsCounting != counting:
			return fmt.Sprintf("LimitsShared=%s %s limitsCounting %q, want LimitsShared=%s %s limitsCounting %q",
				c.Status, c.Reason, fp.Status.LimitsCounting, cond, reason, counting)
		}
		return ""
	}
}

// limitsMessage expects LimitsShared's message to be this.
func limitsMessage(want string) expectation {
	return func(fp *v1alpha1.FriendPolicy) string {
		c := meta.FindStatusCondition(fp.Status.Conditions, v1alpha1.ConditionLimitsShared)
		if c == nil || c.Message != want {
			return fmt.Sprintf("LimitsShared %+v, want message %q", c, want)
		}
		return ""
	}
}

// entries expects these blocklist entry and ConfigMap counts.
func entries(n int64, configMaps ...string) expectation {
	return func(fp *v1alpha1.FriendPolicy) string {
		if fp.Status.BlocklistEntries != n || strings.Join(fp.Status.ConfigMaps, ",") != strings.Join(configMaps, ",") {
			return fmt.Sprintf("blocklistEntries %d configMaps %v, want %d %v", fp.Status.BlocklistEntries, fp.Status.ConfigMaps, n, configMaps)
		}
		return ""
	}
}

// waitForCache waits until the controller's cache holds the policy as the API server does,
// so a reconcile reads what the test just read.
func (h *harness) waitForCache(fp *v1alpha1.FriendPolicy) {
	h.t.Helper()
	testenv.Eventually(h.t, waitTimeout, "the cache to hold FriendPolicy "+fp.Name+" at resourceVersion "+fp.ResourceVersion, func() (bool, string) {
		cached := &v1alpha1.FriendPolicy{}
		if err := h.cached.Get(context.Background(), client.ObjectKeyFromObject(fp), cached); err != nil {
			return false, err.Error()
		}
		return cached.ResourceVersion == fp.ResourceVersion, "resourceVersion " + cached.ResourceVersion
	})
}

// waitForSummary waits until the summary ConfigMap names exactly these serving replicas.
func (h *harness) waitForSummary(ids ...string) {
	h.t.Helper()
	h.waitForSummaryData("the summary to name "+strings.Join(ids, ", "), func(data map[string]string) bool {
		return data[status.SummaryKeyServing] == lines(ids) && data[status.SummaryKeyReplicas] == fmt.Sprint(len(ids))
	})
}

// waitForCountingAlone waits until the summary ConfigMap names exactly these replicas as
// counting limits alone.
func (h *harness) waitForCountingAlone(ids ...string) {
	h.t.Helper()
	h.waitForSummaryData("the summary to name "+strings.Join(ids, ", ")+" as counting limits alone", func(data map[string]string) bool {
		return data[status.SummaryKeyCountingLimitsAlone] == lines(ids)
	})
}

func (h *harness) waitForSummaryData(what string, ok func(map[string]string) bool) {
	h.t.Helper()
	testenv.Eventually(h.t, waitTimeout, what, func() (bool, string) {
		cm := &corev1.ConfigMap{}
		if err := h.api.Get(context.Background(), client.ObjectKey{Namespace: h.ns, Name: status.SummaryName}, cm); err != nil {
			return false, err.Error()
		}
		return ok(cm.Data), fmt.Sprintf("%v", cm.Data)
	})
}

// lines is the summary's list of IDs, one a line.
func lines(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return strings.Join(ids, "\n") + "\n"
}

// deleteReplica deletes the replica's Lease, as a replica does on graceful shutdown.
func (h *harness) deleteReplica(id string) {
	h.t.Helper()
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: propagation.LeaseName(id)}}
	if err := h.api.Delete(context.Background(), l); err != nil {
		h.t.Fatalf("deleting the Lease of replica %s: %v", id, err)
	}
}

// writeLog is every write of a FriendPolicy of the harness's namespace seen through a
// watch, as "Ready status/reason", by policy name.
type writeLog struct {
	mu     sync.Mutex
	writes map[string][]string
}

func (w *writeLog) of(name string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.writes[name])
}

// recordWrites watches the namespace's FriendPolicies from now until the test ends.
func (h *harness) recordWrites() *writeLog {
	h.t.Helper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		h.t.Fatal(err)
	}
	w, err := wc.Watch(context.Background(), &v1alpha1.FriendPolicyList{}, client.InNamespace(h.ns))
	if err != nil {
		h.t.Fatal(err)
	}
	log := &writeLog{writes: map[string][]string{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			fp, ok := ev.Object.(*v1alpha1.FriendPolicy)
			if !ok || ev.Type != watch.Modified {
				continue
			}
			state := "no Ready"
			if c := meta.FindStatusCondition(fp.Status.Conditions, v1alpha1.ConditionReady); c != nil {
				state = string(c.Status) + "/" + c.Reason
			}
			log.mu.Lock()
			log.writes[fp.Name] = append(log.writes[fp.Name], state)
			log.mu.Unlock()
		}
	}()
	h.t.Cleanup(func() { w.Stop(); <-done })
	return log
}

// reconcileAll runs the reconciler once for each policy, as an announcement that
// enqueued them would.
func (h *harness) reconcileAll(policies ...*v1alpha1.FriendPolicy) {
	h.t.Helper()
	for _, fp := range policies {
		if _, err := h.r.Reconcile(context.Background(), reconcile.Request{NamespacedName: client.ObjectKeyFromObject(fp)}); err != nil {
			h.t.Fatalf("Reconcile %s: %v", fp.Name, err)
		}
	}
}
