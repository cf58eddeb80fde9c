package xdstranslate

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/xdsmeta"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

func ep(addr string, port uint32, labels map[string]string) *model.Endpoint {
	return &model.Endpoint{Address: addr, Ports: map[string]uint32{"http": port, "grpc": port, "tcp": port}, Labels: labels, Namespace: "default"}
}

// testSnapshot is a small mesh: reviews (HTTP, three versions), ratings
// (HTTP), echo (gRPC), mysql (TCP with a VIP) and an external passthrough.
func testSnapshot() *model.Snapshot {
	svc := func(name, ns string, ports []model.Port, eps ...*model.Endpoint) *model.Service {
		return &model.Service{Hostname: model.FQDN(name, ns), Namespace: ns, Ports: ports, Endpoints: eps}
	}
	http := []model.Port{{Name: "http", Number: 9080, Protocol: model.ProtocolHTTP}}
	s := &model.Snapshot{Services: map[string]*model.Service{}, Instances: map[string]*model.Instance{}}
	add := func(v *model.Service) { s.Services[v.Hostname] = v }
	add(svc("reviews", "default", http,
		ep("127.0.0.1", 20001, map[string]string{"app": "reviews", "version": "v1"}),
		ep("127.0.0.1", 20002, map[string]string{"app": "reviews", "version": "v2"}),
		ep("127.0.0.1", 20003, map[string]string{"app": "reviews", "version": "v3"})))
	add(svc("ratings", "default", http, ep("127.0.0.1", 20010, map[string]string{"app": "ratings", "version": "v1"})))
	echo := svc("echo", "grpc", []model.Port{{Name: "grpc", Number: 7070, Protocol: model.ProtocolGRPC}},
		&model.Endpoint{Address: "127.0.0.1", Ports: map[string]uint32{"grpc": 20020}, Locality: "us/east-1/a", Weight: 3},
		&model.Endpoint{Address: "127.0.0.2", Ports: map[string]uint32{"grpc": 20021}, Locality: "us/east-1/b"})
	add(echo)
	mysql := svc("mysql", "db", []model.Port{{Name: "tcp", Number: 3306, Protocol: model.ProtocolTCP}}, ep("127.0.0.1", 20030, nil))
	mysql.Addresses = []string{"10.0.0.5"}
	add(mysql)
	ext := svc("api.example.com", "default", []model.Port{{Name: "http", Number: 80, Protocol: model.ProtocolHTTP}})
	ext.Resolution, ext.MeshExternal = model.ResolutionNone, true
	add(ext)
	s.Instances["productpage-v1-0.default"] = &model.Instance{
		Name: "productpage-v1-0", Namespace: "default", Workload: "productpage-v1", Service: "productpage",
		Labels: map[string]string{"app": "productpage", "version": "v1"}, Address: "127.0.0.1",
		Ports: []model.InstancePort{
			{Name: "http", Number: 9080, Protocol: model.ProtocolHTTP, AppPort: 21000, InboundPort: 21001},
			{Name: "tcp-metrics", Number: 9091, Protocol: model.ProtocolTCP, AppPort: 21002, InboundPort: 21003},
		},
		OutboundPort: 21005,
	}
	return s
}

func vs(name, ns string, spec *networking.VirtualService) *model.VirtualService {
	for i, h := range spec.Hosts {
		spec.Hosts[i] = model.FQDN(h, ns)
	}
	return &model.VirtualService{Meta: model.Meta{Kind: "VirtualService", Namespace: ns, Name: name}, Spec: spec}
}

func dr(name, ns string, spec *networking.DestinationRule) *model.DestinationRule {
	spec.Host = model.FQDN(spec.Host, ns)
	return &model.DestinationRule{Meta: model.Meta{Kind: "DestinationRule", Namespace: ns, Name: name}, Spec: spec}
}

func dest(host, subset string, weight int32) *networking.HTTPRouteDestination {
	return &networking.HTTPRouteDestination{Destination: &networking.Destination{Host: host, Subset: subset}, Weight: weight}
}

