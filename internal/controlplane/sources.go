package controlplane

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/fsnotify/fsnotify"

	"weft.dev/weft/internal/model"
)

// A Source feeds the control plane with one kind of input. Run watches the
// source until ctx is done and calls notify whenever the input may have
// changed. notify never blocks, so a source is never held up by a slow
// rebuild; several calls before a rebuild collapse into one.
type Source interface {
	Run(ctx context.Context, notify func()) error
}

// FolderSource is a folder of YAML files, watched with fsnotify. The
// watcher reads it whole on every rebuild: local meshes are small, and a
// full read keeps the model a pure function of what is on disk.
type FolderSource struct {
	// Dir is the folder; it is created if missing.
	Dir string
	log *slog.Logger
	// watching is closed once Run watches the folder (or failed to).
	watching     chan struct{}
	watchingOnce sync.Once
}

// NewFolderSource returns a source watching dir.
func NewFolderSource(dir string, log *slog.Logger) *FolderSource {
	return &FolderSource{Dir: dir, log: log, watching: make(chan struct{})}
}

// Watching is closed once Run watches the folder, or gave up: a read of
// the folder after it misses no change.
func (s *FolderSource) Watching() <-chan struct{} { return s.watching }

func (s *FolderSource) markWatching() { s.watchingOnce.Do(func() { close(s.watching) }) }

// Run watches the folder and its subfolders.
func (s *FolderSource) Run(ctx context.Context, notify func()) error {
	defer s.markWatching()
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return fmt.Errorf("creating config folder: %w", err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching config folder: %w", err)
	}
	defer w.Close()
	add := func(root string) {
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				if err := w.Add(path); err != nil {
					s.log.Warn("cannot watch folder", "dir", path, "err", err)
				}
			}
			return nil
		})
	}
	add(s.Dir)
	s.markWatching()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op&fsnotify.Create != 0 {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					add(ev.Name)
				}
			}
			if isConfigFile(ev.Name) || ev.Op&(fsnotify.Remove|fsnotify.Rename) != 0 {
				notify()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			s.log.Warn("config folder watch error", "err", err)
			notify()
		}
	}
}

func isConfigFile(name string) bool {
	ext := filepath.Ext(name)
	return ext == ".yaml" || ext == ".yml"
}

// InstanceSource holds the workload instances a runtime (weft up) has
// started, with the ports it gave them.
type InstanceSource struct {
	mu        sync.Mutex
	instances map[string]*model.Instance
	notify    func()
}

// NewInstanceSource returns an empty instance source.
func NewInstanceSource() *InstanceSource {
	return &InstanceSource{instances: map[string]*model.Instance{}}
}

// Run registers notify and waits for ctx.
func (s *InstanceSource) Run(ctx context.Context, notify func()) error {
	s.mu.Lock()
	s.notify = notify
	s.mu.Unlock()
	<-ctx.Done()
	return nil
}

// Set adds or replaces instances (keyed by ProxyKey).
func (s *InstanceSource) Set(instances ...*model.Instance) {
	s.mu.Lock()
	for _, in := range instances {
		s.instances[in.ProxyKey()] = in
	}
	n := s.notify
	s.mu.Unlock()
	if n != nil {
		n()
	}
}

// Remove deletes instances by ProxyKey.
func (s *InstanceSource) Remove(keys ...string) {
	s.mu.Lock()
	for _, k := range keys {
		delete(s.instances, k)
	}
	n := s.notify
	s.mu.Unlock()
	if n != nil {
		n()
	}
}

// List returns the instances sorted by key.
func (s *InstanceSource) List() []*model.Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*model.Instance, 0, len(s.instances))
	for _, in := range s.instances {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ProxyKey() < out[j].ProxyKey() })
	return out
}
