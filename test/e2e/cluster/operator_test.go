package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/controllers/status"
	"github.com/friendgate/friendgate/internal/propagation"
	"github.com/friendgate/friendgate/internal/testenv"
)

const (
	systemNamespace = "friendgate-system"
	policyNamespace = "im"
	// leaseDuration is short so that a killed replica drops out of the status quickly.
	leaseDuration = 6 * time.Second
)

// cluster is a running install: the controller and webhook replicas as processes.
type cluster struct {
	dir        string
	admin      string // kubeconfig of a cluster admin, who applies policies
	webhook    string // kubeconfig of the webhook replicas' ServiceAccount
	controller *process
	replicas   []*process
	ports      []int
}

// install applies the CRD's companions (namespaces, RBAC from config/rbac) and starts
// the controller and n webhook replicas with kubeconfigs of their ServiceAccounts.
func install(t *testing.T, n int) *cluster {
	t.Helper()
	c := &cluster{dir: t.TempDir()}
	c.admin = writeKubeconfig(t, c.dir, "admin.kubeconfig", "e2e-admin", "system:masters")
	for _, ns := range []string{systemNamespace, policyNamespace} {
		if err := env.EnsureNamespace(context.Background(), ns); err != nil {
			t.Fatal(err)
		}
	}
	mustKubectl(t, c.admin, "", "apply", "-k", filepath.Join(env.Root, "config", "rbac"))

	controllerKubeconfig := serviceAccountKubeconfig(t, c.dir, systemNamespace, "friendgate-controller")
	c.webhook = serviceAccountKubeconfig(t, c.dir, systemNamespace, "friendgate-webhook")

	c.controller = start(t, "controller", "controller",
		"--kubeconfig", controllerKubeconfig,
		"--namespace", systemNamespace,
		"--metrics-bind-address", "0",
		"--health-probe-bind-address", "0",
		"--webhook-port", strconv.Itoa(env.Webhooks.LocalServingPort),
		"--webhook-cert-dir", env.Webhooks.LocalServingCertDir,
		"--cert-rotation=false",
	)
	for i := range n {
		p, port := c.startReplica(t, fmt.Sprintf("replica-%d", i+1))
		waitReady(t, p, port)
		c.replicas = append(c.replicas, p)
		c.ports = append(c.ports, port)
	}
	return c
}

// startReplica starts a webhook replica and returns it with its callback port, before
// it is ready.
func (c *cluster) startReplica(t *testing.T, id string) (*process, int) {
	t.Helper()
	p := start(t, id, "webhook",
		"--kubeconfig", c.webhook,
		"--namespace", systemNamespace,
		"--replica-id", id,
		"--replica-lease-duration", leaseDuration.String(),
		"--addr", "127.0.0.1:0",
		"--client-detail", "Full", // the tests read the deciding entry from errDlt
	)
	return p, callbackPort(t, p)
}

// serving returns the webhook replicas the controller's summary ConfigMap in namespace
// names, one a line.
func (c *cluster) serving(namespace string) string {
	out, err := kubectl(c.admin, "", "get", "configmap", status.SummaryName, "-n", namespace, "-o", "jsonpath={.data."+status.SummaryKeyServing+"}")
	if err != nil {
		return err.Error()
	}
	return out
}

// waitServing waits until the summary in namespace names exactly these replicas.
func (c *cluster) waitServing(t *testing.T, namespace string, ids ...string) {
	t.Helper()
	want := strings.Join(ids, "\n") + "\n"
	testenv.Eventually(t, 60*time.Second, "the summary to name "+strings.Join(ids, ", "), func() (bool, string) {
		got := c.serving(namespace)
		return got == want, got
	})
}

func (c *cluster) apply(t *testing.T, manifest string) {
	t.Helper()
	mustKubectl(t, c.admin, manifest, "apply", "-f", "-")
}

// status returns a FriendPolicy's status field through kubectl's JSONPath.
func (c *cluster) status(name, jsonPath string) string {
	out, err := kubectl(c.admin, "", "get", "friendpolicy", name, "-n", policyNamespace, "-o", "jsonpath={"+jsonPath+"}")
	if err != nil {
		return err.Error()
	}
	return out
}

