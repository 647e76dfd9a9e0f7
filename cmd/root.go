// Package cmd holds friendgate's subcommands.
package cmd

import (
	"context"
	goflag "flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// Execute runs the command line and returns the process exit code.
func Execute() int {
	if err := newRootCommand().Execute(); err != nil {
		if code, ok := err.(exitCode); ok {
			return int(code)
		}
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	return 0
}

// exitCode ends the process with a code and no further message: the command has already
// said what went wrong.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit code %d", int(e)) }

func newRootCommand() *cobra.Command {
	zapOpts := &zap.Options{Development: false}
	root := &cobra.Command{
		Use:   "friendgate",
		Short: "Friend-request policy for IM services (OpenIM, Tencent Cloud Chat)",
		Long: `friendgate answers the friend callbacks of OpenIM and Tencent Cloud Chat from
FriendPolicy resources: blocklists, exemptions and rules.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(*cobra.Command, []string) {
			ctrl.SetLogger(zap.New(zap.UseFlagOptions(zapOpts)))
		},
	}
	logFlags := goflag.NewFlagSet("log", goflag.ContinueOnError)
	zapOpts.BindFlags(logFlags)
	root.PersistentFlags().AddGoFlagSet(logFlags)

	if kubeconfig := goflag.CommandLine.Lookup("kubeconfig"); kubeconfig != nil {
		root.PersistentFlags().AddGoFlag(kubeconfig)
	}

	root.AddCommand(newServeCommand(), newTestCommand(), newWebhookCommand(), newRunCommand(), newControllerCommand())
	return root
}

// logger returns the process logger once flags are parsed.
func logger(name string) logr.Logger { return ctrl.Log.WithName(name) }

// signalContext is cancelled on SIGINT or SIGTERM, so every role shuts down gracefully.
func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}
