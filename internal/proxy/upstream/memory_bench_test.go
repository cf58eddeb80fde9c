package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"runtime"
	"testing"

	"weft.dev/weft/internal/proxy/proxyconfig"
)

// BenchmarkClusterMemory reports the heap a cluster keeps (retained-B/cluster):
// 1000 EDS clusters of 3 endpoints each, as a sidecar of a 1000-service
// mesh holds them, measured after a collection.
func BenchmarkClusterMemory(b *testing.B) {
	b.Run("plaintext", func(b *testing.B) { benchClusterMemory(b, false) })
	// Mesh mTLS, as every cluster of a mesh service with sidecars.
	b.Run("mtls", func(b *testing.B) { benchClusterMemory(b, true) })
}

// noIdentity is an identity that is never asked for a certificate (the
// pools are built on first use, and the benchmark sends nothing).
type noIdentity struct{}

func (noIdentity) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return nil, errors.New("none")
}

func (noIdentity) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return nil, errors.New("none")
}

func (noIdentity) TrustBundle() *x509.CertPool { return nil }

func benchClusterMemory(b *testing.B, mesh bool) {
	const n = 1000
	cfgs := make(map[string]*proxyconfig.Cluster, n)
	eps := make(map[string]*proxyconfig.Endpoints, n)
	for i := range n {
		name := fmt.Sprintf("outbound|80||svc-%d.ns.svc.cluster.local", i)
		c := cluster(proxyconfig.LBRoundRobin)
		c.Name, c.EDSServiceName = name, name
		if mesh {
			c.TLS = &proxyconfig.UpstreamTLS{SNI: "outbound_.80_._." + name[len("outbound|80||"):],
				TLSCommon: proxyconfig.TLSCommon{CertSDS: proxyconfig.SDSDefault, CASDS: proxyconfig.SDSRootCA}}
		}
		cfgs[name] = c
		e := endpoints(1, 1, 1)
		for j := range e.Localities[0].Endpoints {
			e.Localities[0].Endpoints[j].Address = fmt.Sprintf("10.%d.%d.%d:80", i/256, i%256, j)
		}
		e.ClusterName = name
		eps[name] = e
	}
	var retained float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m := NewManager()
		if mesh {
			m.SetIdentity(noIdentity{})
		}
		m.Update(cfgs, eps)
		runtime.GC()
		runtime.ReadMemStats(&after)
		retained = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(m)
	}
	b.ReportMetric(retained, "retained-B/cluster")
}
