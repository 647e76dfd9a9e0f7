package cluster

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/testenv"
)

// clockTicks is the unit of utime and stime in /proc/<pid>/stat (USER_HZ, 100 on Linux).
const clockTicks = 100

// settle is how long an event is watched after its change is reflected in the summary,
// for the writes and rebuilds it causes afterwards to be counted.
const settle = 5 * time.Second

// TestScale measures what a webhook replica joining and leaving costs with N policies,
// the table of docs/operator.md ("Scale"). It is a measurement, not a check, so it runs
// only when asked for: FRIENDGATE_E2E_SCALE lists the Ns (make measure-scale).
func TestScale(t *testing.T) {
	ns := os.Getenv("FRIENDGATE_E2E_SCALE")
	if ns == "" {
		t.Skip("a measurement: run with FRIENDGATE_E2E_SCALE=100,1000,5000 (make measure-scale)")
	}
	for _, field := range strings.Split(ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || n < 1 {
			t.Fatalf("FRIENDGATE_E2E_SCALE: %q is not a number of policies", field)
		}
		t.Run(fmt.Sprintf("N=%d", n), func(t *testing.T) { measureScale(t, n) })
	}
}

func measureScale(t *testing.T, n int) {
	ns := fmt.Sprintf("scale-%d", n)
	if err := env.EnsureNamespace(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	c := install(t, 2)
	begin := time.Now()
	createScalePolicies(t, ns, n)
	waitAllEnforced(t, ns, n)
	t.Logf("N=%d: %d policies created and enforced by both replicas in %s", n, n, time.Since(begin).Round(time.Second))
	t.Cleanup(func() {
		if err := env.Client.DeleteAllOf(context.Background(), &v1alpha1.FriendPolicy{}, client.InNamespace(ns)); err != nil {
			t.Error(err)
		}
	})
	// Let the Lease reports of the last status writes go out before measuring.
	time.Sleep(3 * time.Second)
	rss := rssBytes(t, c.replicas[0].cmd.Process.Pid)

	// A third replica joins.
	var (
		joiner     *process
		joinerPort int
		coldStart  time.Duration
	)
	join := measureEvent(t, c, ns, func() time.Time {
		started := time.Now()
		joiner, joinerPort = c.startReplica(t, "replica-3")
		waitReady(t, joiner, joinerPort)
		coldStart = time.Since(started)
		return time.Now()
	}, "replica-1", "replica-2", "replica-3")
	joinerCPU := cpuTime(t, joiner.cmd.Process.Pid)
	joinerRSS := rssBytes(t, joiner.cmd.Process.Pid)

	// It stops with SIGTERM, as in a scale-down or a rollout.
	leave := measureEvent(t, c, ns, func() time.Time {
		at := time.Now()
		joiner.signal(syscall.SIGTERM)
		return at
	}, "replica-1", "replica-2")

	edit := measureEdit(t, c, ns)

	line := fmt.Sprintf("scale n=%d join_reflected=%s join_writes=%d join_left_ready=%d join_builds=%s join_cpu=%s join_controller_cpu=%s "+
		"joiner_ready=%s joiner_cpu=%s joiner_rss_mib=%.0f "+
		"leave_reflected=%s leave_writes=%d leave_left_ready=%d leave_builds=%s leave_cpu=%s leave_controller_cpu=%s "+
		"replica_rss_mib=%.0f edit_median=%s edit_max=%s edit_after_apply_median=%s edit_status_writes=%d\n",
		n, join.reflected, join.writes, join.leftReady, join.builds, join.cpu, join.controllerCPU,
		coldStart.Round(time.Millisecond), joinerCPU, float64(joinerRSS)/(1<<20),
		leave.reflected, leave.writes, leave.leftReady, leave.builds, leave.cpu, leave.controllerCPU,
		float64(rss)/(1<<20), edit.median, edit.longest, edit.afterApply, edit.statusWrites)
	t.Log(strings.TrimSpace(line))
	if report := os.Getenv("FRIENDGATE_E2E_REPORT"); report != "" {
		if err := appendFile(report, line); err != nil {
			t.Error(err)
		}
	}
}

// scalePolicy is policy i of the measurement, scoped to its own appID: 20 users, one
// wording rule, one CEL rule.
func scalePolicy(ns string, i int, extraUsers ...string) *v1alpha1.FriendPolicy {
	users := make([]string, 0, 20+len(extraUsers))
	for j := range 20 {
		users = append(users, fmt.Sprintf("u%d_%d", i, j))
	}
	users = append(users, extraUsers...)
	return &v1alpha1.FriendPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("p-%d", i)},
		Spec: v1alpha1.FriendPolicySpec{
			AppIDs:     []string{fmt.Sprintf("app-%d", i)},
			Blocklists: []v1alpha1.Blocklist{{Name: "b", Users: users}},
			Rules: []v1alpha1.Rule{
				{Name: "links", WordingPatterns: []string{`https?://`}},
				{Name: "long", When: `size(request.wording) > 200`},
			},
		},
	}
}

