// Package listener binds the sockets LDS asks for and serves their
// connections: HTTP/1.x by the listener's own server (h1server.go), h2c
// through one shared http.Server, the outbound listener's HTTP proxy mode
// (absolute-form requests and CONNECT tunnels, with protocol sniffing
// inside tunnels), and opaque TCP
// proxying with half-close. Each connection or request reads the current
// snapshot once, so config swaps never disturb traffic in flight.
package listener

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"weft.dev/weft/internal/proxy/accesslog"
	"weft.dev/weft/internal/proxy/dataplane"
	"weft.dev/weft/internal/proxy/h2server"
	"weft.dev/weft/internal/proxy/httpproxy"
	"weft.dev/weft/internal/proxy/mtls"
	"weft.dev/weft/internal/proxy/peermeta"
	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/proxymetrics"
	"weft.dev/weft/internal/proxy/readwait"
	"weft.dev/weft/internal/proxy/tap"
	"weft.dev/weft/internal/xdsmeta"
)

// Options configure a Manager.
type Options struct {
	// Logger receives listener logs.
	Logger *slog.Logger
	// Snapshots holds the current runtime config.
	Snapshots *dataplane.Holder
	// Proxy serves HTTP requests.
	Proxy *httpproxy.Proxy
	// AccessLog, when set (--access-log), receives every TCP connection's
	// entry whatever the config says; nil leaves logging to the config.
	AccessLog *accesslog.Logger
	// AccessLogs are the loggers the config's tcp_proxy access_log sinks
	// name (and, for opaque bytes on an HTTP chain, its HTTP connection
	// manager's); nil: none.
	AccessLogs *accesslog.Files
	// Metrics records connection metrics; nil disables them.
	Metrics *proxymetrics.Metrics
	// SniffTimeout bounds the wait for a tunnel's first bytes (default 30s).
	SniffTimeout time.Duration
	// Tap receives closed TCP connections while someone is tapping; nil
	// disables it.
	Tap *tap.Hub
	// Identity provides the certificate and trust bundle of chains that
	// terminate mesh mTLS (SDS "default" and "ROOTCA"); nil when the
	// proxy has none, and such chains then refuse connections.
	Identity mtls.Identity
	// Workload is the sidecar's own workload, which it tells the peer
	// sidecar on TCP connections that negotiate the peer exchange
	// (peerexchange.go); zero: an unknown peer to the other end.
	Workload peermeta.Workload
}

// Manager owns the bound listeners and the connections they accepted.
type Manager struct {
	opts Options
	log  *slog.Logger
	// handler serves every HTTP request: serveHTTP (tests swap it).
	handler http.Handler

	mu       sync.Mutex
	bound    map[string]*bound
	draining bool

	rawMu sync.Mutex
	raw   map[net.Conn]struct{} // TCP proxy, sniffing and HTTP/1.x connections
	rawWG sync.WaitGroup

	// HTTP/1.x connections (h1server.go) and HTTP/2 connections
	// (serveH2); nil once shut down.
	h1Mu    sync.Mutex
	h1Conns map[*h1Conn]struct{}
	h2Conns map[*h2server.Conn]struct{}
	reaper  *time.Timer
	// sweeping is set while the watch sweep (h1watch.go) is scheduled;
	// sweepTimer is its timer, reset by whoever set sweeping.
	sweeping   atomic.Bool
	sweepTimer *time.Timer
	drain      atomic.Bool // keep-alives off: set by StopAccepting

	passthrough sync.Map // cluster name -> *router.Table (transparent.go)
	tlsConfigs  serverConfigs
	// peerFrame is the peer metadata frame this sidecar writes on TCP
	// connections that negotiate the exchange, encoded once.
	peerFrame []byte
}

type bound struct {
	name   string
	config string // configured address
	ln     net.Listener
	port   uint32
	done   chan struct{}
}

