// Package e2e tests the friendgate binary end to end: each test writes policy files,
// starts `friendgate serve` on a loopback port and talks to it over real HTTP, as OpenIM
// and Tencent Cloud Chat would.
//
// The tests are skipped with -short.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/friendgate/friendgate/internal/testenv"
)

var (
	// binDir holds the friendgate binary for this run; TestMain creates and removes it.
	binDir string

	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "friendgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// friendgateBinary builds the binary from the module root the first time a test needs it
// and returns its path. Building on first use rather than up front in TestMain keeps
// `go test -list` (which `make fuzz` runs on every package) and -short runs fast.
func friendgateBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := testenv.RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(binDir, "friendgate")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build in %s: %v\n%s", root, err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building friendgate: %v", buildErr)
	}
	return binPath
}
