package xdstranslate_test

import (
	"slices"
	"strings"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"weft.dev/weft/internal/validate"
	"weft.dev/weft/internal/xdsmeta"
	"weft.dev/weft/internal/xdstranslate"
)

// TestOutboundTrafficPolicy: a Sidecar's outboundTrafficPolicy decides
// what happens to destinations outside the registry, for captured
// sidecars and in HTTP proxy mode alike. REGISTRY_ONLY (also an
// outboundTrafficPolicy without a mode, as in Istio) gives virtualOutbound
// a default chain to BlackHoleCluster and answers requests for unknown
// hosts with 502 (block_all); ALLOW_ANY, or no Sidecar, passes them
// through (PassthroughCluster). virtualInbound's default chain passes
// through either way. The proxy's own parsers accept every resource.
func TestOutboundTrafficPolicy(t *testing.T) {
	sidecar := func(spec string) string {
		return "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: egress}\nspec:\n" + spec
	}
	const rootSidecar = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: egress, namespace: istio-system}\nspec:\n  egress: [{hosts: [\"./*\"]}]\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n"
	tests := []struct {
		name    string
		yaml    string
		blocked bool
		blocker string // the Sidecar block_all names; default/egress when ""
	}{
		{name: "no Sidecar", yaml: ""},
		{name: "ALLOW_ANY", yaml: sidecar("  outboundTrafficPolicy: {mode: ALLOW_ANY}\n")},
		{name: "REGISTRY_ONLY", yaml: sidecar("  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n"), blocked: true},
		{name: "outboundTrafficPolicy without mode", yaml: sidecar("  outboundTrafficPolicy: {}\n"), blocked: true},
		{name: "REGISTRY_ONLY for other workloads", yaml: sidecar("  workloadSelector: {labels: {app: reviews}}\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n")},
		{name: "REGISTRY_ONLY from the root namespace", yaml: rootSidecar, blocked: true, blocker: "istio-system/egress"},
		{name: "the root namespace's, overridden by the namespace's own", yaml: rootSidecar + "---\n" + sidecar("  outboundTrafficPolicy: {mode: ALLOW_ANY}\n")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, snap := buildValues(tc.yaml)
			if refused := proxyRefusals(snap); len(refused) > 0 {
				t.Fatalf("refused: %v", refused)
			}
			// productpage's sidecar, in HTTP proxy mode and captured.
			plain := valuesProxies()[0].WithSnapshot(snap)
			if plain.Instance == nil {
				t.Fatal("productpage's sidecar has no instance: the inbound capture listener is not tested")
			}
			resPlain, err := xdstranslate.Translate(snap, plain)
			if err != nil {
				t.Fatal(err)
			}
			p := valuesProxies()[0]
			p.Capture = true
			res, err := xdstranslate.Translate(snap, p.WithSnapshot(snap))
			if err != nil {
				t.Fatal(err)
			}
			wantDefault := xdsmeta.ClusterPassthrough
			if tc.blocked {
				wantDefault = xdsmeta.ClusterBlackHole
			}
			chains := map[string]string{}
			for _, l := range res.Listeners {
				if d := l.GetDefaultFilterChain(); d != nil {
					chains[l.GetName()] = tcpProxyCluster(t, d)
				}
			}
			// Inbound traffic to undeclared ports is not outbound
			// traffic: it passes through either way.
			if got, want := chains, map[string]string{xdsmeta.ListenerOutbound: wantDefault, xdsmeta.ListenerInboundCapture: xdsmeta.ClusterPassthrough}; !mapsEqual(got, want) {
				t.Errorf("captured: default chains go to %v, want %v", got, want)
			}
			clear(chains)
			for _, l := range resPlain.Listeners {
				if d := l.GetDefaultFilterChain(); d != nil {
					chains[l.GetName()] = tcpProxyCluster(t, d)
				}
			}
			if got, want := chains, map[string]string{xdsmeta.ListenerOutbound: wantDefault}; !mapsEqual(got, want) {
				t.Errorf("HTTP proxy mode: default chains go to %v, want %v", got, want)
			}
			var names []string
			for _, c := range res.Clusters {
				names = append(names, c.GetName())
			}
			if !slices.Contains(names, xdsmeta.ClusterPassthrough) || slices.Contains(names, xdsmeta.ClusterBlackHole) != tc.blocked {
				t.Errorf("clusters %v: want PassthroughCluster, and BlackHoleCluster only under REGISTRY_ONLY", names)
			}
			if !slices.IsSorted(names) {
				t.Errorf("clusters %v are not in name order", names)
			}
			for _, c := range res.Clusters {
				if c.GetName() == xdsmeta.ClusterBlackHole && (c.GetType() != cluster.Cluster_STATIC || len(c.GetLoadAssignment().GetEndpoints()) != 0) {
					t.Errorf("BlackHoleCluster %v: want a STATIC cluster without endpoints", c)
				}
			}
			rc := routeConfig(res.Routes, "9080")
			if rc == nil {
				t.Fatalf("no route configuration 9080 in %v", res.Routes)
			}
			vhs := rc.GetVirtualHosts()
			last := vhs[len(vhs)-1]
			if got := last.GetName() == xdsmeta.VirtualHostBlockAll; got != tc.blocked {
				t.Fatalf("last virtual host of 9080 is %q; want block_all: %v", last.GetName(), tc.blocked)
			}
			if tc.blocked {
				dr := last.GetRoutes()[0].GetDirectResponse()
				blocker := tc.blocker
				if blocker == "" {
					blocker = "default/egress"
				}
				if !slices.Equal(last.GetDomains(), []string{"*"}) || dr.GetStatus() != 502 || !strings.Contains(dr.GetBody().GetInlineString(), blocker+" has outboundTrafficPolicy REGISTRY_ONLY") {
					t.Errorf("block_all = %v; want domains [*] answering 502 with the reason", last)
				}
				for _, vh := range vhs[:len(vhs)-1] {
					if slices.Contains(vh.GetDomains(), "*") {
						t.Errorf("virtual host %s also takes every domain", vh.GetName())
					}
				}
			}
		})
	}
}

func tcpProxyCluster(t *testing.T, ch *listener.FilterChain) string {
	t.Helper()
	var tp tcpproxy.TcpProxy
	if err := ch.GetFilters()[0].GetTypedConfig().UnmarshalTo(&tp); err != nil {
		t.Fatalf("chain %s: %v", ch.GetName(), err)
	}
	return tp.GetCluster()
}

func routeConfig(rs []*route.RouteConfiguration, name string) *route.RouteConfiguration {
	for _, r := range rs {
		if r.GetName() == name {
			return r
		}
	}
	return nil
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestSidecarReachingNothing: a Sidecar whose egress reaches no service
// leaves virtualOutbound without filter chains, only its default chain
// (a listener without chains is refused): everything passes through
// under ALLOW_ANY, as in Istio (egress narrows what the sidecar is told,
// not where it may go), and is closed under REGISTRY_ONLY.
func TestSidecarReachingNothing(t *testing.T) {
	for _, tc := range []struct{ mode, want string }{
		{"ALLOW_ANY", xdsmeta.ClusterPassthrough},
		{"REGISTRY_ONLY", xdsmeta.ClusterBlackHole},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			_, snap := buildValues("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: isolated}\nspec:\n  egress: [{hosts: [\"~/*\"]}]\n  outboundTrafficPolicy: {mode: " + tc.mode + "}\n")
			if refused := proxyRefusals(snap); len(refused) > 0 {
				t.Fatalf("refused: %v", refused)
			}
			res, err := xdstranslate.Translate(snap, valuesProxies()[0].WithSnapshot(snap))
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(res.Listeners, func(l *listener.Listener) bool { return l.GetName() == xdsmeta.ListenerOutbound })
			if i < 0 {
				t.Fatal("no virtualOutbound")
			}
			l := res.Listeners[i]
			if len(l.GetFilterChains()) != 0 || l.GetDefaultFilterChain() == nil || tcpProxyCluster(t, l.GetDefaultFilterChain()) != tc.want {
				t.Fatalf("virtualOutbound = %v; want no chains and a default chain to %s", l, tc.want)
			}
			if !slices.ContainsFunc(res.Clusters, func(c *cluster.Cluster) bool { return c.GetName() == tc.want }) {
				t.Fatalf("no %s", tc.want)
			}
		})
	}
}

// TestRootSidecarShortHosts: a short host in "./" of the root namespace's
// Sidecar means that service in each proxy's own namespace.
func TestRootSidecarShortHosts(t *testing.T) {
	_, snap := buildValues("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: egress, namespace: istio-system}\nspec:\n  egress: [{hosts: [\"./reviews\"]}]\n")
	if fs := validate.Findings(snap); len(fs) > 0 {
		t.Fatalf("findings: %v", fs)
	}
	res, err := xdstranslate.Translate(snap, valuesProxies()[0].WithSnapshot(snap))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, rc := range res.Routes {
		for _, vh := range rc.GetVirtualHosts() {
			names = append(names, vh.GetName())
		}
	}
	if want := []string{"reviews.default.svc.cluster.local:9080"}; !slices.Equal(names, want) {
		t.Errorf("virtual hosts %v, want %v: productpage in default reaches default's reviews only", names, want)
	}
}
