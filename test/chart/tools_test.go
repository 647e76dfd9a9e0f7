package chart

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/friendgate/friendgate/internal/testenv"
)

// chartDir is the chart under test, relative to the repository root.
const chartDir = "charts/friendgate"

// repoRoot returns the repository root.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

var helmCheck struct {
	once sync.Once
	path string
	err  error
}

// helmBinary returns the helm to test with: $HELM, else bin/helm as `make helm` installs
// it. bin/helm must be the version the Makefile pins (HELM_VERSION), so a stale binary is
// not silently tested with; a helm named by $HELM elsewhere is used as it is.
func helmBinary(t *testing.T) string {
	t.Helper()
	helmCheck.once.Do(func() {
		root, err := testenv.RepoRoot()
		if err != nil {
			helmCheck.err = err
			return
		}
		local := filepath.Join(root, "bin", "helm")
		path, pinned := os.Getenv("HELM"), ""
		if path == "" {
			path = local
		}
		if filepath.Clean(path) == local {
			if pinned, err = makefileVar(root, "HELM_VERSION"); err != nil {
				helmCheck.err = err
				return
			}
		}
		if _, err := os.Stat(path); err != nil {
			helmCheck.err = fmt.Errorf("helm not found at %s: run `make helm` (go install of the version the Makefile pins into bin/), or set HELM to a helm v3 binary", path)
			return
		}
		out, err := exec.Command(path, "version", "--template", "{{.Version}}").Output()
		if err != nil {
			helmCheck.err = fmt.Errorf("%s version: %v", path, err)
			return
		}
		if version := strings.TrimSpace(string(out)); pinned != "" && version != pinned {
			helmCheck.err = fmt.Errorf("%s is helm %s but the Makefile pins HELM_VERSION %s: run `make helm`", path, version, pinned)
			return
		}
		helmCheck.path = path
	})
	if helmCheck.err != nil {
		t.Fatal(helmCheck.err)
	}
	return helmCheck.path
}

// makefileVar returns the value of `NAME ?= value` in the repository's Makefile.
func makefileVar(root, name string) (string, error) {
	data, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\s*\?=\s*(\S+)\s*$`).FindSubmatch(data)
	if m == nil {
		return "", fmt.Errorf("no %s ?= ... in the Makefile", name)
	}
	return string(m[1]), nil
}

// run runs a command in the repository root and returns its stdout and stderr.
func run(t *testing.T, stdin string, name string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = repoRoot(t)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// helm runs helm with args (in the repository root) and returns stdout; a failure fails
// the test with helm's output.
func helm(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := run(t, "", helmBinary(t), args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, errOut, out)
	}
	return out
}

// helmTemplate renders the chart as release in namespace with the given extra flags
// (values files, --set), CRDs included.
func helmTemplate(t *testing.T, release, namespace string, flags ...string) string {
	t.Helper()
	return helm(t, append([]string{"template", release, chartDir, "--namespace", namespace, "--include-crds"}, flags...)...)
}

// readFile returns the content of a file relative to the repository root.
func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), path))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// kubectl runs the envtest assets' kubectl as the admin user and returns stdout and
// stderr (warnings go there).
func kubectl(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	apiServer(t)
	assets, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	return run(t, stdin, filepath.Join(assets, "kubectl"), append([]string{"--kubeconfig", adminKubeconfig}, args...)...)
}

// mustKubectl is kubectl that fails the test on error.
func mustKubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := kubectl(t, "", args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, errOut, out)
	}
	return out
}

// kustomize builds a kustomization directory (relative to the repository root) with
// kubectl's kustomize, as `kubectl apply -k` does.
func kustomize(t *testing.T, dir string) string {
	t.Helper()
	assets, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, err := run(t, "", filepath.Join(assets, "kubectl"), "kustomize", dir)
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, errOut)
	}
	return out
}

// decode splits a multi-document YAML stream into objects, skipping empty documents.
func decode(t *testing.T, manifests string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifests)))
	for {
		doc, err := dec.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("reading YAML: %v", err)
		}
		obj := &unstructured.Unstructured{}
		if err := utilyaml.Unmarshal(doc, &obj.Object); err != nil {
			t.Fatalf("decoding YAML document: %v\n%s", err, doc)
		}
		if len(obj.Object) == 0 {
			continue
		}
		objs = append(objs, obj)
	}
}

// id names an object for messages: Kind namespace/name.
func id(obj *unstructured.Unstructured) string {
	if ns := obj.GetNamespace(); ns != "" {
		return obj.GetKind() + " " + ns + "/" + obj.GetName()
	}
	return obj.GetKind() + " " + obj.GetName()
}

// find returns the object of kind and name, failing the test if there is none.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	var have []string
	for _, o := range objs {
		have = append(have, id(o))
	}
	t.Fatalf("no %s %s among:\n  %s", kind, name, strings.Join(have, "\n  "))
	return nil
}

// ofKind returns the objects of kind.
func ofKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}
