package xdstranslate

import (
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	originaldst "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/xdsmeta"
)

// OriginalDstFilterName is the listener filter that makes a listener use
// the original destination of redirected connections.
const OriginalDstFilterName = "envoy.filters.listener.original_dst"

// passthroughCluster sends connections to their original destination.
var passthroughCluster = &cluster.Cluster{
	Name:                 xdsmeta.ClusterPassthrough,
	ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_ORIGINAL_DST},
	LbPolicy:             cluster.Cluster_CLUSTER_PROVIDED,
	ConnectTimeout:       durationpb.New(DefaultConnectTimeout),
}

// blackHoleCluster has no endpoints: connections sent to it are closed.
var blackHoleCluster = &cluster.Cluster{
	Name:                 xdsmeta.ClusterBlackHole,
	ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_STATIC},
	ConnectTimeout:       durationpb.New(DefaultConnectTimeout),
	LoadAssignment:       &endpoint.ClusterLoadAssignment{ClusterName: xdsmeta.ClusterBlackHole},
}

// outboundDefault gives a sidecar's virtualOutbound l the default filter
// chain for destinations no chain declares: passed through to where they
// were going (xdsmeta.ClusterPassthrough, Istio's ALLOW_ANY), or, when
// blockUnknown (REGISTRY_ONLY), closed (xdsmeta.ClusterBlackHole); either
// logged as tel says. The proxy uses it for captured connections and, in
// HTTP proxy mode, for requests and CONNECT tunnels to hosts no route
// takes, when it passes through. It returns the chain's cluster.
func outboundDefault(l *listener.Listener, tel *telemetryPolicy, blockUnknown bool) *cluster.Cluster {
	def := passthroughCluster
	if blockUnknown {
		def = blackHoleCluster
	}
	l.DefaultFilterChain = &listener.FilterChain{
		Name:    def.Name,
		Filters: []*listener.Filter{tcpProxy(def.Name, []weighted{{def.Name, 100}}, tel)},
	}
	return def
}

// captureOutbound makes a sidecar's virtualOutbound l transparent, for
// proxies behind iptables REDIRECT (xdsmeta.MetaInterceptionMode): it
// sets use_original_dst and the original_dst listener filter, so chains
// are selected by the destination the app dialled. l is changed.
func captureOutbound(l *listener.Listener) {
	l.UseOriginalDst = wrapperspb.Bool(true)
	l.ListenerFilters = []*listener.ListenerFilter{{
		Name:       OriginalDstFilterName,
		ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: mustAny(&originaldst.OriginalDst{})},
	}}
}

// InboundCapturePort is where a sidecar behind iptables REDIRECT receives
// the workload's inbound traffic (Istio's 15006).
const InboundCapturePort = 15006

// captureInbound builds virtualInbound, the listener iptables PREROUTING
// redirects a captured workload's inbound connections to: bound to
// 0.0.0.0:InboundCapturePort (redirected connections arrive on the
// address of the interface they came in on), transparent
// (use_original_dst and the original_dst listener filter), with the filter
// chains of every inbound|<port> listener, each matched by the app port the
// client dialled (destination_port) besides its transport protocol, so
// mTLS is terminated and authorization enforced as on the inbound
// listeners; a connection to a port no chain declares passes through to
// its original destination (PassthroughCluster). inL are the inbound
// listeners of inst, in port order; they are not changed. Passed-through
// connections are logged as tel says.
func captureInbound(inst *model.Instance, inL []*listener.Listener, tel *telemetryPolicy) *listener.Listener {
	if inst == nil || len(inL) == 0 {
		return nil
	}
	byName := make(map[string]*listener.Listener, len(inL))
	for _, l := range inL {
		byName[l.GetName()] = l
	}
	l := &listener.Listener{
		Name:           xdsmeta.ListenerInboundCapture,
		Address:        socketAddress("0.0.0.0", InboundCapturePort),
		UseOriginalDst: wrapperspb.Bool(true),
		ListenerFilters: []*listener.ListenerFilter{{
			Name:       OriginalDstFilterName,
			ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: mustAny(&originaldst.OriginalDst{})},
		}},
		DefaultFilterChain: &listener.FilterChain{
			Name:    xdsmeta.ClusterPassthrough,
			Filters: []*listener.Filter{tcpProxy(xdsmeta.ClusterPassthrough, []weighted{{xdsmeta.ClusterPassthrough, 100}}, tel)},
		},
	}
	inspector := false
	for _, p := range inst.Ports {
		in := byName[xdsmeta.InboundListenerName(p.Number)]
		if in == nil {
			continue
		}
		for _, ch := range in.GetFilterChains() {
			c := proto.Clone(ch).(*listener.FilterChain)
			if c.FilterChainMatch == nil {
				c.FilterChainMatch = &listener.FilterChainMatch{}
			}
			c.FilterChainMatch.DestinationPort = wrapperspb.UInt32(p.AppPort)
			c.Name = in.GetName()
			if ch.GetName() != "" {
				c.Name += "|" + ch.GetName()
			}
			l.FilterChains = append(l.FilterChains, c)
		}
		for _, f := range in.GetListenerFilters() {
			if f.GetName() == TLSInspectorName && !inspector {
				inspector = true
				l.ListenerFilters = append(l.ListenerFilters, f)
			}
		}
		if t := in.GetListenerFiltersTimeout(); t != nil && t.AsDuration() > l.GetListenerFiltersTimeout().AsDuration() {
			l.ListenerFiltersTimeout = t
		}
	}
	return l
}
