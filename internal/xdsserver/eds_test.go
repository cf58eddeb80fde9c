package xdsserver

import (
	"context"
	"slices"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/xdsmeta"
)

// twoServices is a mesh of reviews and ratings, in namespace default;
// ratings' endpoint listens on ratingsPort.
func twoServices(ratingsPort uint32, scoped bool) *model.Snapshot {
	svc := func(name string, port uint32) *model.Service {
		return &model.Service{
			Hostname: name + ".default.svc.cluster.local", Namespace: "default",
			Ports:     []model.Port{{Name: "http", Number: 9080, Protocol: model.ProtocolHTTP}},
			Endpoints: []*model.Endpoint{{Address: "127.0.0.1", Ports: map[string]uint32{"http": port}}},
		}
	}
	s := &model.Snapshot{Services: map[string]*model.Service{
		"reviews.default.svc.cluster.local": svc("reviews", 20001),
		"ratings.default.svc.cluster.local": svc("ratings", ratingsPort),
	}}
	if scoped {
		s.Sidecars = []*model.Sidecar{{Meta: model.Meta{Kind: "Sidecar", Namespace: "default", Name: "default"}, Spec: &networking.Sidecar{
			Egress: []*networking.IstioEgressListener{{Hosts: []string{"./reviews.default.svc.cluster.local"}}},
		}}}
	}
	return s
}

const (
	reviewsCLA = "outbound|9080||reviews.default.svc.cluster.local"
	ratingsCLA = "outbound|9080||ratings.default.svc.cluster.local"
)

func edsStream(ctx context.Context, t *testing.T, addr string) discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

func claNames(t *testing.T, resp *discovery.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, a := range resp.GetResources() {
		cla := &endpoint.ClusterLoadAssignment{}
		if err := a.UnmarshalTo(cla); err != nil {
			t.Fatal(err)
		}
		out = append(out, cla.GetClusterName())
	}
	slices.Sort(out)
	return out
}

// recvWithin returns a stream's next response, or nil when none comes
// within d (the receive goes on until the stream ends).
func recvWithin[R any](stream interface{ Recv() (R, error) }, d time.Duration) (R, bool) {
	got := make(chan R, 1)
	go func() {
		if r, err := stream.Recv(); err == nil {
			got <- r
		}
	}()
	select {
	case r := <-got:
		return r, true
	case <-time.After(d):
		var zero R
		return zero, false
	}
}

// TestEDSSendsOnlyChanged: an endpoint change sends the changed
// ClusterLoadAssignment alone, and the EDS status follows it.
func TestEDSSendsOnlyChanged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := New(ctx, Options{Logger: testLogger(t)})
	if err := s.Update(twoServices(20002, false)); err != nil {
		t.Fatal(err)
	}
	stream := edsStream(ctx, t, startServer(t, s))
	names := []string{ratingsCLA, reviewsCLA}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: sidecarNode(), TypeUrl: resource.EndpointType, ResourceNames: names}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := claNames(t, resp); !slices.Equal(got, names) {
		t.Fatalf("first EDS response: %v, want %v", got, names)
	}
	ack := func(resp *discovery.DiscoveryResponse) {
		t.Helper()
		if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: names, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	ack(resp)
	id := sidecarNode().GetId()
	waitFor(ctx, t, "EDS SYNCED", func() bool { return statusOf(s, id, "EDS").State == StateSynced })

	// A change elsewhere (no endpoint) leaves EDS alone and SYNCED.
	if err := s.Update(twoServices(20002, false)); err != nil {
		t.Fatal(err)
	}
	if st := statusOf(s, id, "EDS"); st.State != StateSynced {
		t.Errorf("EDS after a no-op update: %+v", st)
	}

	if err := s.Update(twoServices(20003, false)); err != nil {
		t.Fatal(err)
	}
	resp, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := claNames(t, resp); !slices.Equal(got, []string{ratingsCLA}) {
		t.Fatalf("after a ratings endpoint change: %v, want only %s", got, ratingsCLA)
	}
	if st := statusOf(s, id, "EDS"); st.State != StateStale || st.Latest != resp.GetVersionInfo() {
		t.Errorf("EDS before the ACK: %+v, want STALE at %s", st, resp.GetVersionInfo())
	}
	ack(resp)
	waitFor(ctx, t, "EDS SYNCED after the change", func() bool { return statusOf(s, id, "EDS").State == StateSynced })
}

// TestEDSScoped: a proxy limited by a Sidecar gets no endpoints outside
// its scope, even when it asks for them.
func TestEDSScoped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := New(ctx, Options{Logger: testLogger(t)})
	if err := s.Update(twoServices(20002, true)); err != nil {
		t.Fatal(err)
	}
	stream := edsStream(ctx, t, startServer(t, s))
	names := []string{ratingsCLA, reviewsCLA}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: sidecarNode(), TypeUrl: resource.EndpointType, ResourceNames: names}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := claNames(t, resp); !slices.Equal(got, []string{reviewsCLA}) {
		t.Fatalf("scoped proxy got %v, want only %s", got, reviewsCLA)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: names, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	// A change to ratings' endpoints is not sent to it.
	if err := s.Update(twoServices(20003, true)); err != nil {
		t.Fatal(err)
	}
	if r, ok := recvWithin(stream, 200*time.Millisecond); ok {
		t.Fatalf("scoped proxy got %v after an out-of-scope change", claNames(t, r))
	}
	id := sidecarNode().GetId()
	waitFor(ctx, t, "EDS SYNCED", func() bool { return statusOf(s, id, "EDS").State == StateSynced })
}

