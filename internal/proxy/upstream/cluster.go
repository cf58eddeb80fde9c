// Package upstream holds the proxy's clusters: their endpoints, load
// balancers, circuit breakers and connection pools.
//
// A Cluster outlives config updates: the Manager keeps one per name and
// updates its endpoints and settings in place (an atomic swap), so requests
// in flight keep their host and connection, and per-endpoint counters
// survive endpoint updates.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"weft.dev/weft/internal/proxy/h2client"
	"weft.dev/weft/internal/proxy/mtls"
	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/readwait"
)

// Errors that map to Envoy response flags.
var (
	// ErrNoHealthyUpstream: the cluster has no endpoint to pick (UH).
	ErrNoHealthyUpstream = errors.New("no healthy upstream")
	// ErrOverflow: a circuit breaker is open (UO).
	ErrOverflow = errors.New("circuit breaker overflow")
)

// ErrPending marks a request that ended (cancelled, timed out) while it
// waited for one of the cluster's connections to come free
// (max_connections reached): no host had a part in it, so outlier
// detection does not count it. It is wrapped with the cause.
var ErrPending = errors.New("while waiting for a free connection of the cluster")

// DialError is a failure to connect to an endpoint (UF).
type DialError struct {
	// Addr is the endpoint dialled.
	Addr string
	// Err is the cause.
	Err error
}

func (e *DialError) Error() string { return fmt.Sprintf("connecting to %s: %v", e.Addr, e.Err) }
func (e *DialError) Unwrap() error { return e.Err }

// Host is one endpoint. Its counters persist across endpoint updates.
type Host struct {
	// Addr is host:port (host may be a name, resolved when dialling).
	Addr string

	active   atomic.Int64
	total    atomic.Uint64
	failures atomic.Uint64
	outlier  outlierState
	// lastPick is when an ORIGINAL_DST host was last picked (UnixNano).
	lastPick atomic.Int64
}

// Active returns the number of requests in flight to the host.
func (h *Host) Active() int64 { return h.active.Load() }

// Total returns the number of requests sent to the host.
func (h *Host) Total() uint64 { return h.total.Load() }

// Failures returns the number of failed requests (connect failures,
// resets, timeouts and 5xx responses).
func (h *Host) Failures() uint64 { return h.failures.Load() }

// Start counts a request to the host; call the returned func once when it
// ends, with whether it failed.
func (h *Host) Start() {
	h.active.Add(1)
	h.total.Add(1)
}

// Done ends a request started with Start.
func (h *Host) Done(failed bool) {
	h.active.Add(-1)
	if failed {
		h.failures.Add(1)
	}
}

// HostStatus is a host's state for the admin endpoints.
type HostStatus struct {
	// Host is the endpoint.
	Host *Host
	// Weight is the configured endpoint weight.
	Weight uint32
	// Locality is "region/zone/subzone".
	Locality string
	// Priority is the locality's priority.
	Priority uint32
	// Health is the EDS health status.
	Health proxyconfig.Health
}

type state struct {
	cfg    *proxyconfig.Cluster
	hosts  []HostStatus
	byAddr map[string]*Host // hosts by address, for clusters of many hosts
	// picker alone chooses every host when the cluster has no outlier
	// detection and one set of hosts takes all requests (one priority
	// level, the common case), or no host at all; lv is nil then.
	// Otherwise picker is nil and lv chooses a level for each request.
	picker picker
	lv     *levels
	// pool is every host of the cluster once (outlier detection only:
	// max_ejection_percent).
	pool []*Host
	// overprov is the overprovisioning factor in percent.
	overprov uint32
}

// manyHosts is the number of hosts above which a state indexes them by
// address; below, a scan is as fast and a cluster costs less memory.
const manyHosts = 8

// host returns the cluster's host at addr, nil if none.
func (st *state) host(addr string) *Host {
	if st == nil {
		return nil
	}
	if st.byAddr != nil {
		return st.byAddr[addr]
	}
	for i := range st.hosts {
		if st.hosts[i].Host.Addr == addr {
			return st.hosts[i].Host
		}
	}
	return nil
}

