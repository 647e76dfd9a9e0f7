package admission

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/friendgate/friendgate/internal/testenv"
)

// env is the API server shared by the package's tests. It has the webhook configuration
// generated from this package's marker installed, pointed at env.Webhooks' local address.
var env *testenv.Env

func TestMain(m *testing.M) {
	// Shown only when a test fails (or with -v): the manager's and cert-controller's logs.
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	os.Exit(testenv.Run(m, func(e *testenv.Env) { env = e }, testenv.WithWebhooks("config/webhook/manifests.yaml")))
}

// startManager runs a manager with a webhook server built from opts, after setup has
// registered what it serves, until the test ends. It returns once the server listens.
func startManager(t *testing.T, opts webhook.Options, setup func(manager.Manager) error) {
	t.Helper()
	srv := webhook.NewServer(opts)
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		WebhookServer:          srv,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := setup(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	started := srv.StartedChecker()
	testenv.Eventually(t, 2*time.Minute, "the webhook server to listen", func() (bool, string) {
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("manager stopped before its webhook server listened: %v", err)
		default:
		}
		err := started(nil)
		return err == nil, fmt.Sprint(err)
	})
}
