package listener

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"weft.dev/weft/internal/proxy/dataplane"
	"weft.dev/weft/internal/proxy/httpproxy"
	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/router"
	"weft.dev/weft/internal/xdsmeta"
)

// Transparent capture. A listener marked Transparent receives connections
// that iptables redirected to it (OUTPUT REDIRECT to the outbound port,
// PREROUTING REDIRECT to the inbound port). The destination the client
// meant is read back with SO_ORIGINAL_DST and selects the filter chain:
//
//   - a chain declared for it (port, VIP in prefix_ranges): its HTTP
//     connection manager makes the connection HTTP, routed by Host; its
//     tcp_proxy makes it TCP;
//   - no chain: the first bytes decide, waiting at most the listener's
//     DetectTimeout. An HTTP/1.x request line or the h2c preface is served
//     as HTTP with the route configuration named for the port, if there is
//     one; a TLS ClientHello goes to the TCP chain of its SNI, if any;
//     anything else, silence included (server-first protocols), and HTTP
//     without routes pass through as TCP.
//
// A listener whose chains match on transport protocol (an inbound
// listener under capture, with mTLS chains) is served as any such
// listener (mtls.go) for the ports its chains declare: TLS or plaintext
// is detected, TLS terminated, and the verified client's SPIFFE ID goes
// with the connection to RBAC, metrics and access logs; other ports are
// detected and passed through as below.
//
// Passing through means the listener's default filter chain, which the
// control plane points at an ORIGINAL_DST cluster (PassthroughCluster)
// when unknown destinations are allowed; without one such connections
// are closed. An HTTP request whose Host matches no virtual host passes
// through the same way. The proxy's own upstream connections must not be
// redirected again: the iptables rules exclude the proxy's uid.

// maxDetectLine bounds how much of a request line detection reads.
const maxDetectLine = 4096

// detectLineTimeout bounds the rest of the detection once the first byte
// has arrived; a request line still incomplete then is judged by its
// first token.
const detectLineTimeout = time.Second

// serveCaptured takes over a connection accepted on a transparent listener
// if it was redirected. It returns false for a connection made to the
// listener's own address, which is then served as on any listener.
func (m *Manager) serveCaptured(b *bound, c net.Conn, snap *dataplane.Snapshot, l *dataplane.Listener) bool {
	dst, err := originalDst(c)
	if err != nil {
		m.log.Debug("no original destination", "listener", b.name, "error", err)
		return false
	}
	if la, ok := c.LocalAddr().(*net.TCPAddr); ok && la.AddrPort() == dst {
		return false
	}
	if !m.trackRaw(c) {
		return true
	}
	go func() {
		handedOff := false
		defer func() {
			if !handedOff {
				m.untrackRaw(c)
			}
		}()
		handedOff = m.serveCapturedConn(b, c, snap, l, dst)
	}()
	return true
}

// serveCapturedConn serves one captured connection; it reports whether the
// connection was handed to the HTTP server, which tracks it from then on.
func (m *Manager) serveCapturedConn(b *bound, c net.Conn, snap *dataplane.Snapshot, l *dataplane.Listener, dst netip.AddrPort) bool {
	start := time.Now()
	target := dst.String()
	port := uint32(dst.Port())
	toHTTP := func(hc net.Conn) bool {
		m.untrackRaw(c)
		m.serveHTTPConn(&downConn{Conn: hc, info: &connInfo{listener: b.name, port: port, origDst: target}})
		return true
	}
	if l.Config.MatchesTransport() && declaresPort(l, port) {
		// An inbound listener under capture (mTLS chains): TLS is told
		// from plaintext and terminated as on an inbound listener of
		// its own, so the verified peer reaches RBAC, metrics and logs.
		return m.serveTransportConn(b, c, snap, l, port, target)
	}
	if ch := l.MatchDeclared(port, dst.Addr().String()); ch != nil {
		if ch.Config.TCP != nil {
			m.proxyTCP(c, snap, ch, target, start)
			return false
		}
		return toHTTP(c)
	}
	kind, sni, br := detect(c, bufio.NewReader(c), l.Config.DetectTimeout)
	bc := &bufConn{Conn: c, r: br}
	switch kind {
	case detectedClosed:
		_ = c.Close()
		return false
	case detectedHTTP:
		if snap.Routes[xdsmeta.OutboundRouteName(port)] != nil {
			return toHTTP(bc)
		}
	case detectedTLS:
		if sni != "" {
			if ch := l.MatchDeclared(port, sni); ch != nil && ch.Config.TCP != nil {
				m.proxyTCP(bc, snap, ch, target, start)
				return false
			}
		}
	}
	m.passThrough(bc, snap, l, target, start)
	return false
}

