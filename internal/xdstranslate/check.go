package xdstranslate

import (
	"fmt"
	"strings"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// Check verifies that r is self-contained before it is published: every
// route configuration a listener names over RDS exists (api_listeners
// included), every cluster a route, mirror or tcp_proxy names exists, and
// every EDS cluster has a ClusterLoadAssignment. The error lists what is
// missing and who refers to it.
func Check(r *Resources) error {
	routes := make(map[string]bool, len(r.Routes))
	for _, rc := range r.Routes {
		routes[rc.GetName()] = true
	}
	clusters := make(map[string]bool, len(r.Clusters))
	for _, c := range r.Clusters {
		clusters[c.GetName()] = true
	}
	cla := make(map[string]bool, len(r.Endpoints))
	for _, e := range r.Endpoints {
		cla[e.GetClusterName()] = true
	}
	missing := map[string]string{} // what -> who
	needCluster := func(name, who string) {
		if !clusters[name] {
			missing[fmt.Sprintf("cluster %q", name)] = who
		}
	}
	checkRoutes := func(rc *route.RouteConfiguration, who string) {
		for _, vh := range rc.GetVirtualHosts() {
			for _, rt := range vh.GetRoutes() {
				a := rt.GetRoute()
				if a == nil {
					continue
				}
				if c := a.GetCluster(); c != "" {
					needCluster(c, who)
				}
				for _, wc := range a.GetWeightedClusters().GetClusters() {
					needCluster(wc.GetName(), who)
				}
				for _, m := range a.GetRequestMirrorPolicies() {
					needCluster(m.GetCluster(), who)
				}
			}
		}
	}
	checkHCM := func(a *anypb.Any, who string) {
		m := &hcm.HttpConnectionManager{}
		if err := a.UnmarshalTo(m); err != nil {
			missing["a valid http_connection_manager ("+err.Error()+")"] = who
			return
		}
		if rds := m.GetRds(); rds != nil && !routes[rds.GetRouteConfigName()] {
			missing[fmt.Sprintf("route configuration %q", rds.GetRouteConfigName())] = who
		}
		if rc := m.GetRouteConfig(); rc != nil {
			checkRoutes(rc, who)
		}
		if c := tracingCluster(m); c != "" {
			needCluster(c, who+" (tracing)")
		}
	}
	for _, l := range r.Listeners {
		who := fmt.Sprintf("listener %q", l.GetName())
		if api := l.GetApiListener().GetApiListener(); api != nil {
			checkHCM(api, who)
		}
		for _, fc := range l.GetFilterChains() {
			checkFilters(fc.GetFilters(), who, checkHCM, needCluster)
		}
		if fc := l.GetDefaultFilterChain(); fc != nil {
			checkFilters(fc.GetFilters(), who, checkHCM, needCluster)
		}
	}
	for _, rc := range r.Routes {
		checkRoutes(rc, fmt.Sprintf("route configuration %q", rc.GetName()))
	}
	for _, c := range r.Clusters {
		if c.GetType() != cluster.Cluster_EDS {
			continue
		}
		name := c.GetEdsClusterConfig().GetServiceName()
		if name == "" {
			name = c.GetName()
		}
		if !cla[name] {
			missing[fmt.Sprintf("endpoints (ClusterLoadAssignment) %q", name)] = fmt.Sprintf("EDS cluster %q", c.GetName())
		}
	}
	if len(missing) == 0 {
		return nil
	}
	var parts []string
	for _, what := range sortedNames(missing) {
		parts = append(parts, fmt.Sprintf("%s referenced by %s", what, missing[what]))
	}
	const max = 10
	more := ""
	if len(parts) > max {
		more = fmt.Sprintf(" (and %d more)", len(parts)-max)
		parts = parts[:max]
	}
	return fmt.Errorf("inconsistent xDS resources: missing %s%s", strings.Join(parts, "; "), more)
}

func checkFilters(fs []*listener.Filter, who string, checkHCM func(*anypb.Any, string), needCluster func(string, string)) {
	for _, f := range fs {
		tc := f.GetTypedConfig()
		if tc == nil {
			continue
		}
		switch {
		case tc.MessageIs((*hcm.HttpConnectionManager)(nil)):
			checkHCM(tc, who)
		case tc.MessageIs((*tcpproxy.TcpProxy)(nil)):
			tp := &tcpproxy.TcpProxy{}
			if err := tc.UnmarshalTo(tp); err != nil {
				continue
			}
			if c := tp.GetCluster(); c != "" {
				needCluster(c, who)
			}
			for _, wc := range tp.GetWeightedClusters().GetClusters() {
				needCluster(wc.GetName(), who)
			}
		}
	}
}
