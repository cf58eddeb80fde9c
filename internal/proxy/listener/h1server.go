package listener

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"weft.dev/weft/internal/proxy/cancelsig"
	"weft.dev/weft/internal/proxy/h1wire"
	"weft.dev/weft/internal/proxy/limitread"
)

// The HTTP/1.x server of every listener. A downstream connection is
// served on one goroutine from its first request to its close: read a
// request, run the handler on the same goroutine, write the response,
// read the next. There is no background reader per request (a client that
// goes away is noticed by a watcher started once a request has been
// served for a while, h1watch.go, or else at the next write) and no
// deadline set per request (but the one that stops such a watcher): an
// idle reaper closes
// connections idle past the idle timeout. Connections that open with the
// HTTP/2 preface (h2c with prior knowledge, or HTTP/2 inside TLS) go to
// serveH2 (h2server).
// Requests are parsed by package h1wire (net/http's rules, fewer
// allocations) into net/http's Request; the response framing
// (Content-Length, chunked with trailers, close-delimited for HTTP/1.0) is
// written here.

const (
	// maxHeaderBytes bounds a request's line and header block, as
	// net/http's default.
	maxHeaderBytes = 1 << 20
	// maxDrain is how much of an unread request body is read and
	// discarded to keep a connection; past it, or when the client does
	// not send it within drainTimeout, the connection is closed.
	maxDrain     = 256 << 10
	drainTimeout = 2 * time.Second
	// idleTimeout closes a keep-alive connection with no request for
	// this long (and an HTTP/2 connection with no stream).
	idleTimeout = 5 * time.Minute
	// lingerTimeout and lingerMaxBytes bound how long a connection that
	// the server closes after a response reads and discards what the
	// client still sends before the close, and how much (lingerClose).
	// Envoy's delayed_close_timeout defaults to a second; the byte bound
	// keeps a client that uploads at full speed from costing a core for
	// that second.
	lingerTimeout  = time.Second
	lingerMaxBytes = 16 << 20
)

// h1Conn states, for the idle reaper and the drain.
const (
	h1Idle    int32 = iota // waiting for the next request
	h1Reading              // a request's first bytes arrived (or the connection is new)
	h1Active               // a request is being served
)

// headerTimeout bounds the wait for a request's header block once its
// first byte arrived (and for the first request of a new connection).
const headerTimeout = 30 * time.Second

// h1Conn is one downstream HTTP/1.x connection.
type h1Conn struct {
	m      *Manager
	dc     *downConn
	lr     limitread.Reader // under br: bounds request headers
	br     *bufio.Reader
	bw     *bufio.Writer
	hr     h1wire.Reader
	state  atomic.Int32
	since  atomic.Int64 // unix nanos of the last state change
	remote string
	// body is the current request's body as parsed, whatever the handler
	// wrapped it in; the connection closes it when the request ends, so a
	// goroutine still reading it (an upstream body writer) stops before
	// the connection's reader is reused or pooled.
	body io.ReadCloser
	// ctx is the parent of the connection's requests' contexts; cancelled
	// when the connection ends, when a shutdown gives up waiting and when
	// a watcher sees the client go (h1watch.go).
	ctx   *connCtx
	watch connWatch
}

// connCtx is an HTTP/1.x connection's context. Its requests' contexts
// follow its cancellation through package cancelsig, which allocates
// nothing per request (context.WithCancel's children would).
type connCtx struct {
	context.Context // the connection's values
	cancelsig.Signal
}

func (c *connCtx) Done() <-chan struct{} { return c.Signal.Done() }
func (c *connCtx) Err() error            { return c.Signal.Err() }

