package proxymetrics

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"weft.dev/weft/internal/proxy/peermeta"
)

// The mesh metrics carry Istio's standard names, labels and buckets, so
// dashboards and tools written for Istio (Grafana, Kiali) read them as
// they are.

// Istio's default buckets.
var (
	// DurationBuckets are the buckets of istio_request_duration_milliseconds.
	DurationBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}
	// SizeBuckets are the buckets of istio_request_bytes and
	// istio_response_bytes: 1 to 10^8, times 10.
	SizeBuckets = prometheus.ExponentialBuckets(1, 10, 9)
)

// Label values.
const (
	Unknown            = "unknown"
	ReporterSource     = "source"
	ReporterDest       = "destination"
	ProtocolHTTP       = "http"
	ProtocolGRPC       = "grpc"
	ProtocolTCP        = "tcp"
	noFlags            = "-"
	securityUnknown    = "unknown"
	securityNone       = "none"
	securityMutualTLS  = "mutual_tls"
	serviceSuffixLabel = "svc"
)

// peerLabels are the labels that describe one end of a request.
var (
	sourceLabels = []string{"source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version"}
	destLabels   = []string{"destination_workload", "destination_workload_namespace", "destination_principal", "destination_app", "destination_version",
		"destination_service", "destination_service_name", "destination_service_namespace"}
	httpLabels = concat([]string{"reporter"}, sourceLabels, destLabels,
		[]string{"request_protocol", "response_code", "grpc_response_status", "response_flags", "connection_security_policy"})
	tcpLabels = concat([]string{"reporter"}, sourceLabels, destLabels,
		[]string{"request_protocol", "response_flags", "connection_security_policy"})
)

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// HTTPRequest is one finished HTTP request, as the request path knows it.
type HTTPRequest struct {
	// Inbound is true on the server sidecar's inbound side
	// (reporter=destination), false on the client side (reporter=source).
	Inbound bool
	// Peer is the other end's workload from the peer header; zero when it
	// sent none.
	Peer peermeta.Workload
	// Service is the destination service's host name
	// ("reviews.default.svc.cluster.local"); empty when unknown.
	Service string
	// GRPC is true for gRPC requests.
	GRPC bool
	// Code is the response status (0 when none was sent).
	Code int
	// GRPCStatus is the grpc-status of a gRPC response, "" when none.
	GRPCStatus string
	// Flags are the response flags, "" when none.
	Flags string
	// Duration is the time from the request's arrival to its end.
	Duration time.Duration
	// RequestBytes and ResponseBytes are body sizes.
	RequestBytes, ResponseBytes int64
	// PeerPrincipal is the SPIFFE ID of the other end's verified
	// certificate (the client's on the inbound side, the server's on the
	// outbound side); "" when the hop was not mTLS.
	PeerPrincipal string
	// MTLS is true when the inbound connection was mutual TLS
	// (connection_security_policy="mutual_tls" on the server side).
	MTLS bool
}

// TCPConn identifies the label set of a proxied TCP connection.
type TCPConn struct {
	// Inbound is true on the server sidecar's inbound side.
	Inbound bool
	// Peer is the other end's workload; zero when unknown.
	Peer peermeta.Workload
	// Service is the destination service's host name; empty when unknown.
	Service string
	// Flags are the response flags, "" when none.
	Flags string
	// PeerPrincipal and MTLS are as in HTTPRequest.
	PeerPrincipal string
	MTLS          bool
}

type httpKey struct {
	principal  string
	mtls       bool
	peer       peermeta.Workload
	service    string
	grpcStatus string
	flags      string
	code       int
	inbound    bool
	grpc       bool
}

type httpHandles struct {
	requests  prometheus.Counter
	duration  prometheus.Observer
	reqBytes  prometheus.Observer
	respBytes prometheus.Observer
}

type tcpKey struct {
	principal string
	mtls      bool
	peer      peermeta.Workload
	service   string
	flags     string
	inbound   bool
}

type tcpHandles struct {
	sent, received, opened, closed prometheus.Counter
}

// istio holds the mesh metrics and the caches of their per-label-set
// handles. A cache is a map that is never written once published: reads
// are one atomic load and a lookup, without locks; a new label set copies
// the map under mu (rare: label sets are bounded by maxSeries per family,
// and past it by services, codes and flags).
type istio struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	reqBytes  *prometheus.HistogramVec
	respBytes *prometheus.HistogramVec
	tcpSent   *prometheus.CounterVec
	tcpRecv   *prometheus.CounterVec
	tcpOpened *prometheus.CounterVec
	tcpClosed *prometheus.CounterVec

	local peermeta.Workload // with "unknown" for empty fields
	// principal is the sidecar's own SPIFFE ID, "" when it has none.
	principal string

	// overflow counts label sets recorded with unknown peer labels
	// because their family reached maxSeries.
	overflow                  *prometheus.CounterVec
	httpOverflow, tcpOverflow prometheus.Counter
	// maxSeries caps the label sets (so the series of each metric) of
	// each family, HTTP and TCP.
	maxSeries atomic.Int64

	mu   sync.Mutex
	http atomic.Pointer[map[httpKey]*httpHandles]
	tcp  atomic.Pointer[map[tcpKey]*tcpHandles]
}

