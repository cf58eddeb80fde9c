package proxyconfig

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
)

// Type URLs of the filter configs Weft understands.
const (
	typeHCM      = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	typeTCPProxy = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
	routerFilter = "envoy.filters.http.router"
)

// OriginalDstFilter is the listener filter that makes a listener
// transparent, as use_original_dst does.
const OriginalDstFilter = "envoy.filters.listener.original_dst"

// ParseListener validates an Envoy Listener.
func ParseListener(l *listenerv3.Listener) (*Listener, error) {
	if l.GetName() == "" {
		return nil, errors.New("listener has no name")
	}
	out := &Listener{Name: l.GetName()}
	if l.GetApiListener() != nil {
		return nil, fmt.Errorf("listener %q: api_listener is for proxyless gRPC clients, not the Weft proxy", l.GetName())
	}
	addr, err := socketAddress(l.GetAddress())
	if err != nil {
		return nil, fmt.Errorf("listener %q: address: %w", l.GetName(), err)
	}
	out.Address = addr
	for i, fc := range l.GetFilterChains() {
		c, err := parseFilterChain(fc, &out.Unenforced)
		if err != nil {
			return nil, fmt.Errorf("listener %q: filter_chains[%d]: %w", l.GetName(), i, err)
		}
		out.FilterChains = append(out.FilterChains, c)
	}
	if dfc := l.GetDefaultFilterChain(); dfc != nil {
		c, err := parseFilterChain(dfc, &out.Unenforced)
		if err != nil {
			return nil, fmt.Errorf("listener %q: default_filter_chain: %w", l.GetName(), err)
		}
		out.DefaultChain = c
	}
	if len(out.FilterChains) == 0 && out.DefaultChain == nil {
		return nil, fmt.Errorf("listener %q: no filter_chains", l.GetName())
	}
	out.Transparent = l.GetUseOriginalDst().GetValue()
	for _, f := range l.GetListenerFilters() {
		switch f.GetName() {
		case OriginalDstFilter:
			out.Transparent = true
		case "envoy.filters.listener.tls_inspector", "envoy.filters.listener.http_inspector":
			// The proxy detects TLS and HTTP itself on transparent listeners.
		default:
			out.Unenforced = append(out.Unenforced, fmt.Sprintf("listener %q: listener filter %q", l.GetName(), f.GetName()))
		}
	}
	if out.Transparent {
		out.DetectTimeout = durationOr(l.GetListenerFiltersTimeout(), DefaultDetectTimeout)
		if out.DetectTimeout <= 0 {
			out.DetectTimeout = DefaultDetectTimeout
		}
	} else if out.MatchesTransport() {
		out.DetectTimeout = durationOr(l.GetListenerFiltersTimeout(), DefaultTLSDetectTimeout)
		if out.DetectTimeout <= 0 {
			out.DetectTimeout = DefaultTLSDetectTimeout
		}
	}
	return out, nil
}

func socketAddress(a *corev3.Address) (string, error) {
	sa := a.GetSocketAddress()
	if sa == nil {
		return "", errors.New("only socket_address is supported")
	}
	if sa.GetAddress() == "" {
		return "", errors.New("socket_address.address is empty")
	}
	if sa.GetNamedPort() != "" {
		return "", errors.New("socket_address.named_port is not supported, use port_value")
	}
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		return "", errors.New("socket_address.protocol must be TCP")
	}
	if sa.GetPortValue() > 65535 {
		return "", fmt.Errorf("socket_address.port_value %d is out of range", sa.GetPortValue())
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10)), nil
}

