// Package manifest reads FriendPolicy and ConfigMap manifests from YAML or JSON files, the
// way `kubectl apply -f` would, for the modes that run without a cluster.
package manifest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

// DefaultNamespace is the namespace of a manifest that names none, as with kubectl.
const DefaultNamespace = "default"

// maxFileSize bounds one manifest file; etcd refuses objects above 1.5 MiB anyway.
const maxFileSize = 16 << 20

// Set is what a set of manifest files declares.
type Set struct {
	Policies   []*v1alpha1.FriendPolicy
	ConfigMaps []*corev1.ConfigMap
}

// Load reads every .yaml, .yml and .json file under the given files and directories
// (recursively), keeping FriendPolicy and ConfigMap documents and skipping everything else.
// Files whose name ends in friendgate-test.yaml are test suites, not manifests, and are skipped.
// Duplicate objects, unknown fields and malformed documents are errors naming the file.
func Load(paths ...string) (*Set, error) {
	files, err := Files(paths...)
	if err != nil {
		return nil, err
	}
	set := &Set{}
	seen := map[string]string{}
	var errs []error
	for _, f := range files {
		if err := set.readFile(f, seen); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return set, nil
}

// Files lists the manifest files under paths, sorted, so loading is deterministic.
func Files(paths ...string) ([]string, error) {
	return Find(isManifest, paths...)
}

// Find lists, sorted, the files under paths whose name satisfies match: a path that is a
// file is taken as it is, a directory is searched recursively, skipping hidden
// directories below it. `friendgate test` finds its suites this way and manifests too, so
// both see the same tree.
func Find(match func(name string) bool, paths ...string) ([]string, error) {
	var files []string
	for _, root := range paths {
		info, err := os.Stat(root)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			files = append(files, root)
			continue
		}
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != root && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				return nil
			}
			if match(d.Name()) {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(files)
	return files, nil
}

func isManifest(name string) bool {
	if strings.HasPrefix(name, ".") || IsTestFile(name) {
		return false
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// IsTestFile reports whether a file name is a `friendgate test` suite.
func IsTestFile(name string) bool {
	return strings.HasSuffix(name, "friendgate-test.yaml") || strings.HasSuffix(name, "friendgate-test.yml")
}

func (s *Set) readFile(path string, seen map[string]string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return fmt.Errorf("%s: larger than %d bytes", path, maxFileSize)
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for doc := 1; ; doc++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: document %d: %w", path, doc, err)
		}
		if err := s.addDocument(raw, fmt.Sprintf("%s document %d", path, doc), seen); err != nil {
			return fmt.Errorf("%s: document %d: %w", path, doc, err)
		}
	}
}

func (s *Set) addDocument(raw []byte, where string, seen map[string]string) error {
	if len(bytes.TrimSpace(stripComments(raw))) == 0 {
		return nil
	}
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(raw, &tm); err != nil {
		return err
	}
	var obj interface {
		GetNamespace() string
		SetNamespace(string)
		GetName() string
	}
	switch {
	case tm.APIVersion == v1alpha1.GroupVersion.String() && tm.Kind == "FriendPolicy":
		fp := &v1alpha1.FriendPolicy{}
		if err := yaml.UnmarshalStrict(raw, fp); err != nil {
			return fmt.Errorf("FriendPolicy: %w", err)
		}
		s.Policies = append(s.Policies, fp)
		obj = fp
	case tm.APIVersion == "v1" && tm.Kind == "ConfigMap":
		cm := &corev1.ConfigMap{}
		if err := yaml.UnmarshalStrict(raw, cm); err != nil {
			return fmt.Errorf("ConfigMap: %w", err)
		}
		s.ConfigMaps = append(s.ConfigMaps, cm)
		obj = cm
	default:
		// Other kinds, and YAML that is no Kubernetes object at all (kustomization.yaml,
		// Helm values), live beside policies in GitOps repositories.
		return nil
	}
	if obj.GetName() == "" {
		return fmt.Errorf("%s has no metadata.name", tm.Kind)
	}
	if obj.GetNamespace() == "" {
		obj.SetNamespace(DefaultNamespace)
	}
	id := tm.Kind + " " + obj.GetNamespace() + "/" + obj.GetName()
	if prev, dup := seen[id]; dup {
		return fmt.Errorf("%s is declared twice (first in %s)", id, prev)
	}
	seen[id] = where
	return nil
}

// stripComments drops whole-line YAML comments, so a document of only comments is empty.
func stripComments(raw []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}