// DefaultMaxSeries is the default cap on the label sets of each family
// of mesh metrics (HTTP: istio_requests_total and the three histograms;
// TCP: the four istio_tcp_* counters).
const DefaultMaxSeries = 1000

func newIstio() *istio {
	m := &istio{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_requests_total", Help: "Requests handled by the sidecar, by source, destination and outcome.",
		}, httpLabels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "istio_request_duration_milliseconds", Help: "Request duration in milliseconds.", Buckets: DurationBuckets,
		}, httpLabels),
		reqBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "istio_request_bytes", Help: "Request body sizes in bytes.", Buckets: SizeBuckets,
		}, httpLabels),
		respBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "istio_response_bytes", Help: "Response body sizes in bytes.", Buckets: SizeBuckets,
		}, httpLabels),
		tcpSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_sent_bytes_total", Help: "Bytes sent to the downstream of TCP connections, counted as they are copied.",
		}, tcpLabels),
		tcpRecv: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_received_bytes_total", Help: "Bytes received from the downstream of TCP connections, counted as they are copied.",
		}, tcpLabels),
		tcpOpened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_connections_opened_total", Help: "TCP connections opened.",
		}, tcpLabels),
		tcpClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_connections_closed_total", Help: "TCP connections closed.",
		}, tcpLabels),
		overflow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_proxy_istio_series_overflow_total",
			Help: "Requests (family http) and connections (family tcp) recorded with unknown peer labels because their family of istio_* metrics reached its cap of label sets.",
		}, []string{"family"}),
	}
	m.httpOverflow, m.tcpOverflow = m.overflow.WithLabelValues("http"), m.overflow.WithLabelValues("tcp")
	m.maxSeries.Store(DefaultMaxSeries)
	m.setLocal(peermeta.Workload{})
	hm, tm := map[httpKey]*httpHandles{}, map[tcpKey]*tcpHandles{}
	m.http.Store(&hm)
	m.tcp.Store(&tm)
	return m
}

func (m *istio) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.duration, m.reqBytes, m.respBytes, m.tcpSent, m.tcpRecv, m.tcpOpened, m.tcpClosed, m.overflow}
}

func orUnknown(s string) string {
	if s == "" {
		return Unknown
	}
	return s
}

func (m *istio) setLocal(w peermeta.Workload) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.local = peermeta.Workload{
		Name: orUnknown(w.Name), Namespace: orUnknown(w.Namespace), App: orUnknown(w.App),
		Version: orUnknown(w.Version), ServiceAccount: w.ServiceAccount,
	}
	// Label sets built for the old identity are dropped from the cache;
	// their series stay.
	hm, tm := map[httpKey]*httpHandles{}, map[tcpKey]*tcpHandles{}
	m.http.Store(&hm)
	m.tcp.Store(&tm)
}

// SetPrincipal sets the sidecar's own SPIFFE ID, reported as its end's
// principal on hops that are mTLS. Call it before serving.
func (m *Metrics) SetPrincipal(p string) {
	if m == nil {
		return
	}
	m.istio.mu.Lock()
	m.istio.principal = p
	m.istio.mu.Unlock()
}

// SetMaxSeries caps the label sets of each family of mesh metrics (HTTP
// and TCP) at n (DefaultMaxSeries when n <= 0). Once a family has n, a
// request or connection with a label set it has not seen is recorded with
// the peer's labels (workload, namespace, app, version, principal) set to
// "unknown" and counted in weft_proxy_istio_series_overflow_total: peer
// metadata arrives in a header anyone can send on a plaintext hop, and
// must not be a way to mint series without end. The other labels come
// from config and bounded protocol values. Call it before serving.
func (m *Metrics) SetMaxSeries(n int) {
	if m == nil {
		return
	}
	if n <= 0 {
		n = DefaultMaxSeries
	}
	m.istio.maxSeries.Store(int64(n))
}

// SetWorkload sets the sidecar's own workload, the source of outbound
// requests and the destination of inbound ones. Call it before serving.
func (m *Metrics) SetWorkload(w peermeta.Workload) {
	if m != nil {
		m.istio.setLocal(w)
	}
}

