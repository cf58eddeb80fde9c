package xdstranslate

import (
	"fmt"
	"testing"

	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/model"
)

// localitySnapshot: service "zoned" with one endpoint in each of five
// localities, and a DestinationRule with outlier detection and the given
// load balancer settings.
func localitySnapshot(lb *networking.LoadBalancerSettings) *model.Snapshot {
	s := testSnapshot()
	var eps []*model.Endpoint
	for i, loc := range []string{"us-east/a/1", "us-east/a/2", "us-east/b", "us-west/c", "eu/d", ""} {
		eps = append(eps, &model.Endpoint{Address: fmt.Sprintf("10.0.0.%d", i+1), Locality: loc})
	}
	h := "zoned.default.svc.cluster.local"
	s.Services[h] = &model.Service{Hostname: h, Namespace: "default", Ports: []model.Port{{Name: "http", Number: 80, Protocol: model.ProtocolHTTP}}, Endpoints: eps}
	s.DestinationRules = append(s.DestinationRules, dr("zoned", "default", &networking.DestinationRule{Host: h, TrafficPolicy: &networking.TrafficPolicy{
		LoadBalancer:     lb,
		OutlierDetection: &networking.OutlierDetection{Consecutive_5XxErrors: wrapperspb.UInt32(3), BaseEjectionTime: durationpb.New(30e9)},
	}}))
	return s
}

// localityView translates s for a sidecar at loc and returns the EDS
// service name of the zoned cluster and its assignment's localities as
// "locality:priority:weight".
func localityView(t *testing.T, s *model.Snapshot, loc string) (string, []string) {
	t.Helper()
	p := sidecarProxy()
	p.Locality = loc
	res, err := Translate(s, p)
	if err != nil {
		t.Fatal(err)
	}
	var svc string
	for _, c := range res.Clusters {
		if c.GetName() == "outbound|80||zoned.default.svc.cluster.local" {
			svc = c.GetEdsClusterConfig().GetServiceName()
		}
	}
	var cla *endpoint.ClusterLoadAssignment
	for _, e := range res.Endpoints {
		if e.GetClusterName() == svc {
			cla = e
		}
	}
	if cla == nil {
		t.Fatalf("no assignment named %q among the proxy's endpoints", svc)
	}
	var got []string
	for _, le := range cla.GetEndpoints() {
		l := le.GetLocality()
		got = append(got, fmt.Sprintf("%s:%d:%d", LocalityString(l.GetRegion(), l.GetZone(), l.GetSubZone()), le.GetPriority(), le.GetLoadBalancingWeight().GetValue()))
	}
	return svc, got
}

