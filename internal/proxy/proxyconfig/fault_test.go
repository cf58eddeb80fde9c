package proxyconfig_test

import (
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/proxytest"
)

func pct(n uint32, d typev3.FractionalPercent_DenominatorType) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: n, Denominator: d}
}

func delay(d time.Duration, p *typev3.FractionalPercent) *faultcommon.FaultDelay {
	return &faultcommon.FaultDelay{FaultDelaySecifier: &faultcommon.FaultDelay_FixedDelay{FixedDelay: durationpb.New(d)}, Percentage: p}
}

func abortHTTP(status uint32, p *typev3.FractionalPercent) *faultv3.FaultAbort {
	return &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: status}, Percentage: p}
}

// faultRoutes is a route configuration whose one route carries f as its
// fault filter config.
func faultRoutes(f *faultv3.HTTPFault) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{{
		Name:                 "faulty",
		Match:                &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action:               &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}}},
		TypedPerFilterConfig: map[string]*anypb.Any{"envoy.filters.http.fault": proxytest.MustAny(f)},
	}}}}}
}

func TestParseFault(t *testing.T) {
	for _, tc := range []struct {
		name       string
		in         *faultv3.HTTPFault
		want       *proxyconfig.Fault
		unenforced string
	}{
		{"delay and abort", &faultv3.HTTPFault{
			Delay: delay(2*time.Second, pct(50, typev3.FractionalPercent_HUNDRED)),
			Abort: abortHTTP(503, pct(1000, typev3.FractionalPercent_TEN_THOUSAND)),
		}, &proxyconfig.Fault{Delay: 2 * time.Second, DelayPerMillion: 500_000, AbortPerMillion: 100_000, AbortStatus: 503}, ""},
		{"gRPC abort, per million", &faultv3.HTTPFault{
			Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_GrpcStatus{GrpcStatus: 14}, Percentage: pct(1, typev3.FractionalPercent_MILLION)},
		}, &proxyconfig.Fault{AbortPerMillion: 1, AbortGRPC: true, AbortGRPCStatus: 14}, ""},
		{"no percentage is no request", &faultv3.HTTPFault{Abort: abortHTTP(500, nil)},
			&proxyconfig.Fault{AbortStatus: 500}, ""},
		{"more than all is all", &faultv3.HTTPFault{Abort: abortHTTP(500, pct(200, typev3.FractionalPercent_HUNDRED))},
			&proxyconfig.Fault{AbortStatus: 500, AbortPerMillion: 1_000_000}, ""},
		{"header delay", &faultv3.HTTPFault{Delay: &faultcommon.FaultDelay{FaultDelaySecifier: &faultcommon.FaultDelay_HeaderDelay_{HeaderDelay: &faultcommon.FaultDelay_HeaderDelay{}}}},
			&proxyconfig.Fault{}, `route "faulty": fault delay.header_delay`},
		{"header conditions", &faultv3.HTTPFault{Abort: abortHTTP(500, pct(100, typev3.FractionalPercent_HUNDRED)), UpstreamCluster: "c"},
			&proxyconfig.Fault{AbortStatus: 500, AbortPerMillion: 1_000_000}, `route "faulty": fault upstream_cluster, headers or downstream_nodes`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := proxyconfig.ParseRouteConfig(faultRoutes(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, rc.VirtualHosts[0].Routes[0].Fault); diff != "" {
				t.Errorf("Fault (-want +got):\n%s", diff)
			}
			got := strings.Join(rc.Unenforced, "\n")
			if tc.unenforced == "" && got != "" || !strings.Contains(got, tc.unenforced) {
				t.Errorf("Unenforced %q, want %q", got, tc.unenforced)
			}
		})
	}
}

func TestParseFaultErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   *faultv3.HTTPFault
		want string
	}{
		{"status below 200", &faultv3.HTTPFault{Abort: abortHTTP(100, nil)}, "abort.http_status 100 is not in [200, 600)"},
		{"status 600", &faultv3.HTTPFault{Abort: abortHTTP(600, nil)}, "abort.http_status 600"},
		{"abort without a status", &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{}}, "abort needs http_status or grpc_status"},
		{"zero delay", &faultv3.HTTPFault{Delay: delay(0, nil)}, "delay.fixed_delay must be more than 0"},
		{"delay without a kind", &faultv3.HTTPFault{Delay: &faultcommon.FaultDelay{}}, "delay needs fixed_delay"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := proxyconfig.ParseRouteConfig(faultRoutes(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `typed_per_filter_config "envoy.filters.http.fault"`) {
				t.Errorf("error %v, want one naming the field and %q", err, tc.want)
			}
		})
	}
}

// TestListenerFault: the HCM's fault filter turns route faults on, and
// its own config, when it injects something, applies to routes without
// theirs.
func TestListenerFault(t *testing.T) {
	hcm := func(filters ...*hcmv3.HttpFilter) *listenerv3.Listener {
		h := &hcmv3.HttpConnectionManager{StatPrefix: "in", RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: faultRoutes(&faultv3.HTTPFault{})},
			HttpFilters: append(filters, &hcmv3.HttpFilter{Name: "envoy.filters.http.router"})}
		return proxytest.Listener("l", "127.0.0.1:15006", proxytest.Chain{Port: 80, Filter: &listenerv3.Filter{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: proxytest.MustAny(h)}}})
	}
	faultFilter := func(f *faultv3.HTTPFault) *hcmv3.HttpFilter {
		return &hcmv3.HttpFilter{Name: "envoy.filters.http.fault", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: proxytest.MustAny(f)}}
	}
	for _, tc := range []struct {
		name       string
		l          *listenerv3.Listener
		wantFilter bool
		want       *proxyconfig.Fault
	}{
		{"no fault filter", hcm(), false, nil},
		{"empty fault filter (Istio's)", hcm(faultFilter(&faultv3.HTTPFault{})), true, nil},
		{"listener-wide abort", hcm(faultFilter(&faultv3.HTTPFault{Abort: abortHTTP(418, pct(100, typev3.FractionalPercent_HUNDRED))})), true,
			&proxyconfig.Fault{AbortStatus: 418, AbortPerMillion: 1_000_000}},
		// Disabled: only routes with their own config for it inject.
		{"disabled fault filter", hcm(func() *hcmv3.HttpFilter {
			f := faultFilter(&faultv3.HTTPFault{Abort: abortHTTP(418, pct(100, typev3.FractionalPercent_HUNDRED))})
			f.Disabled = true
			return f
		}()), true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := proxyconfig.ParseListener(tc.l)
			if err != nil {
				t.Fatal(err)
			}
			h := got.FilterChains[0].HTTP
			if h.FaultFilter != tc.wantFilter {
				t.Errorf("FaultFilter %v, want %v", h.FaultFilter, tc.wantFilter)
			}
			if diff := cmp.Diff(tc.want, h.Fault); diff != "" {
				t.Errorf("Fault (-want +got):\n%s", diff)
			}
			if len(got.Unenforced) > 0 {
				t.Errorf("Unenforced %q", got.Unenforced)
			}
		})
	}
}
