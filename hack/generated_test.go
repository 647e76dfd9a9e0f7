// Package hack holds the project's scripts and the test that keeps generated files fresh.
package hack

import (
	"bytes"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/friendgate/friendgate/internal/testenv"
)

// TestGeneratedFilesUpToDate fails when the committed CRDs, RBAC role or deepcopy code differ
// from what the markers in the Go sources generate. It runs the Makefile's own manifests and
// generate targets in a copy of the repository, so the controller-gen invocations cannot
// drift from the Makefile's and the working tree is never written.
func TestGeneratedFilesUpToDate(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	controllerGen := controllerGenPath(t, root)
	makeBin, err := exec.LookPath("make")
	if err != nil {
		t.Fatalf("make is needed to run the Makefile's manifests and generate targets: %v", err)
	}

	committed := readTree(t, root)
	work := t.TempDir()
	for path, data := range committed {
		target := filepath.Join(work, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(target, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	cmd := exec.Command(makeBin, "manifests", "generate", "CONTROLLER_GEN="+controllerGen)
	cmd.Dir = work
	// Under `make test` the parent make's flags and jobserver would leak into this make.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return name == "MAKEFLAGS" || name == "MFLAGS" || name == "MAKELEVEL"
	})
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make manifests generate: %v\n%s", err, out)
	}

	generated := readTree(t, work)
	var stale []string
	for _, path := range slices.Sorted(maps.Keys(generated)) {
		old, found := committed[path]
		switch {
		case !found:
			stale = append(stale, path+": generated but not in the repository")
		case !bytes.Equal(old, generated[path]):
			stale = append(stale, path+": "+firstDifference(old, generated[path]))
		}
	}
	// controller-gen never deletes, so this only fires if the targets clean their output
	// first; then a missing file is one no marker produces any more.
	for _, path := range slices.Sorted(maps.Keys(committed)) {
		if _, found := generated[path]; !found {
			stale = append(stale, path+": in the repository but no longer generated")
		}
	}
	if len(stale) > 0 {
		t.Errorf("generated files are stale; run `make manifests generate` and commit the result:\n  %s",
			strings.Join(stale, "\n  "))
	}
}

// controllerGenPath returns the absolute path of the controller-gen to run: $CONTROLLER_GEN
// (as `make test` passes it), else the one `make controller-gen` installs.
func controllerGenPath(t *testing.T, root string) string {
	t.Helper()
	path := os.Getenv("CONTROLLER_GEN")
	if path == "" {
		path = filepath.Join(root, "bin", "controller-gen")
	}
	resolved, err := exec.LookPath(path)
	if err != nil {
		t.Fatalf("controller-gen not found (%v); run `make controller-gen` to install the pinned version", err)
	}
	abs, err := filepath.Abs(resolved)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// readTree returns the contents of the regular files under root by slash-separated relative
// path. It leaves out .git and bin (tool and control-plane binaries, hundreds of MB), which
// code generation does not read.
func readTree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if d.IsDir() && (rel == ".git" || rel == "bin") {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = data
		return nil
	})
	if err != nil {
		t.Fatalf("reading %s: %v", root, err)
	}
	return files
}

// firstDifference describes the first line at which two different contents differ.
func firstDifference(committed, generated []byte) string {
	a := strings.SplitAfter(string(committed), "\n")
	b := strings.SplitAfter(string(generated), "\n")
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return fmt.Sprintf("first difference at line %d: committed %s, generated %s", i+1, lineAt(a, i), lineAt(b, i))
}

func lineAt(lines []string, i int) string {
	if i < len(lines) {
		return fmt.Sprintf("%q", lines[i])
	}
	return "end of file"
}
