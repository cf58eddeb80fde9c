// Package xdsserver serves Weft's xDS resources over gRPC: ADS
// (state-of-the-world and delta) and the per-type discovery services, with
// go-control-plane's server. Listeners, routes and clusters are published
// per node as sets shared by every node with the same content, encoded
// once and sent to every state-of-the-world stream without copying
// (sotwcache.go, codec.go); delta streams get them from a go-control-plane
// snapshot cache keyed by node ID. Endpoints (ClusterLoadAssignments,
// identical for every proxy) come from one cache shared by all proxies,
// which versions each resource and answers a subscription with only the
// resources that changed (eds.go). It tracks, per proxy and per resource type, whether the proxy
// has ACKed the latest version, and exports Prometheus metrics about
// pushes, NACKs and convergence.
package xdsserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/emptypb"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/xdstranslate"
)

// Sync states of one resource type on one proxy.
const (
	// StateSynced: the proxy ACKed the latest version.
	StateSynced = "SYNCED"
	// StateStale: a newer version exists than the proxy ACKed (sent or about to be).
	StateStale = "STALE"
	// StateNacked: the proxy rejected the latest version it was sent.
	StateNacked = "NACKED"
)

// Options configure a Server. The zero value works.
type Options struct {
	// Logger receives NACKs and errors; slog.Default() if nil.
	Logger *slog.Logger
	// Registry receives the server's metrics; none are registered if nil.
	Registry prometheus.Registerer
	// Now is the clock, for tests; time.Now if nil.
	Now func() time.Time
}

// Server is Weft's xDS server. Create it with New; it is safe for
// concurrent use. Update publishes a model snapshot to every connected
// proxy; a proxy that connects later gets the current one on its first
// request.
type Server struct {
	log *slog.Logger
	now func() time.Time
	// sotw serves LDS, RDS and CDS to state-of-the-world streams, cache to
	// delta streams; both get every node's resources.
	sotw  *sotwCache
	cache cache.SnapshotCache
	// eds serves every ClusterLoadAssignment to all state-of-the-world
	// streams, edsDelta to delta streams (see eds.go).
	eds      *endpointCache
	edsDelta *cache.LinearCache
	xds      serverv3.Server
	metrics  *metrics
	cancel   context.CancelFunc

	// pushMu serializes publishing: Update and first-request publishes.
	pushMu     sync.Mutex
	translator *xdstranslate.Translator
	builtAt    time.Time
	// share holds the cache resources published for translator, so that
	// proxies connecting between Updates reuse them (under pushMu).
	share *resourceShare

	// endpoints is what eds holds (under pushMu).
	endpoints edsState
	// names are the names of the ClusterLoadAssignments in eds, for
	// xdsCodec to decode requests to (replaced, never changed).
	names atomic.Pointer[map[string]string]

	mu      sync.Mutex
	nodes   map[string]*nodeState
	streams map[int64]string // stream ID -> node ID
	// edsChanged is, per ClusterLoadAssignment name, the eds version at
	// which it last changed (replaced, never mutated; under mu).
	edsChanged map[string]uint64
	// edsBuiltAt is when the model snapshot of each recent eds version was
	// built, for convergence time (under mu).
	edsBuiltAt map[uint64]time.Time

	grpcMu sync.Mutex
	grpc   *grpc.Server
}

type nodeState struct {
	id        string
	proxy     *xdstranslate.Proxy
	streams   int
	connected time.Time
	// published is the last resources set for the node (under Server.mu).
	published *xdstranslate.Resources
	// versions maps LDS, RDS and CDS type URLs to the published version.
	// EDS has no per-node version: see edsLatest.
	versions map[string]string
	types    map[string]*typeState
	// allowed is the set of ClusterLoadAssignment names the node may
	// subscribe to, nil for all (a node not limited by a Sidecar); shared
	// between nodes (under Server.mu).
	allowed map[string]struct{}
	// edsSub is the node's current EDS subscription (after scoping);
	// edsWildcard is set for a wildcard one (under Server.mu).
	edsSub      []string
	edsWildcard bool
	// edsExplicit: the node has asked for EDS resources by name, so an
	// empty request no longer means a (legacy) wildcard.
	edsExplicit bool
}

