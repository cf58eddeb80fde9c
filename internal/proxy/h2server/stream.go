package h2server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"weft.dev/weft/internal/proxy/h2conn"
)

// stream is one request and its response.
type stream struct {
	sc     *Conn
	id     uint32
	cancel context.CancelFunc

	// Under sc.mu:
	// sendWindow is what this server may still send on the stream.
	sendWindow int64
	// recv is what the client may still send, and what the handler
	// read and the client was not yet credited with.
	recv h2conn.RecvWindow
	// body holds request body bytes received and not yet read.
	body     bytes.Buffer
	bodyCond sync.Cond // on sc.mu: bytes, the body's end or an error
	// recvDone: the client sent the end of the stream (recvErr io.EOF),
	// or the stream ended otherwise (recvErr says how).
	recvDone bool
	recvErr  error
	// bodyClosed: the handler closed the body; what arrives is dropped.
	bodyClosed bool
	// declared is the request's Content-Length (-1: none); received
	// counts the body's bytes.
	declared, received int64
	// trailer is the request's Trailer map, filled when the trailers
	// arrive (before the body's io.EOF, which orders it for the handler).
	trailer http.Header
	// ended: the stream is out of sc.streams (reset, or done both ways).
	ended bool
	// expectContinue: the client waits for "100 Continue" before it
	// sends the body; it is sent at the body's first read, as net/http
	// and the HTTP/1.x server do (w writes it).
	expectContinue bool
	w              *responseWriter

	// Under sc.wmu: sentEnd: no more HEADERS or DATA may be sent (the
	// end of the stream or RST_STREAM was written, or the client reset
	// it); rst: nothing at all (RST_STREAM sent or received).
	sentEnd, rst bool
}

var errStreamClosed = errors.New("http2: stream closed")

// processHeaders opens a stream (a request's headers) or ends one (its
// trailers).
func (sc *Conn) processHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol) // clients open odd streams
	}
	sc.mu.Lock()
	if s := sc.streams[id]; s != nil {
		sc.mu.Unlock()
		return sc.processTrailers(s, f)
	}
	if id <= sc.maxStreamID {
		if sc.ignoredLocked(id) {
			sc.mu.Unlock()
			return nil
		}
		// A stream that was opened before and is closed, or one skipped
		// (closed by the opening of a later one): RFC 9113 section 5.1.
		sc.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeStreamClosed)
	}
	sc.maxStreamID = id
	switch {
	case sc.goingAway:
		sc.mu.Unlock()
		return nil // opened after GOAWAY: ignored (section 6.8)
	case f.HasPriority() && f.Priority.StreamDep == id:
		sc.mu.Unlock()
		sc.writeRST(id, http2.ErrCodeProtocol) // a stream cannot depend on itself (section 5.3.1)
		return nil
	case uint32(len(sc.streams)) >= sc.opts.MaxConcurrentStreams:
		sc.mu.Unlock()
		sc.writeRST(id, http2.ErrCodeRefusedStream) // section 5.1.2
		return nil
	case sc.handlers >= 2*int(sc.opts.MaxConcurrentStreams):
		// Streams reset as soon as opened, faster than their handlers
		// end: the client is told to calm down.
		sc.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	sc.mu.Unlock()
	if f.Truncated {
		sc.replyLocal(id, http.StatusRequestHeaderFieldsTooLarge, f.StreamEnded())
		return nil
	}
	req, declared, expect, err := sc.newRequest(f)
	if err != nil {
		sc.log.Debug("http2 malformed request", "remote", sc.nc.RemoteAddr(), "stream", id, "error", err)
		sc.writeRST(id, http2.ErrCodeProtocol) // a malformed request (section 8.1.1)
		return nil
	}
	ctx, cancel := context.WithCancel(sc.opts.Context)
	req = req.WithContext(ctx)
	s := &stream{sc: sc, id: id, cancel: cancel, recv: h2conn.RecvWindow{Left: streamWindow}, declared: declared, trailer: req.Trailer}
	s.bodyCond.L = &sc.mu
	if f.StreamEnded() {
		s.recvDone, s.recvErr = true, io.EOF
		req.Body = http.NoBody
	} else {
		req.Body = requestBody{s}
	}
	w := &responseWriter{s: s, req: req, noBody: req.Method == http.MethodHead}
	s.w, s.expectContinue = w, expect && !f.StreamEnded()
	sc.mu.Lock()
	if sc.closed {
		sc.mu.Unlock()
		cancel()
		return io.EOF
	}
	s.sendWindow = sc.peer.InitialWindow
	sc.streams[id] = s
	sc.handlers++
	sc.idle.Stop()
	sc.handlersWG.Add(1)
	sc.mu.Unlock()
	sc.startHandler(handlerJob{s, w, req})
	return nil
}

