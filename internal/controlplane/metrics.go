package controlplane

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"weft.dev/weft/internal/model"
)

// metrics are the config pipeline's own metrics; xDS metrics live in
// xdsserver.
type metrics struct {
	builds   prometheus.Counter
	buildDur prometheus.Histogram
	invalid  prometheus.Gauge
	partial  prometheus.Gauge
	services prometheus.Gauge
	version  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		builds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_config_builds_total", Help: "Mesh model builds (one per debounced config change).",
		}),
		buildDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "weft_config_build_duration_seconds", Help: "Time to read sources, validate and build the mesh model.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		invalid: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_config_invalid_resources", Help: "Resources rejected by validation in the model in force.",
		}),
		partial: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_config_partial_resources", Help: "Resources in force without a part of them that failed validation (a Gateway server whose certificate does not load).",
		}),
		services: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_registry_services", Help: "Services in the registry.",
		}),
		version: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_config_version", Help: "Version of the mesh model in force.",
		}),
	}
	reg.MustRegister(m.builds, m.buildDur, m.invalid, m.partial, m.services, m.version)
	return m
}

func (m *metrics) observeBuild(snap *model.Snapshot, d time.Duration) {
	m.builds.Inc()
	m.buildDur.Observe(d.Seconds())
	invalid, partial := 0, 0
	for _, st := range snap.Status {
		switch st.State {
		case model.StateInvalid:
			invalid++
		case model.StatePartial:
			partial++
		}
	}
	m.invalid.Set(float64(invalid))
	m.partial.Set(float64(partial))
	m.services.Set(float64(len(snap.Services)))
	m.version.Set(float64(snap.Version))
}
