package xdstranslate

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	cors "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	fault "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/xdsmeta"
)

// Filter names.
const (
	HTTPConnectionManagerName = "envoy.filters.network.http_connection_manager"
	TCPProxyName              = "envoy.filters.network.tcp_proxy"
	RouterFilterName          = "envoy.filters.http.router"
)

// DefaultOutboundPort is where a sidecar without a known instance binds
// virtualOutbound.
const DefaultOutboundPort = 15001

var (
	// Optional: gRPC's xDS clients (proxyless) do not implement CORS and
	// skip it; they refuse a listener with a filter they must run.
	corsFilter   = &hcm.HttpFilter{Name: CORSFilterName, IsOptional: true, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&cors.Cors{})}}
	faultFilter  = &hcm.HttpFilter{Name: FaultFilterName, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&fault.HTTPFault{})}}
	routerFilter = &hcm.HttpFilter{Name: RouterFilterName, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&router.Router{})}}
)

// rdsManager is an HTTP connection manager that takes its routes over
// ADS; the fault and CORS filters (Istio's order) precede the router,
// which is last.
func rdsManager(statPrefix, routeName string) *hcm.HttpConnectionManager {
	return &hcm.HttpConnectionManager{
		StatPrefix: statPrefix,
		CodecType:  hcm.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: routeName,
		}},
		HttpFilters: []*hcm.HttpFilter{faultFilter, corsFilter, routerFilter},
	}
}

// inlineManager is an HTTP connection manager with its routes inline, with
// the same HTTP filters as rdsManager.
func inlineManager(statPrefix string, rc *route.RouteConfiguration) *hcm.HttpConnectionManager {
	return &hcm.HttpConnectionManager{
		StatPrefix:     statPrefix,
		CodecType:      hcm.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: rc},
		HttpFilters:    []*hcm.HttpFilter{faultFilter, corsFilter, routerFilter},
	}
}

// tcpProxy is a tcp_proxy filter to clusters, with the access log of tel
// (nil: none): Istio's Telemetry access logging covers TCP connections as
// well as HTTP requests.
func tcpProxy(statPrefix string, clusters []weighted, tel *telemetryPolicy) *listener.Filter {
	tp := &tcpproxy.TcpProxy{StatPrefix: statPrefix, AccessLog: tel.accessLogs()}
	if len(clusters) == 1 {
		tp.ClusterSpecifier = &tcpproxy.TcpProxy_Cluster{Cluster: clusters[0].name}
	} else {
		wc := &tcpproxy.TcpProxy_WeightedCluster{}
		for _, c := range clusters {
			wc.Clusters = append(wc.Clusters, &tcpproxy.TcpProxy_WeightedCluster_ClusterWeight{Name: c.name, Weight: c.weight})
		}
		tp.ClusterSpecifier = &tcpproxy.TcpProxy_WeightedClusters{WeightedClusters: wc}
	}
	return &listener.Filter{Name: TCPProxyName, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(tp)}}
}

type weighted struct {
	name   string
	weight uint32
}

func hcmFilter(m *hcm.HttpConnectionManager) *listener.Filter {
	return &listener.Filter{Name: HTTPConnectionManagerName, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(m)}}
}

// servicePort is one port of one in-scope service.
type servicePort struct {
	svc  *model.Service
	port model.Port
}

// meshVirtualService returns the first VirtualService (snapshot order) for
// mesh traffic whose hosts match host.
func (t *Translator) meshVirtualService(host string) *model.VirtualService {
	for _, vs := range t.meshVS {
		for _, h := range vs.Spec.GetHosts() {
			if hostMatches(model.FQDN(h, vs.Namespace), host) {
				return vs
			}
		}
	}
	return nil
}

// meshRoutes are the routes of a service port for mesh traffic: from its
// VirtualService, or a default route to the whole service.
func (t *Translator) meshRoutes(c *routeCtx, svc *model.Service, port uint32) []*route.Route {
	if vs := t.meshVirtualService(svc.Hostname); vs != nil && len(vs.Spec.GetHttp()) > 0 {
		return c.httpRoutes(vs)
	}
	return []*route.Route{c.defaultRoute(svc.Hostname, port)}
}

