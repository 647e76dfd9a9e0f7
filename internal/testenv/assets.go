package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// ModulePath is the module RepoRoot looks for.
const ModulePath = "github.com/friendgate/friendgate"

// assetsEnv is the variable envtest reads the control plane binaries' directory from.
const assetsEnv = "KUBEBUILDER_ASSETS"

// RepoRoot returns the repository root: the nearest directory at or above the working
// directory (a test's package directory) holding the friendgate go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		switch {
		case err == nil:
			if mod := modulePath(data); mod != ModulePath {
				return "", fmt.Errorf("testenv: %s is module %q, not %s", filepath.Join(dir, "go.mod"), mod, ModulePath)
			}
			return dir, nil
		case !errors.Is(err, os.ErrNotExist):
			return "", fmt.Errorf("testenv: %w", err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: no go.mod found at or above the working directory")
		}
		dir = parent
	}
}

var assets struct {
	once sync.Once
	dir  string
	err  error
}

// AssetsDir returns the directory holding the etcd and kube-apiserver binaries: the value
// of KUBEBUILDER_ASSETS when set, otherwise the directory hack/envtest-assets.sh prints
// after building the binaries (the first time; it takes several minutes) or finding them
// in its cache. The result is computed once per process.
func AssetsDir() (string, error) {
	assets.once.Do(func() { assets.dir, assets.err = assetsDir() })
	return assets.dir, assets.err
}

func assetsDir() (string, error) {
	if dir := os.Getenv(assetsEnv); dir != "" {
		if err := checkAssets(dir); err != nil {
			return "", fmt.Errorf("testenv: %s=%s: %w", assetsEnv, dir, err)
		}
		return dir, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	script := filepath.Join(root, "hack", "envtest-assets.sh")

	// go test runs packages in parallel: let one of them build and the others wait for it.
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	unlock, err := lockFile(filepath.Join(root, "bin", ".envtest-assets.lock"))
	if err != nil {
		return "", fmt.Errorf("testenv: locking the envtest assets: %w", err)
	}
	defer unlock()

	var stdout, stderr bytes.Buffer
	cmd := exec.Command("bash", script)
	cmd.Dir = root
	cmd.Stdout = &stdout
	// Show build progress (only written when the binaries are missing) and keep it for the error.
	cmd.Stderr = io.MultiWriter(os.Stderr, &stderr)
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("testenv: %s is unset and %s failed: %w\n%s", assetsEnv, script, err, tail(stderr.String(), 4000))
	}
	dir := lastLine(stdout.String())
	if dir == "" {
		return "", fmt.Errorf("testenv: %s printed no directory", script)
	}
	if err := checkAssets(dir); err != nil {
		return "", fmt.Errorf("testenv: %s printed %s: %w", script, dir, err)
	}
	return dir, nil
}

// checkAssets reports whether dir holds executable etcd and kube-apiserver binaries.
func checkAssets(dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("%s is not an absolute path", dir)
	}
	for _, name := range []string{"etcd", "kube-apiserver"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%s is not an executable file", filepath.Join(dir, name))
		}
	}
	return nil
}

// modulePath returns the path in go.mod's module directive.
func modulePath(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			rest, _, _ = strings.Cut(rest, "//")
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

func lastLine(s string) string {
	last := ""
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			last = line
		}
	}
	return last
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
