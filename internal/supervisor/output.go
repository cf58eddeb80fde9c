package supervisor

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
)

// maxLine is the longest line written in one piece; longer ones are split.
const maxLine = 64 << 10

// palette holds the ANSI colours of prefixes, given out in start order.
var palette = []string{"\x1b[36m", "\x1b[33m", "\x1b[32m", "\x1b[35m", "\x1b[34m", "\x1b[96m", "\x1b[93m", "\x1b[92m", "\x1b[95m", "\x1b[94m"}

const colorReset = "\x1b[0m"

// useColor decides whether prefixes are coloured.
func useColor(mode ColorMode, w io.Writer) bool {
	switch mode {
	case ColorAlways:
		return true
	case ColorNever:
		return false
	}
	if os.Getenv("NO_COLOR") != "" {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// output serialises prefixed lines onto one writer.
type output struct {
	mu    sync.Mutex
	w     io.Writer
	color bool
	fixed int // fixed prefix width, or 0
	width int // current prefix width
	buf   bytes.Buffer
}

func newOutput(w io.Writer, color bool, width int) *output {
	return &output{w: w, color: color, fixed: width, width: width}
}

// register widens the prefix for a new name when the width is not fixed.
func (o *output) register(name string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fixed == 0 && len(name) > o.width {
		o.width = len(name)
	}
}

// line writes "name | text\n". A write error is ignored: losing a log line
// must not stop a process.
func (o *output) line(name, color string, text []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Reset()
	if o.color {
		o.buf.WriteString(color)
	}
	fmt.Fprintf(&o.buf, "%-*s |", o.width, name)
	if o.color {
		o.buf.WriteString(colorReset)
	}
	if len(text) > 0 {
		o.buf.WriteByte(' ')
		o.buf.Write(text)
	}
	o.buf.WriteByte('\n')
	_, _ = o.w.Write(o.buf.Bytes())
}

// lineWriter turns a child's output stream into prefixed lines. Each
// stream has its own, written by one goroutine at a time (exec's copier of
// the current run, then flush after the run ended).
type lineWriter struct {
	out   *output
	name  string
	color string
	buf   []byte
	// log, if set, gets every line too (under logMu); quiet lines skip out.
	log   io.Writer
	logMu *sync.Mutex
	quiet func([]byte) bool
}

func (l *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.buf = append(l.buf, p...)
			for len(l.buf) >= maxLine {
				l.write(l.buf[:maxLine])
				l.buf = append(l.buf[:0], l.buf[maxLine:]...)
			}
			break
		}
		l.buf = append(l.buf, p[:i]...)
		l.emit()
		p = p[i+1:]
	}
	return n, nil
}

func (l *lineWriter) emit() {
	l.write(bytes.TrimSuffix(l.buf, []byte("\r")))
	l.buf = l.buf[:0]
}

// write sends one line to the log sink and, unless it is quiet, to the
// shared output.
func (l *lineWriter) write(text []byte) {
	if l.log != nil {
		l.logMu.Lock()
		_, _ = l.log.Write(append(text[:len(text):len(text)], '\n'))
		l.logMu.Unlock()
	}
	if l.quiet == nil || !l.quiet(text) {
		l.out.line(l.name, l.color, text)
	}
}

// flush writes a last line that had no newline.
func (l *lineWriter) flush() {
	if len(l.buf) > 0 {
		l.emit()
	}
}
