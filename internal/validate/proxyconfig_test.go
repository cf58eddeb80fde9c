package validate

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"weft.dev/weft/internal/config"
)

// TestProxyConfigChecks checks what is refused in ProxyConfigs (a
// negative concurrency, a name no environment variable has, a NUL in a
// value, an image, a second one without selector in a namespace, a
// second one selecting a Workload, an apiVersion ProxyConfig does not
// have), what is only warned of (ISTIO_META_ variables), and that the
// rest reach the snapshot, which merges them per workload.
func TestProxyConfigChecks(t *testing.T) {
	set, _ := config.Parse("p.yaml", []byte(`apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: reviews-v1, namespace: shop}
spec:
  service: reviews
  labels: {version: v1}
  command: [sleep, "1"]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: ratings, namespace: shop}
spec:
  command: [sleep, "1"]
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: mesh, namespace: istio-system}
spec:
  concurrency: 0
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: shop, namespace: shop}
spec:
  environmentVariables: {GOGC: "200", ISTIO_META_DNS_CAPTURE: "true"}
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: shop-too, namespace: shop}
spec:
  concurrency: 1
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: reviews, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  concurrency: 1
  environmentVariables: {GOGC: "100"}
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: reviews-v1, namespace: shop}
spec:
  selector: {matchLabels: {version: v1}}
  concurrency: 4
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: bad, namespace: shop}
spec:
  selector: {matchLabels: {app: nobody}}
  concurrency: -2
  environmentVariables: {"A=B": x, NUL: "a\0b"}
  image: {imageType: distroless}
---
apiVersion: networking.istio.io/v1
kind: ProxyConfig
metadata: {name: v1, namespace: shop}
spec: {}
`))
	snap := NewBuilder().Build(set, nil)
	var got []string
	for _, f := range Findings(snap) { // the parser's too
		got = append(got, f.String())
	}
	want := []string{
		"p.yaml:25: ProxyConfig shop/shop: spec.environmentVariables.ISTIO_META_DNS_CAPTURE: set in the proxy's environment, but Weft's proxy does not send ISTIO_META_ variables to the control plane as node metadata, so it changes nothing; remove it to silence this warning (warning)",
		"p.yaml:31: ProxyConfig shop/shop-too: spec: namespace shop already has a ProxyConfig without selector, ProxyConfig shop/shop (p.yaml:21); keep one",
		"p.yaml:45: ProxyConfig shop/reviews-v1: spec.selector: it selects Workload shop/reviews-v1, which ProxyConfig shop/reviews (p.yaml:33) selects too; a workload takes one ProxyConfig with a selector: merge the two, or narrow a selector",
		"p.yaml:53: ProxyConfig shop/bad: spec.concurrency: concurrency -2 is negative; use 0 (every CPU), a number of threads, or leave it out for the proxy's default (2 for a sidecar)",
		"p.yaml:54: ProxyConfig shop/bad: spec.environmentVariables.NUL: the value has a NUL byte, which no environment variable can hold",
		`p.yaml:54: ProxyConfig shop/bad: spec.environmentVariables: "A=B" is not an environment variable's name: a name is not empty and has no '=' or NUL`,
		"p.yaml:55: ProxyConfig shop/bad: spec.image: image is not supported: Weft runs its weft-proxy binary, not a container image; remove it",
		`p.yaml:57: ProxyConfig shop/v1: apiVersion: apiVersion "networking.istio.io/v1" is not one Weft reads for ProxyConfig; use networking.istio.io/v1beta1`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
	var names []string
	for _, pc := range snap.ProxyConfigs {
		names = append(names, pc.Namespace+"/"+pc.Name)
	}
	if diff := cmp.Diff([]string{"istio-system/mesh", "shop/reviews", "shop/shop"}, names); diff != "" {
		t.Errorf("ProxyConfigs in force (-want +got):\n%s", diff)
	}
	w := set.Get(config.KindWorkload, "shop", "reviews-v1").Spec.(*config.Workload)
	s := snap.ProxySettingsFor("shop", w.InstanceLabels())
	if diff := cmp.Diff([]string{"istio-system/mesh", "shop/shop", "shop/reviews"}, s.From); diff != "" {
		t.Errorf("reviews-v1's ProxyConfigs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"GOGC": "100", "ISTIO_META_DNS_CAPTURE": "true"}, s.Env); s.Concurrency != 1 || diff != "" {
		t.Errorf("reviews-v1's settings: concurrency %d, want 1; env (-want +got):\n%s", s.Concurrency, diff)
	}
}
