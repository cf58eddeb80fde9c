package local

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// "Where are the logs?" In a local mesh, here: weft up keeps every
// process's output under <state-dir>/logs/<namespace>/, one file per
// process (<instance>.log for the app, <instance>.proxy.log for its sidecar,
// whose lines include the JSON access log), each line stamped with the
// time it was written. Files are size-bounded and rotated, so a long-running
// mesh never fills the disk. `weft logs` searches them.

const (
	// logMaxSize is the size at which a log file is rotated.
	logMaxSize = 8 << 20
	// logKeep is how many rotated files are kept besides the current one.
	logKeep = 2
)

// logDir is where the mesh's logs are.
func logDir(stateDir string) string { return filepath.Join(stateDir, "logs") }

// rotatingLog is an io.Writer that stamps each line with the time and
// rotates the file at logMaxSize, keeping logKeep older files (.1, .2).
// It is safe for concurrent use.
type rotatingLog struct {
	mu   sync.Mutex
	path string
	f    *os.File
	size int64
}

func newRotatingLog(path string) (*rotatingLog, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &rotatingLog{path: path, f: f, size: fi.Size()}, nil
}

// Write writes one line (the supervisor gives one line per call).
func (r *rotatingLog) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return 0, os.ErrClosed
	}
	if r.size+int64(len(p)) > logMaxSize {
		r.rotate()
	}
	stamp := time.Now().UTC().AppendFormat(make([]byte, 0, 32+len(p)), time.RFC3339Nano)
	line := append(append(stamp, ' '), p...)
	n, err := r.f.Write(line)
	r.size += int64(n)
	return len(p), err
}

// rotate shifts name.log -> name.log.1 -> name.log.2 and opens a new file.
// A failure keeps writing to the current file.
func (r *rotatingLog) rotate() {
	for i := logKeep; i > 0; i-- {
		from := r.path
		if i > 1 {
			from = fmt.Sprintf("%s.%d", r.path, i-1)
		}
		_ = os.Rename(from, fmt.Sprintf("%s.%d", r.path, i))
	}
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return
	}
	r.f.Close()
	r.f, r.size = f, 0
}

// Close closes the file.
func (r *rotatingLog) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// isAccessLog tells a sidecar's JSON access log line from its other output.
func isAccessLog(line []byte) bool {
	return len(line) > 0 && line[0] == '{' && strings.Contains(string(line), `"response_code":`)
}

// LogQuery selects log lines for `weft logs`.
type LogQuery struct {
	// StateDir of the mesh.
	StateDir string
	// Instances, if not empty, keeps only these instances (sidecar lines of
	// an instance are included with it).
	Instances map[string]bool
	// Since keeps lines written at or after it.
	Since time.Time
	// Status keeps only access log lines of HTTP requests whose response
	// code matches: "5xx", "4xx", or a code such as "503". TCP lines have
	// no status and never match.
	Status string
	// Trace keeps only lines that mention this trace ID (access logs carry
	// it; apps that log it match too).
	Trace string
	// Follow keeps reading new lines until ctx is done.
	Follow bool
	// JSON prints each line as a JSON object instead of text.
	JSON bool
}

// LogLine is one line found by SearchLogs.
type LogLine struct {
	Time     time.Time       `json:"time"`
	Instance string          `json:"instance"`
	Source   string          `json:"source"` // "app", "proxy" or "access"
	Text     string          `json:"text,omitempty"`
	Access   json.RawMessage `json:"access,omitempty"`
}

// logFile is one process's log: its rotated files, oldest first.
type logFile struct {
	instance string // "reviews-v2-0", "ingressgateway"
	proxy    bool
	paths    []string
	offset   int64 // of the current file, for --follow
}

// SearchLogs prints the lines matching q, oldest first, then follows if
// asked. It reads the files directly, so it works while the mesh runs and
// after it stopped.
func SearchLogs(ctx context.Context, q LogQuery, w io.Writer) error {
	files, err := findLogs(q.StateDir)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no logs under %s: has weft up run with this --state-dir?", logDir(q.StateDir))
	}
	var lines []LogLine
	for _, f := range files {
		if len(q.Instances) > 0 && !q.Instances[f.instance] {
			continue
		}
		for _, p := range f.paths {
			end, err := readLog(p, 0, f, q, func(l LogLine) { lines = append(lines, l) })
			if err != nil {
				return err
			}
			if p == f.paths[len(f.paths)-1] {
				f.offset = end
			}
		}
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].Time.Before(lines[j].Time) })
	for _, l := range lines {
		printLogLine(w, l, q.JSON)
	}
	if !q.Follow {
		return nil
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		// New processes get new files: look again each round.
		current, err := findLogs(q.StateDir)
		if err == nil {
			for _, c := range current {
				known := false
				for _, f := range files {
					if f.instance == c.instance && f.proxy == c.proxy {
						known = true
					}
				}
				if !known {
					files = append(files, c)
				}
			}
		}
		for _, f := range files {
			if len(q.Instances) > 0 && !q.Instances[f.instance] {
				continue
			}
			p := f.paths[len(f.paths)-1]
			if fi, err := os.Stat(p); err == nil && fi.Size() < f.offset {
				f.offset = 0 // rotated
			}
			end, err := readLog(p, f.offset, f, q, func(l LogLine) { printLogLine(w, l, q.JSON) })
			if err == nil {
				f.offset = end
			}
		}
	}
}

