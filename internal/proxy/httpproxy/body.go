package httpproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"weft.dev/weft/internal/proxy/upstream"
)

// statusWriter records the status and counts body bytes. It unwraps for
// http.ResponseController (flush, hijack, full duplex).
type statusWriter struct {
	http.ResponseWriter
	code  int
	n     int64
	track func(net.Conn) func()
	done  func()
}

// Hijack takes over the connection (upgrades) and registers it with the
// tracker.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.track != nil {
		w.done = w.track(c)
	}
	return c, brw, err
}

func (w *statusWriter) untrack() {
	if w.done != nil {
		w.done()
	}
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	if code == http.StatusSwitchingProtocols && w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *statusWriter) Flush() { _ = w.FlushError() }

// FlushError sends what the server buffered (http.ResponseController).
func (w *statusWriter) FlushError() error {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(interface{ FlushError() error }); ok {
		return f.FlushError()
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingBody counts request body bytes and reports the end of the body.
type countingBody struct {
	io.ReadCloser
	// n is the bytes read so far. Atomic: the upstream pool may still be
	// reading the body on its own goroutine (a long body the upstream
	// answered before it ended) when the request's end reads the count.
	n atomic.Int64
	// timerAtEOF, when set, is the request whose route timeout starts
	// when the body has been read (startTimer runs once): at EOF, or once
	// the declared length (-1: none) is read, since a reader that knows
	// the length (the HTTP/1.1 pool) stops there, and an HTTP/2 server
	// returns EOF only on the read after the last bytes.
	timerAtEOF *reqState
	declared   int64
}

// Complete passes on whether the rest of the body has arrived
// (h2client.Complete), when the server's body says.
func (b *countingBody) Complete() bool {
	c, ok := b.ReadCloser.(interface{ Complete() bool })
	return ok && c.Complete()
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	total := b.n.Add(int64(n))
	if b.timerAtEOF != nil && (err == io.EOF || (b.declared > 0 && total >= b.declared)) {
		b.timerAtEOF.startTimer()
	}
	return n, err
}

var errAttemptOver = errors.New("request body belongs to an abandoned attempt")

// replayBody lets retries resend a request body: the bytes read are kept
// up to limit; once the body grows past it, retries are off and the buffer
// is released. Each attempt reads through its own attemptBody; a stale
// attempt's reads fail.
//
// mu guards the state; readMu serialises the reads of src, and is held
// alone while one waits for the client's next bytes, so that an attempt
// abandoned in such a read (an upstream that answered before the body
// ended) does not hold up the decision to retry, a new attempt's replay
// of what was kept, or the end of the request.
type replayBody struct {
	mu       sync.Mutex
	readMu   sync.Mutex
	src      io.ReadCloser
	buf      []byte
	pooled   *[]byte // buf's array, from replayBufs; nil when not pooled
	srcErr   error
	limit    int32 // -1: never replay
	gen      int32
	overflow bool
	started  bool
}

// replayPoolSize is the largest body whose replay buffer comes from
// replayBufs: small bodies are most requests with one, and their buffers
// are reused instead of allocated per request.
const replayPoolSize = 4 << 10

var replayBufs = sync.Pool{New: func() any { b := make([]byte, 0, replayPoolSize); return &b }}

// reserve prepares the buffer for a body of n bytes (n > 0) that may be
// replayed.
func (rb *replayBody) reserve(n int64) {
	if n <= replayPoolSize {
		rb.pooled = replayBufs.Get().(*[]byte)
		rb.buf = (*rb.pooled)[:0]
		return
	}
	rb.buf = make([]byte, 0, n) // one allocation, no growth
}

// release ends the body's use once the request is over: any attempt that
// reads after it fails, nothing more is kept, and a pooled buffer goes
// back to the pool (a read of src still running appends to no buffer).
func (rb *replayBody) release() {
	if rb.src == nil {
		return // the request had no body (src is set on Serve's goroutine)
	}
	rb.mu.Lock()
	defer rb.mu.Unlock()
	rb.gen++
	rb.limit, rb.buf = -1, nil
	if rb.pooled != nil {
		replayBufs.Put(rb.pooled)
		rb.pooled = nil
	}
}

// whole returns a copy of the request body when attempts read all of it
// (length bytes, or to its end when length is -1) and it was kept; false
// when it was not kept, grew past the limit, or was not read to the end.
func (rb *replayBody) whole(length int64) ([]byte, bool) {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if !rb.started || rb.limit < 0 || rb.overflow {
		return nil, false
	}
	if length >= 0 && int64(len(rb.buf)) != length || length < 0 && rb.srcErr != io.EOF {
		return nil, false
	}
	return bytes.Clone(rb.buf), true
}

func (rb *replayBody) replayable() bool {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return rb.limit >= 0 && !rb.overflow
}

// attempt returns the body of the next attempt; false when the body can
// no longer be replayed.
func (rb *replayBody) attempt() (io.ReadCloser, bool) {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if rb.started && (rb.limit < 0 || rb.overflow) {
		return nil, false
	}
	rb.started = true
	rb.gen++
	return &attemptBody{rb: rb, gen: rb.gen}, true
}

type attemptBody struct {
	rb  *replayBody
	gen int32
	off int
}

// Complete reports whether reading the rest of the attempt's body would
// not block: the source was read to its end, or it says its rest has
// arrived (h2client.Complete).
func (a *attemptBody) Complete() bool {
	rb := a.rb
	rb.mu.Lock()
	done := rb.srcErr == io.EOF && a.gen == rb.gen
	rb.mu.Unlock()
	if done {
		return true
	}
	c, ok := rb.src.(interface{ Complete() bool })
	return ok && c.Complete()
}

func (a *attemptBody) Read(p []byte) (int, error) {
	rb := a.rb
	if n, done, err := a.fromBuffer(p); done {
		return n, err
	}
	rb.readMu.Lock()
	defer rb.readMu.Unlock()
	// Another attempt may have read src while this one waited.
	if n, done, err := a.fromBuffer(p); done {
		return n, err
	}
	n, err := rb.src.Read(p)
	rb.mu.Lock()
	defer rb.mu.Unlock()
	kept := false
	if n > 0 && rb.limit >= 0 && !rb.overflow {
		// Kept whichever attempt read them: a retry replays them.
		if len(rb.buf)+n <= int(rb.limit) {
			rb.buf = append(rb.buf, p[:n]...)
			kept = true
		} else {
			rb.overflow = true
			rb.buf = nil // a pooled array goes back at release
		}
	}
	if err != nil {
		rb.srcErr = err
	}
	if a.gen != rb.gen {
		// Abandoned while it waited. Bytes it read and could not keep
		// are lost to the attempt that replaced it, which must not
		// send a body with a hole in it.
		if n > 0 && !kept {
			rb.srcErr = errBodyLost
		}
		return 0, errAttemptOver
	}
	a.off += n
	return n, err
}

var errBodyLost = errors.New("part of the request body was read by an abandoned attempt past the retry buffer")

// fromBuffer serves a read from what was kept, or fails a stale attempt
// or one past the end of src; done is false when the read must go to
// src.
func (a *attemptBody) fromBuffer(p []byte) (n int, done bool, err error) {
	rb := a.rb
	rb.mu.Lock()
	defer rb.mu.Unlock()
	switch {
	case a.gen != rb.gen:
		return 0, true, errAttemptOver
	case !rb.overflow && a.off < len(rb.buf):
		n := copy(p, rb.buf[a.off:])
		a.off += n
		return n, true, nil
	case rb.srcErr != nil:
		return 0, true, rb.srcErr
	}
	return 0, false, nil
}

// Close ends the attempt; the downstream body stays open for retries (the
// server closes it when the handler returns).
func (a *attemptBody) Close() error { return nil }

// wrapBody ends the attempt (endpoint outcome, cluster request count,
// per-try context) once when the response body is closed. An upgraded
// connection's body stays writable.
func wrapBody(b io.ReadCloser, host *upstream.Host, c *upstream.Cluster, failed bool, cancel context.CancelCauseFunc) io.ReadCloser {
	rb := &respBody{ReadCloser: b, host: host, c: c, failed: failed, cancel: cancel}
	if rw, ok := b.(io.ReadWriteCloser); ok {
		return &rwRespBody{respBody: rb, w: rw}
	}
	return rb
}

type respBody struct {
	io.ReadCloser
	host   *upstream.Host
	c      *upstream.Cluster
	failed bool
	cancel context.CancelCauseFunc
	closed atomic.Bool
}

// Complete passes on whether the rest of the upstream's body has arrived
// (h2client.Complete), for copyBody.
func (b *respBody) Complete() bool {
	c, ok := b.ReadCloser.(interface{ Complete() bool })
	return ok && c.Complete()
}

func (b *respBody) Close() error {
	err := b.ReadCloser.Close()
	if b.closed.CompareAndSwap(false, true) {
		b.host.Done(b.failed)
		b.c.EndRequest()
		b.cancel(nil)
	}
	return err
}

type rwRespBody struct {
	*respBody
	w io.Writer
}

func (b *rwRespBody) Write(p []byte) (int, error) { return b.w.Write(p) }

// CloseWrite half-closes the upgraded upstream connection when it can.
func (b *rwRespBody) CloseWrite() error {
	if cw, ok := b.w.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
