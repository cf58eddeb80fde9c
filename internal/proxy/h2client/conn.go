package h2client

import (
	"bufio"
	"bytes"
	"context"
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
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"weft.dev/weft/internal/proxy/h2conn"
)

const (
	// streamWindow is this client's receive window per stream: how much
	// of a response a server may send ahead of the proxy reading it. The
	// connection's window (connWindow) is credited as data arrives, not as
	// it is read, so that streams whose readers are slow (a paused
	// download) do not stall the others; the stream windows bound what is
	// buffered (streams times streamWindow).
	streamWindow = 256 << 10
	connWindow   = 4 << 20
	// initialPeerWindow is the server's windows before its SETTINGS.
	initialPeerWindow = 65535
	// defaultMaxStreams is the streams a connection carries before the
	// server's SETTINGS_MAX_CONCURRENT_STREAMS arrives (net/http's too).
	defaultMaxStreams = 100
	// writeTimeout bounds each write to the socket.
	writeTimeout = 30 * time.Second
	// pingAfter is how long a connection may go without a frame before
	// it is sent a PING, and pingTimeout how long the answer may take
	// before the connection is closed as dead.
	pingAfter   = 30 * time.Second
	pingTimeout = 15 * time.Second
	// inlineBodyMax is the largest request body written by the caller's
	// goroutine with the headers, when it has arrived in full.
	inlineBodyMax = 64 << 10
	// continueTimeout is how long a request with "Expect: 100-continue"
	// waits for the server's go-ahead before it sends its body anyway.
	continueTimeout        = time.Second
	maxResponseHeaderBytes = 10 << 20
)

// conn is one HTTP/2 connection to an endpoint. Its reader goroutine
// (readLoop) reads frames and hands them to streams; callers write their
// own frames under wmu.
type conn struct {
	p    *Pool
	addr string
	nc   net.Conn
	fr   *http2.Framer

	// wmu guards the write side: bw, the framer's writes, the HPACK
	// encoder, hbuf, werr, nextID, and every stream's sentEnd and rst.
	// Lock order: wmu before mu.
	wmu    sync.Mutex
	bw     *bufio.Writer
	henc   *hpack.Encoder
	hbuf   bytes.Buffer
	werr   error
	nextID uint32

	// mu guards the state below.
	mu         sync.Mutex
	windowCond sync.Cond
	streams    map[uint32]*stream
	reserved   int // streams reserved by getConn and not yet opened
	sendWindow int64
	peer       h2conn.Peer
	// recvUnacked is what the proxy read and the server was not yet
	// credited with, on the connection.
	recvUnacked int64
	goingAway   bool   // GOAWAY received, or retired: no new streams
	gotGoAway   bool   // the server sent GOAWAY
	lastID      uint32 // its last stream (streams above were not taken)
	retired     bool
	closed      bool
	closeErr    error
	idle        *time.Timer
	lastRead    time.Time // when the last frame arrived (health check)
	pingSent    time.Time // zero: none outstanding
	health      *time.Timer
	canon       h2conn.KeyCache // header keys, reader goroutine only
	// settings is closed when the server's first SETTINGS arrived (its
	// stream limit among them), or the connection ended before.
	settings     chan struct{}
	settingsSeen bool
}

// newConn starts HTTP/2 on nc: the client preface and SETTINGS are
// written, and the reader goroutine started.
func newConn(p *Pool, addr string, nc net.Conn) (*conn, error) {
	cc := &conn{
		p: p, addr: addr, nc: nc,
		bw:         bufio.NewWriterSize(h2conn.DeadlineWriter{Conn: nc, Timeout: writeTimeout}, 16<<10),
		streams:    map[uint32]*stream{},
		nextID:     1,
		sendWindow: initialPeerWindow,
		peer:       h2conn.DefaultPeer(defaultMaxStreams),
		lastRead:   time.Now(),
		canon:      h2conn.KeyCache{},
		settings:   make(chan struct{}),
	}
	cc.windowCond.L = &cc.mu
	cc.fr = http2.NewFramer(cc.bw, bufio.NewReaderSize(nc, 16<<10))
	cc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	cc.fr.MaxHeaderListSize = maxResponseHeaderBytes
	cc.fr.SetReuseFrames()
	cc.fr.SetMaxReadFrameSize(16 << 10) // SETTINGS_MAX_FRAME_SIZE: the default, not announced
	cc.henc = hpack.NewEncoder(&cc.hbuf)
	cc.bw.WriteString(http2.ClientPreface)
	_ = cc.fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: maxResponseHeaderBytes},
	)
	_ = cc.fr.WriteWindowUpdate(0, connWindow-initialPeerWindow)
	if err := cc.bw.Flush(); err != nil {
		nc.Close()
		return nil, err
	}
	cc.idle = time.AfterFunc(p.opts.IdleTimeout, func() { cc.closeIfIdle() })
	cc.health = time.AfterFunc(pingAfter, cc.checkHealth)
	go cc.readLoop()
	return cc, nil
}

