// Package proxytest runs Weft proxies against a fake control plane in
// tests: a go-control-plane ADS server serving hand-built Envoy resources
// that follow the Weft xDS contract, and builders for those resources.
// It is imported by tests only.
package proxytest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"weft.dev/weft/internal/proxy/app"
	"weft.dev/weft/internal/xdsmeta"
)

// ControlPlane is a fake ADS server.
type ControlPlane struct {
	// Addr is the server's address.
	Addr    string
	cache   cachev3.SnapshotCache
	srv     *grpc.Server
	ln      net.Listener
	version atomic.Int64
}

// StartControlPlane starts a control plane on a free loopback port; it is
// stopped when the test ends.
func StartControlPlane(t testing.TB) *ControlPlane {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := &ControlPlane{Addr: ln.Addr().String(), ln: ln}
	cp.start(t)
	return cp
}

func (cp *ControlPlane) start(t testing.TB) {
	if cp.cache == nil {
		cp.cache = cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := serverv3.NewServer(ctx, cp.cache, nil)
	cp.srv = grpc.NewServer()
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(cp.srv, srv)
	ln := cp.ln
	done := make(chan struct{})
	go func() { defer close(done); _ = cp.srv.Serve(ln) }()
	s := cp.srv
	t.Cleanup(func() { s.Stop(); cancel(); <-done })
}

// RegisterADS serves this control plane's ADS on another gRPC server too
// (xDS over mTLS on a CA's port, in tests); the service stops with the
// test.
func (cp *ControlPlane) RegisterADS(t testing.TB, g *grpc.Server) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, serverv3.NewServer(ctx, cp.cache, nil))
}

// Stop stops the server (the proxies lose their stream).
func (cp *ControlPlane) Stop() { cp.srv.Stop() }

