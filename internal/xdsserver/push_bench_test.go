package xdsserver

import (
	"context"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/xdsmeta"
	"weft.dev/weft/internal/xdstranslate"
)

var (
	pushProxies  = flag.Int("push.proxies", 2000, "simulated sidecars in BenchmarkPush")
	pushConns    = flag.Int("push.conns", 32, "gRPC connections the simulated sidecars share in BenchmarkPush")
	pushServices = flag.Int("push.services", 1000, "services (3 endpoints each) in BenchmarkPush's model")
)

// pushModel is a mesh of n HTTP services on one port with 3 endpoints
// each, all in namespace default.
func pushModel(n int, port uint32) *model.Snapshot {
	s := &model.Snapshot{Services: make(map[string]*model.Service, n)}
	for i := range n {
		host := model.FQDN(fmt.Sprintf("svc-%d", i), model.DefaultNamespace)
		svc := &model.Service{
			Hostname: host, Namespace: model.DefaultNamespace,
			Ports: []model.Port{{Name: "http", Number: port, Protocol: model.ProtocolHTTP}},
		}
		for j := range 3 {
			svc.Endpoints = append(svc.Endpoints, &model.Endpoint{
				Address: fmt.Sprintf("10.%d.%d.%d", i/250, i%250, j+1),
				Labels:  map[string]string{"app": fmt.Sprintf("svc-%d", i), "version": fmt.Sprintf("v%d", j)},
			})
		}
		s.Services[host] = svc
	}
	return s
}

// withExtraEndpoint returns a copy of snap in which svc-0 has one more
// endpoint; every other service is shared with snap.
func withExtraEndpoint(snap *model.Snapshot) *model.Snapshot {
	out := &model.Snapshot{Version: snap.Version + 1, Services: make(map[string]*model.Service, len(snap.Services))}
	for h, svc := range snap.Services {
		out.Services[h] = svc
	}
	host := model.FQDN("svc-0", model.DefaultNamespace)
	svc := *snap.Services[host]
	svc.Endpoints = append(slices.Clip(svc.Endpoints), &model.Endpoint{Address: "10.255.255.1", Labels: map[string]string{"app": "svc-0", "version": "v3"}})
	out.Services[host] = &svc
	return out
}

// Resource types in the order a pushClient keeps them.
const (
	tLDS = iota
	tRDS
	tCDS
	tEDS
	nTypes
)

var pushTypeURLs = [nTypes]string{resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType}

func typeIndex(url string) int {
	for i, u := range pushTypeURLs {
		if u == url {
			return i
		}
	}
	return -1
}

// pushTarget is what every client must have ACKed for a phase to end: per
// type, a version and a resource count. An empty version means the client
// need not have subscribed to the type.
type pushTarget struct {
	version [nTypes]string
	count   [nTypes]int
	// EDS is checked by content instead: endpoints are sent as they change,
	// so a client must hold these names (sorted) with these content hashes.
	edsNames  []string
	edsHashes []uint64
	start     time.Time
	// latency[i] is when client i reached the target, after start.
	latency []time.Duration
	wg      sync.WaitGroup
}

// expectTarget computes what a sidecar with node should end up with once
// the server has published snap, by translating it the way the server does.
func expectTarget(b *testing.B, snap *model.Snapshot, node *core.Node, clients int) *pushTarget {
	b.Helper()
	res, err := xdstranslate.Translate(snap, xdstranslate.ProxyFromNode(node, snap))
	if err != nil {
		b.Fatal(err)
	}
	t := &pushTarget{latency: make([]time.Duration, clients)}
	set := func(i int, n int, h uint64) {
		t.count[i] = n
		if n > 0 || i == tLDS || i == tCDS { // LDS and CDS are always subscribed
			t.version[i] = fmt.Sprintf("%016x", h)
		}
	}
	set(tLDS, len(res.Listeners), res.Hashes.Listeners)
	set(tRDS, len(res.Routes), res.Hashes.Routes)
	set(tCDS, len(res.Clusters), res.Hashes.Clusters)
	for _, cla := range res.Endpoints {
		enc, err := proto.MarshalOptions{Deterministic: true}.Marshal(cla)
		if err != nil {
			b.Fatal(err)
		}
		t.edsNames = append(t.edsNames, cla.GetClusterName())
		t.edsHashes = append(t.edsHashes, hashBytes(enc))
	}
	t.wg.Add(clients)
	return t
}

