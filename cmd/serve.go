package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/friendgate/friendgate/internal/filesource"
	"github.com/friendgate/friendgate/internal/policy"
)

func newServeCommand() *cobra.Command {
	var (
		flags    callbackFlags
		paths    []string
		maxLists int
	)
	c := &cobra.Command{
		Use:   "serve --policies PATH",
		Short: "Answer IM callbacks from policy files, with no cluster",
		Long: `serve runs the callback server from FriendPolicy and ConfigMap manifests in files or
directories instead of a cluster. It watches them and swaps in the new policies within a
second of a change; an edit that does not compile is logged and counted
(friendgate_snapshot_reload_errors_total) and the last good policies stay in force.

Point OpenIM's callback URL at http://HOST:8080/openim (or /openim/APPID) and Tencent
Cloud Chat's at http://HOST:8080/tencent. /readyz turns ready once the policies are loaded;
Prometheus metrics are at http://HOST:9090/metrics.`,
		Example: `  friendgate serve --policies config/samples
  friendgate serve --policies policies/ --tencent-tokens-dir /etc/friendgate/tencent --failure-policy Deny`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(paths) == 0 {
				return fmt.Errorf("--policies is required")
			}
			for _, p := range paths {
				if _, err := os.Stat(p); err != nil {
					return fmt.Errorf("--policies: %w", err)
				}
			}
			log := logger("serve")
			srv, err := newCallbackServer(&flags, log, standaloneRegistry())
			if err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()

			src := &filesource.Source{
				Paths:   paths,
				Options: policy.Options{MaxListEntries: maxLists},
				Log:     log.WithName("policies"),
				OnSnapshot: func(s *policy.Snapshot, _ []*policy.Compiled) {
					srv.store.Set(s)
					srv.releaseBuildMemory()
				},
				OnError: func(error) { srv.metrics.ReloadFailed("files") },
			}
			// The server and the file watcher stop together: a watcher that cannot
			// start would otherwise leave a server that never turns ready.
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			srcDone := make(chan error, 1)
			go func() { srcDone <- src.Run(ctx) }()
			srvDone := make(chan error, 1)
			go func() { srvDone <- srv.run(ctx, log) }()
			select {
			case err := <-srvDone:
				cancel()
				return errors.Join(err, <-srcDone)
			case err := <-srcDone:
				if err != nil {
					log.Error(err, "watching the policy files failed; stopping")
				}
				cancel()
				return errors.Join(err, <-srvDone)
			}
		},
	}
	c.Flags().StringSliceVar(&paths, "policies", nil, "FriendPolicy and ConfigMap manifest files or directories (repeatable, comma-separated)")
	c.Flags().IntVar(&maxLists, "max-list-entries", policy.DefaultMaxListEntries, "most user IDs one blocklist may take from ConfigMaps")
	flags.bind(c.Flags())
	flags.bindMetrics(c.Flags())
	return c
}
