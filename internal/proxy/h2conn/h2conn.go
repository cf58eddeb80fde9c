// Package h2conn holds what the sidecar's HTTP/2 server (h2server) and
// client (h2client) share: the peer's settings, receive-window
// accounting, header blocks written as frames, header names both ways,
// and the socket writer whose every write has a deadline.
package h2conn

import (
	"net"
	"net/textproto"
	"strings"
	"time"

	"golang.org/x/net/http2"
)

// LowerName is a canonical header key as HTTP/2 sends it (lowercase); the
// common ones are not allocated again.
func LowerName(k string) string {
	if v, ok := commonLower[k]; ok {
		return v
	}
	return strings.ToLower(k)
}

var commonLower = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Accept-Ranges", "Access-Control-Allow-Origin",
		"Age", "Allow", "Authorization", "Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language",
		"Content-Length", "Content-Location", "Content-Range", "Content-Type", "Cookie", "Date", "Etag",
		"Expires", "Grpc-Accept-Encoding", "Grpc-Encoding", "Grpc-Message", "Grpc-Status", "Grpc-Status-Details-Bin",
		"Grpc-Timeout", "Last-Modified", "Link", "Location", "Retry-After", "Server", "Set-Cookie",
		"Strict-Transport-Security", "Te", "Trailer", "User-Agent", "Vary", "Via", "Www-Authenticate",
		"X-Envoy-Upstream-Service-Time", "X-Forwarded-For", "X-Forwarded-Proto", "X-Request-Id",
		"Traceparent", "Tracestate", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Sampled", "X-B3-Parentspanid",
		"X-Weft-Peer",
	} {
		m[k] = strings.ToLower(k)
	}
	return m
}()

// DeadlineWriter writes to a connection with a deadline of Timeout from
// the start of each write (those a bufio.Writer makes when full
// included): a peer that stops reading cannot hold a writer forever.
type DeadlineWriter struct {
	Conn    net.Conn
	Timeout time.Duration
}

func (w DeadlineWriter) Write(p []byte) (int, error) {
	_ = w.Conn.SetWriteDeadline(time.Now().Add(w.Timeout))
	return w.Conn.Write(p)
}

// MaxWindow is the largest flow-control window (2^31-1).
const MaxWindow = 1<<31 - 1

// Peer is what the other end's SETTINGS said; the zero value is not the
// protocol's defaults: start from DefaultPeer.
type Peer struct {
	// InitialWindow is each new stream's send window.
	InitialWindow int64
	// MaxFrame is the largest frame payload it takes.
	MaxFrame uint32
	// MaxStreams is SETTINGS_MAX_CONCURRENT_STREAMS.
	MaxStreams uint32
}

// DefaultPeer is a peer before its SETTINGS (RFC 9113 section 6.5.2),
// with maxStreams as the stream limit to assume.
func DefaultPeer(maxStreams uint32) Peer {
	return Peer{InitialWindow: 65535, MaxFrame: 16 << 10, MaxStreams: maxStreams}
}

// Apply takes in a SETTINGS frame (not an acknowledgement). A change of
// the initial window is passed to windowDelta for the streams open (which
// fails, with a connection error, where a window would overflow). table
// is the HPACK table size the peer set, when setTable.
func (p *Peer) Apply(f *http2.SettingsFrame, windowDelta func(int64) error) (table uint32, setTable bool, err error) {
	err = f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingMaxConcurrentStreams:
			p.MaxStreams = s.Val
		case http2.SettingInitialWindowSize:
			if err := windowDelta(int64(s.Val) - p.InitialWindow); err != nil {
				return err
			}
			p.InitialWindow = int64(s.Val)
		case http2.SettingMaxFrameSize:
			p.MaxFrame = s.Val
		case http2.SettingHeaderTableSize:
			table, setTable = s.Val, true
		}
		return nil
	})
	return table, setTable, err
}

// RecvWindow is a stream's receive window as its reader consumes it.
type RecvWindow struct {
	// Left is what the peer may still send.
	Left int64
	// Unacked is what was read and not yet credited back.
	Unacked int64
}

// Read counts n bytes read and returns the WINDOW_UPDATE increment to
// send now: once half of size is owed, not for every read.
func (w *RecvWindow) Read(n, size int64) int64 {
	w.Unacked += n
	if w.Unacked < size/2 {
		return 0
	}
	c := w.Unacked
	w.Unacked = 0
	w.Left += c
	return c
}

// WriteHeaderBlock writes an encoded header block as HEADERS and, when it
// is larger than maxFrame, CONTINUATION frames.
func WriteHeaderBlock(fr *http2.Framer, id uint32, block []byte, end bool, maxFrame int) error {
	first := block[:min(len(block), maxFrame)]
	block = block[len(first):]
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: end, EndHeaders: len(block) == 0}); err != nil {
		return err
	}
	for len(block) > 0 {
		frag := block[:min(len(block), maxFrame)]
		block = block[len(frag):]
		if err := fr.WriteContinuation(id, len(block) == 0, frag); err != nil {
			return err
		}
	}
	return nil
}

// KeyCache maps the lowercase field names a peer sends to canonical
// header keys, remembering up to 256 (peers send the same names on every
// request). Not safe for concurrent use.
type KeyCache map[string]string

// Canonical is name's header key.
func (c KeyCache) Canonical(name string) string {
	if k, ok := c[name]; ok {
		return k
	}
	k := textproto.CanonicalMIMEHeaderKey(name)
	if len(c) < 256 {
		c[name] = k
	}
	return k
}
