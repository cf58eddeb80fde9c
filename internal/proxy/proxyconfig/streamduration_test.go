package proxyconfig_test

import (
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/durationpb"

	"weft.dev/weft/internal/proxy/proxyconfig"
)

// A route's max_stream_duration is parsed into the fields the data path
// enforces, and listed as not enforced no more; a negative duration is
// refused with the field named.
func TestParseMaxStreamDuration(t *testing.T) {
	d := durationpb.New
	for _, tc := range []struct {
		name    string
		msd     *routev3.RouteAction_MaxStreamDuration
		want    proxyconfig.RouteAction // the stream fields only
		bounds  bool                    // StreamTimeouts
		wantErr string
	}{
		{name: "none"},
		{name: "empty", msd: &routev3.RouteAction_MaxStreamDuration{}},
		{name: "as Weft translates a VirtualService timeout",
			msd:  &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: d(3 * time.Second), GrpcTimeoutHeaderMax: d(3 * time.Second)},
			want: proxyconfig.RouteAction{MaxStreamDuration: 3 * time.Second, GRPCTimeoutHeader: true, GRPCTimeoutHeaderMax: 3 * time.Second}, bounds: true},
		{name: "header max 0: the header uncapped",
			msd:  &routev3.RouteAction_MaxStreamDuration{GrpcTimeoutHeaderMax: d(0), GrpcTimeoutHeaderOffset: d(time.Second)},
			want: proxyconfig.RouteAction{GRPCTimeoutHeader: true, GRPCTimeoutHeaderOffset: time.Second}, bounds: true},
		{name: "zero: no bound", msd: &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: d(0)}},
		{name: "negative", msd: &routev3.RouteAction_MaxStreamDuration{GrpcTimeoutHeaderOffset: d(-time.Second)},
			wantErr: `max_stream_duration: grpc_timeout_header_offset -1s is negative`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{{
				Name:  "timed",
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier:  &routev3.RouteAction_Cluster{Cluster: "c"},
					MaxStreamDuration: tc.msd,
				}},
			}}}}}
			got, err := proxyconfig.ParseRouteConfig(rc)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			a := got.VirtualHosts[0].Routes[0].Action
			gotStream := proxyconfig.RouteAction{MaxStreamDuration: a.MaxStreamDuration, GRPCTimeoutHeader: a.GRPCTimeoutHeader,
				GRPCTimeoutHeaderMax: a.GRPCTimeoutHeaderMax, GRPCTimeoutHeaderOffset: a.GRPCTimeoutHeaderOffset}
			if diff := cmp.Diff(tc.want, gotStream); diff != "" {
				t.Errorf("stream fields (-want +got):\n%s", diff)
			}
			if a.StreamTimeouts() != tc.bounds {
				t.Errorf("StreamTimeouts() = %v, want %v", a.StreamTimeouts(), tc.bounds)
			}
			if len(got.Unenforced) != 0 {
				t.Errorf("Unenforced = %q, want none", got.Unenforced)
			}
		})
	}
}
