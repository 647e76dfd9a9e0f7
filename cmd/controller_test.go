package cmd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/testenv"
)

func TestControllerFlagsValidate(t *testing.T) {
	valid := func() controllerFlags {
		var f controllerFlags
		f.bind(pflag.NewFlagSet("controller", pflag.ContinueOnError))
		return f
	}
	tests := []struct {
		name   string
		change func(*controllerFlags)
		want   string
	}{
		{name: "defaults", change: func(*controllerFlags) {}},
		{name: "cert-manager", change: func(f *controllerFlags) { f.certRotation, f.secretName, f.serviceName = false, "", "" }},
		{name: "no namespace", change: func(f *controllerFlags) { f.namespace = "" }, want: "--namespace must not be empty"},
		{name: "port", change: func(f *controllerFlags) { f.webhookPort = 0 }, want: "--webhook-port must be between 1 and 65535, not 0"},
		{name: "no cert dir", change: func(f *controllerFlags) { f.certDir = "" }, want: "--webhook-cert-dir must not be empty"},
		{name: "rotation without a Service", change: func(f *controllerFlags) { f.serviceName = "" },
			want: "--cert-rotation needs --webhook-secret-name, --webhook-service-name and --validating-webhook-configuration-name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := valid()
			tt.change(&f)
			err := f.validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("validate: %v", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Errorf("validate: got %v, want %q", err, tt.want)
			}
		})
	}
}

// `friendgate controller` with its defaults (built-in certificate rotation), under the
// ServiceAccount and RBAC of config/rbac generated from the markers, against the webhook
// configuration generated from the admission marker as config/default names it: it takes
// the leader Lease, fills the Secret, injects the CA, turns ready, serves the certificate
// for the Service's name over HTTP/1.1 only, serves /metrics over HTTPS only to a
// ServiceAccount bound to config/rbac's metrics reader role, writes FriendPolicy status,
// and hands the Lease over when it stops.
func TestControllerCommand(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	const ns = "friendgate-system"
	if err := env.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"config/rbac/service_account.yaml", "config/rbac/controller/role.yaml", "config/rbac/role_binding.yaml", "config/rbac/metrics_reader_role.yaml"} {
		applyManifests(t, env, path)
	}
	vwc := generatedWebhookConfiguration(t, env.Root, ns)
	if err := env.Client.Create(ctx, vwc); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "friendgate-webhook-server-cert"}}
	if err := env.Client.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	// Nothing is mounted: the replica must serve and turn ready from the Secret as the
	// API server has it, not wait for the kubelet to refresh a mounted copy.
	certDir := t.TempDir()
	kubeconfig, err := env.Kubeconfig("system:serviceaccount:"+ns+":friendgate-controller",
		"system:serviceaccounts", "system:serviceaccounts:"+ns, "system:authenticated")
	if err != nil {
		t.Fatal(err)
	}
	kubeconfigPath := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}

	probeAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	metricsAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	webhookPort := testenv.FreePort(t)
	proc, done := startCommand(t, "controller",
		"--kubeconfig", kubeconfigPath,
		"--namespace", ns,
		"--metrics-bind-address", metricsAddr,
		"--health-probe-bind-address", probeAddr,
		"--webhook-port", strconv.Itoa(webhookPort),
		"--webhook-cert-dir", certDir,
	)

	waitUntil(t, 2*time.Minute, done, func() error {
		resp, err := http.Get("http://" + probeAddr + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s: %s", resp.Status, body)
		}
		return nil
	})

	lease := &coordinationv1.Lease{}
	waitUntil(t, time.Minute, done, func() error {
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: controllerLeaseName}, lease); err != nil {
			return err
		}
		if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
			return errors.New("the leader Lease has no holder")
		}
		return nil
	})

	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(secret), secret); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(vwc), vwc); err != nil {
		t.Fatal(err)
	}
	ca := vwc.Webhooks[0].ClientConfig.CABundle
	if len(ca) == 0 || !bytes.Equal(ca, secret.Data["ca.crt"]) {
		t.Fatalf("caBundle %q is not the Secret's CA %q", ca, secret.Data["ca.crt"])
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	conn, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(webhookPort), &tls.Config{
		ServerName: "friendgate-webhook-service." + ns + ".svc",
		RootCAs:    roots,
		NextProtos: []string{"h2", "http/1.1"},
	})
	if err != nil {
		t.Fatalf("TLS to the webhook as the API server would: %v", err)
	}
	if proto := conn.ConnectionState().NegotiatedProtocol; proto != "http/1.1" {
		t.Errorf("negotiated %q, want http/1.1", proto)
	}
	conn.Close()

	checkSecureMetrics(t, env, ns, metricsAddr)

	// The leader writes status under the same RBAC; with no webhook replica running, a
	// valid policy is NoReplicas. (The API server cannot reach the webhook through a
	// Service here; the configuration fails open, so the create goes through.)
	if err := env.EnsureNamespace(ctx, "im"); err != nil {
		t.Fatal(err)
	}
	fp := &v1alpha1.FriendPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "im", Name: "no-links"},
		Spec:       v1alpha1.FriendPolicySpec{Rules: []v1alpha1.Rule{{Name: "no-links", WordingPatterns: []string{`https?://`}}}},
	}
	if err := env.Client.Create(ctx, fp); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Minute, done, func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(fp), fp); err != nil {
			return err
		}
		ready := meta.FindStatusCondition(fp.Status.Conditions, v1alpha1.ConditionReady)
		if fp.Status.ObservedGeneration != fp.Generation || ready == nil || ready.Reason != v1alpha1.ReasonNoReplicas {
			return fmt.Errorf("status %+v, want Ready reason %s for generation %d", fp.Status, v1alpha1.ReasonNoReplicas, fp.Generation)
		}
		return nil
	})

	if err := proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("controller after SIGTERM: %v", err)
	}
	done <- nil // for the cleanup
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(lease), lease); err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h != nil && *h != "" {
		t.Errorf("the leader Lease is still held by %q after the controller stopped", *h)
	}
}

