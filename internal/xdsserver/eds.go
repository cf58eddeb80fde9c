package xdsserver

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"time"

	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"weft.dev/weft/internal/xdstranslate"
)

// Endpoints (EDS).
//
// ClusterLoadAssignments do not depend on the proxy (xdstranslate builds
// them once per model snapshot), and EDS clients subscribe to them by name
// and do not read a missing one as deleted. So one cache serves them to
// every proxy: it versions each resource and answers a state-of-the-world
// subscription with only the resources that changed since the stream last
// got them (endpointCache; delta streams get the same from a
// go-control-plane linear cache). An endpoint change then sends one
// ClusterLoadAssignment to each proxy that subscribes to it, instead of
// every proxy's whole set.
//
// Versions: the caches count their updates (1, 2, ...) and label every
// response with their count at the time. A proxy's EDS is up to date
// when it has ACKed a version at or after the one at which the last of its
// subscribed resources changed (edsLatest); Status reports that.
//
// Sidecar scoping: the cache holds every proxy's endpoints, so the request
// callbacks drop names a proxy may not see (nodeState.allowed) from its
// subscription before the cache reads it.

// edsState is what Server.eds holds, for computing the next update.
type edsState struct {
	// version mirrors the linear cache's version: it counts UpdateResources
	// calls, the only way the server changes the cache.
	version uint64
	// hashes are the content hashes of the resources in the cache.
	hashes map[string]uint64
	// localities are the variant keys (xdstranslate's VariantKey: a
	// proxy's locality and the labels failoverPriority compares) whose
	// variants of the locality-aware assignments the cache holds: those
	// of the model's instances and of the proxies connected.
	localities map[string]bool
}

// edsVersionsKept bounds Server.edsBuiltAt.
const edsVersionsKept = 64

// updateEndpoints puts t's ClusterLoadAssignments into s.eds: only those
// whose encoding changed are replaced (and so sent), those gone are
// removed. Callers hold pushMu.
func (s *Server) updateEndpoints(t *xdstranslate.Translator, builtAt time.Time) error {
	eps := t.Shared().Endpoints
	if t.LocalityAware() {
		eps = slices.Clone(eps)
		for _, loc := range slices.Sorted(maps.Keys(s.endpoints.localities)) {
			eps = append(eps, t.LocalizedEndpoints(loc)...)
		}
	}
	return s.putEndpoints(eps, true, builtAt)
}

// putEndpoints puts eps into s.eds, replacing (and so sending) those whose
// encoding changed. whole says eps is every assignment there is: the
// others are removed; else eps are added to what the cache holds.
// Callers hold pushMu.
func (s *Server) putEndpoints(eps []*endpoint.ClusterLoadAssignment, whole bool, builtAt time.Time) error {
	hashes := make(map[string]uint64, len(eps))
	names := make(map[string]string, len(eps))
	if !whole {
		hashes = maps.Clone(s.endpoints.hashes)
		if hashes == nil {
			hashes = map[string]uint64{}
		}
		if old := s.names.Load(); old != nil {
			names = maps.Clone(*old)
		}
	}
	set := map[string][]byte{}
	upd := map[string]types.Resource{}
	for _, cla := range eps {
		name := cla.GetClusterName()
		names[name] = name
		b, err := cache.MarshalResource(cla)
		if err != nil {
			return err
		}
		h := fnv.New64a()
		h.Write(b)
		sum := h.Sum64()
		hashes[name] = sum
		if old, ok := s.endpoints.hashes[name]; ok && old == sum {
			continue
		}
		set[name] = b
		upd[name] = preMarshaledBytes(name, b)
	}
	var del []string
	for name := range s.endpoints.hashes {
		if _, ok := hashes[name]; !ok && whole {
			del = append(del, name)
		}
	}
	s.endpoints.hashes = hashes
	s.names.Store(&names)
	if len(upd) == 0 && len(del) == 0 {
		return nil
	}
	v := s.endpoints.version + 1
	s.mu.Lock()
	changed := maps.Clone(s.edsChanged)
	for name := range upd {
		changed[name] = v
	}
	for _, name := range del {
		delete(changed, name)
	}
	s.edsChanged = changed
	s.edsBuiltAt[v] = builtAt
	for old := range s.edsBuiltAt {
		if old+edsVersionsKept <= v {
			delete(s.edsBuiltAt, old)
		}
	}
	s.mu.Unlock()
	// Both caches count their updates, and get the same ones, so a version
	// means the same in state-of-the-world and delta responses. The linear
	// cache counts the update even when answering a watch fails.
	s.endpoints.version = v
	if got := s.eds.update(set, del); got != v {
		return fmt.Errorf("endpoint cache at version %d, want %d", got, v)
	}
	return s.edsDelta.UpdateResources(upd, del)
}

// edsLatest is the EDS version n must have ACKed to have every endpoint
// it subscribes to: the version at which the last of them changed, 0 if
// none is in the cache. Callers hold s.mu.
func (s *Server) edsLatest(n *nodeState) uint64 {
	var latest uint64
	if n.edsWildcard {
		for name, v := range s.edsChanged {
			if _, ok := n.allowed[name]; (ok || n.allowed == nil) && v > latest {
				latest = v
			}
		}
		return latest
	}
	for _, name := range n.edsSub {
		if v := s.edsChanged[name]; v > latest {
			latest = v
		}
	}
	return latest
}

