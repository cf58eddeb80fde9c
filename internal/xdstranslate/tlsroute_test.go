package xdstranslate

import (
	"slices"
	"testing"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/model"
)

// TestTLSRoutesForSidecars: a VirtualService's tls route applies to the
// TLS port of the service its sniHosts name, for the sources its match
// allows; a route whose sniHosts name another service, or whose match is
// for other sources, leaves the default.
func TestTLSRoutesForSidecars(t *testing.T) {
	s := testSnapshot()
	tlsPort := []model.Port{{Name: "tls", Number: 443, Protocol: model.ProtocolTLS}}
	for _, h := range []string{"a.example.com", "b.example.com", "c.example.com"} {
		s.Services[h] = &model.Service{Hostname: h, Namespace: "default", Ports: tlsPort, MeshExternal: true,
			Endpoints: []*model.Endpoint{{Address: "127.0.0.1", Ports: map[string]uint32{"tls": 443}}}}
	}
	route := func(to string) []*networking.RouteDestination {
		return []*networking.RouteDestination{{Destination: &networking.Destination{Host: to}}}
	}
	s.VirtualServices = []*model.VirtualService{
		vs("a", "default", &networking.VirtualService{Hosts: []string{"a.example.com"}, Tls: []*networking.TLSRoute{
			{Match: []*networking.TLSMatchAttributes{{SniHosts: []string{"other.example.com"}}}, Route: route("c.example.com")},
			{Match: []*networking.TLSMatchAttributes{{SniHosts: []string{"a.example.com"}, Port: 443}}, Route: route("b.example.com")},
		}}),
		vs("c", "default", &networking.VirtualService{Hosts: []string{"c.example.com"}, Tls: []*networking.TLSRoute{
			{Match: []*networking.TLSMatchAttributes{{SniHosts: []string{"c.example.com"}, SourceLabels: map[string]string{"app": "nobody"}}}, Route: route("b.example.com")},
		}}),
	}
	res, err := Translate(s, sidecarProxy())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"outbound|443||a.example.com": "outbound|443||b.example.com", // the tls route
		"outbound|443||c.example.com": "outbound|443||c.example.com", // its match is for other sources
		"outbound|443||b.example.com": "outbound|443||b.example.com",
	}
	got := map[string]string{}
	for _, l := range res.Listeners {
		for _, fc := range l.GetFilterChains() {
			if _, ok := want[fc.GetName()]; !ok {
				continue
			}
			got[fc.GetName()] = tcpCluster(t, fc)
		}
	}
	for chain, cluster := range want {
		if got[chain] != cluster {
			t.Errorf("chain %s proxies to %q; want %q", chain, got[chain], cluster)
		}
	}
}

func tcpCluster(t *testing.T, fc *listener.FilterChain) string {
	t.Helper()
	for _, f := range fc.GetFilters() {
		tp := &tcpproxy.TcpProxy{}
		if f.GetName() == TCPProxyName && f.GetTypedConfig().UnmarshalTo(tp) == nil {
			return tp.GetCluster()
		}
	}
	return ""
}

// TestGatewayPortClash: when two Gateways for the same proxy put HTTP and
// HTTPS servers on one port (the validator warns), the first by
// namespace and name decides the port, and the other's servers are left
// out: never an HTTPS server's hosts served in plaintext.
func TestGatewayPortClash(t *testing.T) {
	https := &networking.Server{Port: &networking.Port{Number: 443, Name: "https", Protocol: "HTTPS"}, Hosts: []string{"secure.example.com"},
		Tls: &networking.ServerTLSSettings{Mode: networking.ServerTLSSettings_SIMPLE, ServerCertificate: "/c.pem", PrivateKey: "/k.pem"}}
	plain := &networking.Server{Port: &networking.Port{Number: 443, Name: "http", Protocol: "HTTP"}, Hosts: []string{"other.example.com"}}
	for _, tc := range []struct {
		name       string
		first      *networking.Server
		second     *networking.Server
		wantTLS    bool
		wantRoutes string // the route configuration of port 443
	}{
		{"HTTPS first", https, plain, true, "https.443.default.a.0"},
		{"HTTP first", plain, https, false, "http.443"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testSnapshot()
			sel := map[string]string{"istio": "ingressgateway"}
			s.Gateways = []*model.Gateway{
				{Meta: model.Meta{Kind: "Gateway", Namespace: "default", Name: "a"}, Spec: &networking.Gateway{Selector: sel, Servers: []*networking.Server{tc.first}}},
				{Meta: model.Meta{Kind: "Gateway", Namespace: "default", Name: "b"}, Spec: &networking.Gateway{Selector: sel, Servers: []*networking.Server{tc.second}}},
			}
			s.VirtualServices = []*model.VirtualService{vs("both", "default", &networking.VirtualService{
				Hosts: []string{"secure.example.com", "other.example.com"}, Gateways: []string{"a", "b"},
				Http: []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{dest("ratings", "", 0)}}},
			})}
			res, err := Translate(s, gatewayProxy())
			if err != nil {
				t.Fatal(err)
			}
			var routes []string
			for _, rc := range res.Routes {
				routes = append(routes, rc.GetName())
				if rc.GetName() == "http.443" {
					for _, vh := range rc.GetVirtualHosts() {
						if slices.Contains(vh.GetDomains(), "secure.example.com") {
							t.Errorf("the HTTPS server's host is routed on the plaintext port: %v", vh.GetDomains())
						}
					}
				}
			}
			if !slices.Contains(routes, tc.wantRoutes) || len(routes) != 1 {
				t.Errorf("route configurations %v; want only %s", routes, tc.wantRoutes)
			}
			for _, l := range res.Listeners {
				for _, fc := range l.GetFilterChains() {
					if (fc.GetTransportSocket() != nil) != tc.wantTLS {
						t.Errorf("chain %q terminates TLS: %v; want %v", fc.GetName(), fc.GetTransportSocket() != nil, tc.wantTLS)
					}
				}
			}
		})
	}
}
