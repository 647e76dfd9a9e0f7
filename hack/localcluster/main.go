// Command localcluster runs a local control plane for trying friendgate as an operator
// without a cluster: etcd and kube-apiserver built from the Go module proxy
// (hack/envtest-assets.sh), the FriendPolicy CRD installed, and kubeconfigs for an admin
// and for the controller's and webhook's ServiceAccounts written to a directory. It runs
// until interrupted. `make local-cluster` starts it; the end-to-end tests start the same
// control plane from Go.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/friendgate/friendgate/internal/testenv"
)

func main() {
	dir := flag.String("dir", "bin/local", "directory for the kubeconfigs")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}

func run(dir string) (err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	env, err := testenv.New(testenv.WithWebhooks("config/webhook"))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, env.Stop()) }()

	users := []struct {
		file   string
		name   string
		groups []string
	}{
		{"admin.kubeconfig", "local-admin", []string{"system:masters"}},
		{"controller.kubeconfig", "system:serviceaccount:friendgate-system:friendgate-controller",
			[]string{"system:serviceaccounts", "system:serviceaccounts:friendgate-system", "system:authenticated"}},
		{"webhook.kubeconfig", "system:serviceaccount:friendgate-system:friendgate-webhook",
			[]string{"system:serviceaccounts", "system:serviceaccounts:friendgate-system", "system:authenticated"}},
	}
	for _, u := range users {
		data, err := env.Kubeconfig(u.name, u.groups...)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, u.file), data, 0o600); err != nil {
			return err
		}
	}
	abs, _ := filepath.Abs(dir)
	fmt.Printf(`API server running; kubeconfigs in %[1]s. Install the RBAC and try the roles:

  export KUBECONFIG=%[1]s/admin.kubeconfig
  kubectl create namespace friendgate-system
  kubectl apply -k config/rbac
  bin/friendgate controller --kubeconfig %[1]s/controller.kubeconfig --namespace friendgate-system \
    --cert-rotation=false --webhook-port %[2]d --webhook-cert-dir %[3]s
  bin/friendgate webhook --kubeconfig %[1]s/webhook.kubeconfig --namespace friendgate-system --addr :8080

Press Ctrl-C to stop.
`, abs, env.Webhooks.LocalServingPort, env.Webhooks.LocalServingCertDir)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	return nil
}
