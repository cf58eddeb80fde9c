package router_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/router"
)

func route(name string, m *routev3.RouteMatch) *routev3.Route {
	return &routev3.Route{Name: name, Match: m, Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200}}}
}

func prefix(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
}

func mustTable(t testing.TB, rc *routev3.RouteConfiguration) *router.Table {
	t.Helper()
	cfg, err := proxyconfig.ParseRouteConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return router.New(cfg)
}

func TestVirtualHostDomains(t *testing.T) {
	tbl := mustTable(t, &routev3.RouteConfiguration{Name: "80", VirtualHosts: []*routev3.VirtualHost{
		{Name: "exact", Domains: []string{"reviews", "reviews:9080", "Reviews.Default"}, Routes: []*routev3.Route{route("r", prefix("/"))}},
		{Name: "suffix-short", Domains: []string{"*.com"}, Routes: []*routev3.Route{route("r", prefix("/"))}},
		{Name: "suffix-long", Domains: []string{"*.example.com"}, Routes: []*routev3.Route{route("r", prefix("/"))}},
		{Name: "prefix", Domains: []string{"api.*"}, Routes: []*routev3.Route{route("r", prefix("/"))}},
		{Name: "star", Domains: []string{"*"}, Routes: []*routev3.Route{route("r", prefix("/"))}},
	}})
	tests := []struct{ authority, want string }{
		{"reviews", "exact"},
		{"reviews:9080", "exact"},
		{"REVIEWS", "exact"},
		{"reviews.default", "exact"},
		{"reviews:1234", "exact"}, // retried without the port
		{"a.example.com", "suffix-long"},
		{"a.b.com", "suffix-short"},
		{"example.com", "suffix-short"},
		{".example.com", "suffix-short"}, // a suffix wildcard needs at least one character
		{"api.internal", "prefix"},
		{"a.example.com:80", "suffix-long"},
		{"api.example.com", "suffix-long"}, // suffix wildcards win over prefix wildcards
		{"other", "star"},
	}
	for _, tc := range tests {
		t.Run(tc.authority, func(t *testing.T) {
			vh := tbl.VirtualHost(tc.authority)
			if vh == nil || vh.Config.Name != tc.want {
				t.Errorf("VirtualHost(%q) = %v, want %s", tc.authority, vh, tc.want)
			}
		})
	}
}

func TestRouteMatch(t *testing.T) {
	hm := func(name string, spec *routev3.HeaderMatcher) *routev3.HeaderMatcher { spec.Name = name; return spec }
	routes := []*routev3.Route{
		route("exact", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/exact"}}),
		route("ci", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/CI"}, CaseSensitive: wrapperspb.Bool(false)}),
		route("regex", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: `/items/\d+`}}}),
		route("sep", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/api"}}),
		route("v2-header", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/h"}, Headers: []*routev3.HeaderMatcher{
			hm("end-user", &routev3.HeaderMatcher{HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "jason"}}}}),
		}}),
		route("not-test", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/h"}, Headers: []*routev3.HeaderMatcher{
			hm("x-env", &routev3.HeaderMatcher{HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "test"}}}, InvertMatch: true}),
		}}),
		route("absent", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/h"}, Headers: []*routev3.HeaderMatcher{
			hm("x-env", &routev3.HeaderMatcher{HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}, InvertMatch: true}),
		}}),
		route("post", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/m"}, Headers: []*routev3.HeaderMatcher{
			hm(":method", &routev3.HeaderMatcher{HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "POST"}}}}),
			hm(":authority", &routev3.HeaderMatcher{HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: ":9080"}}}}),
		}}),
		route("query", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/q"}, QueryParameters: []*routev3.QueryParameterMatcher{
			{Name: "v", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "a b"}}}},
			{Name: "debug", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}},
		}}),
		route("grpc", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/pkg.Svc/"}, Grpc: &routev3.RouteMatch_GrpcRouteMatchOptions{}}),
		route("prefix-query", prefix("/p?x=1")),
		route("fallback", prefix("/")),
	}
	tbl := mustTable(t, &routev3.RouteConfiguration{Name: "9080", VirtualHosts: []*routev3.VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: routes}}})
	tests := []struct {
		name, method, target string
		headers              map[string]string
		want                 string
	}{
		{name: "exact path", target: "/exact?x=1", want: "exact"},
		{name: "exact path is not a prefix", target: "/exact/more", want: "fallback"},
		{name: "case insensitive prefix", target: "/ci/x", want: "ci"},
		{name: "regex full match", target: "/items/42", want: "regex"},
		{name: "regex needs full match", target: "/items/42/x", want: "fallback"},
		{name: "path separated prefix exact", target: "/api", want: "sep"},
		{name: "path separated prefix segment", target: "/api/v1", want: "sep"},
		{name: "path separated prefix query", target: "/api?x", want: "sep"},
		{name: "path separated prefix not partial", target: "/apis", want: "fallback"},
		{name: "header exact", target: "/h", headers: map[string]string{"End-User": "jason"}, want: "v2-header"},
		{name: "inverted prefix on other value", target: "/h", headers: map[string]string{"X-Env": "prod"}, want: "not-test"},
		{name: "inverted prefix on matching value", target: "/h", headers: map[string]string{"X-Env": "testing"}, want: "fallback"},
		{name: "inverted present on missing header", target: "/h", want: "absent"},
		{name: "pseudo headers", method: "POST", target: "/m", headers: map[string]string{"Host": "reviews:9080"}, want: "post"},
		{name: "pseudo headers mismatch", method: "GET", target: "/m", headers: map[string]string{"Host": "reviews:9080"}, want: "fallback"},
		{name: "query params", target: "/q?v=a+b&debug", want: "query"},
		{name: "query param missing", target: "/q?v=a+b", want: "fallback"},
		{name: "grpc content type", method: "POST", target: "/pkg.Svc/Call", headers: map[string]string{"Content-Type": "application/grpc+proto"}, want: "grpc"},
		{name: "grpc route skips non-grpc", method: "POST", target: "/pkg.Svc/Call", want: "fallback"},
		{name: "prefix matches into the query", target: "/p?x=1&y=2", want: "prefix-query"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			r := httptest.NewRequest(method, tc.target, nil)
			for k, v := range tc.headers {
				if k == "Host" {
					r.Host = v
				}
				r.Header.Set(k, v)
			}
			_, rt := tbl.Match(router.Request{HTTP: r, Authority: r.Host})
			if rt == nil || rt.Name != tc.want {
				t.Errorf("matched %v, want %s", rt, tc.want)
			}
		})
	}
}

