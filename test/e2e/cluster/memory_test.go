package cluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/replica"
	"github.com/friendgate/friendgate/internal/testenv"
)

// TestWebhookMemory measures replicas holding a large list: 1,000,000 IDs over 20
// ConfigMaps, and 10,000,000 IDs over 100 ConfigMaps near the 1 MiB object limit. It
// reports each replica's RSS before the lists (the same replica without them) and once it
// enforces the whole list, and the time from creating the policy until then. It is a
// measurement, not a check, so it runs only when asked for (`make measure`, which sets
// FRIENDGATE_E2E_MEMORY=1).
func TestWebhookMemory(t *testing.T) {
	if os.Getenv("FRIENDGATE_E2E_MEMORY") == "" {
		t.Skip("a measurement: run with FRIENDGATE_E2E_MEMORY=1 (make measure)")
	}
	for _, c := range []struct {
		name               string
		configMaps, perMap int
		idFormat           string
	}{
		// IDs of 8 and 9 bytes: 450 KB and 1,000,000 bytes of data a ConfigMap.
		{"1m", 20, 50_000, "m%07d"},
		{"10m", 100, 100_000, "m%08d"},
	} {
		t.Run(c.name, func(t *testing.T) {
			entries := c.configMaps * c.perMap
			ns := "memory-" + c.name
			p, port := startMeasuredReplica(t, ns, "--max-list-entries", strconv.Itoa(2*entries))
			idle := settledRSS(t, p)
			for i := range c.configMaps {
				createListConfigMap(t, ns, fmt.Sprintf("big-%03d", i), c.idFormat, i*c.perMap, c.perMap)
			}
			fp := &v1alpha1.FriendPolicy{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "big"},
				Spec: v1alpha1.FriendPolicySpec{Blocklists: []v1alpha1.Blocklist{{
					Name: "big", ConfigMapSelector: &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.LabelList: "big"}},
				}}},
			}
			begin := time.Now()
			if err := env.Client.Create(context.Background(), fp); err != nil {
				t.Fatal(err)
			}
			last := fmt.Sprintf(c.idFormat, entries-1)
			testenv.Eventually(t, 10*time.Minute, "the replica to enforce the whole list", func() (bool, string) {
				return decisionsAre([]int{port}, last, ns+"/big/blocklist/big")
			})
			loaded := time.Since(begin)
			rss := settledRSS(t, p)
			heap := metricValue(t, p, "go_memstats_heap_inuse_bytes")
			report(t, fmt.Sprintf("memory entries=%d configmaps=%d rss_idle_mib=%.1f rss_loaded_mib=%.1f rss_list_mib=%.1f list_b_per_entry=%.1f heap_inuse_mib=%.1f load=%s\n",
				entries, c.configMaps, mib(idle), mib(rss), mib(rss-idle), float64(rss-idle)/float64(entries), heap/(1<<20), loaded.Round(time.Millisecond)))
		})
	}
}

// TestWebhookManyPolicies measures a replica with 10,000 small policies, each scoped to
// its own appID with a blocklist, a wording rule and a CEL rule (the set of the engine's
// BenchmarkBuildScopedPolicies and of test/e2e's TestMeasureScopedPolicies): RSS, and the
// time from starting the replica until it enforces the last policy. A measurement, run by
// `make measure`.
func TestWebhookManyPolicies(t *testing.T) {
	if os.Getenv("FRIENDGATE_E2E_MEMORY") == "" {
		t.Skip("a measurement: run with FRIENDGATE_E2E_MEMORY=1 (make measure)")
	}
	const (
		n  = 10_000
		ns = "many-policies"
	)
	ctx := context.Background()
	if err := env.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.DeleteAllOf(context.Background(), &v1alpha1.FriendPolicy{}, client.InNamespace(ns))
	})
	work := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range work {
				errs <- env.Client.Create(ctx, scopedPolicy(ns, i))
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	// The bare cache first: it waits out the API server's work on the burst of creations,
	// which would otherwise fall on the replica's first list, and it measures what any
	// client pays under the same conditions.
	bare := informerSync(t)
	begin := time.Now()
	p, port := startMeasuredReplica(t, ns)
	last := strconv.Itoa(n - 1)
	testenv.Eventually(t, 5*time.Minute, "the replica to enforce the last policy", func() (bool, string) {
		got, err := addFriendIn(port, "app-"+last, "spam_"+last+"_1")
		if err != nil {
			return false, err.Error()
		}
		return got == ns+"/tenant-"+last+"/blocklist/spammers", got
	})
	ready := time.Since(begin)
	rss := settledRSS(t, p)
	heap := metricValue(t, p, "go_memstats_heap_inuse_bytes")
	report(t, fmt.Sprintf("many-policies policies=%d rss_mib=%.1f heap_inuse_mib=%.1f ready=%s informer_sync=%s\n", n, mib(rss), heap/(1<<20),
		ready.Round(time.Millisecond), bare.Round(time.Millisecond)))
}

