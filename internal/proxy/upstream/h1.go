package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"

	"weft.dev/weft/internal/proxy/cancelsig"
	"weft.dev/weft/internal/proxy/h1wire"
	"weft.dev/weft/internal/proxy/limitread"
)

// The HTTP/1.1 connection pool. A request runs on its caller's goroutine
// from the first byte written to the last byte of its response body: no
// per-connection reader or writer goroutines and no hand-offs between
// them, which is where a general-purpose client spends most of its time
// when the peer is a sidecar one loopback hop away. Idle connections wait
// per endpoint address, most recently used first, and are closed after the
// cluster's idle timeout. A connection is reused only after its response
// body was read to the end and neither side asked to close.
//
// The wire format is written here (request line, headers, Content-Length
// or chunked body); responses are parsed by package h1wire. A
// body of up to 64 KiB is written with the head before the response is
// read; longer and streaming bodies are written by a goroutine while the
// response is read, so full-duplex upstreams and early answers work.

// staleCheckAfter is how long a connection must have been idle before it is
// checked (one non-blocking peek) for a close by the upstream, or for bytes
// it sent unasked, before reuse; connections reused sooner are not checked
// (a peek on every reuse would cost a syscall per request), and a request
// that finds one closed anyway is retried once on another connection when
// it has no body. A connection whose last response had no body by rule is
// checked on its next reuse whatever its idle time (h1Conn.recheck).
const staleCheckAfter = time.Second

// maxResponseHeaderBytes bounds a response's status line and headers (the
// body is streamed), and max1xx the informational responses before the
// final one, as net/http's client does.
const (
	maxResponseHeaderBytes = 10 << 20
	max1xx                 = 5
)

// inlineBodyMax is the largest request body written before the response
// is read, on the request's goroutine; it fits the socket buffers, so the
// write cannot block on an upstream that does not read it yet. Longer
// and streaming bodies are written by a goroutine of their own.
const inlineBodyMax = 64 << 10

// maxIdlePerAddr bounds the idle connections kept per endpoint address.
const maxIdlePerAddr = 256

// h1Transport is a cluster's HTTP/1.1 client for one TLS context (or
// plaintext). It is safe for concurrent use.
type h1Transport struct {
	c    *Cluster
	dial func(ctx context.Context, addr string) (net.Conn, error) // under the max_connections breaker (ErrOverflow)
	key  transportKey

	mu      sync.Mutex
	idle    map[string][]*h1Conn // by address, most recently used last; nil until the first put
	nIdle   int
	sweep   *time.Timer
	retired bool // no longer used by its cluster: connections close after their request
}

func newH1Transport(c *Cluster, key transportKey, dial func(ctx context.Context, addr string) (net.Conn, error)) *h1Transport {
	return &h1Transport{c: c, dial: dial, key: key} // idle made on the first put
}

// h1Conn is one upstream connection.
type h1Conn struct {
	t        *h1Transport
	addr     string
	conn     net.Conn
	lr       limitread.Reader // under br: bounds response headers
	br       *bufio.Reader
	hr       h1wire.Reader
	requests int64      // requests sent on it
	werr     chan error // the body writer's result, while one runs (see roundTrip)
	idleAt   time.Time  // when it was last put idle
	// recheck makes the next reuse peek at the connection (alive) however
	// briefly it was idle: its last response had no body by rule (see
	// bodyless), which an upstream may send anyway, after the head.
	recheck bool
}

// CloseIdleConnections closes the idle connections; connections in use
// are closed when their request ends if the pool was retired.
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle, t.nIdle = nil, 0
	if t.sweep != nil {
		t.sweep.Stop()
		t.sweep = nil
	}
	t.mu.Unlock()
	for _, l := range idle {
		for _, pc := range l {
			_ = pc.conn.Close()
		}
	}
}