func (c *routeCtx) defaultRoute(host string, port uint32) *route.Route {
	return &route.Route{
		Name:  "default",
		Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
		Action: &route.Route_Route{Route: &route.RouteAction{
			ClusterSpecifier: &route.RouteAction_Cluster{Cluster: model.ClusterName("outbound", port, "", host)},
			Timeout:          durationpb.New(0),
			RetryPolicy:      retryPolicy(nil, false),
			HashPolicy:       c.hashPolicy(host, "", port),
		}},
	}
}

// vipDomains are the service's VIPs, for domains and prefix_ranges.
func vips(svc *model.Service) []string {
	var out []string
	for _, a := range svc.Addresses {
		if _, err := netip.ParseAddr(a); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// buildSidecarOutbound builds the RDS configurations "<port>" and the
// filter chains of virtualOutbound.
func (t *Translator) buildSidecarOutbound(p *Proxy, sc *scope, svcs []*model.Service) ([]*route.RouteConfiguration, []*listener.FilterChain) {
	httpByPort := map[uint32][]servicePort{}
	var tcp []servicePort
	for _, svc := range svcs {
		for _, port := range svc.Ports {
			if port.Protocol.IsHTTP() {
				httpByPort[port.Number] = append(httpByPort[port.Number], servicePort{svc, port})
			} else {
				tcp = append(tcp, servicePort{svc, port})
			}
		}
	}
	ports := make([]uint32, 0, len(httpByPort))
	for n := range httpByPort {
		ports = append(ports, n)
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })

	var routes []*route.RouteConfiguration
	var chains []*listener.FilterChain
	tel := t.telemetryFor(p, false)
	for _, n := range ports {
		name := xdsmeta.OutboundRouteName(n)
		rc := &route.RouteConfiguration{Name: name, ValidateClusters: wrapperspb.Bool(false)}
		seen := map[string]bool{}
		for _, sp := range httpByPort[n] {
			var domains []string
			names := append(model.HostAliases(sp.svc.Hostname, p.Namespace), vips(sp.svc)...)
			for _, a := range names {
				for _, d := range []string{a, fmt.Sprintf("%s:%d", a, n)} {
					if !seen[d] {
						seen[d] = true
						domains = append(domains, d)
					}
				}
			}
			rc.VirtualHosts = append(rc.VirtualHosts, t.outboundVirtualHost(p, sp.svc, n, domains))
		}
		if sc.blocksUnknown() {
			rc.VirtualHosts = append(rc.VirtualHosts, blockAllVirtualHost(sc))
		}
		routes = append(routes, rc)
		chains = append(chains, &listener.FilterChain{
			Name:             fmt.Sprintf("0.0.0.0_%d", n),
			FilterChainMatch: &listener.FilterChainMatch{DestinationPort: wrapperspb.UInt32(n)},
			Filters:          []*listener.Filter{hcmFilter(tel.apply(rdsManager(fmt.Sprintf("outbound_0.0.0.0_%d", n), name)))},
		})
	}
	sort.SliceStable(tcp, func(i, j int) bool {
		if tcp[i].port.Number != tcp[j].port.Number {
			return tcp[i].port.Number < tcp[j].port.Number
		}
		return tcp[i].svc.Hostname < tcp[j].svc.Hostname
	})
	for _, sp := range tcp {
		m := &listener.FilterChainMatch{
			DestinationPort: wrapperspb.UInt32(sp.port.Number),
			ServerNames:     model.HostAliases(sp.svc.Hostname, p.Namespace),
		}
		for _, ip := range vips(sp.svc) {
			a, _ := netip.ParseAddr(ip)
			m.PrefixRanges = append(m.PrefixRanges, &core.CidrRange{AddressPrefix: ip, PrefixLen: wrapperspb.UInt32(uint32(a.BitLen()))})
		}
		chains = append(chains, &listener.FilterChain{
			Name:             model.ClusterName("outbound", sp.port.Number, "", sp.svc.Hostname),
			FilterChainMatch: m,
			Filters:          []*listener.Filter{t.outboundTCPProxy(p, sp, tel)},
		})
	}
	return routes, chains
}

// blockAllVirtualHost answers every request no other virtual host of an
// outbound route configuration takes with 502 and says why: the proxy's
// Sidecar allows only destinations in the registry (REGISTRY_ONLY).
func blockAllVirtualHost(sc *scope) *route.VirtualHost {
	return &route.VirtualHost{
		Name:    xdsmeta.VirtualHostBlockAll,
		Domains: []string{"*"},
		Routes: []*route.Route{{
			Name:  xdsmeta.VirtualHostBlockAll,
			Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
			Action: &route.Route_DirectResponse{DirectResponse: &route.DirectResponseAction{
				Status: http.StatusBadGateway,
				Body: &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: "the host is not in the mesh's registry and Sidecar " + sc.name +
					" has outboundTrafficPolicy REGISTRY_ONLY: add a ServiceEntry for it, or set mode ALLOW_ANY\n"}},
			}},
		}},
	}
}

