// Package filesource builds policy snapshots from FriendPolicy and ConfigMap manifest
// files and rebuilds them when the files change: the policy source of
// `friendgate serve --policies`.
package filesource

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/friendgate/friendgate/internal/dirwatch"
	"github.com/friendgate/friendgate/internal/manifest"
	"github.com/friendgate/friendgate/internal/policy"
)

// resync rereads the files even without a change event, for edits no event reports, such
// as through a symlink to a file outside the watched paths. Unchanged files cost a hash.
const resync = time.Minute

// Source loads the manifests under Paths. Set its fields before the first Load or Run and
// do not change them afterwards. OnSnapshot and OnError are never called concurrently.
type Source struct {
	// Paths are files or directories of FriendPolicy and ConfigMap manifests, read as
	// manifest.Load reads them.
	Paths []string
	// Options tune compilation.
	Options policy.Options
	// Log receives a line per load.
	Log logr.Logger
	// OnSnapshot, if set, receives every new good snapshot and its compiled policies.
	OnSnapshot func(*policy.Snapshot, []*policy.Compiled)
	// OnError, if set, receives the error of every failed load; the last good snapshot
	// stays in force.
	OnError func(error)

	mu sync.Mutex
	// generation counts good snapshots.
	generation int64
	// sum fingerprints the files at the last load attempt; valid when hashed is true.
	sum    [sha256.Size]byte
	hashed bool
}

// Load reads and compiles the manifests once. It is all or nothing: when a file cannot be
// read or any policy is invalid, OnError receives the error, which names the file or the
// policy and field, OnSnapshot is not called, and the error is returned.
func (s *Source) Load() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load(false)
}

// Run loads the manifests, then reloads them whenever they change, until ctx is done. A
// failed load does not stop it: the last good snapshot stays in force and the next change
// is loaded again. Run returns an error only when the paths cannot be watched.
func (s *Source) Run(ctx context.Context) error {
	// Watching before the first load means an edit made during it is not missed.
	w, err := dirwatch.New(s.Log, s.Paths, dirwatch.Options{Resync: resync})
	if err != nil {
		return err
	}
	_ = s.Load() // reported through OnError and the log
	w.Run(ctx, s.reload)
	return nil
}

// reload loads the manifests unless their bytes are the same as at the last attempt, so
// that a touch, a resync or a reverted edit does not rebuild the snapshot.
func (s *Source) reload() {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.load(true)
}

func (s *Source) load(skipUnchanged bool) error {
	files, sum, err := fingerprint(s.Paths)
	if err != nil {
		s.hashed = false
		return s.fail(err)
	}
	if skipUnchanged && s.hashed && sum == s.sum {
		s.Log.V(1).Info("policy files unchanged, not reloading")
		return nil
	}
	// The fingerprint is taken before the files are parsed: if they change in between, the
	// next event finds a different fingerprint and loads them again.
	s.sum, s.hashed = sum, true

	set, err := manifest.Load(s.Paths...)
	if err != nil {
		return s.fail(err)
	}
	snap, compiled, err := policy.Build(set.Policies, set.ConfigMaps, s.Options)
	if err != nil {
		return s.fail(err)
	}
	s.generation++
	s.Log.Info("policies loaded", "policies", len(compiled), "files", files, "generation", s.generation)
	if len(compiled) == 0 {
		s.Log.Info("WARNING: no FriendPolicy found in the policy files; every request is allowed", "paths", s.Paths)
	}
	for _, c := range compiled {
		for _, w := range c.Warnings {
			s.Log.Info("policy warning", "policy", c.Key, "warning", w)
		}
	}
	if s.OnSnapshot != nil {
		s.OnSnapshot(snap, compiled)
	}
	return nil
}

func (s *Source) fail(err error) error {
	s.Log.Error(err, "loading policy files failed; the policies in force are unchanged")
	if s.OnError != nil {
		s.OnError(err)
	}
	return err
}

// fingerprint hashes the names and contents of the manifest files under paths and counts
// them.
func fingerprint(paths []string) (files int, sum [sha256.Size]byte, err error) {
	names, err := manifest.Files(paths...)
	if err != nil {
		return 0, sum, err
	}
	h := sha256.New()
	for _, name := range names {
		// A NUL cannot occur in a path and the content digest has a fixed length, so no
		// two different file sets hash the same input.
		io.WriteString(h, name+"\x00")
		content, err := hashFile(name)
		if err != nil {
			return 0, sum, err
		}
		h.Write(content)
	}
	h.Sum(sum[:0])
	return len(names), sum, nil
}

func hashFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}