// keeps says whether connections to addr may stay pooled: the address is
// one of the cluster's hosts (any address for ORIGINAL_DST clusters).
func (st *state) keeps(addr string) bool {
	return st.cfg.Type == proxyconfig.DiscoveryOriginalDst || st.host(addr) != nil
}

// Cluster is one upstream cluster. It is safe for concurrent use.
type Cluster struct {
	name string
	own  func(netip.AddrPort) bool // the proxy's own listeners; nil: none known
	st   atomic.Pointer[state]
	tr   atomic.Pointer[transports]
	tls  atomic.Pointer[tlsState] // nil: every endpoint in plaintext
	tlsFields

	origDst sync.Map // ORIGINAL_DST hosts by address
	// origSweep is when the next sweep of origDst for hosts unused for
	// the cleanup interval is due (UnixNano).
	origSweep atomic.Int64

	activeRq atomic.Int64
	retries  atomic.Int64
	conns    atomic.Int64
	slotCh   atomic.Pointer[chan struct{}] // see slotWaiter

	// applied are what the cluster was last updated with; under its
	// Manager's mu.
	applied updateInputs

	// Overflows counts requests rejected by a circuit breaker.
	Overflows atomic.Uint64
	// Ejections counts hosts ejected by outlier detection; outlierMu
	// orders ejections (max_ejection_percent).
	Ejections atomic.Uint64
	outlierMu sync.Mutex
}

// updateInputs are what Cluster.update makes a cluster's state from.
type updateInputs struct {
	cfg *proxyconfig.Cluster
	eps *proxyconfig.Endpoints
	id  mtls.Identity
}

type transports struct {
	key  transportKey
	dial *plainDial // the pools' dialer, and tcp_proxy's in plaintext (Dial)
	h1   *h1Transport
	h2   h2Transport
}

// h2Transport is a pool for HTTP/2 (h2c, or over connections its dialer
// secured: package h2client), made on first use: most clusters never
// carry HTTP/2.
type h2Transport struct {
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	idle time.Duration
	pool atomic.Pointer[h2client.Pool]
}

func (t *h2Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.get().RoundTrip(req)
}

func (t *h2Transport) get() *h2client.Pool {
	if p := t.pool.Load(); p != nil {
		return p
	}
	p := h2client.New(h2client.Options{Dial: t.dial, IdleTimeout: t.idle})
	if t.pool.CompareAndSwap(nil, p) {
		return p
	}
	return t.pool.Load()
}

// CloseIdleConnections closes the idle connections of the pool, if it was
// made.
func (t *h2Transport) CloseIdleConnections() {
	if p := t.pool.Load(); p != nil {
		p.CloseIdleConnections()
	}
}

// retire closes the pool's connections once their streams end (its
// cluster's settings changed: new requests go to another pool).
func (t *h2Transport) retire() {
	if p := t.pool.Load(); p != nil {
		p.Retire()
	}
}

type transportKey struct {
	connectTimeout     time.Duration
	idle               time.Duration
	maxConns           int64
	maxRequestsPerConn int64 // 0: unlimited
	// passthrough: an ORIGINAL_DST cluster, whose destinations come from
	// requests, so its dials refuse the proxy's own listeners.
	passthrough bool
}

// Name returns the cluster's name.
func (c *Cluster) Name() string { return c.name }

// Config returns the cluster's current settings.
func (c *Cluster) Config() *proxyconfig.Cluster { return c.st.Load().cfg }

// Hosts returns the cluster's endpoints and their state.
func (c *Cluster) Hosts() []HostStatus {
	st := c.st.Load()
	out := append([]HostStatus(nil), st.hosts...)
	if st.cfg.Type == proxyconfig.DiscoveryOriginalDst {
		c.origDst.Range(func(_, v any) bool {
			out = append(out, HostStatus{Host: v.(*Host), Weight: 1})
			return true
		})
	}
	return out
}

// ActiveRequests returns the requests in flight on the cluster.
func (c *Cluster) ActiveRequests() int64 { return c.activeRq.Load() }

// ActiveConnections returns the cluster's open upstream connections.
func (c *Cluster) ActiveConnections() int64 { return c.conns.Load() }

