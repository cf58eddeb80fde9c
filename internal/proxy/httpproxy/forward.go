package httpproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"

	"weft.dev/weft/internal/proxy/accesslog"
	"weft.dev/weft/internal/proxy/h1wire"
	"weft.dev/weft/internal/proxy/upstream"
)

// forward sends a routed request to its cluster and relays the response.
// The upstream request is a shallow copy of the downstream one with its
// own URL; its header map is the downstream request's, changed in place
// (hop-by-hop fields out, the route's mutations in), since nothing reads
// the downstream headers as they came once the request is on its way,
// except a live tap, which gets a copy. A response cut while its body is
// relayed panics with http.ErrAbortHandler, which both servers (HTTP/1.x
// and HTTP/2) turn into a reset of the downstream stream or connection.
func (p *Proxy) forward(sw *statusWriter, r *http.Request, rs *reqState) {
	h2 := rs.cluster.UseHTTP2(rs.h2Down, rs.grpc, rs.upgrade)
	if h2 {
		// The HTTP/2 transport reports 1xx responses through a trace
		// (the HTTP/1.1 pool asks the context for
		// upstream.Informational). The request state answers for it
		// (Value), so that the upstream context stays the request state,
		// which contexts derived from it (per-try timeouts) follow
		// without a goroutine each.
		rs.h2Trace = httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{Got1xxResponse: rs.got1xxMIME})
	}
	out := r.WithContext(rs)
	u := *r.URL
	out.URL = &u
	if r.ContentLength == 0 {
		out.Body = nil
	}
	out.Close = false
	if p.tap.Active() {
		out.Header = r.Header.Clone()
	}
	if i := strings.IndexFunc(out.URL.RawQuery, func(c rune) bool { return c <= ' ' || c == 0x7f }); i >= 0 {
		// HTTP/2 lets a :path query hold a space, which an HTTP/1.1
		// request line cannot (its path is escaped, its query is not).
		p.errorReply(sw, rs, &flagError{accesslog.FlagDownstreamProtocolError, http.StatusBadRequest,
			fmt.Sprintf("request query has a space or control character (byte %#02x at %d): percent-encode it", out.URL.RawQuery[i], i)})
		return
	}
	h := out.Header
	upType := upgradeType(h)
	if upType != "" && !isPrint(upType) {
		p.errorReply(sw, rs, &flagError{accesslog.FlagDownstreamProtocolError, http.StatusBadRequest, fmt.Sprintf("client tried to switch to invalid protocol %q", upType)})
		return
	}
	te := httpguts.HeaderValuesContainsToken(h["Te"], "trailers")
	// Forwarding headers from the client are not passed on either: the
	// mesh sets its own (rewrite). But a request that a mesh peer (a
	// gateway or a client's sidecar, verified by mTLS) sends to this
	// sidecar's inbound keeps the scheme that peer recorded, as Istio's
	// sidecars keep it: an app behind a gateway that terminated HTTPS
	// sees https.
	var xfp []string
	if rs.inbound && rs.target.DownstreamPrincipal != "" {
		xfp = h["X-Forwarded-Proto"]
	}
	removeHopByHop(h, true)
	if xfp != nil {
		h["X-Forwarded-Proto"] = xfp
	}
	if te {
		h["Te"] = []string{"trailers"}
	}
	if upType != "" {
		h["Connection"] = []string{"Upgrade"}
		h["Upgrade"] = []string{upType}
	}
	rewrite(rs, r, out)
	if _, ok := h["User-Agent"]; !ok && h2 {
		h["User-Agent"] = []string{""} // no Go default User-Agent upstream
	}

	if a := rs.action; a != nil && len(a.Mirrors) > 0 && !rs.upgrade {
		if ms := drawMirrors(a); len(ms) > 0 {
			rs.mirrored = true
			// Sent when the request's own round trip and response are
			// over, with the body as the attempts read it.
			defer p.sendMirrors(rs, out, ms)
		}
	}
	resp, err := p.roundTrip(rs, out, h2)
	rs.mu.Lock()
	rs.rtDone = true
	rs.mu.Unlock()
	if err != nil {
		p.errorReply(sw, rs, err)
		return
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		modifyResponse(rs, resp)
		p.switchProtocols(sw, rs, out, resp)
		return
	}
	removeHopByHop(resp.Header, false)
	modifyResponse(rs, resp)
	var dh http.Header
	if ad, ok := sw.ResponseWriter.(headerAdopter); ok && ad.AdoptHeader(resp.Header) {
		dh = resp.Header
	} else {
		dh = sw.Header()
		copyHeader(dh, resp.Header)
	}
	// Trailers the upstream announced are announced downstream.
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		dh["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	sw.WriteHeader(resp.StatusCode)
	// Streams (no declared length, server-sent events) go out as they
	// come; a response of known length is flushed at its end.
	flush := resp.ContentLength == -1 || isEventStream(dh)
	if err := copyBody(sw, resp.Body, flush); err != nil {
		_ = resp.Body.Close()
		panic(http.ErrAbortHandler)
	}
	_ = resp.Body.Close() // fills resp.Trailer
	if len(resp.Trailer) > 0 && rs.down.ProtoMajor == 1 {
		// Trailers need a chunked response: flushing now keeps a short
		// body from being sent with a Content-Length. (HTTP/2 frames
		// them whatever was flushed: the response, its body and its
		// trailers then leave in one write.)
		sw.Flush()
	}
	if len(resp.Trailer) == announced {
		copyHeader(dh, resp.Trailer)
		return
	}
	for k, vs := range resp.Trailer {
		k = http.TrailerPrefix + k
		dh[k] = append(dh[k], vs...)
	}
}

