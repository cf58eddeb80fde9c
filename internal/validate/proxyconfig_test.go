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
// Environment variables of the Go runtime must be values it reads, and a
// second ProxyConfig selecting the ingress gateway is refused as one
// selecting a Workload is.
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
  environmentVariables: {GOGC: "200", ISTIO_META_DNS_CAPTURE: "true", GOMEMLIMIT: "+64MiB"}
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
  environmentVariables: {"A=B": x, NUL: "a\0b", GOMEMLIMIT: 1G, GOGC: fast, GOMAXPROCS: "0", PILOT_X: "1"}
  image: {imageType: distroless}
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: gw-a, namespace: default}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  concurrency: 1
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: gw-b, namespace: default}
spec:
  selector: {matchLabels: {app: istio-ingressgateway}}
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: empty, namespace: web}
spec:
  selector: {}
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
		"p.yaml:52: ProxyConfig shop/bad: spec.selector: it selects no Workload of namespace shop, nor the ingress gateway (namespace default, labels app: istio-ingressgateway, istio: ingressgateway); it applies to nothing yet (warning)",
		"p.yaml:53: ProxyConfig shop/bad: spec.concurrency: GOMAXPROCS in environmentVariables wins over concurrency in the proxy, so concurrency changes nothing; keep one (warning)",
		"p.yaml:53: ProxyConfig shop/bad: spec.concurrency: concurrency -2 is negative; use 0 (every CPU), a number of threads, or leave it out for the proxy's default (2 for a sidecar)",
		`p.yaml:54: ProxyConfig shop/bad: spec.environmentVariables.GOGC: "fast" is not a GOGC the Go runtime reads (it would use 100); use a percentage, such as 200, or off`,
		`p.yaml:54: ProxyConfig shop/bad: spec.environmentVariables.GOMAXPROCS: "0" is not a GOMAXPROCS the Go runtime reads (it would ignore it); use a number of threads, 1 or more, or set concurrency instead`,
		`p.yaml:54: ProxyConfig shop/bad: spec.environmentVariables.GOMEMLIMIT: "1G" is not a memory limit the Go runtime reads, and the proxy would not start; use bytes with an optional unit (B, KiB, MiB, GiB, TiB), such as 64MiB, or off`,
		"p.yaml:54: ProxyConfig shop/bad: spec.environmentVariables.NUL: the value has a NUL byte, which no environment variable can hold",
		"p.yaml:54: ProxyConfig shop/bad: spec.environmentVariables.PILOT_X: set in the proxy's environment, but Weft's proxy does not read Istio's agent variables, so it changes nothing; remove it to silence this warning (warning)",
		`p.yaml:54: ProxyConfig shop/bad: spec.environmentVariables: "A=B" is not an environment variable's name: a name is not empty and has no '=' or NUL`,
		"p.yaml:55: ProxyConfig shop/bad: spec.image: image is ignored: Weft runs its weft-proxy binary, not a container image; remove it to silence this warning (warning)",
		"p.yaml:68: ProxyConfig default/gw-b: spec.selector: it selects the ingress gateway, which ProxyConfig default/gw-a (p.yaml:57) selects too; a workload takes one ProxyConfig with a selector: merge the two, or narrow a selector",
		"p.yaml:74: ProxyConfig web/empty: spec.selector: an empty selector selects no workload; remove selector to apply it to every workload of namespace web (warning)",
		`p.yaml:76: ProxyConfig shop/v1: apiVersion: apiVersion "networking.istio.io/v1" is not one Weft reads for ProxyConfig; use networking.istio.io/v1beta1`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
	var names []string
	for _, pc := range snap.ProxyConfigs {
		names = append(names, pc.Namespace+"/"+pc.Name)
	}
	if diff := cmp.Diff([]string{"default/gw-a", "istio-system/mesh", "shop/reviews", "shop/shop", "web/empty"}, names); diff != "" {
		t.Errorf("ProxyConfigs in force (-want +got):\n%s", diff)
	}
	w := set.Get(config.KindWorkload, "shop", "reviews-v1").Spec.(*config.Workload)
	s := snap.ProxySettingsFor("shop", w.InstanceLabels())
	if diff := cmp.Diff([]string{"istio-system/mesh", "shop/shop", "shop/reviews"}, s.From); diff != "" {
		t.Errorf("reviews-v1's ProxyConfigs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"GOGC": "100", "ISTIO_META_DNS_CAPTURE": "true", "GOMEMLIMIT": "+64MiB"}, s.Env); s.Concurrency == nil || *s.Concurrency != 1 || diff != "" {
		t.Errorf("reviews-v1's settings: concurrency %v, want 1; env (-want +got):\n%s", s.Concurrency, diff)
	}
}

// TestProxyConfigLastGood: a ProxyConfig edited into an invalid one keeps
// its last good version in force, so the proxies it applies to keep their
// settings.
func TestProxyConfigLastGood(t *testing.T) {
	doc := func(limit string) *config.Set {
		set, _ := config.Parse("p.yaml", []byte(`apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: shop, namespace: shop}
spec:
  environmentVariables: {GOMEMLIMIT: `+limit+`}
`))
		return set
	}
	b := NewBuilder()
	b.Build(doc("64MiB"), nil)
	snap := b.Build(doc("64M"), nil)
	if diff := cmp.Diff(map[string]string{"GOMEMLIMIT": "64MiB"}, snap.ProxySettingsFor("shop", nil).Env); diff != "" {
		t.Errorf("settings after a bad edit (-want +got):\n%s", diff)
	}
	var served bool
	for _, st := range snap.Status {
		served = served || st.Name == "shop" && st.ServingLastGood
	}
	if !served {
		t.Errorf("status does not say the last good version serves: %+v", snap.Status)
	}
}
