package xdstranslate_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/testcerts"
	"weft.dev/weft/internal/validate"
	"weft.dev/weft/internal/xdstranslate"
)

// TestGatewayServerWithExpiredCertLeftOut: when the certificate of a
// Gateway's HTTPS server expires, the gateway proxy gets no listener,
// filter chain or route configuration for that server, while the
// Gateway's plain HTTP server and the sidecars' routes of the
// VirtualService naming the Gateway stay; a renewed certificate brings the
// server back.
func TestGatewayServerWithExpiredCertLeftOut(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, dir)
	cert, key := ca.Issue(t, dir, "shop", testcerts.Leaf{DNSNames: []string{"shop.example.com"}})
	yaml := `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: reviews}
spec:
  ports: [{name: http, number: 9080}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shop-gw}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: SIMPLE, serverCertificate: ` + cert + `, privateKey: ` + key + `}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews, shop.example.com]
  gateways: [shop-gw, mesh]
  http:
  - route:
    - destination: {host: reviews}
`
	gateway := &xdstranslate.Proxy{ID: "router~127.0.0.1~ingress-0.default~default.svc.cluster.local", Type: xdstranslate.Gateway,
		Namespace: "default", Name: "ingress-0", Labels: map[string]string{"istio": "ingressgateway"}}
	sidecar := &xdstranslate.Proxy{ID: "sidecar~127.0.0.1~productpage-0.default~default.svc.cluster.local", Type: xdstranslate.Sidecar,
		Namespace: "default", Name: "productpage-0"}
	b := validate.NewBuilder()
	for _, step := range []struct {
		name          string
		certs         func()
		wantListeners []string
	}{
		{"valid", func() {}, []string{"0.0.0.0_8080", "0.0.0.0_8443"}},
		{"expired", func() {
			ca.Issue(t, dir, "shop", testcerts.Leaf{DNSNames: []string{"shop.example.com"}, NotAfter: time.Now().Add(-time.Minute)})
		}, []string{"0.0.0.0_8080"}},
		{"renewed", func() {
			ca.Issue(t, dir, "shop", testcerts.Leaf{DNSNames: []string{"shop.example.com"}})
		}, []string{"0.0.0.0_8080", "0.0.0.0_8443"}},
	} {
		t.Run(step.name, func(t *testing.T) {
			step.certs()
			set, _ := config.Parse(dir+"/mesh.yaml", []byte(yaml))
			snap := b.Build(set, nil)
			res, err := xdstranslate.Translate(snap, gateway)
			if err != nil {
				t.Fatal(err)
			}
			var listeners, routes []string
			for _, l := range res.Listeners {
				listeners = append(listeners, l.GetName())
				for _, fc := range l.GetFilterChains() {
					if fc.GetTransportSocket() != nil && !slices.Contains(step.wantListeners, "0.0.0.0_8443") {
						t.Errorf("listener %s has a TLS filter chain %q for the server left out", l.GetName(), fc.GetName())
					}
				}
			}
			slices.Sort(listeners)
			if diff := cmp.Diff(step.wantListeners, listeners); diff != "" {
				t.Errorf("gateway listeners (-want +got):\n%s", diff)
			}
			for _, rc := range res.Routes {
				routes = append(routes, rc.GetName())
			}
			if got := slices.ContainsFunc(routes, func(n string) bool { return strings.HasPrefix(n, "https.8443.") }); got != slices.Contains(step.wantListeners, "0.0.0.0_8443") {
				t.Errorf("gateway route configurations %v: one for the HTTPS server is %v", routes, got)
			}
			side, err := xdstranslate.Translate(snap, sidecar)
			if err != nil {
				t.Fatal(err)
			}
			routed := false
			for _, rc := range side.Routes {
				for _, vh := range rc.GetVirtualHosts() {
					if slices.Contains(vh.GetDomains(), "reviews.default.svc.cluster.local") && len(vh.GetRoutes()) > 0 {
						routed = true
					}
				}
			}
			if !routed {
				t.Errorf("the sidecar has no route for reviews; want the VirtualService naming the Gateway and mesh still in force")
			}
		})
	}
}
