package manifest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// BenchmarkLoad reads one file of 10,000 FriendPolicy documents, each scoped to its own
// appID with a small blocklist, a wording rule and a CEL rule: the file of test/e2e's
// TestMeasureScopedPolicies, which `friendgate serve --policies` must load within its
// time to ready. cpu-ns/op is the process's CPU time per load, on every core.
func BenchmarkLoad(b *testing.B) {
	const n = 10_000
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, `---
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: tenant-%[1]d, namespace: tenants}
spec:
  appIDs: [app-%[1]d]
  blocklists:
  - {name: spammers, users: [spam_%[1]d_1, spam_%[1]d_2, spam_%[1]d_3], prefixes: [bot_]}
  rules:
  - {name: no-links, wordingPatterns: ['https?://', '(?i)www\.']}
  - {name: guests, when: "request.from.startsWith('guest_') && !request.forceAdd"}
`, i)
	}
	path := filepath.Join(b.TempDir(), "tenants.yaml")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(sb.Len()))
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		set, err := Load(path)
		if err != nil {
			b.Fatal(err)
		}
		if len(set.Policies) != n {
			b.Fatalf("loaded %d policies, want %d", len(set.Policies), n)
		}
	}
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
}

// processCPU is the CPU time the process has used, in nanoseconds. On a shared machine
// wall time also counts the time other processes held the core; CPU time does not.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
