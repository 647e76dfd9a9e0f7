// Package testenv runs a real kube-apiserver and etcd (controller-runtime's envtest) with the
// friendgate CRDs from config/crd/bases installed, for tests that need server-side
// validation, defaulting, subresources or a real client.
//
// One API server per package is the usual pattern:
//
//	var env *testenv.Env
//
//	func TestMain(m *testing.M) {
//		os.Exit(testenv.Run(m, func(e *testenv.Env) { env = e }))
//	}
//
// A single test can also start its own with Start, which stops it when the test ends.
//
// The control plane binaries come from KUBEBUILDER_ASSETS when it is set; otherwise
// hack/envtest-assets.sh builds (or, when cached, just locates) them. A test that cannot
// get them fails; it is never skipped.
package testenv

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	friendgatev1alpha1 "github.com/friendgate/friendgate/api/v1alpha1"
)

// FriendPolicyCRD is the name of the CRD every Env installs.
const FriendPolicyCRD = "friendpolicies.friendgate.io"

// startTimeoutEnv is envtest's own variable for the per-component start timeout; when it is
// unset we allow more than envtest's 20 s default, because small CI machines need it.
const (
	startTimeoutEnv     = "KUBEBUILDER_CONTROLPLANE_START_TIMEOUT"
	defaultStartTimeout = 90 * time.Second
)

// Env is a running API server with the friendgate CRDs installed.
type Env struct {
	// Config is an admin (system:masters) configuration for the API server.
	Config *rest.Config
	// Client is a controller-runtime client (no cache) using Scheme.
	Client client.Client
	// Scheme knows the client-go built-in types, apiextensions/v1 and friendgate.io/v1alpha1.
	Scheme *runtime.Scheme
	// Root is the repository root (the directory holding go.mod).
	Root string
	// CRDs are the CustomResourceDefinitions installed from config/crd/bases.
	CRDs []*apiextensionsv1.CustomResourceDefinition
	// Webhooks says where the API server calls the admission webhooks installed by
	// WithWebhooks: serve them on LocalServingHost:LocalServingPort with the certificate
	// in LocalServingCertDir.
	Webhooks envtest.WebhookInstallOptions

	env      *envtest.Environment
	stopOnce sync.Once
	stopErr  error
}

// NewScheme returns a scheme with the client-go built-in types, apiextensions/v1 and the
// friendgate API registered.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(friendgatev1alpha1.AddToScheme(s))
	return s
}

// Option changes the environment New starts.
type Option func(root string, te *envtest.Environment)

// WithWebhooks installs the admission webhook configurations in the given files or
// directories (relative to the repository root, e.g. config/webhook) once the API server
// runs. Their service references are rewritten to a local address and a CA generated for
// it; Env.Webhooks says where to serve them.
func WithWebhooks(paths ...string) Option {
	return func(root string, te *envtest.Environment) {
		for _, p := range paths {
			te.WebhookInstallOptions.Paths = append(te.WebhookInstallOptions.Paths, filepath.Join(root, p))
		}
	}
}

// New starts an API server and etcd, installs the CRDs from <root>/config/crd/bases (and
// what the options add) and returns the running environment. The caller must call Stop.
func New(opts ...Option) (*Env, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	scheme := NewScheme()
	te := &envtest.Environment{
		Scheme:                scheme,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
		// Never let USE_EXISTING_CLUSTER point these tests at a real cluster.
		UseExistingCluster: new(false),
	}
	if os.Getenv(startTimeoutEnv) == "" {
		te.ControlPlaneStartTimeout = defaultStartTimeout
	}
	for _, opt := range opts {
		opt(root, te)
	}
	e := &Env{Scheme: scheme, Root: root, env: te}
	track(e)

	cfg, err := te.Start()
	if err != nil {
		// Start can fail after the control plane is up (e.g. a CRD the server refuses);
		// don't leave etcd and kube-apiserver running.
		return nil, errors.Join(fmt.Errorf("testenv: starting envtest (assets %s): %w", assets, err), e.Stop())
	}
	e.Config = cfg
	e.CRDs = te.CRDs
	e.Webhooks = te.WebhookInstallOptions

	fail := func(err error) (*Env, error) {
		return nil, errors.Join(err, e.Stop())
	}
	found := false
	for _, crd := range te.CRDs {
		if crd.Name == FriendPolicyCRD {
			found = true
		}
	}
	if !found {
		return fail(fmt.Errorf("testenv: CRD %s not found in %s; run make manifests", FriendPolicyCRD, te.CRDDirectoryPaths[0]))
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fail(fmt.Errorf("testenv: creating client: %w", err))
	}
	e.Client = c
	return e, nil
}