var (
	h1Readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	h1Writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

// serveHTTPConn serves an HTTP connection that was accepted, decrypted or
// sniffed by the listener: HTTP/1.x here, HTTP/2 by serveH2.
func (m *Manager) serveHTTPConn(dc *downConn) {
	if !m.trackRaw(dc) {
		return
	}
	c := &h1Conn{m: m, dc: dc, remote: dc.RemoteAddr().String()}
	c.lr.R = dc
	c.setState(h1Reading)
	m.h1Mu.Lock()
	if m.h1Conns == nil {
		m.h1Mu.Unlock()
		m.untrackRaw(dc)
		_ = dc.Close()
		return
	}
	m.h1Conns[c] = struct{}{}
	m.startReaper()
	m.h1Mu.Unlock()
	go c.serve()
}

func (c *h1Conn) setState(s int32) {
	c.since.Store(time.Now().UnixNano())
	c.state.Store(s)
}

func (c *h1Conn) forget() {
	c.m.h1Mu.Lock()
	delete(c.m.h1Conns, c)
	c.m.h1Mu.Unlock()
}

func (c *h1Conn) serve() {
	m := c.m
	c.br = h1Readers.Get().(*bufio.Reader)
	c.br.Reset(&c.lr)
	c.lr.Remain = maxHeaderBytes
	hijacked := false
	// linger: the server ends the connection after a response while the
	// client may still be sending (lingerClose).
	linger := false
	defer func() {
		c.forget()
		if !hijacked {
			if linger {
				c.lingerClose()
			}
			_ = c.dc.Close()
			m.untrackRaw(c.dc)
			if c.body != nil {
				// Waits for a read in progress on another goroutine,
				// which the close above ends.
				_ = c.body.Close()
			}
		}
		if c.bw != nil {
			c.bw.Reset(nil)
			h1Writers.Put(c.bw)
		}
		if !hijacked {
			c.br.Reset(nil)
			h1Readers.Put(c.br)
		}
	}()
	// h2c with prior knowledge: the connection opens with "PRI * HTTP/2.0".
	if b, err := c.br.Peek(3); err != nil {
		return
	} else if string(b) == "PRI" {
		c.lr.Remain = limitread.Unlimited
		c.forget()
		hijacked = true // serveH2 owns the connection and its reader
		m.serveH2(c.dc, c.br)
		return
	}
	c.bw = h1Writers.Get().(*bufio.Writer)
	c.bw.Reset(c.dc)
	ctx := connContext(c.dc)
	cctx := &connCtx{Context: ctx}
	defer cctx.Cancel(nil, nil)
	m.h1Mu.Lock()
	c.ctx = cctx
	m.h1Mu.Unlock()
	// Every request of the connection starts as a copy of this one: its
	// context and remote address.
	tmpl := (&http.Request{RemoteAddr: c.remote}).WithContext(cctx)
	for {
		c.lr.Remain = maxHeaderBytes
		if _, err := c.br.Peek(1); err != nil {
			return // closed, reaped or drained between requests
		}
		c.setState(h1Reading)
		req, err := c.hr.ReadRequest(c.br, tmpl)
		if err == nil {
			err = checkRequest(req)
		}
		if err != nil {
			linger = c.badRequest(err)
			return
		}
		c.setState(h1Active)
		c.lr.Remain = limitread.Unlimited
		c.body = req.Body
		w := &h1Response{c: c, req: req, keepAlive: keepAlive(req)}
		if req.ProtoAtLeast(1, 1) && httpguts.HeaderValuesContainsToken(req.Header["Expect"], "100-continue") {
			// The client waits for a go-ahead: give it when the body is
			// first read, and do not pass the expectation on (answered).
			delete(req.Header, "Expect")
			w.expect = &continueReader{ReadCloser: req.Body, w: w}
			req.Body = w.expect
		}
		c.armWatch(req)
		ok := c.serveOne(w, req)
		gone := c.unwatch()
		if w.hijacked {
			// The handler owns the connection, even if it then panicked.
			hijacked = true
			return
		}
		if !ok {
			return
		}
		if gone {
			// The client closed its side (or all of it): the request was
			// cancelled, but what the handler wrote is still sent, as
			// net/http does, to a client that only half-closed.
			w.keepAlive = false
		}
		if err := w.finish(); err != nil || gone {
			return
		}
		if !w.keepAlive || !c.finishBody() {
			linger = true
			return
		}
		c.setState(h1Idle)
		if m.drainingNow() {
			linger = true // the client may have sent its next request
			return
		}
	}
}

// serveOne runs the handler. A handler that panics (a response cut while
// streaming panics with http.ErrAbortHandler, as under net/http) ends the
// connection: false.
func (c *h1Conn) serveOne(w *h1Response, req *http.Request) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			ok = false
			if v != http.ErrAbortHandler {
				c.m.log.Error("panic serving a request", "remote", c.remote, "panic", v, "stack", string(debug.Stack()))
			}
		}
	}()
	c.m.handler.ServeHTTP(w, req)
	return true
}