// connInfo is attached to every downstream connection.
type connInfo struct {
	listener  string
	proxyMode bool   // HTTP proxy mode: absolute-form and CONNECT
	tunnel    string // CONNECT target when the conn is a tunnel
	port      uint32 // local port the connection arrived on (original port when captured)
	origDst   string // original destination of a captured connection
	// transport is the transport protocol of a connection on a listener
	// that matches on it ("tls", "raw_buffer"), "" elsewhere (mtls.go).
	transport string
	// sni is the server name of a TLS connection's ClientHello ("" for
	// none or plaintext), which picked its chain (mtls.go); tlsID is that
	// chain's TLS settings (DownstreamTLS.ID) when this proxy terminated
	// the connection's TLS.
	sni, tlsID string
	// peer is the verified SPIFFE ID of an mTLS client, "" otherwise.
	peer string
}

type connInfoKey struct{}

// TrackHijacked registers a connection taken over by an upgrade so that
// Shutdown waits for it and closes it at the drain deadline. Pass it as
// httpproxy.Options.TrackHijacked.
func (m *Manager) TrackHijacked(c net.Conn) func() {
	if !m.trackRaw(c) {
		return func() {}
	}
	// The HTTP server stopped counting it at the hijack; trackRaw counts
	// it again until it is done.
	var once sync.Once
	return func() { once.Do(func() { m.untrackRaw(c) }) }
}

// New returns a Manager; its HTTP server starts serving at once.
func New(opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.SniffTimeout <= 0 {
		opts.SniffTimeout = 30 * time.Second
	}
	m := &Manager{opts: opts, log: opts.Logger, bound: map[string]*bound{}, raw: map[net.Conn]struct{}{}, h1Conns: map[*h1Conn]struct{}{}, h2Conns: map[*h2server.Conn]struct{}{},
		peerFrame: peermeta.AppendFrame(nil, opts.Workload)}
	m.sweepTimer = time.AfterFunc(time.Hour, m.sweep)
	m.sweepTimer.Stop() // armed by sweepSoon (h1watch.go)
	m.handler = http.HandlerFunc(m.serveHTTP)
	return m
}

// Apply binds listeners that are new or whose address changed and closes
// those no longer configured. Connections already accepted are not
// touched. It returns the errors of listeners that could not be bound.
func (m *Manager) Apply(s *dataplane.Snapshot) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.draining {
		return nil
	}
	var errs []error
	for name, l := range s.Listeners {
		if b, ok := m.bound[name]; ok {
			if b.config == l.Config.Address {
				continue
			}
			m.closeBound(b)
			delete(m.bound, name)
		}
		ln, err := net.Listen("tcp", l.Config.Address)
		if err != nil {
			errs = append(errs, fmt.Errorf("binding listener %q to %s: %w", name, l.Config.Address, err))
			continue
		}
		port := uint32(ln.Addr().(*net.TCPAddr).Port)
		b := &bound{name: name, config: l.Config.Address, ln: ln, port: port, done: make(chan struct{})}
		m.bound[name] = b
		go m.accept(b)
		m.log.Info("listener bound", "listener", name, "addr", ln.Addr().String())
	}
	for name, b := range m.bound {
		if _, ok := s.Listeners[name]; !ok {
			m.closeBound(b)
			delete(m.bound, name)
			m.log.Info("listener removed", "listener", name)
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) closeBound(b *bound) {
	_ = b.ln.Close()
	<-b.done
}

// Addrs returns the bound address of each listener by name.
func (m *Manager) Addrs() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string, len(m.bound))
	for n, b := range m.bound {
		out[n] = b.ln.Addr().String()
	}
	return out
}

// StopAccepting closes every listening socket and turns keep-alives off,
// so connections end after their current request. It is the start of a
// drain.
func (m *Manager) StopAccepting() {
	m.mu.Lock()
	m.draining = true
	for name, b := range m.bound {
		m.closeBound(b)
		delete(m.bound, name)
	}
	m.mu.Unlock()
	m.drain.Store(true)
	m.closeIdleH1()
	m.shutdownH2()
}

// drainingNow says whether connections must end after their current
// request.
func (m *Manager) drainingNow() bool { return m.drain.Load() }

