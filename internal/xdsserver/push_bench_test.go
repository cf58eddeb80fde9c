package xdsserver

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
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
	pushSettle   = flag.Bool("push.settle", true, "before an endpoint change, wait until the server has every proxy's ACK of the full push, and collect garbage")
	pushDelta    = flag.Bool("push.delta", false, "simulated sidecars use delta ADS instead of state-of-the-world")
	pushWindow   = flag.Int("push.window", 0, "HTTP/2 receive window of each simulated sidecar's stream, in bytes, and 16 times that for its connection (as a client's WithInitialWindowSize and WithInitialConnWindowSize); 0: gRPC's default (64 KiB, grown by BDP estimation)")
	pushProfile  = flag.String("push.cpuprofile", "", "write a CPU profile of each phase of BenchmarkPush to `prefix`-full-N.pprof and prefix-eds-N.pprof (N: iteration); instead of -cpuprofile")
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
	// digest is, per type, a digest of every resource's name and content
	// (see digestOf), for delta clients.
	digest [nTypes]uint64
	start  time.Time
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
	t.count[tEDS] = len(res.Endpoints)
	digest := func(typ int, name string, m proto.Message) uint64 {
		enc, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			b.Fatal(err)
		}
		h := hashBytes(enc)
		t.digest[typ] += digestOf(name, h)
		return h
	}
	for _, l := range res.Listeners {
		digest(tLDS, l.GetName(), l)
	}
	for _, r := range res.Routes {
		digest(tRDS, r.GetName(), r)
	}
	for _, c := range res.Clusters {
		digest(tCDS, c.GetName(), c)
	}
	for _, cla := range res.Endpoints {
		t.edsNames = append(t.edsNames, cla.GetClusterName())
		t.edsHashes = append(t.edsHashes, digest(tEDS, cla.GetClusterName(), cla))
	}
	t.wg.Add(clients)
	return t
}

// pushClient is a light state-of-the-world ADS client standing in for one
// sidecar: it subscribes to all listeners and clusters, then to the routes
// and endpoints they name, and ACKs every response. It keeps names,
// versions and content hashes only, never the resources, and reads
// responses with lightCodec, so that 2000 of them in the server's process
// take as little of the CPU as they can.
type pushClient struct {
	idx    int
	node   *core.Node
	stream grpc.ClientStream
	target *atomic.Pointer[pushTarget]

	version [nTypes]string
	nonce   [nTypes]string
	count   [nTypes]int
	names   [nTypes][]string // subscribed names of RDS and EDS
	// namesEnc[i] is names[i] encoded as a DiscoveryRequest's
	// resource_names, sent with every request of the type.
	namesEnc [nTypes][]byte
	// edsHashes[i] is the content hash of the ClusterLoadAssignment
	// names[tEDS][i] last received (0: none): EDS responses carry only
	// changed resources, and the client merges them, as a sidecar does.
	edsHashes []uint64
	reached   *pushTarget // last target reached
	// bytes, if set, counts the encoded resources the client receives.
	bytes *atomic.Int64
	resp  lightResponse
}

// openADS opens an ADS stream, state-of-the-world or delta, whose
// responses are read with lightCodec.
func openADS(ctx context.Context, conn *grpc.ClientConn, delta bool) (grpc.ClientStream, error) {
	name := "StreamAggregatedResources"
	if delta {
		name = "DeltaAggregatedResources"
	}
	return conn.NewStream(ctx, &grpc.StreamDesc{StreamName: name, ServerStreams: true, ClientStreams: true},
		"/envoy.service.discovery.v3.AggregatedDiscoveryService/"+name, grpc.ForceCodecV2(lightCodec{encoding.GetCodecV2("proto")}))
}

// lightCodec sends lightRequests and decodes DiscoveryResponses into
// lightResponse: the fields the benchmark clients read, and every
// resource's encoding, without decoding the resources.
type lightCodec struct{ proto encoding.CodecV2 }

func (c lightCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*lightRequest); ok {
		head, err := proto.Marshal(r.head)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(head), mem.SliceBuffer(r.names)}, nil
	}
	return c.proto.Marshal(v)
}