// badRequest answers what ReadRequest could not parse, then the
// connection closes. A connection closed between requests gets nothing.
// It reports whether it answered.
func (c *h1Conn) badRequest(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) || isTimeout(err) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return false // reset by the peer and the like
	}
	status, msg := http.StatusBadRequest, "400 Bad Request: "+err.Error()
	var se *statusError
	var we *h1wire.StatusError
	switch {
	case errors.Is(err, limitread.ErrTooLarge):
		status, msg = http.StatusRequestHeaderFieldsTooLarge, "431 Request Header Fields Too Large"
	case errors.As(err, &se):
		status, msg = se.status, fmt.Sprintf("%d %s: %s", se.status, http.StatusText(se.status), se.msg)
	case errors.As(err, &we):
		status, msg = we.Status, fmt.Sprintf("%d %s: %s", we.Status, http.StatusText(we.Status), we.Msg)
	}
	_ = c.dc.SetWriteDeadline(time.Now().Add(time.Second))
	_, err = fmt.Fprintf(c.dc, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		status, http.StatusText(status), len(msg), msg)
	return err == nil
}

// lingerClose prepares the close of a connection that the server ends
// after a response while the client may still be sending (a request body
// left unread, a pipelined request, a request refused before its end).
// Closing a socket with unread input makes the kernel reset the
// connection, and the reset discards what the socket still holds for the
// client: the end of the response. So the write side is half-closed (the
// client sees the response end), and what the client sends is read and
// discarded until it closes its side, lingerTimeout passes or
// lingerMaxBytes arrived; the close that follows then finds nothing
// unread (unless the client sends on past those bounds) and the kernel
// still sends the rest of the response, as after net/http's
// closeWriteAndWait and Envoy's delayed close. It runs on the
// connection's goroutine, whose connection is still tracked: a shutdown
// that stops waiting closes it, which ends the read.
func (c *h1Conn) lingerClose() {
	cw, ok := c.dc.Conn.(interface{ CloseWrite() error })
	if !ok {
		return
	}
	if c.body != nil {
		// A goroutine may still read the request's body (an upstream's
		// body writer): stop it, so that only this one reads on.
		_ = c.dc.SetReadDeadline(aLongTimeAgo)
		_ = c.body.Close()
		c.body = nil
	}
	if cw.CloseWrite() != nil {
		return
	}
	_ = c.dc.SetReadDeadline(time.Now().Add(lingerTimeout))
	_, _ = io.CopyN(io.Discard, c.dc, lingerMaxBytes)
}

// statusError is a request refused with a status other than 400.
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string { return e.msg }