func exact(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: s}}
}

var reviewsSubsets = []*networking.Subset{
	{Name: "v1", Labels: map[string]string{"version": "v1"}},
	{Name: "v2", Labels: map[string]string{"version": "v2"}},
	{Name: "v3", Labels: map[string]string{"version": "v3"}},
}

func sidecarProxy() *Proxy {
	return &Proxy{ID: xdsmeta.NodeID("sidecar", "127.0.0.1", "productpage-v1-0", "default"), Type: Sidecar, Namespace: "default",
		Name: "productpage-v1-0", Labels: map[string]string{"app": "productpage", "version": "v1"}}
}

func proxylessProxy(ns string) *Proxy {
	return &Proxy{ID: "grpc-client", Type: Proxyless, Namespace: ns}
}

type goldenCase struct {
	name   string
	mutate func(s *model.Snapshot)
	proxy  func(s *model.Snapshot) *Proxy
}

func withInstance(p *Proxy) func(s *model.Snapshot) *Proxy {
	return func(s *model.Snapshot) *Proxy { return p.WithSnapshot(s) }
}

func goldenCases() []goldenCase {
	return []goldenCase{
		{name: "sidecar_default", proxy: withInstance(sidecarProxy())},
		{name: "sidecar_no_instance", proxy: func(*model.Snapshot) *Proxy {
			return &Proxy{ID: "sidecar~127.0.0.1~x.default~default.svc.cluster.local", Type: Sidecar, Namespace: "default"}
		}},
		{name: "proxyless_default", proxy: func(*model.Snapshot) *Proxy { return proxylessProxy("default") }},
		{name: "proxyless_other_namespace", proxy: func(*model.Snapshot) *Proxy { return proxylessProxy("grpc") }},
		{name: "routes_split_and_match", mutate: func(s *model.Snapshot) {
			s.DestinationRules = []*model.DestinationRule{dr("reviews", "default", &networking.DestinationRule{Host: "reviews", Subsets: reviewsSubsets})}
			s.VirtualServices = []*model.VirtualService{vs("reviews", "default", &networking.VirtualService{
				Hosts: []string{"reviews"},
				Http: []*networking.HTTPRoute{
					{
						Name: "canary",
						Match: []*networking.HTTPMatchRequest{
							{Headers: map[string]*networking.StringMatch{"x-canary": exact("yes")}, WithoutHeaders: map[string]*networking.StringMatch{"x-skip": {}}},
							{Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/v2"}}, IgnoreUriCase: true,
								QueryParams: map[string]*networking.StringMatch{"debug": exact("1")}, Method: exact("GET"), Authority: &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: "rev.*"}}},
							{Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: "/only-for-ratings"}}, SourceLabels: map[string]string{"app": "ratings"}},
							{Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: "^/r[0-9]+$"}}, Port: 9080},
						},
						Route: []*networking.HTTPRouteDestination{dest("reviews", "v2", 0)},
					},
					{Route: []*networking.HTTPRouteDestination{dest("reviews", "v1", 80), dest("reviews", "v2", 20), dest("reviews", "v3", 0)}},
				},
			})}
		}, proxy: withInstance(sidecarProxy())},
		{name: "routes_actions", mutate: func(s *model.Snapshot) {
			s.VirtualServices = []*model.VirtualService{vs("ratings", "default", &networking.VirtualService{
				Hosts: []string{"ratings"},
				Http: []*networking.HTTPRoute{
					{Match: []*networking.HTTPMatchRequest{{Uri: exactURI("/old")}}, Redirect: &networking.HTTPRedirect{Uri: "/new", Authority: "ratings.other", RedirectCode: 308, Scheme: "https", RedirectPort: &networking.HTTPRedirect_Port{Port: 8443}}},
					{Match: []*networking.HTTPMatchRequest{{Uri: exactURI("/teapot")}}, DirectResponse: &networking.HTTPDirectResponse{Status: 418, Body: &networking.HTTPBody{Specifier: &networking.HTTPBody_String_{String_: "short and stout"}}}},
					{Match: []*networking.HTTPMatchRequest{{Uri: prefixURI("/api")}}, Rewrite: &networking.HTTPRewrite{Uri: "/", Authority: "ratings.internal"},
						Headers: &networking.Headers{
							Request:  &networking.Headers_HeaderOperations{Set: map[string]string{"x-b": "2", "x-a": "1"}, Add: map[string]string{"x-c": "3"}, Remove: []string{"x-z", "x-y"}},
							Response: &networking.Headers_HeaderOperations{Set: map[string]string{"x-served-by": "weft"}},
						},
						Timeout: durationpb.New(3 * time.Second),
						Retries: &networking.HTTPRetry{Attempts: 4, PerTryTimeout: durationpb.New(500 * time.Millisecond), RetryOn: "5xx,gateway_error,503,reset"},
						Route:   []*networking.HTTPRouteDestination{dest("ratings", "", 0)}},
					{Match: []*networking.HTTPMatchRequest{{Uri: prefixURI("/regex")}}, Rewrite: &networking.HTTPRewrite{UriRegexRewrite: &networking.RegexRewrite{Match: "^/regex/(.*)$", Rewrite: "/\\1"}},
						Retries: &networking.HTTPRetry{Attempts: 0}, Route: []*networking.HTTPRouteDestination{dest("ratings", "", 0)}},
					{Mirror: &networking.Destination{Host: "reviews"}, MirrorPercentage: &networking.Percent{Value: 12.5},
						Fault: &networking.HTTPFaultInjection{
							Delay: &networking.HTTPFaultInjection_Delay{HttpDelayType: &networking.HTTPFaultInjection_Delay_FixedDelay{FixedDelay: durationpb.New(2 * time.Second)}, Percentage: &networking.Percent{Value: 10}},
							Abort: &networking.HTTPFaultInjection_Abort{ErrorType: &networking.HTTPFaultInjection_Abort_HttpStatus{HttpStatus: 503}, Percentage: &networking.Percent{Value: 0.5}},
						},
						Route: []*networking.HTTPRouteDestination{dest("ratings", "", 0)}},
				},
			})}
		}, proxy: withInstance(sidecarProxy())},
		{name: "clusters_traffic_policy", mutate: func(s *model.Snapshot) {
			s.DestinationRules = []*model.DestinationRule{
				dr("reviews", "default", &networking.DestinationRule{
					Host: "reviews",
					TrafficPolicy: &networking.TrafficPolicy{
						LoadBalancer: &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_Simple{Simple: networking.LoadBalancerSettings_LEAST_REQUEST}},
						ConnectionPool: &networking.ConnectionPoolSettings{
							Tcp:  &networking.ConnectionPoolSettings_TCPSettings{MaxConnections: 100, ConnectTimeout: durationpb.New(250 * time.Millisecond)},
							Http: &networking.ConnectionPoolSettings_HTTPSettings{Http1MaxPendingRequests: 10, Http2MaxRequests: 200, MaxRequestsPerConnection: 5, MaxRetries: 3, IdleTimeout: durationpb.New(30 * time.Second)},
						},
						OutlierDetection: &networking.OutlierDetection{Consecutive_5XxErrors: wrapperspb.UInt32(7), Interval: durationpb.New(5 * time.Second), BaseEjectionTime: durationpb.New(30 * time.Second), MaxEjectionPercent: 50},
						Tls:              &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_ISTIO_MUTUAL},
						PortLevelSettings: []*networking.TrafficPolicy_PortTrafficPolicy{{
							Port:         &networking.PortSelector{Number: 9080},
							LoadBalancer: &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_Simple{Simple: networking.LoadBalancerSettings_RANDOM}},
						}},
					},
					Subsets: []*networking.Subset{
						{Name: "v1", Labels: map[string]string{"version": "v1"}},
						{Name: "v2", Labels: map[string]string{"version": "v2"}, TrafficPolicy: &networking.TrafficPolicy{
							LoadBalancer: &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_ConsistentHash{ConsistentHash: &networking.LoadBalancerSettings_ConsistentHashLB{
								HashKey:       &networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName{HttpHeaderName: "x-user"},
								HashAlgorithm: &networking.LoadBalancerSettings_ConsistentHashLB_Maglev{Maglev: &networking.LoadBalancerSettings_ConsistentHashLB_MagLev{TableSize: 65537}},
							}}},
						}},
					},
				}),
				dr("ratings", "default", &networking.DestinationRule{
					Host: "ratings",
					TrafficPolicy: &networking.TrafficPolicy{
						LoadBalancer: &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_ConsistentHash{ConsistentHash: &networking.LoadBalancerSettings_ConsistentHashLB{
							HashKey:       &networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie{HttpCookie: &networking.LoadBalancerSettings_ConsistentHashLB_HTTPCookie{Name: "session", Path: "/", Ttl: durationpb.New(time.Hour)}},
							HashAlgorithm: &networking.LoadBalancerSettings_ConsistentHashLB_RingHash_{RingHash: &networking.LoadBalancerSettings_ConsistentHashLB_RingHash{MinimumRingSize: 1024}},
						}}},
						Tls: &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_SIMPLE, CaCertificates: "/etc/certs/ca.pem", Sni: "ratings.example", SubjectAltNames: []string{"ratings.example"}},
					},
				}),
				dr("echo", "grpc", &networking.DestinationRule{
					Host:          "echo",
					TrafficPolicy: &networking.TrafficPolicy{ConnectionPool: &networking.ConnectionPoolSettings{Http: &networking.ConnectionPoolSettings_HTTPSettings{MaxConcurrentStreams: 64}}},
				}),
			}
			s.VirtualServices = []*model.VirtualService{vs("reviews", "default", &networking.VirtualService{
				Hosts: []string{"reviews"},
				Http:  []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{dest("reviews", "v2", 0)}}},
			})}
		}, proxy: withInstance(sidecarProxy())},
		{name: "tcp_routes", mutate: func(s *model.Snapshot) {
			s.DestinationRules = []*model.DestinationRule{dr("mysql", "db", &networking.DestinationRule{Host: "mysql", Subsets: []*networking.Subset{{Name: "primary"}, {Name: "replica"}}})}
			s.VirtualServices = []*model.VirtualService{vs("mysql", "db", &networking.VirtualService{
				Hosts: []string{"mysql"},
				Tcp: []*networking.TCPRoute{{
					Match: []*networking.L4MatchAttributes{{Port: 3306}},
					Route: []*networking.RouteDestination{
						{Destination: &networking.Destination{Host: "mysql", Subset: "primary"}, Weight: 90},
						{Destination: &networking.Destination{Host: "mysql", Subset: "replica"}, Weight: 10},
					},
				}},
			})}
		}, proxy: withInstance(sidecarProxy())},
		{name: "sidecar_upstreams", mutate: addUpstreams, proxy: withInstance(sidecarProxy())},
		// A sidecar behind iptables REDIRECT (INTERCEPTION_MODE in its
		// node metadata): transparent virtualOutbound with a passthrough
		// default chain and PassthroughCluster.
		{name: "sidecar_capture", proxy: func(s *model.Snapshot) *Proxy {
			return ProxyFromNode(&core.Node{
				Id: xdsmeta.NodeID("sidecar", "127.0.0.1", "productpage-v1-0", "default"),
				Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
					xdsmeta.MetaProxyType:        structpb.NewStringValue(xdsmeta.ProxyTypeSidecar),
					xdsmeta.MetaInterceptionMode: structpb.NewStringValue(xdsmeta.InterceptionRedirect),
				}},
			}, s)
		}},
		{name: "sidecar_scope", mutate: func(s *model.Snapshot) {
			s.Sidecars = []*model.Sidecar{
				{Meta: model.Meta{Kind: "Sidecar", Namespace: "default", Name: "default"}, Spec: &networking.Sidecar{
					Egress: []*networking.IstioEgressListener{{Hosts: []string{"./*"}}},
				}},
				{Meta: model.Meta{Kind: "Sidecar", Namespace: "default", Name: "productpage"}, Spec: &networking.Sidecar{
					WorkloadSelector: &networking.WorkloadSelector{Labels: map[string]string{"app": "productpage"}},
					Egress:           []*networking.IstioEgressListener{{Hosts: []string{"./reviews.default.svc.cluster.local", "db/*"}}},
				}},
			}
		}, proxy: withInstance(sidecarProxy())},
		{name: "gateway", mutate: goldenGateway, proxy: func(*model.Snapshot) *Proxy { return gatewayProxy() }},
	}
}