// settingsTimeout bounds the wait for a new connection's first SETTINGS.
const settingsTimeout = 10 * time.Second

// awaitSettings waits for the server's first SETTINGS, so that the
// connection is not given more streams than the server allows (until
// then a client may only assume 100, and a server that allows fewer
// refuses the rest). It closes the connection when they do not come.
func (cc *conn) awaitSettings(ctx context.Context) error {
	t := time.NewTimer(settingsTimeout)
	defer t.Stop()
	var err error
	select {
	case <-cc.settings:
		cc.mu.Lock()
		err = cc.closeErr
		cc.mu.Unlock()
		if err != nil {
			err = fmt.Errorf("http2: upstream connection ended before its SETTINGS: %w", err)
		}
	case <-ctx.Done():
		err = ctx.Err()
	case <-t.C:
		err = errors.New("http2: upstream sent no SETTINGS")
	}
	if err != nil {
		cc.mu.Lock()
		cc.closeLocked(err)
		cc.mu.Unlock()
	}
	return err
}

// reserve takes a stream slot if the connection has one.
func (cc *conn) reserve() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed || cc.goingAway || uint32(len(cc.streams)+cc.reserved) >= cc.peer.MaxStreams {
		return false
	}
	cc.reserved++
	cc.idle.Stop()
	return true
}

// unreserve gives back a slot that was not used.
func (cc *conn) unreserve() {
	cc.mu.Lock()
	cc.reserved--
	cc.idleCheckLocked()
	cc.mu.Unlock()
}

func (cc *conn) idleCheckLocked() {
	if len(cc.streams)+cc.reserved > 0 || cc.closed {
		return
	}
	if cc.goingAway {
		cc.closeLocked(errors.New("http2: connection retired"))
		return
	}
	cc.idle.Reset(cc.p.opts.IdleTimeout)
}

// closeIfIdle closes the connection if it carries no stream, and reports
// whether it is closed.
func (cc *conn) closeIfIdle() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if len(cc.streams)+cc.reserved == 0 {
		cc.closeLocked(errors.New("http2: idle connection closed"))
	}
	return cc.closed
}

// retire stops new streams; the connection closes once its streams end.
func (cc *conn) retire() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.retired, cc.goingAway = true, true
	cc.idleCheckLocked()
}

// closeLocked closes the socket and fails every stream. Callers hold mu.
func (cc *conn) closeLocked(err error) {
	if cc.closed {
		return
	}
	cc.closed, cc.closeErr = true, err
	if !cc.settingsSeen {
		cc.settingsSeen = true
		close(cc.settings)
	}
	cc.idle.Stop()
	cc.health.Stop()
	_ = cc.nc.Close()
	for _, s := range cc.streams {
		cc.endStreamLocked(s, &connLostError{err: err, sent: s.id <= cc.lastIDSeen()})
	}
	cc.windowCond.Broadcast()
	go cc.p.remove(cc)
}

// lastIDSeen is the last stream the server may have processed: all of them
// unless a GOAWAY said otherwise.
func (cc *conn) lastIDSeen() uint32 {
	if cc.gotGoAway {
		return cc.lastID
	}
	return 1<<31 - 1
}

// connLostError fails a stream whose connection ended; sent says whether
// the server may have processed it.
type connLostError struct {
	err  error
	sent bool
}

func (e *connLostError) Error() string {
	return "http2: upstream connection lost: " + e.err.Error()
}
func (e *connLostError) Unwrap() error { return e.err }

