package xdstranslate

import (
	"net"
	"net/netip"
	"sort"
	"strconv"

	accesslog "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	trace "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	stream "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpopts "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	tracingtype "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	telemetry "istio.io/api/telemetry/v1alpha1"

	"weft.dev/weft/internal/logfilter"
	"weft.dev/weft/internal/model"
)

// Names of the telemetry parts of an HTTP connection manager.
const (
	// OTLPClusterName is the cluster of the OTLP/gRPC collector
	// (model.MeshTelemetry.TracingEndpoint) that tracing configs point at.
	OTLPClusterName = "weft-otlp"
	// OpenTelemetryTracerName is the tracer of HCM tracing configs.
	OpenTelemetryTracerName = "envoy.tracers.opentelemetry"
	// StdoutAccessLogName is the access logger writing to the proxy's stdout.
	StdoutAccessLogName = "envoy.access_loggers.stdout"
)

// telemetryPolicy is what the Telemetry API and the mesh defaults decide
// for one proxy. A nil *telemetryPolicy means no tracing and no access log.
type telemetryPolicy struct {
	// tracing is set when spans are reported (a collector is configured
	// and no Telemetry disables span reporting).
	tracing bool
	// sampling is the random sampling percentage (0 to 100).
	sampling float64
	// tags are the custom tags, by name.
	tags map[string]*telemetry.Tracing_CustomTag
	// serviceName names the proxy in its spans: its workload.
	serviceName string
	// accessLog turns the stdout access log on.
	accessLog bool
	// logFilter selects the requests logged (nil: every one): the
	// translation of the most specific Telemetry's access log filter.
	logFilter *accesslog.AccessLogFilter
	// endpoint is the collector's host:port.
	endpoint string
}

// telemetryFor resolves the Telemetry that applies to one side of p's
// traffic, as Istio does: the server's (inbound listeners) or the
// client's (outbound listeners, and every listener of a gateway). An
// entry whose match.mode leaves that side out is skipped, so a more
// specific Telemetry limited to one mode leaves the other side as the
// less specific levels set it. Otherwise, as Istio does:
// the mesh defaults, overridden field by field by the selector-less
// Telemetry of the root namespace, then the selector-less one of p's
// namespace, then the first (by name) in p's namespace whose selector
// matches p's labels. Custom tags, when a level sets any, replace the
// ones above it. It returns nil when nothing is on. Proxyless clients
// get nothing: gRPC's xDS client does not read these fields.
func (t *Translator) telemetryFor(p *Proxy, server bool) *telemetryPolicy {
	if p.Type == Proxyless {
		return nil
	}
	mesh := t.snap.MeshTelemetry
	pol := &telemetryPolicy{
		tracing:   mesh.TracingEndpoint != "",
		sampling:  mesh.TracingSampling,
		accessLog: mesh.AccessLogging,
		endpoint:  mesh.TracingEndpoint,
	}
	var root, ns, selected *model.Telemetry
	for _, tm := range t.snap.Telemetries { // sorted by namespace, then name
		sel := tm.Spec.GetSelector().GetMatchLabels()
		switch {
		case len(sel) == 0 && tm.Namespace == mesh.Root():
			if root == nil {
				root = tm
			}
		case len(sel) == 0 && tm.Namespace == p.Namespace:
			if ns == nil {
				ns = tm
			}
		case len(sel) > 0 && tm.Namespace == p.Namespace && model.LabelsMatch(sel, p.Labels):
			if selected == nil {
				selected = tm
			}
		}
	}
	for _, tm := range []*model.Telemetry{root, ns, selected} {
		if tm == nil {
			continue
		}
		if tr := tm.Spec.GetTracing(); len(tr) > 0 && covers(tr[0].GetMatch().GetMode(), server) {
			if s := tr[0].GetRandomSamplingPercentage(); s != nil {
				pol.sampling = s.GetValue()
			}
			if d := tr[0].GetDisableSpanReporting(); d != nil {
				pol.tracing = !d.GetValue() && mesh.TracingEndpoint != ""
			}
			if len(tr[0].GetCustomTags()) > 0 {
				pol.tags = tr[0].GetCustomTags()
			}
		}
		if al := tm.Spec.GetAccessLogging(); len(al) > 0 && covers(al[0].GetMatch().GetMode(), server) {
			pol.accessLog = !al[0].GetDisabled().GetValue()
			if f := al[0].GetFilter(); f != nil {
				// Validation refused expressions that do not compile.
				pol.logFilter, _ = logfilter.Compile(f.GetExpression())
			}
		}
	}
	if !pol.tracing && !pol.accessLog {
		return nil
	}
	pol.serviceName = tracingServiceName(p)
	return pol
}

// tracingServiceName names p in its spans: its workload, else its name,
// else its node ID. The translation cache key includes it.
func tracingServiceName(p *Proxy) string {
	switch {
	case p.Workload != "":
		return p.Workload
	case p.Name != "":
		return p.Name
	}
	return p.ID
}

// covers reports whether a Telemetry entry with match mode m applies to
// the server side (server) or the client side.
func covers(m telemetry.WorkloadMode, server bool) bool {
	return m == telemetry.WorkloadMode_CLIENT_AND_SERVER || (m == telemetry.WorkloadMode_SERVER) == server
}

// collector is whichever of p's two side policies traces, for the
// collector's cluster, or nil when no listener of p traces (a gateway
// has the client side only).
func collector(p *Proxy, client, server *telemetryPolicy) *telemetryPolicy {
	switch {
	case client != nil && client.tracing:
		return client
	case p.Type == Sidecar && server != nil && server.tracing:
		return server
	}
	return nil
}