// Pick chooses a host. target is the request's own destination host:port,
// used by ORIGINAL_DST clusters. hash feeds consistent-hash balancers when
// hasHash is true.
func (c *Cluster) Pick(target string, hash uint64, hasHash bool) (*Host, error) {
	st := c.st.Load()
	if st.cfg.Type == proxyconfig.DiscoveryOriginalDst {
		if target == "" {
			return nil, ErrNoHealthyUpstream
		}
		return c.pickOriginalDst(target, st.cfg.CleanupInterval), nil
	}
	var h *Host
	if st.picker != nil {
		h = st.picker.pick(hash, hasHash)
	} else {
		var now int64
		if st.cfg.Outlier != nil {
			now = nowNano()
		}
		h = c.pickLevel(st, hash, hasHash, now)
	}
	if h == nil {
		return nil, ErrNoHealthyUpstream
	}
	return h, nil
}

// pickOriginalDst returns the host for target, made on first use. Hosts
// nothing picked for the cleanup interval and with no request in flight
// are forgotten, as Envoy purges them: the destinations a sidecar sees
// come and go (and in proxy mode a client names them), so the map must
// not grow with every one ever seen. A sweep runs at most once an
// interval, from the pick that finds it due.
func (c *Cluster) pickOriginalDst(target string, cleanup time.Duration) *Host {
	now := nowNano()
	var h *Host
	if v, ok := c.origDst.Load(target); ok {
		h = v.(*Host)
	} else {
		v, _ := c.origDst.LoadOrStore(target, &Host{Addr: target})
		h = v.(*Host)
	}
	h.lastPick.Store(now)
	if cleanup <= 0 {
		cleanup = proxyconfig.DefaultCleanupInterval
	}
	if due := c.origSweep.Load(); now >= due && c.origSweep.CompareAndSwap(due, now+int64(cleanup)) {
		c.origDst.Range(func(k, v any) bool {
			if o := v.(*Host); o.Active() == 0 && now-o.lastPick.Load() > int64(cleanup) {
				c.origDst.CompareAndDelete(k, o)
			}
			return true
		})
	}
	return h
}

// StartRequest reserves a request slot under the max_requests and
// max_pending_requests circuit breakers. It returns ErrOverflow when one is
// open; otherwise EndRequest must be called once.
func (c *Cluster) StartRequest(http2 bool) error {
	th := &c.st.Load().cfg.Thresholds
	n := c.activeRq.Add(1)
	if n > th.MaxRequests {
		c.activeRq.Add(-1)
		c.Overflows.Add(1)
		return ErrOverflow
	}
	if !http2 {
		// An HTTP/1.1 request waits for a connection once every allowed
		// connection is busy: those are the pending requests.
		conns := c.conns.Load()
		if conns >= th.MaxConnections && n-conns > th.MaxPendingRequests {
			c.activeRq.Add(-1)
			c.Overflows.Add(1)
			return ErrOverflow
		}
	}
	return nil
}

// EndRequest releases a slot taken by StartRequest.
func (c *Cluster) EndRequest() { c.activeRq.Add(-1) }

// StartRetry reserves a retry under max_retries; false means the breaker
// is open and the request must not be retried. Call EndRetry when the
// retry attempt ends.
func (c *Cluster) StartRetry() bool {
	if c.retries.Add(1) > c.st.Load().cfg.Thresholds.MaxRetries {
		c.retries.Add(-1)
		c.Overflows.Add(1)
		return false
	}
	return true
}

// EndRetry releases a slot taken by StartRetry.
func (c *Cluster) EndRetry() { c.retries.Add(-1) }

// Transport returns the round tripper for HTTP/1.1 or h2c. Requests must
// carry the picked host's address in URL.Host.
func (c *Cluster) Transport(http2 bool) http.RoundTripper {
	if c.tls.Load() != nil {
		if http2 {
			return &c.rtH2
		}
		return &c.rtH1
	}
	t := c.tr.Load()
	if http2 {
		return &t.h2
	}
	return t.h1
}

// UseHTTP2 says whether a request goes upstream over h2c, from the
// cluster's protocol options and the downstream request.
func (c *Cluster) UseHTTP2(downstreamHTTP2, grpc, upgrade bool) bool {
	if upgrade {
		return false
	}
	switch c.st.Load().cfg.Protocol {
	case proxyconfig.ProtocolHTTP2:
		return true
	case proxyconfig.ProtocolHTTP1:
		return false
	case proxyconfig.ProtocolDownstream:
		return downstreamHTTP2 || grpc
	}
	return grpc
}