// findLogs lists the processes' log files.
func findLogs(stateDir string) ([]*logFile, error) {
	paths, err := filepath.Glob(filepath.Join(logDir(stateDir), "*", "*.log"))
	if err != nil {
		return nil, err
	}
	var out []*logFile
	for _, p := range paths {
		base := strings.TrimSuffix(filepath.Base(p), ".log")
		f := &logFile{instance: base}
		if strings.HasSuffix(base, ".proxy") {
			f.instance, f.proxy = strings.TrimSuffix(base, ".proxy"), true
		}
		for i := logKeep; i > 0; i-- {
			if _, err := os.Stat(fmt.Sprintf("%s.%d", p, i)); err == nil {
				f.paths = append(f.paths, fmt.Sprintf("%s.%d", p, i))
			}
		}
		f.paths = append(f.paths, p)
		out = append(out, f)
	}
	return out, nil
}

// readLog reads a file from offset and calls emit for each matching line;
// it returns the offset after the last complete line.
func readLog(path string, offset int64, f *logFile, q LogQuery, emit func(LogLine)) (int64, error) {
	fh, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return offset, nil
		}
		return offset, err
	}
	defer fh.Close()
	if _, err := fh.Seek(offset, io.SeekStart); err != nil {
		return offset, err
	}
	r := bufio.NewReaderSize(fh, 64<<10)
	pos := offset
	for {
		raw, err := r.ReadBytes('\n')
		if err != nil {
			return pos, nil // a partial last line is read next time
		}
		pos += int64(len(raw))
		stamp, text, ok := strings.Cut(strings.TrimSuffix(string(raw), "\n"), " ")
		if !ok {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil {
			continue
		}
		l := LogLine{Time: at, Instance: f.instance, Source: "app"}
		if f.proxy {
			l.Instance += ".proxy"
			l.Source = "proxy"
		}
		if isAccessLog([]byte(text)) {
			l.Source, l.Access = "access", json.RawMessage(text)
		} else {
			l.Text = text
		}
		if matchLine(l, q) {
			emit(l)
		}
	}
}

func matchLine(l LogLine, q LogQuery) bool {
	if !q.Since.IsZero() && l.Time.Before(q.Since) {
		return false
	}
	if q.Trace != "" && !strings.Contains(l.Text+string(l.Access), q.Trace) {
		return false
	}
	if q.Status != "" {
		if l.Access == nil {
			return false
		}
		var a struct {
			Code     int    `json:"response_code"`
			Protocol string `json:"protocol"`
		}
		if json.Unmarshal(l.Access, &a) != nil || a.Protocol == "TCP" {
			return false // TCP connections have no status
		}
		code := strconv.Itoa(a.Code)
		if s := strings.ToLower(q.Status); len(s) == 3 && strings.HasSuffix(s, "xx") {
			return code[:1] == s[:1]
		}
		return code == q.Status
	}
	return true
}

func printLogLine(w io.Writer, l LogLine, asJSON bool) {
	if asJSON {
		data, _ := json.Marshal(l)
		fmt.Fprintf(w, "%s\n", data)
		return
	}
	text := l.Text
	if l.Access != nil {
		text = formatAccess(l.Access)
	}
	fmt.Fprintf(w, "%s %s | %s\n", l.Time.Local().Format("15:04:05.000"), l.Instance, text)
}

// formatAccess renders an access log entry on one short line.
func formatAccess(raw json.RawMessage) string {
	var a map[string]any
	if json.Unmarshal(raw, &a) != nil {
		return string(raw)
	}
	s := func(k string) string {
		switch v := a[k].(type) {
		case string:
			return v
		case float64:
			return strconv.FormatFloat(v, 'f', -1, 64)
		}
		return ""
	}
	var out string
	if s("protocol") == "TCP" {
		// A TCP connection: no method, path or status; its bytes instead.
		out = fmt.Sprintf("access TCP %s %s %sms received=%s sent=%s", orDash(s("authority")), s("response_flags"), s("duration_ms"), s("bytes_received"), s("bytes_sent"))
	} else {
		out = fmt.Sprintf("access %s %s%s %s %s %sms", s("method"), s("authority"), s("path"), s("response_code"), s("response_flags"), s("duration_ms"))
	}
	for _, k := range []string{"upstream_cluster", "upstream_host", "request_id", "trace_id"} {
		if v := s(k); v != "" {
			out += " " + strings.TrimSuffix(k, "_id") + "=" + v
		}
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