// checkRequest applies the checks net/http's server makes and ReadRequest
// does not: an HTTP/1.x version, and a valid Host header (required in
// HTTP/1.1).
func checkRequest(r *http.Request) error {
	if r.ProtoMajor != 1 {
		return &statusError{http.StatusHTTPVersionNotSupported, "unsupported protocol version " + r.Proto}
	}
	// ReadRequest moved the Host header to r.Host (and refused two).
	if r.ProtoAtLeast(1, 1) && r.Host == "" && r.Method != http.MethodConnect {
		return errors.New("missing required Host header")
	}
	if r.Host != "" && !httpguts.ValidHostHeader(r.Host) {
		return errors.New("malformed Host header")
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// keepAlive says whether the connection may carry another request after
// this one, from the request alone.
func keepAlive(r *http.Request) bool {
	if r.Close {
		return false
	}
	if r.ProtoAtLeast(1, 1) {
		return true
	}
	return httpguts.HeaderValuesContainsToken(r.Header["Connection"], "keep-alive")
}

// finishBody ends the request's body once its response is sent: what the
// handler left unread (up to maxDrain, arriving within drainTimeout) is
// read and discarded so the next request can be read, then the body is
// closed, which waits for any read still running on another goroutine.
// False when the connection must close instead.
func (c *h1Conn) finishBody() bool {
	b := c.body
	if b == nil || b == http.NoBody {
		c.body = nil
		return true
	}
	if cb, ok := b.(interface{ Complete() bool }); !ok || !cb.Complete() {
		_ = c.dc.SetReadDeadline(time.Now().Add(drainTimeout))
		ok := drainBody(b)
		_ = c.dc.SetReadDeadline(time.Time{})
		if !ok {
			return false // the deferred close ends it
		}
	}
	_ = b.Close()
	c.body = nil
	return true
}

// drainBody reads what is left of a request body; false when there is
// more than maxDrain or it does not arrive.
func drainBody(b io.ReadCloser) bool {
	if b == nil || b == http.NoBody {
		return true
	}
	buf := drainBufs.Get().(*[512]byte)
	defer drainBufs.Put(buf)
	n := 0
	for {
		m, err := b.Read(buf[:])
		n += m
		if n > maxDrain {
			return false
		}
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
}

var drainBufs = sync.Pool{New: func() any { return new([512]byte) }}

// continueReader sends "100 Continue" before the first read of a body the
// client holds back until told to send it.
type continueReader struct {
	io.ReadCloser
	w    *h1Response
	sent bool
}

func (r *continueReader) Read(p []byte) (int, error) {
	if !r.sent {
		// The body may be read on another goroutine (an HTTP/2
		// upstream's writer): the response's lock orders this write
		// with the handler's.
		r.w.mu.Lock()
		r.sent = true
		var err error
		if !r.w.wroteHeader {
			bw := r.w.c.bw
			bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			err = bw.Flush()
		}
		r.w.mu.Unlock()
		if err != nil {
			return 0, err
		}
	}
	return r.ReadCloser.Read(p)
}

// h1Response is the http.ResponseWriter of one request. It also offers
// Flush, Hijack and EnableFullDuplex to http.ResponseController.
type h1Response struct {
	c      *h1Conn
	req    *http.Request
	header http.Header
	// mu orders the "100 Continue" write (continueReader) with the
	// response's own writes to the connection's buffer.
	mu sync.Mutex

	status      int
	wroteHeader bool // the status line and headers are in the buffer
	hijacked    bool
	keepAlive   bool
	chunked     bool
	noBody      bool  // HEAD, 204, 304: no body whatever the handler writes
	remain      int64 // bytes still allowed by Content-Length; -1 when not declared
	trailers    []string
	err         error
	// expect is the body of a request that waits for "100 Continue";
	// unread when the response starts, the client may or may not send
	// it, so the connection closes after the response.
	expect *continueReader
}

func (w *h1Response) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

// AdoptHeader makes h the response's header map (the proxy hands over
// the upstream response's instead of copying it).
// It refuses (false) once headers were set or sent.
func (w *h1Response) AdoptHeader(h http.Header) bool {
	if w.wroteHeader || len(w.header) > 0 {
		return false
	}
	w.header = h
	return true
}

// WriteHeader writes informational responses at once; the final status is
// sent with the first body byte, a flush or the end of the handler.
func (w *h1Response) WriteHeader(code int) {
	if w.hijacked || w.status != 0 {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		if !w.req.ProtoAtLeast(1, 1) {
			return // HTTP/1.0 clients get no informational responses
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		bw := w.c.bw
		writeStatusLine(bw, w.req.ProtoAtLeast(1, 1), code)
		writeHeaders(bw, w.header, nil)
		bw.WriteString("\r\n")
		w.err = bw.Flush()
		return
	}
	w.status = code
}

func (w *h1Response) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		if w.status == 0 {
			w.status = http.StatusOK
		}
		w.writeHeader(false)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody {
		return len(p), nil
	}
	if w.remain >= 0 {
		if int64(len(p)) > w.remain {
			return 0, http.ErrContentLength
		}
		w.remain -= int64(len(p))
	}
	bw := w.c.bw
	if w.chunked {
		if len(p) == 0 {
			return 0, nil
		}
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(p)), 16))
		bw.WriteString("\r\n")
		bw.Write(p)
		_, w.err = bw.WriteString("\r\n")
	} else {
		_, w.err = bw.Write(p)
	}
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

// FlushError sends what is buffered (http.ResponseController).
func (w *h1Response) FlushError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.hijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		if w.status == 0 {
			w.status = http.StatusOK
		}
		w.writeHeader(false)
	}
	if w.err == nil {
		w.err = w.c.bw.Flush()
	}
	return w.err
}

