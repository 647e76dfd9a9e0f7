// Package dirwatch calls a function when watched files or directories change, once per
// burst of filesystem events.
//
// It watches directories, never file inodes: editors save by renaming a new file over the
// old one, and Kubernetes ConfigMap and Secret volumes update every file at once by
// swapping a ..data symlink, so an inode watch would go quiet after the first update.
package dirwatch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"
)

// DefaultDebounce is the quiet period used when Options.Debounce is zero.
const DefaultDebounce = 100 * time.Millisecond

// atomicWriterData is the symlink the Kubernetes atomic writer swaps to publish a new
// version of a ConfigMap or Secret volume; the visible files are symlinks through it.
const atomicWriterData = "..data"

// Options tune a watch.
type Options struct {
	// Debounce is how long the files must stay quiet after an event before onChange is
	// called, so that a burst of writes is seen once, complete. Zero means DefaultDebounce.
	Debounce time.Duration
	// Resync, when positive, also calls onChange that often: a safety net for changes no
	// event reports, such as edits behind a symlink that points outside the watched paths.
	Resync time.Duration
}

// Watcher watches a fixed set of paths. Create it with New and start it with Run.
type Watcher struct {
	fs   *fsnotify.Watcher
	log  logr.Logger
	opts Options
	// trees are the directories watched together with their subdirectories.
	trees []string
	// files maps the parent directory of each watched file to the names watched in it.
	files map[string]map[string]bool
}

// New starts watching paths, each a file or a directory. Directories are watched with
// all their subdirectories, present and future, except hidden ones. A file is watched
// through its parent directory, by name. Changes made after New returns are reported by
// Run, so a caller can read the files between the two without missing an update.
//
// New fails when a path does not exist or cannot be watched. Run must be called to
// release the watcher.
func New(log logr.Logger, paths []string, opts Options) (*Watcher, error) {
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("creating file watcher: %w", err)
	}
	w := &Watcher{fs: fw, log: log, opts: opts, files: map[string]map[string]bool{}}
	for _, p := range paths {
		if err := w.add(filepath.Clean(p)); err != nil {
			fw.Close()
			return nil, err
		}
	}
	return w, nil
}

func (w *Watcher) add(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if info.IsDir() {
		w.trees = append(w.trees, path)
		return w.addTree(path)
	}
	dir, name := filepath.Dir(path), filepath.Base(path)
	if w.files[dir] == nil {
		if err := w.fs.Add(dir); err != nil {
			return fmt.Errorf("watching %s: %w", dir, err)
		}
		w.files[dir] = map[string]bool{}
	}
	w.files[dir][name] = true
	return nil
}

// addTree watches root and the directories below it. Hidden directories are skipped: the
// Kubernetes atomic writer keeps its timestamped versions in them, and what is published
// through ..data is seen when ..data is swapped.
func (w *Watcher) addTree(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if path != root && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if err := w.fs.Add(path); err != nil {
			return fmt.Errorf("watching %s: %w", path, err)
		}
		return nil
	})
}

// Run calls onChange once the watched paths have been quiet for Options.Debounce after
// an event, and every Options.Resync, until ctx is done; then it releases the watcher.
// onChange runs on Run's goroutine, so calls never overlap, and events arriving meanwhile
// lead to another call.
func (w *Watcher) Run(ctx context.Context, onChange func()) {
	defer w.fs.Close()

	// With Go 1.23 timer semantics a stopped timer delivers nothing, so Stop and Reset
	// need no draining.
	debounce := time.NewTimer(w.opts.Debounce)
	debounce.Stop()
	defer debounce.Stop()

	var resync <-chan time.Time
	if w.opts.Resync > 0 {
		t := time.NewTicker(w.opts.Resync)
		defer t.Stop()
		resync = t.C
	}

	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.fs.Events:
			if !ok {
				return
			}
			if w.handle(ev) {
				debounce.Reset(w.opts.Debounce)
			}
		case err, ok := <-w.fs.Errors:
			if !ok {
				return
			}
			w.log.Error(err, "file watch error")
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost, possibly the creation of a directory to watch.
				for _, root := range w.trees {
					w.watchTree(root)
				}
				debounce.Reset(w.opts.Debounce)
			}
		case <-debounce.C:
			onChange()
		case <-resync:
			onChange()
		}
	}
}

// handle reports whether ev concerns a watched path, and watches a directory created
// inside a watched tree.
func (w *Watcher) handle(ev fsnotify.Event) bool {
	// A chmod alone changes no content.
	if ev.Op == fsnotify.Chmod {
		return false
	}
	name := filepath.Clean(ev.Name)
	if w.inTree(name) {
		if ev.Has(fsnotify.Create) && !strings.HasPrefix(filepath.Base(name), ".") {
			if info, err := os.Lstat(name); err == nil && info.IsDir() {
				w.watchTree(name)
			}
		}
		return true
	}
	names := w.files[filepath.Dir(name)]
	base := filepath.Base(name)
	return names[base] || (names != nil && base == atomicWriterData)
}

func (w *Watcher) inTree(name string) bool {
	for _, root := range w.trees {
		if rel, err := filepath.Rel(root, name); err == nil && filepath.IsLocal(rel) {
			return true
		}
	}
	return false
}

// watchTree is addTree for a directory that appears or may have changed while watching.
// A directory removed right after its creation is no error.
func (w *Watcher) watchTree(dir string) {
	if err := w.addTree(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		w.log.Error(err, "cannot watch directory; changes in it are missed until the next resync", "dir", dir)
	}
}
