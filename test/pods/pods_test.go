package pods

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/controllers/status"
)

const (
	systemNamespace = "friendgate-system"
	policyNamespace = "im"
	release         = "friendgate"
	// The chart's names for release "friendgate".
	callbackService = "friendgate"
	controllerLease = "friendgate-controller"
	policyName      = "anti-spam"
	// scenarioTimeout bounds the whole scenario, cluster start and teardown included.
	scenarioTimeout = 25 * time.Minute
)

var helmImage = []string{
	"--set", "image.repository=friendgate.local/friendgate",
	"--set", "image.tag=dev",
	"--set", "image.pullPolicy=Never",
}

// TestPods is a user's scenario on real pods, step by step; each step needs the ones
// before it, so the first that fails ends it. The cluster is torn down on every path
// out, and the machine must then be as it was before.
func TestPods(t *testing.T) {
	if env.skip != "" {
		t.Skip(env.skip)
	}
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	defer cancel()
	// An interrupt ends the steps; the cleanups still tear the cluster down.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	before, err := readMachine()
	if err != nil {
		t.Fatal(err)
	}
	if len(before.processes) > 0 {
		t.Fatalf("a cluster already runs (make cluster-down stops it):\n%s", strings.Join(before.processes, "\n"))
	}
	t.Cleanup(func() {
		if t.Failed() {
			diagnose(t)
		}
		if out, err := clusterTool(context.Background(), "down"); err != nil {
			t.Errorf("cluster down: %v\n%s", err, out)
		}
		after, err := readMachine()
		if err != nil {
			t.Fatal(err)
		}
		if left := before.leftovers(after); len(left) > 0 {
			t.Errorf("after cluster down, the machine is not as it was:\n%s", strings.Join(left, "\n"))
		}
	})

	began := time.Now()
	out, err := clusterTool(ctx, "up", "--load",
		filepath.Join(env.images, "pause.tar")+","+filepath.Join(env.images, "friendgate.tar"))
	if err != nil {
		t.Fatalf("cluster up: %v\n%s", err, out)
	}
	report(t, "cluster start (cluster up: processes, images imported, node Ready): %s", time.Since(began).Round(100*time.Millisecond))
	c := newClient(t)

	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("helm install: both Deployments Ready under restricted Pod Security", func(t *testing.T) {
		for _, ns := range []string{systemNamespace, policyNamespace} {
			mustKubectl(ctx, t, "", "create", "namespace", ns)
		}
		// Every pod of the release must pass the restricted profile, or it is refused.
		mustKubectl(ctx, t, "", "label", "namespace", systemNamespace,
			"pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/enforce-version=latest")
		var took []time.Duration
		for i := range env.installs {
			if i > 0 {
				if _, err := helm(ctx, "uninstall", release, "-n", systemNamespace, "--wait", "--timeout", "3m"); err != nil {
					t.Fatal(err)
				}
			}
			begin := time.Now()
			args := append([]string{"install", release, "charts/friendgate", "-n", systemNamespace, "--wait", "--timeout", "5m"}, helmImage...)
			if _, err := helm(ctx, args...); err != nil {
				t.Fatal(err)
			}
			took = append(took, time.Since(begin).Round(100*time.Millisecond))
		}
		all := fmt.Sprint(took)
		slices.Sort(took)
		report(t, "helm install --wait: median %s of %d (min %s, max %s; in order %s)", took[len(took)/2], len(took), took[0], took[len(took)-1], all)

		for _, d := range []string{"friendgate-controller", "friendgate-webhook"} {
			got := mustKubectl(ctx, t, "", "get", "deployment", d, "-n", systemNamespace, "-o", "jsonpath={.status.readyReplicas}/{.spec.replicas}")
			if got != "2/2" {
				t.Errorf("deployment %s: ready %s, want 2/2", d, got)
			}
		}
		pods := &corev1.PodList{}
		if err := c.List(ctx, pods, client.InNamespace(systemNamespace)); err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			sc := p.Spec.SecurityContext
			if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				t.Errorf("pod %s does not set runAsNonRoot", p.Name)
			}
			for _, ctr := range p.Spec.Containers {
				if s := ctr.SecurityContext; s == nil || s.ReadOnlyRootFilesystem == nil || !*s.ReadOnlyRootFilesystem {
					t.Errorf("container %s/%s has a writable root filesystem", p.Name, ctr.Name)
				}
				if ctr.Image != "friendgate.local/friendgate:dev" || ctr.ImagePullPolicy != corev1.PullNever {
					t.Errorf("container %s/%s runs %s (%s), want the local image, never pulled", p.Name, ctr.Name, ctr.Image, ctr.ImagePullPolicy)
				}
			}
		}
	})

	var target string
	step("a FriendPolicy turns Ready on both replicas and callbacks through the Service get its decisions", func(t *testing.T) {
		mustKubectl(ctx, t, policyManifest("spam_1"), "apply", "-f", "-")
		waitPolicy(ctx, t, c)
		waitServing(ctx, t, c, 2)
		svc := &corev1.Service{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: systemNamespace, Name: callbackService}, svc); err != nil {
			t.Fatal(err)
		}
		target = fmt.Sprintf("http://%s:%d", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port)
		for _, want := range expectations {
			got, err := addFriend(ctx, newHTTPClient(), target, want.from)
			if err != nil || got != want.decision {
				t.Errorf("through %s, %s: got %q (%v), want %q", target, want.from, got, err, want.decision)
			}
		}
	})

	step("a rolling upgrade under constant load fails and errs on no callback", func(t *testing.T) {
		old := podNames(ctx, t, c, "webhook")
		l := startLoad(ctx, target, 4)
		args := append([]string{"upgrade", release, "charts/friendgate", "-n", systemNamespace, "--reuse-values",
			"--set", "webhook.logAllowEvery=1000", "--wait", "--timeout", "5m"}, helmImage...)
		if _, err := helm(ctx, args...); err != nil {
			l.stop()
			t.Fatal(err)
		}
		// The rollout is over when the old pods are gone, not merely when the new ones
		// are ready: the old ones drain meanwhile.
		waitFor(ctx, t, 3*time.Minute, "the old webhook pods to be gone", func() (bool, string) {
			now := podNames(ctx, t, c, "webhook")
			for _, name := range now {
				if slices.Contains(old, name) {
					return false, strings.Join(now, " ")
				}
			}
			return len(now) == 2, strings.Join(now, " ")
		})
		time.Sleep(2 * time.Second) // a little load on the new pods alone
		sent, failed, wrong, samples := l.stop()
		report(t, "rolling upgrade of the webhook Deployment under load: %d callbacks sent, %d failed, %d wrong", sent, failed, wrong)
		if failed > 0 || wrong > 0 {
			t.Errorf("during the rollout %d of %d callbacks failed and %d were answered wrong; e.g.\n%s", failed, sent, wrong, strings.Join(samples, "\n"))
		}
		if sent < 100 {
			t.Errorf("only %d callbacks were sent during the rollout", sent)
		}
	})

	step("deleting the leader controller pod: the other takes over and status is written", func(t *testing.T) {
		lease := &coordinationv1.Lease{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: systemNamespace, Name: controllerLease}, lease); err != nil {
			t.Fatal(err)
		}
		leader := holder(lease)
		if leader == "" {
			t.Fatal("the leader Lease has no holder")
		}
		pod, _, _ := strings.Cut(leader, "_")
		begin := time.Now()
		mustKubectl(ctx, t, "", "delete", "pod", pod, "-n", systemNamespace, "--wait=false")
		waitFor(ctx, t, 2*time.Minute, "another controller to take the Lease", func() (bool, string) {
			if err := c.Get(ctx, client.ObjectKeyFromObject(lease), lease); err != nil {
				return false, err.Error()
			}
			h := holder(lease)
			return h != "" && !strings.HasPrefix(h, pod+"_"), h
		})
		report(t, "leader failover (leader pod deleted → Lease held by the other replica): %s", time.Since(begin).Round(100*time.Millisecond))
		// The new leader writes status for a new generation.
		mustKubectl(ctx, t, policyManifest("spam_1", "spam_2"), "apply", "-f", "-")
		waitPolicy(ctx, t, c)
		got, err := addFriend(ctx, newHTTPClient(), target, "spam_2")
		if err != nil || got != spammers {
			t.Errorf("spam_2 after the new generation: got %q (%v), want %q", got, err, spammers)
		}
	})

	// Replicas joining and leaving show in the summary ConfigMap, not in policy statuses:
	// an unchanged policy stays Ready throughout (docs/operator.md).
	step("deleting a webhook pod: the serving count drops and recovers, the policy stays Ready", func(t *testing.T) {
		fp := &v1alpha1.FriendPolicy{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: policyNamespace, Name: policyName}, fp); err != nil {
			t.Fatal(err)
		}
		statusVersion := fp.ResourceVersion
		pods := podNames(ctx, t, c, "webhook")
		mustKubectl(ctx, t, "", "delete", "pod", pods[0], "-n", systemNamespace, "--wait=false")
		var seen []string
		waitFor(ctx, t, 3*time.Minute, "the serving replicas to lose the deleted pod and come back to 2", func() (bool, string) {
			ids, err := servingReplicas(ctx, c)
			if err != nil {
				return false, err.Error()
			}
			state := strings.Join(ids, ",")
			if len(seen) == 0 || seen[len(seen)-1] != state {
				seen = append(seen, state)
			}
			return len(ids) == 2 && !slices.Contains(ids, pods[0]), strings.Join(seen, " → ")
		})
		t.Logf("serving replicas went %s", strings.Join(seen, " → "))
		if err := c.Get(ctx, client.ObjectKey{Namespace: policyNamespace, Name: policyName}, fp); err != nil {
			t.Fatal(err)
		}
		if fp.ResourceVersion != statusVersion || !policyReady(fp) || fp.Status.Enforced != v1alpha1.EnforcedAll {
			t.Errorf("the unchanged policy was rewritten or left Ready: resourceVersion %s → %s, status %+v", statusVersion, fp.ResourceVersion, fp.Status)
		}
	})

	step("the admission webhook refuses an invalid policy through its Service and certificate", func(t *testing.T) {
		bad := &v1alpha1.FriendPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: policyNamespace, Name: "broken"},
			Spec:       v1alpha1.FriendPolicySpec{Rules: []v1alpha1.Rule{{Name: "not-a-bool", When: "request.from"}}},
		}
		err := c.Create(ctx, bad)
		// failurePolicy is Ignore: had the API server not reached the webhook (Service,
		// endpoints, certificate, caBundle), the policy would have been accepted.
		const denied = `admission webhook "vfriendpolicy.friendgate.io" denied the request: `
		if err == nil || !strings.HasPrefix(err.Error(), denied) || !strings.Contains(err.Error(), "spec.rules[0].when") {
			t.Fatalf("creating a policy whose when is no bool: %v; want the admission webhook's refusal (%q...) naming spec.rules[0].when", err, denied)
		}
	})
}

