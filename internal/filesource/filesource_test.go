package filesource

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/friendgate/friendgate/internal/policy"
)

// timeout bounds every wait in TestRun; only a broken watch ever waits that long.
const timeout = 10 * time.Second

// blocklist is a FriendPolicy that refuses friend requests from users.
func blocklist(name string, users ...string) string {
	return fmt.Sprintf(`apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata:
  name: %s
spec:
  blocklists:
    - name: listed
      users: [%s]
`, name, strings.Join(users, ", "))
}

// invalid parses as a FriendPolicy but does not compile.
const invalid = `apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata:
  name: broken
spec:
  rules:
    - name: half-written
      when: "request.from =="
`

const listedInConfigMap = `apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata:
  name: spammers
  namespace: chat
spec:
  blocklists:
    - name: reported
      configMapSelector:
        matchLabels:
          friendgate.io/list: spammers
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: reported-2026
  namespace: chat
  labels:
    friendgate.io/list: spammers
data:
  users.txt: |
    spam_1
`

// decide renders the decision on a friend request from a user: "allow" or "deny POLICY".
func decide(s *policy.Snapshot, from string) string {
	d := s.Decide(&policy.Request{Event: "FriendRequest", From: from, To: "bob"})
	if !d.Denied() {
		return "allow"
	}
	return "deny " + d.Deny.Policy
}

// recorder keeps what a Source reports.
type recorder struct {
	snaps    []*policy.Snapshot
	compiled [][]*policy.Compiled
	errs     []error
}

func (r *recorder) source(t *testing.T, paths ...string) *Source {
	return &Source{
		Paths: paths,
		Log:   testr.New(t),
		OnSnapshot: func(s *policy.Snapshot, c []*policy.Compiled) {
			r.snaps = append(r.snaps, s)
			r.compiled = append(r.compiled, c)
		},
		OnError: func(err error) { r.errs = append(r.errs, err) },
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		// path is what is loaded, relative to the test directory; "" loads the directory.
		path string
		// wantErr lists substrings of the error; none means the load succeeds.
		wantErr []string
		// want maps the sender of a friend request to its decision.
		want         map[string]string
		wantPolicies int
	}{
		{
			name:         "policy file",
			files:        map[string]string{"a.yaml": blocklist("p", "mallory")},
			path:         "a.yaml",
			want:         map[string]string{"mallory": "deny default/p", "alice": "allow"},
			wantPolicies: 1,
		},
		{
			name: "directory tree with a ConfigMap list",
			files: map[string]string{
				"a.yaml":                 blocklist("p", "mallory"),
				"team/b.yaml":            listedInConfigMap,
				"notes.txt":              "not a manifest",
				".git/x.yaml":            invalid,
				"x.friendgate-test.yaml": "not a manifest either",
			},
			want:         map[string]string{"mallory": "deny default/p", "spam_1": "deny chat/spammers", "alice": "allow"},
			wantPolicies: 2,
		},
		{
			name:    "one invalid policy fails the whole load",
			files:   map[string]string{"a.yaml": blocklist("p", "mallory"), "b.yaml": invalid},
			wantErr: []string{`"default/broken" is invalid`, "spec.rules[0].when"},
		},
		{
			// Replicas read only ConfigMaps labelled friendgate.io/list: a selector on
			// another label would select nothing in a cluster, so it is refused here too.
			name:    "list selector not on friendgate.io/list",
			files:   map[string]string{"a.yaml": strings.Replace(listedInConfigMap, "friendgate.io/list: spammers\n---", "list: spammers\n---", 1)},
			wantErr: []string{`"chat/spammers" is invalid`, "spec.blocklists[0].configMapSelector", "must select on the label friendgate.io/list"},
		},
		{
			name:    "malformed YAML names the file",
			files:   map[string]string{"a.yaml": blocklist("p", "mallory") + "  - [\n"},
			wantErr: []string{"a.yaml: document 1"},
		},
		{
			name:    "unknown field names the file",
			files:   map[string]string{"a.yaml": blocklist("p", "mallory") + "  enforcement: Deny\n"},
			wantErr: []string{"a.yaml: document 1", `unknown field "enforcement"`},
		},
		{
			name:    "missing path",
			path:    "missing.yaml",
			wantErr: []string{"missing.yaml", "no such file"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tt.files)
			var rec recorder
			err := rec.source(t, filepath.Join(dir, tt.path)).Load()

			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("Load succeeded, want an error")
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
				if len(rec.errs) != 1 || rec.errs[0] != err {
					t.Errorf("OnError got %v, want the returned error once", rec.errs)
				}
				if len(rec.snaps) != 0 {
					t.Errorf("OnSnapshot called %d times, want none", len(rec.snaps))
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if len(rec.errs) != 0 || len(rec.snaps) != 1 {
				t.Fatalf("got %d snapshots and errors %v, want one snapshot", len(rec.snaps), rec.errs)
			}
			if got := len(rec.compiled[0]); got != tt.wantPolicies {
				t.Errorf("compiled %d policies, want %d", got, tt.wantPolicies)
			}
			for from, want := range tt.want {
				if got := decide(rec.snaps[0], from); got != want {
					t.Errorf("request from %s: got %q, want %q", from, got, want)
				}
			}
		})
	}
}