// passThrough sends a connection to its original destination through the
// listener's default TCP chain, or closes it when there is none.
func (m *Manager) passThrough(c net.Conn, snap *dataplane.Snapshot, l *dataplane.Listener, target string, start time.Time) {
	if l.Default == nil || l.Default.Config.TCP == nil {
		m.log.Debug("captured connection to an unknown destination closed: the listener has no default TCP chain", "listener", l.Config.Name, "target", target)
		m.tcpToCluster(c, snap, "", nil, nil, target, start)
		return
	}
	m.proxyTCP(c, snap, l.Default, target, start)
}

// serveCapturedHTTP routes a request on a captured connection: by Host in
// the route table of the chain declared for the destination port (or the
// route configuration named for the port), passing requests for unknown
// hosts through to the original destination.
func (m *Manager) serveCapturedHTTP(w http.ResponseWriter, r *http.Request, snap *dataplane.Snapshot, l *dataplane.Listener, info *connInfo) {
	authority := r.Host
	if authority == "" {
		authority = info.origDst
	}
	var routes *router.Table
	var hcm *proxyconfig.HTTPConnectionManager
	var ch *dataplane.Chain
	if info.transport != "" {
		ch = matchTransport(l, info.port, info.transport, info.sni)
		if m.misdirected(w, r, l, info.port, ch, info, authority) {
			return
		}
	} else {
		ch = l.MatchDeclared(info.port, hostOf(info.origDst))
	}
	declared := ch != nil && ch.Config.HTTP != nil
	if declared {
		routes, hcm = ch.Routes, ch.Config.HTTP
	} else {
		routes = snap.Routes[xdsmeta.OutboundRouteName(info.port)]
	}
	// Passed through: a host no route takes, or a port without routes,
	// but not a declared port whose routes have not arrived yet (its
	// requests would skip the mesh's routing and mTLS).
	if routes == nil && !declared || routes != nil && routes.VirtualHost(authority) == nil {
		if pt := m.passthroughRoutes(snap, l); pt != nil {
			routes, hcm = pt, passthroughSettings(l, ch, info.listener)
		}
	}
	m.opts.Proxy.Serve(w, r, &httpproxy.Target{Snapshot: snap, Routes: routes, Authority: authority, OriginalDst: info.origDst, HTTP: hcm, DownstreamPrincipal: info.peer,
		DownstreamTLS: info.tlsID != "", DownstreamHTTPS: terminatedHTTPS(info, ch)})
}

// declaresPort reports whether a chain of l (the default chain aside)
// matches destination port, with or without a transport protocol.
func declaresPort(l *dataplane.Listener, port uint32) bool {
	for _, ch := range l.Chains {
		if p := ch.Config.Match.DestinationPort; p == 0 || p == port {
			return true
		}
	}
	return false
}

// passesThrough reports whether ch is a TCP chain to an ORIGINAL_DST
// cluster: one that sends connections where they were going.
func passesThrough(snap *dataplane.Snapshot, ch *dataplane.Chain) bool {
	if ch == nil || ch.Config.TCP == nil {
		return false
	}
	cl := snap.Clusters[ch.Config.TCP.Cluster]
	return cl != nil && cl.Config().Type == proxyconfig.DiscoveryOriginalDst
}

// passthroughRoutes is a route table sending every request to the
// ORIGINAL_DST cluster of the listener's default TCP chain, or nil when
// the listener has none.
func (m *Manager) passthroughRoutes(snap *dataplane.Snapshot, l *dataplane.Listener) *router.Table {
	if !passesThrough(snap, l.Default) {
		return nil
	}
	name := l.Default.Config.TCP.Cluster
	if t, ok := m.passthrough.Load(name); ok {
		return t.(*router.Table)
	}
	t := router.New(&proxyconfig.RouteConfig{Name: "passthrough", VirtualHosts: []*proxyconfig.VirtualHost{{
		Name: name, Domains: []string{"*"},
		Routes: []*proxyconfig.Route{{Name: "passthrough", Match: proxyconfig.RouteMatch{Kind: proxyconfig.PathPrefix, Path: "/"},
			Action: &proxyconfig.RouteAction{Cluster: name}}},
	}}})
	v, _ := m.passthrough.LoadOrStore(name, t)
	return v.(*router.Table)
}

type detected int

const (
	detectedClosed detected = iota
	detectedHTTP
	detectedTLS
	detectedOther  // client-first bytes of another protocol
	detectedSilent // nothing within the timeout: a server-first protocol
)

// detect peeks at a connection's first bytes, read through br. The first
// byte must come within timeout; the rest of an HTTP request line or TLS
// record within detectLineTimeout. For TLS it returns the ClientHello's
// SNI when the first record holds it. It returns the reader to read the
// connection through from then on: br, or for a ClientHello larger than
// br's buffer a larger reader over it.
func detect(c net.Conn, br *bufio.Reader, timeout time.Duration) (detected, string, *bufio.Reader) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	first, err := br.Peek(1)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return detectedSilent, "", br
	case err != nil:
		return detectedClosed, "", br
	}
	_ = c.SetReadDeadline(time.Now().Add(detectLineTimeout))
	if first[0] == 0x16 { // TLS handshake record
		sni, r := peekSNI(br)
		return detectedTLS, sni, r
	}
	kind := detectHTTP(br)
	return kind, "", br
}

