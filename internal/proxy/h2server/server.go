// Package h2server is the sidecar's HTTP/2 server: it serves one
// downstream connection (h2c with prior knowledge, or HTTP/2 inside TLS
// the listener terminated) and runs an http.Handler for each stream.
//
// It exists for the cost of a request, as the HTTP/1.x server does (the
// listener's h1server.go). net/http's HTTP/2 server hands every frame
// between three goroutines (a frame reader, a serve loop that owns the
// connection's state, and a new goroutine for each write that may block)
// and flushes each frame on its own. Here the connection's goroutine reads
// frames and acts on them itself; a stream's handler writes its frames to
// the connection's buffer itself, under a lock, and the buffer goes to the
// socket when the handler flushes or ends: a gRPC response (headers, a
// message, trailers) leaves in one or two writes instead of three or four,
// with no goroutine hand-off between the handler and the socket.
//
// Framing and HPACK are golang.org/x/net/http2's Framer and hpack. What
// is here is the connection's state: streams, their states and flow
// control in both directions (RFC 9113 sections 5 and 6.9), settings,
// PING, GOAWAY and a graceful shutdown, and the mapping of streams to
// net/http's Request and ResponseWriter (section 8).
package h2server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"weft.dev/weft/internal/proxy/h2conn"
)

// Defaults of Options.
const (
	// DefaultMaxConcurrentStreams is net/http's default.
	DefaultMaxConcurrentStreams = 250
	// DefaultIdleTimeout closes a connection without streams for this long.
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultMaxHeaderListSize bounds a request's header block (decoded),
	// as net/http's default for both protocols.
	DefaultMaxHeaderListSize = 1 << 20
)

const (
	// streamWindow is the receive window of each stream: how much of a
	// request body a client may send ahead of the handler reading it.
	streamWindow = 256 << 10
	// connWindow is the connection's receive window, shared by its
	// streams: bytes received but not yet read by handlers stay under it.
	connWindow = 1 << 20
	// initialPeerWindow is a peer's stream and connection window before
	// its SETTINGS say otherwise (RFC 9113 section 6.9.2).
	initialPeerWindow = 65535
	// writeTimeout bounds each write to the socket: a client that stops
	// reading cannot hold the connection's writers forever.
	writeTimeout = 30 * time.Second
	// prefaceTimeout bounds how long a client takes to send its preface
	// and first SETTINGS.
	prefaceTimeout = 10 * time.Second
	// lingerTimeout is how long a connection ending gracefully goes on
	// reading (lingerCloseLocked).
	lingerTimeout = time.Second
	// writeBufferSize is the connection's write buffer.
	writeBufferSize = 16 << 10
)

// Options configure the server of a connection.
type Options struct {
	// Handler serves every request. It runs on a goroutine of its own per
	// stream.
	Handler http.Handler
	// Context is the parent of every request's context (the listener puts
	// the connection's details in it). Requests are also cancelled when
	// their stream is reset or the connection ends.
	Context context.Context
	// MaxConcurrentStreams is the SETTINGS_MAX_CONCURRENT_STREAMS this
	// server announces and enforces (0: DefaultMaxConcurrentStreams).
	MaxConcurrentStreams uint32
	// MaxHeaderListSize bounds a request's decoded header block (0:
	// DefaultMaxHeaderListSize); a larger one is answered 431.
	MaxHeaderListSize uint32
	// IdleTimeout ends a connection that has had no stream for this long
	// (0: DefaultIdleTimeout).
	IdleTimeout time.Duration
	// Date, when set, gives the Date header of responses that have none.
	Date func() string
	// Logger receives handler panics and protocol errors (at debug).
	Logger *slog.Logger
}

