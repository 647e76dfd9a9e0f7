package cluster

import (
	"context"
	"strconv"
	"testing"
)

// TestAllInOne runs `friendgate run`, the controller and one webhook replica in one
// process: the policy turns Ready, the summary counts the process as the one replica and
// it answers callbacks.
func TestAllInOne(t *testing.T) {
	const ns = "allinone"
	ctx := context.Background()
	for _, n := range []string{ns, policyNamespace} {
		if err := env.EnsureNamespace(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	c := &cluster{dir: t.TempDir()}
	c.admin = writeKubeconfig(t, c.dir, "admin.kubeconfig", "e2e-admin", "system:masters")
	p := start(t, "run", "run",
		"--kubeconfig", c.admin,
		"--namespace", ns,
		"--replica-id", "all-in-one",
		"--addr", "127.0.0.1:0",
		"--client-detail", "Full", // the test reads the deciding entry from errDlt
		"--health-probe-bind-address", "0",
		"--webhook-port", strconv.Itoa(env.Webhooks.LocalServingPort),
		"--webhook-cert-dir", env.Webhooks.LocalServingCertDir,
		"--cert-rotation=false",
	)
	port := callbackPort(t, p)
	waitReady(t, p, port)
	c.ports = []int{port}

	c.apply(t, policyManifest("spam_all_in_one"))
	c.waitReady(t, "anti-spam")
	c.waitServing(t, ns, "all-in-one")
	if ok, state := decisionsAre(c.ports, "spam_all_in_one", spammers); !ok {
		t.Fatalf("after Ready: %s", state)
	}
	if got := metricValue(t, port, "friendgate_snapshot_policies"); got < 1 {
		t.Fatalf("friendgate_snapshot_policies = %v on the callback port's /metrics", got)
	}
}