// outboundVirtualHost is the virtual host of one HTTP service port for mesh
// traffic from p, named "<fqdn>:<port>": the routes of the service's
// VirtualService, or the default route. RDS "<port>" and the explicit
// upstream listeners both take it from here, so they route alike.
func (t *Translator) outboundVirtualHost(p *Proxy, svc *model.Service, port uint32, domains []string) *route.VirtualHost {
	ctx := &routeCtx{snap: t.snap, proxy: p, port: port}
	return &route.VirtualHost{
		Name:    fmt.Sprintf("%s:%d", svc.Hostname, port),
		Domains: domains,
		Routes:  t.meshRoutes(ctx, svc, port),
	}
}

// outboundTCPProxy is the tcp_proxy of one TCP service port for mesh
// traffic from p: to the service's cluster, or the weights of its
// VirtualService's tcp routes. virtualOutbound's TCP chains and the
// explicit upstream listeners both take it from here.
func (t *Translator) outboundTCPProxy(p *Proxy, sp servicePort, tel *telemetryPolicy) *listener.Filter {
	def := model.ClusterName("outbound", sp.port.Number, "", sp.svc.Hostname)
	ctx := &routeCtx{snap: t.snap, proxy: p, port: sp.port.Number}
	return tcpProxy(def, t.tcpClusters(ctx, sp, def), tel)
}

// upstreamListeners builds the explicit local upstream listeners of a
// sidecar's instance, one per model.InstanceUpstream, named
// xdsmeta.UpstreamListenerName and bound to 127.0.0.1:<local port> (the
// address the app was given). An HTTP port gets an HTTP connection manager
// whose inline route configuration holds the service's outbound virtual
// host with domains ["*"]; a TCP port gets the service's tcp_proxy. An
// upstream whose service or port is not in force, is outside the proxy's
// Sidecar scope, or passes traffic through (resolution NONE) is left out:
// validation reports the first two and the last; a scoped-out service is
// as unreachable here as through HTTP_PROXY.
func (t *Translator) upstreamListeners(p *Proxy, sc *scope, tel *telemetryPolicy) []*listener.Listener {
	if p.Instance == nil {
		return nil
	}
	var ls []*listener.Listener
	for _, u := range p.Instance.Upstreams {
		svc := t.snap.Services[u.Host]
		if svc == nil || u.LocalPort == 0 || svc.Resolution == model.ResolutionNone || !sc.allows(svc.Hostname, svc.Namespace) {
			continue
		}
		port, ok := svc.Port(u.Port)
		if !ok {
			continue
		}
		name := xdsmeta.UpstreamListenerName(u.LocalPort, u.Host, u.Port)
		var f *listener.Filter
		if port.Protocol.IsHTTP() {
			rc := &route.RouteConfiguration{
				Name:             name,
				VirtualHosts:     []*route.VirtualHost{t.outboundVirtualHost(p, svc, u.Port, []string{"*"})},
				ValidateClusters: wrapperspb.Bool(false),
			}
			f = hcmFilter(tel.apply(inlineManager(fmt.Sprintf("outbound_127.0.0.1_%d", u.LocalPort), rc)))
		} else {
			f = t.outboundTCPProxy(p, servicePort{svc, port}, tel)
		}
		ls = append(ls, &listener.Listener{
			Name:         name,
			Address:      socketAddress("127.0.0.1", u.LocalPort),
			FilterChains: []*listener.FilterChain{{Name: name, Filters: []*listener.Filter{f}}},
		})
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].Name < ls[j].Name })
	return ls
}

