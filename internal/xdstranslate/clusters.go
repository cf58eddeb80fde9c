package xdstranslate

import (
	"strings"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpopts "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/xdsmeta"
)

// DefaultConnectTimeout is the upstream connect timeout when no
// DestinationRule sets one (Istio's default).
const DefaultConnectTimeout = 10 * time.Second

// HTTPProtocolOptionsKey is the typed_extension_protocol_options key for
// upstream HTTP settings.
const HTTPProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// MetadataKey is the filter_metadata key under which Weft records facts
// about a cluster that have no Envoy field yet (the TLS mode).
const MetadataKey = "weft"

func adsConfigSource() *core.ConfigSource {
	return &core.ConfigSource{
		ResourceApiVersion:    core.ApiVersion_V3,
		ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
	}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err) // only for messages built here; marshaling them cannot fail
	}
	return a
}

// policy is a traffic policy resolved for one cluster (model's).
type policy = model.TrafficPolicy

func resolvePolicy(dr *model.DestinationRule, subset *networking.Subset, port uint32) policy {
	var spec *networking.DestinationRule
	if dr != nil {
		spec = dr.Spec
	}
	return model.ResolveTrafficPolicy(spec, subset, port)
}

// destinationRuleFor returns the DestinationRule for a host: an exact host
// match first, then the longest wildcard match. Rules are in snapshot order,
// so the first of equals wins.
func destinationRuleFor(snap *model.Snapshot, host string) *model.DestinationRule {
	var best *model.DestinationRule
	bestLen := -1
	for _, dr := range snap.DestinationRules {
		h := dr.Spec.GetHost()
		if h == host {
			return dr
		}
		if hostMatches(h, host) && len(h) > bestLen {
			best, bestLen = dr, len(h)
		}
	}
	return best
}

// hostMatches reports whether pattern ("*", "*.example.com" or a name)
// matches host.
func hostMatches(pattern, host string) bool {
	if pattern == "*" || pattern == host {
		return true
	}
	if strings.HasPrefix(pattern, "*") {
		return strings.HasSuffix(host, pattern[1:])
	}
	return false
}

// buildCluster builds one outbound cluster of a service port.
func buildCluster(svc *model.Service, port model.Port, subset *networking.Subset, dr *model.DestinationRule, trustDomain string) *cluster.Cluster {
	name := model.ClusterName("outbound", port.Number, subset.GetName(), svc.Hostname)
	c := &cluster.Cluster{
		Name:           name,
		ConnectTimeout: durationpb.New(DefaultConnectTimeout),
		LbPolicy:       cluster.Cluster_ROUND_ROBIN,
	}
	if svc.Resolution == model.ResolutionNone {
		c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_ORIGINAL_DST}
		c.LbPolicy = cluster.Cluster_CLUSTER_PROVIDED
	} else {
		// DNS services are served over EDS too: their endpoint addresses are
		// host names, which the Weft proxy resolves itself.
		c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_EDS}
		c.EdsClusterConfig = &cluster.Cluster_EdsClusterConfig{EdsConfig: adsConfigSource(), ServiceName: name}
	}
	p := resolvePolicy(dr, subset, port.Number)
	if svc.Resolution != model.ResolutionNone {
		applyLB(c, p.LoadBalancer)
	}
	common := applyPool(c, p.ConnectionPool)
	applyOutlier(c, p.OutlierDetection)
	applyTLS(c, p.TLS)
	applyMeshTLS(c, svc, port, subset.GetName(), p.TLS, trustDomain)
	if !port.Protocol.IsHTTP() {
		offerPeerExchange(c)
	}

	if port.Protocol.IsHTTP() {
		opts := &httpopts.HttpProtocolOptions{CommonHttpProtocolOptions: common}
		if port.Protocol.IsHTTP2() {
			h2 := &core.Http2ProtocolOptions{}
			if n := p.ConnectionPool.GetHttp().GetMaxConcurrentStreams(); n > 0 {
				h2.MaxConcurrentStreams = wrapperspb.UInt32(uint32(n))
			}
			opts.UpstreamProtocolOptions = &httpopts.HttpProtocolOptions_ExplicitHttpConfig_{
				ExplicitHttpConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: h2},
				},
			}
		} else if common != nil {
			opts.UpstreamProtocolOptions = &httpopts.HttpProtocolOptions_ExplicitHttpConfig_{
				ExplicitHttpConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &core.Http1ProtocolOptions{}},
				},
			}
		}
		if opts.UpstreamProtocolOptions != nil {
			c.TypedExtensionProtocolOptions = map[string]*anypb.Any{HTTPProtocolOptionsKey: mustAny(opts)}
		}
	}
	return c
}