// processTrailers ends a request body with its trailers.
func (sc *Conn) processTrailers(s *stream, f *http2.MetaHeadersFrame) error {
	sc.mu.Lock()
	if s.recvDone {
		// HEADERS after the end of the stream: a stream error in
		// half-closed (remote), a connection error once closed (RFC 9113
		// section 5.1); which one the client sees depends on how far the
		// response got, so it is always the connection's (section 5.4.1
		// allows it).
		sc.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeStreamClosed)
	}
	if !f.StreamEnded() || len(f.PseudoFields()) > 0 || s.declared >= 0 && s.received != s.declared {
		sc.mu.Unlock()
		sc.resetStream(s, http2.ErrCodeProtocol, true) // trailers end the stream and have no pseudo-headers
		return nil
	}
	for _, hf := range f.RegularFields() {
		k := sc.canonical(hf.Name)
		if !httpguts.ValidTrailerHeader(k) {
			sc.mu.Unlock()
			sc.resetStream(s, http2.ErrCodeProtocol, true)
			return nil
		}
		if s.trailer == nil {
			s.trailer = http.Header{}
		}
		s.trailer[k] = append(s.trailer[k], hf.Value)
	}
	s.recvDone, s.recvErr = true, io.EOF
	s.bodyCond.Signal()
	sc.mu.Unlock()
	return nil
}

