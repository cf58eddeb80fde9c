package proxyconfig_test

import (
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/proxytest"
)

func corsRoutes(p *corsv3.CorsPolicy) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{{
		Name:                 "c",
		Match:                &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action:               &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}}},
		TypedPerFilterConfig: map[string]*anypb.Any{"envoy.filters.http.cors": proxytest.MustAny(p)},
	}}}}}
}

func TestParseCORS(t *testing.T) {
	rc, err := proxyconfig.ParseRouteConfig(corsRoutes(&corsv3.CorsPolicy{
		AllowOriginStringMatch: []*matcherv3.StringMatcher{{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "https://a.example"}}},
		AllowMethods:           "GET,POST", AllowHeaders: "X-A", ExposeHeaders: "X-B", MaxAge: "60",
		AllowCredentials: wrapperspb.Bool(true), ForwardNotMatchingPreflights: wrapperspb.Bool(false),
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := &proxyconfig.CORS{AllowOrigins: []proxyconfig.StringMatcher{{Kind: proxyconfig.MatchExact, Value: "https://a.example"}},
		AllowMethods: "GET,POST", AllowHeaders: "X-A", ExposeHeaders: "X-B", MaxAge: "60", AllowCredentials: true}
	if diff := cmp.Diff(want, rc.VirtualHosts[0].Routes[0].CORS, cmp.AllowUnexported(proxyconfig.StringMatcher{})); diff != "" {
		t.Errorf("CORS (-want +got):\n%s", diff)
	}
	if len(rc.Unenforced) > 0 {
		t.Errorf("Unenforced %q", rc.Unenforced)
	}
	// As the translator sends it: wrapped in an optional FilterConfig.
	wrapped := corsRoutes(&corsv3.CorsPolicy{AllowMethods: "GET"})
	r := wrapped.VirtualHosts[0].Routes[0]
	r.TypedPerFilterConfig["envoy.filters.http.cors"] = proxytest.MustAny(&routev3.FilterConfig{Config: r.TypedPerFilterConfig["envoy.filters.http.cors"], IsOptional: true})
	rc, err = proxyconfig.ParseRouteConfig(wrapped)
	if err != nil || rc.VirtualHosts[0].Routes[0].CORS == nil || rc.VirtualHosts[0].Routes[0].CORS.AllowMethods != "GET" {
		t.Errorf("wrapped policy: %v, %+v", err, rc)
	}
	// Disabled for the route: no policy, nothing listed.
	r.TypedPerFilterConfig["envoy.filters.http.cors"] = proxytest.MustAny(&routev3.FilterConfig{Disabled: true})
	if rc, err = proxyconfig.ParseRouteConfig(wrapped); err != nil || rc.VirtualHosts[0].Routes[0].CORS != nil || len(rc.Unenforced) > 0 {
		t.Errorf("disabled policy: %v, %+v", err, rc)
	}
}