// retire closes the idle connections and makes every connection in use
// close when its request ends.
func (t *h1Transport) retire() {
	t.mu.Lock()
	t.retired = true
	t.mu.Unlock()
	t.CloseIdleConnections()
}

// RoundTrip sends one request on a pooled connection. The response body
// must be read to the end or closed.
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	addr := req.URL.Host
	// A request found a stale connection is sent again only when that is
	// safe: no body, and a method (or an idempotency key) that says a
	// second delivery changes nothing.
	replayable := (req.Body == nil || req.Body == http.NoBody) && idempotent(req)
	for try := 0; ; try++ {
		pc, reused, err := t.get(ctx, addr, try > 0)
		if err != nil {
			return nil, err
		}
		resp, err := pc.roundTrip(req)
		if err == nil {
			return resp, nil
		}
		if errors.Is(err, errStale) && reused && replayable && ctx.Err() == nil && try < 2 {
			continue
		}
		return nil, err
	}
}

func idempotent(r *http.Request) bool {
	switch r.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	_, k1 := r.Header["Idempotency-Key"]
	_, k2 := r.Header["X-Idempotency-Key"]
	return k1 || k2
}

// get returns an idle connection to addr or dials one; when every
// connection the max_connections breaker allows is busy, it waits for one
// to come back (StartRequest bounded the waiters by max_pending_requests).
func (t *h1Transport) get(ctx context.Context, addr string, fresh bool) (*h1Conn, bool, error) {
	var wait <-chan struct{}
	for {
		if !fresh {
			if pc := t.takeIdle(addr); pc != nil {
				return pc, true, nil
			}
		}
		conn, err := t.dial(ctx, addr)
		if err == nil {
			pc := &h1Conn{t: t, addr: addr, conn: conn}
			pc.lr = limitread.Reader{R: conn, Remain: limitread.Unlimited}
			pc.br = bufio.NewReaderSize(&pc.lr, 4<<10)
			return pc, false, nil
		}
		if !errors.Is(err, ErrOverflow) {
			return nil, false, err
		}
		if wait == nil {
			// Every allowed connection exists. Idle ones to other
			// endpoints (or in the cluster's other pools) would hold
			// the slots forever: close one and dial. Else register, then
			// look once more, so that a connection released in between
			// is not missed.
			if t.c.evictIdle() {
				continue
			}
			wait = t.c.slotWaiter()
			fresh = false
			continue
		}
		select {
		case <-wait:
			wait = nil
		case <-ctx.Done():
			return nil, false, fmt.Errorf("%w %w", cancelsig.Cause(ctx), ErrPending)
		}
	}
}

// Cancelled makes the connection's I/O fail at once: the request was
// cancelled (route or per-try timeout, the downstream went away). Such a
// connection is never reused.
func (pc *h1Conn) Cancelled() { _ = pc.conn.SetDeadline(aLongTimeAgo) }

// evictOne closes the connection idle for longest, if any.
func (t *h1Transport) evictOne() bool {
	t.mu.Lock()
	var victim *h1Conn
	vaddr := ""
	for addr, l := range t.idle {
		if len(l) > 0 && (victim == nil || l[0].idleAt.Before(victim.idleAt)) {
			victim, vaddr = l[0], addr
		}
	}
	if victim != nil {
		l := t.idle[vaddr]
		t.idle[vaddr] = append(l[:0:0], l[1:]...)
		t.nIdle--
	}
	t.mu.Unlock()
	if victim == nil {
		return false
	}
	_ = victim.conn.Close()
	return true
}

func (t *h1Transport) takeIdle(addr string) *h1Conn {
	for {
		t.mu.Lock()
		l := t.idle[addr]
		if len(l) == 0 {
			t.mu.Unlock()
			return nil
		}
		pc := l[len(l)-1]
		l[len(l)-1] = nil
		t.idle[addr] = l[:len(l)-1]
		t.nIdle--
		t.mu.Unlock()
		if pc.br.Buffered() == 0 && (!pc.recheck && time.Since(pc.idleAt) < staleCheckAfter || pc.alive()) {
			pc.recheck = false
			return pc
		}
		_ = pc.conn.Close()
	}
}