func parseFilterChain(fc *listenerv3.FilterChain, unenforced *[]string) (*FilterChain, error) {
	out := &FilterChain{Name: fc.GetName()}
	if m := fc.GetFilterChainMatch(); m != nil {
		if p := m.GetDestinationPort(); p != nil {
			if p.GetValue() > 65535 {
				return nil, fmt.Errorf("filter_chain_match.destination_port %d is out of range", p.GetValue())
			}
			out.Match.DestinationPort = p.GetValue()
		}
		for _, n := range m.GetServerNames() {
			if n == "" {
				return nil, errors.New("filter_chain_match.server_names has an empty name")
			}
			out.Match.ServerNames = append(out.Match.ServerNames, n)
		}
		for j, r := range m.GetPrefixRanges() {
			ip, err := netip.ParseAddr(r.GetAddressPrefix())
			if err != nil {
				return nil, fmt.Errorf("filter_chain_match.prefix_ranges[%d]: %w", j, err)
			}
			bits := ip.BitLen()
			if r.GetPrefixLen() != nil {
				bits = int(r.GetPrefixLen().GetValue())
			}
			p, err := ip.Prefix(bits)
			if err != nil {
				return nil, fmt.Errorf("filter_chain_match.prefix_ranges[%d]: %w", j, err)
			}
			out.Match.PrefixRanges = append(out.Match.PrefixRanges, p)
		}
		switch tp := m.GetTransportProtocol(); tp {
		case "", TransportProtocolTLS, TransportProtocolRaw:
			out.Match.TransportProtocol = tp
		default:
			return nil, fmt.Errorf("filter_chain_match.transport_protocol %q: want %q or %q", tp, TransportProtocolTLS, TransportProtocolRaw)
		}
		if len(m.GetApplicationProtocols()) > 0 || len(m.GetSourcePrefixRanges()) > 0 || len(m.GetSourcePorts()) > 0 || len(m.GetDirectSourcePrefixRanges()) > 0 {
			*unenforced = append(*unenforced, fmt.Sprintf("filter chain %q: filter_chain_match application protocol and source matches", fc.GetName()))
		}
	}
	tlsCtx, err := parseDownstreamSocket(fc.GetTransportSocket())
	if err != nil {
		return nil, fmt.Errorf("transport_socket: %w", err)
	}
	out.TLS = tlsCtx
	filters := fc.GetFilters()
	if len(filters) == 0 {
		return nil, errors.New("no filters")
	}
	for i, f := range filters {
		tc := f.GetTypedConfig()
		if tc == nil {
			return nil, fmt.Errorf("filters[%d] %q: only typed_config is supported", i, f.GetName())
		}
		last := i == len(filters)-1
		switch tc.GetTypeUrl() {
		case typeHCM:
			if !last {
				return nil, fmt.Errorf("filters[%d]: http_connection_manager must be the last filter", i)
			}
			h := &hcmv3.HttpConnectionManager{}
			if err := tc.UnmarshalTo(h); err != nil {
				return nil, fmt.Errorf("filters[%d]: %w", i, err)
			}
			hcm, err := parseHCM(h, unenforced)
			if err != nil {
				return nil, fmt.Errorf("filters[%d] http_connection_manager: %w", i, err)
			}
			out.HTTP = hcm
		case typeTCPProxy:
			if !last {
				return nil, fmt.Errorf("filters[%d]: tcp_proxy must be the last filter", i)
			}
			t := &tcpproxyv3.TcpProxy{}
			if err := tc.UnmarshalTo(t); err != nil {
				return nil, fmt.Errorf("filters[%d]: %w", i, err)
			}
			tp, err := parseTCPProxy(t, unenforced)
			if err != nil {
				return nil, fmt.Errorf("filters[%d] tcp_proxy: %w", i, err)
			}
			out.TCP = tp
		case typeNetworkRBAC:
			if last {
				return nil, fmt.Errorf("filters[%d]: %q cannot be the last filter", i, f.GetName())
			}
			if err := parseNetworkRBAC(out, tc); err != nil {
				return nil, fmt.Errorf("filters[%d] %q: %w", i, f.GetName(), err)
			}
		default:
			if last {
				return nil, fmt.Errorf("filters[%d]: terminal filter %q (%s) is not supported", i, f.GetName(), tc.GetTypeUrl())
			}
			*unenforced = append(*unenforced, fmt.Sprintf("filter chain %q: network filter %q", fc.GetName(), f.GetName()))
		}
	}
	return out, nil
}