// Conn is the server side of one HTTP/2 connection. Serve runs it;
// Shutdown may be called from any goroutine.
type Conn struct {
	nc   net.Conn
	opts Options
	fr   *http2.Framer
	log  *slog.Logger

	br     *bufio.Reader
	remote string // the client's address, for requests

	// wmu guards the write side: bw, the framer's writes, the HPACK
	// encoder and hbuf, werr, and every stream's sentEnd.
	wmu  sync.Mutex
	bw   *bufio.Writer
	henc *hpack.Encoder
	hbuf bytes.Buffer
	werr error

	// mu guards the connection's state below. Lock order: wmu before mu
	// (a writer checks flow control while it holds wmu); nothing takes
	// wmu with mu held.
	mu         sync.Mutex
	windowCond sync.Cond // signalled when a send window grows or a stream ends
	streams    map[uint32]*stream
	// maxStreamID is the highest stream the client opened.
	maxStreamID uint32
	// handlers counts running handlers, reset streams' included: with
	// streams bounded by MaxConcurrentStreams, a client that resets its
	// streams at once cannot start handlers without bound.
	handlers int
	// sendWindow is the connection's send window (the client's receive
	// window); peer is what its SETTINGS said (each new stream's window
	// among it).
	sendWindow int64
	peer       h2conn.Peer
	// recvWindow is what the client may still send on the connection;
	// recvUnacked is what handlers read and the client was not yet
	// credited with.
	recvWindow  int64
	recvUnacked int64
	// owed is connection window credit that became due where no
	// WINDOW_UPDATE could be written (endStreamLocked, under mu): the
	// reader or the handler that ended the stream sends it (sendOwed).
	owed atomic.Int64
	// readerDeferred (Serve's goroutine only) and readerOwes (under wmu):
	// control frames the reader wrote while more input was buffered, to
	// be flushed once it has read what is there (flushFromReaderLocked).
	readerDeferred bool
	readerOwes     bool
	// resets are the streams this server reset last (a ring; under mu).
	resets     [32]uint32
	resetsNext uint32
	// goAwaySent, goAwayLast: this server sent GOAWAY naming goAwayLast
	// as the last stream it takes.
	goAwaySent bool
	goAwayLast uint32
	goingAway  bool // GOAWAY sent: no new streams
	lingering  bool // closing: reads end at lingerTimeout (lingerCloseLocked)
	// started: the server's SETTINGS went out (a GOAWAY may follow);
	// shutdownAsked: Shutdown came before that.
	started, shutdownAsked bool
	closed                 bool // the connection is over
	idle                   *time.Timer
	// handlersWG counts handlers; workersWG the goroutines that run them
	// (a worker waits in work for the next stream after its handler
	// returns: see startHandler).
	handlersWG  sync.WaitGroup
	workersWG   sync.WaitGroup
	work        chan handlerJob
	idleWorkers atomic.Int32
	canonCache  h2conn.KeyCache
}

// NewConn returns the server of c. br, when not nil, is c's reader with
// the bytes already read from it (the listener peeks at the preface);
// Serve reads through it.
func NewConn(c net.Conn, br *bufio.Reader, opts Options) *Conn {
	if opts.MaxConcurrentStreams == 0 {
		opts.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if opts.MaxHeaderListSize == 0 {
		opts.MaxHeaderListSize = DefaultMaxHeaderListSize
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.Context == nil {
		opts.Context = context.Background()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if br == nil {
		br = bufio.NewReaderSize(c, 16<<10)
	}
	sc := &Conn{
		nc:         c,
		br:         br,
		remote:     c.RemoteAddr().String(),
		opts:       opts,
		log:        opts.Logger,
		bw:         bufio.NewWriterSize(h2conn.DeadlineWriter{Conn: c, Timeout: writeTimeout}, writeBufferSize),
		streams:    map[uint32]*stream{},
		sendWindow: initialPeerWindow,
		peer:       h2conn.DefaultPeer(0),
		recvWindow: connWindow,
		canonCache: h2conn.KeyCache{},
		work:       make(chan handlerJob),
	}
	sc.windowCond.L = &sc.mu
	sc.fr = http2.NewFramer(sc.bw, br)
	sc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	sc.fr.MaxHeaderListSize = opts.MaxHeaderListSize
	sc.fr.SetReuseFrames()
	sc.fr.SetMaxReadFrameSize(16 << 10) // SETTINGS_MAX_FRAME_SIZE: the default, not announced
	sc.henc = hpack.NewEncoder(&sc.hbuf)
	return sc
}

// Serve reads the client's preface and serves the connection until the
// client leaves, a protocol error ends it, or Shutdown's GOAWAY has let
// its streams finish. It closes the connection and returns once every
// handler has returned.
func (sc *Conn) Serve() {
	defer sc.workersWG.Wait()
	defer close(sc.work) // after the handlers: idle workers end
	defer sc.handlersWG.Wait()
	defer sc.close()
	if err := sc.readPreface(); err != nil {
		sc.log.Debug("http2 preface", "remote", sc.nc.RemoteAddr(), "error", err)
		return
	}
	sc.wmu.Lock()
	_ = sc.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: sc.opts.MaxConcurrentStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: sc.opts.MaxHeaderListSize},
	)
	_ = sc.fr.WriteWindowUpdate(0, connWindow-initialPeerWindow)
	err := sc.flushLocked()
	sc.wmu.Unlock()
	if err != nil {
		return
	}
	sc.mu.Lock()
	sc.idle = time.AfterFunc(sc.opts.IdleTimeout, sc.idleTimeout)
	sc.started = true
	asked := sc.shutdownAsked
	sc.mu.Unlock()
	if asked {
		sc.Shutdown()
	}
	first := true
	for {
		f, err := sc.fr.ReadFrame()
		if err != nil {
			if !sc.readError(err) {
				return
			}
			continue
		}
		if first {
			// RFC 9113 section 3.4: the preface ends with SETTINGS.
			if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
				sc.goAway(http2.ErrCodeProtocol, "first frame is not SETTINGS")
				return
			}
			first = false
		}
		if err := sc.processFrame(f); err != nil {
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				sc.goAway(http2.ErrCode(ce), err.Error())
				sc.discardReads()
			}
			return
		}
		sc.sendOwed(true)
		if sc.readerDeferred && sc.br.Buffered() == 0 {
			sc.readerDeferred = false
			sc.wmu.Lock()
			if sc.readerOwes {
				sc.readerOwes = false
				_ = sc.flushLocked()
			}
			sc.wmu.Unlock()
		}
	}
}