// newRequest makes the request of a stream's headers (RFC 9113 section
// 8.3.1), and returns its declared Content-Length (-1: none) and whether
// it expects "100 Continue" (the Expect field is answered here, not
// passed on). An error means a malformed request.
func (sc *Conn) newRequest(f *http2.MetaHeadersFrame) (_ *http.Request, declared int64, expect bool, _ error) {
	method := f.PseudoValue("method")
	scheme := f.PseudoValue("scheme")
	path := f.PseudoValue("path")
	authority := f.PseudoValue("authority")
	if f.PseudoValue("protocol") != "" {
		return nil, 0, false, errors.New(":protocol without SETTINGS_ENABLE_CONNECT_PROTOCOL")
	}
	if method == "" || !httpguts.ValidHostHeader(authority) {
		return nil, 0, false, errors.New("missing :method or invalid :authority")
	}
	for _, c := range method {
		if !httpguts.IsTokenRune(c) {
			return nil, 0, false, fmt.Errorf("invalid :method %q", method)
		}
	}
	if method == http.MethodConnect {
		if scheme != "" || path != "" || authority == "" {
			return nil, 0, false, errors.New("CONNECT needs :authority and no :scheme or :path")
		}
	} else if scheme == "" || path == "" {
		return nil, 0, false, errors.New("missing :scheme or :path")
	}
	fields := f.RegularFields()
	h := make(http.Header, len(fields))
	var cookies []string
	for _, hf := range fields {
		switch hf.Name {
		case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
			return nil, 0, false, fmt.Errorf("connection-specific header %q", hf.Name)
		case "te":
			if hf.Value != "trailers" {
				return nil, 0, false, errors.New(`te other than "trailers"`)
			}
		case "cookie":
			// Split cookie fields are joined (section 8.2.3).
			cookies = append(cookies, hf.Value)
			continue
		}
		k := sc.canonical(hf.Name)
		h[k] = append(h[k], hf.Value)
	}
	if len(cookies) > 0 {
		h["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	if authority == "" {
		authority = h.Get("Host")
		if !httpguts.ValidHostHeader(authority) {
			return nil, 0, false, errors.New("invalid host header")
		}
	}
	delete(h, "Host")
	if v := h["Expect"]; len(v) > 0 && httpguts.HeaderValuesContainsToken(v, "100-continue") {
		expect = true
		delete(h, "Expect")
	}
	declared = -1
	if cl := h["Content-Length"]; len(cl) > 0 {
		n, err := strconv.ParseUint(cl[0], 10, 63)
		if err != nil || len(cl) > 1 && !allEqual(cl) {
			return nil, 0, false, errors.New("invalid content-length")
		}
		declared = int64(n)
		if f.StreamEnded() && declared != 0 {
			return nil, 0, false, errors.New("content-length with no body")
		}
	}
	var trailer http.Header
	for _, v := range h["Trailer"] {
		for key := range strings.SplitSeq(v, ",") {
			key = textproto.CanonicalMIMEHeaderKey(textproto.TrimString(key))
			if !httpguts.ValidTrailerHeader(key) {
				continue // not allowed as trailers: dropped, as net/http does
			}
			if trailer == nil {
				trailer = http.Header{}
			}
			trailer[key] = nil
		}
	}
	delete(h, "Trailer")
	req := &http.Request{
		Method:     method,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     h,
		Host:       authority,
		RemoteAddr: sc.remote,
		Trailer:    trailer,
	}
	switch {
	case method == http.MethodConnect:
		req.URL = &url.URL{Host: authority}
		req.RequestURI = authority
	case path == "*":
		if method != http.MethodOptions {
			return nil, 0, false, errors.New(`":path" "*" is only for OPTIONS`)
		}
		req.URL = &url.URL{Path: "*"}
		req.RequestURI = path
	default:
		u, err := url.ParseRequestURI(path)
		if err != nil || !strings.HasPrefix(path, "/") {
			return nil, 0, false, fmt.Errorf("invalid :path %q", path)
		}
		req.URL = u
		req.RequestURI = path
	}
	switch {
	case f.StreamEnded():
		req.ContentLength = 0
	default:
		req.ContentLength = declared
	}
	return req, declared, expect, nil
}

func allEqual(vs []string) bool {
	for _, v := range vs[1:] {
		if v != vs[0] {
			return false
		}
	}
	return true
}

// canonical is the header key of a lowercase field name, cached per
// connection (Serve's goroutine only).
func (sc *Conn) canonical(name string) string { return sc.canonCache.Canonical(name) }

// replyLocal answers a stream with a bodyless status, without a handler,
// and resets it if the client has not finished sending.
func (sc *Conn) replyLocal(id uint32, code int, ended bool) {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	sc.hbuf.Reset()
	_ = sc.henc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(code)})
	_ = sc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: sc.hbuf.Bytes(), EndStream: true, EndHeaders: true})
	if !ended {
		_ = sc.fr.WriteRSTStream(id, http2.ErrCodeNo)
	}
	_ = sc.flushLocked()
}

// requestBody is a stream's request body as the handler reads it.
type requestBody struct{ s *stream }

