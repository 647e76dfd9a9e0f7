package dirwatch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
)

// timeout bounds every wait for an expected call; it is generous because the machine may
// be loaded, and only a broken watch ever waits that long.
const timeout = 10 * time.Second

func TestWatch(t *testing.T) {
	tests := []struct {
		name string
		// setup creates the initial files in dir and returns the paths to watch.
		setup func(t *testing.T, dir string) []string
		// steps each change the files; every one must lead to a call of onChange.
		steps []func(t *testing.T, dir string)
	}{
		{
			name:  "file edited in place",
			setup: watchFile("a.yaml"),
			steps: []func(*testing.T, string){
				func(t *testing.T, dir string) { write(t, filepath.Join(dir, "a.yaml"), "v2") },
				func(t *testing.T, dir string) { write(t, filepath.Join(dir, "a.yaml"), "v3") },
			},
		},
		{
			name:  "file replaced by rename, as editors save",
			setup: watchFile("a.yaml"),
			steps: []func(*testing.T, string){
				func(t *testing.T, dir string) { renameOver(t, filepath.Join(dir, "a.yaml"), "v2") },
				// Still seen after the watched name has been replaced once.
				func(t *testing.T, dir string) { renameOver(t, filepath.Join(dir, "a.yaml"), "v3") },
			},
		},
		{
			name:  "file removed and created again",
			setup: watchFile("a.yaml"),
			steps: []func(*testing.T, string){
				func(t *testing.T, dir string) { remove(t, filepath.Join(dir, "a.yaml")) },
				func(t *testing.T, dir string) { write(t, filepath.Join(dir, "a.yaml"), "v2") },
			},
		},
		{
			name:  "file in a watched directory",
			setup: watchDir("a.yaml"),
			steps: []func(*testing.T, string){
				func(t *testing.T, dir string) { write(t, filepath.Join(dir, "a.yaml"), "v2") },
				func(t *testing.T, dir string) { write(t, filepath.Join(dir, "b.yaml"), "new") },
			},
		},
		{
			name:  "file in a subdirectory that existed at start",
			setup: watchDir("sub/a.yaml"),
			steps: []func(*testing.T, string){
				func(t *testing.T, dir string) { write(t, filepath.Join(dir, "sub", "a.yaml"), "v2") },
			},
		},
		{
			name:  "file in subdirectories created after start",
			setup: watchDir("a.yaml"),
			steps: []func(*testing.T, string){
				// Both directories usually exist before the watcher hears of the first.
				func(t *testing.T, dir string) { mkdirAll(t, filepath.Join(dir, "sub", "deeper")) },
				func(t *testing.T, dir string) { write(t, filepath.Join(dir, "sub", "deeper", "b.yaml"), "new") },
				func(t *testing.T, dir string) { write(t, filepath.Join(dir, "sub", "deeper", "b.yaml"), "v2") },
			},
		},
		{
			name: "Kubernetes volume, file path",
			setup: func(t *testing.T, dir string) []string {
				atomicWrite(t, dir, 1, "a.yaml", "b.yaml")
				return []string{filepath.Join(dir, "a.yaml")}
			},
			steps: []func(*testing.T, string){
				func(t *testing.T, dir string) { atomicWrite(t, dir, 2, "a.yaml", "b.yaml") },
				func(t *testing.T, dir string) { atomicWrite(t, dir, 3, "a.yaml", "b.yaml") },
			},
		},
		{
			name: "Kubernetes volume, directory path",
			setup: func(t *testing.T, dir string) []string {
				atomicWrite(t, dir, 1, "a.yaml")
				return []string{dir}
			},
			steps: []func(*testing.T, string){
				func(t *testing.T, dir string) { atomicWrite(t, dir, 2, "a.yaml") },
				func(t *testing.T, dir string) { atomicWrite(t, dir, 3, "a.yaml") },
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			calls := make(chan struct{}, 100)
			start(t, tt.setup(t, dir), Options{}, func() { calls <- struct{}{} })
			for i, step := range tt.steps {
				step(t, dir)
				select {
				case <-calls:
				case <-time.After(timeout):
					t.Fatalf("step %d: onChange not called within %v", i+1, timeout)
				}
			}
		})
	}
}

func TestWatchFileIgnoresSiblings(t *testing.T) {
	dir := t.TempDir()
	calls := make(chan struct{}, 100)
	start(t, watchFile("a.yaml")(t, dir), Options{}, func() { calls <- struct{}{} })

	write(t, filepath.Join(dir, "b.yaml"), "x")
	write(t, filepath.Join(dir, ".a.yaml.swp"), "x")
	renameOver(t, filepath.Join(dir, "a.yaml~"), "x")
	mkdirAll(t, filepath.Join(dir, "sub"))
	// Waiting for nothing cannot be exact; a broken filter is caught in all but the most
	// starved runs, and a working one never fails.
	quiet := 10 * DefaultDebounce
	select {
	case <-calls:
		t.Fatal("onChange called for files other than the watched one")
	case <-time.After(quiet):
	}

	// The watch is alive: the silence above was the filter's doing.
	write(t, filepath.Join(dir, "a.yaml"), "v2")
	select {
	case <-calls:
	case <-time.After(timeout):
		t.Fatalf("onChange not called within %v", timeout)
	}
}