// flushFromReaderLocked flushes control frames the reader wrote (PING and
// SETTINGS acknowledgements, resets, window updates) unless more input is
// buffered: then they go with the answers to it, so that a burst of small
// frames costs one write, not one each. Serve's goroutine only; callers
// hold wmu.
func (sc *Conn) flushFromReaderLocked() error {
	if sc.br.Buffered() > 0 {
		sc.readerDeferred, sc.readerOwes = true, true
		return sc.werr
	}
	return sc.flushLocked()
}

// sendOwed sends the connection window credit endStreamLocked left owed.
func (sc *Conn) sendOwed(fromReader bool) {
	if sc.owed.Load() == 0 {
		return
	}
	if v := sc.owed.Swap(0); v > 0 {
		sc.writeWindowUpdates(v, nil, 0, fromReader)
	}
}

func (sc *Conn) readPreface() error {
	_ = sc.nc.SetReadDeadline(time.Now().Add(prefaceTimeout))
	defer func() { _ = sc.nc.SetReadDeadline(time.Time{}) }()
	var buf [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(sc.br, buf[:]); err != nil {
		return err
	}
	if string(buf[:]) != http2.ClientPreface {
		return errors.New("not the HTTP/2 client preface")
	}
	return nil
}

// readError handles an error from ReadFrame: a stream error resets that
// stream and reading goes on (true); anything else ends the connection.
func (sc *Conn) readError(err error) bool {
	var se http2.StreamError
	if errors.As(err, &se) {
		sc.mu.Lock()
		if se.StreamID > sc.maxStreamID && se.StreamID%2 == 1 {
			// A stream that failed in its headers was opened all the same.
			sc.maxStreamID = se.StreamID
		}
		s := sc.streams[se.StreamID]
		sc.mu.Unlock()
		if s != nil {
			sc.resetStream(s, se.Code, true)
		} else {
			sc.writeRST(se.StreamID, se.Code)
		}
		return true
	}
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &ce):
		sc.goAway(http2.ErrCode(ce), err.Error())
		sc.discardReads()
	case errors.Is(err, http2.ErrFrameTooLarge):
		sc.goAway(http2.ErrCodeFrameSize, err.Error())
		sc.discardReads()
	}
	return false
}

// discardReads reads and drops what the client sends for a moment after
// a GOAWAY that ends the connection on an error: closing a socket with
// unread bytes resets it, and the client could lose the GOAWAY that says
// why.
func (sc *Conn) discardReads() {
	_ = sc.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
	_, _ = io.Copy(io.Discard, io.LimitReader(sc.br, 1<<20))
}