// tcpClusters picks the destinations of a TCP service port: from the
// first applicable tls route of its VirtualService on a TLS or HTTPS
// port (its sniHosts naming the service), then from the first applicable
// tcp route, else the default cluster.
func (t *Translator) tcpClusters(c *routeCtx, sp servicePort, def string) []weighted {
	vs := t.meshVirtualService(sp.svc.Hostname)
	if p := sp.port.Protocol; vs != nil && (p == model.ProtocolTLS || p == model.ProtocolHTTPS) {
		aliases := model.HostAliases(sp.svc.Hostname, c.proxy.Namespace)
		for _, tr := range vs.Spec.GetTls() {
			applies := false
			for _, m := range tr.GetMatch() {
				if !c.sourceMatches(m.GetPort(), sp.port.Number, m.GetSourceLabels(), m.GetSourceNamespace(), m.GetGateways(), vs.Namespace) {
					continue
				}
				for _, sni := range m.GetSniHosts() {
					if slices.ContainsFunc(aliases, func(a string) bool { return hostMatches(sni, a) }) {
						applies = true
					}
				}
			}
			if out := tcpWeights(c, vs, tr.GetRoute()); applies && len(out) > 0 {
				return out
			}
		}
	}
	for _, tr := range vsTCP(vs) {
		applies := len(tr.GetMatch()) == 0
		for _, m := range tr.GetMatch() {
			if c.sourceMatches(m.GetPort(), sp.port.Number, m.GetSourceLabels(), m.GetSourceNamespace(), m.GetGateways(), vs.Namespace) {
				applies = true
			}
		}
		if out := tcpWeights(c, vs, tr.GetRoute()); applies && len(out) > 0 {
			return out
		}
	}
	return []weighted{{def, 100}}
}

// sourceMatches applies the port, source and gateway conditions of a tcp
// or tls route match to the proxy of c on port (gateways: only "mesh"
// applies to sidecars, the proxy's own Gateway to a gateway).
func (c *routeCtx) sourceMatches(matchPort, port uint32, labels map[string]string, namespace string, gateways []string, vsNamespace string) bool {
	switch {
	case matchPort != 0 && matchPort != port:
		return false
	case len(labels) > 0 && !model.LabelsMatch(labels, c.proxy.Labels):
		return false
	case namespace != "" && namespace != c.proxy.Namespace:
		return false
	case len(gateways) > 0:
		if c.gateway == "" {
			return slices.Contains(gateways, "mesh")
		}
		return c.gatewaysApply(gateways, vsNamespace)
	}
	return true
}

// tcpWeights is the weighted clusters of a tcp or tls route's
// destinations (a weight of 0 leaves a destination out when there are
// several).
func tcpWeights(c *routeCtx, vs *model.VirtualService, routes []*networking.RouteDestination) []weighted {
	var out []weighted
	for _, d := range routes {
		if d.GetWeight() == 0 && len(routes) > 1 {
			continue
		}
		name, _, _ := c.clusterFor(d.GetDestination(), vs.Namespace)
		w := uint32(d.GetWeight())
		if w == 0 {
			w = 100
		}
		out = append(out, weighted{name, w})
	}
	return out
}

