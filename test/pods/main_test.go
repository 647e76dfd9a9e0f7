// Package pods runs friendgate as pods: a real single-node cluster on this machine
// (hack/cluster), the chart installed with Helm from the image the Dockerfile's recipe
// makes (hack/image), and a user's scenario against it (docs/cluster.md). It needs root,
// the node binaries and the image archives, which `make test-pods` provides; without them
// it skips.
package pods

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/friendgate/friendgate/internal/testenv"
)

// env is what the scenario runs with.
var env struct {
	root       string // the repository
	assets     string // the Kubernetes binaries (CLUSTER_ASSETS)
	images     string // the image archives (CLUSTER_IMAGES)
	clusterDir string // the cluster's state directory (CLUSTER_DIR)
	tool       string // hack/cluster, built by TestMain
	helm       string
	kubectl    string
	kubeconfig string
	report     string // FRIENDGATE_PODS_REPORT: figures are appended there
	installs   int    // FRIENDGATE_PODS_INSTALLS: helm installs to time
	skip       string
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	env.assets, env.images = os.Getenv("CLUSTER_ASSETS"), os.Getenv("CLUSTER_IMAGES")
	env.clusterDir = os.Getenv("CLUSTER_DIR")
	env.helm, env.report = os.Getenv("HELM"), os.Getenv("FRIENDGATE_PODS_REPORT")
	env.installs = 1
	if n := os.Getenv("FRIENDGATE_PODS_INSTALLS"); n != "" {
		if _, err := fmt.Sscan(n, &env.installs); err != nil || env.installs < 1 {
			fmt.Fprintf(os.Stderr, "FRIENDGATE_PODS_INSTALLS=%q: want a positive count\n", n)
			return 2
		}
	}
	switch {
	case env.assets == "" || env.images == "" || env.clusterDir == "" || env.helm == "":
		env.skip = "CLUSTER_ASSETS, CLUSTER_IMAGES, CLUSTER_DIR and HELM are unset: make test-pods runs this scenario"
	case os.Geteuid() != 0:
		env.skip = "needs root to run a cluster"
	}
	if env.skip != "" {
		return m.Run()
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env.root = root
	env.kubectl = filepath.Join(env.assets, "kubectl")
	env.kubeconfig = filepath.Join(env.clusterDir, "pki", "admin.kubeconfig")
	tmp, err := os.MkdirTemp("", "friendgate-pods")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	env.tool = filepath.Join(tmp, "cluster")
	build := exec.Command("go", "build", "-o", env.tool, "./hack/cluster")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building hack/cluster: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// clusterTool runs hack/cluster's command with the scenario's directory and assets.
func clusterTool(ctx context.Context, args ...string) (string, error) {
	args = append(args, "--dir", env.clusterDir, "--assets", env.assets)
	cmd := exec.CommandContext(ctx, env.tool, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Let down finish even when the scenario's context is done.
	cmd.WaitDelay = time.Minute
	err := cmd.Run()
	return out.String(), err
}

// kubectl runs kubectl against the cluster, with stdin.
func kubectl(ctx context.Context, stdin string, args ...string) (string, error) {
	return runTool(ctx, env.kubectl, stdin, args...)
}

func helm(ctx context.Context, args ...string) (string, error) {
	return runTool(ctx, env.helm, "", args...)
}

func runTool(ctx context.Context, bin, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.kubeconfig)
	cmd.Dir = env.root
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func mustKubectl(ctx context.Context, t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := kubectl(ctx, stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// report appends a figure to FRIENDGATE_PODS_REPORT, and logs it.
func report(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	if env.report == "" {
		return
	}
	f, err := os.OpenFile(env.report, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	if _, err := fmt.Fprintln(f, line); err != nil {
		t.Error(err)
	}
}