// createScalePolicies creates policies 0..n-1 with a few concurrent clients.
func createScalePolicies(t *testing.T, ns string, n int) {
	t.Helper()
	const workers = 8
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := env.Client.Create(context.Background(), scalePolicy(ns, i)); err != nil {
					errs <- fmt.Errorf("creating policy %d: %w", i, err)
					return
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// waitAllEnforced waits until the n policies of ns are Ready at their generation.
func waitAllEnforced(t *testing.T, ns string, n int) {
	t.Helper()
	testenv.Eventually(t, 30*time.Minute, fmt.Sprintf("%d policies to be Ready", n), func() (bool, string) {
		var list v1alpha1.FriendPolicyList
		if err := env.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		ready := 0
		for i := range list.Items {
			fp := &list.Items[i]
			if c := meta.FindStatusCondition(fp.Status.Conditions, v1alpha1.ConditionReady); c != nil &&
				c.Status == metav1.ConditionTrue && c.ObservedGeneration == fp.Generation {
				ready++
			}
		}
		return ready == n, fmt.Sprintf("%d/%d Ready", ready, n)
	})
}

// eventCost is what one replica event cost.
type eventCost struct {
	// reflected is the time from the event (the joiner's /readyz turning OK, or SIGTERM)
	// until the summary names the serving replicas.
	reflected time.Duration
	// writes are the FriendPolicy writes in the namespace while the event was watched;
	// leftReady the policies written with Ready other than True.
	writes, leftReady int
	// builds and cpu are, per replica that served before and after (replica-1, replica-2),
	// its snapshot builds and CPU time while the event was watched.
	builds, cpu   string
	controllerCPU time.Duration
}

// measureEvent watches the replicas event makes (it returns when the event happened)
// until the summary names serving and settle has passed.
func measureEvent(t *testing.T, c *cluster, ns string, event func() time.Time, serving ...string) eventCost {
	t.Helper()
	writes := watchWrites(t, ns)
	before := c.replicaCounters(t)
	controllerBefore := cpuTime(t, c.controller.cmd.Process.Pid)
	at := event()
	c.waitServing(t, systemNamespace, serving...)
	cost := eventCost{reflected: time.Since(at).Round(time.Millisecond)}
	time.Sleep(settle)
	after := c.replicaCounters(t)
	cost.controllerCPU = cpuTime(t, c.controller.cmd.Process.Pid) - controllerBefore
	var builds, cpu []string
	for i := range before {
		builds = append(builds, strconv.FormatFloat(after[i].builds-before[i].builds, 'f', 0, 64))
		cpu = append(cpu, (after[i].cpu - before[i].cpu).String())
	}
	cost.builds, cost.cpu = strings.Join(builds, ","), strings.Join(cpu, ",")
	writes.mu.Lock()
	defer writes.mu.Unlock()
	for _, states := range writes.writes {
		cost.writes += len(states)
		for _, s := range states {
			if s != "True/"+v1alpha1.ReasonEnforced {
				cost.leftReady++
				break
			}
		}
	}
	return cost
}

type replicaCounter struct {
	builds float64
	cpu    time.Duration
}

// replicaCounters reads the snapshot builds and CPU time of the cluster's replicas.
func (c *cluster) replicaCounters(t *testing.T) []replicaCounter {
	t.Helper()
	out := make([]replicaCounter, len(c.replicas))
	for i, p := range c.replicas {
		out[i] = replicaCounter{
			builds: metricValue(t, p, "friendgate_snapshot_reloads_total"),
			cpu:    cpuTime(t, p.cmd.Process.Pid),
		}
	}
	return out
}

// edits is how many single-policy edits are timed.
const edits = 5

// editCost is what one policy edit cost: the time from the start of kubectl apply until
// both replicas deny the added user (median and longest), the same from kubectl's return
// (what the operator adds to the API request), and the most status writes one edit caused.
type editCost struct {
	median, longest, afterApply time.Duration
	statusWrites                int
}

// measureEdit adds a user to policy 0 with kubectl apply, edits times.
func measureEdit(t *testing.T, c *cluster, ns string) editCost {
	t.Helper()
	var (
		took, afterApply []time.Duration
		cost             editCost
	)
	for k := range edits {
		writes := watchWrites(t, ns)
		user := fmt.Sprintf("edited_%d", k)
		fp := scalePolicy(ns, 0, user)
		manifest := fmt.Sprintf(`apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: %s, namespace: %s}
spec:
  appIDs: [%s]
  blocklists: [{name: b, users: [%s]}]
  rules:
    - {name: links, wordingPatterns: ['https?://']}
    - {name: long, when: 'size(request.wording) > 200'}
`, fp.Name, ns, fp.Spec.AppIDs[0], strings.Join(fp.Spec.Blocklists[0].Users, ", "))
		begin := time.Now()
		c.apply(t, manifest)
		applied := time.Now()
		want := ns + "/" + fp.Name + "/blocklist/b"
		testenv.Eventually(t, 30*time.Second, "both replicas to deny "+user, func() (bool, string) {
			var states []string
			ok := true
			for _, port := range c.ports {
				got, err := addFriendIn(port, fp.Spec.AppIDs[0], user)
				if err != nil {
					got = err.Error()
				}
				states = append(states, got)
				ok = ok && got == want
			}
			return ok, strings.Join(states, ", ")
		})
		took = append(took, time.Since(begin))
		afterApply = append(afterApply, time.Since(applied))
		kubectlWait(t, c, ns, fp.Name)
		// The watch may be a moment behind kubectl wait.
		time.Sleep(time.Second)
		// The apply's own write is one of them.
		cost.statusWrites = max(cost.statusWrites, len(writes.of(fp.Name))-1)
	}
	slices.Sort(took)
	slices.Sort(afterApply)
	cost.median, cost.longest = took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond)
	cost.afterApply = afterApply[len(afterApply)/2].Round(time.Millisecond)
	return cost
}

func kubectlWait(t *testing.T, c *cluster, ns, name string) {
	t.Helper()
	if _, err := kubectl(c.admin, "", "wait", "--for=condition=Ready", "friendpolicy/"+name, "-n", ns, "--timeout=60s"); err != nil {
		t.Fatal(err)
	}
}

// cpuTime reads a process's user and system CPU time from /proc.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name, in parentheses, may hold spaces: fields count from after it.
	_, rest, ok := strings.Cut(string(data), ") ")
	fields := strings.Fields(rest)
	if !ok || len(fields) < 13 {
		t.Fatalf("/proc/%d/stat: %q", pid, data)
	}
	// utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
	var ticks int64
	for _, f := range fields[11:13] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks
}