// TestEDSResubscribe: at an unchanged version, a stream gets the
// endpoints it adds to its subscription, nothing for those it drops, and
// a dropped one again when it subscribes to it again.
func TestEDSResubscribe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := New(ctx, Options{Logger: testLogger(t)})
	if err := s.Update(twoServices(20002, false)); err != nil {
		t.Fatal(err)
	}
	stream := edsStream(ctx, t, startServer(t, s))
	var last *discovery.DiscoveryResponse
	request := func(names ...string) {
		t.Helper()
		req := &discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: names, VersionInfo: last.GetVersionInfo(), ResponseNonce: last.GetNonce()}
		if last == nil {
			req.Node = sidecarNode()
		}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(want ...string) {
		t.Helper()
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if got := claNames(t, resp); !slices.Equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
		last = resp
	}
	request(reviewsCLA)
	expect(reviewsCLA)
	request(reviewsCLA) // ACK
	request(ratingsCLA, reviewsCLA)
	expect(ratingsCLA)
	request(ratingsCLA, reviewsCLA) // ACK
	request(ratingsCLA)             // drops reviews: nothing to send
	request(ratingsCLA, reviewsCLA) // reviews again
	expect(reviewsCLA)
}

// TestEDSLocality: a proxy with a locality, connecting after the last
// Update, gets a cluster naming its locality's variant of a
// locality-aware assignment, and that variant over EDS, with the nearest
// endpoints at priority 0; the variant follows endpoint changes.
func TestEDSLocality(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	snap := func(port uint32) *model.Snapshot {
		s := twoServices(port, false)
		r := s.Services["ratings.default.svc.cluster.local"]
		r.Endpoints = []*model.Endpoint{
			{Address: "127.0.0.1", Ports: map[string]uint32{"http": port}, Locality: "us-west/c"},
			{Address: "127.0.0.2", Ports: map[string]uint32{"http": port}, Locality: "us-east/a"},
		}
		s.DestinationRules = []*model.DestinationRule{{Meta: model.Meta{Kind: "DestinationRule", Namespace: "default", Name: "ratings"},
			Spec: &networking.DestinationRule{Host: "ratings.default.svc.cluster.local", TrafficPolicy: &networking.TrafficPolicy{
				OutlierDetection: &networking.OutlierDetection{}}}}}
		return s
	}
	s := New(ctx, Options{Logger: testLogger(t)})
	if err := s.Update(snap(20002)); err != nil {
		t.Fatal(err)
	}
	stream := edsStream(ctx, t, startServer(t, s))
	node := sidecarNode()
	node.Locality = &core.Locality{Region: "us-east", Zone: "a"}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	want := ratingsCLA + "~us-east/a"
	var edsName string
	for _, a := range resp.GetResources() {
		c := &cluster.Cluster{}
		if err := a.UnmarshalTo(c); err != nil {
			t.Fatal(err)
		}
		if c.GetName() == ratingsCLA {
			edsName = c.GetEdsClusterConfig().GetServiceName()
		}
	}
	if edsName != want {
		t.Fatalf("ratings' EDS service name %q; want %q", edsName, want)
	}
	first := func(port uint32) {
		t.Helper()
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if got := claNames(t, resp); !slices.Equal(got, []string{want}) {
			t.Fatalf("EDS sent %v; want %s", got, want)
		}
		cla := &endpoint.ClusterLoadAssignment{}
		if err := resp.GetResources()[0].UnmarshalTo(cla); err != nil {
			t.Fatal(err)
		}
		p0 := cla.GetEndpoints()[0]
		addr := p0.GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		if p0.GetPriority() != 0 || p0.GetLocality().GetRegion() != "us-east" || addr.GetAddress() != "127.0.0.2" || addr.GetPortValue() != port {
			t.Fatalf("first locality: priority %d, %v, %s:%d; want priority 0, us-east, 127.0.0.2:%d", p0.GetPriority(), p0.GetLocality(), addr.GetAddress(), addr.GetPortValue(), port)
		}
		if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: []string{want}, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: []string{want}}); err != nil {
		t.Fatal(err)
	}
	first(20002)
	if err := s.Update(snap(20003)); err != nil {
		t.Fatal(err)
	}
	first(20003)
}

