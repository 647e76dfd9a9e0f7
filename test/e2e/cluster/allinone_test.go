package cluster

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
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
		"--metrics-secure=true",
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
	// One /metrics serves both roles' metrics, over HTTPS to a reader's token only.
	reader, _ := env.ServiceAccountToken(t, ns, "prometheus", env.MetricsReaderRole(t, ns))
	metricsURL := "https://127.0.0.1:" + strconv.Itoa(metricsPort(t, p)) + "/metrics"
	for _, name := range []string{"friendgate_snapshot_policies", "friendgate_webhook_replicas_serving"} {
		testenv.Eventually(t, 30*time.Second, name+" on /metrics", func() (bool, string) {
			status, body := testenv.GetWithToken(metricsURL, reader)
			return status == http.StatusOK && strings.Contains(body, "\n"+name+" "), fmt.Sprintf("%d %.200s", status, body)
		})
	}
	if status, _ := testenv.GetWithToken(metricsURL, ""); status != http.StatusUnauthorized {
		t.Fatalf("/metrics without a token: %d, want 401", status)
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
