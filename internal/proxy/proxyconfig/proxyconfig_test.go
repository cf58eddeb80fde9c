package proxyconfig_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/proxytest"
)

func TestParseListener(t *testing.T) {
	l := proxytest.Listener("virtualOutbound", "127.0.0.1:15001",
		proxytest.Chain{Port: 9080, Filter: proxytest.HCMRDS("9080")},
		proxytest.Chain{Port: 3306, ServerNames: []string{"mysql"}, Prefixes: []string{"10.0.0.3/32"}, Filter: proxytest.TCPProxy("outbound|3306||mysql")},
	)
	got, err := proxyconfig.ParseListener(l)
	if err != nil {
		t.Fatal(err)
	}
	want := &proxyconfig.Listener{
		Name: "virtualOutbound", Address: "127.0.0.1:15001",
		FilterChains: []*proxyconfig.FilterChain{
			{Match: proxyconfig.ChainMatch{DestinationPort: 9080}, HTTP: &proxyconfig.HTTPConnectionManager{StatPrefix: "9080", RDSName: "9080"}},
			{Match: proxyconfig.ChainMatch{DestinationPort: 3306, ServerNames: []string{"mysql"}, PrefixRanges: []netip.Prefix{netip.MustParsePrefix("10.0.0.3/32")}},
				TCP: &proxyconfig.TCPProxy{StatPrefix: "outbound|3306||mysql", Cluster: "outbound|3306||mysql", IdleTimeout: time.Hour}},
		},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
		t.Errorf("ParseListener (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"9080"}, got.RouteNames()); diff != "" {
		t.Errorf("RouteNames (-want +got):\n%s", diff)
	}
}

func TestParseTransparentListener(t *testing.T) {
	tests := []struct {
		name string
		edit func(l *listenerv3.Listener)
		want time.Duration // DetectTimeout; 0 means not transparent
	}{
		{name: "plain", edit: func(*listenerv3.Listener) {}},
		{name: "use_original_dst", edit: func(l *listenerv3.Listener) { l.UseOriginalDst = wrapperspb.Bool(true) }, want: proxyconfig.DefaultDetectTimeout},
		{name: "original_dst listener filter", edit: func(l *listenerv3.Listener) {
			l.ListenerFilters = []*listenerv3.ListenerFilter{{Name: proxyconfig.OriginalDstFilter}}
		}, want: proxyconfig.DefaultDetectTimeout},
		{name: "listener_filters_timeout", edit: func(l *listenerv3.Listener) {
			l.UseOriginalDst = wrapperspb.Bool(true)
			l.ListenerFiltersTimeout = durationpb.New(250 * time.Millisecond)
		}, want: 250 * time.Millisecond},
		{name: "zero timeout keeps the default", edit: func(l *listenerv3.Listener) {
			l.UseOriginalDst = wrapperspb.Bool(true)
			l.ListenerFiltersTimeout = durationpb.New(0)
		}, want: proxyconfig.DefaultDetectTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := proxytest.Listener("virtualOutbound", "127.0.0.1:15001", proxytest.Chain{Port: 9080, Filter: proxytest.HCMRDS("9080")})
			tc.edit(l)
			got, err := proxyconfig.ParseListener(l)
			if err != nil {
				t.Fatal(err)
			}
			if got.Transparent != (tc.want != 0) || got.DetectTimeout != tc.want {
				t.Errorf("Transparent=%v DetectTimeout=%v, want DetectTimeout %v", got.Transparent, got.DetectTimeout, tc.want)
			}
			if len(got.Unenforced) != 0 {
				t.Errorf("Unenforced = %q, want none", got.Unenforced)
			}
		})
	}
}