// Restart serves again on the same address with the same snapshots.
func (cp *ControlPlane) Restart(t testing.TB) {
	t.Helper()
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		cp.ln, err = net.Listen("tcp", cp.Addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	cp.start(t)
}

// Set publishes resources for a node under a fresh version.
func (cp *ControlPlane) Set(t testing.TB, node string, res ...proto.Message) {
	t.Helper()
	byType := map[resourcev3.Type][]types.Resource{}
	for _, r := range res {
		var typ resourcev3.Type
		switch r.(type) {
		case *listenerv3.Listener:
			typ = resourcev3.ListenerType
		case *routev3.RouteConfiguration:
			typ = resourcev3.RouteType
		case *clusterv3.Cluster:
			typ = resourcev3.ClusterType
		case *endpointv3.ClusterLoadAssignment:
			typ = resourcev3.EndpointType
		default:
			t.Fatalf("unsupported resource %T", r)
		}
		byType[typ] = append(byType[typ], r.(types.Resource))
	}
	v := strconv.FormatInt(cp.version.Add(1), 10)
	snap, err := cachev3.NewSnapshot(v, byType)
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.cache.SetSnapshot(context.Background(), node, snap); err != nil {
		t.Fatal(err)
	}
}

// Proxy is a proxy running in the test process.
type Proxy struct {
	*app.Proxy
	// Logs holds the proxy's logs.
	Logs *SyncBuffer
	// Access holds the access log.
	Access *SyncBuffer
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// ProxyOptions adjust StartProxy.
type ProxyOptions struct {
	// Type is "sidecar" (default) or "gateway".
	Type string
	// DrainTimeout is the shutdown drain timeout (default 5s).
	DrainTimeout time.Duration
	// Workload, Labels and ServiceAccount describe the proxy's workload
	// (its metrics and peer metadata); Workload defaults to the name.
	Workload       string
	Labels         map[string]string
	ServiceAccount string
	// CAAddr, CARootFile and BootstrapTokenFile give the proxy a workload
	// certificate from a CA (app.Config's fields of the same names);
	// empty: no identity.
	CAAddr, CARootFile, BootstrapTokenFile string
	// CAPollInterval is app.Config's field of that name (default 10 s).
	CAPollInterval time.Duration
	// XDSAddr, when set, replaces the control plane's address (xDS over
	// mTLS on a CA's port).
	XDSAddr string
	// ConfigAccessLogs leaves access logging to the config's access_log
	// sinks: no --access-log logger, and Proxy.Access stays empty.
	ConfigAccessLogs bool
	// MaxSeries is app.Config's field of that name (0: the default).
	MaxSeries int
}

var proxySeq atomic.Int64

// StartProxy starts a proxy named name against cp; it is stopped when the
// test ends.
func StartProxy(t testing.TB, cp *ControlPlane, name string, opts ProxyOptions) *Proxy {
	t.Helper()
	logs, access := &SyncBuffer{}, &SyncBuffer{}
	var w io.Writer = logs
	if os.Getenv("WEFT_PROXY_TEST_LOGS") != "" {
		w = io.MultiWriter(logs, os.Stderr)
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := app.Config{
		XDSAddr: cp.Addr, Type: opts.Type, Name: name, Namespace: "default",
		NodeID:       xdsmeta.NodeID("sidecar", "127.0.0.1", fmt.Sprintf("%s-%d", name, proxySeq.Add(1)), "default"),
		AdminAddr:    "127.0.0.1:0",
		DrainTimeout: opts.DrainTimeout,
		Workload:     opts.Workload, Labels: opts.Labels, ServiceAccount: opts.ServiceAccount,
		XDSBackoffBase: 20 * time.Millisecond, XDSBackoffMax: 200 * time.Millisecond,
		CAAddr: opts.CAAddr, CARootFile: opts.CARootFile, BootstrapTokenFile: opts.BootstrapTokenFile,
		CAPollInterval: opts.CAPollInterval,
		MaxSeries:      opts.MaxSeries,
	}
	if opts.XDSAddr != "" {
		cfg.XDSAddr = opts.XDSAddr
	}
	var accessW io.Writer = access
	if opts.ConfigAccessLogs {
		accessW = nil
	}
	p, err := app.New(cfg, log, accessW)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tp := &Proxy{Proxy: p, Logs: logs, Access: access, cancel: cancel, done: make(chan error, 1)}
	go func() { tp.done <- p.Run(ctx) }()
	t.Cleanup(func() { tp.Stop(t) })
	return tp
}

// Stop cancels the proxy and waits for Run to return.
func (p *Proxy) Stop(t testing.TB) {
	p.once.Do(func() {
		p.cancel()
		select {
		case err := <-p.done:
			if err != nil {
				t.Errorf("proxy Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("proxy did not stop")
		}
	})
}

// WaitReady waits for the proxy's first full config.
func (p *Proxy) WaitReady(t testing.TB) {
	t.Helper()
	select {
	case <-p.ReadyCh():
	case <-time.After(10 * time.Second):
		t.Fatalf("proxy not ready; logs:\n%s", p.Logs.String())
	}
}

// ListenerAddr returns the bound address of a listener.
func (p *Proxy) ListenerAddr(t testing.TB, name string) string {
	t.Helper()
	a, ok := p.ListenerAddrs()[name]
	if !ok {
		t.Fatalf("listener %q not bound; have %v", name, p.ListenerAddrs())
	}
	return a
}

// HTTPClient returns a client that uses the proxy's outbound listener as
// its HTTP proxy.
func (p *Proxy) HTTPClient(t testing.TB) *http.Client {
	u := &url.URL{Scheme: "http", Host: p.ListenerAddr(t, xdsmeta.ListenerOutbound)}
	tr := &http.Transport{Proxy: http.ProxyURL(u), MaxIdleConnsPerHost: 64, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// Eventually polls cond until it is true or the deadline passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// SyncBuffer is a goroutine-safe bytes buffer.
type SyncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

// String returns the contents.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}

// ---- resource builders ----

// MustAny packs a message.
func MustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

// SocketAddress builds an address from "host:port".
func SocketAddress(hostport string) *corev3.Address {
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		panic(err)
	}
	port, _ := strconv.Atoi(p)
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: h, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
	}}}
}

// HCMRDS is an HTTP connection manager using RDS route name.
func HCMRDS(route string) *listenerv3.Filter {
	return hcmFilter(&hcmv3.HttpConnectionManager{
		StatPrefix: route,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: route,
			ConfigSource:    &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router"}},
	})
}

// HCMInline is an HTTP connection manager with an inline route config.
func HCMInline(rc *routev3.RouteConfiguration) *listenerv3.Filter {
	return hcmFilter(&hcmv3.HttpConnectionManager{
		StatPrefix:     rc.GetName(),
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc},
		HttpFilters:    []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router"}},
	})
}

func hcmFilter(h *hcmv3.HttpConnectionManager) *listenerv3.Filter {
	return &listenerv3.Filter{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: MustAny(h)}}
}

// TCPProxy is a tcp_proxy filter to cluster.
func TCPProxy(cluster string) *listenerv3.Filter {
	return &listenerv3.Filter{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: MustAny(&tcpproxyv3.TcpProxy{
		StatPrefix: cluster, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
	})}}
}

