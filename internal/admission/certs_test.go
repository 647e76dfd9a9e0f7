package admission

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/testenv"
)

// Without cert-manager: the rotator fills an empty Secret with a CA and a serving
// certificate, injects the CA into the webhook configuration, and the webhook serves the
// certificate from the Secret at once: its cert dir stays empty, as a mounted Secret
// does until the kubelet refreshes it, a minute or more later. The API server then
// trusts it. Clearing the Secret makes the rotator issue a new CA, which the configuration
// and the server both move to.
func TestCertRotation(t *testing.T) {
	ctx := context.Background()
	ns := env.NewNamespace(t, "rotation")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "friendgate-webhook-server-cert"}}
	if err := env.Client.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	vwc := rotationWebhookConfiguration(ns, port)
	if err := env.Client.Create(ctx, vwc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Client.Delete(context.Background(), vwc); err != nil {
			t.Error(err)
		}
	})
	opts := Options{CertDir: t.TempDir(), CertRotation: &CertRotation{
		Namespace:            ns,
		SecretName:           secret.Name,
		DNSName:              "localhost", // what the configuration's URL names
		WebhookConfiguration: vwc.Name,
	}}

	startManager(t, webhook.Options{Host: "127.0.0.1", Port: port, CertDir: opts.CertDir, TLSOpts: opts.TLSOpts()}, func(mgr manager.Manager) error {
		return Setup(mgr, opts)
	})

	firstCA := checkCertificates(ctx, t, secret, vwc)
	checkAdmission(ctx, t, ns, "before")

	// Clearing the Secret stands for an expired or unreadable CA.
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(secret), secret); err != nil {
		t.Fatal(err)
	}
	secret.Data = nil
	if err := env.Client.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, "the rotator to issue a new CA", func() (bool, string) {
		return !bytes.Equal(checkCertificates(ctx, t, secret, vwc), firstCA), "the CA was not replaced"
	})
	checkAdmission(ctx, t, ns, "after")
}

// rotationWebhookConfiguration is a webhook configuration for the policies of namespace
// ns, served at localhost:port, with no CA bundle yet. Unlike the generated one it fails
// closed, so a TLS failure shows as a refusal instead of being ignored.
func rotationWebhookConfiguration(ns string, port int) *admissionregistrationv1.ValidatingWebhookConfiguration {
	url := fmt.Sprintf("https://localhost:%d%s", port, Path)
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "friendgate-" + ns},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:         "rotation.friendgate.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{
					APIGroups:   []string{v1alpha1.GroupVersion.Group},
					APIVersions: []string{v1alpha1.GroupVersion.Version},
					Resources:   []string{"friendpolicies"},
				},
			}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}},
			FailurePolicy:           new(admissionregistrationv1.Fail),
			SideEffects:             new(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
}

// checkCertificates waits until the Secret holds a CA and a serving certificate for
// localhost signed by it, and the webhook configuration trusts that CA; it returns the CA.
func checkCertificates(ctx context.Context, t *testing.T, secret *corev1.Secret, vwc *admissionregistrationv1.ValidatingWebhookConfiguration) []byte {
	t.Helper()
	var ca []byte
	testenv.Eventually(t, time.Minute, "a certificate in the Secret that the webhook configuration trusts", func() (bool, string) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(secret), secret); err != nil {
			return false, err.Error()
		}
		ca = secret.Data["ca.crt"]
		if err := verifyServing(ca, secret.Data[certFile]); err != nil {
			return false, "Secret: " + err.Error()
		}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(vwc), vwc); err != nil {
			return false, err.Error()
		}
		return bytes.Equal(vwc.Webhooks[0].ClientConfig.CABundle, ca), "the webhook configuration's caBundle is not the Secret's CA"
	})
	return ca
}

// verifyServing checks that cert is a serving certificate for localhost signed by ca.
func verifyServing(ca, cert []byte) error {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return errors.New("no CA certificate")
	}
	block, _ := pem.Decode(cert)
	if block == nil {
		return errors.New("no serving certificate")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return err
	}
	_, err = c.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

// checkAdmission waits until the API server reaches the webhook over TLS and has it refuse
// a policy that does not compile, then creates a valid one.
func checkAdmission(ctx context.Context, t *testing.T, ns, name string) {
	t.Helper()
	const denied = `admission webhook "rotation.friendgate.io" denied the request: `
	testenv.Eventually(t, time.Minute, "the webhook to deny an invalid policy", func() (bool, string) {
		bad := &v1alpha1.FriendPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-invalid"}, Spec: rule(v1alpha1.Rule{When: "request.from"})}
		err := env.Client.Create(ctx, bad)
		// Until the server serves a certificate the API server trusts, the call fails
		// (and the configuration fails closed).
		return apierrors.IsInvalid(err) && strings.HasPrefix(err.Error(), denied) && strings.Contains(err.Error(), "spec.rules[0].when: Invalid value"),
			fmt.Sprintf("invalid policy: got %v, want it denied by the webhook", err)
	})
	good := &v1alpha1.FriendPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-valid"}, Spec: validSpec()}
	if err := env.Client.Create(ctx, good); err != nil {
		t.Fatalf("valid policy: %v", err)
	}
}

func TestSetupRefusesIncompleteOptions(t *testing.T) {
	rotation := CertRotation{Namespace: "friendgate-system", SecretName: "cert", DNSName: "svc.friendgate-system.svc", WebhookConfiguration: "vwc"}
	without := func(clear func(*CertRotation)) *CertRotation {
		r := rotation
		clear(&r)
		return &r
	}
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{name: "no certificate and no rotation", opts: Options{CertDir: t.TempDir()},
			want: "tls.crt: no such file or directory; mount the Secret of a cert-manager Certificate there, or enable the built-in rotation"},
		{name: "rotation without a Secret", opts: Options{CertDir: t.TempDir(), CertRotation: without(func(r *CertRotation) { r.SecretName = "" })},
			want: "certificate rotation: the Secret's namespace and name are required"},
		{name: "rotation without a DNS name", opts: Options{CertDir: t.TempDir(), CertRotation: without(func(r *CertRotation) { r.DNSName = "" })},
			want: "certificate rotation: the webhook Service's DNS name is required"},
		{name: "rotation without a webhook configuration", opts: Options{CertDir: t.TempDir(), CertRotation: without(func(r *CertRotation) { r.WebhookConfiguration = "" })},
			want: "certificate rotation: the ValidatingWebhookConfiguration name is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
			if err != nil {
				t.Fatal(err)
			}
			err = Setup(mgr, tt.opts)
			if err == nil || !strings.HasSuffix(err.Error(), tt.want) {
				t.Errorf("Setup: got %v, want an error ending in %q", err, tt.want)
			}
		})
	}
}