// Stop stops the API server and etcd and removes their data. It is safe to call more than once.
func (e *Env) Stop() error {
	e.stopOnce.Do(func() {
		if err := e.env.Stop(); err != nil {
			e.stopErr = fmt.Errorf("testenv: stopping envtest: %w", err)
		}
		untrackEnv(e)
	})
	return e.stopErr
}

// EnsureNamespace creates the namespace name unless it already exists.
func (e *Env) EnsureNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := e.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("testenv: creating namespace %s: %w", name, err)
	}
	return nil
}

// NewNamespace creates a namespace with a generated name starting with prefix and returns
// its name. envtest runs no namespace controller, so it is not deleted afterwards; it
// disappears with the environment.
func (e *Env) NewNamespace(tb testing.TB, prefix string) string {
	tb.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := e.Client.Create(context.Background(), ns); err != nil {
		tb.Fatalf("testenv: creating namespace %s-*: %v", prefix, err)
	}
	return ns.Name
}

// Start starts an environment for one test (or benchmark) and stops it when the test ends.
// It fails the test when the environment cannot be started.
func Start(tb testing.TB, opts ...Option) *Env {
	tb.Helper()
	SkipShort(tb)
	e, err := New(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := e.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return e
}

// Run starts one environment for a whole test package, calls setup with it (typically to
// store it in a package variable), runs the tests and stops the environment. It returns the
// exit code for os.Exit: non-zero when the environment cannot be started or stopped, or a
// test failed. Under `go test -short` (make unit) it starts nothing and runs no test.
func Run(m *testing.M, setup func(*Env), opts ...Option) int {
	return RunUnit(m, nil, setup, opts...)
}

// RunUnit is Run for a package that keeps unit tests, which need no API server, beside
// its envtest ones: under `go test -short` (make unit) it starts no API server and runs
// only the tests named in unit, which must not touch the Env.
func RunUnit(m *testing.M, unit []string, setup func(*Env), opts ...Option) (code int) {
	flag.Parse()
	if testing.Short() {
		run := "^$"
		if len(unit) > 0 {
			run = "^(" + strings.Join(unit, "|") + ")$"
		}
		if err := flag.Set("test.run", run); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			return 1
		}
		return m.Run()
	}
	e, err := New(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	defer func() {
		if err := e.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			if code == 0 {
				code = 1
			}
		}
	}()
	if setup != nil {
		setup(e)
	}
	return m.Run()
}

// SkipShort skips a test that needs the API server under `go test -short` (make unit).
func SkipShort(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs the API server: skipped with -short (make unit)")
	}
}

// Running environments, stopped on SIGINT/SIGTERM: envtest starts etcd and kube-apiserver in
// their own process groups, so an interrupted test binary would otherwise leave them behind.
var (
	runningMu  sync.Mutex
	running    = map[*Env]struct{}{}
	signalOnce sync.Once
)

// track registers e to be stopped on SIGINT/SIGTERM until its Stop.
func track(e *Env) {
	signalOnce.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		go func() {
			sig := <-ch
			runningMu.Lock()
			envs := make([]*Env, 0, len(running))
			for e := range running {
				envs = append(envs, e)
			}
			runningMu.Unlock()
			for _, e := range envs {
				_ = e.env.Stop()
			}
			fmt.Fprintf(os.Stderr, "testenv: %v: stopped %d test environment(s)\n", sig, len(envs))
			os.Exit(2)
		}()
	})
	runningMu.Lock()
	running[e] = struct{}{}
	runningMu.Unlock()
}

func untrackEnv(e *Env) {
	runningMu.Lock()
	delete(running, e)
	runningMu.Unlock()
}

// Kubeconfig provisions a user authenticated by a client certificate, with the given
// groups, and returns a kubeconfig for it. Name a ServiceAccount's user,
// system:serviceaccount:<namespace>:<name>, to act under that ServiceAccount's RBAC.
func (e *Env) Kubeconfig(name string, groups ...string) ([]byte, error) {
	user, err := e.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, fmt.Errorf("testenv: provisioning user %s: %w", name, err)
	}
	return user.KubeConfig()
}

// APIServerPID returns the process ID of the running kube-apiserver, so a test can pause
// it (SIGSTOP) to see how clients behave while it is unreachable, and resume it (SIGCONT).
func (e *Env) APIServerPID() (int, error) {
	port := e.env.ControlPlane.APIServer.Port
	want := "--secure-port=" + port
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("testenv: finding kube-apiserver: %w", err)
	}
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if strings.HasSuffix(args[0], "kube-apiserver") && slices.Contains(args, want) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("testenv: no kube-apiserver process with %s", want)
}

// StartManager runs mgr until the test ends or the returned stop is called (whichever
// comes first; stop may be called more than once), and fails the test if it stops with
// an error.
func StartManager(tb testing.TB, mgr manager.Manager) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("manager: %v", err)
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}
