package xdsclient

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"weft.dev/weft/internal/proxy/proxyconfig"
)

// benchCluster is an EDS cluster with a mesh cluster's usual settings
// (circuit breakers, outlier detection), for host.
func benchCluster(name, host string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		AltStatName:          host,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			ServiceName: name,
			EdsConfig:   &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
		},
		ConnectTimeout: durationpb.New(10e9),
		LbPolicy:       clusterv3.Cluster_LEAST_REQUEST,
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			MaxConnections: wrapperspb.UInt32(1024), MaxPendingRequests: wrapperspb.UInt32(1024),
			MaxRequests: wrapperspb.UInt32(1024), MaxRetries: wrapperspb.UInt32(3),
		}}},
		OutlierDetection: &clusterv3.OutlierDetection{
			Consecutive_5Xx: wrapperspb.UInt32(5), Interval: durationpb.New(10e9),
			BaseEjectionTime: durationpb.New(30e9), MaxEjectionPercent: wrapperspb.UInt32(10),
		},
	}
}

// BenchmarkDecodeClusters decodes a state-of-the-world CDS response of 100
// clusters: "all-new" with nothing held before (the first response), and
// "one-changed" with the 99 others held from the response before, as in
// a mesh where one service changed.
func BenchmarkDecodeClusters(b *testing.B) {
	anys := func(changed string) []*anypb.Any {
		var out []*anypb.Any
		for i := range 100 {
			host := fmt.Sprintf("svc-%d.ns.svc.cluster.local", i)
			if i == 0 {
				host = changed
			}
			c := benchCluster(fmt.Sprintf("outbound|80||svc-%d.ns.svc.cluster.local", i), host)
			a, err := anypb.New(c)
			if err != nil {
				b.Fatal(err)
			}
			out = append(out, a)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		prev bool
	}{{"all-new", false}, {"one-changed", true}} {
		b.Run(tc.name, func(b *testing.B) {
			ts := &typeState{url: ClusterType, parsed: map[string]any{}, raw: map[string][]byte{}}
			if tc.prev {
				ts.parsed, ts.raw, ts.sums, _ = decode(ClusterType, anys("a.example.com"), ts, &ts.packer)
			}
			resp := anys("b.example.com")
			b.ReportAllocs()
			for b.Loop() {
				if _, _, _, errs := decode(ClusterType, resp, ts, &ts.packer); len(errs) > 0 {
					b.Fatal(errs)
				}
				ts.packer.reset()
			}
		})
	}
}

// TestReusedResourcesStayReadable: resources of packMin bytes and more are kept
// compressed; one reused from the response before (its bytes unchanged)
// reads back as the wire form it was sent in, beside one decoded anew.
func TestReusedResourcesStayReadable(t *testing.T) {
	long := strings.Repeat("x", packMin) // over packMin: kept compressed
	big := func(name, host string) *anypb.Any {
		c := benchCluster(name, host+long)
		a, err := anypb.New(c)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	ts := &typeState{url: ClusterType, parsed: map[string]any{}, raw: map[string][]byte{}}
	first := []*anypb.Any{big("a", "a1"), big("b", "b1")}
	var errs map[string]error
	ts.parsed, ts.raw, ts.sums, errs = decode(ClusterType, first, ts, &ts.packer)
	ts.packer.reset()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	second := []*anypb.Any{first[0], big("b", "b2")}
	parsed, raw, _, errs := decode(ClusterType, second, ts, &ts.packer)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if parsed["a"] != ts.parsed["a"] || parsed["b"] == ts.parsed["b"] {
		t.Fatalf("a reused %v, b decoded anew %v; want both", parsed["a"] == ts.parsed["a"], parsed["b"] != ts.parsed["b"])
	}
	want := map[string][]byte{"a": second[0].GetValue(), "b": second[1].GetValue()}
	got := map[string][]byte{}
	if err := (&RawResources{dict: ts.packer.dict, m: raw}).Each(func(name string, b []byte) error {
		got[name] = bytes.Clone(b)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for name, w := range want {
		if !bytes.Equal(got[name], w) {
			t.Errorf("%s reads back as %d bytes, not the %d sent", name, len(got[name]), len(w))
		}
		if raw[name][0] != keptDeflated {
			t.Errorf("%s kept uncompressed; the test means to read a compressed one", name)
		}
	}
}

// A snapshot shares each type's map with the snapshot before when that
// type's resources did not change, and has a new one for the type that
// did.
func TestSnapshotsShareUnchangedTypes(t *testing.T) {
	c := New(Options{})
	c.types[ClusterType].parsed = map[string]any{"a": &proxyconfig.Cluster{Name: "a"}}
	c.types[RouteType].parsed = map[string]any{"80": &proxyconfig.RouteConfig{Name: "80"}}
	first := c.Snapshot()
	// A route response: its type's resources replaced, as handle does.
	rts := c.types[RouteType]
	rts.parsed, rts.view = map[string]any{"80": &proxyconfig.RouteConfig{Name: "80"}}, nil
	second := c.Snapshot()
	same := func(a, b any) bool { return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer() }
	if !same(first.Clusters, second.Clusters) || second.Clusters["a"] == nil {
		t.Errorf("clusters, unchanged: a new map (%v) or without a", !same(first.Clusters, second.Clusters))
	}
	if same(first.Routes, second.Routes) || second.Routes["80"] == first.Routes["80"] {
		t.Errorf("routes, changed: the old map or the old route configuration")
	}
}
