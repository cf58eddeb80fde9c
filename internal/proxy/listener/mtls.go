package listener

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"weft.dev/weft/internal/proxy/accesslog"
	"weft.dev/weft/internal/proxy/dataplane"
	"weft.dev/weft/internal/proxy/mtls"
	"weft.dev/weft/internal/proxy/proxyconfig"
)

// TLS termination. A listener whose chains match on transport_protocol or
// carry a DownstreamTlsContext (a sidecar's inbound listener under mTLS)
// tells a TLS ClientHello from plaintext by the connection's first bytes
// (the same detection as transparent capture), picks the chain of that
// transport, terminates TLS with the chain's context when it has one, and
// serves the decrypted connection with the chain's filters. No matching
// chain (plaintext under STRICT) closes the connection. The verified
// client's SPIFFE ID travels with the connection to the request path and
// the TCP proxy (source_principal).

// tlsHandshakeTimeout bounds a downstream TLS handshake.
const tlsHandshakeTimeout = 10 * time.Second

// serverConfigs caches the tls.Config of each downstream context (by
// content), so handshakes do not rebuild it; configs read the identity on
// every handshake and never go stale.
type serverConfigs struct {
	mu   sync.Mutex
	byID map[string]*tls.Config
}

func (s *serverConfigs) get(t *proxyconfig.DownstreamTLS, id mtls.Identity) (*tls.Config, error) {
	k := t.ID
	s.mu.Lock()
	defer s.mu.Unlock()
	if cfg := s.byID[k]; cfg != nil {
		return cfg, nil
	}
	cfg, err := mtls.ServerConfig(t, id)
	if err != nil {
		return nil, err
	}
	if s.byID == nil {
		s.byID = map[string]*tls.Config{}
	}
	s.byID[k] = cfg
	return cfg, nil
}

// serveTransport serves a connection on a listener that matches on
// transport protocol. It returns at once; the work runs on its own
// goroutine, tracked until it hands an HTTP connection to the server.
func (m *Manager) serveTransport(b *bound, c net.Conn, snap *dataplane.Snapshot, l *dataplane.Listener) {
	if !m.trackRaw(c) {
		return
	}
	go func() {
		if !m.serveTransportConn(b, c, snap, l, b.port, "") {
			m.untrackRaw(c)
		}
	}()
}

// serveTransportConn detects whether c starts with a TLS ClientHello or
// plaintext, picks the chain of that transport for port, terminates TLS
// when the chain has a context (the verified client's SPIFFE ID then
// travels with the connection as *mtls.Conn and connInfo.peer) and serves
// the connection with the chain's filters. origDst is the original
// destination of a captured connection ("" otherwise). It reports whether
// the connection was handed to the HTTP server, which tracks it from then
// on; c is tracked by the caller until then.
func (m *Manager) serveTransportConn(b *bound, c net.Conn, snap *dataplane.Snapshot, l *dataplane.Listener, port uint32, origDst string) bool {
	start := time.Now()
	transport := proxyconfig.TransportProtocolRaw
	kind, sni, br := detect(c, bufio.NewReader(c), l.Config.DetectTimeout)
	switch kind {
	case detectedClosed:
		_ = c.Close()
		return false
	case detectedTLS:
		transport = proxyconfig.TransportProtocolTLS
	}
	ch := matchTransport(l, port, transport, sni)
	if origDst != "" && ch == l.Default {
		// A captured connection to a port the listener declares, in a
		// transport it does not accept (plaintext under STRICT): the
		// default chain passes unknown ports through, not this.
		ch = nil
	}
	if ch == nil {
		m.log.Debug("connection refused: no filter chain for its transport (plaintext under STRICT mTLS?)",
			"listener", b.name, "port", port, "transport", transport, "remote", c.RemoteAddr().String())
		m.opts.Metrics.Flag("NR")
		_ = c.Close()
		return false
	}
	var conn net.Conn = &bufConn{Conn: c, r: br}
	peer := ""
	if t := ch.Config.TLS; t != nil {
		cfg, err := m.tlsConfigs.get(t, m.opts.Identity)
		if err != nil {
			m.log.Warn("cannot terminate TLS", "listener", b.name, "error", err)
			_ = c.Close()
			return false
		}
		tc := tls.Server(conn, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), tlsHandshakeTimeout)
		err = tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			m.log.Debug("TLS handshake failed", "listener", b.name, "remote", c.RemoteAddr().String(), "error", err)
			_ = c.Close()
			return false
		}
		cs := tc.ConnectionState()
		peer = mtls.PeerID(&cs)
		conn = &mtls.Conn{Conn: tc, Peer: peer}
	}
	if ch.Config.TCP != nil {
		m.proxyTCP(conn, snap, ch, origDst, start)
		return false
	}
	m.untrackRaw(c)
	info := &connInfo{listener: b.name, port: port, transport: transport, sni: sni, peer: peer, origDst: origDst}
	if ch.Config.TLS != nil {
		info.tlsID = ch.Config.TLS.ID
	}
	m.serveHTTPConn(&downConn{Conn: conn, info: info})
	return true
}