// put makes a connection idle, or closes it when the pool is full or
// retired, its endpoint left the cluster, or it reached the cluster's max
// requests per connection.
func (t *h1Transport) put(pc *h1Conn) {
	if max := t.key.maxRequestsPerConn; max > 0 && pc.requests >= max {
		_ = pc.conn.Close()
		return
	}
	if !t.c.st.Load().keeps(pc.addr) || pc.br.Buffered() > 0 || unread(pc.conn) {
		// The endpoint left the cluster, or the upstream sent more than
		// the response (a body on HEAD, 204 or 304; a stray response),
		// already read into the buffer or, as the last read of a long
		// body told (readwait), waiting in the socket: the next request
		// on it would read someone else's bytes. Bytes still on their
		// way after a response without a body are caught on reuse
		// (recheck).
		_ = pc.conn.Close()
		return
	}
	pc.idleAt = time.Now()
	t.mu.Lock()
	l := t.idle[pc.addr]
	if t.retired || len(l) >= maxIdlePerAddr {
		t.mu.Unlock()
		_ = pc.conn.Close()
		return
	}
	if t.idle == nil {
		t.idle = map[string][]*h1Conn{}
	}
	t.idle[pc.addr] = append(l, pc)
	t.nIdle++
	if t.sweep == nil && t.key.idle > 0 {
		t.sweep = time.AfterFunc(t.key.idle, t.sweepIdle)
	}
	t.mu.Unlock()
	t.c.slotReleased()
}

// sweepIdle closes connections idle for longer than the idle timeout and
// re-arms itself while any stay idle.
func (t *h1Transport) sweepIdle() {
	var old []*h1Conn
	cutoff := time.Now().Add(-t.key.idle)
	t.mu.Lock()
	next := time.Duration(0)
	for addr, l := range t.idle {
		i := 0
		for i < len(l) && !l[i].idleAt.After(cutoff) { // oldest first
			old = append(old, l[i])
			i++
		}
		if i > 0 {
			rest := append(l[:0:0], l[i:]...)
			t.idle[addr] = rest
			t.nIdle -= i
		}
		if len(t.idle[addr]) == 0 {
			delete(t.idle, addr)
		} else if d := t.idle[addr][0].idleAt.Sub(cutoff); next == 0 || d < next {
			next = d
		}
	}
	t.sweep = nil
	if t.nIdle > 0 {
		t.sweep = time.AfterFunc(max(next, 10*time.Millisecond), t.sweepIdle)
	}
	t.mu.Unlock()
	for _, pc := range old {
		_ = pc.conn.Close()
	}
}

// alive peeks at an idle connection without blocking: an upstream that
// closed it (EOF) or sent something unasked (a TLS close_notify, a stray
// response) makes it unusable.
func (pc *h1Conn) alive() bool {
	if pc.br.Buffered() > 0 {
		return false
	}
	sc, ok := rawConn(pc.conn).(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
		return true // never wait for readiness
	})
	return err == nil && alive
}

// rawConn unwraps TLS and counting wrappers down to the socket.
func rawConn(c net.Conn) net.Conn {
	for {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return c
		}
		c = u.NetConn()
	}
}

// errStale marks a failure on a reused connection before any byte of a
// response arrived: the upstream had closed it while it was idle.
var errStale = errors.New("pooled connection closed by the upstream")

// aLongTimeAgo is a deadline that unblocks a connection's I/O at once.
var aLongTimeAgo = time.Unix(1, 0)

