package xdstranslate

import (
	"fmt"
	"testing"

	"weft.dev/weft/internal/model"
)

// benchSnapshot is a mesh of n HTTP services with 3 endpoints each.
func benchSnapshot(n int) *model.Snapshot {
	s := &model.Snapshot{Services: map[string]*model.Service{}}
	for i := range n {
		host := model.FQDN(fmt.Sprintf("svc-%d", i), "default")
		svc := &model.Service{Hostname: host, Namespace: "default", Ports: []model.Port{{Name: "http", Number: 8080, Protocol: model.ProtocolHTTP}}}
		for j := range 3 {
			svc.Endpoints = append(svc.Endpoints, &model.Endpoint{
				Address: fmt.Sprintf("10.%d.%d.%d", i/250, i%250, j), Labels: map[string]string{"version": fmt.Sprintf("v%d", j)},
			})
		}
		s.Services[host] = svc
	}
	return s
}

// BenchmarkShared measures the per-snapshot work: clusters and endpoints.
func BenchmarkShared(b *testing.B) {
	snap := benchSnapshot(1000)
	b.ReportAllocs()
	for b.Loop() {
		BuildShared(snap)
	}
}

// BenchmarkTranslateSidecar measures one sidecar's listeners and routes
// on top of already built shared parts.
func BenchmarkTranslateSidecar(b *testing.B) {
	snap := benchSnapshot(1000)
	tr := New(snap)
	p := &Proxy{ID: "sidecar", Type: Sidecar, Namespace: "default"}
	b.ReportAllocs()
	for b.Loop() {
		tr.mu.Lock()
		tr.cache = map[string]*entry{}
		tr.mu.Unlock()
		if _, err := tr.Translate(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTranslateProxyless is the same for a proxyless gRPC client.
func BenchmarkTranslateProxyless(b *testing.B) {
	snap := benchSnapshot(1000)
	tr := New(snap)
	p := &Proxy{ID: "grpc", Type: Proxyless, Namespace: "default"}
	b.ReportAllocs()
	for b.Loop() {
		tr.mu.Lock()
		tr.cache = map[string]*entry{}
		tr.mu.Unlock()
		if _, err := tr.Translate(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTranslateCached is a proxy whose inputs match one already
// translated: the cost every further identical proxy pays.
func BenchmarkTranslateCached(b *testing.B) {
	snap := benchSnapshot(1000)
	tr := New(snap)
	p := &Proxy{ID: "sidecar", Type: Sidecar, Namespace: "default"}
	if _, err := tr.Translate(p); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tr.Translate(p); err != nil {
			b.Fatal(err)
		}
	}
}
