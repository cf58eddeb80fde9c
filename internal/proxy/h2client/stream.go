package h2client

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"weft.dev/weft/internal/proxy/h2conn"
)

// Complete is what a request body may offer to say whether the rest of it
// has arrived, so that reading it to its end does not block. A body that
// has (a gRPC call's message) is written with the request's headers by the
// caller's goroutine; one that has not, or that does not say, is written
// by a goroutine of its own while the response is awaited.
type Complete interface {
	// Complete reports whether reading the body to its end would not
	// block (its bytes are buffered and its end seen).
	Complete() bool
}

// stream is one request on a connection.
type stream struct {
	cc      *conn
	id      uint32
	req     *http.Request
	headers chan struct{} // closed once resp or respErr is set
	notify  chan struct{} // a signal to the body's reader (capacity 1)

	// Under cc.mu:
	resp       *http.Response
	respErr    error
	sendWindow int64
	// recv is what the server may still send, and what the proxy read
	// and the server was not yet credited with.
	recv       h2conn.RecvWindow
	body       bytes.Buffer
	recvDone   bool
	recvErr    error
	trailer    http.Header
	bodyClosed bool
	// recvClosed is closed once recvDone is set (setRecvDoneLocked).
	recvClosed chan struct{}
	// bodyRead: some of the request body was read (it cannot be sent
	// again from the start by this pool).
	bodyRead  bool
	ended     bool // out of cc.streams
	sentAll   bool // the request's end went out (or it never will)
	continued chan struct{}

	// Under cc.wmu: sentEnd: no more HEADERS or DATA; rst: nothing.
	sentEnd, rst bool
}

// setRecvDoneLocked records the end of the response (err: io.EOF, or why
// it ended otherwise). Callers hold cc.mu.
func (s *stream) setRecvDoneLocked(err error) {
	if s.recvDone {
		return
	}
	s.recvDone, s.recvErr = true, err
	close(s.recvClosed)
}

func (s *stream) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// gotContinue releases a body waiting for "100 Continue".
func (s *stream) gotContinue() {
	s.cc.mu.Lock()
	defer s.cc.mu.Unlock()
	if s.continued != nil {
		close(s.continued)
		s.continued = nil
	}
}

// reset ends the stream with RST_STREAM(code); err is what its waiters
// see.
func (s *stream) reset(code http2.ErrCode, err error) {
	cc := s.cc
	cc.mu.Lock()
	cc.endStreamLocked(s, err)
	cc.mu.Unlock()
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	if s.rst || s.id == 0 {
		return
	}
	s.rst, s.sentEnd = true, true
	_ = cc.fr.WriteRSTStream(s.id, code)
	_ = cc.flushLocked()
}

// peerReset ends the stream the server reset.
func (s *stream) peerReset(err error) {
	cc := s.cc
	cc.mu.Lock()
	cc.endStreamLocked(s, err)
	cc.mu.Unlock()
	cc.wmu.Lock()
	s.rst, s.sentEnd = true, true
	cc.wmu.Unlock()
}

// finish takes a stream whose request and response both ended out of the
// connection.
func (s *stream) finish() {
	s.cc.mu.Lock()
	s.cc.endStreamLocked(s, nil)
	s.cc.mu.Unlock()
}

// responseEnded ends a stream whose response ended (sent: and its
// request). A request body still being sent is cut (RST_STREAM CANCEL):
// the server answered in full and reads no more of it, and a server that
// does not reset the stream itself would leave the body's writer waiting
// for window forever.
func (s *stream) responseEnded(sent bool) {
	if sent {
		s.finish()
		return
	}
	s.reset(http2.ErrCodeCancel, nil)
}