// inboundListeners builds inbound|<port> listeners and their clusters.
// mtlsMode gives the PeerAuthentication mode of each port (mtls.go); sec
// the request authentication and authorization filters (authz.go).
func inboundResources(inst *model.Instance, tel *telemetryPolicy, mtlsMode func(port uint32) peerAuthMode, sec *inboundSecurity) ([]*listener.Listener, []*cluster.Cluster) {
	if inst == nil {
		return nil, nil
	}
	ports := append([]model.InstancePort(nil), inst.Ports...)
	sort.Slice(ports, func(i, j int) bool { return ports[i].Number < ports[j].Number })
	var ls []*listener.Listener
	var cs []*cluster.Cluster
	for _, p := range ports {
		cname := xdsmeta.InboundClusterName(p.Number)
		l := &listener.Listener{
			Name:    xdsmeta.InboundListenerName(p.Number),
			Address: socketAddress(localAddress(inst), p.InboundPort),
		}
		if p.Protocol.IsHTTP() {
			m := &hcm.HttpConnectionManager{
				StatPrefix: fmt.Sprintf("inbound_%d", p.Number),
				CodecType:  hcm.HttpConnectionManager_AUTO,
				RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: &route.RouteConfiguration{
					Name: xdsmeta.InboundListenerName(p.Number),
					VirtualHosts: []*route.VirtualHost{{
						Name:    fmt.Sprintf("inbound|http|%d", p.Number),
						Domains: []string{"*"},
						Routes: []*route.Route{{
							Name:  "default",
							Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
							Action: &route.Route_Route{Route: &route.RouteAction{
								ClusterSpecifier: &route.RouteAction_Cluster{Cluster: cname},
								Timeout:          durationpb.New(0),
							}},
						}},
					}},
				}},
				HttpFilters: append(sec.httpFilters(p.Number), routerFilter),
			}
			l.FilterChains = []*listener.FilterChain{{Filters: []*listener.Filter{hcmFilter(tel.apply(m))}}}
		} else {
			l.FilterChains = []*listener.FilterChain{{Filters: append(sec.networkFilters(p.Number), tcpProxy(cname, []weighted{{cname, 100}}, tel))}}
		}
		applyInboundMTLS(l, mtlsMode(p.Number), p.Protocol.IsHTTP())
		if !p.Protocol.IsHTTP() {
			acceptPeerExchange(l)
		}
		ls = append(ls, l)
		cs = append(cs, inboundCluster(inst, p))
	}
	return ls, cs
}

// buildProxyless builds the api_listeners "<alias>:<port>" and route
// configurations "<fqdn>:<port>" of a proxyless gRPC client.
func (t *Translator) buildProxyless(p *Proxy, svcs []*model.Service) ([]*listener.Listener, []*route.RouteConfiguration) {
	var ls []*listener.Listener
	var rcs []*route.RouteConfiguration
	for _, svc := range svcs {
		for _, port := range svc.Ports {
			if !port.Protocol.IsHTTP() {
				continue
			}
			rdsName := fmt.Sprintf("%s:%d", svc.Hostname, port.Number)
			vh := &route.VirtualHost{Name: rdsName}
			for _, a := range model.HostAliases(svc.Hostname, p.Namespace) {
				name := fmt.Sprintf("%s:%d", a, port.Number)
				vh.Domains = append(vh.Domains, name)
				ls = append(ls, &listener.Listener{
					Name:        name,
					ApiListener: &listener.ApiListener{ApiListener: mustAny(rdsManager(name, rdsName))},
				})
			}
			ctx := &routeCtx{snap: t.snap, proxy: p, port: port.Number}
			vh.Routes = t.meshRoutes(ctx, svc, port.Number)
			rcs = append(rcs, &route.RouteConfiguration{Name: rdsName, VirtualHosts: []*route.VirtualHost{vh}})
		}
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].Name < ls[j].Name })
	sort.Slice(rcs, func(i, j int) bool { return rcs[i].Name < rcs[j].Name })
	return ls, rcs
}

