package cmd

import (
	"github.com/spf13/cobra"

	"github.com/friendgate/friendgate/webhook"
)

func newRunCommand() *cobra.Command {
	var (
		controller controllerFlags
		replica    replicaFlags
	)
	c := &cobra.Command{
		Use:   "run",
		Short: "Run the controller and one webhook replica in one process, for small installs",
		Long: `run is friendgate controller and friendgate webhook in one process: the FriendPolicy
status reconciler and admission webhook, and a callback server answering OpenIM and
Tencent Cloud Chat from the cluster's policies. The flags are those of both commands;
/metrics (--metrics-bind-address, :9090 here) serves every metric of both roles.

Status counts this process as one webhook replica, so kubectl wait --for=condition=Ready
works as with separate roles. Use separate roles when the callback load needs more than
one replica.`,
		Example: `  friendgate run --tencent-tokens-dir /etc/friendgate/tencent`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			replica.namespace = controller.namespace
			replica.maxLists = controller.maxLists
			// One /metrics, the callback server's, serves controller-runtime's registry,
			// which holds the metrics of both roles.
			replica.callback.metricsAddr, controller.metricsAddr = controller.metricsAddr, "0"
			if err := controller.validate(); err != nil {
				return err
			}
			if err := replica.validate(); err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			mgr, err := newControllerManager(&controller)
			if err != nil {
				return err
			}
			if err := addReplica(mgr, &replica); err != nil {
				return err
			}
			return mgr.Start(ctx)
		},
	}
	fs := c.Flags()
	controller.bind(fs)
	replica.callback.bind(fs)
	replica.callback.bindMetricsSecure(fs)
	replica.bindIdentity(fs)
	// The controller's default, :8080, is the callback port's here.
	controller.metricsAddr = webhook.DefaultMetricsAddr
	metricsFlag := fs.Lookup("metrics-bind-address")
	metricsFlag.DefValue = webhook.DefaultMetricsAddr
	metricsFlag.Usage = `address of the Prometheus /metrics endpoint (HTTPS with --metrics-secure, else plain HTTP) with both roles' metrics; "0" disables it`
	return c
}
