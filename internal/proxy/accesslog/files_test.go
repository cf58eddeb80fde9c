package accesslog

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFiles: "/dev/stdout" writes to the proxy's stdout, any other path
// to a file; one logger per path; Close flushes both.
func TestFiles(t *testing.T) {
	var stdout, stderr bytes.Buffer
	path := filepath.Join(t.TempDir(), "access.log")
	f := NewFiles(&stdout, &stderr, 16, nil)
	first := f.Get("/dev/stdout")
	if again := f.Get("/dev/stdout"); again != first {
		t.Error("two loggers for one path")
	}
	e := &Entry{Start: time.Unix(0, 0), Method: "GET", Code: 200, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"}
	f.Get("/dev/stdout").Log(e)
	f.Get(path).Log(e)
	if f.Get(filepath.Join(t.TempDir(), "no", "such", "dir", "x.log")) != nil {
		t.Error("a file that cannot be opened gives a logger")
	}
	f.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]string{"stdout": stdout.String(), "file": string(b)} {
		if !strings.Contains(got, `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"`) || strings.Count(got, "\n") != 1 {
			t.Errorf("%s = %q, want one line with the trace ID", name, got)
		}
	}
	if f.Get("/dev/stderr") != nil {
		t.Error("Get after Close gives a logger")
	}
}
