package admission

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
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
// The webhook server takes the certificate from the Secret through the API server
// (Options.TLSOpts), renewals included. The Secret must still be mounted at CertDir:
// cert-controller stops the process if its file has not appeared there after about 17
// minutes.
type CertRotation struct {
	// Namespace and SecretName name the Secret. It must exist, empty or not: the rotator
	// only updates it, so the controller needs no permission to create Secrets.
	Namespace, SecretName string
	// DNSName is the name the API server calls the webhook at: <service>.<namespace>.svc.
	DNSName string
	// WebhookConfiguration is the name of the ValidatingWebhookConfiguration to inject
	// the CA into.
	WebhookConfiguration string

	// serving is shared by the server's TLSOpts and Setup.
	serving *secretCertificate
}

func (cr *CertRotation) secretCertificate() *secretCertificate {
	if cr.serving == nil {
		cr.serving = &secretCertificate{key: types.NamespacedName{Namespace: cr.Namespace, Name: cr.SecretName}}
	}
	return cr.serving
}

// TLSOpts are the TLS options of the webhook server that Setup serves on. With
// CertRotation, the server takes its certificate from the Secret as the API server has
// it, not from the mounted copy in CertDir: the kubelet refreshes a mounted Secret only
// every minute or so, and the replica that did not fill the Secret itself stayed unready
// until then (`helm install --wait` took two minutes).
func (o Options) TLSOpts() []func(*tls.Config) {
	if o.CertRotation == nil {
		return nil
	}
	sc := o.CertRotation.secretCertificate()
	return []func(*tls.Config){func(c *tls.Config) { c.GetCertificate = sc.GetCertificate }}
}

// Setup serves the Validator on mgr's webhook server once it has its certificate.
//
// Without CertRotation the certificate must already be in opts.CertDir: the webhook
// server would fail to start otherwise, so Setup says so now. With it, mgr's webhook
// server must have been built with opts.TLSOpts(), and it is registered only when the
// Secret holds a serving certificate for the Service's name and the webhook
// configuration trusts its CA: until then the server does not listen, and a readiness
// check on it (webhook.Server.StartedChecker) keeps the pod out of the Service.
func Setup(mgr ctrl.Manager, opts Options) error {
	if opts.CertRotation == nil {
		for _, name := range []string{certFile, keyFile} {
			if _, err := os.Stat(filepath.Join(opts.CertDir, name)); err != nil {
				return fmt.Errorf("admission webhook certificate: %w; mount the Secret of a cert-manager Certificate there, or enable the built-in rotation", err)
			}
		}
		return SetupWithManager(mgr)
	}
	if err := addCertRotator(mgr, opts.CertDir, opts.CertRotation); err != nil {
		return err
	}
	ready, err := opts.CertRotation.secretCertificate().setup(mgr, opts.CertRotation)
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

// addCertRotator adds cert-controller's rotator to mgr.
func addCertRotator(mgr manager.Manager, certDir string, cr *CertRotation) error {
	switch {
	case cr.Namespace == "" || cr.SecretName == "":
		return errors.New("certificate rotation: the Secret's namespace and name are required")
	case cr.DNSName == "":
		return errors.New("certificate rotation: the webhook Service's DNS name is required")
	case cr.WebhookConfiguration == "":
		return errors.New("certificate rotation: the ValidatingWebhookConfiguration name is required")
	}
	err := rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey:      types.NamespacedName{Namespace: cr.Namespace, Name: cr.SecretName},
		CertDir:        certDir,
		CertName:       certFile,
		KeyName:        keyFile,
		CAName:         "friendgate-ca",
		CAOrganization: "friendgate",
		DNSName:        cr.DNSName,
		// Closed once the file is mounted; readiness comes from the Secret instead.
		IsReady:    make(chan struct{}),
		Webhooks:   []rotator.WebhookInfo{{Name: cr.WebhookConfiguration, Type: rotator.Validating}},
		FieldOwner: "friendgate-controller",
		// Every replica serves the webhook, not only the leader, so every replica needs
		// the certificate; concurrent Secret updates are resolved by resourceVersion.
		RequireLeaderElection: false,
		// Inject the CA at once: the server does not wait for the mounted copy.
		EnableReadinessCheck: false,
	})
	if err != nil {
		return fmt.Errorf("certificate rotation: %w", err)
	}
	return nil
}