// Chain is one outbound filter chain.
type Chain struct {
	// Port is the destination port.
	Port uint32
	// ServerNames and Prefixes match TCP services.
	ServerNames []string
	// Prefixes are "ip/len" ranges.
	Prefixes []string
	// Filter is the terminal filter.
	Filter *listenerv3.Filter
}

// Listener builds a listener with chains.
func Listener(name, addr string, chains ...Chain) *listenerv3.Listener {
	l := &listenerv3.Listener{Name: name, Address: SocketAddress(addr)}
	for _, c := range chains {
		fc := &listenerv3.FilterChain{Filters: []*listenerv3.Filter{c.Filter}}
		if c.Port != 0 || len(c.ServerNames) > 0 || len(c.Prefixes) > 0 {
			m := &listenerv3.FilterChainMatch{ServerNames: c.ServerNames}
			if c.Port != 0 {
				m.DestinationPort = wrapperspb.UInt32(c.Port)
			}
			for _, p := range c.Prefixes {
				ip, bits, _ := net.ParseCIDR(p)
				ones, _ := bits.Mask.Size()
				m.PrefixRanges = append(m.PrefixRanges, &corev3.CidrRange{AddressPrefix: ip.String(), PrefixLen: wrapperspb.UInt32(uint32(ones))})
			}
			fc.FilterChainMatch = m
		}
		l.FilterChains = append(l.FilterChains, fc)
	}
	return l
}

// RouteConfig builds a route configuration.
func RouteConfig(name string, vhosts ...*routev3.VirtualHost) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: vhosts}
}

// VirtualHost builds a virtual host.
func VirtualHost(name string, domains []string, routes ...*routev3.Route) *routev3.VirtualHost {
	return &routev3.VirtualHost{Name: name, Domains: domains, Routes: routes}
}

// PrefixRoute routes a prefix to a cluster.
func PrefixRoute(prefix, cluster string) *routev3.Route {
	return &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
	}
}

// EDSCluster builds an EDS cluster (service_name = name).
func EDSCluster(name string, lb clusterv3.Cluster_LbPolicy) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			ServiceName: name,
			EdsConfig:   &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
		},
		ConnectTimeout: durationpb.New(time.Second),
		LbPolicy:       lb,
	}
}

// StaticCluster builds a STATIC cluster to addrs.
func StaticCluster(name string, addrs ...string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment:       CLA(name, addrs...),
	}
}

// HTTP2 marks a cluster as speaking h2c upstream.
func HTTP2(c *clusterv3.Cluster) *clusterv3.Cluster {
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": MustAny(&httpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
			}},
		}),
	}
	return c
}

// CLA builds a load assignment with one locality and weight-1 endpoints.
func CLA(name string, addrs ...string) *endpointv3.ClusterLoadAssignment {
	return WeightedCLA(name, addrs, nil)
}

// WeightedCLA builds a load assignment; weights may be nil.
func WeightedCLA(name string, addrs []string, weights []uint32) *endpointv3.ClusterLoadAssignment {
	loc := &endpointv3.LocalityLbEndpoints{LoadBalancingWeight: wrapperspb.UInt32(1)}
	for i, a := range addrs {
		le := &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: SocketAddress(a)}}}
		if weights != nil {
			le.LoadBalancingWeight = wrapperspb.UInt32(weights[i])
		}
		loc.LbEndpoints = append(loc.LbEndpoints, le)
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{loc}}
}

// Inbound builds the inbound listener, cluster and nothing else for an
// HTTP (http=true) or TCP service port whose app listens on appAddr; the
// listener binds 127.0.0.1:0.
func Inbound(port uint32, appAddr string, http bool) []proto.Message {
	cluster := xdsmeta.InboundClusterName(port)
	var f *listenerv3.Filter
	if http {
		f = HCMInline(RouteConfig("inbound|"+strconv.Itoa(int(port)), VirtualHost("inbound|http|"+strconv.Itoa(int(port)), []string{"*"}, PrefixRoute("/", cluster))))
	} else {
		f = TCPProxy(cluster)
	}
	return []proto.Message{
		Listener(xdsmeta.InboundListenerName(port), "127.0.0.1:0", Chain{Filter: f}),
		StaticCluster(cluster, appAddr),
	}
}

// WithService sets the Weft metadata of an inbound cluster: the service
// host name behind the port.
func WithService(c *clusterv3.Cluster, host string, port uint32) *clusterv3.Cluster {
	c.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		xdsmeta.MetaFilter: {Fields: map[string]*structpb.Value{
			xdsmeta.MetaService: structpb.NewStringValue(host),
			xdsmeta.MetaPort:    structpb.NewNumberValue(float64(port)),
		}},
	}}
	return c
}
