package admission

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/friendgate/friendgate/internal/runnable"
)

// The built-in rotator reads its Secret (in the controller's namespace) and the
// ValidatingWebhookConfiguration through informers, which list and watch without a name,
// so only update can be narrowed to the default names; a deployment that renames them with
// flags must grant update on its names instead.
//
// +kubebuilder:rbac:groups="",namespace=friendgate-system,resources=secrets,verbs=list;watch
// +kubebuilder:rbac:groups="",namespace=friendgate-system,resources=secrets,resourceNames=friendgate-webhook-server-cert,verbs=update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,resourceNames=friendgate-validating-webhook-configuration,verbs=update

// Serving certificate file names in the cert dir: those of a kubernetes.io/tls Secret
// mounted as a volume, and controller-runtime's defaults.
const (
	certFile = corev1.TLSCertKey
	keyFile  = corev1.TLSPrivateKeyKey
)

// Options say how the webhook gets its serving certificate.
type Options struct {
	// CertDir is the webhook server's certificate directory (webhook.Options.CertDir):
	// where the Secret with tls.crt and tls.key is mounted.
	CertDir string
	// CertRotation, when set, makes the controller issue and renew the certificate
	// itself. When nil, another party (cert-manager, typically) fills the mounted Secret
	// and injects the CA into the ValidatingWebhookConfiguration.
	CertRotation *CertRotation
}

// CertRotation configures the built-in certificate rotator, for clusters without
// cert-manager. It is OPA Gatekeeper's cert-controller: it keeps a self-signed CA (10
// years) and a serving certificate signed by it (1 year) in a Secret, renews them 90
// days before they expire (checking every 12 hours and whenever the Secret changes), and
// keeps the CA in the caBundle of every webhook of the ValidatingWebhookConfiguration.
// The kubelet projects the Secret into CertDir, where the webhook server picks up
// renewed files without a restart.
type CertRotation struct {
	// Namespace and SecretName name the Secret. It must exist, empty or not: the rotator
	// only updates it, so the controller needs no permission to create Secrets.
	Namespace, SecretName string
	// DNSName is the name the API server calls the webhook at: <service>.<namespace>.svc.
	DNSName string
	// WebhookConfiguration is the name of the ValidatingWebhookConfiguration to inject
	// the CA into.
	WebhookConfiguration string
}

// Setup serves the Validator on mgr's webhook server once its certificate is in
// opts.CertDir.
//
// Without CertRotation the certificate must already be there: the webhook server would
// fail to start otherwise, so Setup says so now. With it, the server is registered only
// when the rotator has written the Secret, the kubelet has projected it into CertDir and
// the CA is injected: until then the server does not listen, and a readiness check on
// it (webhook.Server.StartedChecker) keeps the pod out of the Service.
func Setup(mgr ctrl.Manager, opts Options) error {
	if opts.CertRotation == nil {
		for _, name := range []string{certFile, keyFile} {
			if _, err := os.Stat(filepath.Join(opts.CertDir, name)); err != nil {
				return fmt.Errorf("admission webhook certificate: %w; mount the Secret of a cert-manager Certificate there, or enable the built-in rotation", err)
			}
		}
		return SetupWithManager(mgr)
	}
	ready, err := addCertRotator(mgr, opts.CertDir, opts.CertRotation)
	if err != nil {
		return err
	}
	return mgr.Add(runnable.OnEveryReplica(func(ctx context.Context) error {
		select {
		case <-ready:
			mgr.GetLogger().WithName("admission").Info("serving certificate ready; serving the FriendPolicy admission webhook")
			return SetupWithManager(mgr)
		case <-ctx.Done():
			return nil
		}
	}))
}

// addCertRotator adds cert-controller's rotator to mgr and returns a channel closed once
// the certificate is in certDir and the CA is injected.
func addCertRotator(mgr manager.Manager, certDir string, cr *CertRotation) (<-chan struct{}, error) {
	switch {
	case cr.Namespace == "" || cr.SecretName == "":
		return nil, errors.New("certificate rotation: the Secret's namespace and name are required")
	case cr.DNSName == "":
		return nil, errors.New("certificate rotation: the webhook Service's DNS name is required")
	case cr.WebhookConfiguration == "":
		return nil, errors.New("certificate rotation: the ValidatingWebhookConfiguration name is required")
	}
	ready := make(chan struct{})
	err := rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey:      types.NamespacedName{Namespace: cr.Namespace, Name: cr.SecretName},
		CertDir:        certDir,
		CertName:       certFile,
		KeyName:        keyFile,
		CAName:         "friendgate-ca",
		CAOrganization: "friendgate",
		DNSName:        cr.DNSName,
		IsReady:        ready,
		Webhooks:       []rotator.WebhookInfo{{Name: cr.WebhookConfiguration, Type: rotator.Validating}},
		FieldOwner:     "friendgate-controller",
		// Every replica serves the webhook, not only the leader, so every replica needs
		// the certificate; concurrent Secret updates are resolved by resourceVersion.
		RequireLeaderElection: false,
		// Inject the CA only once the certificate is mounted in this replica's cert dir.
		EnableReadinessCheck: true,
	})
	if err != nil {
		return nil, fmt.Errorf("certificate rotation: %w", err)
	}
	return ready, nil
}