// TestEDSLocalityScoped: proxies limited by the same Sidecar, one with a
// locality and one without, each get the endpoints their clusters name:
// the proxy at us-east/a its variant of the locality-aware reviews
// assignment, the other the shared one, whichever connects first.
func TestEDSLocalityScoped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	snap := twoServices(20002, false)
	snap.Sidecars = []*model.Sidecar{{Meta: model.Meta{Kind: "Sidecar", Namespace: "default", Name: "default"}, Spec: &networking.Sidecar{
		Egress: []*networking.IstioEgressListener{{Hosts: []string{"./*"}}},
	}}}
	// details, in another namespace, is out of the proxies' scope.
	snap.Services["details.other.svc.cluster.local"] = &model.Service{
		Hostname: "details.other.svc.cluster.local", Namespace: "other",
		Ports:     []model.Port{{Name: "http", Number: 9080, Protocol: model.ProtocolHTTP}},
		Endpoints: []*model.Endpoint{{Address: "127.0.0.3", Ports: map[string]uint32{"http": 20003}}},
	}
	// reviews is locality-aware; ratings, whose assignment sorts first,
	// is not.
	snap.Services["reviews.default.svc.cluster.local"].Endpoints[0].Locality = "us-east/a"
	snap.DestinationRules = []*model.DestinationRule{{Meta: model.Meta{Kind: "DestinationRule", Namespace: "default", Name: "reviews"},
		Spec: &networking.DestinationRule{Host: "reviews.default.svc.cluster.local", TrafficPolicy: &networking.TrafficPolicy{
			OutlierDetection: &networking.OutlierDetection{}}}}}
	s := New(ctx, Options{Logger: testLogger(t)})
	if err := s.Update(snap); err != nil {
		t.Fatal(err)
	}
	addr := startServer(t, s)
	plain := sidecarNode()
	zoned := sidecarNode()
	zoned.Id = xdsmeta.NodeID("sidecar", "127.0.0.2", "details-0", "default")
	zoned.Locality = &core.Locality{Region: "us-east", Zone: "a"}
	for _, tc := range []struct {
		node *core.Node
		want string
	}{
		{plain, reviewsCLA},
		{zoned, reviewsCLA + "~us-east/a"},
	} {
		stream := edsStream(ctx, t, addr)
		if err := stream.Send(&discovery.DiscoveryRequest{Node: tc.node, TypeUrl: resource.EndpointType, ResourceNames: []string{tc.want}}); err != nil {
			t.Fatal(err)
		}
		r, ok := recvWithin(stream, 2*time.Second)
		switch {
		case !ok:
			t.Errorf("%s got nothing for its subscription to %s", tc.node.GetId(), tc.want)
		case !slices.Equal(claNames(t, r), []string{tc.want}):
			t.Errorf("%s got %v, want %s", tc.node.GetId(), claNames(t, r), tc.want)
		}
	}
}

// TestEDSScopedFirstRequestOutOfScope: a proxy a Sidecar limits whose
// first EDS request names only endpoints outside its scope gets nothing,
// not every endpoint of the mesh (an empty subscription reads as a
// wildcard), over state-of-the-world and delta streams alike.
func TestEDSScopedFirstRequestOutOfScope(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := New(ctx, Options{Logger: testLogger(t)})
	if err := s.Update(twoServices(20002, true)); err != nil {
		t.Fatal(err)
	}
	wantNoEndpoints(ctx, t, startServer(t, s), []string{ratingsCLA}, "an out-of-scope subscription")
}

// TestEDSScopedToNothingWildcard: a proxy whose Sidecar allows no service
// of the mesh asks for every endpoint (a wildcard, as a first request
// without names is): it gets none, over state-of-the-world and delta
// streams alike.
func TestEDSScopedToNothingWildcard(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := New(ctx, Options{Logger: testLogger(t)})
	snap := twoServices(20002, true)
	snap.Sidecars[0].Spec.Egress[0].Hosts = []string{"./nothing.example.com"}
	if err := s.Update(snap); err != nil {
		t.Fatal(err)
	}
	wantNoEndpoints(ctx, t, startServer(t, s), nil, "a wildcard from a proxy scoped to nothing")
}

// wantNoEndpoints sends a sidecar's first EDS request for names (none: a
// wildcard) over a state-of-the-world and a delta stream, and fails when
// either answers with endpoints.
func wantNoEndpoints(ctx context.Context, t *testing.T, addr string, names []string, what string) {
	t.Helper()
	stream := edsStream(ctx, t, addr)
	if err := stream.Send(&discovery.DiscoveryRequest{Node: sidecarNode(), TypeUrl: resource.EndpointType, ResourceNames: names}); err != nil {
		t.Fatal(err)
	}
	if r, ok := recvWithin(stream, 300*time.Millisecond); ok && len(r.GetResources()) > 0 {
		t.Fatalf("state of the world: %s got %v; want nothing", what, claNames(t, r))
	}

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	delta, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := sidecarNode()
	node.Id = xdsmeta.NodeID("sidecar", "127.0.0.1", "productpage-1", "default")
	if err := delta.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.EndpointType, ResourceNamesSubscribe: names}); err != nil {
		t.Fatal(err)
	}
	if r, ok := recvWithin(delta, 300*time.Millisecond); ok && len(r.GetResources()) > 0 {
		t.Fatalf("delta: %s got %d resources; want nothing", what, len(r.GetResources()))
	}
}
