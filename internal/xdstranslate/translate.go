package xdstranslate

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"weft.dev/weft/internal/model"
)

// Resources are the xDS resources of one proxy, each slice sorted by name.
// They may share messages with other proxies' Resources: never mutate them.
type Resources struct {
	Listeners []*listener.Listener
	Routes    []*route.RouteConfiguration
	Clusters  []*cluster.Cluster
	Endpoints []*endpoint.ClusterLoadAssignment
	// Hashes are content hashes per type (same content, same hash), for
	// xDS version strings.
	Hashes Hashes
}

// Hashes are content hashes of a Resources, one per type.
type Hashes struct {
	Listeners, Routes, Clusters, Endpoints uint64
}

// Translator translates one model.Snapshot for any number of proxies. It
// is safe for concurrent use.
type Translator struct {
	snap                        *model.Snapshot
	shared                      *Shared
	meshVS                      []*model.VirtualService
	clustersHash, endpointsHash uint64

	mu    sync.Mutex
	cache map[string]*entry
	// localities caches the locality-aware clusters' endpoints by proxy
	// locality.
	localities localizedSet
}

// entry is what proxies with the same cache key share.
type entry struct {
	once sync.Once

	routes    []*route.RouteConfiguration
	routeHash uint64
	// listeners of gateways and proxyless clients (complete).
	listeners    []*listener.Listener
	listenerHash uint64
	// chains of a sidecar's virtualOutbound.
	chains     []*listener.FilterChain
	chainsHash uint64

	clusters      []*cluster.Cluster
	clusterHashes []uint64
	clustersHash  uint64
	endpoints     []*endpoint.ClusterLoadAssignment
	endpointsHash uint64

	// local holds the clusters and endpoints of proxies with a locality,
	// by locality, where locality-aware clusters make them differ.
	localMu sync.Mutex
	local   map[string]localizedView

	err error
}

// New prepares a Translator for snap, building the shared clusters and
// endpoints. snap must not change afterwards.
func New(snap *model.Snapshot) *Translator {
	if snap == nil {
		snap = &model.Snapshot{}
	}
	t := &Translator{snap: snap, shared: BuildShared(snap), cache: map[string]*entry{}}
	for _, vs := range snap.VirtualServices {
		c := routeCtx{}
		if c.gatewaysApply(vs.Spec.GetGateways(), vs.Namespace) {
			t.meshVS = append(t.meshVS, vs)
		}
	}
	t.clustersHash = combine(t.shared.clusterHash)
	t.endpointsHash = combine(t.shared.endpointHash)
	return t
}

// Snapshot returns the model snapshot the Translator was built for.
func (t *Translator) Snapshot() *model.Snapshot { return t.snap }

// Shared returns the clusters and endpoints common to all proxies.
func (t *Translator) Shared() *Shared { return t.shared }

// Translate is New(snap).Translate(p), for one-off use.
func Translate(snap *model.Snapshot, p *Proxy) (*Resources, error) {
	return New(snap).Translate(p)
}

func cacheKey(p *Proxy, sc *scope) string {
	var b strings.Builder
	b.WriteString(string(p.Type))
	b.WriteByte(0)
	b.WriteString(p.Namespace)
	b.WriteByte(0)
	for _, k := range slices.Sorted(maps.Keys(p.Labels)) {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(p.Labels[k])
		b.WriteByte(',')
	}
	b.WriteByte(0)
	b.WriteString(sc.cacheKey())
	b.WriteByte(0)
	if p.Type != Proxyless { // proxyless clients get no tracing config
		b.WriteString(tracingServiceName(p)) // names the proxy in its tracing config
	}
	b.WriteByte(0)
	b.WriteString(p.CertProvider)
	return b.String()
}

