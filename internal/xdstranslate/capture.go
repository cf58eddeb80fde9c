package xdstranslate

import (
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	originaldst "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

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

// captureOutbound makes a sidecar's virtualOutbound transparent, for
// proxies behind iptables REDIRECT (xdsmeta.MetaInterceptionMode): it
// sets use_original_dst and the original_dst listener filter, so chains
// are selected by the destination the app dialled, and adds a default
// filter chain passing every other destination through to where it was
// going (xdsmeta.ClusterPassthrough, Istio's ALLOW_ANY), logged as tel
// says. It returns a
// copy of out and the passthrough cluster; out is shared and not changed.
func captureOutbound(out *listener.Listener, tel *telemetryPolicy) (*listener.Listener, *cluster.Cluster) {
	l := &listener.Listener{
		Name:           out.Name,
		Address:        out.Address,
		FilterChains:   out.FilterChains,
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
	return l, passthroughCluster
}