// RecordHTTP records a finished HTTP request in istio_requests_total,
// istio_request_duration_milliseconds, istio_request_bytes and
// istio_response_bytes. It does not allocate once the label set was seen,
// nor for a request that overflows a full family (SetMaxSeries) once the
// label set without its peer was seen.
func (m *Metrics) RecordHTTP(r *HTTPRequest) {
	if m == nil {
		return
	}
	k := httpKey{principal: r.PeerPrincipal, mtls: r.MTLS, peer: r.Peer, service: r.Service, grpcStatus: grpcStatusLabel(r.GRPCStatus), flags: r.Flags, code: r.Code, inbound: r.Inbound, grpc: r.GRPC}
	cache := *m.istio.http.Load()
	h := cache[k]
	if h == nil && int64(len(cache)) >= m.istio.maxSeries.Load() {
		// Full: the label set without its peer, if seen, is recorded
		// without a lock; else the slow path makes it.
		if h = cache[k.withoutPeer()]; h != nil {
			m.istio.httpOverflow.Inc()
		}
	}
	if h == nil {
		h = m.istio.httpHandles(k)
	}
	h.requests.Inc()
	h.duration.Observe(float64(r.Duration) / float64(time.Millisecond))
	h.reqBytes.Observe(float64(r.RequestBytes))
	h.respBytes.Observe(float64(r.ResponseBytes))
}

// TCPBytes are the byte counters of one open TCP connection, for the
// copy loops to add to as bytes pass, so a long-lived connection's bytes
// show before it closes. Adding is one atomic add; the zero value (no
// metrics) counts nothing.
type TCPBytes struct {
	sent, received prometheus.Counter
}

// Sent counts n bytes sent to the downstream.
func (b TCPBytes) Sent(n int) {
	if b.sent != nil && n > 0 {
		b.sent.Add(float64(n))
	}
}

// Received counts n bytes received from the downstream.
func (b TCPBytes) Received(n int) {
	if b.received != nil && n > 0 {
		b.received.Add(float64(n))
	}
}

// TCPOpened counts a proxied TCP connection as opened and returns the
// counters its bytes go to: the label set of the open connection (no
// response flags yet), as Istio's periodic reports of open connections.
func (m *Metrics) TCPOpened(c *TCPConn) TCPBytes {
	if m == nil {
		return TCPBytes{}
	}
	h := m.tcpHandles(c, true)
	h.opened.Inc()
	return TCPBytes{sent: h.sent, received: h.received}
}

// TCPClosed counts a proxied TCP connection as closed, with its final
// response flags.
func (m *Metrics) TCPClosed(c *TCPConn) {
	if m == nil {
		return
	}
	m.tcpHandles(c, false).closed.Inc()
}

// tcpHandles finds the handles of a connection's label set; opening
// counts an overflow (a connection is counted once).
func (m *Metrics) tcpHandles(c *TCPConn, opening bool) *tcpHandles {
	k := tcpKey{principal: c.PeerPrincipal, mtls: c.MTLS, peer: c.Peer, service: c.Service, flags: c.Flags, inbound: c.Inbound}
	cache := *m.istio.tcp.Load()
	if h := cache[k]; h != nil {
		return h
	}
	if int64(len(cache)) >= m.istio.maxSeries.Load() {
		if h := cache[k.withoutPeer()]; h != nil {
			if opening {
				m.istio.tcpOverflow.Inc()
			}
			return h
		}
	}
	return m.istio.tcpHandlesSlow(k, opening)
}

// withoutPeer is the label set of an overflowing request: the peer's
// workload and principal unknown.
func (k httpKey) withoutPeer() httpKey {
	k.peer, k.principal = peermeta.Workload{}, ""
	return k
}

func (k tcpKey) withoutPeer() tcpKey {
	k.peer, k.principal = peermeta.Workload{}, ""
	return k
}

