package manifest

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestFind(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{
		"b.yaml", "a.json", "notes.txt", ".hidden.yaml", "friendgate-test.yaml",
		"sub/c.yml", "sub/anti-spam.friendgate-test.yaml", ".git/d.yaml", "sub/.cache/e.yaml",
	} {
		path := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in := func(names ...string) []string {
		out := make([]string, len(names))
		for i, n := range names {
			out[i] = filepath.Join(root, n)
		}
		return out
	}
	tests := []struct {
		name  string
		match func(string) bool
		paths []string
		want  []string
	}{
		{"manifests: sorted, hidden files and directories and suites skipped", isManifest, in("."),
			in("a.json", "b.yaml", "sub/c.yml")},
		{"suites", IsTestFile, in("."),
			in("friendgate-test.yaml", "sub/anti-spam.friendgate-test.yaml")},
		{"a file named directly is taken whatever its name, and paths are merged", IsTestFile, in("notes.txt", "sub"),
			in("notes.txt", "sub/anti-spam.friendgate-test.yaml")},
		{"a hidden directory named directly is searched", isManifest, in(".git"),
			in(".git/d.yaml")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Find(tt.match, tt.paths...)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	if _, err := Find(isManifest, filepath.Join(root, "missing")); !os.IsNotExist(err) {
		t.Errorf("missing path: got %v, want a not-exist error", err)
	}
}
