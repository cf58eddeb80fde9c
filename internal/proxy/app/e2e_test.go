package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/mccutchen/go-httpbin/v2/httpbin"
	"google.golang.org/protobuf/proto"

	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/xdsmeta"
)

const (
	svcPort = 8000
	svcFQDN = "httpbin.default.svc.cluster.local"
)

var svcCluster = fmt.Sprintf("outbound|%d||%s", svcPort, svcFQDN)

// serveHTTP runs h on a loopback listener until the test ends.
func serveHTTP(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: p}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// serveTCP accepts connections on addr ("127.0.0.1:0": any port) until
// the test ends and runs handle for each on its own goroutine, closing
// the connection when handle returns. It returns the bound address.
func serveTCP(tb testing.TB, addr string, handle func(net.Conn)) string {
	tb.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// mesh is client sidecar -> server sidecar -> app.
type mesh struct {
	cp      *proxytest.ControlPlane
	client  *proxytest.Proxy
	server  *proxytest.Proxy
	inbound string // server sidecar's inbound listener address
	appAddr string
}

func domains(host string, port int) []string {
	var out []string
	for _, h := range []string{host, host + ".default", host + ".default.svc", host + ".default.svc.cluster.local"} {
		out = append(out, h, fmt.Sprintf("%s:%d", h, port))
	}
	return out
}

// outboundResources is the client sidecar's config for the service, with
// routes replaced by routes when given.
func (m *mesh) outboundResources(routes []*routev3.Route, cluster *clusterv3.Cluster, extra ...proto.Message) []proto.Message {
	if routes == nil {
		routes = []*routev3.Route{proxytest.PrefixRoute("/", svcCluster)}
	}
	if cluster == nil {
		cluster = proxytest.EDSCluster(svcCluster, clusterv3.Cluster_ROUND_ROBIN)
	}
	res := []proto.Message{
		proxytest.Listener(xdsmeta.ListenerOutbound, "127.0.0.1:0", proxytest.Chain{Port: svcPort, Filter: proxytest.HCMRDS("8000")}),
		proxytest.RouteConfig("8000", proxytest.VirtualHost(svcFQDN+":8000", domains("httpbin", svcPort), routes...)),
		cluster,
	}
	if cluster.GetType() == clusterv3.Cluster_EDS {
		res = append(res, proxytest.CLA(svcCluster, m.inbound))
	}
	return append(res, extra...)
}

func startMesh(t *testing.T, app http.Handler) *mesh {
	t.Helper()
	if app == nil {
		app = httpbin.New().Handler()
	}
	return startMeshTo(t, serveHTTP(t, app))
}

// startMeshTo starts the mesh in front of an app already listening on
// appAddr.
func startMeshTo(t testing.TB, appAddr string) *mesh {
	t.Helper()
	return startMeshWith(t, appAddr, proxytest.ProxyOptions{})
}

// startMeshWith is startMeshTo with both sidecars started with opts.
func startMeshWith(t testing.TB, appAddr string, opts proxytest.ProxyOptions) *mesh {
	t.Helper()
	m := &mesh{cp: proxytest.StartControlPlane(t), appAddr: appAddr}
	m.server = proxytest.StartProxy(t, m.cp, "httpbin", opts)
	m.cp.Set(t, m.server.NodeID(), proxytest.Inbound(svcPort, m.appAddr, true)...)
	m.server.WaitReady(t)
	m.inbound = m.server.ListenerAddr(t, xdsmeta.InboundListenerName(svcPort))
	m.client = proxytest.StartProxy(t, m.cp, "sleep", opts)
	m.cp.Set(t, m.client.NodeID(), m.outboundResources(nil, nil)...)
	m.client.WaitReady(t)
	return m
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func get(t *testing.T, c *http.Client, url string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp, string(b)
}

func TestHTTPProxyModeThroughSidecars(t *testing.T) {
	m := startMesh(t, nil)
	c := m.client.HTTPClient(t)
	tests := []struct {
		name     string
		url      string
		wantCode int
		check    func(t *testing.T, resp *http.Response, body string)
	}{
		{name: "short name with port", url: "http://httpbin:8000/get?a=1", wantCode: 200, check: func(t *testing.T, resp *http.Response, body string) {
			var got struct {
				Args    map[string][]string `json:"args"`
				Headers map[string][]string `json:"headers"`
			}
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(map[string][]string{"a": {"1"}}, got.Args); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
			if len(got.Headers["X-Request-Id"]) != 1 || got.Headers["X-Request-Id"][0] == "" {
				t.Errorf("app got no x-request-id: %v", got.Headers)
			}
			if _, ok := got.Headers["Proxy-Connection"]; ok {
				t.Errorf("hop-by-hop Proxy-Connection reached the app")
			}
		}},
		{name: "fqdn", url: "http://httpbin.default.svc.cluster.local:8000/status/201", wantCode: 201},
		{name: "no chain for port", url: "http://httpbin:9999/get", wantCode: 404, check: wantFlags("NR")},
		{name: "unknown host", url: "http://nope:8000/get", wantCode: 404, check: wantFlags("NR")},
		{name: "chunked response", url: "http://httpbin:8000/stream/5", wantCode: 200, check: func(t *testing.T, resp *http.Response, body string) {
			if n := strings.Count(body, "\n"); n != 5 {
				t.Errorf("got %d lines, want 5", n)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, c, tc.url, nil)
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status %d, want %d; body %q", resp.StatusCode, tc.wantCode, body)
			}
			if tc.check != nil {
				tc.check(t, resp, body)
			}
		})
	}
	proxytest.Eventually(t, 5*time.Second, "access log lines", func() bool {
		return strings.Count(m.client.Access.String(), "\n") >= len(tests)
	})
	line := strings.SplitN(m.client.Access.String(), "\n", 2)[0]
	var entry map[string]any
	if err := json.Unmarshal([]byte(line), &entry); err != nil {
		t.Fatalf("access log line %q: %v", line, err)
	}
	for _, k := range []string{"start_time", "method", "authority", "path", "protocol", "response_code", "response_flags", "bytes_received", "bytes_sent", "duration_ms", "upstream_host", "upstream_cluster", "request_id"} {
		if _, ok := entry[k]; !ok {
			t.Errorf("access log entry lacks %q: %s", k, line)
		}
	}
	if entry["upstream_cluster"] != svcCluster {
		t.Errorf("upstream_cluster = %v, want %s", entry["upstream_cluster"], svcCluster)
	}
}

func wantFlags(flags string) func(t *testing.T, resp *http.Response, body string) {
	return func(t *testing.T, resp *http.Response, body string) {
		t.Helper()
		if got := resp.Header.Get("X-Weft-Response-Flags"); got != flags {
			t.Errorf("flags %q, want %q (body %q)", got, flags, body)
		}
		if strings.TrimSpace(body) == "" {
			t.Errorf("empty body, want a reason")
		}
	}
}

func TestAdminReadyBeforeAndAfterConfig(t *testing.T) {
	cp := proxytest.StartControlPlane(t)
	p := proxytest.StartProxy(t, cp, "lonely", proxytest.ProxyOptions{})
	readyCode := func() int {
		resp, err := http.Get("http://" + p.AdminAddr() + "/ready")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := readyCode(); got != http.StatusServiceUnavailable {
		t.Fatalf("/ready before config = %d, want 503", got)
	}
	// A listener whose route config has not arrived keeps the proxy unready.
	cp.Set(t, p.NodeID(), proxytest.Listener(xdsmeta.ListenerOutbound, "127.0.0.1:0", proxytest.Chain{Port: 80, Filter: proxytest.HCMRDS("80")}))
	proxytest.Eventually(t, 5*time.Second, "listener received", func() bool {
		return strings.Contains(adminGet(t, p, "/config_dump"), "virtualOutbound")
	})
	if got := readyCode(); got != http.StatusServiceUnavailable {
		t.Fatalf("/ready with missing routes = %d, want 503", got)
	}
	cp.Set(t, p.NodeID(),
		proxytest.Listener(xdsmeta.ListenerOutbound, "127.0.0.1:0", proxytest.Chain{Port: 80, Filter: proxytest.HCMRDS("80")}),
		proxytest.RouteConfig("80", proxytest.VirtualHost("x", []string{"*"}, proxytest.PrefixRoute("/", "c"))),
		proxytest.StaticCluster("c", "127.0.0.1:1"),
	)
	p.WaitReady(t)
	if got := readyCode(); got != http.StatusOK {
		t.Fatalf("/ready after config = %d, want 200", got)
	}
	// The log line follows the readiness flip: wait for it.
	proxytest.Eventually(t, 5*time.Second, `a "proxy ready" log line`, func() bool { return strings.Contains(p.Logs.String(), "proxy ready") })
	// The cluster's only endpoint refuses connections: UF with a reason.
	resp, body := get(t, p.HTTPClient(t), "http://anything/x", nil)
	if resp.StatusCode != 503 || resp.Header.Get("X-Weft-Response-Flags") != "UF" || !strings.Contains(body, "127.0.0.1:1") {
		t.Errorf("got %d %q %q, want 503 UF naming the endpoint", resp.StatusCode, resp.Header.Get("X-Weft-Response-Flags"), body)
	}
	for _, path := range []string{"/clusters", "/stats/prometheus", "/listeners"} {
		if adminGet(t, p, path) == "" {
			t.Errorf("%s is empty", path)
		}
	}
	if !strings.Contains(adminGet(t, p, "/stats/prometheus"), `weft_proxy_requests_total{cluster="c",code="503"} 1`) {
		t.Errorf("request metric missing:\n%s", adminGet(t, p, "/stats/prometheus"))
	}
}

func adminGet(t testing.TB, p *proxytest.Proxy, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + p.AdminAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
