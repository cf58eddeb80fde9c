package upstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"weft.dev/weft/internal/proxy/mtls"
	"weft.dev/weft/internal/proxy/proxyconfig"
)

// TLS origination. A cluster's endpoints are reached in plaintext or over
// TLS, decided per endpoint by the cluster's transport_socket_matches
// against the endpoint's metadata (Weft's control plane marks endpoints
// that have a sidecar), else by its transport_socket. Each distinct TLS
// context gets its own pair of pools (HTTP/1.1 offering ALPN "http/1.1",
// HTTP/2 offering "h2") and its tcp_proxy dialer (offering the context's
// own ALPN list), kept across config updates while the context is
// unchanged. The verified peer's SPIFFE ID is remembered per endpoint
// address for the metrics (destination_principal).

// handshakeTimeout bounds a TLS handshake with an upstream, on top of the
// connect timeout.
const handshakeTimeout = 10 * time.Second

// SetIdentity gives the manager the proxy's identity, which mesh mTLS
// (SDS "default" and "ROOTCA") uses; call it before the first Update.
// Without one, endpoints whose TLS needs it are reached in plaintext (the
// proxy has no certificate to offer) and the choice is logged by the
// caller through Cluster.TLSNote.
func (m *Manager) SetIdentity(id mtls.Identity) {
	m.mu.Lock()
	m.ident = id
	m.mu.Unlock()
}

// tlsPools are the pools of one TLS context, made on first use (see
// pools): a sidecar in a large mesh has a TLS context for every mesh
// service but talks to few of them.
type tlsPools struct {
	c    *Cluster
	tls  *proxyconfig.UpstreamTLS
	id   mtls.Identity
	tkey transportKey
	key  string // tls.Key()

	mu      sync.Mutex // serializes building and retiring
	built   atomic.Pointer[tlsBuilt]
	retired bool // under mu: pools built from now on are retired at once
}

// tlsBuilt are a context's pools once made.
type tlsBuilt struct {
	h1 *h1Transport
	h2 h2Transport
	// dial opens a TLS connection for tcp_proxy, offering the context's
	// own ALPN list (the peer metadata exchange on mesh mTLS to TCP
	// ports), none when it has none.
	dial func(ctx context.Context, addr string) (net.Conn, error)
	err  error // the context could not be built (unreadable files)
}

