package xdsserver

import "github.com/prometheus/client_golang/prometheus"

// metrics are the server's Prometheus metrics (names under weft_xds_).
type metrics struct {
	connected         prometheus.Gauge
	pushes            *prometheus.CounterVec
	pushTime          prometheus.Histogram
	convergence       prometheus.Histogram
	nacks             *prometheus.CounterVec
	translationErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_xds_connected_proxies", Help: "Proxies with at least one open xDS stream.",
		}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_xds_pushes_total", Help: "xDS responses sent, by type (LDS, RDS, CDS, EDS).",
		}, []string{"type"}),
		pushTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "weft_xds_push_duration_seconds", Help: "Time to translate and publish a model snapshot to every connected proxy.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		convergence: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "weft_xds_convergence_seconds", Help: "Time from a model snapshot being built to a proxy ACKing it, per type.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_xds_nacks_total", Help: "xDS responses rejected by proxies, by type.",
		}, []string{"type"}),
		translationErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_xds_translation_errors_total", Help: "Per-proxy translations that failed (the proxy kept its last good config).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.connected, m.pushes, m.pushTime, m.convergence, m.nacks, m.translationErrors)
	}
	return m
}
