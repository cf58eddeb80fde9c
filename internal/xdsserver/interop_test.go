package xdsserver

import (
	"context"
	"fmt"
	"math"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/xds"
	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/model"
)

// versionServer answers UnaryCall with its version in server_id.
type versionServer struct {
	testgrpc.UnimplementedTestServiceServer
	version string
}

func (v *versionServer) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{ServerId: v.version}, nil
}

func startVersionServer(t *testing.T, version string) uint32 {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(g, &versionServer{version: version})
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return uint32(lis.Addr().(*net.TCPAddr).Port)
}

// reviewsGRPC is the registry of a gRPC service
// reviews.default.svc.cluster.local on port 9080 with the endpoints eps.
func reviewsGRPC(eps ...*model.Endpoint) map[string]*model.Service {
	h := "reviews.default.svc.cluster.local"
	return map[string]*model.Service{h: {
		Hostname: h, Namespace: "default",
		Ports:     []model.Port{{Name: "grpc", Number: 9080, Protocol: model.ProtocolGRPC}},
		Endpoints: eps,
	}}
}

// TestProxylessGRPCInterop points grpc-go's own xDS client at the server:
// an 80/20 split across subsets and a header match, dialed by FQDN and by
// short name.
func TestProxylessGRPCInterop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p1, p2 := startVersionServer(t, "v1"), startVersionServer(t, "v2")
	host := "reviews.default.svc.cluster.local"
	snap := &model.Snapshot{
		Services: reviewsGRPC(
			&model.Endpoint{Address: "127.0.0.1", Ports: map[string]uint32{"grpc": p1}, Labels: map[string]string{"app": "reviews", "version": "v1"}},
			&model.Endpoint{Address: "127.0.0.1", Ports: map[string]uint32{"grpc": p2}, Labels: map[string]string{"app": "reviews", "version": "v2"}},
		),
		DestinationRules: []*model.DestinationRule{{Meta: model.Meta{Kind: "DestinationRule", Namespace: "default", Name: "reviews"}, Spec: &networking.DestinationRule{
			Host: host,
			Subsets: []*networking.Subset{
				{Name: "v1", Labels: map[string]string{"version": "v1"}},
				{Name: "v2", Labels: map[string]string{"version": "v2"}},
			},
		}}},
		VirtualServices: []*model.VirtualService{{Meta: model.Meta{Kind: "VirtualService", Namespace: "default", Name: "reviews"}, Spec: &networking.VirtualService{
			Hosts: []string{host},
			Http: []*networking.HTTPRoute{
				{
					Match: []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{"x-canary": {MatchType: &networking.StringMatch_Exact{Exact: "yes"}}}}},
					Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: host, Subset: "v2"}}},
				},
				{Route: []*networking.HTTPRouteDestination{
					{Destination: &networking.Destination{Host: host, Subset: "v1"}, Weight: 80},
					{Destination: &networking.Destination{Host: host, Subset: "v2"}, Weight: 20},
				},
					// gRPC's xDS client does not implement CORS: the
					// route's optional policy must be skipped, not refused.
					CorsPolicy: &networking.CorsPolicy{AllowOrigins: []*networking.StringMatch{{MatchType: &networking.StringMatch_Exact{Exact: "https://a.example"}}}}},
			},
		}}},
	}
	s := New(ctx, Options{Logger: testLogger(t)})
	if err := s.Update(snap); err != nil {
		t.Fatal(err)
	}
	addr := startServer(t, s)
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": "grpc-client-1", "metadata": {"NAMESPACE": "default"}}
	}`, addr)
	rb, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"xds:///" + host + ":9080", "xds:///reviews:9080"} {
		t.Run(target, func(t *testing.T) {
			conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			client := testgrpc.NewTestServiceClient(conn)
			call := func(ctx context.Context) string {
				t.Helper()
				cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
				defer ccancel()
				resp, err := client.UnaryCall(cctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
				if err != nil {
					t.Fatalf("UnaryCall: %v", err)
				}
				return resp.GetServerId()
			}
			const n = 1000
			counts := map[string]int{}
			for range n {
				counts[call(ctx)]++
			}
			t.Logf("split over %d calls: %v", n, counts)
			// 20% to v2, within 5 sigma of a binomial.
			sigma := math.Sqrt(n * 0.2 * 0.8)
			if got := float64(counts["v2"]); math.Abs(got-0.2*n) > 5*sigma || counts["v1"]+counts["v2"] != n {
				t.Errorf("split over %d calls: %v, want v2 ≈ %d ± %.0f", n, counts, n/5, 5*sigma)
			}
			canary := metadata.AppendToOutgoingContext(ctx, "x-canary", "yes")
			for i := range 100 {
				if v := call(canary); v != "v2" {
					t.Fatalf("call %d with x-canary: yes reached %s, want v2", i, v)
				}
			}
			// While the client is connected it shows up SYNCED.
			waitFor(ctx, t, "grpc client SYNCED", func() bool {
				for _, typ := range []string{"LDS", "RDS", "CDS", "EDS"} {
					if statusOf(s, "grpc-client-1", typ).State != StateSynced {
						return false
					}
				}
				return true
			})
		})
	}
}

// TestProxylessGRPCLocalityFailover: grpc-go's xDS client, with endpoints
// of a locality-aware service near it and far from it, calls only the
// near one; when that server stops, its priority fails and the client's
// calls go to the far one. Near is the client's zone (us-east/a) by
// default, or, with failoverPriority, the endpoints whose labels match
// the client's (node metadata LABELS).
func TestProxylessGRPCLocalityFailover(t *testing.T) {
	t.Run("by locality", func(t *testing.T) {
		proxylessFailover(t, nil, nil, `"locality": {"region": "us-east", "zone": "a"}`)
	})
	t.Run("by failoverPriority", func(t *testing.T) {
		proxylessFailover(t, []string{"rack"}, map[string]string{"rack": "r1"}, `"locality": {"region": "eu-west", "zone": "b"}, "metadata": {"NAMESPACE": "default", "LABELS": {"rack": "r1"}}`)
	})
}

// proxylessFailover runs TestProxylessGRPCLocalityFailover with a
// failoverPriority (nil: none), the near endpoint's labels, and the
// bootstrap node's fields besides its ID.
func proxylessFailover(t *testing.T, failoverPriority []string, nearLabels map[string]string, node string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	near := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(near, &versionServer{version: "near"})
	go func() { _ = near.Serve(lis) }()
	t.Cleanup(near.Stop)
	pNear, pFar := uint32(lis.Addr().(*net.TCPAddr).Port), startVersionServer(t, "far")
	host := "reviews.default.svc.cluster.local"
	snap := &model.Snapshot{
		Services: reviewsGRPC(
			&model.Endpoint{Address: "127.0.0.1", Ports: map[string]uint32{"grpc": pFar}, Locality: "eu-west/b", Labels: map[string]string{"rack": "r2"}},
			&model.Endpoint{Address: "127.0.0.1", Ports: map[string]uint32{"grpc": pNear}, Locality: "us-east/a", Labels: nearLabels},
		),
		DestinationRules: []*model.DestinationRule{{Meta: model.Meta{Kind: "DestinationRule", Namespace: "default", Name: "reviews"}, Spec: &networking.DestinationRule{
			Host: host, TrafficPolicy: &networking.TrafficPolicy{
				OutlierDetection: &networking.OutlierDetection{},
				LoadBalancer:     &networking.LoadBalancerSettings{LocalityLbSetting: &networking.LocalityLoadBalancerSetting{FailoverPriority: failoverPriority}},
			},
		}}},
	}
	s := New(ctx, Options{Logger: testLogger(t)})
	if err := s.Update(snap); err != nil {
		t.Fatal(err)
	}
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": "grpc-client-2", %s}
	}`, startServer(t, s), node)
	rb, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///"+host+":9080", grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)
	call := func() (string, error) {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		resp, err := client.UnaryCall(cctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		return resp.GetServerId(), err
	}
	for i := range 50 {
		if v, err := call(); err != nil || v != "near" {
			t.Fatalf("call %d: %q, %v; want the server in the client's zone", i, v, err)
		}
	}
	near.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, err := call()
		if err == nil && v == "far" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the near server stopped: %q, %v; want calls to fail over to the far one", v, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range 20 {
		if v, err := call(); err != nil || v != "far" {
			t.Fatalf("call %d after failover: %q, %v; want far", i, v, err)
		}
	}
}