// markSent records that the request's end went out; the stream ends if
// the response did too.
func (s *stream) markSent() {
	cc := s.cc
	cc.mu.Lock()
	s.sentAll = true
	done := s.recvDone && s.resp != nil
	cc.mu.Unlock()
	if done {
		s.finish()
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// maxStreamID is the last stream ID a client may open (2^31-1, odd).
const maxStreamID = 1<<31 - 1

// roundTrip sends req on a stream reserved on cc, and waits for its
// response's headers. An error that wraps notSentError means nothing of
// the request was sent or read: the pool may send it on another
// connection.
func (cc *conn) roundTrip(req *http.Request) (*http.Response, error) {
	body := req.Body
	if body == http.NoBody {
		body = nil
	}
	fields, err := requestFields(req)
	if err != nil {
		cc.unreserve()
		closeBody(req)
		return nil, err
	}
	s := &stream{cc: cc, req: req, headers: make(chan struct{}), notify: make(chan struct{}, 1), recvClosed: make(chan struct{}), recv: h2conn.RecvWindow{Left: streamWindow}}
	expect := body != nil && httpguts.HeaderValuesContainsToken(req.Header["Expect"], "100-continue")
	// A body that has arrived in full goes out with the headers (its
	// trailers, if any, after it: not inline).
	var inline []byte
	inlineDone := false
	if body != nil && !expect && len(req.Trailer) == 0 {
		if c, ok := body.(Complete); ok && c.Complete() {
			s.bodyRead = true
			inline, inlineDone, err = readInline(body)
			if err != nil {
				cc.unreserve()
				_ = body.Close()
				return nil, err
			}
		}
	}
	cc.wmu.Lock()
	cc.mu.Lock()
	if cc.closed || cc.werr != nil || cc.gotGoAway || cc.nextID > maxStreamID {
		err := cc.closeErr
		if err == nil {
			err = errors.New("http2: connection went away")
		}
		if cc.nextID > maxStreamID {
			cc.goingAway = true // stream IDs spent: a new connection
		}
		cc.reserved--
		cc.idleCheckLocked()
		cc.mu.Unlock()
		cc.wmu.Unlock()
		if !s.bodyRead {
			return nil, &notSentError{err}
		}
		_ = body.Close()
		return nil, err
	}
	s.id = cc.nextID
	cc.nextID += 2
	s.sendWindow = cc.peer.InitialWindow
	cc.streams[s.id] = s
	cc.reserved--
	if expect {
		s.continued = make(chan struct{})
	}
	// The inline body goes out now if the windows hold it.
	sendInline := inlineDone && int64(len(inline)) <= min(s.sendWindow, cc.sendWindow)
	if sendInline {
		s.sendWindow -= int64(len(inline))
		cc.sendWindow -= int64(len(inline))
	}
	maxFrame := int(cc.peer.MaxFrame)
	cc.mu.Unlock()
	err = cc.writeBlockLocked(s.id, fields, body == nil, maxFrame)
	if err == nil && sendInline {
		err = cc.writeDataLocked(s, inline, true, maxFrame)
		s.sentEnd = true
	}
	if err == nil {
		err = cc.flushLocked()
	}
	cc.wmu.Unlock()
	switch {
	case err != nil:
		s.reset(http2.ErrCodeInternal, err) // the connection failed: closed
		closeBody(req)
		return nil, err
	case body == nil:
		s.markSent()
	case sendInline:
		putInline(inline)
		_ = body.Close()
		s.markSent()
	default:
		s.bodyRead = true
		go s.writeBody(body, inline, expect)
	}
	ctx := req.Context()
	select {
	case <-s.headers:
	case <-ctx.Done():
		s.reset(http2.ErrCodeCancel, ctx.Err())
		return nil, ctx.Err()
	}
	cc.mu.Lock()
	resp, rerr := s.resp, s.respErr
	cc.mu.Unlock()
	if rerr != nil {
		var lost *connLostError
		var refused *RefusedError
		switch {
		case s.bodyRead:
		case errors.As(rerr, &lost) && !lost.sent, errors.As(rerr, &refused):
			return nil, &notSentError{rerr}
		}
		return nil, rerr
	}
	return resp, nil
}

// readInline reads a complete body of up to inlineBodyMax bytes; done is
// false when it was longer (the bytes read go first, the rest streams).
func readInline(body io.Reader) (b []byte, done bool, err error) {
	bp := bufPool.Get().(*[]byte)
	buf := (*bp)[:0]
	for len(buf) < inlineBodyMax {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, true, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
	return buf, false, nil
}

func putInline(b []byte) {
	if cap(b) == 16<<10 {
		b = b[:cap(b)]
		bufPool.Put(&b)
	}
}

// writeBody streams a request body that has not arrived in full: first
// what was read already, then the rest, then the end (with the request's
// trailers, if any).
func (s *stream) writeBody(body io.ReadCloser, prefix []byte, expect bool) {
	cc := s.cc
	defer func() {
		_ = body.Close()
		s.markSent()
	}()
	if expect && !s.awaitContinue() {
		return
	}
	if len(prefix) > 0 {
		if s.writeData(prefix, false) != nil {
			return
		}
		putInline(prefix)
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if s.writeData(buf[:n], false) != nil {
				return
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			s.reset(http2.ErrCodeCancel, err)
			return
		}
	}
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	if s.sentEnd {
		return
	}
	s.sentEnd = true
	var err error
	if tr := trailerFields(s.req.Trailer); len(tr) > 0 {
		cc.mu.Lock()
		maxFrame := int(cc.peer.MaxFrame)
		cc.mu.Unlock()
		err = cc.writeBlockLocked(s.id, tr, true, maxFrame)
	} else {
		err = cc.fr.WriteData(s.id, true, nil)
	}
	if err == nil {
		_ = cc.flushLocked()
	}
}

// awaitContinue waits for "100 Continue", the final response, or
// continueTimeout; false: the stream ended meanwhile, its body unsent.
func (s *stream) awaitContinue() bool {
	cc := s.cc
	cc.mu.Lock()
	ch := s.continued
	cc.mu.Unlock()
	if ch == nil {
		return true
	}
	t := time.NewTimer(continueTimeout)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return true
	case <-s.headers:
		cc.mu.Lock()
		resp, failed := s.resp, s.respErr != nil || s.ended
		cc.mu.Unlock()
		if failed || resp.StatusCode < 300 {
			return !failed // a 2xx answer first: the body still goes
		}
		// A final refusal before the go-ahead: the body is not sent.
		// The response is received whole, then the stream ends.
		<-s.recvClosed
		s.reset(http2.ErrCodeCancel, nil)
		return false
	}
}

// writeData sends p as DATA frames within the send windows, waiting for
// them, and flushes.
func (s *stream) writeData(p []byte, end bool) error {
	cc := s.cc
	for len(p) > 0 {
		cc.mu.Lock()
		for !s.ended && !cc.closed && (s.sendWindow <= 0 || cc.sendWindow <= 0) {
			cc.mu.Unlock()
			cc.wmu.Lock()
			err := cc.flushLocked()
			cc.wmu.Unlock()
			if err != nil {
				return err
			}
			cc.mu.Lock()
			if !s.ended && !cc.closed && (s.sendWindow <= 0 || cc.sendWindow <= 0) {
				cc.windowCond.Wait()
			}
		}
		if s.ended || cc.closed {
			cc.mu.Unlock()
			return errors.New("http2: stream ended")
		}
		n := min(int64(len(p)), s.sendWindow, cc.sendWindow, int64(cc.peer.MaxFrame))
		s.sendWindow -= n
		cc.sendWindow -= n
		cc.mu.Unlock()
		cc.wmu.Lock()
		if s.sentEnd {
			cc.wmu.Unlock()
			return errors.New("http2: stream ended")
		}
		last := end && int(n) == len(p)
		err := cc.fr.WriteData(s.id, last, p[:n])
		if last {
			s.sentEnd = true
		}
		if err == nil && int(n) == len(p) {
			err = cc.flushLocked()
		}
		cc.wmu.Unlock()
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// writeDataLocked writes p (within windows already taken) as DATA frames.
// Callers hold wmu.
func (cc *conn) writeDataLocked(s *stream, p []byte, end bool, maxFrame int) error {
	for {
		n := min(len(p), maxFrame)
		last := n == len(p)
		if err := cc.fr.WriteData(s.id, end && last, p[:n]); err != nil {
			return err
		}
		p = p[n:]
		if last {
			return nil
		}
	}
}

func (cc *conn) writeBlockLocked(id uint32, fields []hpack.HeaderField, end bool, maxFrame int) error {
	cc.hbuf.Reset()
	for _, f := range fields {
		if err := cc.henc.WriteField(f); err != nil {
			return err
		}
	}
	if err := h2conn.WriteHeaderBlock(cc.fr, id, cc.hbuf.Bytes(), end, maxFrame); err != nil {
		return err
	}
	return cc.werr
}

// requestFields are a request's pseudo-headers and headers as HTTP/2
// sends them (RFC 9113 section 8.3.1): connection-specific fields left
// out, TE only as "trailers", the trailers it will send announced.
func requestFields(req *http.Request) ([]hpack.HeaderField, error) {
	authority := req.Host
	if authority == "" {
		authority = req.URL.Host
	}
	if !httpguts.ValidHostHeader(authority) {
		return nil, errors.New("http2: invalid request authority " + strconv.Quote(authority))
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	scheme := req.URL.Scheme
	if scheme == "" {
		scheme = "http"
	}
	fields := make([]hpack.HeaderField, 0, len(req.Header)+6)
	fields = append(fields, hpack.HeaderField{Name: ":method", Value: method})
	if method != http.MethodConnect {
		path := req.URL.RequestURI()
		fields = append(fields,
			hpack.HeaderField{Name: ":scheme", Value: scheme},
			hpack.HeaderField{Name: ":authority", Value: authority},
			hpack.HeaderField{Name: ":path", Value: path})
	} else {
		fields = append(fields, hpack.HeaderField{Name: ":authority", Value: authority})
	}
	for k, vs := range req.Header {
		switch k {
		case "Host", "Connection", "Proxy-Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Content-Length", "Trailer":
			continue
		case "Te":
			if !httpguts.HeaderValuesContainsToken(vs, "trailers") {
				continue
			}
			fields = append(fields, hpack.HeaderField{Name: "te", Value: "trailers"})
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, errors.New("http2: invalid request header name " + strconv.Quote(k))
		}
		name := h2conn.LowerName(k)
		for _, v := range vs {
			if v == "" && name == "user-agent" {
				continue // no User-Agent, as net/http takes an empty one
			}
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, errors.New("http2: invalid value of request header " + k)
			}
			fields = append(fields, hpack.HeaderField{Name: name, Value: v})
		}
	}
	if len(req.Trailer) > 0 {
		keys := make([]string, 0, len(req.Trailer))
		for k := range req.Trailer {
			keys = append(keys, k)
		}
		fields = append(fields, hpack.HeaderField{Name: "trailer", Value: strings.Join(keys, ", ")})
	}
	if req.ContentLength > 0 {
		fields = append(fields, hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(req.ContentLength, 10)})
	}
	return fields, nil
}

func trailerFields(t http.Header) []hpack.HeaderField {
	var out []hpack.HeaderField
	for k, vs := range t {
		for _, v := range vs {
			out = append(out, hpack.HeaderField{Name: h2conn.LowerName(k), Value: v})
		}
	}
	return out
}

// responseBody is a response's body as the proxy reads it.
type responseBody struct{ s *stream }

func (b *responseBody) Read(p []byte) (int, error) {
	s, cc := b.s, b.s.cc
	ctx := s.req.Context()
	for {
		cc.mu.Lock()
		if s.body.Len() > 0 {
			n, _ := s.body.Read(p)
			var streamCredit int64
			if !s.recvDone {
				streamCredit = s.recv.Read(int64(n), streamWindow)
			}
			cc.mu.Unlock()
			cc.writeWindowUpdates(0, s, streamCredit) // the connection's was credited as the bytes came
			return n, nil
		}
		if s.recvDone {
			err, tr := s.recvErr, s.trailer
			s.trailer = nil
			cc.mu.Unlock()
			if len(tr) > 0 {
				// On the reader's goroutine: the map is the proxy's.
				if s.resp.Trailer == nil {
					s.resp.Trailer = make(http.Header, len(tr))
				}
				for k, vs := range tr {
					s.resp.Trailer[k] = vs
				}
			}
			return 0, err
		}
		cc.mu.Unlock()
		select {
		case <-s.notify:
		case <-ctx.Done():
			s.reset(http2.ErrCodeCancel, ctx.Err())
			return 0, ctx.Err()
		}
	}
}

// Complete reports whether the rest of the response has arrived (its
// bytes buffered and its end seen): reading it to its end will not wait.
func (b *responseBody) Complete() bool {
	b.s.cc.mu.Lock()
	defer b.s.cc.mu.Unlock()
	return b.s.recvDone
}

// Close drops the rest of the response: a stream still receiving, or
// still sending its request body, is reset (CANCEL).
func (b *responseBody) Close() error {
	s, cc := b.s, b.s.cc
	cc.mu.Lock()
	if s.bodyClosed {
		cc.mu.Unlock()
		return nil
	}
	s.bodyClosed = true
	s.body = bytes.Buffer{}
	// Still receiving, or still sending a body the server no longer
	// waits for (it answered): the stream is reset, so that neither end
	// holds it, nor a writer waiting for window that will not come.
	open := !s.recvDone || !s.sentAll
	cc.mu.Unlock()
	if open {
		s.reset(http2.ErrCodeCancel, errors.New("http2: response body closed"))
	}
	return nil
}