// retire closes the cluster's idle connections and makes those in use
// close when their request ends: the cluster is no longer configured.
func (c *Cluster) retire() {
	c.tr.Load().h1.retire()
	c.tlsMu.Lock()
	for _, p := range c.tlsPools {
		p.retire()
	}
	c.tlsMu.Unlock()
	c.CloseIdle()
}

// CloseIdle closes idle upstream connections.
func (c *Cluster) CloseIdle() {
	t := c.tr.Load()
	t.h1.CloseIdleConnections()
	t.h2.CloseIdleConnections()
	c.tlsMu.Lock()
	for _, p := range c.tlsPools {
		p.ifBuilt(func(b *tlsBuilt) {
			b.h1.CloseIdleConnections()
			b.h2.CloseIdleConnections()
		})
	}
	c.tlsMu.Unlock()
}

func (c *Cluster) update(cfg *proxyconfig.Cluster, eps *proxyconfig.Endpoints, id mtls.Identity) {
	key := transportKey{connectTimeout: cfg.ConnectTimeout, idle: cfg.IdleTimeout, maxConns: cfg.Thresholds.MaxConnections,
		maxRequestsPerConn: int64(cfg.MaxRequestsPerConnection), passthrough: cfg.Type == proxyconfig.DiscoveryOriginalDst}
	if old := c.tr.Load(); old == nil || old.key != key {
		c.tr.Store(c.newTransports(key))
		if old != nil {
			old.h1.retire()
			old.h2.retire()
		}
	}
	if cfg.LoadAssignment != nil {
		eps = cfg.LoadAssignment
	}
	c.tlsMu.Lock()
	c.tls.Store(c.updateTLS(cfg, eps, id, key))
	c.tlsMu.Unlock()
	// Hosts persist across updates (their counters with them): an
	// address of the last state keeps its Host.
	prev := c.st.Load()
	st := &state{cfg: cfg}
	seen := map[string]*Host{}
	if eps != nil {
		for _, loc := range eps.Localities {
			for _, e := range loc.Endpoints {
				h := seen[e.Address]
				if h == nil {
					if h = prev.host(e.Address); h == nil {
						h = &Host{Addr: e.Address}
					}
					seen[e.Address] = h
				}
				st.hosts = append(st.hosts, HostStatus{Host: h, Weight: e.Weight, Locality: loc.Name, Priority: loc.Priority, Health: e.Health})
			}
		}
	}
	removed := false
	if prev != nil {
		for _, hs := range prev.hosts {
			if seen[hs.Host.Addr] == nil {
				removed = true
				break
			}
		}
	}
	if len(seen) > manyHosts {
		st.byAddr = seen
	}
	st.overprov = proxyconfig.DefaultOverprovisioningFactor
	if eps != nil && eps.OverprovisioningFactor > 0 {
		st.overprov = eps.OverprovisioningFactor
	}
	host := func(addr string) *Host { return seen[addr] }
	if cfg.Outlier != nil {
		st.pool = make([]*Host, 0, len(seen))
		for _, h := range seen {
			st.pool = append(st.pool, h)
		}
	}
	// The loads are computed and the state published under outlierMu,
	// so that an ejection made meanwhile is counted by this state's
	// loads or recomputes them.
	c.outlierMu.Lock()
	prios := priorities(st.hosts)
	ld := computeLoads(st.hosts, prios, st.overprov, cfg.Outlier, nowNano())
	switch {
	case len(prios) == 0:
		st.picker = emptyPicker{}
	case cfg.Outlier == nil && ld.sole >= 0:
		st.picker = newPicker(cfg, weighLocalities(localitiesAt(eps, prios[ld.sole]), availability(ld.soleDegraded), host))
	default:
		st.lv = newLevels(cfg, eps, prios, host)
		st.lv.loads.Store(ld)
	}
	c.st.Store(st)
	c.outlierMu.Unlock()
	if removed {
		// Requests in flight keep their connections; only idle ones to
		// hosts that are gone (and, harmlessly, others) are closed.
		c.CloseIdle()
	}
}