// Flush implements http.Flusher.
func (w *h1Response) Flush() { _ = w.FlushError() }

// EnableFullDuplex lets the handler read the request body while writing
// the response; this server always allows it.
func (w *h1Response) EnableFullDuplex() error { return nil }

// Hijack hands the connection to the handler (protocol upgrades). What
// the server buffered is in the returned reader and writer.
func (w *h1Response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.wroteHeader {
		return nil, nil, errors.New("hijack after the response started")
	}
	w.hijacked = true
	c := w.c
	c.unwatch() // before the handler reads the connection
	c.forget()
	c.m.untrackRaw(c.dc)
	bw := c.bw
	c.bw = nil // the handler owns it from here
	return c.dc, bufio.NewReadWriter(c.br, bw), nil
}

// writeHeader puts the status line and headers in the buffer and decides
// the body's framing. final is true when the handler has returned, so a
// response with no declared length and no body yet written gets
// Content-Length: 0 rather than chunked.
func (w *h1Response) writeHeader(final bool) {
	w.wroteHeader = true
	h := w.header
	code := w.status
	w.remain = -1
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified || (code >= 100 && code < 200)
	if v, ok := h["Trailer"]; ok {
		for _, tv := range v {
			for t := range strings.SplitSeq(tv, ",") {
				if t = strings.TrimSpace(t); t != "" {
					w.trailers = append(w.trailers, http.CanonicalHeaderKey(t))
				}
			}
		}
	}
	var extra [3]string
	n := 0
	date := ""
	cl, hasCL := h["Content-Length"]
	switch {
	case code == http.StatusSwitchingProtocols:
	case code == http.StatusNoContent || (code >= 100 && code < 200):
		delete(h, "Content-Length")
		delete(h, "Transfer-Encoding")
	case w.noBody:
		delete(h, "Transfer-Encoding")
	case hasCL && len(cl) == 1 && len(w.trailers) == 0:
		if v, err := strconv.ParseInt(cl[0], 10, 64); err == nil && v >= 0 {
			w.remain = v
		} else {
			delete(h, "Content-Length")
			w.keepAlive = false
		}
		delete(h, "Transfer-Encoding")
	case final:
		delete(h, "Transfer-Encoding")
		if len(w.trailers) == 0 {
			extra[n] = "Content-Length: 0"
			n++
			w.remain = 0
			break
		}
		fallthrough
	default:
		delete(h, "Content-Length")
		delete(h, "Transfer-Encoding")
		if w.req.ProtoAtLeast(1, 1) {
			w.chunked = true
			extra[n] = "Transfer-Encoding: chunked"
			n++
		} else {
			w.keepAlive = false // HTTP/1.0: the body ends at the close
		}
	}
	if httpguts.HeaderValuesContainsToken(h["Connection"], "close") || w.c.m.drainingNow() || (w.expect != nil && !w.expect.sent && w.req.ContentLength != 0) {
		w.keepAlive = false
	}
	if _, ok := h["Date"]; !ok {
		date = httpDate()
	}
	switch {
	case !w.keepAlive && code != http.StatusSwitchingProtocols && !httpguts.HeaderValuesContainsToken(h["Connection"], "close"):
		extra[n] = "Connection: close"
		n++
	case w.keepAlive && !w.req.ProtoAtLeast(1, 1):
		extra[n] = "Connection: keep-alive"
		n++
	}
	bw := w.c.bw
	writeStatusLine(bw, w.req.ProtoAtLeast(1, 1), code)
	writeHeaders(bw, h, w.trailers)
	for _, e := range extra[:n] {
		bw.WriteString(e)
		bw.WriteString("\r\n")
	}
	if date != "" {
		bw.WriteString("Date: ")
		bw.WriteString(date)
		bw.WriteString("\r\n")
	}
	_, w.err = bw.WriteString("\r\n")
}

