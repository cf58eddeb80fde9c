package app_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route: [{destination: {host: shop.default.svc.cluster.local}}]
    retries: {attempts: 0}
`)
	gw := startGateway(t, snap)
	if logs := gw.Logs.String(); strings.Contains(logs, "not enforced") {
		t.Errorf("the gateway lists config it does not enforce:\n%s", logs)
	}
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