// goldenGateway adds the bookinfo Gateway (HTTP 8080 and an HTTPS
// server, which gets no listener) and its VirtualService.
func goldenGateway(s *model.Snapshot) {
	s.Gateways = []*model.Gateway{{Meta: model.Meta{Kind: "Gateway", Namespace: "default", Name: "bookinfo-gateway"}, Spec: &networking.Gateway{
		Selector: map[string]string{"istio": "ingressgateway"},
		Servers: []*networking.Server{
			{Port: &networking.Port{Number: 8080, Name: "http", Protocol: "HTTP"}, Hosts: []string{"*"}},
			{Port: &networking.Port{Number: 8443, Name: "https", Protocol: "HTTPS"}, Hosts: []string{"*"}},
		},
	}}}
	s.VirtualServices = []*model.VirtualService{
		vs("bookinfo", "default", &networking.VirtualService{
			Hosts: []string{"*"}, Gateways: []string{"bookinfo-gateway"},
			Http: []*networking.HTTPRoute{{
				Match: []*networking.HTTPMatchRequest{{Uri: exactURI("/productpage")}, {Uri: prefixURI("/static")}},
				Route: []*networking.HTTPRouteDestination{dest("reviews.default.svc.cluster.local", "", 0)},
			}},
		}),
		vs("mesh-only", "default", &networking.VirtualService{Hosts: []string{"ratings"}, Http: []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{dest("ratings", "", 0)}}}}),
	}
}

