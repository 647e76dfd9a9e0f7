package cmd

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/friendgate/friendgate/internal/metricsauth"
	"github.com/friendgate/friendgate/internal/policy"
	"github.com/friendgate/friendgate/internal/propagation"
	"github.com/friendgate/friendgate/internal/replica"
	"github.com/friendgate/friendgate/internal/runnable"
	"github.com/friendgate/friendgate/internal/velocity"
)

// replicaFlags are the settings of a webhook replica in a cluster.
type replicaFlags struct {
	callback      callbackFlags
	namespace     string
	replicaID     string
	leaseDuration time.Duration
	maxLists      int
}

func (f *replicaFlags) bind(fs *pflag.FlagSet) {
	f.callback.bind(fs)
	f.callback.bindMetrics(fs)
	f.callback.bindMetricsSecure(fs)
	f.bindIdentity(fs)
	fs.StringVar(&f.namespace, "namespace", defaultNamespace(), "namespace of the replica's Lease; defaults to POD_NAMESPACE, else the pod's ServiceAccount namespace")
	fs.IntVar(&f.maxLists, "max-list-entries", policy.DefaultMaxListEntries, "most user IDs one blocklist may take from ConfigMaps")
}

// bindIdentity binds the flags that name the replica and its Lease.
func (f *replicaFlags) bindIdentity(fs *pflag.FlagSet) {
	id := os.Getenv("POD_NAME")
	if id == "" {
		id, _ = os.Hostname()
	}
	fs.StringVar(&f.replicaID, "replica-id", id, "identity of this replica in its Lease; defaults to POD_NAME, else the host name")
	fs.DurationVar(&f.leaseDuration, "replica-lease-duration", propagation.DefaultLeaseDuration,
		"how long this replica counts as alive after a Lease renewal; it renews every third of it")
}

func (f *replicaFlags) validate() error {
	if f.replicaID == "" {
		return fmt.Errorf("--replica-id is required when neither POD_NAME nor the host name is set")
	}
	if f.leaseDuration < 3*time.Second {
		return fmt.Errorf("--replica-lease-duration must be at least 3s, not %s", f.leaseDuration)
	}
	return nil
}

func newWebhookCommand() *cobra.Command {
	var flags replicaFlags
	c := &cobra.Command{
		Use:   "webhook",
		Short: "Answer IM callbacks from the cluster's FriendPolicies (one of N replicas)",
		Long: `webhook is a callback server replica. It watches FriendPolicies and the ConfigMaps
labelled friendgate.io/list (read-only), compiles them into a snapshot that it swaps in
atomically, and answers OpenIM (/openim) and Tencent Cloud Chat (/tencent) callbacks from
memory. /readyz fails until the first complete snapshot; when the API server is away the
last snapshot keeps answering.

Once its first snapshot is in force, each replica keeps a Lease
(friendgate-webhook-<replica-id>) saying which policy changes it enforces and whether it
counts limits through Redis or alone, so the controller can report on each FriendPolicy
whether every serving replica enforces its current generation and whether its limits are
counted across replicas. Run as many replicas as the load needs; none is a leader.`,
		Example: `  friendgate webhook --tencent-tokens-dir /etc/friendgate/tencent --openim-allowed-cidrs 10.0.0.0/8`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := flags.validate(); err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			mgr, err := newReplicaManager()
			if err != nil {
				return err
			}
			if err := addReplica(mgr, &flags); err != nil {
				return err
			}
			return mgr.Start(ctx)
		},
	}
	flags.bind(c.Flags())
	return c
}

// newReplicaManager starts the manager of a replica: a cache of policies and labelled
// ConfigMaps, no metrics or probe server of its own (the callback server serves both), and
// no leader election: every replica serves.
func newReplicaManager() (manager.Manager, error) {
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 kubeScheme(),
		Cache:                  replica.CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
}

// addReplica adds the callback server, the snapshot builder and the Lease reporter to mgr.
// They run on every replica, leader or not.
func addReplica(mgr manager.Manager, flags *replicaFlags) error {
	log := logger("webhook")
	srv, err := newCallbackServer(&flags.callback, log, ctrlmetrics.Registry)
	if err != nil {
		return err
	}
	if flags.callback.metricsSecure {
		if srv.metricsFilter, err = metricsauth.FilterProvider(mgr.GetConfig(), mgr.GetHTTPClient()); err != nil {
			return fmt.Errorf("--metrics-secure: %w", err)
		}
	}
	reporter := &replica.LeaseReporter{
		Client:    mgr.GetClient(),
		Reader:    mgr.GetAPIReader(),
		Namespace: flags.namespace,
		ID:        flags.replicaID,
		Duration:  flags.leaseDuration,
		PodName:   os.Getenv("POD_NAME"),
		PodUID:    types.UID(os.Getenv("POD_UID")),
		// The controller warns on policies with limits when replicas count them alone.
		LimitsCounting: srv.limitsCounting,
		Log:            log.WithName("lease"),
	}
	builder := &replica.Builder{
		Cache:   mgr.GetCache(),
		Options: policy.Options{MaxListEntries: flags.maxLists},
		Log:     log.WithName("snapshot"),
		OnSnapshot: func(s *policy.Snapshot, watermark string) {
			srv.store.Set(s)
			reporter.SetWatermark(watermark)
			srv.releaseBuildMemory()
		},
		OnWatermark: reporter.SetWatermark,
		OnInvalid:   func(string, error) { srv.metrics.ReloadFailed("kubernetes") },
	}
	for _, r := range []manager.Runnable{builder, reporter, runnable.OnEveryReplica(func(ctx context.Context) error { return srv.run(ctx, log) })} {
		if err := mgr.Add(r); err != nil {
			return err
		}
	}
	return nil
}

// limitsCounting says, for the replica's Lease, how the callback server counts limits at
// the moment: through Redis (Shared), or in this process (no --redis-addr, or Redis failing).
func (s *callbackServer) limitsCounting() propagation.Counting {
	if s.counter.Mode() == velocity.Shared {
		return propagation.CountingShared
	}
	return propagation.CountingLocal
}
