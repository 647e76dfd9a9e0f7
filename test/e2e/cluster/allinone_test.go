package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

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
	scrape := secureScraper(t, ns, p)
	for _, name := range []string{"friendgate_snapshot_policies", "friendgate_webhook_replicas_serving"} {
		testenv.Eventually(t, 30*time.Second, name+" on /metrics", func() (bool, string) {
			status, body := scrape(true)
			return status == http.StatusOK && strings.Contains(body, "\n"+name+" "), fmt.Sprintf("%d %.200s", status, body)
		})
	}
	if status, _ := scrape(false); status != http.StatusUnauthorized {
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

// secureScraper returns a function that GETs p's /metrics over TLS (its certificate is
// self-signed), with the token of a ServiceAccount bound to a metrics reader role when
// withToken is set.
func secureScraper(t *testing.T, ns string, p *process) func(withToken bool) (int, string) {
	t.Helper()
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "prometheus"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-metrics-reader"},
		Rules:      []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "prometheus", Namespace: ns}},
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{})
		_ = cs.RbacV1().ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{})
	})
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "prometheus", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	url := "https://127.0.0.1:" + strconv.Itoa(metricsPort(t, p)) + "/metrics"
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	return func(withToken bool) (int, string) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if withToken {
			req.Header.Set("Authorization", "Bearer "+tr.Status.Token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
}
