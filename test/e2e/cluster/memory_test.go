package cluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/testenv"
)

// TestWebhookMemory measures a replica holding a 1,000,000-entry list spread over 20
// ConfigMaps. It is a measurement, not a check, so it runs only when asked for
// (`make measure`, which sets FRIENDGATE_E2E_MEMORY=1).
func TestWebhookMemory(t *testing.T) {
	if os.Getenv("FRIENDGATE_E2E_MEMORY") == "" {
		t.Skip("a measurement: run with FRIENDGATE_E2E_MEMORY=1 (make measure)")
	}
	const (
		configMaps = 20
		perMap     = 50_000
		ns         = "memory"
	)
	ctx := context.Background()
	dir := t.TempDir()
	admin := writeKubeconfig(t, dir, "admin.kubeconfig", "e2e-admin", "system:masters")
	if err := env.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	// Its Lease goes to its own namespace, out of the way of TestOperator's replicas.
	p := start(t, "memory-replica", "webhook", "--kubeconfig", admin, "--namespace", ns,
		"--replica-id", "memory", "--addr", "127.0.0.1:0", "--client-detail", "Full")
	port := callbackPort(t, p)
	waitReady(t, p, port)
	idle := rssBytes(t, p.cmd.Process.Pid)

	for i := range configMaps {
		var sb strings.Builder
		for j := range perMap {
			fmt.Fprintf(&sb, "m%07d\n", i*perMap+j)
		}
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("big-%02d", i), Labels: map[string]string{v1alpha1.LabelList: "big"}},
			Data:       map[string]string{"users.txt": sb.String()},
		}
		if err := env.Client.Create(ctx, cm); err != nil {
			t.Fatal(err)
		}
	}
	fp := &v1alpha1.FriendPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "big"},
		Spec: v1alpha1.FriendPolicySpec{Blocklists: []v1alpha1.Blocklist{{
			Name: "big", ConfigMapSelector: &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.LabelList: "big"}},
		}}},
	}
	if err := env.Client.Create(ctx, fp); err != nil {
		t.Fatal(err)
	}
	last := fmt.Sprintf("m%07d", configMaps*perMap-1)
	begin := time.Now()
	testenv.Eventually(t, 5*time.Minute, "the replica to enforce the whole list", func() (bool, string) {
		return decisionsAre([]int{port}, last, ns+"/big/blocklist/big")
	})
	loaded := time.Since(begin)
	// Let the garbage collector return what compiling left behind before reading RSS.
	time.Sleep(5 * time.Second)
	rss := rssBytes(t, p.cmd.Process.Pid)
	heap := metricValue(t, port, "go_memstats_heap_inuse_bytes")
	line := fmt.Sprintf("memory entries=%d configmaps=%d rss_idle_mib=%.1f rss_loaded_mib=%.1f heap_inuse_mib=%.1f load=%s\n",
		configMaps*perMap, configMaps, float64(idle)/(1<<20), float64(rss)/(1<<20), heap/(1<<20), loaded.Round(time.Millisecond))
	t.Log(strings.TrimSpace(line))
	if report := os.Getenv("FRIENDGATE_E2E_REPORT"); report != "" {
		if err := appendFile(report, line); err != nil {
			t.Error(err)
		}
	}
}

// rssBytes reads a process's resident set size from /proc.
func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// metricValue reads one unlabelled sample from a replica's /metrics.
func metricValue(t *testing.T, port int, name string) float64 {
	t.Helper()
	resp, err := httpClient.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("%s not found in /metrics", name)
	return 0
}
