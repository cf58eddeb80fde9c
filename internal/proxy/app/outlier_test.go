package app_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestOutlierDetection runs a gateway proxy whose config is Weft's
// translation of a DestinationRule with outlierDetection in front of two
// real backends, one of which answers 503: after two 503s in a row it is
// ejected, every request then goes to the good one, and the admin API
// flags it as Envoy does.
func TestOutlierDetection(t *testing.T) {
	var goodHits, badHits atomic.Int64
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		goodHits.Add(1)
		io.WriteString(w, "good")
	}))
	t.Cleanup(good.Close)
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		badHits.Add(1)
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	t.Cleanup(bad.Close)
	snap := meshModel(t, "outlier.yaml", gatewayYAML+serviceEntryYAML("shop", serverPort(good), serverPort(bad))+`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop, namespace: default}
spec:
  host: shop.default.svc.cluster.local
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}
---
`+shopVirtualService+`  - route: [{destination: {host: shop.default.svc.cluster.local}}]
    retries: {attempts: 0}
`)
	gw := startEnforcingGateway(t, snap)
	base := "http://" + gw.ListenerAddr(t, "0.0.0.0_8080")
	codes := map[int]int{}
	for range 20 {
		resp, err := http.Get(base + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes[resp.StatusCode]++
	}
	// Round robin sends every other request to the bad backend until its
	// second 503 in a row: two 503s, then the good one only.
	if codes[503] != 2 || codes[200] != 18 || badHits.Load() != 2 {
		t.Errorf("statuses %v, bad backend hit %d times; want two 503s before the ejection, then 200s", codes, badHits.Load())
	}
	badAddr := "127.0.0.1:" + serverPort(bad)
	want := "::" + badAddr + "::health_flags::/failed_outlier_check"
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(adminGet(t, gw, "/clusters"), want) {
		if time.Now().After(deadline) {
			t.Fatalf("/clusters does not flag the ejected host (%s):\n%s", want, adminGet(t, gw, "/clusters"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOutlierIgnoresPoolWaits: requests that time out while waiting for
// the cluster's only connection (max_connections 1, held by a slow
// request) never reached the host, so they do not eject it, though one
// gateway error would.
func TestOutlierIgnoresPoolWaits(t *testing.T) {
	release := make(chan struct{})
	var hits atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(backend.Close)
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // before backend.Close, which waits for the slow handler
	snap := meshModel(t, "outlier.yaml", gatewayYAML+serviceEntryYAML("shop", serverPort(backend))+`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop, namespace: default}
spec:
  host: shop.default.svc.cluster.local
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 10}}
    outlierDetection: {consecutiveGatewayErrors: 1, consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}
---
`+shopVirtualService+`  - match: [{uri: {exact: /slow}}]
    route: [{destination: {host: shop.default.svc.cluster.local}}]
  - route: [{destination: {host: shop.default.svc.cluster.local}}]
    timeout: 0.2s
    retries: {attempts: 0}
`)
	gw := startEnforcingGateway(t, snap)
	base := "http://" + gw.ListenerAddr(t, "0.0.0.0_8080")
	slow := make(chan int, 1)
	go func() {
		resp, err := http.Get(base + "/slow")
		if err != nil {
			slow <- 0
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	deadline := time.Now().Add(5 * time.Second)
	for hits.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the slow request never reached the backend")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 3 {
		resp, err := http.Get(base + "/fast")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Fatalf("request %d waiting for the held connection got %d; want 504", i, resp.StatusCode)
		}
	}
	if hits.Load() != 1 {
		t.Fatalf("the backend got %d requests; want only the slow one", hits.Load())
	}
	free()
	if code := <-slow; code != 200 {
		t.Fatalf("the slow request got %d", code)
	}
	if c := adminGet(t, gw, "/clusters"); strings.Contains(c, "failed_outlier_check") {
		t.Errorf("requests that waited for a connection ejected the host:\n%s", c)
	}
}