// pushClient is a light state-of-the-world ADS client standing in for one
// sidecar: it subscribes to all listeners and clusters, then to the routes
// and endpoints they name, and ACKs every response. It keeps names and
// versions only, never the resources.
type pushClient struct {
	idx    int
	node   *core.Node
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	target *atomic.Pointer[pushTarget]

	version [nTypes]string
	nonce   [nTypes]string
	count   [nTypes]int
	names   [nTypes][]string // subscribed names of RDS and EDS
	// edsHashes[i] is the content hash of the ClusterLoadAssignment
	// names[tEDS][i] last received (0: none): EDS responses carry only
	// changed resources, and the client merges them, as a sidecar does.
	edsHashes []uint64
	reached   *pushTarget // last target reached
	// bytes, if set, counts the encoded resources the client receives.
	bytes *atomic.Int64
}

func (c *pushClient) send(typ int, first bool) error {
	req := &discovery.DiscoveryRequest{
		TypeUrl:       pushTypeURLs[typ],
		VersionInfo:   c.version[typ],
		ResponseNonce: c.nonce[typ],
		ResourceNames: c.names[typ],
	}
	if first {
		req.Node = c.node
	}
	return c.stream.Send(req)
}

func (c *pushClient) run() error {
	if err := c.send(tLDS, true); err != nil {
		return err
	}
	if err := c.send(tCDS, false); err != nil {
		return err
	}
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			return err
		}
		typ := typeIndex(resp.GetTypeUrl())
		if typ < 0 {
			return fmt.Errorf("unexpected type %s", resp.GetTypeUrl())
		}
		c.version[typ], c.nonce[typ], c.count[typ] = resp.GetVersionInfo(), resp.GetNonce(), len(resp.GetResources())
		if c.bytes != nil {
			for _, a := range resp.GetResources() {
				c.bytes.Add(int64(len(a.GetValue())))
			}
		}
		if typ == tEDS {
			if err := c.mergeEDS(resp); err != nil {
				return err
			}
		}
		var sub int = -1
		var names []string
		switch typ {
		case tLDS:
			names, err = routeNames(resp)
			sub = tRDS
		case tCDS:
			names, err = edsNames(resp)
			sub = tEDS
		}
		if err != nil {
			return err
		}
		if err := c.send(typ, false); err != nil { // ACK
			return err
		}
		if sub >= 0 && !slices.Equal(names, c.names[sub]) && !(len(names) == 0 && c.version[sub] == "") {
			if sub == tEDS {
				c.edsHashes = carryHashes(c.names[sub], c.edsHashes, names)
			}
			c.names[sub] = names
			if err := c.send(sub, false); err != nil {
				return err
			}
		}
		c.check()
	}
}

// check records the time the client first matches the current target.
func (c *pushClient) check() {
	t := c.target.Load()
	if t == nil || t == c.reached {
		return
	}
	for i := range nTypes {
		if i != tEDS && t.version[i] != "" && (c.version[i] != t.version[i] || c.count[i] != t.count[i]) {
			return
		}
	}
	if len(t.edsNames) > 0 && (!slices.Equal(c.names[tEDS], t.edsNames) || !slices.Equal(c.edsHashes, t.edsHashes)) {
		return
	}
	t.latency[c.idx] = time.Since(t.start)
	c.reached = t
	t.wg.Done()
}

// mergeEDS records the content hashes of the ClusterLoadAssignments in
// resp that the client subscribes to.
func (c *pushClient) mergeEDS(resp *discovery.DiscoveryResponse) error {
	for _, a := range resp.GetResources() {
		name, err := claName(a.GetValue())
		if err != nil {
			return err
		}
		if i, ok := slices.BinarySearch(c.names[tEDS], name); ok {
			c.edsHashes[i] = hashBytes(a.GetValue())
		}
	}
	return nil
}

// carryHashes returns the hashes for newNames (sorted), keeping those of
// names in oldNames (sorted, with oldHashes).
func carryHashes(oldNames []string, oldHashes []uint64, newNames []string) []uint64 {
	out := make([]uint64, len(newNames))
	j := 0
	for i, n := range newNames {
		for j < len(oldNames) && oldNames[j] < n {
			j++
		}
		if j < len(oldNames) && oldNames[j] == n {
			out[i] = oldHashes[j]
		}
	}
	return out
}

// claName reads cluster_name (field 1) of an encoded ClusterLoadAssignment.
func claName(b []byte) (string, error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", protowire.ParseError(n)
			}
			return string(v), nil
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return "", protowire.ParseError(n)
		}
		b = b[n:]
	}
	return "", nil
}