// RefusedError fails a request the server did not process (RFC 9113
// section 8.7): it reset the stream with REFUSED_STREAM, or its GOAWAY
// named an earlier last stream. The request may be sent again; the pool
// does so itself when none of its body was read (the proxy's retry
// policy decides otherwise: retry_on refused-stream).
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string {
	return "http2: stream refused (REFUSED_STREAM): " + e.Reason
}

// notSentError fails a request that the server did not process: it may
// be sent again on another connection.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }

// endStreamLocked takes s out of the connection; its waiters see err
// (unless its response already ended). Callers hold mu.
func (cc *conn) endStreamLocked(s *stream, err error) {
	if s.ended {
		return
	}
	s.ended = true
	if err == nil {
		err = io.ErrUnexpectedEOF // only a stream that did not end well has parts left
	}
	if s.respErr == nil && s.resp == nil {
		s.respErr = err
		close(s.headers)
	}
	if !s.recvDone {
		s.setRecvDoneLocked(err)
	}
	s.signal()
	delete(cc.streams, s.id)
	cc.windowCond.Broadcast()
	cc.idleCheckLocked()
}

// flushLocked sends what the write buffer holds. Callers hold wmu.
func (cc *conn) flushLocked() error {
	if cc.werr != nil {
		return cc.werr
	}
	if err := cc.bw.Flush(); err != nil {
		cc.werr = err
		cc.mu.Lock()
		cc.closeLocked(err)
		cc.mu.Unlock()
		return err
	}
	return nil
}

// readLoop reads the server's frames until the connection ends.
func (cc *conn) readLoop() {
	var err error
	for {
		var f http2.Frame
		f, err = cc.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				cc.mu.Lock()
				s := cc.streams[se.StreamID]
				cc.mu.Unlock()
				if s != nil {
					s.reset(se.Code, se)
				}
				continue
			}
			break
		}
		cc.mu.Lock()
		cc.lastRead = time.Now()
		cc.mu.Unlock()
		if err = cc.process(f); err != nil {
			break
		}
	}
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		cc.wmu.Lock()
		_ = cc.fr.WriteGoAway(0, http2.ErrCode(ce), nil)
		_ = cc.flushLocked()
		cc.wmu.Unlock()
	}
	cc.mu.Lock()
	cc.closeLocked(err)
	cc.mu.Unlock()
}