// newLevels makes the balancers of each priority level.
func newLevels(cfg *proxyconfig.Cluster, eps *proxyconfig.Endpoints, prios []uint32, host func(addr string) *Host) *levels {
	od := cfg.Outlier
	lv := &levels{prios: prios, sets: make([]prioSet, len(prios))}
	for i, p := range prios {
		locs := localitiesAt(eps, p)
		var set prioSet
		for _, degraded := range []bool{false, true} {
			ws := weighLocalities(locs, availability(degraded), host)
			if len(ws) == 0 {
				continue
			}
			pk := newPicker(cfg, ws)
			var pool []*Host
			if od != nil {
				pool = distinct(ws)
			}
			if degraded {
				set.degraded, set.degradedPool = pk, pool
			} else {
				set.healthy, set.healthyPool = pk, pool
			}
		}
		if od != nil && od.PanicPercent > 0 {
			// In panic the level's requests go to all of its hosts.
			set.all = set.healthy
			if !allUsable(locs) {
				set.all = newPicker(cfg, weighLocalities(locs, func(proxyconfig.Health) bool { return true }, host))
			}
		}
		lv.sets[i] = set
	}
	return lv
}

// distinct returns the hosts of ws, once each.
func distinct(ws []weighted) []*Host {
	in := make(map[*Host]bool, len(ws))
	out := make([]*Host, 0, len(ws))
	for _, w := range ws {
		if !in[w.h] {
			in[w.h] = true
			out = append(out, w.h)
		}
	}
	return out
}

// availability accepts the hosts EDS calls available (HEALTHY or
// UNKNOWN), or the degraded ones.
func availability(degraded bool) func(proxyconfig.Health) bool {
	if degraded {
		return func(h proxyconfig.Health) bool { return h == proxyconfig.HealthDegraded }
	}
	return usable
}

// localitiesAt returns the localities of priority p.
func localitiesAt(eps *proxyconfig.Endpoints, p uint32) []proxyconfig.Locality {
	var out []proxyconfig.Locality
	for _, l := range eps.Localities {
		if l.Priority == p {
			out = append(out, l)
		}
	}
	return out
}

func allUsable(locs []proxyconfig.Locality) bool {
	for _, l := range locs {
		for _, e := range l.Endpoints {
			if !usable(e.Health) {
				return false
			}
		}
	}
	return true
}

// weighLocalities weighs each accepted host of one priority level by its
// weight and, when localities carry weights, by its locality's share.
func weighLocalities(locs []proxyconfig.Locality, accept func(proxyconfig.Health) bool, host func(addr string) *Host) []weighted {
	localityWeighted := false
	var locTotal float64
	for _, l := range locs {
		if l.Weight > 0 && hasUsable(l, accept) {
			localityWeighted = true
			locTotal += float64(l.Weight)
		}
	}
	var out []weighted
	for _, l := range locs {
		var hostTotal float64
		for _, e := range l.Endpoints {
			if accept(e.Health) {
				hostTotal += float64(e.Weight)
			}
		}
		for _, e := range l.Endpoints {
			if !accept(e.Health) {
				continue
			}
			w := uint64(e.Weight)
			if localityWeighted {
				if l.Weight == 0 {
					continue
				}
				w = uint64(math.Round(float64(l.Weight) / locTotal * float64(e.Weight) / hostTotal * 1e6))
				w = max(w, 1)
			}
			out = append(out, weighted{h: host(e.Address), w: w})
		}
	}
	return out
}

func hasUsable(l proxyconfig.Locality, accept func(proxyconfig.Health) bool) bool {
	for _, e := range l.Endpoints {
		if accept(e.Health) {
			return true
		}
	}
	return false
}

// newDialer is the dialer of a cluster's endpoints under key's settings,
// plaintext or TLS: a passthrough cluster's (ORIGINAL_DST, whose
// addresses the requests name) refuses the proxy's own listeners.
func (c *Cluster) newDialer(key transportKey) net.Dialer {
	d := net.Dialer{Timeout: key.connectTimeout, KeepAlive: 30 * time.Second}
	if own := c.own; own != nil && key.passthrough {
		// The address as dialled, after name resolution.
		d.Control = func(_, address string, _ syscall.RawConn) error {
			if ap, err := netip.ParseAddrPort(address); err == nil && own(ap) {
				return ErrLoop
			}
			return nil
		}
	}
	return d
}

