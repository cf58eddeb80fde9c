package xdstranslate

import (
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