func (c *cluster) waitReady(t *testing.T, name string) {
	t.Helper()
	if _, err := kubectl(c.admin, "", "wait", "--for=condition=Ready", "friendpolicy/"+name, "-n", policyNamespace, "--timeout=60s"); err != nil {
		t.Fatalf("%v\nstatus: %s", err, c.status(name, ".status"))
	}
}

func policyManifest(users ...string) string {
	quoted := make([]string, len(users))
	for i, u := range users {
		quoted[i] = strconv.Quote(u)
	}
	return `apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: anti-spam, namespace: ` + policyNamespace + `}
spec:
  blocklists:
    - name: spammers
      users: [` + strings.Join(quoted, ", ") + `]
      configMapSelector: {matchLabels: {friendgate.io/list: spammers}}
      code: 38001
      message: "spammer"
`
}

func listManifest(users ...string) string {
	return `apiVersion: v1
kind: ConfigMap
metadata:
  name: spammers-1
  namespace: ` + policyNamespace + `
  labels: {friendgate.io/list: spammers}
data:
  users.txt: |
    ` + strings.Join(users, "\n    ") + "\n"
}

const spammers = policyNamespace + "/anti-spam/blocklist/spammers"

// TestOperator is the scenario of a user of the operator, step by step: each step needs
// the ones before it.
func TestOperator(t *testing.T) {
	c := install(t, 2)

	t.Run("apply a policy and wait until both replicas enforce it", func(t *testing.T) {
		c.apply(t, policyManifest("spam_1"))
		c.waitReady(t, "anti-spam")
		if got := c.status("anti-spam", ".status.enforced"); got != v1alpha1.EnforcedAll {
			t.Fatalf("status.enforced = %q, want %s", got, v1alpha1.EnforcedAll)
		}
		out := mustKubectl(t, c.admin, "", "get", "fp", "-n", policyNamespace)
		if !strings.Contains(out, v1alpha1.EnforcedAll) || !strings.Contains(out, "True") {
			t.Fatalf("kubectl get fp:\n%s", out)
		}
		c.waitServing(t, systemNamespace, "replica-1", "replica-2")
		// Ready means enforced: no waiting on the replicas here.
		if ok, state := decisionsAre(c.ports, "spam_1", spammers); !ok {
			t.Fatalf("right after Ready: %s", state)
		}
		if ok, state := decisionsAre(c.ports, "alice", "allow"); !ok {
			t.Fatalf("an ordinary user: %s", state)
		}
	})

	t.Run("a selected ConfigMap feeds the list and its edits take effect", func(t *testing.T) {
		c.apply(t, listManifest("spam_cm_1"))
		testenv.Eventually(t, 30*time.Second, "both replicas to deny spam_cm_1", func() (bool, string) {
			return decisionsAre(c.ports, "spam_cm_1", spammers)
		})
		c.apply(t, listManifest("spam_cm_2"))
		testenv.Eventually(t, 30*time.Second, "both replicas to follow the edit", func() (bool, string) {
			okNew, s1 := decisionsAre(c.ports, "spam_cm_2", spammers)
			okOld, s2 := decisionsAre(c.ports, "spam_cm_1", "allow")
			return okNew && okOld, s1 + "; " + s2
		})
		testenv.Eventually(t, 30*time.Second, "blocklistEntries to count the ConfigMap", func() (bool, string) {
			got := c.status("anti-spam", ".status.blocklistEntries")
			return got == "2", got
		})
	})

	t.Run("kubectl apply refuses an invalid policy with the field path", func(t *testing.T) {
		_, err := kubectl(c.admin, `apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: broken, namespace: `+policyNamespace+`}
spec:
  rules:
    - name: not-a-bool
      when: "request.from"
`, "apply", "-f", "-")
		if err == nil || !strings.Contains(err.Error(), "spec.rules[0].when") {
			t.Fatalf("applying a non-bool when: err = %v, want a refusal naming spec.rules[0].when", err)
		}
	})

	t.Run("replicas keep answering while the API server is stopped", func(t *testing.T) {
		pid, err := env.APIServerPID()
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		resumed := false
		resume := func() {
			if !resumed {
				resumed = true
				if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
					t.Error(err)
				}
			}
		}
		defer resume()
		// Long enough for the replicas' watches and Lease renewals to stall, short
		// enough for the controller to keep its leader lease.
		deadline := time.Now().Add(4 * time.Second)
		for time.Now().Before(deadline) {
			for _, want := range []struct{ from, decision string }{{"spam_1", spammers}, {"spam_cm_2", spammers}, {"alice", "allow"}} {
				if ok, state := decisionsAre(c.ports, want.from, want.decision); !ok {
					t.Fatalf("with the API server stopped, %s: %s", want.from, state)
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		resume()
		c.apply(t, policyManifest("spam_1", "spam_after_outage"))
		testenv.Eventually(t, 60*time.Second, "both replicas to catch up after the outage", func() (bool, string) {
			return decisionsAre(c.ports, "spam_after_outage", spammers)
		})
		c.waitReady(t, "anti-spam")
	})

	t.Run("propagation from kubectl apply to both replicas", func(t *testing.T) {
		const applies = 20
		var took []time.Duration
		for i := range applies {
			user := fmt.Sprintf("spam_prop_%d", i)
			begin := time.Now()
			c.apply(t, policyManifest("spam_1", user))
			testenv.Eventually(t, 30*time.Second, "both replicas to deny "+user, func() (bool, string) {
				return decisionsAre(c.ports, user, spammers)
			})
			took = append(took, time.Since(begin))
		}
		slices.Sort(took)
		median := (took[applies/2-1] + took[applies/2]) / 2
		t.Logf("propagation over %d applies (kubectl apply start → both replicas deny): median %s, max %s, min %s",
			applies, median.Round(time.Millisecond), took[applies-1].Round(time.Millisecond), took[0].Round(time.Millisecond))
		if report := os.Getenv("FRIENDGATE_E2E_REPORT"); report != "" {
			line := fmt.Sprintf("propagation applies=%d median=%s max=%s min=%s\n", applies,
				median.Round(time.Millisecond), took[applies-1].Round(time.Millisecond), took[0].Round(time.Millisecond))
			if err := appendFile(report, line); err != nil {
				t.Error(err)
			}
		}
		c.waitReady(t, "anti-spam")
	})

	t.Run("a replica joins and leaves without a status write", func(t *testing.T) {
		c.waitReady(t, "anti-spam")
		anti := c.policy(t, "anti-spam")
		writes := watchWrites(t, policyNamespace)
		leases := watchLeases(t, systemNamespace)

		p, port := c.startReplica(t, "replica-3")
		waitReady(t, p, port)
		c.waitServing(t, systemNamespace, "replica-1", "replica-2", "replica-3")
		// The joiner counts only once it serves: its Lease is created with the watermark
		// of its first snapshot, which holds anti-spam as it is.
		first, ok := leases.first(propagation.LeaseName("replica-3"))
		if !ok || !first.Enforces(anti.ResourceVersion) {
			t.Errorf("replica-3's Lease was created with watermark %q (found: %v), want one covering anti-spam at %s",
				first.Watermark, ok, anti.ResourceVersion)
		}
		if ok, state := decisionsAre([]int{port}, "spam_1", spammers); !ok {
			t.Errorf("replica-3 once ready: %s", state)
		}

		p.signal(syscall.SIGTERM)
		c.waitServing(t, systemNamespace, "replica-1", "replica-2")
		// A policy applied afterwards is reconciled after whatever the join and the leave
		// enqueued.
		c.apply(t, strings.ReplaceAll(policyManifest("spam_sentinel"), "anti-spam", "sentinel"))
		c.waitReady(t, "sentinel")
		if w := writes.of("anti-spam"); len(w) > 0 {
			t.Errorf("anti-spam was written %d times while a replica joined and left: %v", len(w), w)
		}
	})

	t.Run("a killed replica drops out of the summary", func(t *testing.T) {
		c.replicas[1].kill(t)
		c.waitServing(t, systemNamespace, "replica-1")
		c.waitReady(t, "anti-spam")
		if ok, state := decisionsAre(c.ports[:1], "spam_1", spammers); !ok {
			t.Fatalf("the surviving replica: %s", state)
		}
	})
}

func appendFile(path, line string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
