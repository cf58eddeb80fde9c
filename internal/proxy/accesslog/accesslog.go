// Package accesslog writes the proxy's access log: one JSON object per
// line, with Envoy's response flags saying why a request failed.
//
// Entries are queued to a bounded buffer and written by one goroutine, off
// the request path; when the buffer is full the entry is dropped and
// counted, so a slow log never slows traffic.
package accesslog

import (
	"bufio"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Envoy response flags used by the proxy.
const (
	// FlagNoRoute: no route or filter chain matched (404).
	FlagNoRoute = "NR"
	// FlagNoHealthyUpstream: the cluster had no usable endpoint (503).
	FlagNoHealthyUpstream = "UH"
	// FlagUpstreamConnectFailure: connecting to the endpoint failed (503).
	FlagUpstreamConnectFailure = "UF"
	// FlagUpstreamTimeout: the route or per-try timeout fired (504).
	FlagUpstreamTimeout = "UT"
	// FlagRetryLimitExceeded: retries were exhausted.
	FlagRetryLimitExceeded = "URX"
	// FlagOverflow: a circuit breaker rejected the request (503).
	FlagOverflow = "UO"
	// FlagDownstreamTermination: the client went away.
	FlagDownstreamTermination = "DC"
	// FlagUpstreamTermination: the upstream reset or closed the connection (503).
	FlagUpstreamTermination = "UC"
	// FlagNoClusterFound: the route's cluster does not exist (503).
	FlagNoClusterFound = "NC"
	// FlagUpstreamProtocolError: the upstream broke the protocol; on TCP,
	// the server sidecar's peer metadata frame was invalid.
	FlagUpstreamProtocolError = "UPE"
	// FlagDownstreamProtocolError: the downstream broke the protocol; on
	// TCP, the client sidecar's peer metadata frame was invalid.
	FlagDownstreamProtocolError = "DPE"
	// FlagDelayInjected: fault injection delayed the request.
	FlagDelayInjected = "DI"
	// FlagFaultInjected: fault injection aborted the request.
	FlagFaultInjected = "FI"
)

// Entry is one access log line.
type Entry struct {
	// Start is when the request (or connection) started.
	Start time.Time
	// Method is the HTTP method; empty for TCP.
	Method string
	// Authority is the Host/:authority or the CONNECT target.
	Authority string
	// Path is the request path with query.
	Path string
	// Protocol is "HTTP/1.1", "HTTP/2" or "TCP".
	Protocol string
	// Code is the response status; 0 when none was sent.
	Code int
	// Flags are the response flags, comma-separated; empty for none.
	Flags string
	// BytesReceived counts body bytes from the downstream.
	BytesReceived int64
	// BytesSent counts body bytes to the downstream.
	BytesSent int64
	// Duration is the time until the last byte was sent.
	Duration time.Duration
	// UpstreamHost is the endpoint used by the last attempt.
	UpstreamHost string
	// UpstreamCluster is the cluster routed to.
	UpstreamCluster string
	// RequestID is the x-request-id.
	RequestID string
	// TraceID is the request's trace ID (hex) when it was traced or came
	// with a trace context on a traced listener; empty otherwise.
	TraceID string
	// Source and Destination say who called whom: workload, namespace and
	// SPIFFE principal ("unknown" where the peer did not say or the hop was
	// not mTLS). Empty ends are left out of the line.
	Source, Destination Peer
}

// Peer is one end of a request in the access log.
type Peer struct {
	Workload, Namespace, Principal string
}

// Logger writes entries asynchronously. A nil *Logger discards entries.
type Logger struct {
	mu      sync.RWMutex // guards closed and sending on ch
	closed  bool
	ch      chan Entry
	w       io.Writer
	dropped atomic.Uint64
	done    chan struct{}
	once    sync.Once
}

// New starts a logger writing to w with a buffer of size entries. Close
// flushes and stops it.
func New(w io.Writer, size int) *Logger {
	l := &Logger{ch: make(chan Entry, size), w: w, done: make(chan struct{})}
	go l.run()
	return l
}

// Log queues an entry; it never blocks. Entries logged after Close are
// dropped.
func (l *Logger) Log(e *Entry) {
	if l == nil {
		return
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.dropped.Add(1)
		return
	}
	select {
	case l.ch <- *e:
	default:
		l.dropped.Add(1)
	}
}

// Dropped returns how many entries were dropped because the buffer was full.
func (l *Logger) Dropped() uint64 {
	if l == nil {
		return 0
	}
	return l.dropped.Load()
}

// Close writes what is queued and stops the writer.
func (l *Logger) Close() {
	if l == nil {
		return
	}
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.ch)
		l.mu.Unlock()
	})
	<-l.done
}