func (pc *h1Conn) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	reused := pc.requests > 0
	pc.requests++
	// Cancellation (route and per-try timeouts, the downstream going away)
	// unblocks the connection's I/O (Cancelled).
	stop := cancelsig.Follow(ctx, pc)
	fail := func(err error) (*http.Response, error) {
		stop.Stop()
		_ = pc.conn.Close()
		if cerr := cancelsig.Cause(ctx); ctx.Err() != nil {
			return nil, cerr
		}
		return nil, err
	}
	bw := getWriter(pc.conn)
	body, chunked := writeHead(bw, req)
	var err error
	if body != nil && (chunked || req.ContentLength > inlineBodyMax) {
		// A long or streaming body is written beside the reading of the
		// response, so an upstream that answers while it reads (full
		// duplex, an early 413) does not deadlock against this write.
		if err = bw.Flush(); err != nil {
			putWriter(bw)
			return fail(err)
		}
		werr := make(chan error, 1)
		pc.werr = werr
		go func() {
			err := writeBody(bw, req, body, chunked)
			if err == nil {
				err = bw.Flush()
			}
			putWriter(bw)
			werr <- err
		}()
	} else {
		if body != nil {
			err = writeBody(bw, req, body, chunked)
		}
		if err == nil {
			err = bw.Flush()
		}
		putWriter(bw)
		if err != nil {
			if reused && isConnGone(err) {
				err = fmt.Errorf("%w: %v", errStale, err)
			}
			return fail(err)
		}
	}
	// Wait for the first byte of the response: nothing at all on a reused
	// connection means the upstream had closed it.
	if _, err := pc.br.Peek(1); err != nil {
		if reused && isConnGone(err) {
			err = fmt.Errorf("%w: %v", errStale, err)
		} else if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fail(err)
	}
	var resp *http.Response
	for n1xx := 0; ; n1xx++ {
		if n1xx > max1xx {
			return fail(fmt.Errorf("more than %d informational responses", max1xx))
		}
		pc.lr.Remain = maxResponseHeaderBytes
		resp, err = pc.hr.ReadResponse(pc.br, req)
		pc.lr.Remain = limitread.Unlimited
		if err != nil {
			if errors.Is(err, limitread.ErrTooLarge) {
				err = fmt.Errorf("response headers larger than %d bytes", maxResponseHeaderBytes)
			}
			return fail(err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		// An informational response (100 Continue, 103 Early Hints):
		// pass it on and read on.
		if inf, ok := ctx.Value(InformationalKey{}).(Informational); ok {
			if err := inf.Informational(resp.StatusCode, resp.Header); err != nil {
				return fail(err)
			}
		} else if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				return fail(err)
			}
		}
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		stop.Stop()
		if !upgradeRequested(req.Header) {
			// A server must not switch to a protocol the client did
			// not ask for (RFC 9110 section 15.2.2). What follows on
			// the connection is in no protocol the pool knows: it is
			// closed, not pooled, and not handed to the caller as an
			// upgraded connection either. The caller gets the 101's
			// head with no body and refuses it (httpproxy answers 502:
			// "upstream switched protocols without an Upgrade
			// request").
			_ = pc.conn.Close()
			resp.Body = http.NoBody
			return resp, nil
		}
		// The connection now belongs to the upgraded protocol.
		resp.Body = &upgradedConn{Reader: pc.br, Conn: pc.conn}
		return resp, nil
	}
	keep := !resp.Close && !req.Close
	pc.recheck = bodyless(req, resp)
	if resp.Body == http.NoBody {
		pc.done(stop, keep)
		return resp, nil
	}
	resp.Body = &h1Body{body: resp.Body, pc: pc, ctx: ctx, stop: stop, keep: keep}
	return resp, nil
}

// upgradeRequested reports whether a request asks to switch protocols:
// "Upgrade" among its Connection options and a protocol named in Upgrade,
// as httpproxy reads a request's upgrade type.
func upgradeRequested(h http.Header) bool {
	v := h["Upgrade"]
	return len(v) > 0 && v[0] != "" && httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade")
}

