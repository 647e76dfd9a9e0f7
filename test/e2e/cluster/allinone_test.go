package cluster

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/friendgate/friendgate/internal/testenv"
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
	// One /metrics serves both roles: the callback server's and the controller's metrics.
	for _, name := range []string{"friendgate_snapshot_policies", "friendgate_webhook_replicas_serving"} {
		testenv.Eventually(t, 30*time.Second, name+" on /metrics", func() (bool, string) {
			got := metricValue(t, p, name)
			return got >= 1, fmt.Sprint(got)
		})
	}
	resp, err := httpClient.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /metrics on the callback port: %d, want 404 (metrics have a port of their own)", resp.StatusCode)
	}
}