func hashBytes(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// routeNames returns the RDS names the listeners of resp use, sorted.
func routeNames(resp *discovery.DiscoveryResponse) ([]string, error) {
	set := map[string]bool{}
	for _, a := range resp.GetResources() {
		l := &listener.Listener{}
		if err := a.UnmarshalTo(l); err != nil {
			return nil, err
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if f.GetName() != xdstranslate.HTTPConnectionManagerName {
					continue
				}
				m := &hcm.HttpConnectionManager{}
				if err := f.GetTypedConfig().UnmarshalTo(m); err != nil {
					return nil, err
				}
				if n := m.GetRds().GetRouteConfigName(); n != "" {
					set[n] = true
				}
			}
		}
	}
	return sortedSet(set), nil
}

// edsNames returns the EDS service names of the clusters in resp, sorted.
// It reads only the top-level fields it needs (name, type,
// eds_cluster_config.service_name) so that 2000 clients decoding 1000
// clusters each stay cheap.
func edsNames(resp *discovery.DiscoveryResponse) ([]string, error) {
	var out []string
	for _, a := range resp.GetResources() {
		var name, service string
		var eds bool
		b := a.GetValue()
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			b = b[n:]
			switch {
			case num == 1 && typ == protowire.BytesType:
				v, n := protowire.ConsumeBytes(b)
				if n < 0 {
					return nil, protowire.ParseError(n)
				}
				name, b = string(v), b[n:]
				continue
			case num == 2 && typ == protowire.VarintType:
				v, n := protowire.ConsumeVarint(b)
				if n < 0 {
					return nil, protowire.ParseError(n)
				}
				eds, b = v == uint64(cluster.Cluster_EDS), b[n:]
				continue
			case num == 3 && typ == protowire.BytesType:
				v, n := protowire.ConsumeBytes(b)
				if n < 0 {
					return nil, protowire.ParseError(n)
				}
				ec := &cluster.Cluster_EdsClusterConfig{}
				if err := proto.Unmarshal(v, ec); err != nil {
					return nil, err
				}
				service, b = ec.GetServiceName(), b[n:]
				continue
			}
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			b = b[n:]
		}
		if !eds {
			continue
		}
		if service == "" {
			service = name
		}
		out = append(out, service)
	}
	sort.Strings(out)
	return out, nil
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func pushNode(i int) *core.Node {
	name := fmt.Sprintf("app-%d", i)
	return &core.Node{
		Id: xdsmeta.NodeID("sidecar", fmt.Sprintf("10.200.%d.%d", i/250, i%250), name, model.DefaultNamespace),
		Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			xdsmeta.MetaProxyType: structpb.NewStringValue(xdsmeta.ProxyTypeSidecar),
			xdsmeta.MetaNamespace: structpb.NewStringValue(model.DefaultNamespace),
			xdsmeta.MetaName:      structpb.NewStringValue(name),
		}},
	}
}

// runPhase publishes snap and waits until every client has ACKed what it
// should get from it. It returns the time Update took and every client's
// latency, sorted.
func runPhase(ctx context.Context, b *testing.B, s *Server, cur *atomic.Pointer[pushTarget], snap *model.Snapshot, errc <-chan error, clients int) (update time.Duration, lat []time.Duration) {
	b.Helper()
	t := expectTarget(b, snap, pushNode(0), clients)
	t.start = time.Now()
	cur.Store(t)
	if err := s.Update(snap); err != nil {
		b.Fatal(err)
	}
	update = time.Since(t.start)
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
	case err := <-errc:
		b.Fatalf("client failed: %v", err)
	case <-ctx.Done():
		b.Fatalf("phase did not converge: %v", ctx.Err())
	}
	lat = slices.Clone(t.latency)
	slices.Sort(lat)
	return update, lat
}

func pct(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i]) / float64(time.Millisecond)
}