func TestWatchCoalescesBursts(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.yaml")
	seen := make(chan string, 1000)
	var running atomic.Int32
	start(t, watchFile("a.yaml")(t, dir), Options{}, func() {
		if running.Add(1) > 1 {
			t.Error("onChange called while already running")
		}
		defer running.Add(-1)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Error(err)
		}
		seen <- string(data)
	})

	const writes = 100
	for i := 1; i <= writes; i++ {
		write(t, path, fmt.Sprint(i))
	}
	calls := 0
	for last := ""; last != fmt.Sprint(writes); {
		select {
		case last = <-seen:
			calls++
		case <-time.After(timeout):
			t.Fatalf("onChange did not see the last write within %v (%d calls)", timeout, calls)
		}
	}
	// Usually 1; more only when the writing goroutine stalls for a whole Debounce.
	if calls > writes/10 {
		t.Errorf("%d writes led to %d calls, want them coalesced", writes, calls)
	}
}

func TestWatchResync(t *testing.T) {
	dir := t.TempDir()
	calls := make(chan struct{}, 100)
	start(t, watchDir()(t, dir), Options{Resync: 10 * time.Millisecond}, func() { calls <- struct{}{} })
	for i := 0; i < 2; i++ {
		select {
		case <-calls:
		case <-time.After(timeout):
			t.Fatalf("resync %d: onChange not called within %v", i+1, timeout)
		}
	}
}

func TestRunStopsWithContext(t *testing.T) {
	w, err := New(testr.New(t), []string{t.TempDir()}, Options{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx, func() {})
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatalf("Run did not return within %v of cancel", timeout)
	}
}

func TestNewMissingPath(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	_, err := New(testr.New(t), []string{dir, missing}, Options{})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("New = %v, want a not-exist error naming %s", err, missing)
	}
}

// start runs a watch of paths until the test ends. Its watches are in place on return.
func start(t *testing.T, paths []string, opts Options, onChange func()) {
	t.Helper()
	w, err := New(testr.New(t), paths, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx, onChange)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// watchFile creates name and watches it as a file.
func watchFile(name string) func(*testing.T, string) []string {
	return func(t *testing.T, dir string) []string {
		write(t, filepath.Join(dir, name), "v1")
		return []string{filepath.Join(dir, name)}
	}
}

// watchDir creates files (slash-separated paths) and watches dir.
func watchDir(files ...string) func(*testing.T, string) []string {
	return func(t *testing.T, dir string) []string {
		for _, f := range files {
			path := filepath.Join(dir, filepath.FromSlash(f))
			mkdirAll(t, filepath.Dir(path))
			write(t, path, "v1")
		}
		return []string{dir}
	}
}

// atomicWrite publishes a new version of files the way the kubelet updates a ConfigMap
// volume: it writes them to a new hidden timestamped directory, points a temporary symlink
// at it, renames that over ..data, and removes the old version. The files themselves are
// symlinks through ..data, created once.
func atomicWrite(t *testing.T, dir string, version int, files ...string) {
	t.Helper()
	data := filepath.Join(dir, "..data")
	old, _ := os.Readlink(data)
	ts := fmt.Sprintf("..2026_01_01_00_00_%02d.%d", version, version)
	mkdirAll(t, filepath.Join(dir, ts))
	for _, f := range files {
		write(t, filepath.Join(dir, ts, f), fmt.Sprint("v", version))
	}
	tmp := filepath.Join(dir, "..data_tmp")
	must(t, os.Symlink(ts, tmp))
	must(t, os.Rename(tmp, data))
	for _, f := range files {
		if _, err := os.Lstat(filepath.Join(dir, f)); errors.Is(err, fs.ErrNotExist) {
			must(t, os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)))
		}
	}
	if old != "" {
		must(t, os.RemoveAll(filepath.Join(dir, old)))
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	must(t, os.WriteFile(path, []byte(content), 0o644))
}

// renameOver replaces path by renaming a new file over it.
func renameOver(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	write(t, tmp, content)
	must(t, os.Rename(tmp, path))
}

func remove(t *testing.T, path string) {
	t.Helper()
	must(t, os.Remove(path))
}

func mkdirAll(t *testing.T, path string) {
	t.Helper()
	must(t, os.MkdirAll(path, 0o755))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