func applyLB(c *cluster.Cluster, lb *networking.LoadBalancerSettings) {
	switch x := lb.GetLbPolicy().(type) {
	case *networking.LoadBalancerSettings_Simple:
		switch x.Simple {
		case networking.LoadBalancerSettings_LEAST_CONN, networking.LoadBalancerSettings_LEAST_REQUEST:
			c.LbPolicy = cluster.Cluster_LEAST_REQUEST
		case networking.LoadBalancerSettings_RANDOM:
			c.LbPolicy = cluster.Cluster_RANDOM
		case networking.LoadBalancerSettings_PASSTHROUGH:
			c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_ORIGINAL_DST}
			c.EdsClusterConfig = nil
			c.LbPolicy = cluster.Cluster_CLUSTER_PROVIDED
		default:
			c.LbPolicy = cluster.Cluster_ROUND_ROBIN
		}
	case *networking.LoadBalancerSettings_ConsistentHash:
		ch := x.ConsistentHash
		if mg := ch.GetMaglev(); mg != nil {
			c.LbPolicy = cluster.Cluster_MAGLEV
			if mg.GetTableSize() > 0 {
				c.LbConfig = &cluster.Cluster_MaglevLbConfig_{MaglevLbConfig: &cluster.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(mg.GetTableSize())}}
			}
			return
		}
		c.LbPolicy = cluster.Cluster_RING_HASH
		size := ch.GetRingHash().GetMinimumRingSize()
		if size == 0 {
			size = ch.GetMinimumRingSize()
		}
		if size > 0 {
			c.LbConfig = &cluster.Cluster_RingHashLbConfig_{RingHashLbConfig: &cluster.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(size)}}
		}
	}
}

