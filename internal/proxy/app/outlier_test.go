package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"weft.dev/weft/internal/proxy/admin"
	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/xdsmeta"
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

// TestPriorityFailover runs a sidecar whose cluster has two localities,
// one at priority 0 and one at priority 1 (Istio's locality failover),
// and outlier detection: while the priority-0 backend answers, it takes
// every request; once it answers 503 twice in a row it is ejected, and
// the requests go to the priority-1 backend and succeed. The admin API
// shows the levels' loads.
func TestPriorityFailover(t *testing.T) {
	var failing atomic.Bool
	var nearHits, farHits atomic.Int64
	near := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nearHits.Add(1)
		if failing.Load() {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "near")
	}))
	far := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		farHits.Add(1)
		io.WriteString(w, "far")
	}))
	cp := proxytest.StartControlPlane(t)
	client := proxytest.StartProxy(t, cp, "sleep", proxytest.ProxyOptions{})
	cluster := proxytest.EDSCluster(svcCluster, clusterv3.Cluster_ROUND_ROBIN)
	cluster.OutlierDetection = &clusterv3.OutlierDetection{
		Consecutive_5Xx: wrapperspb.UInt32(2), Interval: durationpb.New(time.Second),
		BaseEjectionTime: durationpb.New(time.Minute), MaxEjectionPercent: wrapperspb.UInt32(100),
		EnforcingSuccessRate: wrapperspb.UInt32(0),
	}
	locality := func(zone string, priority uint32, addr string) *endpointv3.LocalityLbEndpoints {
		return &endpointv3.LocalityLbEndpoints{
			Locality: &corev3.Locality{Region: "region", Zone: zone}, LoadBalancingWeight: wrapperspb.UInt32(1), Priority: priority,
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: proxytest.SocketAddress(addr)}}}},
		}
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: svcCluster, Endpoints: []*endpointv3.LocalityLbEndpoints{
		locality("near", 0, near), locality("far", 1, far),
	}}
	cp.Set(t, client.NodeID(),
		proxytest.Listener(xdsmeta.ListenerOutbound, "127.0.0.1:0", proxytest.Chain{Port: svcPort, Filter: proxytest.HCMRDS("8000")}),
		proxytest.RouteConfig("8000", proxytest.VirtualHost(svcFQDN+":8000", domains("httpbin", svcPort), proxytest.PrefixRoute("/", svcCluster))),
		cluster, cla)
	client.WaitReady(t)
	c := client.HTTPClient(t)
	send := func(n int) []string {
		var out []string
		for range n {
			resp, body := get(t, c, "http://httpbin:8000/", nil)
			out = append(out, http.StatusText(resp.StatusCode)+" "+strings.TrimSpace(body))
		}
		return out
	}
	if got := send(5); !cmp.Equal(got, []string{"OK near", "OK near", "OK near", "OK near", "OK near"}) || farHits.Load() != 0 {
		t.Fatalf("priority 0 answering: %q, priority 1 hit %d times; want priority 0 only", got, farHits.Load())
	}
	failing.Store(true)
	want := []string{"Service Unavailable overloaded", "Service Unavailable overloaded"}
	for range 8 {
		want = append(want, "OK far")
	}
	if got := send(10); !cmp.Equal(got, want) || nearHits.Load() != 7 {
		t.Errorf("priority 0 failing: %q (priority 0 hit %d times); want two 503s, then priority 1", got, nearHits.Load())
	}
	var clusters struct {
		Clusters []admin.ClusterStatus `json:"clusters"`
	}
	if err := json.Unmarshal([]byte(adminGet(t, client, "/clusters?format=json")), &clusters); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, cs := range clusters.Clusters {
		if cs.Name != svcCluster {
			continue
		}
		found = true
		if diff := cmp.Diff([]admin.PriorityLoad{{Priority: 0}, {Priority: 1, Healthy: 100}}, cs.PriorityLoads); diff != "" {
			t.Errorf("/clusters priority loads (-want +got):\n%s", diff)
		}
	}
	if !found {
		t.Errorf("/clusters?format=json has no cluster %s", svcCluster)
	}
	if text := adminGet(t, client, "/clusters"); !strings.Contains(text, svcCluster+"::priority::1::healthy_load::100\n") {
		t.Errorf("/clusters does not show priority 1 taking the load:\n%s", text)
	}
}