// bodyless reports whether a response has no body by rule (RFC 9112
// section 6.3) rather than by its own framing: a response to HEAD, a 204
// or a 304. Its end is not something the upstream said, so a body it
// sends anyway (a server that answers HEAD as GET; a 204 with a
// Content-Length) comes after the head, possibly once the connection is
// idle, and the next request on it would read those bytes as its own
// response. put closes a connection with bytes already buffered; bytes
// still on their way are caught by the peek that recheck asks for on the
// next reuse.
//
// What this leaves: bytes that arrive only after the next request was
// written are read as its response (net/http's transport, whose reader
// watches an idle connection all the time, has the same window). And an
// upstream that sends an unasked extra response after a response framed
// by its Content-Length or chunks is not looked for on a connection
// reused within staleCheckAfter: checking every reuse would cost a
// syscall per request, so such bytes are caught by put when they came
// with the response (in the buffer, or, on a plaintext connection, in
// the socket as its last read told), else by the staleCheckAfter peek.
func bodyless(req *http.Request, resp *http.Response) bool {
	return req.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified
}

// InformationalKey is the context key under which a request's context
// offers an Informational, which the HTTP/1.1 pool prefers to an
// httptrace.ClientTrace (one allocation less per request).
type InformationalKey struct{}

// Informational receives a request's informational (1xx) responses other
// than 101 before its final response.
type Informational interface {
	Informational(code int, h http.Header) error
}

// done ends a request: the connection goes back idle when it may be
// reused and cancellation did not touch it.
func (pc *h1Conn) done(stop cancelsig.Stop, keep bool) {
	if pc.werr != nil {
		select {
		case err := <-pc.werr:
			keep = keep && err == nil
		default:
			// The request is still being written (the upstream answered
			// early): the connection cannot carry another one.
			keep = false
		}
		pc.werr = nil
	}
	if stop.Stop() && keep {
		pc.t.put(pc)
		return
	}
	_ = pc.conn.Close()
}

// unread reports whether c's socket may hold bytes its reads have not
// taken, as a readwait.Conn knows from its last read without a system
// call; a connection that cannot tell (TLS, where records sit in the
// TLS layer's own buffer; systems without TCP_INQ) says no.
func unread(c net.Conn) bool {
	for {
		switch v := c.(type) {
		case interface{ Unread() bool }:
			return v.Unread()
		case *tls.Conn:
			return false
		case interface{ NetConn() net.Conn }: // countedConn
			c = v.NetConn()
		default:
			return false
		}
	}
}

func isConnGone(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}

// h1Body is a response body on a pooled connection. Read to EOF, it hands
// the connection back to the pool; closed early, it closes the connection.
type h1Body struct {
	body     io.ReadCloser
	pc       *h1Conn
	ctx      context.Context
	stop     cancelsig.Stop
	keep     bool
	finished atomic.Bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if err != nil {
		b.finish(err == io.EOF)
		if err != io.EOF && b.ctx.Err() != nil {
			// Cut by cancellation: say why rather than "i/o timeout".
			err = cancelsig.Cause(b.ctx)
		}
	}
	return n, err
}

func (b *h1Body) Close() error {
	b.finish(false)
	return nil
}

func (b *h1Body) finish(eof bool) {
	if !b.finished.CompareAndSwap(false, true) {
		return
	}
	b.pc.done(b.stop, eof && b.keep)
}

// upgradedConn is the connection after a 101 response: reads drain what
// the pool's reader had buffered first.
type upgradedConn struct {
	*bufio.Reader
	net.Conn
}

func (u *upgradedConn) Read(p []byte) (int, error) { return u.Reader.Read(p) }