func TestValidationErrors(t *testing.T) {
	okRoute := func(m *routev3.RouteMatch) *routev3.RouteConfiguration {
		return &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{{
			Match: m, Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}}},
		}}}}}
	}
	tests := []struct {
		name    string
		parse   func() error
		wantErr string
	}{
		{"listener without address", func() error {
			_, err := proxyconfig.ParseListener(&listenerv3.Listener{Name: "l"})
			return err
		}, `listener "l": address: only socket_address is supported`},
		{"listener with unknown terminal filter", func() error {
			l := proxytest.Listener("l", "127.0.0.1:1", proxytest.Chain{Filter: &listenerv3.Filter{Name: "x", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: proxytest.MustAny(&corev3.Address{})}}})
			_, err := proxyconfig.ParseListener(l)
			return err
		}, `terminal filter "x"`},
		{"bad regex", func() error {
			_, err := proxyconfig.ParseRouteConfig(okRoute(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "("}}}))
			return err
		}, `route configuration "r": virtual_hosts[0] "v": routes[0] "": match: safe_regex`},
		{"duplicate domain", func() error {
			rc := okRoute(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}})
			rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: "w", Domains: []string{"*"}})
			_, err := proxyconfig.ParseRouteConfig(rc)
			return err
		}, `domain "*" is in virtual hosts "v" and "w"`},
		{"wildcard in the middle", func() error {
			rc := okRoute(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}})
			rc.VirtualHosts[0].Domains = []string{"a.*.com"}
			_, err := proxyconfig.ParseRouteConfig(rc)
			return err
		}, `wildcard may only be at the start or the end`},
		{"unknown retry_on", func() error {
			rc := okRoute(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}})
			rc.VirtualHosts[0].Routes[0].GetRoute().RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx,sometimes"}
			_, err := proxyconfig.ParseRouteConfig(rc)
			return err
		}, `retry_on "sometimes" is not a known condition`},
		{"zero weights", func() error {
			rc := okRoute(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}})
			rc.VirtualHosts[0].Routes[0].GetRoute().ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{
				Clusters: []*routev3.WeightedCluster_ClusterWeight{{Name: "a", Weight: wrapperspb.UInt32(0)}}}}
			_, err := proxyconfig.ParseRouteConfig(rc)
			return err
		}, `weighted_clusters has no cluster with weight > 0`},
		{"unsupported lb policy", func() error {
			c := proxytest.EDSCluster("c", clusterv3.Cluster_CLUSTER_PROVIDED)
			_, err := proxyconfig.ParseCluster(c)
			return err
		}, `cluster "c": lb_policy CLUSTER_PROVIDED is not supported`},
		{"maglev table not prime", func() error {
			c := proxytest.EDSCluster("c", clusterv3.Cluster_MAGLEV)
			c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(1000)}}
			_, err := proxyconfig.ParseCluster(c)
			return err
		}, `table_size 1000 must be a prime`},
		{"overprovisioning factor 0", func() error {
			cla := proxytest.CLA("c", "10.0.0.1:80")
			cla.Policy = &endpointv3.ClusterLoadAssignment_Policy{OverprovisioningFactor: wrapperspb.UInt32(0)}
			_, err := proxyconfig.ParseEndpoints(cla)
			return err
		}, `policy.overprovisioning_factor must be > 0`},
		{"static cluster without endpoints", func() error {
			_, err := proxyconfig.ParseCluster(&clusterv3.Cluster{Name: "s", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}, ConnectTimeout: durationpb.New(time.Second)})
			return err
		}, `load_assignment is required`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.parse()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestUnenforcedFieldsAreListed(t *testing.T) {
	rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{{
		Name:  "mirror",
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier:      &routev3.RouteAction_Cluster{Cluster: "c"},
			RequestMirrorPolicies: []*routev3.RouteAction_RequestMirrorPolicy{{ClusterHeader: "x-mirror-to"}},
		}},
		TypedPerFilterConfig: map[string]*anypb.Any{"envoy.filters.http.fault": proxytest.MustAny(&corev3.Address{})},
	}}}}}
	got, err := proxyconfig.ParseRouteConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`route "mirror": typed_per_filter_config "envoy.filters.http.fault"`,
		`route "mirror": request_mirror_policies[0].cluster_header`,
	}
	if diff := cmp.Diff(want, got.Unenforced); diff != "" {
		t.Errorf("Unenforced (-want +got):\n%s", diff)
	}
}

// TestParseEndpointsPriorities: localities keep their priorities, and
// the overprovisioning factor is the policy's, 140 (Envoy's 1.4) when
// unset.
func TestParseEndpointsPriorities(t *testing.T) {
	cla := proxytest.CLA("c", "10.0.0.1:80")
	cla.Endpoints = append(cla.Endpoints, proxytest.CLA("c", "10.0.0.2:80").Endpoints...)
	cla.Endpoints[1].Priority = 1
	for _, tc := range []struct {
		name   string
		policy *endpointv3.ClusterLoadAssignment_Policy
		want   uint32
	}{
		{"default", nil, 140},
		{"set", &endpointv3.ClusterLoadAssignment_Policy{OverprovisioningFactor: wrapperspb.UInt32(100)}, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cla.Policy = tc.policy
			eps, err := proxyconfig.ParseEndpoints(cla)
			if err != nil {
				t.Fatal(err)
			}
			if eps.OverprovisioningFactor != tc.want || eps.Localities[0].Priority != 0 || eps.Localities[1].Priority != 1 {
				t.Errorf("overprovisioning factor %d, priorities %d and %d; want %d, 0 and 1", eps.OverprovisioningFactor, eps.Localities[0].Priority, eps.Localities[1].Priority, tc.want)
			}
		})
	}
}
