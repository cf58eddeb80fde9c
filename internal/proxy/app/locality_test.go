package app_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/xdsmeta"
)

// TestLocalityFailover: a gateway at us-east/zone-a, translated by the
// control plane, sends a locality-aware service's requests to the
// endpoint in its zone only; once that endpoint fails and outlier
// detection ejects it, to the endpoint in the same region, never to the
// one in another region while that one serves.
func TestLocalityFailover(t *testing.T) {
	type backend struct {
		hits atomic.Int64
		fail atomic.Bool
		srv  *httptest.Server
	}
	start := func(name string) *backend {
		b := &backend{}
		b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b.hits.Add(1)
			if b.fail.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, name)
		}))
		t.Cleanup(b.srv.Close)
		return b
	}
	near, region, far := start("near"), start("region"), start("far")
	entry := serviceEntryWith("shop",
		"ports: {http: "+serverPort(near.srv)+"}, locality: us-east/zone-a",
		"ports: {http: "+serverPort(region.srv)+"}, locality: us-east/zone-b",
		"ports: {http: "+serverPort(far.srv)+"}, locality: eu-west/zone-c")
	snap := meshModel(t, "locality.yaml", gatewayYAML+entry+`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop, namespace: default}
spec:
  host: shop.default.svc.cluster.local
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}
---
`+shopVirtualService+`  - route: [{destination: {host: shop.default.svc.cluster.local}}]
    retries: {attempts: 0}
`)
	cp := proxytest.StartControlPlane(t)
	gw := proxytest.StartProxy(t, cp, "ingressgateway", proxytest.ProxyOptions{Type: xdsmeta.ProxyTypeGateway})
	cp.Set(t, gw.NodeID(), gatewayConfigAt(t, snap, "us-east/zone-a")...)
	gw.WaitReady(t)
	if logs := gw.Logs.String(); strings.Contains(logs, "not enforced") {
		t.Errorf("the gateway lists config it does not enforce:\n%s", logs)
	}
	base := "http://" + gw.ListenerAddr(t, "0.0.0.0_8080")
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get(base + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for i := range 20 {
		if code, body := get(); code != 200 || body != "near" {
			t.Fatalf("request %d: %d %q; want 200 from the endpoint in the gateway's zone", i, code, body)
		}
	}
	near.fail.Store(true)
	codes, bodies := map[int]int{}, map[string]int{}
	for range 20 {
		code, body := get()
		codes[code]++
		if code == 200 {
			bodies[body]++
		}
	}
	// Two 503s eject the near endpoint; then the zone next door serves.
	if codes[503] != 2 || bodies["region"] != 18 || far.hits.Load() != 0 {
		t.Errorf("after the near endpoint failed: statuses %v, answers %v, far hit %d times; want two 503s, then the same region's endpoint only", codes, bodies, far.hits.Load())
	}
	region.fail.Store(true)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if code, body := get(); code == 200 && body == "far" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("with both us-east endpoints failing, requests never reached eu-west")
		}
	}
}
