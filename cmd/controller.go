package cmd

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/friendgate/friendgate/controllers/status"
	"github.com/friendgate/friendgate/internal/admission"
	"github.com/friendgate/friendgate/internal/metricsauth"
	"github.com/friendgate/friendgate/internal/policy"
)

// controllerLeaseName is the leader-election Lease of the controller replicas.
const controllerLeaseName = "friendgate-controller"

// Leader election takes the Lease in the controller's namespace (create cannot be
// narrowed to a name; get and update can) and records leadership changes as Events there.
//
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=friendgate-system,resources=leases,verbs=create
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=friendgate-system,resources=leases,resourceNames=friendgate-controller,verbs=get;update
// +kubebuilder:rbac:groups="",namespace=friendgate-system,resources=events,verbs=create;patch

// controllerFlags are the settings of `friendgate controller`.
type controllerFlags struct {
	namespace     string
	leaderElect   bool
	metricsAddr   string
	metricsSecure bool
	probeAddr     string
	maxLists      int
	webhookPort   int
	certDir       string
	certRotation  bool
	secretName    string
	serviceName   string
	webhookConfig string
}

func (f *controllerFlags) bind(fs *pflag.FlagSet) {
	fs.StringVar(&f.namespace, "namespace", defaultNamespace(),
		"namespace of the leader-election Lease, of the webhook replicas' Leases and, with --cert-rotation, of the certificate Secret and the webhook Service; "+
			"defaults to POD_NAMESPACE, else the pod's ServiceAccount namespace")
	fs.BoolVar(&f.leaderElect, "leader-elect", true,
		"let one replica at a time write FriendPolicy status (Lease "+controllerLeaseName+"); every replica serves the admission webhook")
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8443", `address of the Prometheus /metrics endpoint (HTTPS with --metrics-secure, else plain HTTP); "0" disables it`)
	fs.StringVar(&f.probeAddr, "health-probe-bind-address", ":8081",
		`address of /healthz and /readyz; /readyz fails until the admission webhook serves with its certificate. "0" disables them`)
	fs.IntVar(&f.maxLists, "max-list-entries", policy.DefaultMaxListEntries, "most user IDs one blocklist may take from ConfigMaps")
	fs.IntVar(&f.webhookPort, "webhook-port", admission.DefaultPort, "HTTPS port of the FriendPolicy admission webhook")
	fs.StringVar(&f.certDir, "webhook-cert-dir", "/tmp/k8s-webhook-server/serving-certs",
		"directory holding the admission webhook's tls.crt and tls.key: where the certificate Secret (cert-manager's, or the one --cert-rotation fills) is mounted")
	fs.BoolVar(&f.certRotation, "cert-rotation", true,
		"issue and renew the admission webhook's certificate in-process: a self-signed CA in --webhook-secret-name, injected into --validating-webhook-configuration-name. "+
			"Set it to false when cert-manager issues the certificate")
	fs.StringVar(&f.secretName, "webhook-secret-name", "friendgate-webhook-server-cert",
		"Secret (in --namespace) that --cert-rotation fills; it must exist, and be mounted at --webhook-cert-dir")
	fs.StringVar(&f.serviceName, "webhook-service-name", "friendgate-webhook-service",
		"Service (in --namespace) in front of the admission webhook; --cert-rotation issues the certificate for <name>.<namespace>.svc")
	fs.StringVar(&f.webhookConfig, "validating-webhook-configuration-name", "friendgate-validating-webhook-configuration",
		"ValidatingWebhookConfiguration whose caBundle --cert-rotation keeps current")
}

// bindMetricsSecure binds --metrics-secure: `controller` only, as `run` serves its
// metrics with the callback server's.
func (f *controllerFlags) bindMetricsSecure(fs *pflag.FlagSet) {
	fs.BoolVar(&f.metricsSecure, "metrics-secure", true, metricsSecureUsage)
}

// metricsOptions are controller-runtime's metrics server settings: with --metrics-secure,
// TLS and every request's token checked by a TokenReview and a SubjectAccessReview, as
// kubebuilder scaffolds it.
func (f *controllerFlags) metricsOptions() metricsserver.Options {
	o := metricsserver.Options{BindAddress: f.metricsAddr}
	if f.metricsSecure {
		o.SecureServing = true
		o.FilterProvider = metricsauth.FilterProvider
	}
	return o
}