// Shutdown stops accepting, lets requests and tunnels in flight finish
// until ctx is done, then closes whatever is left.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.StopAccepting()
	var err error
	done := make(chan struct{})
	go func() { m.rawWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, ctx.Err())
		m.cancelH1() // requests still waiting on an upstream give up
	}
	m.h1Mu.Lock()
	m.h1Conns = nil
	m.h2Conns = nil
	if m.reaper != nil {
		m.reaper.Stop()
	}
	m.h1Mu.Unlock()
	m.rawMu.Lock()
	for c := range m.raw {
		_ = c.Close()
	}
	m.raw = nil
	m.rawMu.Unlock()
	<-done
	return err
}

func (m *Manager) accept(b *bound) {
	defer close(b.done)
	var delay time.Duration
	for {
		c, err := b.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary errors (EMFILE): back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			m.log.Warn("accept failed", "listener", b.name, "error", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		m.dispatch(b, readwait.Wrap(c))
	}
}

// dispatch decides how a new connection is served: proxy mode and HTTP
// chains go to the HTTP server, TCP chains to the TCP proxy.
func (m *Manager) dispatch(b *bound, c net.Conn) {
	snap := m.opts.Snapshots.Load()
	var l *dataplane.Listener
	if snap != nil {
		l = snap.Listeners[b.name]
	}
	if l == nil {
		_ = c.Close()
		return
	}
	if l.Config.Transparent && m.serveCaptured(b, c, snap, l) {
		return
	}
	info := &connInfo{listener: b.name, port: b.port, proxyMode: b.name == xdsmeta.ListenerOutbound}
	if !info.proxyMode && l.Config.MatchesTransport() {
		m.serveTransport(b, c, snap, l)
		return
	}
	if !info.proxyMode {
		if ch := l.MatchChain(b.port, ""); ch != nil && ch.Config.TCP != nil {
			if !m.trackRaw(c) {
				return
			}
			go func() {
				defer m.untrackRaw(c)
				m.proxyTCP(c, snap, ch, "", time.Now())
			}()
			return
		}
	}
	m.serveHTTPConn(&downConn{Conn: c, info: info})
}

func (m *Manager) trackRaw(c net.Conn) bool {
	m.rawMu.Lock()
	defer m.rawMu.Unlock()
	if m.raw == nil {
		_ = c.Close()
		return false
	}
	m.raw[c] = struct{}{}
	m.rawWG.Add(1)
	m.opts.Metrics.ConnOpened()
	return true
}

func (m *Manager) untrackRaw(c net.Conn) {
	m.rawMu.Lock()
	delete(m.raw, c)
	m.rawMu.Unlock()
	m.opts.Metrics.ConnClosed()
	m.rawWG.Done()
}

// serveHTTP is the handler of every HTTP request on every listener.
func (m *Manager) serveHTTP(w http.ResponseWriter, r *http.Request) {
	info, _ := r.Context().Value(connInfoKey{}).(*connInfo)
	if info == nil {
		http.Error(w, "connection without listener", http.StatusInternalServerError)
		return
	}
	snap := m.opts.Snapshots.Load()
	l := snap.Listeners[info.listener]
	if l == nil {
		m.opts.Proxy.LocalReply(w, r, r.Host, http.StatusNotFound, accesslog.FlagNoRoute,
			fmt.Sprintf("listener %q is no longer configured", info.listener))
		return
	}
	if info.origDst != "" {
		m.serveCapturedHTTP(w, r, snap, l, info)
		return
	}
	if r.Method == http.MethodConnect {
		m.serveConnect(w, r, snap, l, info)
		return
	}
	if r.ProtoMajor == 1 && r.Body != nil && r.Body != http.NoBody {
		// Let the request body stream while the response is written
		// (upstreams that answer before reading everything).
		_ = http.NewResponseController(w).EnableFullDuplex()
	}
	authority := r.Host
	port := info.port
	origDst := ""
	switch {
	case info.tunnel != "":
		authority = info.tunnel
		port = portOf(info.tunnel, 80)
		origDst = info.tunnel
	case info.proxyMode:
		if r.URL.IsAbs() && r.URL.Host != "" {
			authority = r.URL.Host
		}
		port = portOf(authority, 80)
		origDst = withPort(authority, port)
	}
	var ch *dataplane.Chain
	if info.transport != "" {
		ch = matchTransport(l, port, info.transport, info.sni)
	} else if info.proxyMode {
		// Not the default chain: on the outbound listener it is for
		// captured connections to destinations no chain declares, and
		// a proxied request names its destination.
		ch = l.MatchDeclared(port, hostOf(authority))
	} else {
		ch = l.MatchChain(port, hostOf(authority))
	}
	if info.proxyMode && (ch == nil || ch.Config.HTTP != nil && ch.Routes != nil && ch.Routes.VirtualHost(authority) == nil) {
		if pt := m.passthroughRoutes(snap, l); pt != nil {
			// A host outside the registry, and the outbound traffic
			// policy passes such through (ALLOW_ANY): to where the
			// request names, unless that is this proxy.
			if m.loopsBack(origDst) {
				m.opts.Proxy.LocalReply(w, r, authority, http.StatusNotFound, accesslog.FlagNoRoute,
					fmt.Sprintf("%s is this sidecar's own listener: a request passed through to it would come back; name a service, or send the request to its destination directly", origDst))
				return
			}
			m.opts.Proxy.Serve(w, r, &httpproxy.Target{Snapshot: snap, Routes: pt, Authority: authority, OriginalDst: origDst, HTTP: passthroughSettings(l, ch, info.listener),
				DownstreamPrincipal: info.peer, DownstreamTLS: info.tlsID != ""})
			return
		}
	}
	switch {
	case ch == nil:
		m.opts.Proxy.LocalReply(w, r, authority, http.StatusNotFound, accesslog.FlagNoRoute,
			fmt.Sprintf("no filter chain on listener %q for port %d", info.listener, port))
		return
	case ch.Config.HTTP == nil:
		m.opts.Proxy.LocalReply(w, r, authority, http.StatusNotFound, accesslog.FlagNoRoute,
			fmt.Sprintf("port %d of %s is a TCP service: use CONNECT", port, hostOf(authority)))
		return
	case m.misdirected(w, r, l, port, ch, info, authority):
		return
	}
	m.opts.Proxy.Serve(w, r, &httpproxy.Target{Snapshot: snap, Routes: ch.Routes, Authority: authority, OriginalDst: origDst, HTTP: ch.Config.HTTP, DownstreamPrincipal: info.peer,
		DownstreamTLS: info.tlsID != "", DownstreamHTTPS: terminatedHTTPS(info, ch)})
}

// loopsBack reports whether hostport, an IP literal or localhost and a
// port, is one of this proxy's listeners, where a request or tunnel
// passed through would arrive again. (Other names are caught when the
// upstream dials them: OwnAddress.)
func (m *Manager) loopsBack(hostport string) bool {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return false
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return m.OwnAddress(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port))) ||
			m.OwnAddress(netip.AddrPortFrom(netip.IPv6Loopback(), uint16(port)))
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	return m.OwnAddress(netip.AddrPortFrom(ip, uint16(port)))
}

