package app_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/xdsmeta"
)

// collector is an in-process OTLP/gRPC trace receiver.
type collector struct {
	coltrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans map[string][]*tracepb.Span // by service.name
}

func (c *collector) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		svc := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				svc = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			c.spans[svc] = append(c.spans[svc], ss.GetSpans()...)
		}
	}
	return &coltrace.ExportTraceServiceResponse{}, nil
}

func (c *collector) get(svc string) []*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*tracepb.Span(nil), c.spans[svc]...)
}

func startCollector(t *testing.T) (*collector, string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{spans: map[string][]*tracepb.Span{}}
	g := grpc.NewServer()
	coltrace.RegisterTraceServiceServer(g, c)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return c, ln.Addr().String()
}

// traced adds tracing (100 %, to cluster weft-otlp, as service) and a
// file access log at logPath to every HTTP connection manager in res,
// and the collector's cluster.
func traced(t *testing.T, res []proto.Message, service, collectorAddr, logPath string) []proto.Message {
	t.Helper()
	otel := proxytest.MustAny(&tracev3.OpenTelemetryConfig{
		GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "weft-otlp"}}},
		ServiceName: service,
	})
	rewriteFilters(res, func() *hcmv3.HttpConnectionManager { return &hcmv3.HttpConnectionManager{} }, func(_ *listenerv3.Listener, h *hcmv3.HttpConnectionManager) {
		h.Tracing = &hcmv3.HttpConnectionManager_Tracing{
			RandomSampling: &typev3.Percent{Value: 100},
			Provider:       &tracev3.Tracing_Http{Name: "envoy.tracers.opentelemetry", ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: otel}},
		}
		h.AccessLog = fileLog(logPath)
	})
	return append(res, proxytest.HTTP2(proxytest.StaticCluster("weft-otlp", collectorAddr)))
}