func TestRewritesAndRedirects(t *testing.T) {
	m := proxyconfig.RouteMatch{Kind: proxyconfig.PathPrefix, Path: "/old"}
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"prefix rewrite", router.RewritePath(&m, &proxyconfig.RouteAction{PrefixRewrite: "/new", HasPrefixRewrite: true}, "/old/x"), "/new/x"},
		{"prefix rewrite to root", router.RewritePath(&m, &proxyconfig.RouteAction{PrefixRewrite: "/", HasPrefixRewrite: true}, "/old"), "/"},
		{"exact rewrite", router.RewritePath(&proxyconfig.RouteMatch{Kind: proxyconfig.PathExact, Path: "/a"}, &proxyconfig.RouteAction{PrefixRewrite: "/b", HasPrefixRewrite: true}, "/a"), "/b"},
		{"redirect https drops port", router.RedirectLocation(&m, &proxyconfig.Redirect{Scheme: "https", Code: 301}, "http", "shop:8080", "/old", "a=1"), "https://shop/old?a=1"},
		{"redirect host and path", router.RedirectLocation(&m, &proxyconfig.Redirect{Host: "new", Path: "/p", Code: 302, StripQuery: true}, "http", "shop:8080", "/old", "a=1"), "http://new:8080/p"},
		{"redirect prefix", router.RedirectLocation(&m, &proxyconfig.Redirect{PrefixRewrite: "/v2", HasPrefixRewrite: true, Code: 302}, "http", "shop", "/old/x", ""), "http://shop/v2/x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
	t.Run("regex rewrite with envoy back-references", func(t *testing.T) {
		rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{{
			Match: prefix("/"),
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"},
				RegexRewrite:     &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: `^/service/([^/]+)(/.*)$`}, Substitution: `\2/instance/\1`},
			}},
		}}}}}
		cfg, err := proxyconfig.ParseRouteConfig(rc)
		if err != nil {
			t.Fatal(err)
		}
		r := cfg.VirtualHosts[0].Routes[0]
		if got := router.RewritePath(&r.Match, r.Action, "/service/foo/v1/api"); got != "/v1/api/instance/foo" {
			t.Errorf("got %q", got)
		}
	})
}

