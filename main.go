// Command friendgate is the friend-request policy operator for IM services: one binary
// whose subcommands are the controller, the callback webhook, the standalone server and
// the offline policy tester.
package main

import (
	"os"

	"github.com/friendgate/friendgate/cmd"
)

func main() {
	os.Exit(cmd.Execute())
}