// detectHTTP tells an HTTP/1.x request line (or the h2c preface) from
// other bytes that start with an upper-case letter.
func detectHTTP(br *bufio.Reader) detected {
	first, _ := br.Peek(1)
	if len(first) == 0 || first[0] < 'A' || first[0] > 'Z' {
		return detectedOther
	}
	// Read up to the end of the request line: "METHOD SP target SP
	// HTTP/1.x" or the h2c preface's "PRI * HTTP/2.0".
	for n := 1; n < maxDetectLine; n++ {
		b, err := br.Peek(n)
		if err != nil {
			if len(b) > 0 && looksLikeMethod(b) {
				return detectedHTTP
			}
			return detectedOther
		}
		if b[n-1] != '\n' {
			continue
		}
		line := bytes.TrimRight(b, "\r\n")
		if bytes.HasSuffix(line, []byte(" HTTP/1.1")) || bytes.HasSuffix(line, []byte(" HTTP/1.0")) ||
			bytes.Equal(line, []byte("PRI * HTTP/2.0")) {
			return detectedHTTP
		}
		return detectedOther
	}
	return detectedOther
}

// looksLikeMethod reports whether b starts with an upper-case token and a
// space, as a request line cut short does.
func looksLikeMethod(b []byte) bool {
	for i, c := range b {
		if c == ' ' {
			return i > 0
		}
		if c < 'A' || c > 'Z' || i >= 16 {
			return false
		}
	}
	return false
}

// maxTLSRecord is the largest TLS record payload (2^14 plus the expansion
// TLS allows).
const maxTLSRecord = 1<<14 + 2048

// peekSNI returns the server name of the TLS ClientHello in the first
// record, or "" when it has none or is malformed, and the reader to go
// on with: br, or a larger one over it when the record does not fit
// br's buffer (large hellos: post-quantum key shares, many extensions).
func peekSNI(br *bufio.Reader) (string, *bufio.Reader) {
	hdr, err := br.Peek(5)
	if err != nil {
		return "", br
	}
	n := min(int(hdr[3])<<8|int(hdr[4]), maxTLSRecord)
	if n > br.Size()-5 {
		br = bufio.NewReaderSize(br, 5+n)
	}
	rec, err := br.Peek(5 + n)
	if err != nil {
		return "", br
	}
	return parseClientHelloSNI(rec[5:]), br
}

// parseClientHelloSNI extracts the host name of the server_name extension
// from a handshake message holding a ClientHello.
func parseClientHelloSNI(b []byte) string {
	r := reader(b)
	typ, ok := r.u8()
	if !ok || typ != 1 { // client_hello
		return ""
	}
	if _, ok := r.skip(3 + 2 + 32); !ok { // length, version, random
		return ""
	}
	if !r.vec(1) || !r.vec(2) || !r.vec(1) { // session id, cipher suites, compression
		return ""
	}
	exts, ok := r.sub(2)
	if !ok {
		return ""
	}
	for len(exts) > 0 {
		typ, ok := exts.skip(2)
		if !ok {
			return ""
		}
		ext, ok := exts.sub(2)
		if !ok {
			return ""
		}
		if typ[0] != 0 || typ[1] != 0 { // server_name is 0
			continue
		}
		list, ok := ext.sub(2)
		if !ok {
			return ""
		}
		for len(list) > 0 {
			nameType, ok := list.u8()
			if !ok {
				return ""
			}
			name, ok := list.sub(2)
			if !ok {
				return ""
			}
			if nameType == 0 { // host_name
				return string(name)
			}
		}
		return ""
	}
	return ""
}

// reader is a cursor over TLS wire data.
type reader []byte

func (r *reader) u8() (byte, bool) {
	if len(*r) < 1 {
		return 0, false
	}
	v := (*r)[0]
	*r = (*r)[1:]
	return v, true
}

func (r *reader) skip(n int) ([]byte, bool) {
	if len(*r) < n {
		return nil, false
	}
	v := (*r)[:n]
	*r = (*r)[n:]
	return v, true
}

// sub reads a vector with a size-byte length prefix.
func (r *reader) sub(size int) (reader, bool) {
	l, ok := r.skip(size)
	if !ok {
		return nil, false
	}
	n := 0
	for _, c := range l {
		n = n<<8 | int(c)
	}
	v, ok := r.skip(n)
	return v, ok
}

// vec skips a vector with a size-byte length prefix.
func (r *reader) vec(size int) bool {
	_, ok := r.sub(size)
	return ok
}
