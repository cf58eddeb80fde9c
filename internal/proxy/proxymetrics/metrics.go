// Package proxymetrics holds the proxy's Prometheus metrics on a private
// registry: Weft's own (weft_proxy_*) and the mesh metrics with Istio's
// standard names and labels (istio.go). Recording is cheap: metric
// handles are looked up once per label set and cached, so the request
// path does not allocate.
package proxymetrics

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the proxy's core metrics. A nil *Metrics records nothing.
type Metrics struct {
	// Registry is the private registry served on /stats/prometheus.
	Registry *prometheus.Registry

	requests    *prometheus.CounterVec
	flags       *prometheus.CounterVec
	xdsUpdates  *prometheus.CounterVec
	xdsNACKs    *prometheus.CounterVec
	activeConns prometheus.Gauge
	activeRq    prometheus.Gauge
	ready       prometheus.Gauge
	istio       *istio

	mu    sync.RWMutex
	cache map[reqKey]prometheus.Counter
	fmu   sync.RWMutex
	fc    map[string]prometheus.Counter
}

type reqKey struct {
	cluster string
	code    int
}

// New registers the metrics on a new registry.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_proxy_requests_total", Help: "HTTP requests by upstream cluster and response code.",
		}, []string{"cluster", "code"}),
		flags: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_proxy_response_flags_total", Help: "Requests and connections that ended with an Envoy response flag.",
		}, []string{"flag"}),
		xdsUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_proxy_xds_updates_total", Help: "xDS responses accepted, by type.",
		}, []string{"type"}),
		xdsNACKs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_proxy_xds_nacks_total", Help: "xDS responses rejected, by type.",
		}, []string{"type"}),
		activeConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_proxy_downstream_connections_active", Help: "Open downstream connections.",
		}),
		activeRq: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_proxy_requests_active", Help: "HTTP requests in flight.",
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_proxy_ready", Help: "1 once the first full config has been applied.",
		}),
		cache: map[reqKey]prometheus.Counter{},
		fc:    map[string]prometheus.Counter{},
		istio: newIstio(),
	}
	m.Registry.MustRegister(m.requests, m.flags, m.xdsUpdates, m.xdsNACKs, m.activeConns, m.activeRq, m.ready,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.Registry.MustRegister(m.istio.collectors()...)
	return m
}

// Request counts a finished HTTP request.
func (m *Metrics) Request(cluster string, code int, flags string) {
	if m == nil {
		return
	}
	k := reqKey{cluster, code}
	m.mu.RLock()
	c, ok := m.cache[k]
	m.mu.RUnlock()
	if !ok {
		c = m.requests.WithLabelValues(cluster, strconv.Itoa(code))
		m.mu.Lock()
		m.cache[k] = c
		m.mu.Unlock()
	}
	c.Inc()
	if flags != "" {
		m.Flag(flags)
	}
}

// Flag counts a response flag.
func (m *Metrics) Flag(flag string) {
	if m == nil {
		return
	}
	m.fmu.RLock()
	c, ok := m.fc[flag]
	m.fmu.RUnlock()
	if !ok {
		c = m.flags.WithLabelValues(flag)
		m.fmu.Lock()
		m.fc[flag] = c
		m.fmu.Unlock()
	}
	c.Inc()
}

// XDS counts an xDS response of a type (its short name), accepted or not.
func (m *Metrics) XDS(typ string, acked bool) {
	if m == nil {
		return
	}
	if acked {
		m.xdsUpdates.WithLabelValues(typ).Inc()
	} else {
		m.xdsNACKs.WithLabelValues(typ).Inc()
	}
}

// ConnOpened and ConnClosed track downstream connections.
func (m *Metrics) ConnOpened() {
	if m != nil {
		m.activeConns.Inc()
	}
}

// ConnClosed is the pair of ConnOpened.
func (m *Metrics) ConnClosed() {
	if m != nil {
		m.activeConns.Dec()
	}
}

// RequestStarted and RequestEnded track requests in flight.
func (m *Metrics) RequestStarted() {
	if m != nil {
		m.activeRq.Inc()
	}
}

// RequestEnded is the pair of RequestStarted.
func (m *Metrics) RequestEnded() {
	if m != nil {
		m.activeRq.Dec()
	}
}

// SetReady records readiness.
func (m *Metrics) SetReady(ready bool) {
	if m == nil {
		return
	}
	if ready {
		m.ready.Set(1)
	} else {
		m.ready.Set(0)
	}
}