// OwnAddress reports whether a connection to ap would reach one of this
// proxy's listeners that pass traffic through (virtualOutbound,
// virtualInbound): one bound to ap's IP and port; or to the unspecified
// address and ap's port, when ap's IP is the machine's (loopback,
// unspecified, or an interface's); or to a local address and ap's port,
// when ap's IP is unspecified (Linux connects 0.0.0.0 to the machine).
// The upstream clusters use it to refuse such connections
// (upstream.Manager.SetOwnAddresses).
func (m *Manager) OwnAddress(ap netip.AddrPort) bool {
	ip := ap.Addr().Unmap()
	var wild []netip.Addr // the addresses bound to ap's port, when ip is not one of them
	m.mu.Lock()
	for name, b := range m.bound {
		if name != xdsmeta.ListenerOutbound && name != xdsmeta.ListenerInboundCapture {
			continue
		}
		a, ok := b.ln.Addr().(*net.TCPAddr)
		if !ok || a.Port != int(ap.Port()) {
			continue
		}
		la, _ := netip.AddrFromSlice(a.IP)
		if la = la.Unmap(); la == ip {
			m.mu.Unlock()
			return true
		}
		wild = append(wild, la)
	}
	m.mu.Unlock()
	for _, la := range wild {
		switch {
		case la.IsUnspecified() && localIP(ip), ip.IsUnspecified() && localIP(la):
			return true
		}
	}
	return false
}

