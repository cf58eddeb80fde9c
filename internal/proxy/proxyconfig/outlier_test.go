package proxyconfig_test

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/proxytest"
)

func TestParseOutlier(t *testing.T) {
	withOutlier := func(od *clusterv3.OutlierDetection) *clusterv3.Cluster {
		c := proxytest.EDSCluster("c", clusterv3.Cluster_ROUND_ROBIN)
		c.OutlierDetection = od
		return c
	}
	for _, tc := range []struct {
		name       string
		c          *clusterv3.Cluster
		want       *proxyconfig.Outlier
		unenforced string
	}{
		{"Envoy's defaults, success rate on", withOutlier(&clusterv3.OutlierDetection{}),
			&proxyconfig.Outlier{Consecutive5xx: 5, Enforcing5xx: 100, ConsecutiveGateway: 5, BaseEjection: 30 * time.Second,
				MaxEjection: 300 * time.Second, Interval: 10 * time.Second, MaxEjectionPercent: 10, PanicPercent: 50},
			`cluster "c": outlier_detection success rate detection`},
		{"as Istio translates it", func() *clusterv3.Cluster {
			c := withOutlier(&clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(2), EnforcingSuccessRate: wrapperspb.UInt32(0),
				Interval: durationpb.New(time.Second), BaseEjectionTime: durationpb.New(time.Minute), MaxEjectionPercent: wrapperspb.UInt32(100)})
			c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: 0}}
			return c
		}(), &proxyconfig.Outlier{Consecutive5xx: 2, Enforcing5xx: 100, ConsecutiveGateway: 5, BaseEjection: time.Minute,
			MaxEjection: 300 * time.Second, Interval: time.Second, MaxEjectionPercent: 100, PanicPercent: 0}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := proxyconfig.ParseCluster(tc.c)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got.Outlier); diff != "" {
				t.Errorf("Outlier (-want +got):\n%s", diff)
			}
			u := strings.Join(got.Unenforced, "\n")
			if tc.unenforced == "" && u != "" || !strings.Contains(u, tc.unenforced) {
				t.Errorf("Unenforced %q, want %q", u, tc.unenforced)
			}
		})
	}
	if _, err := proxyconfig.ParseCluster(withOutlier(&clusterv3.OutlierDetection{MaxEjectionPercent: wrapperspb.UInt32(101)})); err == nil ||
		!strings.Contains(err.Error(), `cluster "c": outlier_detection`) {
		t.Errorf("max_ejection_percent 101: %v", err)
	}
}
