package router_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/router"
)

// benchTable has 50 services with 4 domains each and a header-matched
// route before the default route, like a small mesh.
func benchTable(b *testing.B) *router.Table {
	rc := &routev3.RouteConfiguration{Name: "9080"}
	for i := range 50 {
		host := fmt.Sprintf("svc%d", i)
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
			Name:    host + ":9080",
			Domains: []string{host, host + ":9080", host + ".default.svc.cluster.local", host + ".default.svc.cluster.local:9080"},
			Routes: []*routev3.Route{
				{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{
					Name: "end-user", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "jason"}}},
				}}}, Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "v2"}}}},
				{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "v1"}}}},
			},
		})
	}
	cfg, err := proxyconfig.ParseRouteConfig(rc)
	if err != nil {
		b.Fatal(err)
	}
	return router.New(cfg)
}

func BenchmarkRouteMatch(b *testing.B) {
	tbl := benchTable(b)
	r := httptest.NewRequest(http.MethodGet, "/reviews/1?x=2", nil)
	r.Header.Set("End-User", "jason")
	req := router.Request{HTTP: r, Authority: "svc42.default.svc.cluster.local:9080"}
	b.ReportAllocs()
	for b.Loop() {
		if _, rt := tbl.Match(req); rt == nil {
			b.Fatal("no match")
		}
	}
}

func BenchmarkHeaderRewrite(b *testing.B) {
	ops := proxyconfig.HeaderOps{
		Remove: []string{"X-Internal"},
		Add: []proxyconfig.HeaderValue{
			{Name: "X-Version", Value: "v2", Action: proxyconfig.OverwriteIfExistsOrAdd},
			{Name: "X-Trace", Value: "on", Action: proxyconfig.AddIfAbsent},
		},
	}
	h := http.Header{"X-Version": {"v1"}, "X-Trace": {"off"}, "Accept": {"*/*"}}
	b.ReportAllocs()
	for b.Loop() {
		h["X-Internal"] = nil
		router.ApplyHeaders(h, &ops, nil)
	}
}
