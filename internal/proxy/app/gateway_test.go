package app_test

import (
	"encoding/json"
	"net/http"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/mccutchen/go-httpbin/v2/httpbin"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/xdsmeta"
)

// TestGatewayRouteActions runs a gateway proxy (listener 0.0.0.0_8080 with
// RDS http.8080) in front of go-httpbin and checks route actions.
func TestGatewayRouteActions(t *testing.T) {
	app := serveHTTP(t, httpbin.New().Handler())
	cp := proxytest.StartControlPlane(t)
	gw := proxytest.StartProxy(t, cp, "ingress", proxytest.ProxyOptions{Type: xdsmeta.ProxyTypeGateway})
	hdr := func(k, v string, a corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: a}
	}
	rewrite := proxytest.PrefixRoute("/api/", "httpbin")
	rewrite.GetRoute().PrefixRewrite = "/anything/"
	rewrite.GetRoute().HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "internal.example"}
	rewrite.RequestHeadersToAdd = []*corev3.HeaderValueOption{hdr("x-route", "api", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)}
	rewrite.RequestHeadersToRemove = []string{"x-secret"}
	rewrite.ResponseHeadersToAdd = []*corev3.HeaderValueOption{hdr("x-served-by", "weft", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)}
	split := proxytest.PrefixRoute("/split", "")
	split.GetRoute().ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
		{Name: "httpbin", Weight: wrapperspb.UInt32(100), ResponseHeadersToAdd: []*corev3.HeaderValueOption{hdr("x-subset", "v1", 0)}},
		{Name: "never", Weight: wrapperspb.UInt32(0)},
	}}}
	split.GetRoute().PrefixRewrite = "/get"
	vh := proxytest.VirtualHost("shop", []string{"shop.example.com", "shop.example.com:*"},
		&routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/old"}},
			Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/new"}, ResponseCode: routev3.RedirectAction_FOUND}}},
		&routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/health"}},
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "fine"}}}}},
		rewrite, split,
	)
	vh.Domains = []string{"shop.example.com"}
	cp.Set(t, gw.NodeID(),
		proxytest.Listener("0.0.0.0_8080", "127.0.0.1:0", proxytest.Chain{Filter: proxytest.HCMRDS(xdsmeta.GatewayRouteName(8080))}),
		proxytest.RouteConfig(xdsmeta.GatewayRouteName(8080), vh),
		proxytest.StaticCluster("httpbin", app),
		proxytest.EDSCluster("never", clusterv3.Cluster_ROUND_ROBIN), proxytest.CLA("never"),
	)
	gw.WaitReady(t)
	base := "http://" + gw.ListenerAddr(t, "0.0.0.0_8080")
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	t.Run("redirect", func(t *testing.T) {
		resp, _ := get(t, c, base+"/old?q=1", map[string]string{"Host": "shop.example.com"})
		if resp.StatusCode != 302 || resp.Header.Get("Location") != "http://shop.example.com/new?q=1" {
			t.Errorf("got %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("direct response", func(t *testing.T) {
		resp, body := get(t, c, base+"/health", map[string]string{"Host": "shop.example.com"})
		if resp.StatusCode != 200 || body != "fine" {
			t.Errorf("got %d %q", resp.StatusCode, body)
		}
	})
	t.Run("rewrites and header ops", func(t *testing.T) {
		resp, body := get(t, c, base+"/api/items?x=1", map[string]string{"Host": "shop.example.com", "X-Secret": "s", "X-Route": "client"})
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		var got struct {
			URL     string              `json:"url"`
			Headers map[string][]string `json:"headers"`
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		if got.URL != "http://internal.example/anything/items?x=1" {
			t.Errorf("app saw URL %q", got.URL)
		}
		if diff := cmp.Diff([]string{"api"}, got.Headers["X-Route"]); diff != "" {
			t.Errorf("x-route (-want +got):\n%s", diff)
		}
		if _, ok := got.Headers["X-Secret"]; ok {
			t.Errorf("x-secret was not removed")
		}
		if resp.Header.Get("X-Served-By") != "weft" {
			t.Errorf("response header x-served-by missing")
		}
	})
	t.Run("weighted clusters", func(t *testing.T) {
		for range 10 {
			resp, body := get(t, c, base+"/split", map[string]string{"Host": "shop.example.com"})
			if resp.StatusCode != 200 || resp.Header.Get("X-Subset") != "v1" {
				t.Fatalf("got %d %q: %s", resp.StatusCode, resp.Header.Get("X-Subset"), body)
			}
		}
	})
	t.Run("unknown host", func(t *testing.T) {
		resp, body := get(t, c, base+"/health", map[string]string{"Host": "other"})
		if resp.StatusCode != 404 || resp.Header.Get("X-Weft-Response-Flags") != "NR" {
			t.Errorf("got %d %q", resp.StatusCode, body)
		}
	})
}
