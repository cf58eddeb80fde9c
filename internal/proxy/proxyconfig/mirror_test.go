package proxyconfig_test

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"weft.dev/weft/internal/proxy/proxyconfig"
)

func TestParseMirrors(t *testing.T) {
	rc := func(ps ...*routev3.RouteAction_RequestMirrorPolicy) *routev3.RouteConfiguration {
		return &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{{
			Name:   "m",
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}, RequestMirrorPolicies: ps}},
		}}}}}
	}
	got, err := proxyconfig.ParseRouteConfig(rc(
		&routev3.RouteAction_RequestMirrorPolicy{Cluster: "all"},
		&routev3.RouteAction_RequestMirrorPolicy{Cluster: "some", RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: pct(25, typev3.FractionalPercent_HUNDRED)}},
		&routev3.RouteAction_RequestMirrorPolicy{Cluster: "same-host", DisableShadowHostSuffixAppend: true, TraceSampled: wrapperspb.Bool(false)},
		&routev3.RouteAction_RequestMirrorPolicy{ClusterHeader: "x-mirror-to"},
	))
	if err != nil {
		t.Fatal(err)
	}
	want := []proxyconfig.Mirror{{Cluster: "all", PerMillion: 1_000_000}, {Cluster: "some", PerMillion: 250_000},
		{Cluster: "same-host", PerMillion: 1_000_000, KeepHost: true, Unsampled: true}}
	if diff := cmp.Diff(want, got.VirtualHosts[0].Routes[0].Action.Mirrors); diff != "" {
		t.Errorf("Mirrors (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{`route "m": request_mirror_policies[3].cluster_header`}, got.Unenforced); diff != "" {
		t.Errorf("Unenforced (-want +got):\n%s", diff)
	}
	if _, err := proxyconfig.ParseRouteConfig(rc(&routev3.RouteAction_RequestMirrorPolicy{})); err == nil || !strings.Contains(err.Error(), "request_mirror_policies[0]: cluster is empty") {
		t.Errorf("a mirror without a cluster: %v", err)
	}
}