func (b requestBody) Read(p []byte) (int, error) {
	s, sc := b.s, b.s.sc
	sc.mu.Lock()
	if s.expectContinue {
		s.expectContinue = false
		sc.mu.Unlock()
		s.w.sendContinue()
		sc.mu.Lock()
	}
	for s.body.Len() == 0 && !s.recvDone && !s.bodyClosed {
		s.bodyCond.Wait()
	}
	if s.bodyClosed {
		sc.mu.Unlock()
		return 0, errors.New("http2: request body closed")
	}
	if s.body.Len() == 0 {
		err := s.recvErr
		sc.mu.Unlock()
		return 0, err
	}
	n, _ := s.body.Read(p)
	var streamCredit int64
	if !s.recvDone {
		streamCredit = s.recv.Read(int64(n), streamWindow)
	}
	connCredit := sc.creditLocked(int64(n))
	sc.mu.Unlock()
	sc.writeWindowUpdates(connCredit, s, streamCredit, false)
	return n, nil
}

// Complete reports whether the rest of the body has arrived (its bytes
// buffered and its end seen), so that reading it to its end does not
// block: the HTTP/2 pool then sends it with the request's headers.
func (b requestBody) Complete() bool {
	b.s.sc.mu.Lock()
	defer b.s.sc.mu.Unlock()
	return b.s.recvDone
}

// Close drops what was received and not read; what the client still
// sends is dropped as it arrives, its window credited back.
func (b requestBody) Close() error {
	s, sc := b.s, b.s.sc
	sc.mu.Lock()
	if s.bodyClosed {
		sc.mu.Unlock()
		return nil
	}
	s.bodyClosed = true
	dropped := int64(s.body.Len())
	s.body = bytes.Buffer{}
	connCredit := sc.creditLocked(dropped)
	var streamCredit int64
	if !s.recvDone {
		// The client may still be sending: the stream's window is
		// given back too, or a client that filled it would wait for
		// the handler's end.
		streamCredit = dropped + s.recv.Unacked
		s.recv.Left += streamCredit
		s.recv.Unacked = 0
	}
	s.bodyCond.Broadcast()
	sc.mu.Unlock()
	sc.writeWindowUpdates(connCredit, s, streamCredit, false)
	return nil
}

// responseWriter is the http.ResponseWriter of a stream. Its HEADERS go
// out with the first body bytes, a flush, or the handler's end; its DATA
// frames wait in the connection's buffer until a flush or the end.
type responseWriter struct {
	s      *stream
	req    *http.Request
	header http.Header
	status int
	noBody bool // HEAD, 204, 304: no body whatever the handler writes

	// Under s.sc.wmu:
	sentHeader    bool
	trailerParsed bool
	// goAway: the handler asked for the connection to end after its
	// response ("Connection: close", as net/http's HTTP/2 server takes
	// it): GOAWAY follows, and the client opens a new connection.
	goAway   bool
	trailers []string // declared in the Trailer header when it was sent
}

func (w *responseWriter) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

// AdoptHeader makes h the response's header map (the proxy hands over
// the upstream response's instead of copying it). It refuses (false) once
// headers were set or sent.
func (w *responseWriter) AdoptHeader(h http.Header) bool {
	if w.status != 0 || len(w.header) > 0 {
		return false
	}
	w.header = h
	return true
}

// WriteHeader sends informational responses at once; the final status
// goes out with the first body bytes, a flush or the end of the handler.
func (w *responseWriter) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code < 200 {
		if code == http.StatusSwitchingProtocols {
			return // no upgrades in HTTP/2 (RFC 9113 section 8.6)
		}
		sc := w.s.sc
		sc.wmu.Lock()
		defer sc.wmu.Unlock()
		if !w.s.sentEnd {
			_ = w.writeHeadersLocked(code, w.header, nil, false)
			_ = sc.flushLocked()
		}
		return
	}
	w.status = code
	if code == http.StatusNoContent || code == http.StatusNotModified {
		w.noBody = true
	}
}