// apply sets the tracing and access_log fields of an HTTP connection
// manager Weft just built (so not yet shared) and returns it.
func (pol *telemetryPolicy) apply(m *hcm.HttpConnectionManager) *hcm.HttpConnectionManager {
	if pol == nil {
		return m
	}
	if pol.tracing {
		otel := &trace.OpenTelemetryConfig{
			GrpcService: &core.GrpcService{TargetSpecifier: &core.GrpcService_EnvoyGrpc_{
				EnvoyGrpc: &core.GrpcService_EnvoyGrpc{ClusterName: OTLPClusterName},
			}},
			ServiceName: pol.serviceName,
		}
		tr := &hcm.HttpConnectionManager_Tracing{
			RandomSampling: &typev3.Percent{Value: pol.sampling},
			Provider:       &trace.Tracing_Http{Name: OpenTelemetryTracerName, ConfigType: &trace.Tracing_Http_TypedConfig{TypedConfig: mustAny(otel)}},
		}
		names := make([]string, 0, len(pol.tags))
		for n := range pol.tags {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if ct := customTag(n, pol.tags[n]); ct != nil {
				tr.CustomTags = append(tr.CustomTags, ct)
			}
		}
		m.Tracing = tr
	}
	m.AccessLog = pol.accessLogs()
	return m
}

// accessLogs are the access loggers of an HTTP connection manager or a
// tcp_proxy under pol: the proxy's stdout when logging is on, else none.
func (pol *telemetryPolicy) accessLogs() []*accesslog.AccessLog {
	if pol == nil || !pol.accessLog {
		return nil
	}
	return []*accesslog.AccessLog{{
		Name:       StdoutAccessLogName,
		Filter:     pol.logFilter,
		ConfigType: &accesslog.AccessLog_TypedConfig{TypedConfig: mustAny(&stream.StdoutAccessLog{})},
	}}
}

func customTag(name string, t *telemetry.Tracing_CustomTag) *tracingtype.CustomTag {
	ct := &tracingtype.CustomTag{Tag: name}
	switch {
	case t.GetLiteral() != nil:
		ct.Type = &tracingtype.CustomTag_Literal_{Literal: &tracingtype.CustomTag_Literal{Value: t.GetLiteral().GetValue()}}
	case t.GetEnvironment() != nil:
		e := t.GetEnvironment()
		ct.Type = &tracingtype.CustomTag_Environment_{Environment: &tracingtype.CustomTag_Environment{Name: e.GetName(), DefaultValue: e.GetDefaultValue()}}
	case t.GetHeader() != nil:
		h := t.GetHeader()
		ct.Type = &tracingtype.CustomTag_RequestHeader{RequestHeader: &tracingtype.CustomTag_Header{Name: h.GetName(), DefaultValue: h.GetDefaultValue()}}
	default:
		return nil // validation rejects the rest
	}
	return ct
}

// otlpCluster is the collector's cluster: STATIC for an IP address,
// STRICT_DNS for a name, spoken to in HTTP/2 (gRPC). It is nil when the
// policy does not trace.
func (pol *telemetryPolicy) otlpCluster() *cluster.Cluster {
	if pol == nil || !pol.tracing {
		return nil
	}
	host, portStr, err := net.SplitHostPort(pol.endpoint)
	if err != nil {
		host, portStr = pol.endpoint, "4317"
	}
	port, _ := strconv.ParseUint(portStr, 10, 16)
	typ := cluster.Cluster_STATIC
	if _, err := netip.ParseAddr(host); err != nil {
		typ = cluster.Cluster_STRICT_DNS
	}
	return &cluster.Cluster{
		Name:                 OTLPClusterName,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: typ},
		ConnectTimeout:       durationpb.New(DefaultConnectTimeout),
		LbPolicy:             cluster.Cluster_ROUND_ROBIN,
		LoadAssignment: &endpoint.ClusterLoadAssignment{
			ClusterName: OTLPClusterName,
			Endpoints: []*endpoint.LocalityLbEndpoints{{
				LbEndpoints: []*endpoint.LbEndpoint{{
					HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: socketAddress(host, uint32(port))}},
				}},
			}},
		},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{HTTPProtocolOptionsKey: mustAny(&httpopts.HttpProtocolOptions{
			UpstreamProtocolOptions: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_{
				ExplicitHttpConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &core.Http2ProtocolOptions{}},
				},
			},
		})},
	}
}

// withOTLP returns clusters plus the collector's cluster when pol traces
// (a new slice: clusters may be shared). The collector's name sorts after
// "inbound|", "outbound|" and "PassthroughCluster", so order is kept.
func (pol *telemetryPolicy) withOTLP(clusters []*cluster.Cluster) []*cluster.Cluster {
	c := pol.otlpCluster()
	if c == nil {
		return clusters
	}
	out := make([]*cluster.Cluster, 0, len(clusters)+1)
	return append(append(out, clusters...), c)
}

// addOTLP adds the collector's cluster to a proxy's clusters and their
// hash when pol traces.
func (pol *telemetryPolicy) addOTLP(clusters []*cluster.Cluster, hash uint64) ([]*cluster.Cluster, uint64) {
	c := pol.otlpCluster()
	if c == nil {
		return clusters, hash
	}
	return pol.withOTLP(clusters), combine([]uint64{hash, hashMessage(c)})
}

// tracingCluster is the cluster an HCM's OpenTelemetry tracer exports
// to, or "".
func tracingCluster(m *hcm.HttpConnectionManager) string {
	tc := m.GetTracing().GetProvider().GetTypedConfig()
	if tc == nil || !tc.MessageIs((*trace.OpenTelemetryConfig)(nil)) {
		return ""
	}
	otel := &trace.OpenTelemetryConfig{}
	if err := tc.UnmarshalTo(otel); err != nil {
		return ""
	}
	return otel.GetGrpcService().GetEnvoyGrpc().GetClusterName()
}
