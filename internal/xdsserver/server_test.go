package xdsserver

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/xdsmeta"
)

func meshSnapshot(reviewsPort uint32) *model.Snapshot {
	return &model.Snapshot{
		Services: map[string]*model.Service{
			"reviews.default.svc.cluster.local": {
				Hostname: "reviews.default.svc.cluster.local", Namespace: "default",
				Ports:     []model.Port{{Name: "http", Number: 9080, Protocol: model.ProtocolHTTP}},
				Endpoints: []*model.Endpoint{{Address: "127.0.0.1", Ports: map[string]uint32{"http": reviewsPort}, Labels: map[string]string{"version": "v1"}}},
			},
		},
		Instances: map[string]*model.Instance{
			"productpage-0.default": {Name: "productpage-0", Namespace: "default", Address: "127.0.0.1", OutboundPort: 30001,
				Ports: []model.InstancePort{{Name: "http", Number: 9080, Protocol: model.ProtocolHTTP, AppPort: 30002, InboundPort: 30003}}},
		},
	}
}

// startServer serves s on a loopback port and returns its address.
func startServer(t *testing.T, s *Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(lis) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return lis.Addr().String()
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func sidecarNode() *core.Node {
	return &core.Node{
		Id: xdsmeta.NodeID("sidecar", "127.0.0.1", "productpage-0", "default"),
		Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			xdsmeta.MetaProxyType: structpb.NewStringValue(xdsmeta.ProxyTypeSidecar),
		}},
	}
}

// waitFor polls cond until it holds or the context ends.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func statusOf(s *Server, id, typ string) TypeStatus {
	for _, ps := range s.Status() {
		if ps.ID != id {
			continue
		}
		for _, ts := range ps.Types {
			if ts.Type == typ {
				return ts
			}
		}
	}
	return TypeStatus{}
}

func TestADSIntegration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reg := prometheus.NewRegistry()
	s := New(ctx, Options{Logger: testLogger(t), Registry: reg})
	if err := s.Update(meshSnapshot(20001)); err != nil {
		t.Fatal(err)
	}
	addr := startServer(t, s)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := sidecarNode()
	versions := map[string]*discovery.DiscoveryResponse{}
	request := func(typ string, names []string) *discovery.DiscoveryResponse {
		t.Helper()
		if err := stream.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: typ, ResourceNames: names}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetTypeUrl() != typ {
			t.Fatalf("got %s, want %s", resp.GetTypeUrl(), typ)
		}
		versions[typ] = resp
		// ACK
		if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: typ, ResourceNames: names, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	cds := request(resource.ClusterType, nil)
	if len(cds.GetResources()) != 3 { // PassthroughCluster, inbound|9080|| and outbound|9080||reviews
		t.Errorf("CDS: got %d clusters, want 3", len(cds.GetResources()))
	}
	eds := request(resource.EndpointType, []string{"outbound|9080||reviews.default.svc.cluster.local"})
	if len(eds.GetResources()) != 1 {
		t.Fatalf("EDS: got %d resources, want 1", len(eds.GetResources()))
	}
	lds := request(resource.ListenerType, nil)
	if len(lds.GetResources()) != 2 {
		t.Errorf("LDS: got %d listeners, want 2", len(lds.GetResources()))
	}
	request(resource.RouteType, []string{"9080"})

	id := node.GetId()
	waitFor(ctx, t, "all types SYNCED", func() bool {
		for _, typ := range []string{"LDS", "RDS", "CDS", "EDS"} {
			if statusOf(s, id, typ).State != StateSynced {
				return false
			}
		}
		return true
	})
	if _, err := s.ConfigDump(id); err != nil {
		t.Errorf("ConfigDump: %v", err)
	}

	// An endpoint-only change reaches the client as EDS alone.
	if err := s.Update(meshSnapshot(20002)); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetTypeUrl() != resource.EndpointType {
		t.Fatalf("after an endpoint change got %s, want only EDS", resp.GetTypeUrl())
	}
	cla := &endpoint.ClusterLoadAssignment{}
	if err := resp.GetResources()[0].UnmarshalTo(cla); err != nil {
		t.Fatal(err)
	}
	if got := cla.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue(); got != 20002 {
		t.Errorf("endpoint port = %d, want 20002", got)
	}
	waitFor(ctx, t, "EDS STALE before ACK", func() bool { return statusOf(s, id, "EDS").State == StateStale })
	if statusOf(s, id, "CDS").State != StateSynced {
		t.Errorf("CDS not SYNCED after an endpoint-only change: %+v", statusOf(s, id, "CDS"))
	}

	// NACK it.
	if err := stream.Send(&discovery.DiscoveryRequest{
		TypeUrl: resource.EndpointType, ResourceNames: []string{"outbound|9080||reviews.default.svc.cluster.local"},
		VersionInfo: eds.GetVersionInfo(), ResponseNonce: resp.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: "endpoint port 20002 is cursed"},
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "EDS NACKED", func() bool { return statusOf(s, id, "EDS").State == StateNacked })
	if got := statusOf(s, id, "EDS").Error; got != "endpoint port 20002 is cursed" {
		t.Errorf("NACK reason = %q", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, mf := range mfs {
		found[mf.GetName()] = true
		if mf.GetName() == "weft_xds_nacks_total" && mf.GetMetric()[0].GetCounter().GetValue() != 1 {
			t.Errorf("weft_xds_nacks_total = %v, want 1", mf.GetMetric()[0].GetCounter().GetValue())
		}
	}
	for _, name := range []string{"weft_xds_connected_proxies", "weft_xds_pushes_total", "weft_xds_push_duration_seconds", "weft_xds_convergence_seconds", "weft_xds_nacks_total"} {
		if !found[name] {
			t.Errorf("metric %s missing", name)
		}
	}

	// Closing the stream forgets the proxy.
	_ = stream.CloseSend()
	cancelStream := conn.Close
	_ = cancelStream()
	waitFor(ctx, t, "proxy gone from Status", func() bool { return len(s.Status()) == 0 })
}

func TestDeltaADS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := New(ctx, Options{Logger: testLogger(t)})
	if err := s.Update(meshSnapshot(20001)); err != nil {
		t.Fatal(err)
	}
	addr := startServer(t, s)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := sidecarNode()
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.ClusterType, ResourceNamesSubscribe: []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetResources()) != 3 { // PassthroughCluster, inbound|9080|| and outbound|9080||reviews
		t.Errorf("delta CDS: got %d clusters, want 3", len(resp.GetResources()))
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "delta CDS SYNCED", func() bool { return statusOf(s, node.GetId(), "CDS").State == StateSynced })
}

func TestConfigDumpUnknown(t *testing.T) {
	s := New(context.Background(), Options{})
	defer s.Stop()
	if _, err := s.ConfigDump("nobody"); err == nil {
		t.Fatal("ConfigDump of an unknown proxy succeeded")
	}
}
