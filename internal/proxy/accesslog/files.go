package accesslog

import (
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
)

// Files are the access loggers named by the proxy's config (the
// access_log sinks of its HTTP connection managers), by path:
// "/dev/stdout" and "/dev/stderr" write to the proxy's own streams, any
// other path to a file opened for appending on first use. Get does not
// lock once a path's logger exists. Files is safe for concurrent use.
type Files struct {
	stdout, stderr io.Writer
	size           int
	log            *slog.Logger

	mu      sync.Mutex
	loggers atomic.Pointer[map[string]*Logger] // copy on write
	files   []*os.File
	closed  bool
}

// NewFiles returns the loggers for a proxy whose standard streams are
// stdout and stderr; each logger buffers size entries.
func NewFiles(stdout, stderr io.Writer, size int, log *slog.Logger) *Files {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Files{stdout: stdout, stderr: stderr, size: size, log: log}
	m := map[string]*Logger{}
	f.loggers.Store(&m)
	return f
}

// Get returns the logger for path, starting it on first use. It returns
// nil when the file cannot be opened (logged once) or after Close.
func (f *Files) Get(path string) *Logger {
	if l, ok := (*f.loggers.Load())[path]; ok {
		return l
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old := *f.loggers.Load()
	if l, ok := old[path]; ok {
		return l
	}
	if f.closed {
		return nil
	}
	var l *Logger
	switch path {
	case "/dev/stdout":
		l = New(f.stdout, f.size)
	case "/dev/stderr":
		l = New(f.stderr, f.size)
	default:
		file, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			f.log.Error("cannot open the access log; requests on its listeners are not logged", "path", path, "error", err)
		} else {
			f.files = append(f.files, file)
			l = New(file, f.size)
		}
	}
	m := make(map[string]*Logger, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[path] = l // nil remembers a file that could not be opened
	f.loggers.Store(&m)
	return l
}

// Close flushes and stops every logger and closes the files.
func (f *Files) Close() {
	f.mu.Lock()
	f.closed = true
	m := *f.loggers.Load()
	files := f.files
	f.mu.Unlock()
	for _, l := range m {
		l.Close()
	}
	for _, file := range files {
		_ = file.Close()
	}
}