// secretCertificate is the webhook server's certificate as the rotator's Secret holds
// it, read from an informer on that one Secret.
type secretCertificate struct {
	key    types.NamespacedName
	reader client.Reader // set by setup, before the server starts
	parsed atomic.Pointer[versionedCertificate]
}

// versionedCertificate is the certificate parsed from one resourceVersion of the Secret.
type versionedCertificate struct {
	resourceVersion string
	cert            *tls.Certificate
}

// GetCertificate is the server's tls.Config.GetCertificate: the Secret's current key
// pair, parsed again only when the Secret has changed.
func (s *secretCertificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if s.reader == nil {
		return nil, errors.New("admission webhook certificate: Setup has not run")
	}
	secret := &corev1.Secret{}
	if err := s.reader.Get(context.Background(), s.key, secret); err != nil {
		return nil, fmt.Errorf("admission webhook certificate Secret %s: %w", s.key, err)
	}
	if p := s.parsed.Load(); p != nil && p.resourceVersion == secret.ResourceVersion {
		return p.cert, nil
	}
	cert, err := tls.X509KeyPair(secret.Data[certFile], secret.Data[keyFile])
	if err != nil {
		return nil, fmt.Errorf("admission webhook certificate Secret %s: %w", s.key, err)
	}
	s.parsed.Store(&versionedCertificate{resourceVersion: secret.ResourceVersion, cert: &cert})
	return &cert, nil
}

// setup starts, on every replica, an informer on the Secret and one on the webhook
// configuration (the rotator's RBAC: list and watch), and returns a channel closed once
// the Secret holds a serving certificate for cr.DNSName and every webhook of the
// configuration trusts its CA.
func (s *secretCertificate) setup(mgr manager.Manager, cr *CertRotation) (<-chan struct{}, error) {
	scheme := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(admissionregistrationv1.AddToScheme(scheme))
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme: scheme,
		Mapper: mgr.GetRESTMapper(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {
				Namespaces: map[string]cache.Config{cr.Namespace: {}},
				Field:      fields.OneTermEqualSelector("metadata.name", cr.SecretName),
			},
			&admissionregistrationv1.ValidatingWebhookConfiguration{}: {Field: fields.OneTermEqualSelector("metadata.name", cr.WebhookConfiguration)},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("admission webhook certificate: %w", err)
	}
	if err := mgr.Add(runnable.OnEveryReplica(c.Start)); err != nil {
		return nil, err
	}
	s.reader = c
	ready := make(chan struct{})
	err = mgr.Add(runnable.OnEveryReplica(func(ctx context.Context) error {
		if !c.WaitForCacheSync(ctx) {
			return nil
		}
		log := mgr.GetLogger().WithName("admission")
		err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			err := servable(ctx, c, cr)
			if err != nil {
				log.V(1).Info("admission webhook not servable yet", "reason", err.Error())
			}
			return err == nil, nil
		})
		if err == nil {
			close(ready)
		}
		return nil
	}))
	return ready, err
}

// servable says why the Secret's certificate cannot be served yet, if it cannot: the
// API server would not trust it.
func servable(ctx context.Context, r client.Reader, cr *CertRotation) error {
	secret := &corev1.Secret{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: cr.Namespace, Name: cr.SecretName}, secret); err != nil {
		return err
	}
	ca := secret.Data["ca.crt"]
	valid, err := rotator.ValidCert(ca, secret.Data[certFile], secret.Data[keyFile], cr.DNSName,
		&[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, time.Now())
	if !valid {
		return fmt.Errorf("the Secret holds no valid serving certificate for %s: %v", cr.DNSName, err)
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := r.Get(ctx, types.NamespacedName{Name: cr.WebhookConfiguration}, vwc); err != nil {
		return err
	}
	for _, wh := range vwc.Webhooks {
		if !bytes.Equal(wh.ClientConfig.CABundle, ca) {
			return fmt.Errorf("webhook %s does not trust the Secret's CA yet", wh.Name)
		}
	}
	return nil
}
