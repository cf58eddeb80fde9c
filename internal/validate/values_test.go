package validate

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// valuesBase declares reviews (subsets v1, v2, v3) and ratings on port
// 9080 (lines 1-19 of each test's mesh.yaml).
const valuesBase = `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: reviews}
spec:
  ports: [{name: http, number: 9080}]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: ratings}
spec:
  ports: [{name: http, number: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}, {name: v3, labels: {version: v3}}]
---
`

// TestValueFindings checks the text and place of the findings about
// values the sidecar would refuse.
func TestValueFindings(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{name: "weights that would wrap an int32 to 100", yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 2147483647}
    - {destination: {host: reviews, subset: v2}, weight: 2147483647}
    - {destination: {host: reviews, subset: v3}, weight: 102}
`, want: []string{
			"mesh.yaml:26: VirtualService default/reviews: spec.http[0].route: weights add up to 4294967396, not 100; adjust them so they total 100",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap := NewBuilder().Build(parse(t, "mesh.yaml", valuesBase+tc.yaml), nil)
			if diff := cmp.Diff(tc.want, findingTexts(Findings(snap))); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}