func (sc *Conn) processFrame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		return sc.processSettings(f)
	case *http2.MetaHeadersFrame:
		return sc.processHeaders(f)
	case *http2.DataFrame:
		return sc.processData(f)
	case *http2.WindowUpdateFrame:
		return sc.processWindowUpdate(f)
	case *http2.RSTStreamFrame:
		return sc.processRST(f)
	case *http2.PingFrame:
		if f.IsAck() {
			return nil // this server sends no PINGs
		}
		sc.wmu.Lock()
		defer sc.wmu.Unlock()
		if err := sc.fr.WritePing(true, f.Data); err != nil {
			return err
		}
		return sc.flushFromReaderLocked()
	case *http2.GoAwayFrame:
		// The client opens no more streams; those open finish, then the
		// connection closes.
		sc.mu.Lock()
		sc.goingAway = true
		if len(sc.streams) == 0 {
			sc.lingerCloseLocked()
		}
		sc.mu.Unlock()
		return nil
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			sc.mu.Lock()
			s := sc.streams[f.StreamID]
			sc.mu.Unlock()
			if s != nil {
				sc.resetStream(s, http2.ErrCodeProtocol, true)
			} else {
				sc.writeRST(f.StreamID, http2.ErrCodeProtocol)
			}
		}
		return nil // priorities are advisory; this server ignores them
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	default:
		return nil // unknown frame types are ignored (section 5.5)
	}
}

func (sc *Conn) processSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	// Applied and acknowledged under wmu: no frame a handler writes
	// under the new settings (a window they opened) goes before the
	// acknowledgement, and no header block is encoded between the new
	// table size and its use.
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	sc.mu.Lock()
	tableSize, setTable, err := sc.peer.Apply(f, func(delta int64) error {
		for _, st := range sc.streams {
			st.sendWindow += delta
			if st.sendWindow > h2conn.MaxWindow {
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
		}
		return nil
	})
	sc.windowCond.Broadcast()
	sc.mu.Unlock()
	if err != nil {
		return err
	}
	if setTable {
		sc.henc.SetMaxDynamicTableSizeLimit(tableSize)
	}
	if err := sc.fr.WriteSettingsAck(); err != nil {
		return err
	}
	return sc.flushFromReaderLocked()
}

func (sc *Conn) processWindowUpdate(f *http2.WindowUpdateFrame) error {
	sc.mu.Lock()
	if f.StreamID == 0 {
		sc.sendWindow += int64(f.Increment)
		over := sc.sendWindow > h2conn.MaxWindow
		sc.windowCond.Broadcast()
		sc.mu.Unlock()
		if over {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		return nil
	}
	if f.StreamID > sc.maxStreamID {
		sc.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol) // an idle stream
	}
	s := sc.streams[f.StreamID]
	if s == nil {
		sc.mu.Unlock()
		return nil // a closed stream: updates may still be in flight
	}
	s.sendWindow += int64(f.Increment)
	over := s.sendWindow > h2conn.MaxWindow
	sc.windowCond.Broadcast()
	sc.mu.Unlock()
	if over {
		sc.resetStream(s, http2.ErrCodeFlowControl, true)
	}
	return nil
}

func (sc *Conn) processRST(f *http2.RSTStreamFrame) error {
	sc.mu.Lock()
	if f.StreamID > sc.maxStreamID {
		sc.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol) // an idle stream
	}
	s := sc.streams[f.StreamID]
	if s != nil {
		sc.endStreamLocked(s, fmt.Errorf("stream reset by the client: %v", f.ErrCode))
	}
	sc.mu.Unlock()
	if s != nil {
		// Nothing more is sent on it: the reset ends the stream both ways.
		sc.wmu.Lock()
		s.sentEnd, s.rst = true, true
		sc.wmu.Unlock()
	}
	return nil
}