// headerAdopter is a ResponseWriter that can take the upstream response's
// header map as its own instead of a copy (the HTTP/1.x server's); false
// when it already has headers.
type headerAdopter interface {
	AdoptHeader(http.Header) bool
}

// Value makes the request state the upstream request's context: the
// HTTP/1.1 pool finds the 1xx relay under upstream.InformationalKey, the
// HTTP/2 transport its trace in h2Trace.
func (rs *reqState) Value(key any) any {
	if _, ok := key.(upstream.InformationalKey); ok {
		return upstream.Informational(rs)
	}
	if rs.h2Trace != nil {
		if v := rs.h2Trace.Value(key); v != nil {
			return v
		}
	}
	return rs.parent.Value(key)
}

// Informational relays an informational (1xx) response to the client
// while the round trip runs.
func (rs *reqState) Informational(code int, h http.Header) error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.rtDone {
		return nil
	}
	dh := rs.sw.Header()
	copyHeader(dh, h)
	rs.sw.WriteHeader(code)
	clear(dh) // the final response starts with its own headers
	return nil
}

func (rs *reqState) got1xxMIME(code int, h textproto.MIMEHeader) error {
	return rs.Informational(code, http.Header(h))
}

// copyBody relays a response body; flush sends every read at once,
// unless the rest of the body has arrived already (the HTTP/2 pool's
// bodies say so: h2client.Complete), so that reading it will not wait and
// the end of the response goes in the same write. An error is the
// upstream's (read) or the client's (write).
func copyBody(sw *statusWriter, body io.Reader, flush bool) error {
	c, _ := body.(interface{ Complete() bool })
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, err := sw.Write(buf[:n]); err != nil {
				return err
			}
			if flush && (c == nil || !c.Complete()) {
				if err := sw.FlushError(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// switchProtocols relays a 101 response and then the bytes of the
// upgraded connection both ways until either side ends. A 101 that breaks
// the protocol (to a request that asked for no upgrade, or to another
// protocol than the one asked for) is answered with 502 and its upstream
// connection closed.
func (p *Proxy) switchProtocols(sw *statusWriter, rs *reqState, out *http.Request, resp *http.Response) {
	reqType, respType := upgradeType(out.Header), upgradeType(resp.Header)
	fail := func(msg string) {
		_ = resp.Body.Close()
		p.errorReply(sw, rs, &flagError{accesslog.FlagUpstreamProtocolError, http.StatusBadGateway, msg})
	}
	if reqType == "" {
		// RFC 9110 section 15.2.2: a server must not switch to a
		// protocol the client did not ask for. Hijacking the client's
		// connection here would tunnel its later requests past routing
		// and policy. (The HTTP/1.1 pool has already closed the
		// connection and gives such a 101 no body.)
		fail("upstream switched protocols without an Upgrade request")
		return
	}
	if !isPrint(respType) {
		fail(fmt.Sprintf("upstream tried to switch to invalid protocol %q", respType))
		return
	}
	if !h1wire.ASCIIEqualFold(reqType, respType) {
		fail(fmt.Sprintf("upstream tried to switch protocol %q when %q was requested", respType, reqType))
		return
	}
	back, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		fail("internal error: 101 response with a body that cannot be written")
		return
	}
	conn, brw, err := sw.Hijack()
	if err != nil {
		fail(fmt.Sprintf("cannot switch protocols on this connection: %v", err))
		return
	}
	defer conn.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		// Cancellation (shutdown) ends the upgraded connection too.
		select {
		case <-rs.Done():
		case <-stop:
		}
		_ = back.Close()
	}()
	sw.code = http.StatusSwitchingProtocols
	dh := sw.Header()
	copyHeader(dh, resp.Header)
	resp.Header, resp.Body = dh, nil // Write sends the status line and headers only
	if err := resp.Write(brw); err != nil {
		return
	}
	if err := brw.Flush(); err != nil {
		return
	}
	errc := make(chan error, 2)
	go func() {
		// What the server read past the request is the upgraded
		// protocol's first bytes.
		_, err := io.Copy(back, brw.Reader)
		if err == nil {
			// The client finished sending: tell the upstream, or end
			// the connection when it cannot be half-closed.
			err = errCopyDone
			if cw, ok := back.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
				err = nil
			}
		}
		errc <- err
	}()
	go func() {
		_, err := io.Copy(conn, back)
		if err == nil {
			if cw, ok := conn.(interface{ CloseWrite() error }); ok {
				err = cw.CloseWrite()
			} else {
				err = errCopyDone
			}
		}
		errc <- err
	}()
	// Until both directions ended, or one failed.
	if err := <-errc; err == nil {
		<-errc
	}
}