// applyPool maps connectionPool onto circuit breakers, the connect timeout
// and keepalive; it returns the HTTP options that go into the cluster's
// HttpProtocolOptions, or nil.
func applyPool(c *cluster.Cluster, pool *networking.ConnectionPoolSettings) *core.HttpProtocolOptions {
	if pool == nil {
		return nil
	}
	t := &cluster.CircuitBreakers_Thresholds{}
	set := false
	if n := pool.GetTcp().GetMaxConnections(); n > 0 {
		t.MaxConnections, set = wrapperspb.UInt32(uint32(n)), true
	}
	if n := pool.GetHttp().GetHttp1MaxPendingRequests(); n > 0 {
		t.MaxPendingRequests, set = wrapperspb.UInt32(uint32(n)), true
	}
	if n := pool.GetHttp().GetHttp2MaxRequests(); n > 0 {
		t.MaxRequests, set = wrapperspb.UInt32(uint32(n)), true
	}
	if n := pool.GetHttp().GetMaxRetries(); n > 0 {
		t.MaxRetries, set = wrapperspb.UInt32(uint32(n)), true
	}
	if set {
		c.CircuitBreakers = &cluster.CircuitBreakers{Thresholds: []*cluster.CircuitBreakers_Thresholds{t}}
	}
	if d := pool.GetTcp().GetConnectTimeout(); d != nil {
		c.ConnectTimeout = durationpb.New(d.AsDuration())
	}
	if ka := pool.GetTcp().GetTcpKeepalive(); ka != nil {
		k := &core.TcpKeepalive{}
		if ka.GetProbes() > 0 {
			k.KeepaliveProbes = wrapperspb.UInt32(ka.GetProbes())
		}
		if ka.GetTime() != nil {
			k.KeepaliveTime = wrapperspb.UInt32(uint32(ka.GetTime().AsDuration().Seconds()))
		}
		if ka.GetInterval() != nil {
			k.KeepaliveInterval = wrapperspb.UInt32(uint32(ka.GetInterval().AsDuration().Seconds()))
		}
		c.UpstreamConnectionOptions = &cluster.UpstreamConnectionOptions{TcpKeepalive: k}
	}
	var common *core.HttpProtocolOptions
	if d := pool.GetHttp().GetIdleTimeout(); d != nil {
		common = &core.HttpProtocolOptions{IdleTimeout: durationpb.New(d.AsDuration())}
	}
	if n := pool.GetHttp().GetMaxRequestsPerConnection(); n > 0 {
		if common == nil {
			common = &core.HttpProtocolOptions{}
		}
		common.MaxRequestsPerConnection = wrapperspb.UInt32(uint32(n))
	}
	if d := pool.GetTcp().GetMaxConnectionDuration(); d != nil {
		if common == nil {
			common = &core.HttpProtocolOptions{}
		}
		common.MaxConnectionDuration = durationpb.New(d.AsDuration())
	}
	return common
}

func applyOutlier(c *cluster.Cluster, od *networking.OutlierDetection) {
	if od == nil {
		return
	}
	// Only the consecutive-error detectors Istio configures; Envoy's
	// success-rate detection would otherwise be on by default.
	out := &cluster.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(0)}
	if v := od.GetConsecutive_5XxErrors(); v != nil {
		out.Consecutive_5Xx = wrapperspb.UInt32(v.GetValue())
		out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(enforcing(v.GetValue()))
	} else if n := od.GetConsecutiveErrors(); n > 0 {
		// The deprecated field counted gateway errors (502, 503, 504).
		out.ConsecutiveGatewayFailure = wrapperspb.UInt32(uint32(n))
		out.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(100)
		out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(0)
	}
	if v := od.GetConsecutiveGatewayErrors(); v != nil {
		out.ConsecutiveGatewayFailure = wrapperspb.UInt32(v.GetValue())
		out.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(enforcing(v.GetValue()))
	}
	if od.GetSplitExternalLocalOriginErrors() {
		out.SplitExternalLocalOriginErrors = true
		if v := od.GetConsecutiveLocalOriginFailures(); v != nil {
			out.ConsecutiveLocalOriginFailure = wrapperspb.UInt32(v.GetValue())
			out.EnforcingConsecutiveLocalOriginFailure = wrapperspb.UInt32(enforcing(v.GetValue()))
		}
	}
	if d := od.GetInterval(); d != nil {
		out.Interval = durationpb.New(d.AsDuration())
	}
	if d := od.GetBaseEjectionTime(); d != nil {
		out.BaseEjectionTime = durationpb.New(d.AsDuration())
	}
	if n := od.GetMaxEjectionPercent(); n > 0 {
		out.MaxEjectionPercent = wrapperspb.UInt32(uint32(n))
	}
	if v := od.GetFailurePercentageThreshold(); v != nil {
		out.FailurePercentageThreshold = wrapperspb.UInt32(v.GetValue())
		out.EnforcingFailurePercentage = wrapperspb.UInt32(100)
	}
	c.OutlierDetection = out
	if n := od.GetMinHealthPercent(); n >= 0 {
		c.CommonLbConfig = &cluster.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: float64(n)}}
	}
}

func enforcing(v uint32) uint32 {
	if v > 0 {
		return 100
	}
	return 0
}