// gatewayProxy is the ingress gateway of namespace default.
func gatewayProxy() *Proxy {
	return &Proxy{ID: "router~127.0.0.1~ingress-0.default~default.svc.cluster.local", Type: Gateway, Namespace: "default", Labels: map[string]string{"istio": "ingressgateway"}}
}

// addUpstreams gives productpage explicit local upstream ports: reviews
// (HTTP, routed by a VirtualService with a split, a header operation and
// retries), mysql.db (TCP, weighted tcp route), and one for a service that
// is not in force, which gets no listener.
func addUpstreams(s *model.Snapshot) {
	s.Instances["productpage-v1-0.default"].Upstreams = []model.InstanceUpstream{
		{Host: "reviews.default.svc.cluster.local", Port: 9080, LocalPort: 21010},
		{Host: "mysql.db.svc.cluster.local", Port: 3306, LocalPort: 21011},
		{Host: "gone.default.svc.cluster.local", Port: 80, LocalPort: 21012},
	}
	s.DestinationRules = []*model.DestinationRule{
		dr("reviews", "default", &networking.DestinationRule{Host: "reviews", Subsets: reviewsSubsets}),
		dr("mysql", "db", &networking.DestinationRule{Host: "mysql", Subsets: []*networking.Subset{{Name: "primary"}, {Name: "replica"}}}),
	}
	s.VirtualServices = []*model.VirtualService{
		vs("mysql", "db", &networking.VirtualService{
			Hosts: []string{"mysql"},
			Tcp: []*networking.TCPRoute{{Route: []*networking.RouteDestination{
				{Destination: &networking.Destination{Host: "mysql", Subset: "primary"}, Weight: 75},
				{Destination: &networking.Destination{Host: "mysql", Subset: "replica"}, Weight: 25},
			}}},
		}),
		vs("reviews", "default", &networking.VirtualService{
			Hosts: []string{"reviews"},
			Http: []*networking.HTTPRoute{{
				Name:    "split",
				Headers: &networking.Headers{Response: &networking.Headers_HeaderOperations{Set: map[string]string{"x-routed-by": "weft"}}},
				Retries: &networking.HTTPRetry{Attempts: 3, RetryOn: "5xx"},
				Route:   []*networking.HTTPRouteDestination{dest("reviews", "v1", 90), dest("reviews", "v2", 10)},
			}},
		}),
	}
}