// newTransports makes the plaintext pools of a cluster's settings.
func (c *Cluster) newTransports(key transportKey) *transports {
	pd := &plainDial{c: c, d: c.newDialer(key), maxConns: key.maxConns}
	t := &transports{key: key, dial: pd, h2: h2Transport{dial: pd.h2, idle: key.idle}}
	t.h1 = newH1Transport(c, key, pd.h1)
	return t
}

// plainDial dials a cluster's endpoints in plaintext under its
// max_connections circuit breaker: one allocation per cluster and its two
// method values, where closures over closures took five.
type plainDial struct {
	c        *Cluster
	d        net.Dialer
	maxConns int64
}

func (p *plainDial) raw(ctx context.Context, addr string) (net.Conn, error) {
	return dialTCP(ctx, &p.d, addr)
}

// dialTCP dials an endpoint for every pool, plaintext or TLS: a failure is
// a DialError, and the connection is read without the reads that find
// nothing (package readwait).
func dialTCP(ctx context.Context, d *net.Dialer, addr string) (net.Conn, error) {
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &DialError{Addr: addr, Err: err}
	}
	return readwait.Wrap(conn), nil
}

// h1 is the HTTP/1.1 pool's dialer: over the limit it returns
// ErrOverflow and the pool waits for a connection (its requests overflow
// in StartRequest, max_pending_requests).
func (p *plainDial) h1(ctx context.Context, addr string) (net.Conn, error) {
	return p.c.dialCounted(ctx, addr, p.maxConns, false, p.raw)
}

// h2 is the HTTP/2 transport's dialer: nothing waits for a connection, so
// going over the limit counts as an overflow.
func (p *plainDial) h2(ctx context.Context, _, addr string) (net.Conn, error) {
	return p.c.dialCounted(ctx, addr, p.maxConns, true, p.raw)
}

// countedDial wraps a dialer with the max_connections circuit breaker
// (see plainDial's h1 and h2 for what overflowCounts means); the TLS
// pools use it, made on first use.
func (c *Cluster) countedDial(key transportKey, dial func(ctx context.Context, addr string) (net.Conn, error), overflowCounts bool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, _, addr string) (net.Conn, error) {
		return c.dialCounted(ctx, addr, key.maxConns, overflowCounts, dial)
	}
}

// dialCounted dials under the max_connections circuit breaker: over
// maxConns it returns ErrOverflow (counted in Overflows when
// overflowCounts); the connection gives its slot back when closed.
func (c *Cluster) dialCounted(ctx context.Context, addr string, maxConns int64, overflowCounts bool, dial func(ctx context.Context, addr string) (net.Conn, error)) (net.Conn, error) {
	if c.conns.Add(1) > maxConns {
		c.conns.Add(-1)
		if overflowCounts {
			c.Overflows.Add(1)
		}
		return nil, ErrOverflow
	}
	conn, err := dial(ctx, addr)
	if err != nil {
		c.conns.Add(-1)
		c.slotReleased()
		return nil, err
	}
	return &countedConn{Conn: conn, c: c}, nil
}

// evictIdle closes one idle HTTP/1.1 connection of the cluster (its
// plaintext pool first, then its TLS pools), to free a max_connections
// slot for a request to another endpoint; false when none is idle.
func (c *Cluster) evictIdle() bool {
	if c.tr.Load().h1.evictOne() {
		return true
	}
	c.tlsMu.Lock()
	pools := make([]*h1Transport, 0, len(c.tlsPools))
	for _, p := range c.tlsPools {
		p.ifBuilt(func(b *tlsBuilt) { pools = append(pools, b.h1) })
	}
	c.tlsMu.Unlock()
	for _, t := range pools {
		if t.evictOne() {
			return true
		}
	}
	return false
}

// slotWaiter returns a channel closed when a connection is released or
// goes idle: what an HTTP/1.1 request waiting for a connection waits on.
func (c *Cluster) slotWaiter() <-chan struct{} {
	for {
		if p := c.slotCh.Load(); p != nil {
			return *p
		}
		ch := make(chan struct{})
		if c.slotCh.CompareAndSwap(nil, &ch) {
			return ch
		}
	}
}