// finish ends the response after the handler returned: headers if none
// were sent, the chunked terminator with trailers, and a flush.
func (w *h1Response) finish() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.wroteHeader {
		if w.status == 0 {
			w.status = http.StatusOK
		}
		w.writeHeader(true)
	}
	if w.err != nil {
		return w.err
	}
	bw := w.c.bw
	if w.chunked {
		bw.WriteString("0\r\n")
		for _, k := range w.trailers {
			for _, v := range w.header[k] {
				writeHeaderLine(bw, k, v)
			}
		}
		for k, vs := range w.header {
			if tk, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
				for _, v := range vs {
					writeHeaderLine(bw, http.CanonicalHeaderKey(tk), v)
				}
			}
		}
		bw.WriteString("\r\n")
	}
	if w.remain > 0 {
		// The handler wrote less than it declared: the client cannot
		// find the end of this response, so the connection ends.
		w.keepAlive = false
	}
	return bw.Flush()
}

func writeStatusLine(bw *bufio.Writer, http11 bool, code int) {
	if http11 {
		bw.WriteString("HTTP/1.1 ")
	} else {
		bw.WriteString("HTTP/1.0 ")
	}
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
	bw.WriteByte(' ')
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	bw.WriteString(text)
	bw.WriteString("\r\n")
}

// writeHeaders writes the header block, leaving out trailers (sent after
// the body) and the Trailer-prefixed keys of undeclared trailers.
func writeHeaders(bw *bufio.Writer, h http.Header, trailers []string) {
	for k, vs := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) || isTrailer(k, trailers) {
			continue
		}
		for _, v := range vs {
			writeHeaderLine(bw, k, v)
		}
	}
}

func isTrailer(k string, trailers []string) bool {
	for _, t := range trailers {
		if t == k {
			return true
		}
	}
	return false
}

// writeHeaderLine writes "k: v" with any CR or LF in the value turned into
// a space, so no value can end the header block early.
func writeHeaderLine(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	if strings.IndexByte(v, '\r') >= 0 || strings.IndexByte(v, '\n') >= 0 {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// httpDate is the Date header value, formatted once per second.
func httpDate() string {
	now := time.Now().Unix()
	if d := cachedDate.Load(); d != nil && d.sec == now {
		return d.s
	}
	d := &dateValue{sec: now, s: time.Unix(now, 0).UTC().Format(http.TimeFormat)}
	cachedDate.Store(d)
	return d.s
}

type dateValue struct {
	sec int64
	s   string
}

var cachedDate atomic.Pointer[dateValue]

// startReaper runs the idle reaper while HTTP/1.x connections exist. It
// is called with h1Mu held.
func (m *Manager) startReaper() {
	if m.reaper != nil {
		return
	}
	m.reaper = time.AfterFunc(reapEvery, m.reapIdle)
}

// reapEvery is how often the reaper looks: a request header may take up
// to headerTimeout plus this.
const reapEvery = 10 * time.Second

// reapIdle closes connections idle past the idle timeout.
func (m *Manager) reapIdle() {
	now := time.Now()
	idleCutoff, readCutoff := now.Add(-idleTimeout).UnixNano(), now.Add(-headerTimeout).UnixNano()
	m.h1Mu.Lock()
	defer m.h1Mu.Unlock()
	for c := range m.h1Conns {
		switch st, since := c.state.Load(), c.since.Load(); {
		case st == h1Idle && since < idleCutoff, st == h1Reading && since < readCutoff:
			_ = c.dc.SetReadDeadline(aLongTimeAgo)
		}
	}
	m.reaper = nil
	if len(m.h1Conns) > 0 {
		m.reaper = time.AfterFunc(reapEvery, m.reapIdle)
	}
}

// cancelH1 ends the requests of every HTTP/1.x connection: a shutdown
// that stopped waiting for them.
func (m *Manager) cancelH1() {
	m.h1Mu.Lock()
	defer m.h1Mu.Unlock()
	for c := range m.h1Conns {
		if c.ctx != nil {
			c.ctx.Cancel(nil, nil)
		}
	}
}

// closeIdleH1 wakes the HTTP/1.x connections waiting for a request so
// they close (the drain); busy ones close after their current response.
func (m *Manager) closeIdleH1() {
	m.h1Mu.Lock()
	defer m.h1Mu.Unlock()
	for c := range m.h1Conns {
		if c.state.Load() == h1Idle {
			_ = c.dc.SetReadDeadline(aLongTimeAgo)
		}
	}
}

var aLongTimeAgo = time.Unix(1, 0)