// edsVersionBefore reports whether an ACKed EDS version is older than
// latest (or not an EDS version at all).
func edsVersionBefore(acked string, latest uint64) bool {
	v, err := strconv.ParseUint(acked, 10, 64)
	return err != nil || v < latest
}

// scopeEDS limits a state-of-the-world EDS request to the names n may
// see, and records n's subscription for Status.
func (s *Server) scopeEDS(n *nodeState, req *discovery.DiscoveryRequest) {
	if n == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	names := req.GetResourceNames()
	star := slices.Contains(names, "*")
	if len(names) > 0 && !star {
		n.edsExplicit = true
	}
	wildcard := star || (len(names) == 0 && !n.edsExplicit)
	switch {
	case wildcard && n.allowed == nil:
		// Every endpoint is n's to see; the cache answers the wildcard.
	case wildcard:
		req.ResourceNames = outOfScope(slices.Sorted(maps.Keys(n.allowed)))
		wildcard = false
	default:
		req.ResourceNames = outOfScope(n.filterAllowed(names))
	}
	// A request the server will drop as stale does not change the
	// subscription.
	if ts := n.types[resource.EndpointType]; ts != nil && req.GetResponseNonce() != "" && req.GetResponseNonce() != ts.nonce {
		return
	}
	n.edsWildcard, n.edsSub = wildcard, nil
	if !wildcard {
		n.edsSub = req.ResourceNames
	}
}

// scopeDeltaEDS is scopeEDS for delta requests, which change the
// subscription by difference.
func (s *Server) scopeDeltaEDS(n *nodeState, req *discovery.DeltaDiscoveryRequest) {
	if n == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := req.GetResourceNamesSubscribe()
	first := req.GetResponseNonce() == "" && !n.edsExplicit && !n.edsWildcard
	star := slices.Contains(sub, "*") || (first && len(sub) == 0)
	requested := star || len(sub) > 0
	if star && n.allowed == nil {
		n.edsWildcard = true
	}
	if star && n.allowed != nil {
		sub = append(slices.DeleteFunc(slices.Clone(sub), func(s string) bool { return s == "*" }), slices.Sorted(maps.Keys(n.allowed))...)
	}
	req.ResourceNamesSubscribe = n.filterAllowed(sub)
	if requested && n.allowed != nil {
		req.ResourceNamesSubscribe = outOfScope(req.ResourceNamesSubscribe)
	}
	if len(req.ResourceNamesSubscribe) > 0 {
		n.edsExplicit = true
	}
	set := make(map[string]struct{}, len(n.edsSub)+len(req.ResourceNamesSubscribe))
	for _, name := range n.edsSub {
		set[name] = struct{}{}
	}
	for _, name := range req.ResourceNamesSubscribe {
		if name != "*" {
			set[name] = struct{}{}
		}
	}
	for _, name := range req.GetResourceNamesUnsubscribe() {
		if name == "*" {
			n.edsWildcard = false
		}
		delete(set, name)
	}
	n.edsSub = slices.Sorted(maps.Keys(set))
}

// noEndpoints names no ClusterLoadAssignment: a subscription to it alone
// is to nothing.
const noEndpoints = "weft.invalid/out-of-scope"

// outOfScope keeps the subscription of a proxy a Sidecar limits explicit
// when scoping left none of its names (an explicit list, or a wildcard
// its scope turned into one): an empty list would read as a wildcard (on
// a stream's first request) and send every endpoint of the mesh.
func outOfScope(names []string) []string {
	if len(names) == 0 {
		return []string{noEndpoints}
	}
	return names
}

// filterAllowed returns the names n may subscribe to, names itself if
// that is all of them.
func (n *nodeState) filterAllowed(names []string) []string {
	if n.allowed == nil {
		return names
	}
	for i, name := range names {
		if _, ok := n.allowed[name]; ok || name == "*" {
			continue
		}
		out := slices.Clone(names[:i])
		for _, name := range names[i+1:] {
			if _, ok := n.allowed[name]; ok {
				out = append(out, name)
			}
		}
		return out
	}
	return names
}

// refreshLocalities sets the proxy localities whose endpoint variants
// the cache holds: the model's instances' and the connected proxies'.
// Callers hold pushMu.
func (s *Server) refreshLocalities(t *xdstranslate.Translator) {
	locs := map[string]bool{}
	if t.LocalityAware() {
		for _, inst := range t.Snapshot().Instances {
			p := &xdstranslate.Proxy{Locality: xdstranslate.CanonicalLocality(inst.Locality), Labels: inst.Labels}
			if k := t.VariantKey(p); k != "" {
				locs[k] = true
			}
		}
		s.mu.Lock()
		for _, n := range s.nodes {
			if k := t.VariantKey(n.proxy.WithSnapshot(t.Snapshot())); k != "" {
				locs[k] = true
			}
		}
		s.mu.Unlock()
	}
	s.endpoints.localities = locs
}

// addLocality puts the endpoint variants of a proxy the cache does not
// hold yet into it, before the proxy's clusters name them. Callers hold
// pushMu.
func (s *Server) addLocality(p *xdstranslate.Proxy) error {
	t := s.translator
	loc := t.VariantKey(p)
	if loc == "" || s.endpoints.localities[loc] {
		return nil
	}
	locs := maps.Clone(s.endpoints.localities)
	if locs == nil {
		locs = map[string]bool{}
	}
	locs[loc] = true
	s.endpoints.localities = locs
	return s.putEndpoints(t.LocalizedEndpoints(loc), false, s.builtAt)
}