// lightRequest is a DiscoveryRequest whose resource_names are already
// encoded: a client re-sends its whole EDS subscription (1000 names) with
// every ACK, and encodes it once per change of subscription instead.
type lightRequest struct {
	head  *discovery.DiscoveryRequest // without resource_names
	names []byte                      // resource_names, encoded
}

func (c lightCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*lightResponse); ok {
		return r.decode(data)
	}
	if r, ok := v.(*lightDelta); ok {
		return r.decode(data)
	}
	return c.proto.Unmarshal(data, v)
}

func (lightCodec) Name() string { return "proto" }

// lightResponse is a DiscoveryResponse as the benchmark clients read it.
// resources alias buf, which release returns to lightBufs.
type lightResponse struct {
	buf                     *[]byte
	version, typeURL, nonce string
	resources               [][]byte // Any.value of each resource
}

// lightBufs holds the buffers lightResponses are decoded into; a client
// holds one only while it handles a response.
var lightBufs = sync.Pool{New: func() any { return new([]byte) }}

func (r *lightResponse) decode(data mem.BufferSlice) error {
	r.buf = lightBufs.Get().(*[]byte)
	b := (*r.buf)[:0]
	if n := data.Len(); cap(b) < n {
		b = make([]byte, 0, n)
	}
	for _, d := range data {
		b = append(b, d.ReadOnlyData()...)
	}
	*r.buf = b
	r.resources = r.resources[:0]
	return forFields(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			r.version = string(v)
		case 2: // google.protobuf.Any: type_url = 1, value = 2
			return forFields(v, func(num protowire.Number, v []byte) error {
				if num == 2 {
					r.resources = append(r.resources, v)
				}
				return nil
			})
		case 4:
			r.typeURL = string(v)
		case 5:
			r.nonce = string(v)
		}
		return nil
	})
}

func (r *lightResponse) release() {
	if r.buf != nil {
		lightBufs.Put(r.buf)
		r.buf = nil
	}
	r.resources = r.resources[:0]
}

