// Package manifest reads FriendPolicy and ConfigMap manifests from YAML or JSON files, the
// way `kubectl apply -f` would, for the modes that run without a cluster.
package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

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
	names, err := Files(paths...)
	if err != nil {
		return nil, err
	}
	files := readFiles(names)
	set := &Set{}
	seen := map[string]string{}
	var errs []error
	for _, f := range files {
		if err := set.add(f, seen); err != nil {
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

// file is a manifest file split into its documents.
type file struct {
	path string
	docs []*document
	// err, when set, follows the documents: the file could not be read, or split past them.
	err error
}

// document is one YAML document of a file and what it decodes to.
type document struct {
	// raw is the document's text until it is decoded.
	raw  []byte
	kind string
	// obj is nil for an empty document and for kinds other than FriendPolicy and ConfigMap.
	obj object
	err error
}

// readFiles reads the files one after the other and decodes their documents on every core
// as they are read: decoding is most of the time of loading many policies, and documents
// decode independently of each other. Reading stays only a few documents ahead of
// decoding, so that large lists are not held as text and as objects at once.
func readFiles(names []string) []file {
	workers := runtime.GOMAXPROCS(0)
	read := make(chan *document, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for d := range read {
				if len(bytes.TrimSpace(stripComments(d.raw))) > 0 {
					d.kind, d.obj, d.err = decode(d.raw)
				}
				d.raw = nil
			}
		})
	}
	files := make([]file, len(names))
	for i, name := range names {
		files[i] = readFile(name, read)
	}
	close(read)
	wg.Wait()
	return files
}

// readFile reads a file, splits it into its documents and sends each to decode.
func readFile(path string, decoding chan<- *document) file {
	f := file{path: path}
	data, err := readAll(path)
	if err != nil {
		f.err = err
		return f
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return f
		}
		if err != nil {
			f.err = fmt.Errorf("%s: document %d: %w", path, len(f.docs)+1, err)
			return f
		}
		d := &document{raw: raw}
		f.docs = append(f.docs, d)
		decoding <- d
	}
}

func readAll(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFileSize)
	}
	return data, nil
}

// add adds the objects of a decoded file to the set, in order, up to the file's first
// error, which it returns.
func (s *Set) add(f file, seen map[string]string) error {
	for i, d := range f.docs {
		where := fmt.Sprintf("%s document %d", f.path, i+1)
		if err := s.addDocument(d, where, seen); err != nil {
			return fmt.Errorf("%s: document %d: %w", f.path, i+1, err)
		}
	}
	return f.err
}

func (s *Set) addDocument(d *document, where string, seen map[string]string) error {
	if d.err != nil || d.obj == nil {
		return d.err
	}
	switch o := d.obj.(type) {
	case *v1alpha1.FriendPolicy:
		s.Policies = append(s.Policies, o)
	case *corev1.ConfigMap:
		s.ConfigMaps = append(s.ConfigMaps, o)
	}
	if d.obj.GetName() == "" {
		return fmt.Errorf("%s has no metadata.name", d.kind)
	}
	if d.obj.GetNamespace() == "" {
		d.obj.SetNamespace(DefaultNamespace)
	}
	id := d.kind + " " + d.obj.GetNamespace() + "/" + d.obj.GetName()
	if prev, dup := seen[id]; dup {
		return fmt.Errorf("%s is declared twice (first in %s)", id, prev)
	}
	seen[id] = where
	return nil
}

// object is a FriendPolicy or a ConfigMap.
type object interface {
	GetNamespace() string
	SetNamespace(string)
	GetName() string
}

// newObject returns an empty object of the kind tm names, or nil for any other kind:
// other kinds, and YAML that is no Kubernetes object at all (kustomization.yaml, Helm
// values), live beside policies in GitOps repositories.
func newObject(tm metav1.TypeMeta) object {
	switch {
	case tm.APIVersion == v1alpha1.GroupVersion.String() && tm.Kind == "FriendPolicy":
		return &v1alpha1.FriendPolicy{}
	case tm.APIVersion == "v1" && tm.Kind == "ConfigMap":
		return &corev1.ConfigMap{}
	}
	return nil
}

// decode parses a document strictly into the object its kind names, or returns a nil
// object for another kind.
//
// sigs.k8s.io/yaml's Unmarshal converts YAML to JSON guided by the object's type, which it
// needs only to turn a number or a boolean into a string where the object has a string
// (numeric user IDs and SdkAppids): reading the kind that way, then the object, parses
// the YAML twice, and the YAML parsing is most of the time of loading many policies. So
// the YAML is converted once, unguided, and the kind and the object are decoded from that
// JSON. It differs from the guided JSON only where a number or a boolean stands for a
// string, and there decoding it fails (these objects have no json.Number or ",string"
// field that would take it): then, and on any other error, the guided parse decides, so
// the objects and the errors are the same as sigs.k8s.io/yaml gives.
// FuzzDecodeMatchesTwice checks it.
func decode(raw []byte) (kind string, obj object, err error) {
	var tm metav1.TypeMeta
	j, err := yaml.YAMLToJSONStrict(raw)
	if err != nil || json.Unmarshal(j, &tm) != nil {
		// YAMLToJSONStrict refuses duplicate keys, which other kinds may have.
		j = nil
		if err := yaml.Unmarshal(raw, &tm); err != nil {
			return "", nil, err
		}
	}
	if obj = newObject(tm); obj == nil {
		return "", nil, nil
	}
	if j != nil {
		dec := json.NewDecoder(bytes.NewReader(j))
		dec.DisallowUnknownFields()
		if dec.Decode(obj) == nil {
			return tm.Kind, obj, nil
		}
		// A failed decoding may have set some fields.
		obj = newObject(tm)
	}
	if err := yaml.UnmarshalStrict(raw, obj); err != nil {
		return "", nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return tm.Kind, obj, nil
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