func (cc *conn) process(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return cc.processHeaders(f)
	case *http2.DataFrame:
		return cc.processData(f)
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		// Applied and acknowledged under wmu, as the server does: no
		// header block is encoded between the new table size and its
		// use, and no frame sent under the new settings precedes the
		// acknowledgement.
		cc.wmu.Lock()
		defer cc.wmu.Unlock()
		cc.mu.Lock()
		table, setTable, err := cc.peer.Apply(f, func(delta int64) error {
			for _, st := range cc.streams {
				st.sendWindow += delta
				if st.sendWindow > h2conn.MaxWindow {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
			return nil
		})
		cc.windowCond.Broadcast()
		if !cc.settingsSeen {
			cc.settingsSeen = true
			close(cc.settings)
		}
		cc.mu.Unlock()
		if err != nil {
			return err
		}
		if setTable {
			cc.henc.SetMaxDynamicTableSizeLimit(table)
		}
		_ = cc.fr.WriteSettingsAck()
		return cc.flushLocked()
	case *http2.WindowUpdateFrame:
		cc.mu.Lock()
		defer cc.mu.Unlock()
		if f.StreamID == 0 {
			cc.sendWindow += int64(f.Increment)
			if cc.sendWindow > h2conn.MaxWindow {
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
		} else if s := cc.streams[f.StreamID]; s != nil {
			s.sendWindow += int64(f.Increment)
		}
		cc.windowCond.Broadcast()
		return nil
	case *http2.RSTStreamFrame:
		cc.mu.Lock()
		s := cc.streams[f.StreamID]
		cc.mu.Unlock()
		if s != nil {
			err := error(http2.StreamError{StreamID: f.StreamID, Code: f.ErrCode})
			if f.ErrCode == http2.ErrCodeRefusedStream {
				// Not processed (RFC 9113 section 8.7): the proxy's
				// retry policy decides (retry_on refused-stream).
				err = &RefusedError{Reason: "the upstream reset the stream with REFUSED_STREAM"}
			}
			s.peerReset(err)
		}
		return nil
	case *http2.PingFrame:
		if f.IsAck() {
			cc.mu.Lock()
			cc.pingSent = time.Time{}
			cc.mu.Unlock()
			return nil
		}
		cc.wmu.Lock()
		defer cc.wmu.Unlock()
		_ = cc.fr.WritePing(true, f.Data)
		return cc.flushLocked()
	case *http2.GoAwayFrame:
		cc.mu.Lock()
		cc.goingAway, cc.gotGoAway, cc.lastID = true, true, f.LastStreamID
		var refused []*stream
		for id, s := range cc.streams {
			if id > f.LastStreamID {
				refused = append(refused, s)
			}
		}
		for _, s := range refused {
			cc.endStreamLocked(s, &RefusedError{Reason: fmt.Sprintf("the upstream sent GOAWAY (%v) before processing the stream", f.ErrCode)})
		}
		cc.idleCheckLocked()
		cc.mu.Unlock()
		go cc.p.remove(cc)
		return nil
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol) // push is off (SETTINGS_ENABLE_PUSH 0)
	}
	return nil
}

// checkHealth sends a PING when the connection went quiet for pingAfter,
// and closes it when the answer took longer than pingTimeout.
func (cc *conn) checkHealth() {
	cc.mu.Lock()
	if cc.closed {
		cc.mu.Unlock()
		return
	}
	now := time.Now()
	if !cc.pingSent.IsZero() && cc.lastRead.Before(cc.pingSent) {
		if now.Sub(cc.pingSent) >= pingTimeout {
			cc.closeLocked(errors.New("http2: upstream did not answer a PING"))
			cc.mu.Unlock()
			return
		}
		cc.health.Reset(pingTimeout - now.Sub(cc.pingSent))
		cc.mu.Unlock()
		return
	}
	quiet := now.Sub(cc.lastRead)
	if quiet < pingAfter {
		cc.health.Reset(pingAfter - quiet)
		cc.mu.Unlock()
		return
	}
	cc.pingSent = now
	cc.health.Reset(pingTimeout)
	cc.mu.Unlock()
	cc.wmu.Lock()
	_ = cc.fr.WritePing(false, [8]byte{'w', 'e', 'f', 't'})
	_ = cc.flushLocked()
	cc.wmu.Unlock()
}

// processHeaders handles a response's headers (informational or final)
// or its trailers.
func (cc *conn) processHeaders(f *http2.MetaHeadersFrame) error {
	cc.mu.Lock()
	s := cc.streams[f.StreamID]
	cc.mu.Unlock()
	if s == nil {
		return nil // a stream already reset or ended
	}
	if f.Truncated {
		s.reset(http2.ErrCodeProtocol, errors.New("http2: response header list too large"))
		return nil
	}
	cc.mu.Lock()
	haveResp := s.resp != nil
	cc.mu.Unlock()
	if haveResp {
		return cc.processTrailers(s, f)
	}
	status, err := strconv.Atoi(f.PseudoValue("status"))
	if err != nil || status < 100 || status > 999 {
		s.reset(http2.ErrCodeProtocol, fmt.Errorf("http2: malformed response status %q", f.PseudoValue("status")))
		return nil
	}
	fields := f.RegularFields()
	h := make(http.Header, len(fields))
	for _, hf := range fields {
		k := cc.canonical(hf.Name)
		h[k] = append(h[k], hf.Value)
	}
	if status < 200 {
		if status == http.StatusContinue {
			s.gotContinue()
		}
		if t := httptrace.ContextClientTrace(s.req.Context()); t != nil && t.Got1xxResponse != nil {
			if err := t.Got1xxResponse(status, textproto.MIMEHeader(h)); err != nil {
				s.reset(http2.ErrCodeCancel, err)
			}
		}
		if f.StreamEnded() {
			s.reset(http2.ErrCodeProtocol, errors.New("http2: informational response ends the stream"))
		}
		return nil
	}
	resp := &http.Response{
		Status:        strconv.Itoa(status) + " " + http.StatusText(status),
		StatusCode:    status,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        h,
		ContentLength: -1,
		Request:       s.req,
	}
	if cl := h["Content-Length"]; len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			resp.ContentLength = n
		}
	}
	for _, v := range h["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			if k = textproto.TrimString(k); k != "" {
				if resp.Trailer == nil {
					resp.Trailer = http.Header{}
				}
				resp.Trailer[textproto.CanonicalMIMEHeaderKey(k)] = nil
			}
		}
	}
	delete(h, "Trailer")
	cc.mu.Lock()
	if f.StreamEnded() {
		if s.req.Method != http.MethodHead {
			resp.ContentLength = 0
		}
		resp.Body = http.NoBody
		s.setRecvDoneLocked(io.EOF)
	} else {
		resp.Body = &responseBody{s: s}
	}
	s.resp = resp
	if !s.ended {
		close(s.headers)
	}
	ended, sent := s.recvDone, s.sentAll
	cc.mu.Unlock()
	if ended {
		s.responseEnded(sent)
	}
	return nil
}

