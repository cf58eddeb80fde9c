package validate

import (
	"fmt"
	"strings"
	"testing"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
)

// benchConfig is the YAML of a mesh of n ServiceEntries (one HTTP port, 3
// static endpoints labelled v1..v3), with a DestinationRule (subsets v1, v2)
// and a VirtualService (a header match to v2, then 90/10 over v1/v2) for
// every tenth service.
func benchConfig(n int) []byte {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: svc-%[1]d
spec:
  hosts: [svc-%[1]d.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 8080, name: http, protocol: HTTP}
  endpoints:
  - {address: 10.%[2]d.%[3]d.1, labels: {version: v1}}
  - {address: 10.%[2]d.%[3]d.2, labels: {version: v2}}
  - {address: 10.%[2]d.%[3]d.3, labels: {version: v3}}
---
`, i, i/250, i%250)
		if i%10 != 0 {
			continue
		}
		fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: svc-%[1]d
spec:
  host: svc-%[1]d
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: svc-%[1]d
spec:
  hosts: [svc-%[1]d]
  http:
  - match:
    - headers: {x-canary: {exact: "yes"}}
    route:
    - destination: {host: svc-%[1]d, subset: v2}
  - route:
    - destination: {host: svc-%[1]d, subset: v1}
      weight: 90
    - destination: {host: svc-%[1]d, subset: v2}
      weight: 10
---
`, i)
	}
	return []byte(b.String())
}

// BenchmarkBuild parses the YAML of a 1000-service mesh and builds its
// model snapshot, as the control plane does on every config change.
func BenchmarkBuild(b *testing.B) {
	const services = 1000
	data := benchConfig(services)
	check := func(snap *model.Snapshot) {
		b.Helper()
		if len(snap.Services) != services || len(snap.VirtualServices) != services/10 || len(snap.DestinationRules) != services/10 {
			b.Fatalf("snapshot has %d services, %d VirtualServices, %d DestinationRules", len(snap.Services), len(snap.VirtualServices), len(snap.DestinationRules))
		}
		for _, st := range snap.Status {
			for _, f := range st.Findings {
				b.Fatalf("finding: %s", f)
			}
		}
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	builder := NewBuilder()
	for b.Loop() {
		set, findings := config.Parse("mesh.yaml", data)
		if len(findings) > 0 {
			b.Fatalf("parse: %s", findings[0])
		}
		check(builder.Build(set, nil))
	}
}

// BenchmarkBuildOnly is BenchmarkBuild without the parsing.
func BenchmarkBuildOnly(b *testing.B) {
	set, findings := config.Parse("mesh.yaml", benchConfig(1000))
	if len(findings) > 0 {
		b.Fatalf("parse: %s", findings[0])
	}
	b.ReportAllocs()
	builder := NewBuilder()
	for b.Loop() {
		builder.Build(set, nil)
	}
}