func TestLocalityFailoverPriorities(t *testing.T) {
	const base = "outbound|80||zoned.default.svc.cluster.local"
	tests := []struct {
		name, loc string
		lb        *networking.LoadBalancerSettings
		wantName  string
		want      []string
	}{{
		name: "nearest first", loc: "us-east/a/1", wantName: base + "~us-east/a/1",
		want: []string{"us-east/a/1:0:1", "us-east/a/2:1:1", "us-east/b:2:1", ":3:1", "eu/d:3:1", "us-west/c:3:1"},
	}, {
		// No endpoint shares the proxy's subzone: the levels close up.
		name: "gaps close", loc: "us-east/b/9", wantName: base + "~us-east/b/9",
		want: []string{"us-east/b:0:1", "us-east/a/1:1:1", "us-east/a/2:1:1", ":2:1", "eu/d:2:1", "us-west/c:2:1"},
	}, {
		name: "failover region", loc: "us-east/a/1", wantName: base + "~us-east/a/1",
		lb: &networking.LoadBalancerSettings{LocalityLbSetting: &networking.LocalityLoadBalancerSetting{
			Failover: []*networking.LocalityLoadBalancerSetting_Failover{{From: "us-east", To: "eu"}, {From: "us-west", To: "us-east"}}}},
		want: []string{"us-east/a/1:0:1", "us-east/a/2:1:1", "us-east/b:2:1", "eu/d:3:1", ":4:1", "us-west/c:4:1"},
	}, {
		name: "distribute", loc: "us-east/a/1", wantName: base + "~us-east/a/1",
		lb: &networking.LoadBalancerSettings{LocalityLbSetting: &networking.LocalityLoadBalancerSetting{
			Distribute: []*networking.LocalityLoadBalancerSetting_Distribute{
				{From: "us-west/*", To: map[string]uint32{"us-west/*": 100}},
				{From: "us-east/*", To: map[string]uint32{"us-east/a/*": 80, "us-east/*": 10, "eu": 10}},
			}}},
		// us-east/a/* is more specific than us-east/* for a/1 and a/2,
		// which split its 80 %; us-west/c and the locality-less endpoint
		// are named by no entry.
		want: []string{"eu/d:0:10000", "us-east/a/1:0:40000", "us-east/a/2:0:40000", "us-east/b:0:10000"},
	}, {
		name: "disabled", loc: "us-east/a/1", wantName: base,
		lb:   &networking.LoadBalancerSettings{LocalityLbSetting: &networking.LocalityLoadBalancerSetting{Enabled: wrapperspb.Bool(false)}},
		want: []string{":0:1", "eu/d:0:1", "us-east/a/1:0:1", "us-east/a/2:0:1", "us-east/b:0:1", "us-west/c:0:1"},
	}, {
		name: "proxy without locality", loc: "", wantName: base,
		want: []string{":0:1", "eu/d:0:1", "us-east/a/1:0:1", "us-east/a/2:0:1", "us-east/b:0:1", "us-west/c:0:1"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name, got := localityView(t, localitySnapshot(tc.lb), tc.loc)
			if name != tc.wantName {
				t.Errorf("EDS service name %q; want %q", name, tc.wantName)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("localities (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLocalityNeedsOutlierDetection: without outlier detection nothing
// would move traffic to a lower priority, so the cluster is shared as it
// is (as in Istio); distribute applies without it.
func TestLocalityNeedsOutlierDetection(t *testing.T) {
	s := localitySnapshot(nil)
	s.DestinationRules[len(s.DestinationRules)-1].Spec.TrafficPolicy.OutlierDetection = nil
	tr := New(s)
	if tr.LocalityAware() {
		t.Fatal("a cluster without outlier detection or distribute is locality-aware")
	}
	name, _ := localityView(t, s, "us-east/a/1")
	if name != "outbound|80||zoned.default.svc.cluster.local" {
		t.Errorf("EDS service name %q; want the shared one", name)
	}
	s.DestinationRules[len(s.DestinationRules)-1].Spec.TrafficPolicy.LoadBalancer = &networking.LoadBalancerSettings{
		LocalityLbSetting: &networking.LocalityLoadBalancerSetting{Distribute: []*networking.LocalityLoadBalancerSetting_Distribute{{From: "*", To: map[string]uint32{"eu/*": 100}}}}}
	if _, got := localityView(t, s, "us-east/a/1"); !cmp.Equal(got, []string{"eu/d:0:100000"}) {
		t.Errorf("distribute without outlier detection: %v; want only eu/d", got)
	}
}

// TestLocalitySharedAcrossProxies: proxies at one locality share one
// variant; a proxy elsewhere gets its own, and the shared assignment is
// left as it was.
func TestLocalitySharedAcrossProxies(t *testing.T) {
	tr := New(localitySnapshot(nil))
	a, b := tr.LocalizedEndpoints("us-east/a/1"), tr.LocalizedEndpoints("us-east/a/1")
	if len(a) != 1 || a[0] != b[0] {
		t.Fatalf("two lookups of one locality gave %v and %v; want one shared assignment", a, b)
	}
	c := tr.LocalizedEndpoints("eu/d")
	if c[0].GetClusterName() != "outbound|80||zoned.default.svc.cluster.local~eu/d" || c[0].GetEndpoints()[0].GetLocality().GetRegion() != "eu" {
		t.Errorf("eu/d variant: %s with %v first", c[0].GetClusterName(), c[0].GetEndpoints()[0].GetLocality())
	}
	for _, cla := range tr.Shared().Endpoints {
		for _, le := range cla.GetEndpoints() {
			if le.GetPriority() != 0 {
				t.Fatalf("shared assignment %s was changed: priority %d", cla.GetClusterName(), le.GetPriority())
			}
		}
	}
}

// TestLocalityClustersHash: turning one cluster's locality balancing off
// (localityLbSetting.enabled: false) changes nothing in the cluster but
// its EDS service name, while another cluster stays locality-aware: the
// clusters' hash, the version the xDS server sends them under, changes
// with them.
func TestLocalityClustersHash(t *testing.T) {
	snap := func(enabled bool) *model.Snapshot {
		s := localitySnapshot(&networking.LoadBalancerSettings{LocalityLbSetting: &networking.LocalityLoadBalancerSetting{Enabled: wrapperspb.Bool(enabled)}})
		s.DestinationRules = append(s.DestinationRules, dr("ratings", "default", &networking.DestinationRule{Host: "ratings", TrafficPolicy: &networking.TrafficPolicy{
			OutlierDetection: &networking.OutlierDetection{Consecutive_5XxErrors: wrapperspb.UInt32(3)}}}))
		return s
	}
	p := sidecarProxy()
	p.Locality = "us-east/a/1"
	on, err := Translate(snap(true), p)
	if err != nil {
		t.Fatal(err)
	}
	off, err := Translate(snap(false), p)
	if err != nil {
		t.Fatal(err)
	}
	if cmp.Equal(on.Clusters, off.Clusters, protocmp.Transform()) {
		t.Fatal("the clusters are the same with the zoned cluster's locality balancing on and off")
	}
	if on.Hashes.Clusters == off.Hashes.Clusters {
		t.Errorf("clusters differ (zoned's EDS service name) but their hash %x is the same", on.Hashes.Clusters)
	}
}

// TestFailoverPriority: failoverPriority ranks endpoints by how many of
// its labels, in order, they share with the proxy (or have the value
// given): all of them first; endpoints of one locality may land at
// different priorities; proxies with other label values get their own
// variant.
func TestFailoverPriority(t *testing.T) {
	s := testSnapshot()
	h := "ranked.default.svc.cluster.local"
	ep := func(addr, loc, network string, labels map[string]string) *model.Endpoint {
		return &model.Endpoint{Address: addr, Locality: loc, Network: network, Labels: labels}
	}
	s.Services[h] = &model.Service{Hostname: h, Namespace: "default", Ports: []model.Port{{Name: "http", Number: 80, Protocol: model.ProtocolHTTP}}, Endpoints: []*model.Endpoint{
		ep("10.0.1.1", "us-east/a", "net1", map[string]string{"version": "v1"}), // network and version
		ep("10.0.1.2", "us-east/a", "net1", map[string]string{"version": "v2"}), // network only
		ep("10.0.1.3", "us-east/a", "net2", map[string]string{"version": "v1"}), // version only: no match (order)
		ep("10.0.1.4", "eu/b", "net1", map[string]string{"version": "v1"}),      // network and version
	}}
	s.DestinationRules = append(s.DestinationRules, dr("ranked", "default", &networking.DestinationRule{Host: h, TrafficPolicy: &networking.TrafficPolicy{
		LoadBalancer: &networking.LoadBalancerSettings{LocalityLbSetting: &networking.LocalityLoadBalancerSetting{
			FailoverPriority: []string{"topology.istio.io/network", "version"}}},
		OutlierDetection: &networking.OutlierDetection{Consecutive_5XxErrors: wrapperspb.UInt32(3)},
	}}))
	view := func(labels map[string]string) (string, []string) {
		t.Helper()
		p := sidecarProxy()
		p.Locality, p.Labels = "us-east/a", labels
		res, err := Translate(s, p)
		if err != nil {
			t.Fatal(err)
		}
		var svc string
		for _, c := range res.Clusters {
			if c.GetName() == "outbound|80||"+h {
				svc = c.GetEdsClusterConfig().GetServiceName()
			}
		}
		for _, e := range res.Endpoints {
			if e.GetClusterName() != svc {
				continue
			}
			var got []string
			for _, le := range e.GetEndpoints() {
				for _, lb := range le.GetLbEndpoints() {
					got = append(got, fmt.Sprintf("%s:%d", lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress(), le.GetPriority()))
				}
			}
			return svc, got
		}
		t.Fatalf("no assignment named %q", svc)
		return "", nil
	}
	name, got := view(map[string]string{"topology.istio.io/network": "net1", "version": "v1", "app": "web"})
	if want := "outbound|80||" + h + "~us-east/a;topology.istio.io/network=net1;version=v1"; name != want {
		t.Errorf("EDS service name %q; want %q", name, want)
	}
	if want := []string{"10.0.1.4:0", "10.0.1.1:0", "10.0.1.2:1", "10.0.1.3:2"}; !cmp.Equal(got, want) {
		t.Errorf("priorities for net1/v1: %v; want %v", got, want)
	}
	// Another version: only the network matches anywhere.
	if _, got := view(map[string]string{"topology.istio.io/network": "net1", "version": "v2"}); !cmp.Equal(got, []string{"10.0.1.2:0", "10.0.1.4:1", "10.0.1.1:1", "10.0.1.3:2"}) {
		t.Errorf("priorities for net1/v2: %v", got)
	}
	// "key=value" compares the endpoint with the value, whatever the proxy.
	s.DestinationRules[len(s.DestinationRules)-1].Spec.TrafficPolicy.LoadBalancer.LocalityLbSetting.FailoverPriority = []string{"topology.kubernetes.io/region=eu"}
	if _, got := view(nil); !cmp.Equal(got, []string{"10.0.1.4:0", "10.0.1.1:1", "10.0.1.2:1", "10.0.1.3:1"}) {
		t.Errorf("priorities with region=eu: %v", got)
	}
	// So for a proxy with no locality and no labels.
	p := sidecarProxy()
	tr := New(s)
	if k := tr.VariantKey(p); k != ";" || len(tr.LocalizedEndpoints(k)) != 1 || tr.LocalizedEndpoints(k)[0].GetEndpoints()[0].GetPriority() != 0 || len(tr.LocalizedEndpoints(k)[0].GetEndpoints()) != 2 {
		t.Errorf("a proxy without locality or labels: key %q, variants %v; want region=eu first", k, tr.LocalizedEndpoints(k))
	}
}

// TestVariantKeyEscapes: a proxy label value (or locality) holding the
// characters that separate a variant key's parts still ranks endpoints by
// its own value.
func TestVariantKeyEscapes(t *testing.T) {
	s := testSnapshot()
	h := "odd.default.svc.cluster.local"
	s.Services[h] = &model.Service{Hostname: h, Namespace: "default", Ports: []model.Port{{Name: "http", Number: 80, Protocol: model.ProtocolHTTP}}, Endpoints: []*model.Endpoint{
		{Address: "10.0.2.1", Labels: map[string]string{"track": "a"}},
		{Address: "10.0.2.2", Labels: map[string]string{"track": "a;b=c%3B"}},
	}}
	s.DestinationRules = append(s.DestinationRules, dr("odd", "default", &networking.DestinationRule{Host: h, TrafficPolicy: &networking.TrafficPolicy{
		LoadBalancer:     &networking.LoadBalancerSettings{LocalityLbSetting: &networking.LocalityLoadBalancerSetting{FailoverPriority: []string{"track"}}},
		OutlierDetection: &networking.OutlierDetection{Consecutive_5XxErrors: wrapperspb.UInt32(3)},
	}}))
	tr := New(s)
	for _, tc := range []struct{ name, loc, track, first string }{
		{"separators in the value", "us-east/a", "a;b=c%3B", "10.0.2.2"},
		{"plain value", "us-east/a", "a", "10.0.2.1"},
		{"separator in the locality", "us;track=a", "a;b=c%3B", "10.0.2.2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := sidecarProxy()
			p.Locality, p.Labels = tc.loc, map[string]string{"track": tc.track}
			k := tr.VariantKey(p)
			for _, cla := range tr.LocalizedEndpoints(k) {
				if cla.GetClusterName() != LocalityEDSName("outbound|80||"+h, k) {
					continue
				}
				le := cla.GetEndpoints()[0]
				if got := le.GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress(); le.GetPriority() != 0 || got != tc.first {
					t.Errorf("key %q: first %s at priority %d; want %s at 0", k, got, le.GetPriority(), tc.first)
				}
				return
			}
			t.Errorf("key %q: no variant of %s", k, h)
		})
	}
}