// BenchmarkPush starts the xDS server on a loopback port, connects
// -push.proxies light ADS clients (sidecars in namespace default, sharing
// -push.conns connections) while the model is empty, and then, per
// iteration:
//
//   - full: publishes a model of -push.services services with 3 endpoints
//     each (a new port every iteration, so every type changes), and waits
//     until every client has ACKed LDS, RDS, CDS and EDS;
//   - eds: adds one endpoint to one service and waits until every client has
//     received and ACKed the new EDS.
//
// Latencies run from just before Server.Update to the client's ACK. The
// metrics are over all iterations: conv-ms is the mean time for the last
// client to converge on a full push, conv-p50/p99-ms the per-client spread;
// eds-* the same for the endpoint change; update-ms (eds-update-ms) the mean
// time spent in Update (translation and publishing to every proxy) for the
// full push (the endpoint change);
// heap-MB the largest heap in use just after a full push converged;
// KB/proxy the encoded resources one proxy received in a full push;
// eds-KB/proxy those it received for the endpoint change.
func BenchmarkPush(b *testing.B) {
	nClients, nConns, nServices := *pushProxies, min(*pushConns, *pushProxies), *pushServices
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	s := New(ctx, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = s.Serve(lis) }()
	defer func() { s.Stop(); <-served }()

	conns := make([]*grpc.ClientConn, nConns)
	for i := range conns {
		conns[i], err = grpc.NewClient(lis.Addr().String(),
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
		if err != nil {
			b.Fatal(err)
		}
		defer conns[i].Close()
	}

	var cur atomic.Pointer[pushTarget]
	var client0Bytes atomic.Int64 // resources received by client 0
	errc := make(chan error, nClients)
	var clientsDone sync.WaitGroup
	defer clientsDone.Wait()
	cctx, stopClients := context.WithCancel(ctx)
	defer stopClients()

	// Connect every client to the empty model and wait for it to sync.
	t0 := expectTarget(b, &model.Snapshot{}, pushNode(0), nClients)
	t0.start = time.Now()
	cur.Store(t0)
	for i := range nClients {
		stream, err := discovery.NewAggregatedDiscoveryServiceClient(conns[i%nConns]).StreamAggregatedResources(cctx)
		if err != nil {
			b.Fatal(err)
		}
		c := &pushClient{idx: i, node: pushNode(i), stream: stream, target: &cur}
		if i == 0 {
			c.bytes = &client0Bytes
		}
		clientsDone.Add(1)
		go func() {
			defer clientsDone.Done()
			if err := c.run(); err != nil && cctx.Err() == nil {
				errc <- fmt.Errorf("client %d: %w", c.idx, err)
			}
		}()
	}
	waitCtx, waitCancel := context.WithTimeout(ctx, 2*time.Minute)
	connected := make(chan struct{})
	go func() { t0.wg.Wait(); close(connected) }()
	select {
	case <-connected:
	case err := <-errc:
		b.Fatal(err)
	case <-waitCtx.Done():
		b.Fatal("clients did not connect")
	}
	waitCancel()
	connectMs := float64(time.Since(t0.start)) / float64(time.Millisecond)

	var updates, convs, edss, edsUpdates []float64
	var convLat, edsLat []time.Duration
	var heapMB, fullKB, edsKB float64
	for i := 0; b.Loop(); i++ {
		phaseCtx, phaseCancel := context.WithTimeout(ctx, 2*time.Minute)
		full := pushModel(nServices, 8080+uint32(i))
		full.Version = uint64(2 * i)
		before := client0Bytes.Load()
		up, lat := runPhase(phaseCtx, b, s, &cur, full, errc, nClients)
		updates = append(updates, float64(up)/float64(time.Millisecond))
		convs = append(convs, pct(lat, 1))
		convLat = append(convLat, lat...)
		fullKB = float64(client0Bytes.Load()-before) / 1024

		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heapMB = max(heapMB, float64(ms.HeapInuse)/(1<<20))

		before = client0Bytes.Load()
		up, lat = runPhase(phaseCtx, b, s, &cur, withExtraEndpoint(full), errc, nClients)
		edsUpdates = append(edsUpdates, float64(up)/float64(time.Millisecond))
		edsKB = float64(client0Bytes.Load()-before) / 1024
		edss = append(edss, pct(lat, 1))
		edsLat = append(edsLat, lat...)
		phaseCancel()
	}
	stopClients()

	mean := func(xs []float64) float64 {
		var sum float64
		for _, x := range xs {
			sum += x
		}
		return sum / float64(max(len(xs), 1))
	}
	slices.Sort(convLat)
	slices.Sort(edsLat)
	b.ReportMetric(connectMs, "connect-ms")
	b.ReportMetric(mean(updates), "update-ms")
	b.ReportMetric(mean(convs), "conv-ms")
	b.ReportMetric(pct(convLat, 0.5), "conv-p50-ms")
	b.ReportMetric(pct(convLat, 0.99), "conv-p99-ms")
	b.ReportMetric(mean(edss), "eds-total-ms")
	b.ReportMetric(mean(edsUpdates), "eds-update-ms")
	b.ReportMetric(pct(edsLat, 0.5), "eds-p50-ms")
	b.ReportMetric(pct(edsLat, 0.99), "eds-p99-ms")
	b.ReportMetric(pct(edsLat, 1), "eds-max-ms")
	b.ReportMetric(heapMB, "heap-MB")
	b.ReportMetric(fullKB, "KB/proxy")
	b.ReportMetric(edsKB, "eds-KB/proxy")
}