// localIP reports whether ip is an address of this machine.
func localIP(ip netip.Addr) bool {
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if la, ok := netip.AddrFromSlice(n.IP); ok && la.Unmap() == ip {
				return true
			}
		}
	}
	return false
}

// passthroughSettings are the HTTP connection manager settings (access
// logs, tracing, timeouts) for a request on listener l passed through
// without a route of its own chain: ch's when it is an HTTP chain, else,
// on the outbound listener, those of its first HTTP chain, which the
// control plane gives every HTTP chain of virtualOutbound alike (an
// inbound chain's settings carry that port's authorization, which is not
// the passed-through port's); nil otherwise.
func passthroughSettings(l *dataplane.Listener, ch *dataplane.Chain, listener string) *proxyconfig.HTTPConnectionManager {
	if ch != nil && ch.Config.HTTP != nil {
		return ch.Config.HTTP
	}
	if listener != xdsmeta.ListenerOutbound {
		return nil
	}
	for _, c := range l.Chains {
		if c.Config.HTTP != nil {
			return c.Config.HTTP
		}
	}
	return nil
}

// serveConnect answers a CONNECT: 200, then an opaque tunnel for TCP
// chains, or, for HTTP chains, HTTP/1.1 or h2c served on the tunnel
// (detected from its first bytes) with anything else sent opaquely to the
// service's cluster.
func (m *Manager) serveConnect(w http.ResponseWriter, r *http.Request, snap *dataplane.Snapshot, l *dataplane.Listener, info *connInfo) {
	start := time.Now()
	target := r.Host
	if !info.proxyMode || info.tunnel != "" {
		m.opts.Proxy.LocalReply(w, r, target, http.StatusMethodNotAllowed, accesslog.FlagNoRoute, "CONNECT is only served by the outbound listener")
		return
	}
	host, portStr, err := net.SplitHostPort(target)
	port, perr := strconv.ParseUint(portStr, 10, 16)
	if err != nil || perr != nil || host == "" {
		m.opts.Proxy.LocalReply(w, r, target, http.StatusBadRequest, "", fmt.Sprintf("CONNECT target %q is not host:port", target))
		return
	}
	ch := l.MatchDeclared(uint32(port), host)
	if (ch == nil || ch.Config.HTTP != nil && ch.Routes != nil && ch.Routes.VirtualHost(target) == nil) && passesThrough(snap, l.Default) {
		// A destination outside the registry (no chain for its port,
		// or no route for its host on an HTTP port), and the outbound
		// traffic policy passes such through (ALLOW_ANY): the tunnel
		// goes where it names, opaquely, unless that is this proxy.
		if m.loopsBack(target) {
			m.opts.Proxy.LocalReply(w, r, target, http.StatusNotFound, accesslog.FlagNoRoute,
				fmt.Sprintf("%s is this sidecar's own listener: a tunnel to it would come back; name a service, or connect to its destination directly", target))
			return
		}
		ch = l.Default
	}
	if ch == nil {
		m.opts.Proxy.LocalReply(w, r, target, http.StatusNotFound, accesslog.FlagNoRoute,
			fmt.Sprintf("no filter chain on listener %q for %s", info.listener, target))
		return
	}
	if r.ProtoMajor != 1 {
		m.opts.Proxy.LocalReply(w, r, target, http.StatusMethodNotAllowed, "", "CONNECT over HTTP/2 is not supported; use HTTP/1.1")
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		m.log.Debug("hijack failed", "error", err)
		return
	}
	if _, err := io.WriteString(conn, "HTTP/1.1 200 OK\r\n\r\n"); err != nil {
		_ = conn.Close()
		return
	}
	br := brw.Reader
	tc := &bufConn{Conn: conn, r: br}
	if !m.trackRaw(tc) {
		return
	}
	go func() {
		handedOff := false
		defer func() {
			if !handedOff {
				m.untrackRaw(tc)
			}
		}()
		if ch.Config.TCP != nil {
			m.proxyTCP(tc, snap, ch, target, start)
			return
		}
		kind := m.sniff(tc, br)
		switch kind {
		case sniffHTTP:
			// The HTTP server tracks the connection from here on.
			m.untrackRaw(tc)
			handedOff = true
			m.serveHTTPConn(&downConn{Conn: tc, info: &connInfo{listener: info.listener, proxyMode: true, tunnel: target, port: uint32(port)}})
		case sniffOpaque:
			m.proxyOpaqueHTTPChain(tc, snap, ch, target, start)
		default:
			_ = tc.Close()
		}
	}()
}