func (cc *conn) processTrailers(s *stream, f *http2.MetaHeadersFrame) error {
	if !f.StreamEnded() || len(f.PseudoFields()) > 0 {
		s.reset(http2.ErrCodeProtocol, errors.New("http2: malformed trailers"))
		return nil
	}
	// The response's Trailer map is the proxy's from the moment it has
	// the response: the values go there on its goroutine, at the body's
	// end (responseBody.Read).
	tr := make(http.Header, len(f.RegularFields()))
	for _, hf := range f.RegularFields() {
		k := cc.canonical(hf.Name)
		tr[k] = append(tr[k], hf.Value)
	}
	cc.mu.Lock()
	s.trailer = tr
	s.setRecvDoneLocked(io.EOF)
	s.signal()
	sent := s.sentAll
	cc.mu.Unlock()
	s.responseEnded(sent)
	return nil
}

func (cc *conn) processData(f *http2.DataFrame) error {
	n := int64(f.Length)
	data := f.Data()
	cc.mu.Lock()
	s := cc.streams[f.StreamID]
	var connCredit int64
	if s == nil || s.recvDone || s.bodyClosed || s.resp == nil {
		// Dropped (a stream ended or reset, a body closed; DATA before
		// the response's headers is a protocol error of the stream):
		// the connection is credited back at once.
		connCredit = cc.creditLocked(n)
		bad := s != nil && s.resp == nil && !s.ended
		cc.mu.Unlock()
		cc.writeWindowUpdates(connCredit, nil, 0)
		if bad {
			s.reset(http2.ErrCodeProtocol, errors.New("http2: DATA before the response headers"))
		}
		return nil
	}
	connCredit = cc.creditLocked(n) // at arrival: see streamWindow
	if n > s.recv.Left {
		cc.mu.Unlock()
		cc.writeWindowUpdates(connCredit, nil, 0)
		s.reset(http2.ErrCodeFlowControl, errors.New("http2: upstream sent past the stream's window"))
		return nil
	}
	s.recv.Left -= n
	s.body.Write(data)
	var streamCredit int64
	if pad := n - int64(len(data)); pad > 0 {
		streamCredit = pad
		s.recv.Left += pad
	}
	ended, sent := false, false
	if f.StreamEnded() {
		s.setRecvDoneLocked(io.EOF)
		streamCredit = 0
		ended, sent = true, s.sentAll
	}
	s.signal()
	cc.mu.Unlock()
	cc.writeWindowUpdates(connCredit, s, streamCredit)
	if ended {
		s.responseEnded(sent)
	}
	return nil
}

// creditLocked counts n bytes consumed on the connection and returns the
// WINDOW_UPDATE to send now (once half the window is owed).
func (cc *conn) creditLocked(n int64) int64 {
	cc.recvUnacked += n
	if cc.recvUnacked < connWindow/2 {
		return 0
	}
	c := cc.recvUnacked
	cc.recvUnacked = 0
	return c
}

func (cc *conn) writeWindowUpdates(conn int64, s *stream, sn int64) {
	if conn <= 0 && (s == nil || sn <= 0) {
		return
	}
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	if conn > 0 {
		_ = cc.fr.WriteWindowUpdate(0, uint32(conn))
	}
	if s != nil && sn > 0 && !s.rst {
		_ = cc.fr.WriteWindowUpdate(s.id, uint32(sn))
	}
	_ = cc.flushLocked()
}

// canonical is the header key of a lowercase field name, cached (reader
// goroutine only).
func (cc *conn) canonical(name string) string { return cc.canon.Canonical(name) }