func exactURI(s string) *networking.StringMatch { return exact(s) }
func prefixURI(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: s}}
}

// dumpJSON renders resources as stable, indented JSON (protojson output
// re-encoded so whitespace is deterministic).
func dumpJSON(t *testing.T, r *Resources) []byte {
	t.Helper()
	out := map[string][]any{}
	add := func(kind string, m proto.Message) {
		b, err := protojson.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		out[kind] = append(out[kind], v)
	}
	for _, m := range r.Listeners {
		add("listeners", m)
	}
	for _, m := range r.Routes {
		add("routes", m)
	}
	for _, m := range r.Clusters {
		add("clusters", m)
	}
	for _, m := range r.Endpoints {
		add("endpoints", m)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			snap := testSnapshot()
			if tc.mutate != nil {
				tc.mutate(snap)
			}
			res, err := Translate(snap, tc.proxy(snap))
			if err != nil {
				t.Fatalf("Translate: %v", err)
			}
			got := dumpJSON(t, res)
			path := filepath.Join("testdata", tc.name+".golden.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/xdstranslate -update)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	for _, tc := range goldenCases() {
		snap := testSnapshot()
		if tc.mutate != nil {
			tc.mutate(snap)
		}
		a, _ := Translate(snap, tc.proxy(snap))
		b, _ := Translate(snap, tc.proxy(snap))
		if diff := cmp.Diff(a, b, protocmp.Transform()); diff != "" {
			t.Errorf("%s: two translations differ (-first +second):\n%s", tc.name, diff)
		}
		if a.Hashes != b.Hashes {
			t.Errorf("%s: hashes differ: %+v vs %+v", tc.name, a.Hashes, b.Hashes)
		}
	}
}

func TestProxyFromNode(t *testing.T) {
	snap := testSnapshot()
	labels, _ := structpb.NewStruct(map[string]any{"app": "productpage", "version": "v1"})
	snap.Instances["zoned-0.default"] = &model.Instance{Name: "zoned-0", Namespace: "default", Locality: "us-east/b/"}
	tests := []struct {
		name string
		node *core.Node
		want *Proxy
	}{
		{name: "empty node is proxyless in default", node: &core.Node{}, want: &Proxy{Type: Proxyless, Namespace: "default"}},
		{name: "nil node", node: nil, want: &Proxy{Type: Proxyless, Namespace: "default"}},
		{name: "sidecar with metadata and instance", node: &core.Node{
			Id: xdsmeta.NodeID("sidecar", "127.0.0.1", "productpage-v1-0", "default"),
			Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
				xdsmeta.MetaProxyType:      structpb.NewStringValue("sidecar"),
				xdsmeta.MetaLabels:         structpb.NewStructValue(labels),
				xdsmeta.MetaServiceAccount: structpb.NewStringValue("bookinfo-productpage"),
			}},
		}, want: &Proxy{
			ID: "sidecar~127.0.0.1~productpage-v1-0.default~default.svc.cluster.local", Type: Sidecar, Namespace: "default",
			Name: "productpage-v1-0", Workload: "productpage-v1", IP: "127.0.0.1", ServiceAccount: "bookinfo-productpage",
			Labels: map[string]string{"app": "productpage", "version": "v1"}, Instance: snap.Instances["productpage-v1-0.default"],
		}},
		{name: "sidecar with REDIRECT interception", node: &core.Node{
			Id: "sidecar~10.0.0.7~a-0.default~default.svc.cluster.local",
			Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
				xdsmeta.MetaProxyType:        structpb.NewStringValue("sidecar"),
				xdsmeta.MetaInterceptionMode: structpb.NewStringValue("REDIRECT"),
			}},
		}, want: &Proxy{
			ID: "sidecar~10.0.0.7~a-0.default~default.svc.cluster.local", Type: Sidecar, Namespace: "default",
			Name: "a-0", IP: "10.0.0.7", Capture: true,
		}},
		{name: "gateway by metadata, namespace from metadata", node: &core.Node{
			Id: "gw",
			Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
				xdsmeta.MetaProxyType: structpb.NewStringValue("gateway"),
				xdsmeta.MetaNamespace: structpb.NewStringValue("istio-system"),
			}},
		}, want: &Proxy{ID: "gw", Type: Gateway, Namespace: "istio-system"}},
		{name: "locality from the node", node: &core.Node{
			Id:       "client-2",
			Locality: &core.Locality{Region: "us-east", Zone: "a"},
		}, want: &Proxy{ID: "client-2", Type: Proxyless, Namespace: "default", Locality: "us-east/a"}},
		{name: "locality from the instance", node: &core.Node{
			Id: xdsmeta.NodeID("sidecar", "127.0.0.1", "zoned-0", "default"),
		}, want: &Proxy{
			ID: "sidecar~127.0.0.1~zoned-0.default~default.svc.cluster.local", Type: Proxyless, Namespace: "default",
			Name: "zoned-0", IP: "127.0.0.1", Locality: "us-east/b", Instance: snap.Instances["zoned-0.default"],
		}},
		{name: "proxyless gRPC with Istio metadata", node: &core.Node{
			Id:       "client-1",
			Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{xdsmeta.MetaNamespace: structpb.NewStringValue("grpc")}},
		}, want: &Proxy{ID: "client-1", Type: Proxyless, Namespace: "grpc"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ProxyFromNode(tc.node, snap)
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("ProxyFromNode (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	snap := testSnapshot()
	good, err := Translate(snap, proxylessProxy("default"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mutate  func(r *Resources)
		wantErr string
	}{
		{name: "consistent", mutate: func(*Resources) {}},
		{name: "api_listener route missing", mutate: func(r *Resources) { r.Routes = without(r.Routes, "echo.grpc.svc.cluster.local:7070") }, wantErr: `route configuration "echo.grpc.svc.cluster.local:7070" referenced by listener "echo.grpc`},
		{name: "cluster missing", mutate: func(r *Resources) { r.Clusters = without(r.Clusters, "outbound|80||api.example.com") }, wantErr: `cluster "outbound|80||api.example.com" referenced by route configuration`},
		{name: "endpoints missing", mutate: func(r *Resources) {
			r.Endpoints = withoutCLA(r.Endpoints, "outbound|7070||echo.grpc.svc.cluster.local")
		}, wantErr: `endpoints (ClusterLoadAssignment) "outbound|7070||echo.grpc.svc.cluster.local" referenced by EDS cluster`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := *good
			tc.mutate(&r)
			err := Check(&r)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Check error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestUpstreamListenersMatchRDS checks that an HTTP upstream listener
// routes exactly as RDS "<port>" does for the same service.
func TestUpstreamListenersMatchRDS(t *testing.T) {
	snap := testSnapshot()
	addUpstreams(snap)
	res, err := Translate(snap, sidecarProxy().WithSnapshot(snap))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var inline *route.RouteConfiguration
	for _, l := range res.Listeners {
		names = append(names, l.GetName())
		if l.GetName() != xdsmeta.UpstreamListenerName(21010, "reviews.default.svc.cluster.local", 9080) {
			continue
		}
		m := &hcm.HttpConnectionManager{}
		if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(m); err != nil {
			t.Fatal(err)
		}
		inline = m.GetRouteConfig()
	}
	wantNames := []string{"inbound|9080", "inbound|9091",
		"outbound|21010|reviews.default.svc.cluster.local:9080", "outbound|21011|mysql.db.svc.cluster.local:3306", "virtualOutbound"}
	if diff := cmp.Diff(wantNames, names); diff != "" {
		t.Fatalf("listeners (-want +got):\n%s", diff)
	}
	if inline == nil {
		t.Fatal("the reviews upstream listener has no inline route configuration")
	}
	var rds *route.VirtualHost
	for _, rc := range res.Routes {
		for _, vh := range rc.GetVirtualHosts() {
			if rc.GetName() == "9080" && vh.GetName() == "reviews.default.svc.cluster.local:9080" {
				rds = vh
			}
		}
	}
	got := inline.GetVirtualHosts()[0]
	if diff := cmp.Diff([]string{"*"}, got.GetDomains()); diff != "" {
		t.Errorf("domains (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(rds.GetRoutes(), got.GetRoutes(), protocmp.Transform()); diff != "" {
		t.Errorf("upstream routes differ from RDS (-rds +upstream):\n%s", diff)
	}
}

func TestCheckInlineRoutes(t *testing.T) {
	snap := testSnapshot()
	addUpstreams(snap)
	res, err := Translate(snap, sidecarProxy().WithSnapshot(snap))
	if err != nil {
		t.Fatal(err)
	}
	var ls []*listener.Listener
	for _, l := range res.Listeners {
		if strings.HasPrefix(l.GetName(), xdsmeta.ListenerUpstreamPrefix) {
			ls = append(ls, l)
		}
	}
	r := &Resources{Listeners: ls, Clusters: without(res.Clusters, "outbound|9080|v2|reviews.default.svc.cluster.local"), Endpoints: res.Endpoints}
	err = Check(r)
	want := `cluster "outbound|9080|v2|reviews.default.svc.cluster.local" referenced by listener "outbound|21010|reviews.default.svc.cluster.local:9080"`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Check error = %v, want it to contain %q", err, want)
	}
}

func TestTranslateMissingDestinationFails(t *testing.T) {
	snap := testSnapshot()
	snap.VirtualServices = []*model.VirtualService{vs("reviews", "default", &networking.VirtualService{
		Hosts: []string{"reviews"},
		Http:  []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{dest("reviews", "v9", 0)}}},
	})}
	_, err := Translate(snap, sidecarProxy().WithSnapshot(snap))
	if err == nil || !strings.Contains(err.Error(), `cluster "outbound|9080|v9|reviews.default.svc.cluster.local"`) {
		t.Fatalf("Translate error = %v, want a missing subset cluster", err)
	}
}

func TestSharedAcrossProxies(t *testing.T) {
	snap := testSnapshot()
	tr := New(snap)
	a, err := tr.Translate(proxylessProxy("default"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := tr.Translate(&Proxy{ID: "other", Type: Proxyless, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if &a.Clusters[0] != &b.Clusters[0] || &a.Listeners[0] != &b.Listeners[0] {
		t.Errorf("proxies with identical inputs did not share resources")
	}
	c, _ := tr.Translate(proxylessProxy("grpc"))
	if c.Hashes.Listeners == a.Hashes.Listeners {
		t.Errorf("different namespaces got the same listener hash")
	}
	if c.Hashes.Clusters != a.Hashes.Clusters {
		t.Errorf("unscoped proxies got different cluster hashes")
	}
}

func without[T interface{ GetName() string }](items []T, name string) []T {
	var out []T
	for _, it := range items {
		if it.GetName() != name {
			out = append(out, it)
		}
	}
	return out
}

func withoutCLA(items []*endpoint.ClusterLoadAssignment, name string) []*endpoint.ClusterLoadAssignment {
	var out []*endpoint.ClusterLoadAssignment
	for _, it := range items {
		if it.GetClusterName() != name {
			out = append(out, it)
		}
	}
	return out
}
