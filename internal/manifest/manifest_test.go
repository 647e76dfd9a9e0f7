package manifest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const policyDoc = `apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata:
  name: p
spec:
  blocklists:
  - name: listed
    users: [mallory]
`

const listDoc = `apiVersion: v1
kind: ConfigMap
metadata:
  name: reported
  namespace: chat
  labels: {friendgate.io/list: spammers}
data:
  users.txt: |
    spam_1
`

func TestLoad(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		// want lists what the set holds, in order: "KIND NAMESPACE/NAME SPEC-OR-DATA".
		want []string
		// wantErr is the whole error, with the test directory left out of paths.
		wantErr string
	}{
		{
			name:  "policy without a namespace",
			files: map[string]string{"a.yaml": policyDoc},
			want:  []string{`FriendPolicy default/p {"blocklists":[{"name":"listed","users":["mallory"]}]}`},
		},
		{
			name: "documents of every sort in one file",
			files: map[string]string{"a.yaml": "# leading comment\n---\n" + policyDoc + "---\n# only a comment\n---\n---\n" + listDoc +
				"---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: 1}\n" +
				"---\nresources: [a.yaml]\n---\nnull\n"},
			want: []string{
				`FriendPolicy default/p {"blocklists":[{"name":"listed","users":["mallory"]}]}`,
				`ConfigMap chat/reported {"users.txt":"spam_1\n"}`,
			},
		},
		{
			name: "JSON file",
			files: map[string]string{"a.json": `{"apiVersion": "friendgate.io/v1alpha1", "kind": "FriendPolicy",
  "metadata": {"name": "p", "namespace": "chat"}, "spec": {"appIDs": ["app"]}}`},
			want: []string{`FriendPolicy chat/p {"appIDs":["app"]}`},
		},
		{
			name: "files in name order",
			files: map[string]string{
				"b.yaml":                 strings.Replace(policyDoc, "name: p", "name: b", 1),
				"a/c.yml":                strings.Replace(policyDoc, "name: p", "name: c", 1),
				"a/d.json":               `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d"}}`,
				"notes.txt":              "kind: FriendPolicy",
				".hidden/x.yaml":         "kind: FriendPolicy",
				"t.friendgate-test.yaml": "kind: FriendPolicy",
			},
			want: []string{
				`FriendPolicy default/c {"blocklists":[{"name":"listed","users":["mallory"]}]}`,
				`FriendPolicy default/b {"blocklists":[{"name":"listed","users":["mallory"]}]}`,
				`ConfigMap default/d null`,
			},
		},
		{
			// Numeric user IDs and SdkAppids are common; like sigs.k8s.io/yaml, a number or a
			// boolean where the object has a string is taken as that string.
			name: "numbers and booleans as strings",
			files: map[string]string{"a.yaml": "apiVersion: friendgate.io/v1alpha1\nkind: FriendPolicy\nmetadata: {name: p, labels: {tier: 1}}\n" +
				"spec:\n  appIDs: [1400000001]\n  blocklists:\n  - {name: listed, users: [10001, 1e3, true, 0.1]}\n" +
				"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {count: 5, enabled: yes}\n"},
			want: []string{
				`FriendPolicy default/p {"appIDs":["1400000001"],"blocklists":[{"name":"listed","users":["10001","1000","true","0.1"]}]}`,
				`ConfigMap default/c {"count":"5","enabled":"true"}`,
			},
		},
		{
			name:  "field names match regardless of case",
			files: map[string]string{"a.yaml": "APIVersion: friendgate.io/v1alpha1\nKind: FriendPolicy\nMetadata: {Name: p}\nspec: {AppIDs: [a]}\n"},
			want:  []string{`FriendPolicy default/p {"appIDs":["a"]}`},
		},
		{
			name:  "a kind that is a number is another kind",
			files: map[string]string{"a.yaml": "apiVersion: v1\nkind: 5\nmetadata: {name: n}\n"},
		},
		{
			name:  "duplicate keys outside FriendPolicies and ConfigMaps",
			files: map[string]string{"a.yaml": "kind: Kustomization\nresources: [a]\nresources: [b]\n"},
		},
		{
			name:    "duplicate key",
			files:   map[string]string{"a.yaml": policyDoc + "metadata: {name: q}\n"},
			wantErr: `a.yaml: document 1: FriendPolicy: error converting YAML to JSON: yaml: unmarshal errors:` + "\n" + `  line 9: key "metadata" already set in map`,
		},
		{
			name:    "unknown field",
			files:   map[string]string{"a.yaml": listDoc + "---\n" + policyDoc + "  enforcement: Deny\n"},
			wantErr: `a.yaml: document 2: FriendPolicy: error unmarshaling JSON: while decoding JSON: json: unknown field "enforcement"`,
		},
		{
			name:    "unknown field in a ConfigMap",
			files:   map[string]string{"a.yaml": listDoc + "immutable: true\nstringData: {a: b}\n"},
			wantErr: `a.yaml: document 1: ConfigMap: error unmarshaling JSON: while decoding JSON: json: unknown field "stringData"`,
		},
		{
			name:    "wrong type",
			files:   map[string]string{"a.yaml": "apiVersion: friendgate.io/v1alpha1\nkind: FriendPolicy\nmetadata: {name: p}\nspec: {priority: high}\n"},
			wantErr: `a.yaml: document 1: FriendPolicy: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string into Go struct field FriendPolicySpec.spec.priority of type int32`,
		},
		{
			name:    "malformed YAML",
			files:   map[string]string{"a.yaml": policyDoc + "  - [\n"},
			wantErr: `a.yaml: document 1: error converting YAML to JSON: yaml: line 9: did not find expected node content`,
		},
		{
			name:    "a document that is a list",
			files:   map[string]string{"a.yaml": "- a\n- b\n"},
			wantErr: `a.yaml: document 1: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal array into Go value of type v1.TypeMeta`,
		},
		{
			name:    "no name",
			files:   map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: chat}\n"},
			wantErr: `a.yaml: document 1: ConfigMap has no metadata.name`,
		},
		{
			name:    "declared twice",
			files:   map[string]string{"a.yaml": policyDoc, "b.yaml": "# b\n---\n" + strings.Replace(policyDoc, "name: p", "name: p\n  namespace: default", 1)},
			wantErr: `b.yaml: document 2: FriendPolicy default/p is declared twice (first in a.yaml document 1)`,
		},
		{
			// A file stops at its first error; the other files are still read, and every
			// error is reported.
			name: "errors in several files",
			files: map[string]string{
				"a.yaml": "kind: ConfigMap\napiVersion: v1\n---\n" + policyDoc,
				"b.yaml": policyDoc,
				"c.yaml": "[",
			},
			wantErr: "a.yaml: document 1: ConfigMap has no metadata.name\n" +
				"c.yaml: document 1: error converting YAML to JSON: yaml: line 1: did not find expected node content",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tt.files {
				path := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			set, err := Load(dir)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Load succeeded, want error %q", tt.wantErr)
				}
				if got := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), ""); got != tt.wantErr {
					t.Fatalf("error:\n%s\nwant:\n%s", got, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			got := describe(t, set)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("loaded:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// describe renders each object of a set as "KIND NAMESPACE/NAME SPEC-OR-DATA".
func describe(t *testing.T, set *Set) []string {
	t.Helper()
	var out []string
	line := func(kind, namespace, name string, v any) {
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, kind+" "+namespace+"/"+name+" "+string(j))
	}
	for _, p := range set.Policies {
		line("FriendPolicy", p.Namespace, p.Name, p.Spec)
	}
	for _, c := range set.ConfigMaps {
		line("ConfigMap", c.Namespace, c.Name, c.Data)
	}
	return out
}