func parseHCM(h *hcmv3.HttpConnectionManager, unenforced *[]string) (*HTTPConnectionManager, error) {
	out := &HTTPConnectionManager{StatPrefix: h.GetStatPrefix()}
	switch rs := h.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		if rs.Rds.GetRouteConfigName() == "" {
			return nil, errors.New("rds.route_config_name is empty")
		}
		out.RDSName = rs.Rds.GetRouteConfigName()
	case *hcmv3.HttpConnectionManager_RouteConfig:
		rc, err := ParseRouteConfig(rs.RouteConfig)
		if err != nil {
			return nil, fmt.Errorf("route_config: %w", err)
		}
		out.RouteConfig = rc
		*unenforced = append(*unenforced, rc.Unenforced...)
	default:
		return nil, errors.New("needs rds or route_config")
	}
	var err error
	if out.Tracing, err = parseTracing(h.GetTracing(), unenforced); err != nil {
		return nil, err
	}
	if out.AccessLogs, err = parseAccessLogs(h.GetAccessLog(), unenforced); err != nil {
		return nil, err
	}
	for i, f := range h.GetHttpFilters() {
		if ok, err := parseSecurityHTTPFilter(out, f); ok || err != nil {
			if err != nil {
				return nil, fmt.Errorf("http_filters[%d] %q: %w", i, f.GetName(), err)
			}
			continue
		}
		if f.GetName() == routerFilter || f.GetTypedConfig().GetTypeUrl() == "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" {
			continue
		}
		if f.GetTypedConfig().GetTypeUrl() == corsFilterTypeURL {
			out.CORSFilter = true
			continue
		}
		if isFault(f.GetTypedConfig()) {
			fault, err := parseFault(f.GetTypedConfig(), fmt.Sprintf("http filter %q", f.GetName()), unenforced)
			if err != nil {
				return nil, fmt.Errorf("http_filters[%d] %q: %w", i, f.GetName(), err)
			}
			// A disabled filter runs only for routes with a config of
			// their own for it, as in Envoy.
			out.FaultFilter = true
			if fault.Injects() && !f.GetDisabled() {
				out.Fault = fault
			}
			continue
		}
		if f.GetIsOptional() || f.GetDisabled() {
			continue
		}
		*unenforced = append(*unenforced, fmt.Sprintf("http filter %q", f.GetName()))
	}
	return out, nil
}

func parseTCPProxy(t *tcpproxyv3.TcpProxy, unenforced *[]string) (*TCPProxy, error) {
	out := &TCPProxy{StatPrefix: t.GetStatPrefix(), IdleTimeout: durationOr(t.GetIdleTimeout(), defaultTCPIdle)}
	switch cs := t.GetClusterSpecifier().(type) {
	case *tcpproxyv3.TcpProxy_Cluster:
		if cs.Cluster == "" {
			return nil, errors.New("cluster is empty")
		}
		out.Cluster = cs.Cluster
	case *tcpproxyv3.TcpProxy_WeightedClusters:
		for i, c := range cs.WeightedClusters.GetClusters() {
			if c.GetName() == "" {
				return nil, fmt.Errorf("weighted_clusters.clusters[%d]: name is empty", i)
			}
			if c.GetWeight() == 0 {
				continue
			}
			out.WeightedClusters = append(out.WeightedClusters, WeightedCluster{Name: c.GetName(), Weight: c.GetWeight()})
		}
		if len(out.WeightedClusters) == 0 {
			return nil, errors.New("weighted_clusters has no cluster with weight > 0")
		}
	default:
		return nil, errors.New("needs cluster or weighted_clusters")
	}
	var err error
	if out.AccessLogs, err = parseAccessLogs(t.GetAccessLog(), unenforced); err != nil {
		return nil, err
	}
	if t.GetAccessLogOptions() != nil {
		*unenforced = append(*unenforced, "tcp_proxy access_log_options (Weft logs a connection once, when it closes)")
	}
	return out, nil
}
