package app_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/google/go-cmp/cmp"

	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/xdsmeta"
)

// TestSpoofedPeerHeadersAreBounded: on a plaintext hop anyone can send
// x-weft-peer. A caller without a sidecar floods a server sidecar (cap:
// 4 label sets per family) with requests each claiming a new workload,
// and some with values that are not names (too long, bytes outside the
// name charset). The invalid values never become labels; the first
// claims fill the family up to its cap, the rest are recorded as from an
// unknown peer and counted in weft_proxy_istio_series_overflow_total.
func TestSpoofedPeerHeadersAreBounded(t *testing.T) {
	const svc = "httpbin.default.svc.cluster.local"
	app := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Values("X-Weft-Peer"); len(v) > 0 {
			t.Errorf("the app saw the peer header %q", v)
		}
		_, _ = io.WriteString(w, "ok")
	}))
	cp := proxytest.StartControlPlane(t)
	server := proxytest.StartProxy(t, cp, "httpbin-0", proxytest.ProxyOptions{Workload: "httpbin", MaxSeries: 4})
	res := proxytest.Inbound(8000, app, true)
	proxytest.WithService(res[1].(*clusterv3.Cluster), svc, 8000)
	cp.Set(t, server.NodeID(), res...)
	server.WaitReady(t)
	in := "http://" + server.ListenerAddr(t, xdsmeta.InboundListenerName(8000)) + "/"

	c := &http.Client{Timeout: 10 * time.Second}
	send := func(peer string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, in, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Weft-Peer", peer)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET with x-weft-peer %q: %d", peer, resp.StatusCode)
		}
	}
	// Invalid values first: they must not take a place in the family.
	for _, bad := range []string{"w=" + strings.Repeat("a", 300), "w=evil%0Aname", "w=caf\u00e9", "w=a b;n=" + strings.Repeat("n", 64)} {
		send(bad)
	}
	for i := range 40 {
		send(fmt.Sprintf("w=spoofed-%d;n=attack", i))
	}

	got := map[string]float64{}
	for _, s := range collect(scrape(t, server)["istio_requests_total"]) {
		got[s.Labels["source_workload"]+"/"+s.Labels["source_workload_namespace"]] += s.Value
	}
	// The invalid claims are an unknown peer (the first label set); then
	// three spoofed workloads fill the cap of 4; 37 overflow.
	want := map[string]float64{
		"unknown/unknown":  4 + 37,
		"spoofed-0/attack": 1, "spoofed-1/attack": 1, "spoofed-2/attack": 1,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("istio_requests_total by source workload/namespace (-want +got):\n%s", diff)
	}
	overflow := map[string]float64{}
	for _, s := range collect(scrape(t, server)["weft_proxy_istio_series_overflow_total"]) {
		overflow[s.Labels["family"]] = s.Value
	}
	if diff := cmp.Diff(map[string]float64{"http": 37, "tcp": 0}, overflow); diff != "" {
		t.Errorf("weft_proxy_istio_series_overflow_total (-want +got):\n%s", diff)
	}
}
