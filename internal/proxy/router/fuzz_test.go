package router_test

import (
	"bufio"
	"net/http"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/router"
)

// FuzzRouteMatch feeds arbitrary requests (as parsed by net/http) and
// arbitrary matcher literals to the router; it must never panic.
func FuzzRouteMatch(f *testing.F) {
	f.Add("GET /a/b?x=1&y HTTP/1.1\r\nHost: reviews:9080\r\nX-User: jason\r\n\r\n", "/a", "jason", "*.default")
	f.Add("POST http://x:1/%2e%2e/?q=%zz HTTP/1.1\r\nHost: X\r\nX-User: \r\n\r\n", "", "", "*")
	f.Add("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", "/?", "a,b", "api.*")
	f.Fuzz(func(t *testing.T, raw, pathPrefix, headerValue, domain string) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return
		}
		if domain == "" || strings.Count(domain, "*") > 1 {
			domain = "*"
		}
		rc := &routev3.RouteConfiguration{Name: "f", VirtualHosts: []*routev3.VirtualHost{{
			Name: "v", Domains: []string{domain, "*"},
			Routes: []*routev3.Route{
				{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: pathPrefix}, Headers: []*routev3.HeaderMatcher{{
					Name:                 "x-user",
					HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: headerValue}, IgnoreCase: true}},
				}}, QueryParameters: []*routev3.QueryParameterMatcher{{Name: headerValue}}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"},
						PrefixRewrite:    headerValue,
						HashPolicy: []*routev3.RouteAction_HashPolicy{
							{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: "c"}}},
							{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: "q"}}},
						},
					}}},
				{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/a"}},
					Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{PathRewriteSpecifier: &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: pathPrefix}}}},
			},
		}}}
		cfg, err := proxyconfig.ParseRouteConfig(rc)
		if err != nil {
			return
		}
		tbl := router.New(cfg)
		_, rt := tbl.Match(router.Request{HTTP: req, Authority: req.Host})
		if rt == nil {
			return
		}
		path := req.URL.EscapedPath()
		switch {
		case rt.Action != nil:
			router.RewritePath(&rt.Match, rt.Action, path)
			router.Hash(rt.Action.HashPolicies, req, "1.2.3.4")
			h := req.Header.Clone()
			authority := req.Host
			ops := proxyconfig.HeaderOps{Remove: []string{"X-User"}, Add: []proxyconfig.HeaderValue{{Name: "X-A", Value: headerValue}, {Name: ":authority", Value: domain}}}
			router.ApplyHeaders(h, &ops, &authority)
		case rt.Redirect != nil:
			router.RedirectLocation(&rt.Match, rt.Redirect, "http", req.Host, path, req.URL.RawQuery)
		}
	})
}