// sendContinue answers "Expect: 100-continue", unless the response
// started.
func (w *responseWriter) sendContinue() {
	sc := w.s.sc
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	if w.sentHeader || w.s.sentEnd {
		return
	}
	if w.writeHeadersLocked(http.StatusContinue, nil, nil, false) == nil {
		_ = sc.flushLocked()
	}
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	s, sc := w.s, w.s.sc
	sc.wmu.Lock()
	if s.sentEnd {
		sc.wmu.Unlock()
		return 0, errStreamClosed
	}
	if !w.sentHeader {
		if err := w.sendHeaderLocked(false); err != nil {
			sc.wmu.Unlock()
			return 0, err
		}
	}
	sc.wmu.Unlock()
	if w.noBody {
		return len(p), nil
	}
	written := 0
	for len(p) > 0 {
		n, exhausted, err := s.reserve(len(p))
		if err != nil {
			return written, err
		}
		sc.wmu.Lock()
		if s.sentEnd {
			sc.wmu.Unlock()
			s.unreserve(n)
			return written, errStreamClosed
		}
		err = sc.fr.WriteData(s.id, false, p[:n])
		if err == nil && exhausted {
			// The connection's window is spent: what waits in the
			// buffer goes now, or the client, which grants more for
			// what it received, and writers waiting for it would wait
			// on each other.
			err = sc.flushLocked()
		}
		if err == nil {
			err = sc.werr
		}
		sc.wmu.Unlock()
		if err != nil {
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// reserve waits until the stream and the connection have send window for
// at least one byte, and takes up to want bytes of it (and of a frame);
// exhausted: the connection's window is spent.
func (s *stream) reserve(want int) (n int, exhausted bool, err error) {
	sc := s.sc
	sc.mu.Lock()
	for !s.ended && !sc.closed && (s.sendWindow <= 0 || sc.sendWindow <= 0) {
		// The client grants more window for what it has received: let it
		// receive what waits in the buffer.
		sc.mu.Unlock()
		sc.wmu.Lock()
		err := sc.flushLocked()
		sc.wmu.Unlock()
		if err != nil {
			return 0, false, err
		}
		sc.mu.Lock()
		if !s.ended && !sc.closed && (s.sendWindow <= 0 || sc.sendWindow <= 0) {
			sc.windowCond.Wait()
		}
	}
	if s.ended || sc.closed {
		sc.mu.Unlock()
		return 0, false, errStreamClosed
	}
	m := min(int64(want), s.sendWindow, sc.sendWindow, int64(sc.peer.MaxFrame))
	s.sendWindow -= m
	sc.sendWindow -= m
	exhausted = sc.sendWindow <= 0
	sc.mu.Unlock()
	return int(m), exhausted, nil
}

// unreserve gives back window reserve took for a frame not sent (the
// stream was reset meanwhile): the connection's is everyone's.
func (s *stream) unreserve(n int) {
	sc := s.sc
	sc.mu.Lock()
	s.sendWindow += int64(n)
	sc.sendWindow += int64(n)
	sc.windowCond.Broadcast()
	sc.mu.Unlock()
}

// FlushError sends what is buffered (http.ResponseController).
func (w *responseWriter) FlushError() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	sc := w.s.sc
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	if w.s.sentEnd {
		return errStreamClosed
	}
	if !w.sentHeader {
		if err := w.sendHeaderLocked(false); err != nil {
			return err
		}
	}
	return sc.flushLocked()
}

// Flush implements http.Flusher.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// EnableFullDuplex lets the handler read the request body while writing
// the response; HTTP/2 always allows it.
func (w *responseWriter) EnableFullDuplex() error { return nil }

// finish ends the response after the handler returned: headers if none
// went out, then the trailers or an empty DATA frame that ends the stream.
func (w *responseWriter) finish() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	sc := w.s.sc
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	if w.s.sentEnd {
		return nil
	}
	if !w.sentHeader {
		w.parseTrailer()
	}
	trailers := w.trailerFields()
	if !w.sentHeader {
		if err := w.sendHeaderLocked(len(trailers) == 0); err != nil {
			return err
		}
	}
	var err error
	switch {
	case w.s.sentEnd:
	case len(trailers) > 0:
		err = w.writeBlockLocked(trailers, true)
	default:
		err = sc.fr.WriteData(w.s.id, true, nil)
	}
	w.s.sentEnd = true
	if err != nil {
		return err
	}
	return sc.flushLocked()
}

// trailerFields are the trailers to send: those declared in the Trailer
// header, and keys with http.TrailerPrefix.
func (w *responseWriter) trailerFields() []hpack.HeaderField {
	var out []hpack.HeaderField
	for _, k := range w.trailers {
		for _, v := range w.header[k] {
			out = append(out, hpack.HeaderField{Name: h2conn.LowerName(k), Value: v})
		}
	}
	for k, vs := range w.header {
		if tk, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			for _, v := range vs {
				out = append(out, hpack.HeaderField{Name: strings.ToLower(tk), Value: v})
			}
		}
	}
	return out
}