type typeState struct {
	sent, acked string
	nonce       string // last nonce sent
	state       string
	// nacked is the version the proxy last rejected; re-sending it keeps
	// the state NACKED.
	nacked string
	nack   string
	// builtAt is when the model snapshot of each published version was
	// built, for convergence time.
	builtAt map[string]time.Time
}

// New creates a Server. ctx bounds the go-control-plane server's lifetime;
// Stop releases it too.
func New(ctx context.Context, opts Options) *Server {
	ctx, cancel := context.WithCancel(ctx)
	s := &Server{
		log:        opts.Logger,
		now:        opts.Now,
		cancel:     cancel,
		nodes:      map[string]*nodeState{},
		streams:    map[int64]string{},
		edsChanged: map[string]uint64{},
		edsBuiltAt: map[uint64]time.Time{},
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.metrics = newMetrics(opts.Registry)
	// ads=false: the cache's ADS mode holds back a response unless the
	// request names every resource of the type, but proxyless gRPC clients
	// ask for listeners one by one by name. Consistency is checked by
	// xdstranslate before publishing instead.
	s.cache = cache.NewSnapshotCache(false, cache.IDHash{}, cpLogger{s.log})
	s.sotw = newSotwCache()
	s.eds = newEndpointCache()
	s.edsDelta = cache.NewLinearCache(resource.EndpointType, cache.WithLogger(cpLogger{s.log}))
	mux := &cache.MuxCache{
		Classify: func(r *cache.Request) string {
			if r.GetTypeUrl() == resource.EndpointType {
				return "eds"
			}
			return "sotw"
		},
		ClassifyDelta: func(r *cache.DeltaRequest) string {
			if r.GetTypeUrl() == resource.EndpointType {
				return "eds-delta"
			}
			return ""
		},
		Caches: map[string]cache.Cache{"sotw": s.sotw, "eds": s.eds, "eds-delta": s.edsDelta, "": s.cache},
	}
	s.xds = serverv3.NewServer(ctx, mux, s.callbacks())
	s.translator = xdstranslate.New(&model.Snapshot{})
	s.builtAt = s.now()
	s.share = newResourceShare()
	return s
}

// Register adds ADS and the LDS/RDS/CDS/EDS services to g.
func (s *Server) Register(g *grpc.Server) {
	discovery.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
	listenerservice.RegisterListenerDiscoveryServiceServer(g, s.xds)
	routeservice.RegisterRouteDiscoveryServiceServer(g, s.xds)
	clusterservice.RegisterClusterDiscoveryServiceServer(g, s.xds)
	endpointservice.RegisterEndpointDiscoveryServiceServer(g, s.xds)
}

// Serve creates a grpc.Server with the xDS services and ServerOptions
// (then opts) and serves lis until Stop. It returns grpc.Server.Serve's
// error.
func (s *Server) Serve(lis net.Listener, opts ...grpc.ServerOption) error {
	g := grpc.NewServer(append(s.ServerOptions(), opts...)...)
	s.Register(g)
	s.grpcMu.Lock()
	s.grpc = g
	s.grpcMu.Unlock()
	return g.Serve(lis)
}

// Stop stops the grpc.Server made by Serve (if any) and the xDS server.
func (s *Server) Stop() {
	s.grpcMu.Lock()
	g := s.grpc
	s.grpcMu.Unlock()
	if g != nil {
		g.Stop()
	}
	s.cancel()
}

// Update translates snap for every connected proxy and publishes the
// result. A proxy whose translation fails keeps its last good resources;
// the errors are logged, counted and returned joined.
func (s *Server) Update(snap *model.Snapshot) error {
	start := s.now()
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	t := xdstranslate.New(snap)
	s.refreshLocalities(t)
	// Endpoints first: a proxy that gets new clusters then finds their
	// endpoints when it subscribes to them.
	if err := s.updateEndpoints(t, start); err != nil {
		s.metrics.translationErrors.Inc()
		s.log.Error("xDS endpoints failed to encode; every proxy keeps its last good config", "err", err)
		return err
	}
	shared := newResourceShare()
	s.translator, s.builtAt, s.share = t, start, shared

	s.mu.Lock()
	nodes := make([]*nodeState, 0, len(s.nodes))
	for _, n := range s.nodes {
		nodes = append(nodes, n)
	}
	s.mu.Unlock()

	// Translate for every node first, then hand the results to the
	// caches in one go: publishing node by node woke each node's streams
	// while the rest were still being translated, and the translation,
	// competing with 2000 streams for the CPU, took 0.5 s of the 2 s push.
	work := make(chan *nodeState)
	errc := make(chan error, len(nodes))
	applies := make(chan func() error, len(nodes))
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), max(len(nodes), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range work {
				apply, err := s.prepare(n, t, start, shared)
				errc <- err
				if apply != nil {
					applies <- apply
				}
			}
		}()
	}
	for _, n := range nodes {
		work <- n
	}
	close(work)
	wg.Wait()
	close(errc)
	close(applies)
	var errs []error
	for apply := range applies {
		if err := apply(); err != nil {
			errs = append(errs, err)
		}
	}
	for err := range errc {
		if err != nil {
			errs = append(errs, err)
		}
	}
	s.metrics.pushTime.Observe(s.now().Sub(start).Seconds())
	return errors.Join(errs...)
}