// commandArgsEnv carries the arguments of TestRunCommand, which runs friendgate.
const commandArgsEnv = "FRIENDGATE_TEST_COMMAND_ARGS"

// TestRunCommand is not a test of its own: startCommand runs the test binary with it to
// run friendgate in a process of its own, with its own flags, logger, metrics registry
// and signals, as in a pod.
func TestRunCommand(t *testing.T) {
	args := os.Getenv(commandArgsEnv)
	if args == "" {
		t.Skip("runs only in the process startCommand starts")
	}
	root := newRootCommand()
	root.SetArgs(strings.Split(args, "\n"))
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// startCommand runs `friendgate args...` in a process until the test ends (it sends
// SIGTERM then). done receives the process's exit error, nil for status 0; its log is
// shown if the test fails.
func startCommand(t *testing.T, args ...string) (*os.Process, chan error) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "friendgate.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRunCommand$")
	cmd.Env = append(os.Environ(), commandArgsEnv+"="+strings.Join(args, "\n"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case err := <-done:
			done <- err
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
		}
		if err := <-done; err != nil {
			t.Logf("controller exited: %v", err)
		}
		logFile.Close()
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("friendgate %s log:\n%s", strings.Join(args, " "), log)
		}
	})
	return cmd.Process, done
}

// checkSecureMetrics scrapes the controller's /metrics as Prometheus would, with the
// token of a ServiceAccount bound to friendgate-metrics-reader, and checks that no token,
// or the token of a ServiceAccount without the role, is refused.
func checkSecureMetrics(t *testing.T, env *testenv.Env, ns, addr string) {
	t.Helper()
	reader, _ := env.ServiceAccountToken(t, ns, "prometheus", "friendgate-metrics-reader")
	nosy, _ := env.ServiceAccountToken(t, ns, "nosy")
	url := "https://" + addr + "/metrics"
	testenv.Eventually(t, time.Minute, "the metrics reader scrapes /metrics", func() (bool, string) {
		status, body := testenv.GetWithToken(url, reader)
		return status == http.StatusOK && strings.Contains(body, "friendgate_webhook_replicas_serving"), fmt.Sprintf("%d %.200s", status, body)
	})
	for _, c := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"a ServiceAccount without the role", nosy, http.StatusForbidden},
	} {
		if status, body := testenv.GetWithToken(url, c.token); status != c.want {
			t.Errorf("/metrics with %s: %d %.200s, want %d", c.name, status, body, c.want)
		}
	}
	if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("/metrics answered plain HTTP with 200")
		}
	}
}

// applyManifests creates the objects in the YAML file at path (relative to the repository
// root).
func applyManifests(t *testing.T, env *testenv.Env, path string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(env.Root, path))
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			return
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		if err := env.Client.Create(context.Background(), obj); err != nil {
			t.Fatalf("%s: creating %s %s: %v", path, obj.GetKind(), obj.GetName(), err)
		}
	}
}

// generatedWebhookConfiguration is config/webhook/manifests.yaml named as config/default's
// kustomization names it: prefix friendgate-, Service in namespace.
func generatedWebhookConfiguration(t *testing.T, root, namespace string) *admissionregistrationv1.ValidatingWebhookConfiguration {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "config", "webhook", "manifests.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := yaml.UnmarshalStrict(bytes.TrimPrefix(data, []byte("---\n")), vwc); err != nil {
		t.Fatal(err)
	}
	vwc.Name = "friendgate-" + vwc.Name
	for i := range vwc.Webhooks {
		svc := vwc.Webhooks[i].ClientConfig.Service
		svc.Name, svc.Namespace = "friendgate-"+svc.Name, namespace
	}
	// The flags' defaults must be the names config/default gives.
	flags := newControllerCommand().Flags()
	if def := flags.Lookup("validating-webhook-configuration-name").DefValue; vwc.Name != def {
		t.Errorf("config/default names the webhook configuration %q, --validating-webhook-configuration-name defaults to %q", vwc.Name, def)
	}
	if def := flags.Lookup("webhook-service-name").DefValue; vwc.Webhooks[0].ClientConfig.Service.Name != def {
		t.Errorf("config/default names the Service %q, --webhook-service-name defaults to %q", vwc.Webhooks[0].ClientConfig.Service.Name, def)
	}
	return vwc
}

// waitUntil waits with testenv.Eventually until check returns nil, failing the test
// with its last error after timeout, or as soon as the process ends (done).
func waitUntil(t *testing.T, timeout time.Duration, done chan error, check func() error) {
	t.Helper()
	testenv.Eventually(t, timeout, "friendgate", func() (bool, string) {
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("friendgate stopped: %v", err)
		default:
		}
		err := check()
		return err == nil, fmt.Sprint(err)
	})
}
