package ca

import (
	"crypto/x509"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the CA's metrics on the control plane's registry.
type metrics struct {
	expiry   *prometheus.GaugeVec
	issued   prometheus.Counter
	rejected *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_ca_cert_expiry_timestamp_seconds",
			Help: "When each CA certificate expires (Unix time); role is root or intermediate.",
		}, []string{"role", "subject", "serial"}),
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_ca_leaves_issued_total", Help: "Workload certificates (SVIDs) issued.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_ca_csr_rejections_total", Help: "Certificate requests refused, by reason.",
		}, []string{"reason"}),
	}
	for _, r := range []string{ReasonNoToken, ReasonBadToken, ReasonMalformed, ReasonBadSignature, ReasonUnsupportedKey,
		ReasonOtherSANs, ReasonNoIdentity, ReasonBadIdentity, ReasonWrongIdentity, ReasonBadValidity} {
		m.rejected.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.expiry, m.issued, m.rejected)
	}
	return m
}

func (m *metrics) setExpiry(roots, intermediates []*x509.Certificate) {
	m.expiry.Reset()
	for _, c := range roots {
		m.expiry.WithLabelValues("root", c.Subject.String(), serialString(c.SerialNumber)).Set(float64(c.NotAfter.Unix()))
	}
	for _, c := range intermediates {
		m.expiry.WithLabelValues("intermediate", c.Subject.String(), serialString(c.SerialNumber)).Set(float64(c.NotAfter.Unix()))
	}
}