// informerSync is how long a bare cache with the replica's options takes to hold every
// FriendPolicy and list ConfigMap: what any client of the API server pays before it can
// act on the policies, the part of a replica's time to enforce that friendgate does not
// spend.
func informerSync(t *testing.T) time.Duration {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := replica.CacheOptions()
	opts.Scheme = env.Scheme
	begin := time.Now()
	c, err := cache.New(env.Config, opts)
	if err != nil {
		t.Fatal(err)
	}
	var informers []cache.Informer
	for _, obj := range []client.Object{&v1alpha1.FriendPolicy{}, &corev1.ConfigMap{}} {
		inf, err := c.GetInformer(ctx, obj)
		if err != nil {
			t.Fatal(err)
		}
		informers = append(informers, inf)
	}
	go func() { _ = c.Start(ctx) }()
	// Polled finely: the cache's own WaitForCacheSync looks every 100 ms.
	for _, inf := range informers {
		for !inf.HasSynced() {
			if time.Since(begin) > time.Minute {
				t.Fatal("a bare cache did not sync within a minute")
			}
			time.Sleep(time.Millisecond)
		}
	}
	return time.Since(begin)
}

// scopedPolicy is the i-th tenant's policy of TestWebhookManyPolicies.
func scopedPolicy(ns string, i int) *v1alpha1.FriendPolicy {
	id := strconv.Itoa(i)
	return &v1alpha1.FriendPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tenant-" + id},
		Spec: v1alpha1.FriendPolicySpec{
			AppIDs:     []string{"app-" + id},
			Blocklists: []v1alpha1.Blocklist{{Name: "spammers", Users: []string{"spam_" + id + "_1", "spam_" + id + "_2", "spam_" + id + "_3"}, Prefixes: []string{"bot_"}}},
			Rules: []v1alpha1.Rule{
				{Name: "no-links", WordingPatterns: []string{`https?://`, `(?i)www\.`}},
				{Name: "guests", When: "request.from.startsWith('guest_') && !request.forceAdd"},
			},
		},
	}
}

// startMeasuredReplica starts a replica whose Lease goes to ns (out of the way of
// TestOperator's replicas) and waits until it is ready. Everything the test creates in ns
// is deleted when it ends: replicas see list ConfigMaps of every namespace.
func startMeasuredReplica(t *testing.T, ns string, args ...string) (*process, int) {
	t.Helper()
	ctx := context.Background()
	if err := env.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.DeleteAllOf(context.Background(), &v1alpha1.FriendPolicy{}, client.InNamespace(ns))
		_ = env.Client.DeleteAllOf(context.Background(), &corev1.ConfigMap{}, client.InNamespace(ns))
	})
	admin := writeKubeconfig(t, t.TempDir(), "admin.kubeconfig", "e2e-admin", "system:masters")
	p := start(t, ns+"-replica", append([]string{"webhook", "--kubeconfig", admin, "--namespace", ns,
		"--replica-id", ns, "--addr", "127.0.0.1:0", "--client-detail", "Full"}, args...)...)
	port := callbackPort(t, p)
	waitReady(t, p, port)
	return p, port
}

// createListConfigMap creates a ConfigMap of list "big" holding n IDs from first on.
func createListConfigMap(t *testing.T, ns, name, idFormat string, first, n int) {
	t.Helper()
	var sb strings.Builder
	for j := range n {
		fmt.Fprintf(&sb, idFormat, first+j)
		sb.WriteByte('\n')
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{v1alpha1.LabelList: "big"}},
		Data:       map[string]string{"users.txt": sb.String()},
	}
	if err := env.Client.Create(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
}

// settledRSS lets the garbage collector return what building left behind, then reads RSS.
func settledRSS(t *testing.T, p *process) int64 {
	t.Helper()
	time.Sleep(5 * time.Second)
	return rssBytes(t, p.cmd.Process.Pid)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// report logs a measurement line and appends it to FRIENDGATE_E2E_REPORT if set.
func report(t *testing.T, line string) {
	t.Helper()
	t.Log(strings.TrimSpace(line))
	if path := os.Getenv("FRIENDGATE_E2E_REPORT"); path != "" {
		if err := appendFile(path, line); err != nil {
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
func metricValue(t *testing.T, p *process, name string) float64 {
	t.Helper()
	resp, err := httpClient.Get("http://127.0.0.1:" + strconv.Itoa(metricsPort(t, p)) + "/metrics")
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