func (l *Logger) run() {
	defer close(l.done)
	bw := bufio.NewWriterSize(l.w, 32<<10)
	var buf []byte
	for e := range l.ch {
		buf = Append(buf[:0], &e)
		_, _ = bw.Write(buf)
		if len(l.ch) == 0 {
			_ = bw.Flush()
		}
	}
	_ = bw.Flush()
}

// Append appends the JSON line for e (with a trailing newline) to buf.
func Append(buf []byte, e *Entry) []byte {
	buf = append(buf, `{"start_time":`...)
	buf = appendString(buf, e.Start.UTC().Format(time.RFC3339Nano))
	buf = append(buf, `,"method":`...)
	buf = appendString(buf, e.Method)
	buf = append(buf, `,"authority":`...)
	buf = appendString(buf, e.Authority)
	buf = append(buf, `,"path":`...)
	buf = appendString(buf, e.Path)
	buf = append(buf, `,"protocol":`...)
	buf = appendString(buf, e.Protocol)
	buf = append(buf, `,"response_code":`...)
	buf = strconv.AppendInt(buf, int64(e.Code), 10)
	buf = append(buf, `,"response_flags":`...)
	flags := e.Flags
	if flags == "" {
		flags = "-"
	}
	buf = appendString(buf, flags)
	buf = append(buf, `,"bytes_received":`...)
	buf = strconv.AppendInt(buf, e.BytesReceived, 10)
	buf = append(buf, `,"bytes_sent":`...)
	buf = strconv.AppendInt(buf, e.BytesSent, 10)
	buf = append(buf, `,"duration_ms":`...)
	buf = strconv.AppendInt(buf, e.Duration.Milliseconds(), 10)
	buf = append(buf, `,"upstream_host":`...)
	buf = appendString(buf, e.UpstreamHost)
	buf = append(buf, `,"upstream_cluster":`...)
	buf = appendString(buf, e.UpstreamCluster)
	buf = append(buf, `,"request_id":`...)
	buf = appendString(buf, e.RequestID)
	if e.TraceID != "" {
		buf = append(buf, `,"trace_id":`...)
		buf = appendString(buf, e.TraceID)
	}
	buf = appendPeer(buf, `,"source_`, &e.Source)
	buf = appendPeer(buf, `,"destination_`, &e.Destination)
	return append(buf, "}\n"...)
}

// appendPeer appends the workload, namespace and principal of one end,
// as prefix+"workload" and so on.
func appendPeer(buf []byte, prefix string, p *Peer) []byte {
	for _, f := range [...]struct{ name, v string }{{"workload", p.Workload}, {"namespace", p.Namespace}, {"principal", p.Principal}} {
		if f.v == "" {
			continue
		}
		buf = append(buf, prefix...)
		buf = append(buf, f.name...)
		buf = append(buf, `":`...)
		buf = appendString(buf, f.v)
	}
	return buf
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				buf = append(buf, '\\', c)
			case c < 0x20 || c == 0x7f:
				buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				buf = append(buf, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, `\ufffd`...)
		} else {
			buf = append(buf, s[i:i+size]...)
		}
		i += size
	}
	return append(buf, '"')
}