// applyTLS records the DestinationRule's TLS mode in the cluster metadata
// and, where Weft can do it correctly from files alone (SIMPLE and MUTUAL
// with file paths), sets the upstream TLS transport socket.
//
// ISTIO_MUTUAL and the default (auto mTLS) get their transport sockets
// from applyMeshTLS (mtls.go). credentialName (secrets) is only recorded.
func applyTLS(c *cluster.Cluster, tls *networking.ClientTLSSettings) {
	if tls == nil {
		return
	}
	mode := tls.GetMode().String()
	c.Metadata = &core.Metadata{FilterMetadata: map[string]*structpb.Struct{
		MetadataKey: {Fields: map[string]*structpb.Value{"tls_mode": structpb.NewStringValue(mode)}},
	}}
	switch tls.GetMode() {
	case networking.ClientTLSSettings_SIMPLE, networking.ClientTLSSettings_MUTUAL:
	default:
		return
	}
	if tls.GetCredentialName() != "" {
		return
	}
	common := &tlsv3.CommonTlsContext{}
	if ca := tls.GetCaCertificates(); ca != "" {
		vc := &tlsv3.CertificateValidationContext{TrustedCa: &core.DataSource{Specifier: &core.DataSource_Filename{Filename: ca}}}
		for _, san := range tls.GetSubjectAltNames() {
			vc.MatchTypedSubjectAltNames = append(vc.MatchTypedSubjectAltNames, sanMatcher(san))
		}
		common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc}
	}
	if tls.GetMode() == networking.ClientTLSSettings_MUTUAL {
		if tls.GetClientCertificate() == "" || tls.GetPrivateKey() == "" {
			return
		}
		common.TlsCertificates = []*tlsv3.TlsCertificate{{
			CertificateChain: &core.DataSource{Specifier: &core.DataSource_Filename{Filename: tls.GetClientCertificate()}},
			PrivateKey:       &core.DataSource{Specifier: &core.DataSource_Filename{Filename: tls.GetPrivateKey()}},
		}}
	}
	up := &tlsv3.UpstreamTlsContext{CommonTlsContext: common, Sni: tls.GetSni()}
	c.TransportSocket = &core.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(up)},
	}
}

// inboundCluster is the STATIC cluster that reaches the local app behind
// an instance port.
func inboundCluster(inst *model.Instance, p model.InstancePort) *cluster.Cluster {
	name := inboundClusterName(p.Number)
	c := &cluster.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(DefaultConnectTimeout),
		LbPolicy:             cluster.Cluster_ROUND_ROBIN,
		LoadAssignment: &endpoint.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpoint.LocalityLbEndpoints{{
				LbEndpoints: []*endpoint.LbEndpoint{{
					HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: socketAddress(localAddress(inst), p.AppPort)}},
				}},
			}},
		},
	}
	if inst.Service != "" {
		// The sidecar's metrics name the service behind the port
		// (destination_service on the server side).
		c.Metadata = &core.Metadata{FilterMetadata: map[string]*structpb.Struct{
			xdsmeta.MetaFilter: {Fields: map[string]*structpb.Value{
				xdsmeta.MetaService: structpb.NewStringValue(model.FQDN(inst.Service, inst.Namespace)),
				xdsmeta.MetaPort:    structpb.NewNumberValue(float64(p.Number)),
			}},
		}}
	}
	if p.Protocol.IsHTTP2() {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{HTTPProtocolOptionsKey: mustAny(&httpopts.HttpProtocolOptions{
			UpstreamProtocolOptions: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_{
				ExplicitHttpConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &core.Http2ProtocolOptions{}},
				},
			},
		})}
	}
	return c
}

func localAddress(inst *model.Instance) string {
	if inst != nil && inst.Address != "" {
		return inst.Address
	}
	return "127.0.0.1"
}

func socketAddress(ip string, port uint32) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Address:       ip,
		PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
	}}}
}