// grpcStatusLabel bounds grpc_response_status, which comes from a
// response header: a gRPC status code is a decimal number (0 to 16 today);
// anything that is not one or two digits is "unknown".
func grpcStatusLabel(s string) string {
	switch {
	case s == "":
		return ""
	case len(s) <= 2 && isDigit(s[0]) && isDigit(s[len(s)-1]):
		return s
	}
	return Unknown
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// labels builds the common label values: reporter, source, destination.
func (m *istio) labels(inbound bool, peer peermeta.Workload, service, peerPrincipal string) []string {
	p := peermeta.Workload{Name: orUnknown(peer.Name), Namespace: orUnknown(peer.Namespace), App: orUnknown(peer.App), Version: orUnknown(peer.Version)}
	src, dst, reporter := m.local, p, ReporterSource
	if inbound {
		src, dst, reporter = p, m.local, ReporterDest
	}
	svcName, svcNS := serviceLabels(service)
	if svcNS == Unknown && inbound {
		svcNS = m.local.Namespace
	}
	// Principals come from verified peer certificates (mTLS hops only):
	// the peer's from its certificate, the sidecar's own from its SVID.
	localP, peerP := Unknown, Unknown
	if peerPrincipal != "" {
		peerP = peerPrincipal
		if m.principal != "" {
			localP = m.principal
		}
	}
	srcP, dstP := localP, peerP
	if inbound {
		srcP, dstP = peerP, localP
	}
	return []string{reporter,
		src.Name, src.Namespace, srcP, src.App, src.Version,
		dst.Name, dst.Namespace, dstP, dst.App, dst.Version,
		orUnknown(service), svcName, svcNS}
}

// securityPolicy is connection_security_policy: as in Istio, only the
// server side reports it ("mutual_tls" or "none"); the client side says
// "unknown".
func securityPolicy(inbound, mtls bool) string {
	switch {
	case inbound && mtls:
		return securityMutualTLS
	case inbound:
		return securityNone
	}
	return securityUnknown
}

// serviceLabels splits "name.namespace.svc.<domain>" into name and
// namespace; other host names are their own name in an unknown namespace.
func serviceLabels(host string) (name, namespace string) {
	if host == "" {
		return Unknown, Unknown
	}
	parts := strings.SplitN(host, ".", 4)
	if len(parts) >= 3 && parts[2] == serviceSuffixLabel {
		return parts[0], parts[1]
	}
	return host, Unknown
}

func (m *istio) httpHandles(k httpKey) *httpHandles {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.http.Load()
	if h := old[k]; h != nil {
		return h
	}
	if int64(len(old)) >= m.maxSeries.Load() {
		m.httpOverflow.Inc()
		k = k.withoutPeer()
		if h := old[k]; h != nil {
			return h
		}
		// The label sets without a peer are bounded by config and
		// protocol values; they may go past the cap.
	}
	proto := ProtocolHTTP
	if k.grpc {
		proto = ProtocolGRPC
	}
	flags := k.flags
	if flags == "" {
		flags = noFlags
	}
	lv := append(m.labels(k.inbound, k.peer, k.service, k.principal), proto, strconv.Itoa(k.code), k.grpcStatus, flags, securityPolicy(k.inbound, k.mtls))
	h := &httpHandles{
		requests:  m.requests.WithLabelValues(lv...),
		duration:  m.duration.WithLabelValues(lv...),
		reqBytes:  m.reqBytes.WithLabelValues(lv...),
		respBytes: m.respBytes.WithLabelValues(lv...),
	}
	next := make(map[httpKey]*httpHandles, len(old)+1)
	for kk, v := range old {
		next[kk] = v
	}
	next[k] = h
	m.http.Store(&next)
	return h
}

func (m *istio) tcpHandlesSlow(k tcpKey, opening bool) *tcpHandles {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.tcp.Load()
	if h := old[k]; h != nil {
		return h
	}
	if int64(len(old)) >= m.maxSeries.Load() {
		if opening {
			m.tcpOverflow.Inc()
		}
		k = k.withoutPeer()
		if h := old[k]; h != nil {
			return h
		}
	}
	flags := k.flags
	if flags == "" {
		flags = noFlags
	}
	lv := append(m.labels(k.inbound, k.peer, k.service, k.principal), ProtocolTCP, flags, securityPolicy(k.inbound, k.mtls))
	h := &tcpHandles{
		sent: m.tcpSent.WithLabelValues(lv...), received: m.tcpRecv.WithLabelValues(lv...),
		opened: m.tcpOpened.WithLabelValues(lv...), closed: m.tcpClosed.WithLabelValues(lv...),
	}
	next := make(map[tcpKey]*tcpHandles, len(old)+1)
	for kk, v := range old {
		next[kk] = v
	}
	next[k] = h
	m.tcp.Store(&next)
	return h
}

// ServiceOf is the destination service of a request or connection to a
// cluster: the cluster's Weft metadata (meta; set on inbound clusters),
// the host of an outbound cluster
// ("outbound|9080|v1|reviews.default.svc.cluster.local"), or the name of
// any other cluster. An inbound cluster without metadata has none ("").
func ServiceOf(cluster, meta string, inbound bool) string {
	switch {
	case meta != "":
		return meta
	case inbound:
		return ""
	case strings.HasPrefix(cluster, "outbound|"):
		return cluster[strings.LastIndexByte(cluster, '|')+1:]
	}
	return cluster
}