type sniffResult int

const (
	sniffClosed sniffResult = iota
	sniffHTTP
	sniffOpaque
)

// sniff peeks at a tunnel's first bytes: the HTTP/2 preface or an HTTP/1
// method means HTTP, anything else (TLS) is opaque.
func (m *Manager) sniff(c net.Conn, br *bufio.Reader) sniffResult {
	_ = c.SetReadDeadline(time.Now().Add(m.opts.SniffTimeout))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	b, err := br.Peek(1)
	if err != nil {
		return sniffClosed
	}
	if b[0] < 'A' || b[0] > 'Z' {
		return sniffOpaque
	}
	// An HTTP/1 request line starts with an upper-case token and a space;
	// the HTTP/2 preface starts with "PRI * HTTP/2.0".
	for n := 2; n <= 16; n++ {
		b, err := br.Peek(n)
		if err != nil {
			return sniffOpaque
		}
		c := b[n-1]
		if c == ' ' {
			return sniffHTTP
		}
		if c < 'A' || c > 'Z' {
			return sniffOpaque
		}
	}
	return sniffOpaque
}

// proxyOpaqueHTTPChain sends non-HTTP bytes on an HTTP port to the
// cluster of the target's default route.
func (m *Manager) proxyOpaqueHTTPChain(c net.Conn, snap *dataplane.Snapshot, ch *dataplane.Chain, target string, start time.Time) {
	cluster := ""
	if ch.Routes != nil {
		if vh := ch.Routes.VirtualHost(target); vh != nil {
			for _, rt := range vh.Config.Routes {
				if rt.Action == nil {
					continue
				}
				cluster = rt.Action.Cluster
				if cluster == "" && len(rt.Action.WeightedClusters) > 0 {
					cluster = rt.Action.WeightedClusters[0].Name
				}
				break
			}
		}
	}
	var sinks []proxyconfig.AccessLog
	if ch.Config.HTTP != nil {
		sinks = ch.Config.HTTP.AccessLogs
	}
	m.tcpToCluster(c, snap, cluster, nil, sinks, target, start)
}

func portOf(hostport string, def uint32) uint32 {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return def
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return def
	}
	return uint32(n)
}

func hostOf(hostport string) string {
	if strings.IndexByte(hostport, ':') < 0 {
		return hostport // no port (and no error to build)
	}
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	return h
}

func withPort(authority string, port uint32) string {
	if _, _, err := net.SplitHostPort(authority); err == nil {
		return authority
	}
	return net.JoinHostPort(authority, strconv.FormatUint(uint64(port), 10))
}

// downConn carries its connInfo to the HTTP server's ConnContext.
type downConn struct {
	net.Conn
	info *connInfo
}

// bufConn reads through a bufio.Reader that may hold bytes already read
// from the connection.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite half-closes the underlying TCP connection.
func (c *bufConn) CloseWrite() error { return closeWrite(c.Conn) }

func closeWrite(c net.Conn) error {
	switch x := c.(type) {
	case interface{ CloseWrite() error }:
		return x.CloseWrite()
	case *downConn:
		return closeWrite(x.Conn)
	}
	return c.Close()
}
