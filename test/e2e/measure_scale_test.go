package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The measurements of `friendgate serve` at scale, the counterparts of test/e2e/cluster's
// TestWebhookMemory and TestWebhookManyPolicies: run with `make measure`
// (FRIENDGATE_E2E_MEMORY=1); the figures go to docs/benchmarks.md.

// TestMeasureServeLists measures `friendgate serve` with a large list in ConfigMap
// manifests: 1,000,000 IDs in 20 files and 10,000,000 in 100 files of about 1 MB. It
// reports the RSS of a server with the list and of one without it (the same policies
// directory minus the list), and the time from starting the server until it enforces the
// whole list.
func TestMeasureServeLists(t *testing.T) {
	if os.Getenv("FRIENDGATE_E2E_MEMORY") == "" {
		t.Skip("measurement: set FRIENDGATE_E2E_MEMORY=1 (make measure)")
	}
	const policy = `apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: big, namespace: lists}
spec:
  blocklists:
  - name: big
    configMapSelector: {matchLabels: {friendgate.io/list: big}}
`
	for _, c := range []struct {
		name               string
		configMaps, perMap int
		idFormat           string
	}{
		{"1m", 20, 50_000, "m%07d"},
		{"10m", 100, 100_000, "m%08d"},
	} {
		t.Run(c.name, func(t *testing.T) {
			entries := c.configMaps * c.perMap
			maxEntries := "--max-list-entries=" + strconv.Itoa(2*entries)
			empty := writePolicies(t, policy)
			without := startServer(t, empty, maxEntries)
			idle := settledRSS(t, without)
			without.stop(t)

			dir := writePolicies(t, policy)
			for i := range c.configMaps {
				writeFile(t, filepath.Join(dir, fmt.Sprintf("big-%03d.yaml", i)), listManifest(fmt.Sprintf("big-%03d", i), c.idFormat, i*c.perMap, c.perMap))
			}
			begin := time.Now()
			s := launch(t, dir, maxEntries)
			last := fmt.Sprintf(c.idFormat, entries-1)
			s.eventually(t, 10*time.Minute, "the whole list enforced", func() (bool, string) {
				return openIMDecides(t, s, "", last, "lists/big/blocklist/big")
			})
			loaded := time.Since(begin)
			rss := settledRSS(t, s)
			measureReport(t, fmt.Sprintf("serve-memory entries=%d files=%d rss_without_mib=%.1f rss_loaded_mib=%.1f rss_list_mib=%.1f list_b_per_entry=%.1f ready=%s\n",
				entries, c.configMaps, mibf(idle), mibf(rss), mibf(rss-idle), float64(rss-idle)/float64(entries), loaded.Round(time.Millisecond)))
		})
	}
}

// TestMeasureScopedPolicies measures `friendgate serve` with 10,000 policies, each scoped
// to its own appID with a small blocklist, a wording rule and a CEL rule (the set of the
// engine's BenchmarkBuildScopedPolicies): RSS, and the time from starting the server
// until /readyz is ready.
func TestMeasureScopedPolicies(t *testing.T) {
	if os.Getenv("FRIENDGATE_E2E_MEMORY") == "" {
		t.Skip("measurement: set FRIENDGATE_E2E_MEMORY=1 (make measure)")
	}
	const n = 10_000
	var sb strings.Builder
	for i := range n {
		id := strconv.Itoa(i)
		fmt.Fprintf(&sb, `---
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: tenant-%[1]s, namespace: tenants}
spec:
  appIDs: [app-%[1]s]
  blocklists:
  - {name: spammers, users: [spam_%[1]s_1, spam_%[1]s_2, spam_%[1]s_3], prefixes: [bot_]}
  rules:
  - {name: no-links, wordingPatterns: ['https?://', '(?i)www\.']}
  - {name: guests, when: "request.from.startsWith('guest_') && !request.forceAdd"}
`, id)
	}
	dir := writePolicies(t, sb.String())
	// Built before the clock starts, so that ready is the server's time and not go build's.
	friendgateBinary(t)
	begin := time.Now()
	s := startServer(t, dir)
	ready := time.Since(begin)
	last := strconv.Itoa(n - 1)
	if ok, got := openIMDecides(t, s, "app-"+last, "spam_"+last+"_1", "tenants/tenant-"+last+"/blocklist/spammers"); !ok {
		t.Fatalf("the last tenant's policy is not enforced: %s", got)
	}
	rss := settledRSS(t, s)
	heap := s.metric(t, "go_memstats_heap_inuse_bytes", nil)
	measureReport(t, fmt.Sprintf("serve-many-policies policies=%d rss_mib=%.1f heap_inuse_mib=%.1f ready=%s\n", n, mibf(rss), heap/(1<<20), ready.Round(time.Millisecond)))
}

// listManifest is a ConfigMap manifest of list "big" holding n IDs from first on.
func listManifest(name, idFormat string, first, n int) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: lists\n  labels: {friendgate.io/list: big}\ndata:\n  users.txt: |\n", name)
	for j := range n {
		sb.WriteString("    ")
		fmt.Fprintf(&sb, idFormat, first+j)
		sb.WriteByte('\n')
	}
	return sb.String()
}

// openIMDecides sends an OpenIM friend request from→bob (on an app's URL if appID is set)
// and reports whether the answer names want as the deciding entry.
func openIMDecides(t *testing.T, s *server, appID, from, want string) (bool, string) {
	t.Helper()
	route := "/openim/"
	if appID != "" {
		route += appID + "/"
	}
	resp, err := http.Post("http://"+s.addr+route+"callbackBeforeAddFriendCommand", "application/json", strings.NewReader(openIMAddFriend(from, "bob", "hi")))
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return false, err.Error()
	}
	return strings.Contains(string(body), want), string(body)
}

// settledRSS lets the garbage collector return what loading left behind, then reads RSS.
func settledRSS(t *testing.T, s *server) int64 {
	t.Helper()
	time.Sleep(5 * time.Second)
	return procStatus(t, s.cmd.Process.Pid, "VmRSS")
}

func mibf(b int64) float64 { return float64(b) / (1 << 20) }

// measureReport logs a measurement line and appends it to FRIENDGATE_E2E_REPORT if set.
func measureReport(t *testing.T, line string) {
	t.Helper()
	t.Log(strings.TrimSpace(line))
	path := os.Getenv("FRIENDGATE_E2E_REPORT")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line); err != nil {
		t.Fatal(err)
	}
}