// slotReleased wakes the requests waiting for a connection, if any.
func (c *Cluster) slotReleased() {
	if c.slotCh.Load() == nil {
		return
	}
	if p := c.slotCh.Swap(nil); p != nil {
		close(*p)
	}
}

// countedConn decrements the cluster's connection count once on Close.
type countedConn struct {
	net.Conn
	c    *Cluster
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.c.conns.Add(-1)
		c.c.slotReleased()
	})
	return err
}

// NetConn returns the wrapped connection.
func (c *countedConn) NetConn() net.Conn { return c.Conn }

// Manager keeps the clusters by name across config updates. Update and Get
// may be called concurrently.
type Manager struct {
	mu       sync.Mutex
	clusters map[string]*Cluster
	ident    mtls.Identity             // nil: no mesh mTLS (SetIdentity)
	own      func(netip.AddrPort) bool // SetOwnAddresses
}

// SetOwnAddresses gives the manager the test for this proxy's listening
// addresses that pass traffic through: ORIGINAL_DST clusters made
// afterwards refuse to connect to one (ErrLoop), where a passed-through
// request or tunnel that names the proxy, by whatever name, would arrive
// again and again. (Other clusters' endpoints come from the control
// plane, and may be the proxy's own inbound listener: an app calling its
// own service.) Call it before the first Update.
func (m *Manager) SetOwnAddresses(own func(netip.AddrPort) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.own = own
}

// ErrLoop is the cause of a DialError to one of the proxy's own listeners.
var ErrLoop = errors.New("the address is this proxy's own listener: the connection would come back to it")

// NewManager returns an empty manager.
func NewManager() *Manager { return &Manager{clusters: map[string]*Cluster{}} }

// Update applies validated clusters and endpoints (endpoints keyed by EDS
// service name) and returns the live clusters by name. Clusters no longer
// configured are dropped after their idle connections are closed; requests
// in flight on them finish normally.
func (m *Manager) Update(cfgs map[string]*proxyconfig.Cluster, eps map[string]*proxyconfig.Endpoints) map[string]*Cluster {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]*Cluster, len(cfgs))
	for name, cfg := range cfgs {
		c := m.clusters[name]
		if c == nil {
			c = &Cluster{name: name, own: m.own}
			c.rtH1, c.rtH2 = roundTripper{c: c}, roundTripper{c: c, http2: true}
		}
		// A cluster whose config and endpoints are the objects it was
		// last updated with (the xDS client keeps a resource's parsed
		// form while its bytes do not change) is left as it is: every
		// response of any type comes here, and rebuilding the state and
		// TLS contexts of a hundred mesh clusters cost a sidecar about a
		// millisecond and a half each time (docs/performance.md,
		// optimisation 28).
		in := updateInputs{cfg: cfg, eps: eps[cfg.EDSServiceName], id: m.ident}
		if c.applied != in {
			c.update(in.cfg, in.eps, in.id)
			c.applied = in
		}
		out[name] = c
	}
	for name, c := range m.clusters {
		if _, ok := out[name]; !ok {
			c.retire()
		}
	}
	m.clusters = out
	return out
}

// CloseIdle closes idle connections of every cluster.
func (m *Manager) CloseIdle() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.clusters {
		c.CloseIdle()
	}
}

// Dial opens a raw TCP connection to a host of the cluster, under the
// max_connections circuit breaker and the connect timeout (tcp_proxy).
func (c *Cluster) Dial(ctx context.Context, addr string) (net.Conn, error) {
	st := c.st.Load()
	return c.dialCounted(ctx, addr, st.cfg.Thresholds.MaxConnections, true, func(ctx context.Context, addr string) (net.Conn, error) {
		if p := c.tls.Load().poolsFor(addr); p != nil {
			b := p.pools()
			if b.err != nil {
				return nil, &DialError{Addr: addr, Err: b.err}
			}
			return b.dial(ctx, addr) // a DialError on failure
		}
		return c.tr.Load().dial.raw(ctx, addr)
	})
}

// CloseWrite half-closes the connection when the underlying one can.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
