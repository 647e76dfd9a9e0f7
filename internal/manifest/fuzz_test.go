package manifest

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// decodeTwice is how documents were decoded before decode: the kind with sigs.k8s.io/yaml's
// Unmarshal, then the object with its UnmarshalStrict.
func decodeTwice(raw []byte) (string, object, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(raw, &tm); err != nil {
		return "", nil, err
	}
	obj := newObject(tm)
	if obj == nil {
		return "", nil, nil
	}
	if err := yaml.UnmarshalStrict(raw, obj); err != nil {
		return "", nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return tm.Kind, obj, nil
}

// FuzzDecodeMatchesTwice checks that decode, which parses a document once, gives what
// parsing it twice with sigs.k8s.io/yaml gives: the same object, or the same error.
func FuzzDecodeMatchesTwice(f *testing.F) {
	samples, err := filepath.Glob("../../config/samples/*.yaml")
	if err != nil || len(samples) == 0 {
		f.Fatalf("no samples: %v", err)
	}
	for _, path := range samples {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, seed := range []string{
		policyDoc,
		listDoc,
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {count: 5, enabled: yes, ratio: 0.1}\n",
		"apiVersion: friendgate.io/v1alpha1\nkind: FriendPolicy\nmetadata: {name: p}\nspec: {appIDs: [1400000001]}\n",
		"APIVersion: friendgate.io/v1alpha1\nKind: FriendPolicy\nkind: FriendPolicy\nMetadata: {Name: p}\n",
		"apiVersion: v1\nkind: 5\n",
		"kind: Kustomization\nresources: [a]\nresources: [b]\n",
		`{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "creationTimestamp": null}}`,
		"- a\n- b\n",
		"null\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		kind, obj, err := decode(raw)
		wantKind, wantObj, wantErr := decodeTwice(raw)
		if fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Fatalf("document %q: error %v, want %v", raw, err, wantErr)
		}
		if kind != wantKind || !reflect.DeepEqual(obj, wantObj) {
			t.Fatalf("document %q: decoded %s %#v, want %s %#v", raw, kind, obj, wantKind, wantObj)
		}
	})
}