var errCopyDone = errors.New("upgraded connection copy complete")

// upgradeType is the protocol a request or response switches to, "" when
// none.
func upgradeType(h http.Header) string {
	if !httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		return ""
	}
	if v := h["Upgrade"]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// removeHopByHop drops the header fields that describe one connection
// only (RFC 9110 section 7.6.1): those the Connection field names and the
// standard ones; with forwarding, also the client's forwarding fields. In
// the few fields most requests and responses carry, one pass over the
// header costs less than a lookup for each of the 9 (or 13) names; past
// onePassFields the lookups cost less, so larger headers take those.
func removeHopByHop(h http.Header, forwarding bool) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				delete(h, http.CanonicalHeaderKey(sf))
			}
		}
	}
	if len(h) > onePassFields {
		dropByName(h, forwarding)
	} else {
		dropByWalk(h, forwarding)
	}
}

// dropByName deletes the standard hop-by-hop (and forwarding) fields by
// name.
func dropByName(h http.Header, forwarding bool) {
	for _, k := range hopByHopFields {
		delete(h, k)
	}
	if forwarding {
		for _, k := range forwardingFields {
			delete(h, k)
		}
	}
}

// dropByWalk deletes the same fields in one pass over h.
func dropByWalk(h http.Header, forwarding bool) {
	for k := range h {
		if isHopByHop(k) || forwarding && isForwarding(k) {
			delete(h, k)
		}
	}
}

// onePassFields is the header size up to which removeHopByHop walks the
// header rather than looking each name up (BenchmarkDropHopByHop compares
// the two at several sizes).
const onePassFields = 6

// hopByHopFields and forwardingFields are the names isHopByHop and
// isForwarding match, for headers too large to walk.
var (
	hopByHopFields = [...]string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}
	forwardingFields = [...]string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}
)

// isHopByHop reports whether k (canonical) is one of the standard
// hop-by-hop fields.
func isHopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// isForwarding reports whether k (canonical) is a field in which proxies
// record the request's path, which the mesh sets itself.
func isForwarding(k string) bool {
	switch k {
	case "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
		return true
	}
	return false
}

func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		dst[k] = append(dst[k], vs...)
	}
}

func isEventStream(h http.Header) bool {
	v := h["Content-Type"]
	if len(v) == 0 {
		return false
	}
	ct, _, _ := strings.Cut(v[0], ";")
	return strings.EqualFold(strings.TrimSpace(ct), "text/event-stream")
}

func isPrint(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
