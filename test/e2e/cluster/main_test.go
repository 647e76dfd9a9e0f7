// Package cluster runs friendgate as an operator against a real API server: the
// controller and two webhook replicas as processes of the real binary, each with a
// kubeconfig bound to its generated RBAC role, driven with kubectl as a user would
// (docs/operator.md). `make e2e` runs it; it is part of `make test` too.
package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/friendgate/friendgate/internal/testenv"
)

var (
	env *testenv.Env
	// binary is the friendgate binary built for this run.
	binary string
	// kubectlPath is the kubectl built by hack/envtest-assets.sh, of the API server's release.
	kubectlPath string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// The clients the tests create to watch log nothing worth showing; without a logger
	// controller-runtime prints a warning with a stack trace.
	ctrllog.SetLogger(logr.Discard())
	dir, err := os.MkdirTemp("", "friendgate-cluster-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	root, err := testenv.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	binary = filepath.Join(dir, "friendgate")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: go build: %v\n%s", err, out)
		return 1
	}
	assets, err := testenv.AssetsDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	kubectlPath = filepath.Join(assets, "kubectl")
	return testenv.Run(m, func(e *testenv.Env) { env = e }, testenv.WithWebhooks("config/webhook"))
}