func TestApplyHeaders(t *testing.T) {
	ops := proxyconfig.HeaderOps{
		Remove: []string{"X-Remove"},
		Add: []proxyconfig.HeaderValue{
			{Name: "X-Append", Value: "2", Action: proxyconfig.AppendIfExistsOrAdd},
			{Name: "X-Absent", Value: "new", Action: proxyconfig.AddIfAbsent},
			{Name: "X-Present", Value: "kept?", Action: proxyconfig.AddIfAbsent},
			{Name: "X-Set", Value: "set", Action: proxyconfig.OverwriteIfExistsOrAdd},
			{Name: "X-Only-If", Value: "no", Action: proxyconfig.OverwriteIfExists},
			{Name: ":authority", Value: "rewritten", Action: proxyconfig.OverwriteIfExistsOrAdd},
		},
	}
	h := http.Header{"X-Remove": {"x"}, "X-Append": {"1"}, "X-Present": {"old"}, "X-Set": {"a", "b"}}
	authority := "orig"
	router.ApplyHeaders(h, &ops, &authority)
	want := http.Header{"X-Append": {"1", "2"}, "X-Absent": {"new"}, "X-Present": {"old"}, "X-Set": {"set"}}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	if authority != "rewritten" {
		t.Errorf("authority %q", authority)
	}
}

func TestHashPolicies(t *testing.T) {
	r := httptest.NewRequest("GET", "/?user=7", nil)
	r.Header.Set("X-User", "alice")
	r.AddCookie(&http.Cookie{Name: "session", Value: "s1"})
	tests := []struct {
		name     string
		policies []proxyconfig.HashPolicy
		want     uint64
		wantOK   bool
	}{
		{"header", []proxyconfig.HashPolicy{{Kind: proxyconfig.HashHeader, Name: "x-user"}}, router.HashString("alice"), true},
		{"cookie", []proxyconfig.HashPolicy{{Kind: proxyconfig.HashCookie, Name: "session"}}, router.HashString("s1"), true},
		{"query", []proxyconfig.HashPolicy{{Kind: proxyconfig.HashQueryParam, Name: "user"}}, router.HashString("7"), true},
		{"source ip", []proxyconfig.HashPolicy{{Kind: proxyconfig.HashSourceIP}}, router.HashString("10.1.2.3"), true},
		{"missing input", []proxyconfig.HashPolicy{{Kind: proxyconfig.HashHeader, Name: "x-none"}}, 0, false},
		{"terminal stops", []proxyconfig.HashPolicy{{Kind: proxyconfig.HashHeader, Name: "x-user", Terminal: true}, {Kind: proxyconfig.HashCookie, Name: "session"}}, router.HashString("alice"), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := router.Hash(tc.policies, r, "10.1.2.3")
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("Hash = %d, %v; want %d, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

// A table compiled from an earlier one shares the compiled virtual hosts
// whose validated config is the same object and compiles the others; it
// matches as a table compiled afresh does.
func TestNewFromSharesUnchangedVirtualHosts(t *testing.T) {
	vh := func(name string, domains ...string) *proxyconfig.VirtualHost {
		return &proxyconfig.VirtualHost{Name: name, Domains: domains, Routes: []*proxyconfig.Route{{
			Match:  proxyconfig.RouteMatch{Kind: proxyconfig.PathPrefix, Path: "/", Headers: []proxyconfig.HeaderMatcher{{Name: "x-version", Present: true}}},
			Action: &proxyconfig.RouteAction{Cluster: name},
		}}}
	}
	a, b := vh("a", "a.example.com"), vh("b", "b.example.com")
	first := router.New(&proxyconfig.RouteConfig{Name: "80", VirtualHosts: []*proxyconfig.VirtualHost{a, b}})
	b2, c := vh("b2", "b.example.com"), vh("c", "*.example.org")
	second := router.NewFrom(&proxyconfig.RouteConfig{Name: "80", VirtualHosts: []*proxyconfig.VirtualHost{a, b2, c}}, first)
	if second.VirtualHost("a.example.com") != first.VirtualHost("a.example.com") {
		t.Error("virtual host a, the same config, compiled again")
	}
	for host, want := range map[string]*proxyconfig.VirtualHost{"a.example.com": a, "b.example.com": b2, "x.example.org": c} {
		got := second.VirtualHost(host)
		if got == nil || got.Config != want {
			t.Errorf("%s: virtual host %+v, want %q", host, got, want.Name)
		}
		if fresh := router.New(second.Config()).VirtualHost(host); fresh == nil || fresh.Config != want {
			t.Errorf("%s: a table compiled afresh disagrees", host)
		}
	}
}