// CloseWrite half-closes the upgraded connection (the client finished
// sending); an error when the connection cannot be half-closed.
func (u *upgradedConn) CloseWrite() error {
	if cw, ok := u.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

func getWriter(w io.Writer) *bufio.Writer {
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

func putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	writerPool.Put(bw)
}

// skipHeader are the header fields writeRequest writes itself or never
// sends.
func skipHeader(k string) bool {
	switch k {
	case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
		return true
	}
	return false
}

// writeHead writes an HTTP/1.1 request's line, Host and headers, framed
// for its body: Content-Length (known length) or chunked (unknown length,
// trailers after it). It returns the body still to write (nil: none) and
// whether it is chunked.
func writeHead(bw *bufio.Writer, req *http.Request) (body io.Reader, chunked bool) {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	bw.WriteString(method)
	bw.WriteByte(' ')
	if req.URL.Opaque == "" && req.URL.RawQuery == "" && !req.URL.ForceQuery {
		bw.WriteString(req.URL.EscapedPath())
	} else {
		bw.WriteString(req.URL.RequestURI())
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	writeValue(bw, host)
	bw.WriteString("\r\n")
	for k, vs := range req.Header {
		if skipHeader(k) {
			continue
		}
		for _, v := range vs {
			if v == "" && k == "User-Agent" {
				continue // an empty User-Agent means: send none
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			writeValue(bw, v)
			bw.WriteString("\r\n")
		}
	}
	if req.Body != nil && req.Body != http.NoBody {
		body = req.Body
	}
	chunked = body != nil && req.ContentLength <= 0
	switch {
	case chunked:
		if len(req.Trailer) > 0 {
			bw.WriteString("Trailer: ")
			first := true
			for k := range req.Trailer {
				if !first {
					bw.WriteString(", ")
				}
				first = false
				bw.WriteString(k)
			}
			bw.WriteString("\r\n")
		}
		bw.WriteString("Transfer-Encoding: chunked\r\n\r\n")
	case body != nil:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), req.ContentLength, 10))
		bw.WriteString("\r\n\r\n")
	default:
		switch method {
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			bw.WriteString("Content-Length: 0\r\n")
		}
		bw.WriteString("\r\n")
		return nil, false
	}
	return body, chunked
}

// writeBody writes a request body as writeHead framed it.
func writeBody(bw *bufio.Writer, req *http.Request, body io.Reader, chunked bool) error {
	if !chunked {
		// Read straight into the writer's free space: no copy buffer.
		var n int64
		for n < req.ContentLength {
			if bw.Available() == 0 {
				if err := bw.Flush(); err != nil {
					return err
				}
			}
			buf := bw.AvailableBuffer()
			buf = buf[:min(int64(cap(buf)), req.ContentLength-n)]
			m, err := body.Read(buf)
			if m > 0 {
				bw.Write(buf[:m])
				n += int64(m)
			}
			if err == io.EOF && n < req.ContentLength {
				return fmt.Errorf("request body ended after %d of %d bytes", n, req.ContentLength)
			}
			if err != nil && err != io.EOF {
				return err
			}
		}
		return nil
	}
	// Chunked: every chunk is flushed at once, so a streaming body
	// (uploads read as they arrive, long-lived requests) flows through.
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	if err := bw.Flush(); err != nil {
		return err
	}
	for {
		n, err := body.Read(*buf)
		if n > 0 {
			bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(n), 16))
			bw.WriteString("\r\n")
			bw.Write((*buf)[:n])
			bw.WriteString("\r\n")
			if ferr := bw.Flush(); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	bw.WriteString("0\r\n")
	for k, vs := range req.Trailer {
		for _, v := range vs {
			bw.WriteString(k)
			bw.WriteString(": ")
			writeValue(bw, v)
			bw.WriteString("\r\n")
		}
	}
	_, err := bw.WriteString("\r\n")
	return err
}

// writeValue writes a header value with any CR or LF turned into a space,
// so that no value can end a header early.
func writeValue(bw *bufio.Writer, v string) {
	if strings.IndexByte(v, '\r') < 0 && strings.IndexByte(v, '\n') < 0 {
		bw.WriteString(v)
		return
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		bw.WriteByte(c)
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