// newClient is a client of the cluster for the types the scenario reads.
func newClient(t *testing.T) client.Client {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", env.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(coordinationv1.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// spammers is the answer to a user on the policy's blocklist.
const spammers = "deny 38001 spammer"

// expectations are callbacks whose answers the policy decides.
var expectations = []struct{ from, decision string }{
	{"spam_1", spammers},
	{"alice", "allow"},
}

func policyManifest(users ...string) string {
	return `apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: ` + policyName + `, namespace: ` + policyNamespace + `}
spec:
  blocklists:
    - name: spammers
      users: ["` + strings.Join(users, `", "`) + `"]
      code: 38001
      message: "spammer"
`
}

func policyReady(fp *v1alpha1.FriendPolicy) bool {
	ready := meta.FindStatusCondition(fp.Status.Conditions, v1alpha1.ConditionReady)
	return ready != nil && ready.Status == "True" && ready.ObservedGeneration == fp.Generation && fp.Status.ObservedGeneration == fp.Generation
}

// waitPolicy waits until the policy is Ready for its generation: every serving replica
// enforces it.
func waitPolicy(ctx context.Context, t *testing.T, c client.Client) {
	t.Helper()
	fp := &v1alpha1.FriendPolicy{}
	waitFor(ctx, t, 2*time.Minute, "the policy to be Ready", func() (bool, string) {
		if err := c.Get(ctx, client.ObjectKey{Namespace: policyNamespace, Name: policyName}, fp); err != nil {
			return false, err.Error()
		}
		return policyReady(fp) && fp.Status.Enforced == v1alpha1.EnforcedAll, fmt.Sprintf("generation %d, status %+v", fp.Generation, fp.Status)
	})
}

// waitServing waits until the controller's summary counts n serving webhook replicas.
func waitServing(ctx context.Context, t *testing.T, c client.Client, n int) {
	t.Helper()
	waitFor(ctx, t, 2*time.Minute, fmt.Sprintf("%d serving webhook replicas in the summary", n), func() (bool, string) {
		ids, err := servingReplicas(ctx, c)
		if err != nil {
			return false, err.Error()
		}
		return len(ids) == n, strings.Join(ids, ",")
	})
}

// servingReplicas reads the IDs of the serving webhook replicas from the controller's
// summary ConfigMap.
func servingReplicas(ctx context.Context, c client.Client) ([]string, error) {
	cm := &corev1.ConfigMap{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: systemNamespace, Name: status.SummaryName}, cm); err != nil {
		return nil, err
	}
	return strings.Fields(cm.Data[status.SummaryKeyServing]), nil
}

// podNames lists the pods of a component of the release, terminating ones included.
func podNames(ctx context.Context, t *testing.T, c client.Client, component string) []string {
	t.Helper()
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods, client.InNamespace(systemNamespace), client.MatchingLabels{"app.kubernetes.io/component": component}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return names
}

func holder(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// waitFor polls cond every 100 ms until it holds, failing the test with its last state
// after timeout or when ctx is done.
func waitFor(ctx context.Context, t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("waiting for %s: %v; last state: %s", what, context.Cause(ctx), state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// diagnose logs what helps to understand a failed scenario: the pods, the events, the
// friendgate containers' logs and the end of the node components' logs.
func diagnose(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"get", "nodes,pods,endpointslices", "-A", "-o", "wide"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
		{"logs", "-n", systemNamespace, "-l", "app.kubernetes.io/name=friendgate", "--all-containers", "--prefix", "--tail=40"},
	} {
		out, err := kubectl(ctx, "", args...)
		t.Logf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, name := range []string{"kubelet", "containerd", "kube-proxy"} {
		b, _ := os.ReadFile(filepath.Join(env.clusterDir, "logs", name+".log"))
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		t.Logf("%s log (end):\n%s", name, strings.Join(lines, "\n"))
	}
}