// Translate builds p's resources and checks them for consistency. On error
// the resources are still returned, for inspection; they must not be
// published.
func (t *Translator) Translate(p *Proxy) (*Resources, error) {
	if p.Namespace == "" {
		q := *p
		q.Namespace = model.DefaultNamespace
		p = &q
	}
	sc := scopeFor(t.snap, p)
	key := cacheKey(p, sc)
	t.mu.Lock()
	e := t.cache[key]
	if e == nil {
		e = &entry{}
		t.cache[key] = e
	}
	t.mu.Unlock()
	e.once.Do(func() { t.fill(e, p, sc) })
	lv := t.localize(p, e)

	res := &Resources{
		Routes:    e.routes,
		Clusters:  lv.clusters,
		Endpoints: lv.endpoints,
		Hashes:    Hashes{Routes: e.routeHash, Clusters: lv.clustersHash, Endpoints: lv.endpointsHash, Listeners: e.listenerHash},
	}
	errs := []error{e.err}
	// Each side's telemetry, resolved once; col traces when a listener of
	// p does, and adds the collector's cluster.
	client, server := t.telemetryFor(p, false), t.telemetryFor(p, true)
	col := collector(p, client, server)
	switch p.Type {
	case Sidecar:
		port := uint32(DefaultOutboundPort)
		if p.Instance != nil && p.Instance.OutboundPort != 0 {
			port = p.Instance.OutboundPort
		}
		out := &listener.Listener{
			Name:         ListenerOutbound,
			Address:      socketAddress(localAddress(p.Instance), port),
			FilterChains: e.chains,
		}
		defC := outboundDefault(out, client, sc.blocksUnknown())
		if p.Capture {
			captureOutbound(out)
		}
		inL, inC := inboundResources(p.Instance, server, t.peerAuthFor(p.Instance), t.inboundSecurityFor(p.Instance))
		upL := t.upstreamListeners(p, sc, client)
		var capL []*listener.Listener
		if p.Capture {
			if l := captureInbound(p.Instance, inL, server); l != nil {
				capL = append(capL, l)
			}
		}
		lh := []uint64{e.chainsHash, uint64(port), hashMessage(out.Address), hashMessage(out.DefaultFilterChain)}
		if p.Capture {
			lh = append(lh, 1)
		}
		for _, l := range inL {
			lh = append(lh, hashMessage(l))
		}
		for _, l := range upL {
			lh = append(lh, hashMessage(l))
		}
		for _, l := range capL {
			lh = append(lh, hashMessage(l))
		}
		// "inbound|..." sorts before "outbound|<local port>|...", which
		// sorts before "virtualInbound", then "virtualOutbound".
		res.Listeners = append(append(append(inL, upL...), capL...), out)
		res.Hashes.Listeners = combine(lh)
		if len(upL) > 0 {
			errs = append(errs, Check(&Resources{Listeners: upL, Clusters: col.withOTLP(lv.clusters), Endpoints: lv.endpoints}))
		}
		if len(inC) > 0 {
			ch := make([]uint64, 0, len(inC)+1)
			for _, c := range inC {
				ch = append(ch, hashMessage(c))
			}
			ch = append(ch, lv.clustersHash)
			res.Clusters = append(inC, lv.clusters...) // "inbound|..." sorts before "outbound|..."
			res.Hashes.Clusters = combine(ch)
			errs = append(errs, Check(&Resources{Listeners: inL, Clusters: col.withOTLP(inC)}))
		}
		// The default chains' clusters: virtualOutbound's, and
		// virtualInbound's passthrough, which REGISTRY_ONLY does not
		// change. "BlackHoleCluster" sorts before "PassthroughCluster",
		// both before "inbound|" and "outbound|".
		defCs := []*cluster.Cluster{defC}
		if len(capL) > 0 && defC != passthroughCluster {
			defCs = append(defCs, passthroughCluster)
		}
		ch := make([]uint64, 0, len(defCs)+1)
		for _, c := range defCs {
			ch = append(ch, hashMessage(c))
		}
		res.Clusters = append(defCs, res.Clusters...)
		res.Hashes.Clusters = combine(append(ch, res.Hashes.Clusters))
		res.Clusters, res.Hashes.Clusters = col.addOTLP(res.Clusters, res.Hashes.Clusters)
	case Gateway:
		res.Listeners = e.listeners
		res.Clusters, res.Hashes.Clusters = col.addOTLP(res.Clusters, res.Hashes.Clusters)
	default:
		res.Listeners = e.listeners
	}
	return res, errors.Join(errs...)
}

// ListenerOutbound is the sidecar's outbound listener name.
const ListenerOutbound = "virtualOutbound"

// fill computes what proxies with p's key share.
func (t *Translator) fill(e *entry, p *Proxy, sc *scope) {
	var svcs []*model.Service
	for _, svc := range t.snap.SortedServices() {
		if sc.allows(svc.Hostname, svc.Namespace) {
			svcs = append(svcs, svc)
		}
	}
	if sc == nil {
		e.clusters, e.clusterHashes, e.clustersHash = t.shared.Clusters, t.shared.clusterHash, t.clustersHash
		e.endpoints, e.endpointsHash = t.shared.Endpoints, t.endpointsHash
	} else {
		var eh []uint64
		for i, c := range t.shared.Clusters {
			if sc.allows(t.shared.clusterHost[i], t.snap.Services[t.shared.clusterHost[i]].Namespace) {
				e.clusters = append(e.clusters, c)
				e.clusterHashes = append(e.clusterHashes, t.shared.clusterHash[i])
			}
		}
		for i, cla := range t.shared.Endpoints {
			if sc.allows(t.shared.endpointHost[i], t.snap.Services[t.shared.endpointHost[i]].Namespace) {
				e.endpoints = append(e.endpoints, cla)
				eh = append(eh, t.shared.endpointHash[i])
			}
		}
		e.clustersHash, e.endpointsHash = combine(e.clusterHashes), combine(eh)
	}
	var check *Resources
	switch p.Type {
	case Sidecar:
		e.routes, e.chains = t.buildSidecarOutbound(p, sc, svcs)
		var ch []uint64
		for _, c := range e.chains {
			ch = append(ch, hashMessage(c))
		}
		e.chainsHash = combine(ch)
		check = &Resources{Listeners: []*listener.Listener{{Name: ListenerOutbound, FilterChains: e.chains}}}
	case Gateway:
		e.listeners, e.routes = t.buildGateway(p)
		check = &Resources{Listeners: e.listeners}
	default:
		e.listeners, e.routes = t.buildProxyless(p, svcs)
		if p.CertProvider != "" {
			e.clusters, e.clusterHashes, e.clustersHash = withProviderTLS(e.clusters, e.clusterHashes, p.CertProvider)
		} else {
			e.clusters, e.clusterHashes, e.clustersHash = withoutMeshTLS(e.clusters, e.clusterHashes)
		}
		check = &Resources{Listeners: e.listeners}
	}
	var lh, rh []uint64
	for _, l := range e.listeners {
		lh = append(lh, hashMessage(l))
	}
	for _, r := range e.routes {
		rh = append(rh, hashMessage(r))
	}
	e.listenerHash, e.routeHash = combine(lh), combine(rh)
	check.Routes, check.Clusters, check.Endpoints = e.routes, collector(p, t.telemetryFor(p, false), t.telemetryFor(p, true)).withOTLP(e.clusters), e.endpoints
	if err := Check(check); err != nil {
		e.err = fmt.Errorf("proxy %s (namespace %s): %w", p.ID, p.Namespace, err)
	}
}

// sortedNames returns the names of a set, sorted.
func sortedNames(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
