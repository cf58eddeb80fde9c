package app_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestDelegateThroughGateway: a VirtualService bound to the gateway
// delegates its /shop routes to a VirtualService without hosts; the
// gateway, translated by the control plane, serves the delegate's routes
// within the root's match, the root's other routes as before, and not a
// delegate route outside the root's match.
func TestDelegateThroughGateway(t *testing.T) {
	backend := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name+" "+r.URL.Path) }))
		t.Cleanup(s.Close)
		return s
	}
	cart, items, front := backend("cart"), backend("items"), backend("front")
	snap := meshModel(t, "delegate.yaml", gatewayYAML+serviceEntryYAML("cart", serverPort(cart))+serviceEntryYAML("items", serverPort(items))+serviceEntryYAML("front", serverPort(front))+
		shopVirtualService+`  - match: [{uri: {prefix: /shop}}]
    delegate: {name: shop-routes}
  - route: [{destination: {host: front.default.svc.cluster.local}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop-routes, namespace: default}
spec:
  http:
  - match: [{uri: {prefix: /shop/cart}}]
    route: [{destination: {host: cart}}]
  - route: [{destination: {host: items}}]
`)
	gw := startEnforcingGateway(t, snap)
	base := "http://" + gw.ListenerAddr(t, "0.0.0.0_8080")
	for path, want := range map[string]string{
		"/shop/cart/1": "cart /shop/cart/1",
		"/shop/items":  "items /shop/items",
		"/shop":        "items /shop",
		"/about":       "front /about",
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != want {
			t.Errorf("GET %s: %d %q; want 200 %q", path, resp.StatusCode, b, want)
		}
	}
}