type shareKey struct {
	typ  string
	hash uint64
}

// resourceShare lets proxies with identical content of a type share one
// encoded copy of it for as long as one translator is current: within an
// Update and for proxies that connect after it.
type resourceShare struct {
	mu sync.Mutex
	m  map[shareKey]sharedResources
	// allowed holds the name sets of scoped endpoint lists, by the list's
	// content hash (proxies with the same scope and locality share one
	// set). Not by the list's first element: lists of one scope differ by
	// locality (a locality-aware cluster's variant is named for it) and
	// share their first element when its cluster is not locality-aware.
	allowed map[allowedKey]map[string]struct{}
}

type allowedKey struct {
	hash uint64
	n    int
}

func newResourceShare() *resourceShare {
	return &resourceShare{m: map[shareKey]sharedResources{}, allowed: map[allowedKey]map[string]struct{}{}}
}

// allowedSet returns the names of eps, whose content hash is hash, as a
// set, or nil when eps covers every service of t: a Sidecar's scope only
// leaves assignments out, so a list as long as the translator's, starting
// with the same assignment, left none out. (A locality's view of it may
// name variants instead of some assignments; nil lets such a proxy, which
// may see every service, subscribe to any of them.)
func (r *resourceShare) allowedSet(t *xdstranslate.Translator, eps []*endpoint.ClusterLoadAssignment, hash uint64) map[string]struct{} {
	all := t.Shared().Endpoints
	if len(eps) == len(all) && (len(eps) == 0 || eps[0] == all[0]) {
		return nil
	}
	var k allowedKey
	if len(eps) > 0 {
		k = allowedKey{hash, len(eps)}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.allowed[k]; ok {
		return m
	}
	m := make(map[string]struct{}, len(eps))
	for _, e := range eps {
		m[e.GetClusterName()] = struct{}{}
	}
	r.allowed[k] = m
	return m
}

// sharedResources is one type's resources for proxies with the same
// content of that type, encoded once: for state-of-the-world streams (set)
// and for the delta snapshot cache (res, and versions: each resource's
// version as the cache computes it, which it would otherwise compute again
// for every proxy's snapshot, hashing all of its resources).
type sharedResources struct {
	set      *resourceSet
	res      cache.Resources
	versions map[string]string
}

// get returns the resources stored under typ and hash, building and
// storing them if there are none. A build that fails is not stored.
func (r *resourceShare) get(typ string, hash uint64, build func() (sharedResources, error)) (sharedResources, error) {
	k := shareKey{typ, hash}
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.m[k]; ok {
		return v, nil
	}
	v, err := build()
	if err != nil {
		return sharedResources{}, err
	}
	r.m[k] = v
	return v, nil
}

// encodeResources marshals items once, for every proxy that gets them.
// The snapshot cache's responses marshal every resource they carry, for
// every proxy, each time they are sent; with 500 proxies sharing 1000
// clusters that was nearly half the CPU of a push (docs/performance.md).
// The snapshot cache gets each item as a preMarshaled message instead,
// whose encoding is the item's bytes stored as unknown fields: marshaling
// it again is a copy.
func encodeResources[T types.ResourceWithName](typ, version string, items []T) (sharedResources, error) {
	enc := make(map[string][]byte, len(items))
	res := make([]types.Resource, len(items))
	versions := make(map[string]string, len(items))
	for i, it := range items {
		b, err := cache.MarshalResource(it)
		if err != nil {
			return sharedResources{}, fmt.Errorf("marshaling %s %q: %w", it.ProtoReflect().Descriptor().FullName(), it.GetName(), err)
		}
		enc[it.GetName()] = b
		res[i] = preMarshaledBytes(it.GetName(), b)
		versions[it.GetName()] = cache.HashResource(b)
	}
	return sharedResources{set: newResourceSet(typ, version, enc), res: cache.NewResources(version, res), versions: versions}, nil
}

// preMarshaled is an xDS resource already encoded: an empty message whose
// unknown fields are the resource's deterministic encoding, so that
// proto.Marshal of it yields exactly those bytes. It carries the name the
// cache indexes it by (types.ResourceWithName). It is read-only once made,
// and safe to marshal from many goroutines.
type preMarshaled struct {
	*emptypb.Empty
	name string
}

// preMarshaledBytes wraps the deterministic encoding b of a resource.
func preMarshaledBytes(name string, b []byte) *preMarshaled {
	e := &emptypb.Empty{}
	e.ProtoReflect().SetUnknown(protoreflect.RawFields(b))
	return &preMarshaled{Empty: e, name: name}
}

// GetName is the resource's name.
func (p *preMarshaled) GetName() string { return p.name }

// publish translates for one node and sets its snapshot. Callers hold pushMu.
func (s *Server) publish(n *nodeState, t *xdstranslate.Translator, builtAt time.Time, share *resourceShare) error {
	apply, err := s.prepare(n, t, builtAt, share)
	if err != nil || apply == nil {
		return err
	}
	return apply()
}

// prepare translates for one node and returns what sets its snapshot in
// the caches, nil if its resources did not change. Callers hold pushMu
// until they have called it.
func (s *Server) prepare(n *nodeState, t *xdstranslate.Translator, builtAt time.Time, share *resourceShare) (func() error, error) {
	p := n.proxy.WithSnapshot(t.Snapshot())
	res, err := t.Translate(p)
	if err != nil {
		s.metrics.translationErrors.Inc()
		s.log.Error("xDS translation failed; proxy keeps its last good config", "proxy", n.id, "err", err)
		return nil, fmt.Errorf("proxy %s: %w", n.id, err)
	}
	ver := func(h uint64) string { return fmt.Sprintf("%016x", h) }
	// The version maps are set here, shared, so that the cache does not
	// build them for each proxy (Snapshot.ConstructVersionMap keeps them).
	snap := &cache.Snapshot{VersionMap: map[string]map[string]string{}}
	var sets []*resourceSet
	var merr error
	set := func(typ string, h uint64, build func(string) (sharedResources, error)) {
		v := ver(h)
		sr, err := share.get(typ, h, func() (sharedResources, error) { return build(v) })
		merr = errors.Join(merr, err)
		snap.Resources[cache.GetResponseType(typ)] = sr.res
		snap.VersionMap[typ] = sr.versions
		sets = append(sets, sr.set)
	}
	set(resource.ListenerType, res.Hashes.Listeners, func(v string) (sharedResources, error) {
		return encodeResources(resource.ListenerType, v, res.Listeners)
	})
	set(resource.RouteType, res.Hashes.Routes, func(v string) (sharedResources, error) {
		return encodeResources(resource.RouteType, v, res.Routes)
	})
	set(resource.ClusterType, res.Hashes.Clusters, func(v string) (sharedResources, error) {
		return encodeResources(resource.ClusterType, v, res.Clusters)
	})
	// Endpoints are served from s.eds; res.Endpoints only limits which of
	// them the node may subscribe to.
	allowed := share.allowedSet(t, res.Endpoints, res.Hashes.Endpoints)
	if merr != nil {
		s.metrics.translationErrors.Inc()
		s.log.Error("xDS resources failed to encode; proxy keeps its last good config", "proxy", n.id, "err", merr)
		return nil, fmt.Errorf("proxy %s: %w", n.id, merr)
	}

	versions := map[string]string{
		resource.ListenerType: ver(res.Hashes.Listeners),
		resource.RouteType:    ver(res.Hashes.Routes),
		resource.ClusterType:  ver(res.Hashes.Clusters),
	}
	s.mu.Lock()
	// Versions are content hashes: if none changed, the cache already holds
	// this content, and setting it again would only wake every watch of
	// the node (an endpoint-only change, which EDS serves on its own).
	unchanged := maps.Equal(n.versions, versions)
	n.published, n.allowed = res, allowed
	n.versions = versions
	for typ, v := range n.versions {
		ts := n.typeState(typ)
		if _, ok := ts.builtAt[v]; !ok {
			ts.builtAt[v] = builtAt
		}
		if ts.acked != v && ts.state == StateSynced {
			ts.state = StateStale
		}
	}
	s.mu.Unlock()
	if unchanged {
		return nil, nil
	}
	return func() error {
		// Under mu, so that a node whose last stream closed meanwhile
		// (streamClosed clears the caches under mu) is not set again.
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.nodes[n.id] != n {
			return nil
		}
		s.sotw.set(n.id, sets...)
		return s.cache.SetSnapshot(context.Background(), n.id, snap)
	}, nil
}

func (n *nodeState) typeState(typ string) *typeState {
	if n.types == nil {
		n.types = map[string]*typeState{}
	}
	ts := n.types[typ]
	if ts == nil {
		ts = &typeState{state: StateStale, builtAt: map[string]time.Time{}}
		n.types[typ] = ts
	}
	return ts
}

// ProxyStatus is the sync status of one connected proxy, for /debug/syncz.
type ProxyStatus struct {
	ID        string            `json:"id"`
	Type      string            `json:"type"`
	Namespace string            `json:"namespace"`
	Name      string            `json:"name,omitempty"`
	Connected time.Time         `json:"connected"`
	Types     []TypeStatus      `json:"types"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// TypeStatus is the sync status of one resource type on one proxy.
type TypeStatus struct {
	// Type is "LDS", "RDS", "CDS" or "EDS".
	Type string `json:"type"`
	// State is SYNCED, STALE or NACKED.
	State string `json:"state"`
	// Latest is the version published for the proxy. For EDS it is the
	// version of the server's endpoint cache at which the last of the
	// proxy's subscribed endpoints changed: a proxy that ACKed that
	// version or a later one has them all.
	Latest string `json:"latest"`
	// Sent is the version last sent.
	Sent string `json:"sent,omitempty"`
	// Acked is the version the proxy last ACKed.
	Acked string `json:"acked,omitempty"`
	// Error is the proxy's error_detail message of the last NACK.
	Error string `json:"error,omitempty"`
}

var typeOrder = []string{resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType}

// Status returns the sync status of every connected proxy, sorted by ID.
func (s *Server) Status() []ProxyStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ProxyStatus, 0, len(s.nodes))
	for _, n := range s.nodes {
		ps := ProxyStatus{
			ID: n.id, Type: string(n.proxy.Type), Namespace: n.proxy.Namespace, Name: n.proxy.Name,
			Connected: n.connected, Labels: n.proxy.Labels,
		}
		for _, typ := range typeOrder {
			ts := n.types[typ]
			st := TypeStatus{Type: shortType(typ), Latest: n.versions[typ], State: StateStale}
			behind := func() bool { return ts.acked != st.Latest }
			if typ == resource.EndpointType {
				latest := s.edsLatest(n)
				st.Latest = strconv.FormatUint(latest, 10)
				behind = func() bool { return edsVersionBefore(ts.acked, latest) }
			}
			if ts != nil {
				st.Sent, st.Acked, st.Error = ts.sent, ts.acked, ts.nack
				st.State = ts.state
				if ts.state == StateSynced && behind() {
					st.State = StateStale
				}
			}
			ps.Types = append(ps.Types, st)
		}
		out = append(out, ps)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ErrUnknownProxy is returned by ConfigDump for a proxy that is not connected.
var ErrUnknownProxy = errors.New("unknown proxy")

// ConfigDump returns the resources currently published for a proxy as
// JSON: {"listeners": [...], "routes": [...], "clusters": [...],
// "endpoints": [...]}, each resource in protojson.
func (s *Server) ConfigDump(proxyID string) ([]byte, error) {
	s.mu.Lock()
	n := s.nodes[proxyID]
	var res *xdstranslate.Resources
	if n != nil {
		res = n.published
	}
	s.mu.Unlock()
	if n == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownProxy, proxyID)
	}
	if res == nil {
		res = &xdstranslate.Resources{}
	}
	return DumpResources(res)
}

// DumpResources renders resources as ConfigDump does.
func DumpResources(res *xdstranslate.Resources) ([]byte, error) {
	enc := func(ms []proto.Message) ([]json.RawMessage, error) {
		out := make([]json.RawMessage, 0, len(ms))
		for _, m := range ms {
			b, err := protojson.Marshal(m)
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
		return out, nil
	}
	dump := map[string][]json.RawMessage{}
	var err error
	for name, ms := range map[string][]proto.Message{
		"listeners": asMessages(res.Listeners),
		"routes":    asMessages(res.Routes),
		"clusters":  asMessages(res.Clusters),
		"endpoints": asMessages(res.Endpoints),
	} {
		if dump[name], err = enc(ms); err != nil {
			return nil, fmt.Errorf("encoding %s: %w", name, err)
		}
	}
	return json.MarshalIndent(dump, "", "  ")
}

func asMessages[T proto.Message](items []T) []proto.Message {
	out := make([]proto.Message, len(items))
	for i, it := range items {
		out[i] = it
	}
	return out
}

func shortType(typeURL string) string {
	switch typeURL {
	case resource.ListenerType:
		return "LDS"
	case resource.RouteType:
		return "RDS"
	case resource.ClusterType:
		return "CDS"
	case resource.EndpointType:
		return "EDS"
	}
	return typeURL
}

// nodeFor registers a node on its first request and publishes its
// resources before the request is answered.
func (s *Server) nodeFor(streamID int64, node *core.Node) *nodeState {
	s.mu.Lock()
	id, ok := s.streams[streamID]
	if ok {
		n := s.nodes[id]
		s.mu.Unlock()
		return n
	}
	if node == nil {
		s.mu.Unlock()
		return nil
	}
	id = node.GetId()
	s.streams[streamID] = id
	n := s.nodes[id]
	if n != nil {
		n.streams++
		s.mu.Unlock()
		return n
	}
	s.mu.Unlock()

	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	s.mu.Lock()
	if n = s.nodes[id]; n != nil { // raced with another stream of the node
		n.streams++
		s.mu.Unlock()
		return n
	}
	n = &nodeState{id: id, proxy: xdstranslate.ProxyFromNode(node, s.translator.Snapshot()), streams: 1, connected: s.now()}
	s.nodes[id] = n
	s.metrics.connected.Set(float64(len(s.nodes)))
	s.mu.Unlock()
	if err := s.addLocality(n.proxy); err != nil {
		s.log.Error("no endpoints for the new proxy's locality", "proxy", id, "err", err)
	}
	if err := s.publish(n, s.translator, s.builtAt, s.share); err != nil {
		s.log.Error("no resources for new proxy", "proxy", id, "err", err)
	}
	return n
}

func (s *Server) streamClosed(streamID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.streams[streamID]
	if !ok {
		return
	}
	delete(s.streams, streamID)
	n := s.nodes[id]
	if n == nil {
		return
	}
	n.streams--
	if n.streams <= 0 {
		delete(s.nodes, id)
		s.sotw.clear(id)
		s.cache.ClearSnapshot(id)
		s.metrics.connected.Set(float64(len(s.nodes)))
	}
}

// For a NACK of the latest response it returns the rejected version: the
// caller answers the request as if the proxy had that version, so the same
// rejected config is not sent again in a loop; the next change is.
func (s *Server) onRequest(n *nodeState, typ, version, nonce string, errDetail string, nacked bool, delta bool) (rejected string) {
	if n == nil || nonce == "" {
		return "" // a first request or a new subscription: nothing to ACK
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := n.typeState(typ)
	if delta {
		if nonce != ts.nonce {
			return ""
		}
		version = ts.sent
	}
	if nacked {
		ts.state, ts.nack, ts.nacked = StateNacked, errDetail, ts.sent
		s.metrics.nacks.WithLabelValues(shortType(typ)).Inc()
		s.log.Warn("proxy rejected xDS resources (NACK)", "proxy", n.id, "type", shortType(typ), "version", version, "reason", errDetail)
		if nonce == ts.nonce {
			return ts.sent
		}
		return ""
	}
	ts.acked, ts.nack, ts.nacked = version, "", ""
	if version == ts.sent {
		ts.state = StateSynced
		if typ == resource.EndpointType {
			if v, err := strconv.ParseUint(version, 10, 64); err == nil {
				if b, ok := s.edsBuiltAt[v]; ok {
					s.metrics.convergence.Observe(s.now().Sub(b).Seconds())
				}
			}
		} else if b, ok := ts.builtAt[version]; ok {
			s.metrics.convergence.Observe(s.now().Sub(b).Seconds())
			// Forget older versions' build times.
			for v := range ts.builtAt {
				if v != version && v != n.versions[typ] {
					delete(ts.builtAt, v)
				}
			}
		}
	}
	return ""
}

func (s *Server) onResponse(streamID int64, typ, version, nonce string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[s.streams[streamID]]
	if n == nil {
		return
	}
	ts := n.typeState(typ)
	ts.sent, ts.nonce = version, nonce
	if ts.acked != version && !(ts.state == StateNacked && ts.nacked == version) {
		ts.state = StateStale
	}
	s.metrics.pushes.WithLabelValues(shortType(typ)).Inc()
}

func (s *Server) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamClosedFunc:      func(id int64, _ *core.Node) { s.streamClosed(id) },
		DeltaStreamClosedFunc: func(id int64, _ *core.Node) { s.streamClosed(id) },
		StreamRequestFunc: func(id int64, req *discovery.DiscoveryRequest) error {
			n := s.nodeFor(id, req.GetNode())
			if req.GetTypeUrl() == resource.EndpointType {
				s.scopeEDS(n, req)
			}
			if rejected := s.onRequest(n, req.GetTypeUrl(), req.GetVersionInfo(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil, false); rejected != "" {
				req.VersionInfo = rejected
			}
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, req *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
			s.onResponse(id, resp.GetTypeUrl(), resp.GetVersionInfo(), resp.GetNonce())
		},
		StreamDeltaRequestFunc: func(id int64, req *discovery.DeltaDiscoveryRequest) error {
			n := s.nodeFor(id, req.GetNode())
			if req.GetTypeUrl() == resource.EndpointType {
				s.scopeDeltaEDS(n, req)
			}
			s.onRequest(n, req.GetTypeUrl(), "", req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil, true)
			return nil
		},
		StreamDeltaResponseFunc: func(id int64, req *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
			s.onResponse(id, resp.GetTypeUrl(), resp.GetSystemVersionInfo(), resp.GetNonce())
		},
	}
}

// cpLogger sends go-control-plane's logs to slog.
type cpLogger struct{ l *slog.Logger }

func (c cpLogger) Debugf(format string, args ...any) {
	if c.l.Enabled(context.Background(), slog.LevelDebug) {
		c.l.Debug(fmt.Sprintf(format, args...))
	}
}
func (c cpLogger) Infof(format string, args ...any) {
	if c.l.Enabled(context.Background(), slog.LevelDebug) {
		c.l.Debug(fmt.Sprintf(format, args...))
	}
}
func (c cpLogger) Warnf(format string, args ...any)  { c.l.Warn(fmt.Sprintf(format, args...)) }
func (c cpLogger) Errorf(format string, args ...any) { c.l.Error(fmt.Sprintf(format, args...)) }