// buildGateway builds the listeners "0.0.0.0_<port>" and route
// configurations of a gateway proxy: one route configuration per HTTP
// port ("http.<port>"), and for an HTTPS port one filter chain per server,
// chosen by the TLS server name among the server's hosts, that terminates
// TLS with the server's certificate (and verifies client certificates for
// MUTUAL) and routes with the server's own route configuration
// ("https.<port>.<namespace>.<gateway>.<server index>"), so a request is
// routed only among the hosts of the server its connection reached. The
// RequestAuthentications and AuthorizationPolicies that select the gateway
// workload (by its namespace and labels, as for a sidecar) put their JWT
// and RBAC filters before the fault filter and the router.
func (t *Translator) buildGateway(p *Proxy) ([]*listener.Listener, []*route.RouteConfiguration) {
	byPort := map[uint32][]gatewayServer{}
	for _, gw := range t.snap.Gateways {
		if !model.LabelsMatch(gw.Spec.GetSelector(), p.Labels) {
			continue
		}
		for i, srv := range gw.Spec.GetServers() {
			sp := srv.GetPort()
			s := gatewayServer{ref: gw.Namespace + "/" + gw.Name, name: fmt.Sprintf("%s.%s.%d", gw.Namespace, gw.Name, i)}
			https, tlsProto := strings.EqualFold(sp.GetProtocol(), "HTTPS"), strings.EqualFold(sp.GetProtocol(), "TLS")
			switch mode := srv.GetTls().GetMode(); {
			case (https || tlsProto) && srv.GetTls() != nil && mode == networking.ServerTLSSettings_PASSTHROUGH:
				s.tls, s.passthrough = srv.GetTls(), true
			case https:
				if mode != networking.ServerTLSSettings_SIMPLE && mode != networking.ServerTLSSettings_MUTUAL {
					continue // refused by the validator
				}
				s.tls = srv.GetTls()
			case tlsProto:
				continue // refused by the validator
			case !model.ProtocolFromPort(sp.GetProtocol(), "", sp.GetName()).IsHTTP():
				continue // refused by the validator
			default:
				s.redirect = srv.GetTls().GetHttpsRedirect()
			}
			for _, h := range srv.GetHosts() {
				if _, host, ok := cutNamespace(h); ok {
					h = host
				}
				s.hosts = append(s.hosts, h)
			}
			byPort[sp.GetNumber()] = append(byPort[sp.GetNumber()], s)
		}
	}
	ports := make([]uint32, 0, len(byPort))
	for n := range byPort {
		ports = append(ports, n)
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	var ls []*listener.Listener
	var rcs []*route.RouteConfiguration
	tel := t.telemetryFor(p, false)
	sec := t.securityFor(p.Namespace, p.Labels)
	manager := func(n uint32, rname string) *listener.Filter {
		m := rdsManager(fmt.Sprintf("outbound_0.0.0.0_%d", n), rname)
		// The gateway's own request authentication and authorization
		// (policies selecting it, as a sidecar's inbound ones do) run
		// before routing, on the gateway port.
		m.HttpFilters = append(sec.httpFilters(n), m.HttpFilters...)
		return hcmFilter(tel.apply(m))
	}
	for _, n := range ports {
		l := &listener.Listener{Name: fmt.Sprintf("0.0.0.0_%d", n), Address: socketAddress("127.0.0.1", n)}
		servers := byPort[n]
		if servers[0].tls == nil {
			// HTTP. The validator refuses HTTPS and TLS servers on the same
			// port; were there any, they are left out, not served in
			// plaintext.
			rname := xdsmeta.GatewayRouteName(n)
			var plain []gatewayServer
			for _, s := range servers {
				if s.tls == nil {
					plain = append(plain, s)
				}
			}
			rcs = append(rcs, t.gatewayRoutes(p, rname, n, plain))
			l.FilterChains = []*listener.FilterChain{{Filters: []*listener.Filter{manager(n, rname)}}}
			ls = append(ls, l)
			continue
		}
		// Server names of the port's chains. The validator refuses a host
		// on two servers of a port; were there one, the first server
		// keeps it.
		taken := map[string]bool{}
		var terminated []gatewayServer
		for _, s := range servers {
			if s.tls == nil || s.passthrough {
				continue
			}
			var own []string
			for _, h := range s.hosts {
				if !taken[h] {
					taken[h] = true
					own = append(own, h)
				}
			}
			if len(own) > 0 {
				s.hosts = own
				terminated = append(terminated, s)
			}
		}
		for _, s := range servers {
			if s.passthrough {
				l.FilterChains = append(l.FilterChains, t.passthroughChains(p, n, s, tel, taken)...)
			}
		}
		for _, s := range terminated {
			rname := xdsmeta.GatewayHTTPSRouteName(n, s.name)
			rcs = append(rcs, t.gatewayRoutes(p, rname, n, []gatewayServer{s}))
			match := &listener.FilterChainMatch{TransportProtocol: "tls"}
			if !slices.Contains(s.hosts, "*") {
				match.ServerNames = s.hosts
			}
			l.FilterChains = append(l.FilterChains, &listener.FilterChain{
				Name:             "https." + s.name,
				FilterChainMatch: match,
				Filters:          []*listener.Filter{manager(n, rname)},
				TransportSocket:  gatewayTLS(s.tls),
			})
		}
		if len(l.FilterChains) == 0 {
			continue // PASSTHROUGH servers that no tls route uses
		}
		l.ListenerFilters = []*listener.ListenerFilter{{Name: TLSInspectorName, ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspector.TlsInspector{})}}}
		ls = append(ls, l)
	}
	return ls, rcs
}

