package listener

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"

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
	k := t.Key()
	if t.RequireClientCert {
		k += "|require"
	}
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
	br := bufio.NewReader(c)
	transport := proxyconfig.TransportProtocolRaw
	switch kind, _ := detect(c, br, l.Config.DetectTimeout); kind {
	case detectedClosed:
		_ = c.Close()
		return false
	case detectedTLS:
		transport = proxyconfig.TransportProtocolTLS
	}
	ch := matchTransport(l, port, transport)
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
	m.serveHTTPConn(&downConn{Conn: conn, info: &connInfo{listener: b.name, port: port, transport: transport, peer: peer, origDst: origDst}})
	return true
}

// matchTransport is MatchChain for one transport protocol: chains that
// match another transport are skipped.
func matchTransport(l *dataplane.Listener, port uint32, transport string) *dataplane.Chain {
	var best *dataplane.Chain
	for _, ch := range l.Chains {
		m := &ch.Config.Match
		if m.DestinationPort != 0 && m.DestinationPort != port {
			continue
		}
		switch m.TransportProtocol {
		case transport:
			return ch
		case "":
			if best == nil {
				best = ch
			}
		}
	}
	if best == nil && l.Default != nil && (l.Default.Config.Match.TransportProtocol == "" || l.Default.Config.Match.TransportProtocol == transport) {
		best = l.Default
	}
	return best
}
