package upstream

import (
	"fmt"
	"runtime"
	"testing"

	"weft.dev/weft/internal/proxy/proxyconfig"
)

// BenchmarkClusterMemory reports the heap a cluster keeps (retained-B/cluster):
// 1000 EDS clusters of 3 endpoints each, as a sidecar of a 1000-service
// mesh holds them, measured after a collection.
func BenchmarkClusterMemory(b *testing.B) {
	const n = 1000
	cfgs := make(map[string]*proxyconfig.Cluster, n)
	eps := make(map[string]*proxyconfig.Endpoints, n)
	for i := range n {
		name := fmt.Sprintf("outbound|80||svc-%d.ns.svc.cluster.local", i)
		c := cluster(proxyconfig.LBRoundRobin)
		c.Name, c.EDSServiceName = name, name
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
		m.Update(cfgs, eps)
		runtime.GC()
		runtime.ReadMemStats(&after)
		retained = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(m)
	}
	b.ReportMetric(retained, "retained-B/cluster")
}