// passthroughChains are the filter chains of a PASSTHROUGH server on
// port: for each tls route of the VirtualServices bound to it, one chain
// that matches the route's sniHosts the server accepts (and no chain of
// the port has taken) and proxies the connection, still encrypted, to the
// route's destinations.
func (t *Translator) passthroughChains(p *Proxy, port uint32, s gatewayServer, tel *telemetryPolicy, taken map[string]bool) []*listener.FilterChain {
	ctx := &routeCtx{snap: t.snap, proxy: p, port: port, gateway: s.ref}
	var out []*listener.FilterChain
	for _, vs := range t.snap.VirtualServices {
		if len(vs.Spec.GetGateways()) == 0 || !ctx.gatewaysApply(vs.Spec.GetGateways(), vs.Namespace) {
			continue
		}
		for _, tr := range vs.Spec.GetTls() {
			var names []string
			for _, m := range tr.GetMatch() {
				if !ctx.sourceMatches(m.GetPort(), port, m.GetSourceLabels(), m.GetSourceNamespace(), m.GetGateways(), vs.Namespace) {
					continue
				}
				for _, sni := range m.GetSniHosts() {
					if !taken[sni] && slices.ContainsFunc(s.hosts, func(h string) bool { return hostMatches(h, sni) }) {
						taken[sni] = true
						names = append(names, sni)
					}
				}
			}
			clusters := tcpWeights(ctx, vs, tr.GetRoute())
			if len(names) == 0 || len(clusters) == 0 {
				continue
			}
			match := &listener.FilterChainMatch{TransportProtocol: "tls", ServerNames: names}
			if slices.Contains(names, "*") {
				match.ServerNames = nil // any server name
			}
			out = append(out, &listener.FilterChain{
				Name:             fmt.Sprintf("passthrough.%s.%s", s.name, names[0]),
				FilterChainMatch: match,
				Filters:          []*listener.Filter{tcpProxy(clusters[0].name, clusters, tel)},
			})
		}
	}
	return out
}

// gatewayServer is a Gateway server bound to a gateway proxy.
type gatewayServer struct {
	ref   string // the Gateway, "namespace/name"
	name  string // "namespace.name.index", unique per server
	hosts []string
	tls   *networking.ServerTLSSettings // nil for HTTP
	// redirect: an HTTP server whose hosts answer with a redirect to
	// https (tls.httpsRedirect).
	redirect bool
	// passthrough: a TLS or HTTPS server in mode PASSTHROUGH, whose
	// connections go, still encrypted, where the tls routes of the
	// VirtualServices bound to it send their server names.
	passthrough bool
}

// gatewayRoutes builds the route configuration name of a gateway port
// from the VirtualServices bound to servers (their gateway and a host in
// common). The hosts of a server with httpsRedirect get virtual hosts,
// with or without routes; a virtual host requires TLS (require_tls ALL:
// a redirect to https) when the server that names its domain most
// closely asks for the redirect.
func (t *Translator) gatewayRoutes(p *Proxy, name string, port uint32, servers []gatewayServer) *route.RouteConfiguration {
	rc := &route.RouteConfiguration{Name: name, ValidateClusters: wrapperspb.Bool(false)}
	vhosts := map[string]*route.VirtualHost{}
	var order []string
	vhost := func(domain string) *route.VirtualHost {
		vh := vhosts[domain]
		if vh == nil {
			vh = &route.VirtualHost{Name: fmt.Sprintf("%s:%d", domain, port), Domains: []string{domain}}
			if domain != "*" {
				vh.Domains = append(vh.Domains, fmt.Sprintf("%s:%d", domain, port))
			}
			vhosts[domain] = vh
			order = append(order, domain)
		}
		return vh
	}
	done := map[string]bool{}
	for _, b := range servers {
		if b.redirect {
			for _, h := range b.hosts {
				vhost(h)
			}
		}
		ctx := &routeCtx{snap: t.snap, proxy: p, port: port, gateway: b.ref}
		for _, vs := range t.snap.VirtualServices {
			if len(vs.Spec.GetGateways()) == 0 || !ctx.gatewaysApply(vs.Spec.GetGateways(), vs.Namespace) {
				continue
			}
			for _, h := range vs.Spec.GetHosts() {
				domain := ""
				for _, sh := range b.hosts {
					if hostMatches(sh, h) {
						domain = h
						break
					}
					if hostMatches(h, sh) {
						domain = sh
						break
					}
				}
				key := vs.Namespace + "/" + vs.Name + "|" + domain
				if domain == "" || done[key] {
					continue
				}
				done[key] = true
				vh := vhost(domain)
				vh.Routes = append(vh.Routes, ctx.httpRoutes(vs)...)
			}
		}
	}
	sort.Strings(order)
	for _, d := range order {
		// The server whose host names the domain most closely decides
		// whether it redirects to https.
		if owner := ownerOf(servers, d); owner != nil && owner.redirect {
			vhosts[d].RequireTls = route.VirtualHost_ALL
		}
		rc.VirtualHosts = append(rc.VirtualHosts, vhosts[d])
	}
	return rc
}