// TestTracingThroughSidecars: a request with a W3C traceparent goes
// client sidecar -> server sidecar -> app. The client sidecar records a
// client span (child of the caller's span), the server sidecar a server
// span (child of the client span); the app sees the server span's
// context in traceparent and b3 headers; both spans reach the OTLP
// collector with the workload as service name; both access logs carry
// the trace ID.
func TestTracingThroughSidecars(t *testing.T) {
	col, colAddr := startCollector(t)
	dir := t.TempDir()
	seen := make(chan http.Header, 1)
	m := startMesh(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case seen <- r.Header.Clone():
		default:
		}
		_, _ = w.Write([]byte("ok"))
	}))
	m.cp.Set(t, m.server.NodeID(), traced(t, proxytest.Inbound(svcPort, m.appAddr, true), "httpbin", colAddr, filepath.Join(dir, "server.log"))...)
	m.cp.Set(t, m.client.NodeID(), traced(t, m.outboundResources(nil, proxytest.EDSCluster(svcCluster, clusterv3.Cluster_ROUND_ROBIN)), "sleep", colAddr, filepath.Join(dir, "client.log"))...)

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	const callerSpan = "00f067aa0ba902b7"
	var resp *http.Response
	var client, server *tracepb.Span
	// Both sidecars' traced configs arrive separately: send traced
	// requests until one has been through both, then use that pair (the
	// server span whose parent is the client span).
	proxytest.Eventually(t, 20*time.Second, "a client and a server span of one request at the collector", func() bool {
		resp, _ = get(t, m.client.HTTPClient(t), "http://httpbin:8000/get", map[string]string{"traceparent": "00-" + traceID + "-" + callerSpan + "-01"})
		select {
		case <-seen:
		default:
		}
		if resp.StatusCode != 200 {
			return false
		}
		for _, c := range col.get("sleep") {
			if hex.EncodeToString(c.GetTraceId()) != traceID {
				continue
			}
			for _, s := range col.get("httpbin") {
				if string(s.GetParentSpanId()) == string(c.GetSpanId()) {
					client, server = c, s
					return true
				}
			}
		}
		return false
	})
	if got := hex.EncodeToString(client.GetParentSpanId()); got != callerSpan {
		t.Errorf("client span's parent = %s, want the caller's %s", got, callerSpan)
	}
	if string(server.GetParentSpanId()) != string(client.GetSpanId()) {
		t.Errorf("server span's parent = %x, want the client span %x", server.GetParentSpanId(), client.GetSpanId())
	}
	if client.GetKind() != tracepb.Span_SPAN_KIND_CLIENT || server.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("kinds: client %v, server %v", client.GetKind(), server.GetKind())
	}
	if client.GetName() != svcFQDN+":8000/*" {
		t.Errorf("client span name %q", client.GetName())
	}
	attrs := map[string]string{}
	for _, a := range client.GetAttributes() {
		attrs[a.GetKey()] = a.GetValue().GetStringValue()
	}
	for k, want := range map[string]string{"http.method": "GET", "http.status_code": "200", "upstream_cluster": svcCluster, "response_flags": "-", "peer.workload": "httpbin"} {
		if attrs[k] != want {
			t.Errorf("client span attribute %s = %q, want %q", k, attrs[k], want)
		}
	}
	// The app saw the server span's context, in both formats.
	var appHeaders http.Header
	resp, _ = get(t, m.client.HTTPClient(t), "http://httpbin:8000/get", map[string]string{"traceparent": "00-" + traceID + "-" + callerSpan + "-01"})
	select {
	case appHeaders = <-seen:
	case <-time.After(5 * time.Second):
		t.Fatal("the app saw no request")
	}
	if tp := appHeaders.Get("Traceparent"); !strings.HasPrefix(tp, "00-"+traceID+"-") || !strings.HasSuffix(tp, "-01") {
		t.Errorf("app's traceparent %q", tp)
	}
	if appHeaders.Get("X-B3-Traceid") != traceID || appHeaders.Get("X-B3-Sampled") != "1" || appHeaders.Get("X-B3-Spanid") != strings.Split(appHeaders.Get("Traceparent"), "-")[2] {
		t.Errorf("app's b3 headers %v", appHeaders)
	}
	// Both access logs carry the trace ID (proxytest sets --access-log,
	// which overrides the config's file).
	for _, p := range []*proxytest.Proxy{m.client, m.server} {
		proxytest.Eventually(t, 5*time.Second, "the access log has the trace ID", func() bool {
			for _, line := range strings.Split(strings.TrimSpace(p.Access.String()), "\n") {
				var e map[string]any
				if json.Unmarshal([]byte(line), &e) == nil && e["trace_id"] == traceID {
					return true
				}
			}
			return false
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "client.log")); err == nil {
		t.Errorf("the config's access log file was written although --access-log overrides it")
	}
	_ = xdsmeta.ListenerOutbound
}

// TestUnsampledRequestIsMarked: at 0 % a request without a decision is
// not traced, and the app sees x-b3-sampled: 0 so that later hops agree.
func TestUnsampledRequestIsMarked(t *testing.T) {
	col, colAddr := startCollector(t)
	seen := make(chan http.Header, 1)
	m := startMesh(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case seen <- r.Header.Clone():
		default:
		}
	}))
	res := traced(t, proxytest.Inbound(svcPort, m.appAddr, true), "httpbin", colAddr, filepath.Join(t.TempDir(), "s.log"))
	for _, msg := range res {
		if l, ok := msg.(*listenerv3.Listener); ok {
			f := l.GetFilterChains()[0].GetFilters()[0]
			h := &hcmv3.HttpConnectionManager{}
			_ = f.GetTypedConfig().UnmarshalTo(h)
			h.Tracing.RandomSampling.Value = 0
			f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: proxytest.MustAny(h)}
		}
	}
	m.cp.Set(t, m.server.NodeID(), res...)
	proxytest.Eventually(t, 10*time.Second, "the app sees x-b3-sampled: 0", func() bool {
		get(t, m.client.HTTPClient(t), "http://httpbin:8000/get", nil)
		select {
		case h := <-seen:
			return h.Get("X-B3-Sampled") == "0" && h.Get("Traceparent") == ""
		default:
			return false
		}
	})
	if n := len(col.get("httpbin")); n != 0 {
		t.Errorf("%d spans exported at 0 %%", n)
	}
}
