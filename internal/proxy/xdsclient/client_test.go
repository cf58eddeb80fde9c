package xdsclient_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/proxy/xdsclient"
)

// TestSubscriptionsAndNACK checks RDS/EDS follow the listeners and
// clusters, that a bad cluster is NACKed while its last good version stays,
// and that Run leaves no goroutine behind.
func TestSubscriptionsAndNACK(t *testing.T) {
	cp := proxytest.StartControlPlane(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	current, stop := runClient(cp.Addr)

	cp.Set(t, "n1",
		proxytest.Listener("virtualOutbound", "127.0.0.1:0", proxytest.Chain{Port: 80, Filter: proxytest.HCMRDS("80")}),
		proxytest.RouteConfig("80", proxytest.VirtualHost("v", []string{"*"}, proxytest.PrefixRoute("/", "a"))),
		proxytest.EDSCluster("a", clusterv3.Cluster_ROUND_ROBIN), proxytest.CLA("a", "127.0.0.1:1"),
	)
	proxytest.Eventually(t, 10*time.Second, "complete config", func() bool { r := current(); return r != nil && r.Complete() })

	bad := proxytest.EDSCluster("a", clusterv3.Cluster_CLUSTER_PROVIDED)
	cp.Set(t, "n1",
		proxytest.Listener("virtualOutbound", "127.0.0.1:0", proxytest.Chain{Port: 80, Filter: proxytest.HCMRDS("80")}),
		proxytest.RouteConfig("80", proxytest.VirtualHost("v", []string{"*"}, proxytest.PrefixRoute("/", "a"))),
		bad, proxytest.CLA("a", "127.0.0.1:1"),
	)
	proxytest.Eventually(t, 10*time.Second, "NACK", func() bool { return current().Errors[xdsclient.ClusterType] != "" })
	r := current()
	if !strings.Contains(r.Errors[xdsclient.ClusterType], `cluster "a": lb_policy CLUSTER_PROVIDED`) {
		t.Errorf("NACK reason %q", r.Errors[xdsclient.ClusterType])
	}
	if got := r.Clusters["a"]; got == nil || got.LB.String() != "ROUND_ROBIN" {
		t.Errorf("cluster a after NACK = %+v, want the last good version", got)
	}
	// Version 2 is ACKed for every type but clusters, which stay at 1.
	want := map[string]string{xdsclient.ListenerType: "2", xdsclient.ClusterType: "1", xdsclient.RouteType: "2", xdsclient.EndpointType: "2"}
	deadline := time.Now().Add(10 * time.Second)
	for cmp.Diff(want, current().Versions) != "" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if diff := cmp.Diff(want, current().Versions); diff != "" {
		t.Errorf("versions (-want +got):\n%s", diff)
	}
	stop()
}

// runClient runs a client of node n1 against the ADS server at addr (for
// at most 20 s) and returns the resources of its last update, nil before
// the first, and what stops it.
func runClient(addr string) (current func() *xdsclient.Resources, stop func()) {
	var mu sync.Mutex
	var last *xdsclient.Resources
	c := xdsclient.New(xdsclient.Options{
		Addr: addr, Node: &corev3.Node{Id: "n1"},
		OnUpdate: func(r *xdsclient.Resources) error { mu.Lock(); last = r; mu.Unlock(); return nil },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	return func() *xdsclient.Resources { mu.Lock(); defer mu.Unlock(); return last }, func() { cancel(); <-done }
}

// TestUnchangedResourcesAreNotDecodedAgain: a state-of-the-world response
// that repeats resources byte for byte keeps their parsed forms (the same
// objects), and decodes the ones that changed; a resource that changes
// back is decoded again.
func TestUnchangedResourcesAreNotDecodedAgain(t *testing.T) {
	cp := proxytest.StartControlPlane(t)
	current, stop := runClient(cp.Addr)
	defer stop()
	set := func(bLB clusterv3.Cluster_LbPolicy) {
		cp.Set(t, "n1",
			proxytest.Listener("virtualOutbound", "127.0.0.1:0", proxytest.Chain{Port: 80, Filter: proxytest.HCMRDS("80")}),
			proxytest.RouteConfig("80", proxytest.VirtualHost("v", []string{"*"}, proxytest.PrefixRoute("/", "a"))),
			proxytest.EDSCluster("a", clusterv3.Cluster_ROUND_ROBIN), proxytest.CLA("a", "127.0.0.1:1"),
			proxytest.EDSCluster("b", bLB), proxytest.CLA("b", "127.0.0.1:2"),
		)
	}
	lbOf := func(name string) string {
		if cl := current().Clusters[name]; cl != nil {
			return cl.LB.String()
		}
		return ""
	}
	set(clusterv3.Cluster_ROUND_ROBIN)
	proxytest.Eventually(t, 10*time.Second, "complete config", func() bool { r := current(); return r != nil && r.Complete() && lbOf("b") == "ROUND_ROBIN" })
	first := current().Clusters

	set(clusterv3.Cluster_LEAST_REQUEST)
	proxytest.Eventually(t, 10*time.Second, "cluster b changed", func() bool { return lbOf("b") == "LEAST_REQUEST" })
	second := current().Clusters
	if second["a"] != first["a"] {
		t.Errorf("cluster a, unchanged, was decoded again")
	}
	if second["b"] == first["b"] {
		t.Errorf("cluster b, changed, kept its old parsed form")
	}

	set(clusterv3.Cluster_ROUND_ROBIN)
	proxytest.Eventually(t, 10*time.Second, "cluster b changed back", func() bool { return lbOf("b") == "ROUND_ROBIN" })
	if third := current().Clusters; third["a"] != first["a"] || third["b"] == second["b"] {
		t.Errorf("after b changed back: a kept %v, b new %v; want a kept and b decoded", third["a"] == first["a"], third["b"] != second["b"])
	}
}

// TestReuseAcrossNACK: a cluster refused (NACKed) keeps its last good
// version; the good bytes sent again are that version, not decoded again,
// and the bad bytes sent again are decoded and refused again.
func TestReuseAcrossNACK(t *testing.T) {
	cp := proxytest.StartControlPlane(t)
	current, stop := runClient(cp.Addr)
	defer stop()
	set := func(lb clusterv3.Cluster_LbPolicy, addr string) {
		cp.Set(t, "n1",
			proxytest.Listener("virtualOutbound", "127.0.0.1:0", proxytest.Chain{Port: 80, Filter: proxytest.HCMRDS("80")}),
			proxytest.RouteConfig("80", proxytest.VirtualHost("v", []string{"*"}, proxytest.PrefixRoute("/", "a"))),
			proxytest.EDSCluster("a", lb), proxytest.CLA("a", addr),
		)
	}
	nacked := func() bool { return current().Errors[xdsclient.ClusterType] != "" }
	set(clusterv3.Cluster_ROUND_ROBIN, "127.0.0.1:1")
	proxytest.Eventually(t, 10*time.Second, "complete config", func() bool { r := current(); return r != nil && r.Complete() })
	good := current().Clusters["a"]

	set(clusterv3.Cluster_CLUSTER_PROVIDED, "127.0.0.1:2")
	proxytest.Eventually(t, 10*time.Second, "NACK", nacked)
	if current().Clusters["a"] != good {
		t.Fatalf("cluster a after a NACK is not its last good version")
	}

	// The good bytes again (the endpoints change, so that the update is
	// seen): accepted, and the same parsed cluster.
	set(clusterv3.Cluster_ROUND_ROBIN, "127.0.0.1:3")
	proxytest.Eventually(t, 10*time.Second, "the good cluster accepted again", func() bool { return !nacked() })
	if current().Clusters["a"] != good {
		t.Errorf("cluster a, the bytes of its version in force, was decoded again")
	}

	set(clusterv3.Cluster_CLUSTER_PROVIDED, "127.0.0.1:4")
	proxytest.Eventually(t, 10*time.Second, "the bad cluster refused again", nacked)
	if got := current().Errors[xdsclient.ClusterType]; !strings.Contains(got, "CLUSTER_PROVIDED") {
		t.Errorf("NACK reason %q", got)
	}
}

// TestRouteChangeDecodesOnlyChangedVirtualHosts: a route configuration
// sent again with one virtual host changed keeps the parsed form of the
// others (the same objects) and decodes the changed one; a bad virtual
// host is refused (NACKed), the last good route configuration staying.
func TestRouteChangeDecodesOnlyChangedVirtualHosts(t *testing.T) {
	cp := proxytest.StartControlPlane(t)
	current, stop := runClient(cp.Addr)
	defer stop()
	set := func(bCluster string, bDomains ...string) {
		cp.Set(t, "n1",
			proxytest.Listener("virtualOutbound", "127.0.0.1:0", proxytest.Chain{Port: 80, Filter: proxytest.HCMRDS("80")}),
			proxytest.RouteConfig("80",
				proxytest.VirtualHost("a", []string{"a.example.com"}, proxytest.PrefixRoute("/", "a")),
				proxytest.VirtualHost("b", bDomains, proxytest.PrefixRoute("/", bCluster))),
			proxytest.EDSCluster("a", clusterv3.Cluster_ROUND_ROBIN), proxytest.CLA("a", "127.0.0.1:1"),
			proxytest.EDSCluster("b", clusterv3.Cluster_ROUND_ROBIN), proxytest.CLA("b", "127.0.0.1:2"),
			proxytest.EDSCluster("c", clusterv3.Cluster_ROUND_ROBIN), proxytest.CLA("c", "127.0.0.1:3"),
		)
	}
	clusterOfB := func() string {
		rc := current().Routes["80"]
		if rc == nil || len(rc.VirtualHosts) != 2 {
			return ""
		}
		return rc.VirtualHosts[1].Routes[0].Action.Cluster
	}
	set("b", "b.example.com")
	proxytest.Eventually(t, 10*time.Second, "complete config", func() bool { r := current(); return r != nil && r.Complete() && clusterOfB() == "b" })
	first := current().Routes["80"]

	set("c", "b.example.com")
	proxytest.Eventually(t, 10*time.Second, "virtual host b changed", func() bool { return clusterOfB() == "c" })
	second := current().Routes["80"]
	if second.VirtualHosts[0] != first.VirtualHosts[0] {
		t.Errorf("virtual host a, unchanged, was decoded again")
	}
	if second.VirtualHosts[1] == first.VirtualHosts[1] {
		t.Errorf("virtual host b, changed, kept its old parsed form")
	}

	set("b") // no domains: refused
	proxytest.Eventually(t, 10*time.Second, "NACK", func() bool { return current().Errors[xdsclient.RouteType] != "" })
	if got := current().Errors[xdsclient.RouteType]; !strings.Contains(got, `route configuration "80": virtual_hosts[1] "b": domains is empty`) {
		t.Errorf("NACK reason %q", got)
	}
	if current().Routes["80"] != second {
		t.Errorf("the route configuration after a NACK is not its last good version")
	}
}