// ownerOf is the server whose hosts match domain most specifically (an
// exact name, then the longest wildcard); nil when none does.
func ownerOf(servers []gatewayServer, domain string) *gatewayServer {
	var owner *gatewayServer
	best := -1
	for i := range servers {
		for _, h := range servers[i].hosts {
			if h != domain && !hostMatches(h, domain) {
				continue
			}
			if n := hostSpecificity(h); n > best {
				owner, best = &servers[i], n
			}
		}
	}
	return owner
}

// hostSpecificity ranks host patterns: an exact name above any wildcard,
// a longer wildcard above a shorter one, "*" last.
func hostSpecificity(h string) int {
	if !strings.HasPrefix(h, "*") {
		return 1 << 20
	}
	return len(h)
}

// gatewayTLS is the transport socket that terminates TLS for a Gateway
// server: its certificate and key files, HTTP/2 and HTTP/1.1 offered by
// ALPN, and for MUTUAL a client certificate required and verified with
// its CA file; the server's TLS versions and cipher suites as tls_params.
func gatewayTLS(s *networking.ServerTLSSettings) *core.TransportSocket {
	file := func(name string) *core.DataSource {
		return &core.DataSource{Specifier: &core.DataSource_Filename{Filename: name}}
	}
	dn := &tlsv3.DownstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:   []string{"h2", "http/1.1"},
			TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: file(s.GetServerCertificate()), PrivateKey: file(s.GetPrivateKey())}},
		},
	}
	version := map[networking.ServerTLSSettings_TLSProtocol]tlsv3.TlsParameters_TlsProtocol{
		networking.ServerTLSSettings_TLSV1_2: tlsv3.TlsParameters_TLSv1_2,
		networking.ServerTLSSettings_TLSV1_3: tlsv3.TlsParameters_TLSv1_3,
	}
	if len(s.GetCipherSuites()) > 0 || s.GetMinProtocolVersion() != 0 || s.GetMaxProtocolVersion() != 0 {
		dn.CommonTlsContext.TlsParams = &tlsv3.TlsParameters{
			TlsMinimumProtocolVersion: version[s.GetMinProtocolVersion()], // TLS_AUTO when unset
			TlsMaximumProtocolVersion: version[s.GetMaxProtocolVersion()],
			CipherSuites:              s.GetCipherSuites(),
		}
	}
	if s.GetMode() == networking.ServerTLSSettings_MUTUAL {
		dn.RequireClientCertificate = wrapperspb.Bool(true)
		dn.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{
			ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: file(s.GetCaCertificates())},
		}
	}
	return &core.TransportSocket{Name: tlsSocketName, ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(dn)}}
}

func cutNamespace(h string) (string, string, bool) {
	for i := 0; i < len(h); i++ {
		if h[i] == '/' {
			return h[:i], h[i+1:], true
		}
	}
	return "", h, false
}

func vsTCP(vs *model.VirtualService) []*networking.TCPRoute {
	if vs == nil {
		return nil
	}
	return vs.Spec.GetTcp()
}