// TestReload drives the reloads Run makes on change events, one step at a time.
func TestReload(t *testing.T) {
	steps := []struct {
		name string
		// files are written before the step; "" removes a file.
		files map[string]string
		// wantSnapshot and wantErr say what the step reports: a snapshot, an error
		// containing wantErr, or neither.
		wantSnapshot bool
		wantErr      string
		// want maps senders to decisions of the snapshot in force after the step.
		want map[string]string
	}{
		{
			name:         "initial load",
			files:        map[string]string{"a.yaml": blocklist("p", "mallory")},
			wantSnapshot: true,
			want:         map[string]string{"mallory": "deny default/p", "eve": "allow"},
		},
		{
			name:         "edit changes the decision",
			files:        map[string]string{"a.yaml": blocklist("p", "eve")},
			wantSnapshot: true,
			want:         map[string]string{"mallory": "allow", "eve": "deny default/p"},
		},
		{
			name:  "same bytes written again",
			files: map[string]string{"a.yaml": blocklist("p", "eve")},
			want:  map[string]string{"mallory": "allow", "eve": "deny default/p"},
		},
		{
			name:    "invalid edit keeps the last good snapshot",
			files:   map[string]string{"a.yaml": blocklist("p", "mallory"), "b.yaml": invalid},
			wantErr: "spec.rules[0].when",
			want:    map[string]string{"mallory": "allow", "eve": "deny default/p"},
		},
		{
			name: "unchanged invalid files are not reported again",
			want: map[string]string{"mallory": "allow", "eve": "deny default/p"},
		},
		{
			name:         "fix",
			files:        map[string]string{"b.yaml": blocklist("q", "trudy")},
			wantSnapshot: true,
			want:         map[string]string{"mallory": "deny default/p", "eve": "allow", "trudy": "deny default/q"},
		},
		{
			name:         "file removed",
			files:        map[string]string{"b.yaml": ""},
			wantSnapshot: true,
			want:         map[string]string{"mallory": "deny default/p", "trudy": "allow"},
		},
		{
			name:         "file renamed",
			files:        map[string]string{"a.yaml": "", "c.yaml": blocklist("p", "mallory")},
			wantSnapshot: true,
			want:         map[string]string{"mallory": "deny default/p"},
		},
	}
	dir := t.TempDir()
	var rec recorder
	src := rec.source(t, dir)
	var inForce *policy.Snapshot
	for i, step := range steps {
		writeFiles(t, dir, step.files)
		snaps, errs := len(rec.snaps), len(rec.errs)
		if i == 0 {
			_ = src.Load()
		} else {
			src.reload()
		}
		newSnaps, newErrs := rec.snaps[snaps:], rec.errs[errs:]

		if step.wantSnapshot != (len(newSnaps) == 1) || len(newSnaps) > 1 {
			t.Fatalf("%s: %d new snapshots, want snapshot: %v", step.name, len(newSnaps), step.wantSnapshot)
		}
		switch {
		case step.wantErr == "" && len(newErrs) > 0:
			t.Fatalf("%s: unexpected errors %v", step.name, newErrs)
		case step.wantErr != "" && (len(newErrs) != 1 || !strings.Contains(newErrs[0].Error(), step.wantErr)):
			t.Fatalf("%s: errors %v, want one containing %q", step.name, newErrs, step.wantErr)
		}
		if len(newSnaps) == 1 {
			inForce = newSnaps[0]
		}
		for from, want := range step.want {
			if got := decide(inForce, from); got != want {
				t.Errorf("%s: request from %s: got %q, want %q", step.name, from, got, want)
			}
		}
	}
	if want := int64(len(rec.snaps)); src.generation != want {
		t.Errorf("generation %d, want %d (one per snapshot)", src.generation, want)
	}
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.yaml")
	writeFiles(t, dir, map[string]string{"a.yaml": blocklist("p", "mallory")})

	snaps := make(chan *policy.Snapshot, 10)
	errs := make(chan error, 10)
	src := &Source{
		Paths:      []string{dir},
		Log:        testr.New(t),
		OnSnapshot: func(s *policy.Snapshot, _ []*policy.Compiled) { snaps <- s },
		OnError:    func(err error) { errs <- err },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	}()

	next := func(what string) *policy.Snapshot {
		t.Helper()
		select {
		case s := <-snaps:
			return s
		case err := <-errs:
			t.Fatalf("%s: got error %v, want a snapshot", what, err)
		case <-time.After(timeout):
			t.Fatalf("%s: no snapshot within %v", what, timeout)
		}
		return nil
	}

	if got := decide(next("initial load"), "mallory"); got != "deny default/p" {
		t.Fatalf("initial load: mallory got %q, want denied", got)
	}

	renameOver(t, path, blocklist("p", "eve"))
	if got := decide(next("edit"), "eve"); got != "deny default/p" {
		t.Fatalf("after edit: eve got %q, want denied", got)
	}

	renameOver(t, path, invalid)
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "spec.rules[0].when") {
			t.Errorf("error %q does not name the invalid field", err)
		}
	case s := <-snaps:
		t.Fatalf("invalid edit produced a snapshot deciding %q for eve", decide(s, "eve"))
	case <-time.After(timeout):
		t.Fatalf("invalid edit: no error within %v", timeout)
	}

	renameOver(t, path, blocklist("p", "mallory", "eve"))
	if got := decide(next("fix"), "mallory"); got != "deny default/p" {
		t.Fatalf("after fix: mallory got %q, want denied", got)
	}
}

func TestRunUnwatchablePath(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	src := &Source{Paths: []string{missing}, Log: testr.New(t)}
	if err := src.Run(context.Background()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Run = %v, want a not-exist error", err)
	}
}

// writeFiles writes files (slash-separated paths under dir); empty content removes one.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if content == "" {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// renameOver replaces path the way editors save: a new file renamed over the old one.
func renameOver(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
