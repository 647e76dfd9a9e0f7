// Package chart tests the two ways friendgate is installed, the Helm chart
// (charts/friendgate) and the kustomize configuration (config/default), the way a user
// runs them: with the helm binary `make helm` installs into bin/ and the kubectl built
// with the envtest control plane, against a real kube-apiserver (internal/testenv).
//
//   - the chart's CRDs and generated RBAC/webhook manifests are the ones controller-gen
//     generates into config/ (sync_test.go);
//   - `helm lint --strict`, `helm template` with the default values, a fully-featured
//     values file and an alternative one, and `kubectl kustomize config/default`: every
//     object is applied with a server-side dry run, so the API server (schema, field
//     validation, Pod Security "restricted" warnings) accepts it (render_test.go);
//   - values.schema.json and the chart's own checks reject bad values (schema_test.go);
//   - a real `helm install`, `helm upgrade` (switching certificate modes) and
//     `helm uninstall` (install_test.go);
//   - the installed RBAC, probed with `kubectl auth can-i --as=system:serviceaccount:...`:
//     the webhook replicas cannot write FriendPolicies or read any Secret, the controller
//     writes only FriendPolicy status (rbac_test.go);
//   - the examples of docs/install.md and docs/gitops.md: the Helm values and kustomize
//     overlay install, the Flux CEL health checks classify every Ready reason, the policy
//     repository passes `friendgate test` and builds (docs_test.go, gitops_test.go);
//   - the Grafana dashboard queries only metrics the server exports, and the docs name
//     every registered metric and no other (dashboard_test.go).
//
// The Argo CD health check (Lua) is tested in the module test/chart/argocd, and the
// Dockerfile by hack/dockerfile_test.go.
//
// `make chart-test` runs this package; `make test` runs it with every other package.
package chart

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/friendgate/friendgate/internal/testenv"
)

// The API server is started by the first test that needs one and shared by the rest,
// so tests that only render (or `go test -run` of one of them) do not pay for it.
var (
	envOnce sync.Once
	env     *testenv.Env
	envErr  error
	// adminKubeconfig is a kubeconfig file of a system:masters user of env.
	adminKubeconfig string
	// kubeconfigDir holds adminKubeconfig; removed at the end of the run.
	kubeconfigDir string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if env != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			code = 1
		}
	}
	if kubeconfigDir != "" {
		os.RemoveAll(kubeconfigDir)
	}
	os.Exit(code)
}

// apiServer returns the package's API server, starting it on first use, with the
// FriendPolicy CRD (from config/crd/bases) and the stand-in CRDs of
// testdata/external-crds installed.
func apiServer(t *testing.T) *testenv.Env {
	t.Helper()
	testenv.SkipShort(t)
	envOnce.Do(func() {
		var e *testenv.Env
		e, envErr = testenv.New()
		if envErr != nil {
			return
		}
		env = e
		if envErr = installExternalCRDs(e); envErr != nil {
			return
		}
		kubeconfigDir, envErr = os.MkdirTemp("", "friendgate-chart-test-")
		if envErr != nil {
			return
		}
		var kc []byte
		if kc, envErr = e.Kubeconfig("chart-test-admin", "system:masters"); envErr != nil {
			return
		}
		adminKubeconfig = filepath.Join(kubeconfigDir, "admin.kubeconfig")
		envErr = os.WriteFile(adminKubeconfig, kc, 0o600)
	})
	if envErr != nil {
		t.Fatalf("starting the API server: %v", envErr)
	}
	return env
}

// installExternalCRDs installs testdata/external-crds: stand-ins for the CRDs of
// cert-manager (Certificate, Issuer) and the Prometheus Operator (ServiceMonitor), which
// the chart renders when those integrations are enabled. The real CRDs cannot be fetched
// here; the stand-ins have the real group, version, kind and scope but accept any
// content, so the API server checks those objects' identity and namespace, not their
// spec.
func installExternalCRDs(e *testenv.Env) error {
	// InstallCRDs waits until the API server serves them.
	if _, err := envtest.InstallCRDs(e.Config, envtest.CRDInstallOptions{
		Paths:              []string{filepath.Join(e.Root, "test", "chart", "testdata", "external-crds")},
		ErrorIfPathMissing: true,
	}); err != nil {
		return fmt.Errorf("installing testdata/external-crds: %w", err)
	}
	return nil
}