func (f *controllerFlags) validate() error {
	switch {
	case f.namespace == "":
		return fmt.Errorf("--namespace must not be empty")
	case f.webhookPort < 1 || f.webhookPort > 65535:
		return fmt.Errorf("--webhook-port must be between 1 and 65535, not %d", f.webhookPort)
	case f.certDir == "":
		return fmt.Errorf("--webhook-cert-dir must not be empty")
	case f.certRotation && (f.secretName == "" || f.serviceName == "" || f.webhookConfig == ""):
		return fmt.Errorf("--cert-rotation needs --webhook-secret-name, --webhook-service-name and --validating-webhook-configuration-name")
	}
	return nil
}

// admissionOptions say where the admission webhook's certificate comes from.
func (f *controllerFlags) admissionOptions() admission.Options {
	opts := admission.Options{CertDir: f.certDir}
	if f.certRotation {
		opts.CertRotation = &admission.CertRotation{
			Namespace:            f.namespace,
			SecretName:           f.secretName,
			DNSName:              f.serviceName + "." + f.namespace + ".svc",
			WebhookConfiguration: f.webhookConfig,
		}
	}
	return opts
}

func newControllerCommand() *cobra.Command {
	var flags controllerFlags
	c := &cobra.Command{
		Use:   "controller",
		Short: "Run the operator: FriendPolicy status and the FriendPolicy admission webhook",
		Long: `controller is the friendgate operator. It compiles every FriendPolicy with the engine the
webhook replicas use, resolves its ConfigMap lists and writes its status: the Ready
condition (Enforced, Propagating, NoReplicas, Invalid or ListError), observedGeneration
and counts: Ready=True once every serving webhook replica enforces the current
generation (from their Leases in --namespace). The serving replicas are listed in the
ConfigMap friendgate-webhook-replicas in --namespace. Run two replicas: one writes status (leader election), both serve
the validating admission webhook that refuses, at kubectl apply, a policy the engine does
not compile (an invalid RE2 pattern, a when that is not a boolean CEL expression), with
the field path.

The webhook's certificate comes either from cert-manager (--cert-rotation=false: mount the
Certificate's Secret at --webhook-cert-dir and let cert-manager's CA injector fill the
caBundle), or from the built-in rotator (--cert-rotation, the default): it keeps a
self-signed CA and a serving certificate in --webhook-secret-name, which must exist and be
mounted at --webhook-cert-dir, renews them before they expire and injects the CA into
--validating-webhook-configuration-name. /readyz fails until the webhook serves.

The webhook's failurePolicy is Ignore: while no controller runs, the CRD schema still
refuses malformed policies and the status reports the rest, and applies are never blocked.`,
		Example: `  # with cert-manager, whose Certificate's Secret is mounted at /certs
  friendgate controller --cert-rotation=false --webhook-cert-dir /certs

  # without: the (initially empty) Secret friendgate-webhook-server-cert is mounted at
  # /tmp/k8s-webhook-server/serving-certs
  friendgate controller`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := flags.validate(); err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			mgr, err := newControllerManager(&flags)
			if err != nil {
				return err
			}
			return mgr.Start(ctx)
		},
	}
	flags.bind(c.Flags())
	flags.bindMetricsSecure(c.Flags())
	return c
}

// newControllerManager sets up the controller: the status reconciler, which runs on the
// leader only, and the admission webhook with its certificate, which run on every replica
// and gate /readyz.
func newControllerManager(flags *controllerFlags) (manager.Manager, error) {
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	admissionOpts := flags.admissionOptions()
	server := admission.NewServer(flags.webhookPort, admissionOpts)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: kubeScheme(),
		// Only the labelled ConfigMaps and the replica Leases, without managedFields.
		Cache: cache.Options{
			ByObject:         status.CacheByObject(flags.namespace),
			DefaultTransform: cache.TransformStripManagedFields(),
		},
		Metrics:                 flags.metricsOptions(),
		HealthProbeBindAddress:  flags.probeAddr,
		WebhookServer:           server,
		LeaderElection:          flags.leaderElect,
		LeaderElectionID:        controllerLeaseName,
		LeaderElectionNamespace: flags.namespace,
		// Hand the Lease over on SIGTERM instead of letting it expire: the process exits
		// as soon as the manager has stopped, so nothing runs after the release.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("admission-webhook", server.StartedChecker()); err != nil {
		return nil, err
	}
	reconciler := &status.Reconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("friendgate-controller"),
		Options:  policy.Options{MaxListEntries: flags.maxLists},
		Replicas: status.NewTracker(mgr.GetCache(), flags.namespace, clock.RealClock{}),
	}
	if err := reconciler.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if err := admission.Setup(mgr, admissionOpts); err != nil {
		return nil, err
	}
	return mgr, nil
}