func (sc *Conn) processData(f *http2.DataFrame) error {
	id := f.StreamID
	n := int64(f.Length) // padding included: it counts against the windows
	data := f.Data()
	sc.mu.Lock()
	if n > sc.recvWindow {
		sc.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	sc.recvWindow -= n
	s := sc.streams[id]
	if s == nil || s.recvDone {
		if id > sc.maxStreamID {
			sc.mu.Unlock()
			return http2.ConnectionError(http2.ErrCodeProtocol) // an idle stream
		}
		// A closed stream, or one whose body ended: the bytes are
		// dropped and the connection's window credited back.
		if sc.ignoredLocked(id) {
			// Sent before the client saw this server's reset: ignored
			// (RFC 9113 section 5.4.2).
			credit := sc.creditLocked(n)
			sc.mu.Unlock()
			sc.writeWindowUpdates(credit, nil, 0, true)
			return nil
		}
		credit := sc.creditLocked(n)
		sc.mu.Unlock()
		sc.writeWindowUpdates(credit, nil, 0, true)
		if s != nil {
			sc.resetStream(s, http2.ErrCodeStreamClosed, true)
		} else {
			sc.writeRST(id, http2.ErrCodeStreamClosed)
		}
		return nil
	}
	if n > s.recv.Left {
		credit := sc.creditLocked(n) // dropped with the stream
		sc.mu.Unlock()
		sc.writeWindowUpdates(credit, nil, 0, true)
		sc.resetStream(s, http2.ErrCodeFlowControl, true)
		return nil
	}
	s.recv.Left -= n
	pad := n - int64(len(data))
	s.received += int64(len(data))
	if s.declared >= 0 && (s.received > s.declared || f.StreamEnded() && s.received != s.declared) {
		credit := sc.creditLocked(n) // dropped with the stream
		sc.mu.Unlock()
		sc.writeWindowUpdates(credit, nil, 0, true)
		sc.resetStream(s, http2.ErrCodeProtocol, true) // the body is not the length the request declared
		return nil
	}
	var credit, streamCredit int64
	if s.bodyClosed {
		// The handler closed the body: the bytes are dropped, and the
		// client credited on both levels.
		credit, streamCredit = sc.creditLocked(n), n
		s.recv.Left += n
	} else {
		s.body.Write(data)
		if pad > 0 {
			credit, streamCredit = sc.creditLocked(pad), pad
			s.recv.Left += pad
		}
	}
	if f.StreamEnded() {
		s.recvDone = true
		s.recvErr = io.EOF
		streamCredit = 0
	}
	s.bodyCond.Signal()
	sc.mu.Unlock()
	sc.writeWindowUpdates(credit, s, streamCredit, true)
	return nil
}

// creditLocked counts n bytes handed on (read by a handler, or dropped)
// and returns the connection window update to send now: updates go out
// once half the window is owed, not for every read.
func (sc *Conn) creditLocked(n int64) int64 {
	sc.recvUnacked += n
	if sc.recvUnacked < connWindow/2 {
		return 0
	}
	c := sc.recvUnacked
	sc.recvUnacked = 0
	sc.recvWindow += c
	return c
}

// writeWindowUpdates sends WINDOW_UPDATEs for the connection (conn > 0)
// and for stream s (sn > 0), and flushes them (fromReader: Serve's
// goroutine, flushFromReaderLocked).
func (sc *Conn) writeWindowUpdates(conn int64, s *stream, sn int64, fromReader bool) {
	if conn <= 0 && (s == nil || sn <= 0) {
		return
	}
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	if conn > 0 {
		_ = sc.fr.WriteWindowUpdate(0, uint32(conn))
	}
	if s != nil && sn > 0 && !s.rst {
		_ = sc.fr.WriteWindowUpdate(s.id, uint32(sn))
	}
	if fromReader {
		_ = sc.flushFromReaderLocked()
	} else {
		_ = sc.flushLocked()
	}
}

// writeRST resets a stream this server holds no state for. Serve's
// goroutine only.
func (sc *Conn) writeRST(id uint32, code http2.ErrCode) {
	sc.mu.Lock()
	sc.noteResetLocked(id)
	sc.mu.Unlock()
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	_ = sc.fr.WriteRSTStream(id, code)
	_ = sc.flushFromReaderLocked()
}

// resetStream ends s with RST_STREAM(code): its handler's context is
// cancelled, its body fails, and nothing more is sent on it (fromReader:
// called on Serve's goroutine).
func (sc *Conn) resetStream(s *stream, code http2.ErrCode, fromReader bool) {
	sc.mu.Lock()
	sc.endStreamLocked(s, fmt.Errorf("stream reset by the server: %v", code))
	sc.noteResetLocked(s.id)
	sc.mu.Unlock()
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	if s.rst {
		return
	}
	s.sentEnd, s.rst = true, true
	_ = sc.fr.WriteRSTStream(s.id, code)
	if fromReader {
		_ = sc.flushFromReaderLocked()
	} else {
		_ = sc.flushLocked()
	}
}

// noteResetLocked remembers a stream this server reset, so that frames
// the client sent before it saw the reset are ignored rather than taken
// for errors (recentlyReset). Callers hold mu.
func (sc *Conn) noteResetLocked(id uint32) {
	sc.resets[sc.resetsNext%uint32(len(sc.resets))] = id
	sc.resetsNext++
}

// ignoredLocked says whether frames on stream id, which this server no
// longer holds, are to be ignored rather than taken for the client's
// error: a stream it reset lately (the client may have sent them before
// it saw the reset, RFC 9113 section 5.4.2), or one opened after its
// GOAWAY (section 6.8). Callers hold mu.
func (sc *Conn) ignoredLocked(id uint32) bool {
	if sc.goAwaySent && id > sc.goAwayLast {
		return true
	}
	for _, r := range sc.resets {
		if r == id && id != 0 {
			return true
		}
	}
	return false
}

// endStreamLocked takes s out of the connection: its body fails with err
// (unless it was complete), its context is cancelled, and writers waiting
// for window wake up. Callers hold mu.
func (sc *Conn) endStreamLocked(s *stream, err error) {
	if s.ended {
		return
	}
	s.ended = true
	if !s.recvDone {
		s.recvDone = true
		s.recvErr = err
	}
	if n := s.body.Len(); n > 0 {
		// Received and never read: the connection's window is given
		// back (sendOwed writes the update once mu is released).
		s.body = bytes.Buffer{}
		if c := sc.creditLocked(int64(n)); c > 0 {
			sc.owed.Add(c)
		}
	}
	s.cancel()
	s.bodyCond.Signal()
	delete(sc.streams, s.id)
	sc.windowCond.Broadcast()
	if len(sc.streams) == 0 {
		if sc.goingAway {
			sc.lingerCloseLocked()
		} else if sc.idle != nil && !sc.closed {
			sc.idle.Reset(sc.opts.IdleTimeout)
		}
	}
}

// flushLocked sends what the write buffer holds. Callers hold wmu. An
// error is sticky and closes the connection.
func (sc *Conn) flushLocked() error {
	if sc.werr != nil {
		return sc.werr
	}
	if sc.bw.Buffered() == 0 {
		return nil
	}
	if err := sc.bw.Flush(); err != nil {
		sc.werr = err
		_ = sc.nc.Close()
		return err
	}
	return nil
}

// goAway tells the client the connection ends with code, then closes it.
func (sc *Conn) goAway(code http2.ErrCode, reason string) {
	if code != http2.ErrCodeNo {
		sc.log.Debug("http2 connection error", "remote", sc.nc.RemoteAddr(), "code", code, "reason", reason)
	}
	sc.wmu.Lock()
	sc.writeGoAwayLocked(code)
	_ = sc.flushLocked()
	sc.wmu.Unlock()
}

// writeGoAwayLocked puts GOAWAY, with the last stream the client opened,
// in the write buffer; no stream opens after it. Callers hold wmu.
func (sc *Conn) writeGoAwayLocked(code http2.ErrCode) {
	sc.mu.Lock()
	last := sc.maxStreamID
	sc.goingAway = true
	if !sc.goAwaySent {
		sc.goAwaySent, sc.goAwayLast = true, last
	}
	sc.mu.Unlock()
	_ = sc.fr.WriteGoAway(last, code, nil)
}

// Shutdown starts a graceful close: GOAWAY with the last stream the
// client opened, so it opens no more; the connection closes once the
// streams open finish. Serve returns then.
func (sc *Conn) Shutdown() {
	sc.mu.Lock()
	if !sc.started {
		sc.shutdownAsked = true // Serve sends GOAWAY after its SETTINGS
		sc.mu.Unlock()
		return
	}
	if sc.goingAway || sc.closed {
		sc.mu.Unlock()
		return
	}
	sc.mu.Unlock()
	sc.goAway(http2.ErrCodeNo, "")
	sc.mu.Lock()
	if len(sc.streams) == 0 {
		sc.lingerCloseLocked()
	}
	sc.mu.Unlock()
}

// lingerCloseLocked ends a connection that has nothing more to do (no
// streams, GOAWAY sent or received): its reads go on for a moment, so
// that frames the client sent meanwhile are answered or dropped instead
// of turning the close into a reset, and then Serve closes it. Callers
// hold mu.
func (sc *Conn) lingerCloseLocked() {
	if sc.closed || sc.lingering {
		return
	}
	sc.lingering = true
	_ = sc.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
}

func (sc *Conn) idleTimeout() {
	sc.mu.Lock()
	idle := len(sc.streams) == 0 && !sc.closed
	sc.mu.Unlock()
	if idle {
		sc.Shutdown()
	}
}

// closeLocked closes the socket (Serve's read ends). Callers hold mu.
func (sc *Conn) closeLocked() {
	if sc.closed {
		return
	}
	sc.closed = true
	if sc.idle != nil {
		sc.idle.Stop()
	}
	_ = sc.nc.Close()
}

// close ends the connection and every stream still open.
func (sc *Conn) close() {
	sc.mu.Lock()
	sc.closeLocked()
	for _, s := range sc.streams {
		sc.endStreamLocked(s, errConnClosed)
	}
	sc.windowCond.Broadcast()
	sc.mu.Unlock()
	sc.wmu.Lock()
	if sc.werr == nil {
		sc.werr = errConnClosed
	}
	sc.wmu.Unlock()
}

var errConnClosed = errors.New("http2: client connection closed")

// handlerJob is a stream for a worker to serve.
type handlerJob struct {
	s   *stream
	w   *responseWriter
	req *http.Request
}

// maxIdleWorkers is how many goroutines a connection keeps waiting for
// its next stream once their handler returned.
const maxIdleWorkers = 4

// startHandler runs a stream's handler on a worker of the connection
// that waits for one, or on a new one. A worker's stack has grown to what
// the handler needs (the proxy's is deep): a new goroutine per stream
// spent about a tenth of a gRPC sidecar's CPU growing and copying its
// stack. Called by Serve's goroutine only (it closes work).
func (sc *Conn) startHandler(j handlerJob) {
	select {
	case sc.work <- j:
	default:
		sc.workersWG.Add(1)
		go sc.worker(j)
	}
}

func (sc *Conn) worker(j handlerJob) {
	defer sc.workersWG.Done()
	for {
		sc.runHandler(j.s, j.w, j.req)
		if sc.idleWorkers.Add(1) > maxIdleWorkers {
			sc.idleWorkers.Add(-1)
			return
		}
		var ok bool
		j, ok = <-sc.work
		sc.idleWorkers.Add(-1)
		if !ok {
			return
		}
	}
}

// runHandler serves one stream, then ends it: the response's end (its
// headers, the end of its body or its trailers) is sent, and a request
// whose body the client is still sending is reset with NO_ERROR.
func (sc *Conn) runHandler(s *stream, w *responseWriter, req *http.Request) {
	defer sc.handlersWG.Done()
	aborted := true
	defer func() {
		if v := recover(); v != nil && v != http.ErrAbortHandler {
			sc.log.Error("panic serving a request", "remote", sc.nc.RemoteAddr(), "panic", v, "stack", string(debug.Stack()))
		}
		if aborted {
			sc.resetStream(s, http2.ErrCodeInternal, false)
		} else if err := w.finish(); err != nil {
			sc.resetStream(s, http2.ErrCodeInternal, false)
		}
		if req.Body != http.NoBody {
			// What the handler left unread is dropped, the client's
			// windows credited (net/http's server closes it too).
			_ = req.Body.Close()
		}
		sc.mu.Lock()
		sc.handlers--
		open := !s.recvDone
		if !open {
			sc.endStreamLocked(s, nil)
		}
		sc.mu.Unlock()
		if open {
			sc.resetStream(s, http2.ErrCodeNo, false)
		}
		sc.sendOwed(false)
	}()
	sc.opts.Handler.ServeHTTP(w, req)
	aborted = false
}