// sendHeaderLocked writes the response's HEADERS (end: and ends the
// stream). Callers hold wmu.
func (w *responseWriter) sendHeaderLocked(end bool) error {
	w.sentHeader = true
	w.goAway = httpguts.HeaderValuesContainsToken(w.header["Connection"], "close")
	w.parseTrailer()
	if w.goAway {
		defer w.s.sc.writeGoAwayLocked(http2.ErrCodeNo) // after the HEADERS, in the same write
	}
	if end {
		w.s.sentEnd = true
	}
	return w.writeHeadersLocked(w.status, w.header, w.trailers, end)
}

// parseTrailer reads the trailers the Trailer header declares, once.
func (w *responseWriter) parseTrailer() {
	if w.trailerParsed {
		return
	}
	w.trailerParsed = true
	for _, v := range w.header["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			if k = textproto.TrimString(k); k != "" {
				w.trailers = append(w.trailers, textproto.CanonicalMIMEHeaderKey(k))
			}
		}
	}
}

// writeHeadersLocked writes a HEADERS block of status and h, leaving out
// connection-specific fields, trailers and Trailer-prefixed keys.
func (w *responseWriter) writeHeadersLocked(status int, h http.Header, trailers []string, end bool) error {
	fields := make([]hpack.HeaderField, 0, len(h)+2)
	fields = append(fields, hpack.HeaderField{Name: ":status", Value: statusText(status)})
	for k, vs := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) || isTrailer(k, trailers) {
			continue
		}
		switch k {
		case "Connection", "Proxy-Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade":
			continue
		}
		name := h2conn.LowerName(k)
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				continue // not to be sent: it would split the field
			}
			fields = append(fields, hpack.HeaderField{Name: name, Value: v})
		}
	}
	if status >= 200 && w.s.sc.opts.Date != nil {
		if _, ok := h["Date"]; !ok {
			fields = append(fields, hpack.HeaderField{Name: "date", Value: w.s.sc.opts.Date()})
		}
	}
	return w.writeBlockLocked(fields, end)
}

// writeBlockLocked encodes fields and writes them as HEADERS and, when
// larger than a frame, CONTINUATION frames.
func (w *responseWriter) writeBlockLocked(fields []hpack.HeaderField, end bool) error {
	sc := w.s.sc
	sc.hbuf.Reset()
	for _, f := range fields {
		if err := sc.henc.WriteField(f); err != nil {
			return err
		}
	}
	sc.mu.Lock()
	max := int(sc.peer.MaxFrame)
	sc.mu.Unlock()
	if err := h2conn.WriteHeaderBlock(sc.fr, w.s.id, sc.hbuf.Bytes(), end, max); err != nil {
		return err
	}
	return sc.werr
}

func isTrailer(k string, trailers []string) bool {
	for _, t := range trailers {
		if t == k {
			return true
		}
	}
	return false
}

func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 404:
		return "404"
	}
	return strconv.Itoa(code)
}
