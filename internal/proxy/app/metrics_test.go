package app_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/mccutchen/go-httpbin/v2/httpbin"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	prommodel "github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/xdsmeta"
)

// TestIstioMetricsEndToEnd runs a client sidecar and a server sidecar in
// front of go-httpbin, a gRPC server and a TCP echo server, sends HTTP,
// gRPC and TCP traffic, and checks the exact label sets both sidecars
// expose: each knows the other's workload from the peer header, and the
// header never reaches an app.
func TestIstioMetricsEndToEnd(t *testing.T) {
	const (
		httpPort, grpcPort, tcpPort = 8000, 50051, 9000
		httpSvc                     = "httpbin.default.svc.cluster.local"
		grpcSvc                     = "grpc.default.svc.cluster.local"
		tcpSvc                      = "echo.default.svc.cluster.local"
		downSvc                     = "down.default.svc.cluster.local"
	)
	httpCluster := fmt.Sprintf("outbound|%d||%s", httpPort, httpSvc)
	grpcCluster := fmt.Sprintf("outbound|%d|v1|%s", grpcPort, grpcSvc)
	tcpCluster := fmt.Sprintf("outbound|%d||%s", tcpPort, tcpSvc)
	downCluster := fmt.Sprintf("outbound|%d||%s", httpPort, downSvc)

	httpApp := serveHTTP(t, httpbin.New().Handler())
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, testService{})
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(gln) }()
	t.Cleanup(gs.Stop)
	echo := echoServer(t)

	cp := proxytest.StartControlPlane(t)
	server := proxytest.StartProxy(t, cp, "backend-v1-0", proxytest.ProxyOptions{
		Workload: "backend-v1", Labels: map[string]string{"app": "backend", "version": "v1"}, ServiceAccount: "backend",
	})
	var inbound []proto.Message
	for _, p := range []struct {
		port      uint32
		app, host string
		http, h2  bool
	}{
		{httpPort, httpApp, httpSvc, true, false},
		{grpcPort, gln.Addr().String(), grpcSvc, true, true},
		{tcpPort, echo, tcpSvc, false, false},
	} {
		res := proxytest.Inbound(p.port, p.app, p.http)
		c := proxytest.WithService(res[1].(*clusterv3.Cluster), p.host, p.port)
		if p.h2 {
			proxytest.HTTP2(c)
		}
		inbound = append(inbound, res...)
	}
	cp.Set(t, server.NodeID(), inbound...)
	server.WaitReady(t)
	inAddr := func(port uint32) string { return server.ListenerAddr(t, xdsmeta.InboundListenerName(port)) }

	client := proxytest.StartProxy(t, cp, "sleep-v2-0", proxytest.ProxyOptions{
		Workload: "sleep-v2", Labels: map[string]string{"app": "sleep", "version": "v2"},
	})
	cp.Set(t, client.NodeID(),
		proxytest.Listener(xdsmeta.ListenerOutbound, "127.0.0.1:0",
			proxytest.Chain{Port: httpPort, Filter: proxytest.HCMRDS("8000")},
			proxytest.Chain{Port: grpcPort, Filter: proxytest.HCMRDS("50051")},
			proxytest.Chain{Port: tcpPort, ServerNames: []string{"echo", tcpSvc}, Filter: proxytest.TCPProxy(tcpCluster)},
		),
		proxytest.RouteConfig("8000", proxytest.VirtualHost(httpSvc+":8000", domains("httpbin", httpPort),
			proxytest.PrefixRoute("/fail", downCluster), proxytest.PrefixRoute("/", httpCluster))),
		proxytest.RouteConfig("50051", proxytest.VirtualHost(grpcSvc+":50051", domains("grpc", grpcPort), proxytest.PrefixRoute("/", grpcCluster))),
		proxytest.EDSCluster(httpCluster, clusterv3.Cluster_ROUND_ROBIN), proxytest.CLA(httpCluster, inAddr(httpPort)),
		proxytest.HTTP2(proxytest.EDSCluster(grpcCluster, clusterv3.Cluster_ROUND_ROBIN)), proxytest.CLA(grpcCluster, inAddr(grpcPort)),
		proxytest.EDSCluster(tcpCluster, clusterv3.Cluster_ROUND_ROBIN), proxytest.CLA(tcpCluster, inAddr(tcpPort)),
		proxytest.StaticCluster(downCluster, "127.0.0.1:1"),
	)
	client.WaitReady(t)
	outbound := client.ListenerAddr(t, xdsmeta.ListenerOutbound)
	hc := client.HTTPClient(t)

	// HTTP: the app's own peer header is replaced, and no app sees one.
	resp, body := get(t, hc, "http://httpbin:8000/headers", map[string]string{"X-Weft-Peer": "w=spoofed;n=evil"})
	if resp.StatusCode != 200 {
		t.Fatalf("GET /headers: %d %s", resp.StatusCode, body)
	}
	if v := resp.Header.Values("X-Weft-Peer"); len(v) > 0 {
		t.Errorf("client app got peer header %q in the response", v)
	}
	for k, v := range parseHTTPBin(t, body).Headers {
		if strings.EqualFold(k, "X-Weft-Peer") {
			t.Errorf("go-httpbin saw the peer header: %v", v)
		}
	}
	if resp, body := get(t, hc, "http://httpbin:8000/status/418", nil); resp.StatusCode != 418 {
		t.Fatalf("GET /status/418: %d %s", resp.StatusCode, body)
	}
	if resp, body := get(t, hc, "http://httpbin:8000/fail", nil); resp.StatusCode != 503 || resp.Header.Get("X-Weft-Response-Flags") != "UF" {
		t.Fatalf("GET /fail: %d %v %s, want 503 UF", resp.StatusCode, resp.Header, body)
	}

	// gRPC through a CONNECT tunnel: one OK, one NOT_FOUND.
	conn, err := grpc.NewClient("passthrough:///grpc:50051",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return dialConnect(ctx, outbound, addr) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	tc := testgrpc.NewTestServiceClient(conn)
	if _, err := tc.UnaryCall(ctxT(t), &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("gRPC call: %v", err)
	}
	_, err = tc.UnaryCall(ctxT(t), &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "nope"}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("gRPC call: %v, want NotFound", err)
	}

	// TCP: 5 bytes each way through both sidecars.
	tcpConn, err := dialConnect(ctxT(t), outbound, "echo:9000")
	if err != nil {
		t.Fatal(err)
	}
	_ = tcpConn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := tcpConn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	_ = tcpConn.(*net.TCPConn).CloseWrite()
	if got, err := io.ReadAll(tcpConn); err != nil || string(got) != "hello" {
		t.Fatalf("tcp echo: %q %v", got, err)
	}
	tcpConn.Close()

	sleep := map[string]string{"workload": "sleep-v2", "workload_namespace": "default", "app": "sleep", "version": "v2", "principal": "unknown"}
	backend := map[string]string{"workload": "backend-v1", "workload_namespace": "default", "app": "backend", "version": "v1", "principal": "unknown"}
	unknown := map[string]string{"workload": "unknown", "workload_namespace": "unknown", "app": "unknown", "version": "unknown", "principal": "unknown"}
	labels := func(reporter string, src, dst map[string]string, svc string, extra ...string) map[string]string {
		l := map[string]string{"reporter": reporter}
		for k, v := range src {
			l["source_"+k] = v
		}
		for k, v := range dst {
			l["destination_"+k] = v
		}
		name, ns, _ := strings.Cut(svc, ".")
		ns, _, _ = strings.Cut(ns, ".")
		l["destination_service"], l["destination_service_name"], l["destination_service_namespace"] = svc, name, ns
		l["connection_security_policy"] = "unknown"
		if reporter == "destination" {
			l["connection_security_policy"] = "none"
		}
		for i := 0; i+1 < len(extra); i += 2 {
			l[extra[i]] = extra[i+1]
		}
		return l
	}
	httpReq := func(proto, code, grpcStatus, flags string) []string {
		return []string{"request_protocol", proto, "response_code", code, "grpc_response_status", grpcStatus, "response_flags", flags}
	}
	wantClient := []series{
		{labels("source", sleep, backend, httpSvc, httpReq("http", "200", "", "-")...), 1},
		{labels("source", sleep, backend, httpSvc, httpReq("http", "418", "", "-")...), 1},
		{labels("source", sleep, unknown, downSvc, httpReq("http", "503", "", "UF")...), 1},
		{labels("source", sleep, backend, grpcSvc, httpReq("grpc", "200", "0", "-")...), 1},
		{labels("source", sleep, backend, grpcSvc, httpReq("grpc", "200", "5", "-")...), 1},
	}
	wantServer := []series{
		{labels("destination", sleep, backend, httpSvc, httpReq("http", "200", "", "-")...), 1},
		{labels("destination", sleep, backend, httpSvc, httpReq("http", "418", "", "-")...), 1},
		{labels("destination", sleep, backend, grpcSvc, httpReq("grpc", "200", "0", "-")...), 1},
		{labels("destination", sleep, backend, grpcSvc, httpReq("grpc", "200", "5", "-")...), 1},
	}
	tcpLabels := []string{"request_protocol", "tcp", "response_flags", "-"}
	wantTCP := map[string][]series{
		"client": {{labels("source", sleep, unknown, tcpSvc, tcpLabels...), 0}},
		"server": {{labels("destination", unknown, backend, tcpSvc, tcpLabels...), 0}},
	}
	for _, side := range []struct {
		name string
		p    *proxytest.Proxy
		want []series
	}{{"client", client, wantClient}, {"server", server, wantServer}} {
		t.Run(side.name, func(t *testing.T) {
			sortSeries(side.want)
			var mfs map[string]*dto.MetricFamily
			// TCP connections are counted when both sidecars have closed
			// them; the series exists (at 0) from the connection's open.
			proxytest.Eventually(t, 10*time.Second, "tcp connections closed", func() bool {
				mfs = scrape(t, side.p)
				got := collect(mfs["istio_tcp_connections_closed_total"])
				return len(got) > 0 && got[0].Value >= 1
			})
			if diff := cmp.Diff(side.want, collect(mfs["istio_requests_total"])); diff != "" {
				t.Errorf("istio_requests_total (-want +got):\n%s", diff)
			}
			for _, h := range []string{"istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"} {
				if got := collect(mfs[h]); len(got) != len(side.want) {
					t.Errorf("%s has %d series, want %d (one per label set of istio_requests_total)", h, len(got), len(side.want))
				}
			}
			for name, v := range map[string]float64{
				"istio_tcp_connections_opened_total": 1, "istio_tcp_connections_closed_total": 1,
				"istio_tcp_sent_bytes_total": 5, "istio_tcp_received_bytes_total": 5,
			} {
				want := append([]series(nil), wantTCP[side.name]...)
				want[0].Value = v
				if diff := cmp.Diff(want, collect(mfs[name])); diff != "" {
					t.Errorf("%s (-want +got):\n%s", name, diff)
				}
			}
		})
	}
}

// series is one sample of a counter (or a histogram's count).
type series struct {
	Labels map[string]string
	Value  float64
}

// scrape reads a proxy's /stats/prometheus.
func scrape(t *testing.T, p *proxytest.Proxy) map[string]*dto.MetricFamily {
	t.Helper()
	body := adminGet(t, p, "/stats/prometheus")
	parser := expfmt.NewTextParser(prommodel.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /stats/prometheus: %v", err)
	}
	return mfs
}

// collect lists a family's series sorted by their labels.
func collect(mf *dto.MetricFamily) []series {
	var out []series
	for _, m := range mf.GetMetric() {
		s := series{Labels: map[string]string{}}
		for _, l := range m.GetLabel() {
			s.Labels[l.GetName()] = l.GetValue()
		}
		switch {
		case m.GetCounter() != nil:
			s.Value = m.GetCounter().GetValue()
		case m.GetHistogram() != nil:
			s.Value = float64(m.GetHistogram().GetSampleCount())
		}
		out = append(out, s)
	}
	sortSeries(out)
	return out
}

func sortSeries(s []series) {
	sort.Slice(s, func(i, j int) bool { return fmt.Sprint(s[i].Labels) < fmt.Sprint(s[j].Labels) })
}