// forFields calls f with the number and contents of every length-delimited
// field of the encoded message b, and skips the others.
func forFields(b []byte, f func(num protowire.Number, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			if err := f(num, v); err != nil {
				return err
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

func (c *pushClient) send(typ int, first bool) error {
	req := &lightRequest{head: &discovery.DiscoveryRequest{
		TypeUrl:       pushTypeURLs[typ],
		VersionInfo:   c.version[typ],
		ResponseNonce: c.nonce[typ],
	}, names: c.namesEnc[typ]}
	if first {
		req.head.Node = c.node
	}
	return c.stream.SendMsg(req)
}

// subscription is what a client subscribes to after a response of
// listeners (routes) or clusters (endpoints): names, sorted, and their
// encoding as a request's resource_names. Read-only; shared by the
// clients that got the same response.
type subscription struct {
	names []string
	enc   []byte
}

// subscriptions holds the subscriptions of recent responses by a hash of
// their resources: 2000 clients that get the same 1000 clusters need not
// each decode and encode the same 1000 names. It keeps the harness light;
// the server sees the same requests.
var subscriptions struct {
	sync.Mutex
	m map[uint64]*subscription
}

// subscriptionFor returns the subscription that follows a response of
// typ (tLDS or tCDS) with the encoded resources.
func subscriptionFor(typ int, resources [][]byte) (*subscription, error) {
	var h maphash.Hash
	h.SetSeed(hashSeed)
	h.WriteByte(byte(typ))
	for _, r := range resources {
		_ = binary.Write(&h, binary.LittleEndian, uint64(len(r)))
		h.Write(r)
	}
	key := h.Sum64()
	subscriptions.Lock()
	sub := subscriptions.m[key]
	subscriptions.Unlock()
	if sub != nil {
		return sub, nil
	}
	var names []string
	var err error
	if typ == tLDS {
		names, err = routeNames(resources)
	} else {
		names, err = edsNames(resources)
	}
	if err != nil {
		return nil, err
	}
	sub = &subscription{names: names, enc: encodeNames(names)}
	subscriptions.Lock()
	if subscriptions.m == nil || len(subscriptions.m) > 64 {
		subscriptions.m = map[uint64]*subscription{}
	}
	subscriptions.m[key] = sub
	subscriptions.Unlock()
	return sub, nil
}

// encodeNames encodes names as field 3 (resource_names) of a
// DiscoveryRequest.
func encodeNames(names []string) []byte {
	size := 0
	for _, n := range names {
		size += protowire.SizeTag(3) + protowire.SizeBytes(len(n))
	}
	b := make([]byte, 0, size)
	for _, n := range names {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendString(b, n)
	}
	return b
}

func (c *pushClient) run() error {
	if err := c.send(tLDS, true); err != nil {
		return err
	}
	if err := c.send(tCDS, false); err != nil {
		return err
	}
	for {
		if err := c.stream.RecvMsg(&c.resp); err != nil {
			return err
		}
		err := c.handle(&c.resp)
		c.resp.release()
		if err != nil {
			return err
		}
	}
}

// handle records one response, ACKs it, and subscribes to the routes or
// endpoints it names.
func (c *pushClient) handle(resp *lightResponse) error {
	typ := typeIndex(resp.typeURL)
	if typ < 0 {
		return fmt.Errorf("unexpected type %s", resp.typeURL)
	}
	c.version[typ], c.nonce[typ], c.count[typ] = resp.version, resp.nonce, len(resp.resources)
	if c.bytes != nil {
		for _, r := range resp.resources {
			c.bytes.Add(int64(len(r)))
		}
	}
	if typ == tEDS {
		if err := c.mergeEDS(resp.resources); err != nil {
			return err
		}
	}
	sub := -1
	var next *subscription
	if typ == tLDS || typ == tCDS {
		var err error
		if next, err = subscriptionFor(typ, resp.resources); err != nil {
			return err
		}
		sub = typ + 1 // RDS after LDS, EDS after CDS
	}
	if err := c.send(typ, false); err != nil { // ACK
		return err
	}
	if sub >= 0 && !slices.Equal(next.names, c.names[sub]) && !(len(next.names) == 0 && c.version[sub] == "") {
		if sub == tEDS {
			c.edsHashes = carryHashes(c.names[sub], c.edsHashes, next.names)
		}
		c.names[sub], c.namesEnc[sub] = next.names, next.enc
		if err := c.send(sub, false); err != nil {
			return err
		}
	}
	c.check()
	return nil
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
// resources (encoded) that the client subscribes to.
func (c *pushClient) mergeEDS(resources [][]byte) error {
	names := c.names[tEDS]
	next := 0 // a response of every resource comes sorted by name
	for _, r := range resources {
		b, err := claName(r)
		if err != nil {
			return err
		}
		// name aliases the response: looked up, not kept.
		name := unsafe.String(unsafe.SliceData(b), len(b))
		i, ok := next, next < len(names) && names[next] == name
		if !ok {
			i, ok = slices.BinarySearch(names, name)
		}
		if ok {
			c.edsHashes[i] = hashBytes(r)
			next = i + 1
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
func claName(b []byte) ([]byte, error) {
	var name []byte
	err := forFields(b, func(num protowire.Number, v []byte) error {
		if num == 1 && name == nil {
			name = v
		}
		return nil
	})
	return name, err
}

// digestOf is one resource's share of a digest of resources: the sum of
// digestOf over them, which a delta client updates as resources come and
// go.
func digestOf(name string, content uint64) uint64 {
	return maphash.String(hashSeed, name)*0x9e3779b97f4a7c15 ^ content
}

// hashSeed is the seed of every content hash in the benchmark.
var hashSeed = maphash.MakeSeed()

func hashBytes(b []byte) uint64 { return maphash.Bytes(hashSeed, b) }

// routeNames returns the RDS names the listeners (encoded) use, sorted.
func routeNames(resources [][]byte) ([]string, error) {
	set := map[string]bool{}
	for _, r := range resources {
		l := &listener.Listener{}
		if err := proto.Unmarshal(r, l); err != nil {
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

// edsNames returns the EDS service names of the clusters (encoded),
// sorted. It reads only the fields it needs (name, type,
// eds_cluster_config.service_name) so that 2000 clients reading 1000
// clusters each stay cheap.
func edsNames(resources [][]byte) ([]string, error) {
	out := make([]string, 0, len(resources))
	for _, b := range resources {
		var name, service []byte
		var eds bool
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			b = b[n:]
			if num == 2 && typ == protowire.VarintType { // type
				v, n := protowire.ConsumeVarint(b)
				if n < 0 {
					return nil, protowire.ParseError(n)
				}
				eds, b = v == uint64(cluster.Cluster_EDS), b[n:]
				continue
			}
			if typ != protowire.BytesType {
				n = protowire.ConsumeFieldValue(num, typ, b)
				if n < 0 {
					return nil, protowire.ParseError(n)
				}
				b = b[n:]
				continue
			}
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			b = b[n:]
			switch num {
			case 1: // name
				name = v
			case 3: // eds_cluster_config: service_name = 2
				if err := forFields(v, func(num protowire.Number, v []byte) error {
					if num == 2 {
						service = v
					}
					return nil
				}); err != nil {
					return nil, err
				}
			}
		}
		if !eds {
			continue
		}
		if len(service) == 0 {
			service = name
		}
		out = append(out, string(service))
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

// phase is what runPhase measured.
type phase struct {
	// update is the time Update took.
	update time.Duration
	// lat is every client's latency, sorted.
	lat []time.Duration
	// cpu is the CPU time the process used (user and system, all
	// threads: server and clients) until the last client was done.
	cpu time.Duration
}

// processCPU is the CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runPhase publishes snap and waits until every client has ACKed what it
// should get from it. If profile is not empty, it writes a CPU profile of
// the phase there.
func runPhase(ctx context.Context, b *testing.B, s *Server, cur *atomic.Pointer[pushTarget], snap *model.Snapshot, errc <-chan error, clients int, profile string) phase {
	b.Helper()
	t := expectTarget(b, snap, pushNode(0), clients)
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := processCPU(b)
	t.start = time.Now()
	cur.Store(t)
	if err := s.Update(snap); err != nil {
		b.Fatal(err)
	}
	update := time.Since(t.start)
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
	case err := <-errc:
		b.Fatalf("client failed: %v", err)
	case <-ctx.Done():
		b.Fatalf("phase did not converge: %v", ctx.Err())
	}
	cpu := processCPU(b) - cpu0
	lat := slices.Clone(t.latency)
	slices.Sort(lat)
	return phase{update: update, lat: lat, cpu: cpu}
}

// settle waits until the server reports every one of n proxies SYNCED on
// every type (it has processed their ACKs, which go on after the clients
// are done), then collects garbage: the endpoint change that follows
// starts from a mesh at rest, as it would seconds after a full push.
func settle(ctx context.Context, b *testing.B, s *Server, n int) {
	b.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		synced := 0
		for _, p := range s.Status() {
			ok := true
			for _, t := range p.Types {
				ok = ok && t.State == StateSynced
			}
			if ok {
				synced++
			}
		}
		if synced == n {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			b.Fatalf("%d of %d proxies synced: %v", synced, n, ctx.Err())
		}
	}
	runtime.GC()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

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
// full push (the endpoint change); cpu-ms (eds-cpu-ms) the mean CPU time
// the whole process (server and clients) used from the start of a full
// push (endpoint change) until its last client was done, which on a
// shared machine varies less than the times;
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
		opts := []grpc.DialOption{
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256 << 20)),
		}
		if w := int32(*pushWindow); w > 0 {
			opts = append(opts, grpc.WithInitialWindowSize(w), grpc.WithInitialConnWindowSize(16*w))
		}
		conns[i], err = grpc.NewClient(lis.Addr().String(), opts...)
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
		stream, err := openADS(cctx, conns[i%nConns], *pushDelta)
		if err != nil {
			b.Fatal(err)
		}
		var bytes *atomic.Int64
		if i == 0 {
			bytes = &client0Bytes
		}
		run := (&pushClient{idx: i, node: pushNode(i), stream: stream, target: &cur, bytes: bytes}).run
		if *pushDelta {
			run = newDeltaClient(i, stream, &cur, bytes).run
		}
		clientsDone.Add(1)
		go func() {
			defer clientsDone.Done()
			if err := run(); err != nil && cctx.Err() == nil {
				errc <- fmt.Errorf("client %d: %w", i, err)
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

	var updates, convs, edss, edsUpdates, fullCPU, edsCPU []float64
	var convLat, edsLat []time.Duration
	var heapMB, fullKB, edsKB float64
	for i := 0; b.Loop(); i++ {
		phaseCtx, phaseCancel := context.WithTimeout(ctx, 2*time.Minute)
		full := pushModel(nServices, 8080+uint32(i))
		full.Version = uint64(2 * i)
		var fullProf, edsProf string
		if *pushProfile != "" {
			fullProf, edsProf = fmt.Sprintf("%s-full-%d.pprof", *pushProfile, i), fmt.Sprintf("%s-eds-%d.pprof", *pushProfile, i)
		}
		before := client0Bytes.Load()
		p := runPhase(phaseCtx, b, s, &cur, full, errc, nClients, fullProf)
		updates = append(updates, ms(p.update))
		convs = append(convs, pct(p.lat, 1))
		convLat = append(convLat, p.lat...)
		fullCPU = append(fullCPU, ms(p.cpu))
		fullKB = float64(client0Bytes.Load()-before) / 1024

		var mstats runtime.MemStats
		runtime.ReadMemStats(&mstats)
		heapMB = max(heapMB, float64(mstats.HeapInuse)/(1<<20))
		if *pushSettle {
			settle(phaseCtx, b, s, nClients)
		}

		before = client0Bytes.Load()
		p = runPhase(phaseCtx, b, s, &cur, withExtraEndpoint(full), errc, nClients, edsProf)
		edsUpdates = append(edsUpdates, ms(p.update))
		edsKB = float64(client0Bytes.Load()-before) / 1024
		edss = append(edss, pct(p.lat, 1))
		edsLat = append(edsLat, p.lat...)
		edsCPU = append(edsCPU, ms(p.cpu))
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
	b.ReportMetric(mean(fullCPU), "cpu-ms")
	b.ReportMetric(mean(edsCPU), "eds-cpu-ms")
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

// lightDelta is a DeltaDiscoveryResponse as the benchmark's delta clients
// read it.
type lightDelta struct {
	buf            []byte
	typeURL, nonce string
	names          []string
	values         [][]byte // encoded resource of names[i], in buf
	removed        []string
}

func (r *lightDelta) decode(data mem.BufferSlice) error {
	r.buf = data.Materialize()
	r.names, r.values, r.removed = r.names[:0], r.values[:0], r.removed[:0]
	return forFields(r.buf, func(num protowire.Number, v []byte) error {
		switch num {
		case 2: // Resource: name = 3, resource = 2 (Any: value = 2)
			var name string
			var value []byte
			err := forFields(v, func(num protowire.Number, v []byte) error {
				switch num {
				case 3:
					name = string(v)
				case 2:
					return forFields(v, func(num protowire.Number, v []byte) error {
						if num == 2 {
							value = v
						}
						return nil
					})
				}
				return nil
			})
			r.names, r.values = append(r.names, name), append(r.values, value)
			return err
		case 4:
			r.typeURL = string(v)
		case 5:
			r.nonce = string(v)
		case 6:
			r.removed = append(r.removed, string(v))
		}
		return nil
	})
}

// deltaClient is pushClient's counterpart over delta ADS: it subscribes to
// all listeners and clusters, then to the routes and endpoints they name,
// and ACKs every response, keeping a content hash per resource and a
// digest per type (to compare with the target in constant time).
type deltaClient struct {
	idx    int
	node   *core.Node
	stream grpc.ClientStream
	target *atomic.Pointer[pushTarget]
	bytes  *atomic.Int64

	have   [nTypes]map[string]uint64 // content hash by name
	digest [nTypes]uint64
	// refs are the routes (EDS services) each listener (cluster) names.
	refs    [nTypes]map[string][]string
	sub     [nTypes][]string // current RDS and EDS subscription, sorted
	reached *pushTarget
	resp    lightDelta
}

func newDeltaClient(idx int, stream grpc.ClientStream, target *atomic.Pointer[pushTarget], bytes *atomic.Int64) *deltaClient {
	c := &deltaClient{idx: idx, node: pushNode(idx), stream: stream, target: target, bytes: bytes}
	for i := range nTypes {
		c.have[i] = map[string]uint64{}
		c.refs[i] = map[string][]string{}
	}
	return c
}

func (c *deltaClient) run() error {
	for i, typ := range []int{tLDS, tCDS} {
		req := &discovery.DeltaDiscoveryRequest{TypeUrl: pushTypeURLs[typ], ResourceNamesSubscribe: []string{"*"}}
		if i == 0 {
			req.Node = c.node
		}
		if err := c.stream.SendMsg(req); err != nil {
			return err
		}
	}
	for {
		if err := c.stream.RecvMsg(&c.resp); err != nil {
			return err
		}
		if err := c.handle(&c.resp); err != nil {
			return err
		}
	}
}

func (c *deltaClient) handle(resp *lightDelta) error {
	typ := typeIndex(resp.typeURL)
	if typ < 0 {
		return fmt.Errorf("unexpected type %s", resp.typeURL)
	}
	drop := func(name string) {
		if h, ok := c.have[typ][name]; ok {
			c.digest[typ] -= digestOf(name, h)
			delete(c.have[typ], name)
			delete(c.refs[typ], name)
		}
	}
	for _, name := range resp.removed {
		drop(name)
	}
	for i, name := range resp.names {
		v := resp.values[i]
		if c.bytes != nil {
			c.bytes.Add(int64(len(v)))
		}
		drop(name)
		h := hashBytes(v)
		c.have[typ][name] = h
		c.digest[typ] += digestOf(name, h)
		var refs []string
		var err error
		switch typ {
		case tLDS:
			refs, err = routeNames([][]byte{v})
		case tCDS:
			refs, err = edsNames([][]byte{v})
		}
		if err != nil {
			return err
		}
		if refs != nil {
			c.refs[typ][name] = refs
		}
	}
	if err := c.stream.SendMsg(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.typeURL, ResponseNonce: resp.nonce}); err != nil {
		return err
	}
	if typ == tLDS || typ == tCDS {
		set := map[string]bool{}
		for _, refs := range c.refs[typ] {
			for _, r := range refs {
				set[r] = true
			}
		}
		next := typ + 1 // RDS after LDS, EDS after CDS
		want := sortedSet(set)
		var add, del []string
		for _, n := range want {
			if _, ok := slices.BinarySearch(c.sub[next], n); !ok {
				add = append(add, n)
			}
		}
		for _, n := range c.sub[next] {
			if !set[n] {
				del = append(del, n)
			}
		}
		if len(add) > 0 || len(del) > 0 {
			c.sub[next] = want
			if err := c.stream.SendMsg(&discovery.DeltaDiscoveryRequest{TypeUrl: pushTypeURLs[next], ResourceNamesSubscribe: add, ResourceNamesUnsubscribe: del}); err != nil {
				return err
			}
		}
	}
	c.check()
	return nil
}

// check records the time the client first matches the current target.
func (c *deltaClient) check() {
	t := c.target.Load()
	if t == nil || t == c.reached {
		return
	}
	for i := range nTypes {
		if len(c.have[i]) != t.count[i] || c.digest[i] != t.digest[i] {
			return
		}
	}
	t.latency[c.idx] = time.Since(t.start)
	c.reached = t
	t.wg.Done()
}