// matchTransport is MatchChain for one transport protocol and TLS server
// name (sni, "" for none): chains that match another transport are
// skipped, and of the others a chain whose server_names hold the name
// wins (exact before the longest wildcard), then one without
// server_names (a transport's own before one for any transport); chains
// whose server_names do not hold it never match.
func matchTransport(l *dataplane.Listener, port uint32, transport, sni string) *dataplane.Chain {
	var best *dataplane.Chain
	bestScore := -1
	sni = strings.ToLower(strings.TrimSuffix(sni, "."))
	for _, ch := range l.Chains {
		m := &ch.Config.Match
		if m.DestinationPort != 0 && m.DestinationPort != port {
			continue
		}
		if m.TransportProtocol != transport && m.TransportProtocol != "" {
			continue
		}
		score := 0
		if len(m.ServerNames) > 0 {
			if score = dataplane.ServerNameScore(m.ServerNames, sni); score < 0 {
				continue
			}
		}
		if m.TransportProtocol == transport {
			score++ // before a chain for any transport
		}
		if score > bestScore {
			best, bestScore = ch, score
		}
	}
	if best == nil && l.Default != nil && (l.Default.Config.Match.TransportProtocol == "" || l.Default.Config.Match.TransportProtocol == transport) {
		best = l.Default
	}
	return best
}

// misdirected checks a request on a connection whose TLS this proxy
// terminated against the chain that the current config picks for it (ch,
// from the connection's server name): a chain whose TLS settings are no
// longer those of the handshake (the config changed since), or a request
// whose Host another chain's server names claim (a client that reached a
// server with one name and asks for a host served under another, which
// would get around that server's client certificate check), is answered
// 421 Misdirected Request and the connection ends (HTTP/2: GOAWAY): the
// client connects again, with the right name. It reports whether it
// answered.
func (m *Manager) misdirected(w http.ResponseWriter, r *http.Request, l *dataplane.Listener, port uint32, ch *dataplane.Chain, info *connInfo, authority string) bool {
	if info.tlsID == "" || ch == nil {
		return false
	}
	msg := ""
	switch host := hostOf(authority); {
	case ch.Config.TLS == nil || ch.Config.TLS.ID != info.tlsID:
		msg = "the TLS settings of this server changed since the connection was made; connect again"
	case l.Named:
		if hc := matchTransport(l, port, info.transport, host); hc != nil && hc != ch && len(hc.Config.Match.ServerNames) > 0 {
			msg = fmt.Sprintf("%s is served under another TLS server name on this port; connect with server name %s", host, host)
		}
	}
	if msg == "" {
		return false
	}
	// The connection ends after this answer: an HTTP/1.x one closes, and
	// the HTTP/2 server (h2server) takes Connection: close for a graceful
	// GOAWAY, so the client's next request opens a new connection.
	w.Header().Set("Connection", "close")
	m.opts.Proxy.LocalReply(w, r, authority, http.StatusMisdirectedRequest, accesslog.FlagNoRoute, msg)
	return true
}

// terminatedHTTPS says whether this proxy terminated the connection's TLS
// with a certificate of its config (a gateway's HTTPS server), not the
// mesh's: its requests are https to the app.
func terminatedHTTPS(info *connInfo, ch *dataplane.Chain) bool {
	return info.tlsID != "" && ch != nil && ch.Config.TLS != nil && ch.Config.TLS.CertFile != ""
}