// pools returns the context's pools, making them on first use.
func (p *tlsPools) pools() *tlsBuilt {
	if b := p.built.Load(); b != nil {
		return b
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.built.Load()
	if b == nil {
		b = p.c.buildTLSPools(p.tls, p.id, p.tkey)
		if p.retired && b.err == nil {
			// A request that found this context before it was retired:
			// its connection closes when the request ends.
			b.h1.retire()
		}
		p.built.Store(b)
	}
	return b
}

// ifBuilt calls f with the context's pools if they were made.
func (p *tlsPools) ifBuilt(f func(*tlsBuilt)) {
	if b := p.built.Load(); b != nil && b.err == nil {
		f(b)
	}
}

// retire makes the context's HTTP/1.1 connections close when their
// requests end and closes its idle ones, including those of pools a
// request still builds after this.
func (p *tlsPools) retire() {
	p.mu.Lock()
	p.retired = true
	b := p.built.Load()
	p.mu.Unlock()
	if b != nil && b.err == nil {
		b.h1.retire()
		b.h2.retire()
	}
}

// tlsState is what a config update decides about TLS.
type tlsState struct {
	// byAddr is the TLS context of each endpoint that uses TLS; nil when
	// no endpoint does.
	byAddr map[string]*tlsPools
	// all is the cluster-wide context (ORIGINAL_DST hosts and hosts not
	// in byAddr when set); nil means plaintext.
	all *tlsPools
}

func (s *tlsState) poolsFor(addr string) *tlsPools {
	if s == nil {
		return nil
	}
	if p, ok := s.byAddr[addr]; ok {
		return p
	}
	return s.all
}

// updateTLS computes the TLS state of a config and its endpoints,
// reusing the pools of contexts that did not change. It runs under
// Manager.mu (updates are serialized).
func (c *Cluster) updateTLS(cfg *proxyconfig.Cluster, eps *proxyconfig.Endpoints, id mtls.Identity, key transportKey) *tlsState {
	c.noIdentity = false
	if cfg.TLS == nil && len(cfg.TLSMatches) == 0 {
		c.retireTLS(nil)
		return nil
	}
	// A cluster has one TLS context or two (transport socket matches):
	// a slice searched in order costs less than a map per cluster.
	var keep []*tlsPools
	find := func(l []*tlsPools, k string) *tlsPools {
		for _, p := range l {
			if p.key == k && p.tkey == key {
				return p
			}
		}
		return nil
	}
	get := func(t *proxyconfig.UpstreamTLS) *tlsPools {
		if t == nil {
			return nil
		}
		if t.UsesSDS() && id == nil {
			c.noIdentity = true
			return nil // no certificate to offer: plaintext (see SetIdentity)
		}
		k := t.Key()
		if p := find(keep, k); p != nil {
			return p
		}
		p := find(c.tlsPools, k)
		if p == nil {
			p = &tlsPools{c: c, tls: t, id: id, tkey: key, key: k}
		}
		keep = append(keep, p)
		return p
	}
	st := &tlsState{all: get(cfg.TLS)}
	if eps != nil && len(cfg.TLSMatches) > 0 {
		st.byAddr = map[string]*tlsPools{}
		for _, loc := range eps.Localities {
			for _, e := range loc.Endpoints {
				st.byAddr[e.Address] = get(cfg.TLSFor(e.TLSMeta))
			}
		}
	}
	c.retireTLS(keep)
	return st
}

// retireTLS closes the idle connections of pools no longer used and keeps
// the others.
func (c *Cluster) retireTLS(keep []*tlsPools) {
	for _, p := range c.tlsPools {
		if !slices.Contains(keep, p) {
			p.retire()
		}
	}
	c.tlsPools = keep
}

func (c *Cluster) buildTLSPools(t *proxyconfig.UpstreamTLS, id mtls.Identity, key transportKey) *tlsBuilt {
	b := &tlsBuilt{}
	cfgs := make([]*tls.Config, 3)
	for i, alpn := range [][]string{{"http/1.1"}, {"h2"}, nil} {
		if alpn == nil && len(t.ALPN) == 0 {
			alpn = []string{}
		}
		cfgs[i], b.err = mtls.ClientConfig(t, id, alpn)
		if b.err != nil {
			return b
		}
	}
	dialer := c.newDialer(key)
	handshake := func(ctx context.Context, addr string, cfg *tls.Config) (net.Conn, error) {
		raw, err := dialTCP(ctx, &dialer, addr)
		if err != nil {
			return nil, err
		}
		hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
		defer cancel()
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(hctx); err != nil {
			_ = raw.Close()
			return nil, &DialError{Addr: addr, Err: fmt.Errorf("TLS handshake: %w", err)}
		}
		cs := tc.ConnectionState()
		peer := mtls.PeerID(&cs)
		if peer != "" {
			c.peers.Store(addr, peer)
		}
		return &mtls.Conn{Conn: tc, Peer: peer}, nil
	}
	// The pools speak HTTP over connections their dialer already
	// secured, as they would in plaintext: ALPN told the server which
	// protocol follows.
	dialH1 := c.countedDial(key, func(ctx context.Context, addr string) (net.Conn, error) { return handshake(ctx, addr, cfgs[0]) }, false)
	b.h1 = newH1Transport(c, key, func(ctx context.Context, addr string) (net.Conn, error) { return dialH1(ctx, "tcp", addr) })
	b.h2.dial = c.countedDial(key, func(ctx context.Context, addr string) (net.Conn, error) { return handshake(ctx, addr, cfgs[1]) }, true)
	b.h2.idle = key.idle
	b.dial = func(ctx context.Context, addr string) (net.Conn, error) { return handshake(ctx, addr, cfgs[2]) }
	return b
}

// PeerPrincipal returns the SPIFFE ID the endpoint at addr presented in
// its last verified TLS handshake, "" when it was reached in plaintext.
func (c *Cluster) PeerPrincipal(addr string) string {
	if c.tls.Load() == nil {
		return ""
	}
	if v, ok := c.peers.Load(addr); ok {
		return v.(string)
	}
	return ""
}

// TLSNote says why endpoints that the config reaches over mesh mTLS are
// reached in plaintext ("" when none are): the proxy has no identity.
func (c *Cluster) TLSNote() string {
	if !c.noIdentity {
		return ""
	}
	return fmt.Sprintf("cluster %q: mTLS to its sidecar endpoints (%v); they are reached in plaintext", c.name, mtls.ErrNoIdentity)
}

// roundTripper picks the plaintext or TLS pool of the request's endpoint
// (URL.Host is the endpoint's address).
type roundTripper struct {
	c     *Cluster
	http2 bool
}

func (rt *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	c := rt.c
	tr := c.tr.Load()
	p := c.tls.Load().poolsFor(req.URL.Host)
	if p == nil {
		if rt.http2 {
			return tr.h2.RoundTrip(req)
		}
		return tr.h1.RoundTrip(req)
	}
	b := p.pools()
	if b.err != nil {
		return nil, &DialError{Addr: req.URL.Host, Err: b.err}
	}
	if rt.http2 {
		return b.h2.RoundTrip(req)
	}
	return b.h1.RoundTrip(req)
}

// tlsFields are the Cluster fields of TLS origination.
type tlsFields struct {
	tlsMu      sync.Mutex  // guards tlsPools and noIdentity
	tlsPools   []*tlsPools // by key and transport settings
	noIdentity bool
	peers      sync.Map // endpoint address -> SPIFFE ID of its last handshake
	rtH1, rtH2 roundTripper
}
