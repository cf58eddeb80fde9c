package xdstranslate

import (
	"math"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/xdsmeta"
)

// Locality load balancing.
//
// A cluster whose DestinationRule has outlier detection (or a
// localityLbSetting.distribute) balances by the client's locality, as in
// Istio: its endpoints depend on where the proxy runs. The shared
// ClusterLoadAssignment stays as it is, for proxies without a variant key
// (no locality, and no cluster compares labels); a proxy with one gets,
// for such a cluster, a cluster whose EDS service name is the shared name
// plus "~" and the variant key, and that variant of the assignment, built
// once per key and translator:
//
//   - failover (the default): each locality's priority says how near it is
//     to the proxy: 0 the same region, zone and subzone, then the same zone,
//     then the same region, then a region that localityLbSetting.failover
//     names as the proxy region's failover, then the rest; empty levels are
//     dropped so the priorities count from 0 without gaps. Proxies move to
//     the next priority as outlier detection ejects the hosts of one.
//   - distribute: the first rule whose from matches the proxy's locality
//     gives each locality its weight: the share of its most specific to
//     entry, split among that entry's localities by their endpoint count.
//     Localities no entry names get no traffic.
//
//   - failoverPriority: each endpoint's priority is how many of the listed
//     labels, in order, it shares with the proxy (or has the value a
//     "key=value" entry gives): all of them first. The locality's labels
//     (topology.kubernetes.io/region and zone, topology.istio.io/subzone)
//     compare its parts, topology.istio.io/network the endpoint's network.
//     The proxy labels listed are part of the variant's name (VariantKey).
//
// localityLbSetting.enabled: false turns them off for a cluster.

// localityPolicy is what a cluster's locality balancing needs from its
// DestinationRule.
type localityPolicy struct {
	failover   []*networking.LocalityLoadBalancerSetting_Failover
	distribute []*networking.LocalityLoadBalancerSetting_Distribute
	// byLabels is failoverPriority: labels ("key" or "key=value") whose
	// matches, in order, rank the endpoints instead of their localities.
	byLabels []string
	// endpoints are the labels and network of the assignment's
	// endpoints, by locality entry and endpoint (failoverPriority only).
	endpoints [][]endpointInfo
}

// endpointInfo is what failoverPriority compares of an endpoint.
type endpointInfo struct {
	labels  map[string]string
	network string
}

// localityPolicyFor returns the locality balancing of a resolved policy,
// or nil when the cluster's endpoints do not depend on the client.
func localityPolicyFor(p policy) *localityPolicy {
	s := p.LoadBalancer.GetLocalityLbSetting()
	if s != nil && s.GetEnabled() != nil && !s.GetEnabled().GetValue() {
		return nil
	}
	if len(s.GetDistribute()) > 0 {
		return &localityPolicy{distribute: s.GetDistribute()}
	}
	if p.OutlierDetection == nil {
		return nil // without outlier detection nothing would ever fail over
	}
	return &localityPolicy{failover: s.GetFailover(), byLabels: s.GetFailoverPriority()}
}

// Labels with a meaning of their own in failoverPriority: the parts of
// the locality, and the network.
const (
	labelRegion  = "topology.kubernetes.io/region"
	labelZone    = "topology.kubernetes.io/zone"
	labelSubzone = "topology.istio.io/subzone"
	labelNetwork = "topology.istio.io/network"
)

// proxyLabelKeys are the proxy labels the failoverPriority lists of ps
// compare (keys given without a value; the locality's own are in the
// locality).
func proxyLabelKeys(ps map[string]*localityPolicy) []string {
	var keys []string
	for _, lp := range ps {
		for _, l := range lp.byLabels {
			switch {
			case strings.Contains(l, "="), l == labelRegion, l == labelZone, l == labelSubzone:
			case !slices.Contains(keys, l):
				keys = append(keys, l)
			}
		}
	}
	slices.Sort(keys)
	return keys
}

// variantKey names what a proxy's variants depend on: its locality, then
// ";key=value" for each label of keys it has. The parts are escaped
// (keyEscaper): a proxy's locality and label values come from its node,
// unchecked, and a ";" or "=" in one would read as another label.
func variantKey(loc string, labels map[string]string, keys []string) string {
	var b strings.Builder
	b.WriteString(keyEscaper.Replace(loc))
	for _, k := range keys {
		if v, ok := labels[k]; ok {
			b.WriteString(";" + keyEscaper.Replace(k) + "=" + keyEscaper.Replace(v))
		}
	}
	return b.String()
}

// keyEscaper escapes the separators of a variant key (and "%") as URLs do.
var keyEscaper = strings.NewReplacer("%", "%25", ";", "%3B", "=", "%3D")

// keyUnescape undoes keyEscaper.
func keyUnescape(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

// parseVariantKey undoes variantKey.
func parseVariantKey(key string) (string, map[string]string) {
	loc, rest, _ := strings.Cut(key, ";")
	labels := map[string]string{}
	for _, kv := range strings.Split(rest, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			labels[keyUnescape(k)] = keyUnescape(v)
		}
	}
	return keyUnescape(loc), labels
}

// labelValue is an endpoint's or a proxy's value of a failoverPriority
// label: the locality's parts and the network for the labels that name
// them, else the label's own.
func labelValue(key string, loc locality, labels map[string]string, network string) (string, bool) {
	switch key {
	case labelRegion:
		return loc.region, loc.region != ""
	case labelZone:
		return loc.zone, loc.zone != ""
	case labelSubzone:
		return loc.subzone, loc.subzone != ""
	case labelNetwork:
		if network != "" {
			return network, true
		}
	}
	v, ok := labels[key]
	return v, ok
}

// prioritizeByLabels ranks each endpoint by how many of failoverPriority's
// labels, in order, it matches (the proxy's value, or the one given as
// "key=value"): all of them is priority 0, none the last. Endpoints of one
// locality at different priorities get an entry each.
func (lp *localityPolicy) prioritizeByLabels(cla *endpoint.ClusterLoadAssignment, proxy locality, proxyLabels map[string]string) {
	n := len(lp.byLabels)
	type group struct {
		le    *endpoint.LocalityLbEndpoints
		level int
	}
	var groups []group
	for gi, le := range cla.Endpoints {
		loc := localityOf(le.GetLocality())
		byLevel := map[int]*endpoint.LocalityLbEndpoints{}
		for ei, lbe := range le.GetLbEndpoints() {
			info := lp.endpoints[gi][ei]
			m := 0
			for _, l := range lp.byLabels {
				key, want, given := strings.Cut(l, "=")
				if !given {
					var ok bool
					if want, ok = labelValue(key, proxy, proxyLabels, proxyLabels[labelNetwork]); !ok {
						break
					}
				}
				if got, ok := labelValue(key, loc, info.labels, info.network); !ok || got != want {
					break
				}
				m++
			}
			level := n - m
			g := byLevel[level]
			if g == nil {
				g = &endpoint.LocalityLbEndpoints{Locality: le.GetLocality()}
				byLevel[level] = g
				groups = append(groups, group{g, level})
			}
			g.LbEndpoints = append(g.LbEndpoints, lbe)
			g.LoadBalancingWeight = wrapperspb.UInt32(g.GetLoadBalancingWeight().GetValue() + max(lbe.GetLoadBalancingWeight().GetValue(), 1))
		}
	}
	cla.Endpoints = cla.Endpoints[:0]
	levels := make([]int, len(groups))
	for i, g := range groups {
		cla.Endpoints = append(cla.Endpoints, g.le)
		levels[i] = g.level
	}
	setPriorities(cla, levels)
}

// setPriorities gives each group of cla its level as a priority, with the
// levels in use closed up to count from 0 without gaps (Envoy and gRPC
// require it), and orders the groups by priority.
func setPriorities(cla *endpoint.ClusterLoadAssignment, levels []int) {
	used := slices.Compact(slices.Sorted(slices.Values(levels)))
	for i, le := range cla.Endpoints {
		p, _ := slices.BinarySearch(used, levels[i])
		le.Priority = uint32(p)
	}
	sort.SliceStable(cla.Endpoints, func(a, b int) bool { return cla.Endpoints[a].Priority < cla.Endpoints[b].Priority })
}

// locality is a parsed "region/zone/subzone".
type locality struct{ region, zone, subzone string }

func parseLocalityString(s string) locality {
	var l locality
	l.region, l.zone, l.subzone = xdsmeta.ParseLocality(s)
	return l
}

func localityOf(l *core.Locality) locality {
	return locality{l.GetRegion(), l.GetZone(), l.GetSubZone()}
}

// LocalityString is the canonical form of a locality: "region/zone/subzone"
// without trailing empty parts ("" when the region is empty).
func LocalityString(region, zone, subzone string) string {
	if region == "" {
		return ""
	}
	return xdsmeta.FormatLocality(region, zone, subzone)
}

// CanonicalLocality rewrites "region/zone/subzone" in canonical form.
func CanonicalLocality(s string) string {
	l := parseLocalityString(s)
	return LocalityString(l.region, l.zone, l.subzone)
}

// localityMatches reports whether pattern, a locality whose parts may be
// "*" (everything below it too: "region/*" is every zone of the region),
// matches l.
func localityMatches(pattern string, l locality) bool {
	have := []string{l.region, l.zone, l.subzone}
	for i, p := range strings.SplitN(pattern, "/", 3) {
		if p == "*" {
			return true
		}
		if p != have[i] {
			return false
		}
	}
	return true
}

// specificity ranks a distribute pattern: the number of parts before a
// wildcard.
func specificity(pattern string) int {
	n := 0
	for _, p := range strings.SplitN(pattern, "/", 3) {
		if p == "*" {
			break
		}
		n++
	}
	return n
}

// LocalityEDSName is the EDS service name of a cluster's variant for a
// variant key (a proxy's locality in canonical form, and the labels
// failoverPriority compares).
func LocalityEDSName(name, key string) string { return name + "~" + key }

// localize returns the variant of cla for the proxies of a variant key
// (variantKey), named LocalityEDSName(cla's name, key).
func (lp *localityPolicy) localize(cla *endpoint.ClusterLoadAssignment, key string) *endpoint.ClusterLoadAssignment {
	out := proto.Clone(cla).(*endpoint.ClusterLoadAssignment)
	out.ClusterName = LocalityEDSName(cla.GetClusterName(), key)
	locName, labels := parseVariantKey(key)
	proxy := parseLocalityString(locName)
	switch {
	case len(lp.distribute) > 0:
		if locName != "" {
			lp.distributeWeights(out, proxy)
		}
	case len(lp.byLabels) > 0:
		lp.prioritizeByLabels(out, proxy, labels)
	case locName != "":
		lp.prioritize(out, proxy)
	}
	return out
}

// prioritize sets each locality's priority by its nearness to the proxy.
func (lp *localityPolicy) prioritize(cla *endpoint.ClusterLoadAssignment, proxy locality) {
	failoverTo := map[string]bool{}
	for _, f := range lp.failover {
		if f.GetFrom() == proxy.region {
			failoverTo[f.GetTo()] = true
		}
	}
	levels := make([]int, len(cla.Endpoints))
	for i, le := range cla.Endpoints {
		l := localityOf(le.GetLocality())
		switch {
		case l.region == proxy.region && l.zone == proxy.zone && l.subzone == proxy.subzone:
			levels[i] = 0
		case l.region == proxy.region && l.zone == proxy.zone:
			levels[i] = 1
		case l.region == proxy.region:
			levels[i] = 2
		case failoverTo[l.region]:
			levels[i] = 3
		default:
			levels[i] = 4
		}
	}
	setPriorities(cla, levels)
}

// distributeWeights applies the first distribute rule whose from matches
// the proxy. With none, or when no locality of the cluster is named by
// the rule, the assignment is left as it is.
func (lp *localityPolicy) distributeWeights(cla *endpoint.ClusterLoadAssignment, proxy locality) {
	var rule *networking.LocalityLoadBalancerSetting_Distribute
	for _, d := range lp.distribute {
		if localityMatches(d.GetFrom(), proxy) {
			rule = d
			break
		}
	}
	if rule == nil {
		return
	}
	// Each locality goes to its most specific to entry (the first in
	// sorted order among equals).
	targets := make([]string, 0, len(rule.GetTo()))
	for k := range rule.GetTo() {
		targets = append(targets, k)
	}
	sort.Strings(targets)
	owner := make([]string, len(cla.Endpoints))
	hosts := map[string]int{}
	for i, le := range cla.Endpoints {
		l := localityOf(le.GetLocality())
		best := -1
		for _, t := range targets {
			if localityMatches(t, l) && specificity(t) > best {
				owner[i], best = t, specificity(t)
			}
		}
		if best >= 0 {
			hosts[owner[i]] += len(le.GetLbEndpoints())
		}
	}
	var kept []*endpoint.LocalityLbEndpoints
	for i, le := range cla.Endpoints {
		t := owner[i]
		if t == "" || rule.GetTo()[t] == 0 || hosts[t] == 0 {
			continue
		}
		// Percent times 1000, split by endpoint count.
		w := math.Round(float64(rule.GetTo()[t]) * 1000 * float64(len(le.GetLbEndpoints())) / float64(hosts[t]))
		le.LoadBalancingWeight = wrapperspb.UInt32(uint32(max(w, 1)))
		le.Priority = 0
		kept = append(kept, le)
	}
	if len(kept) > 0 {
		cla.Endpoints = kept
	}
}

// localized is one variant key's view of the locality-aware clusters:
// their assignments' variants by the shared assignment's name.
type localized struct {
	byCLA map[string]*endpoint.ClusterLoadAssignment
	list  []*endpoint.ClusterLoadAssignment
	hash  uint64
}

// localizedSet caches a Translator's variants by proxy locality.
type localizedSet struct {
	mu sync.Mutex
	m  map[string]*localized
}

// LocalityAware reports whether any cluster of the snapshot balances by
// the client's locality.
func (t *Translator) LocalityAware() bool { return len(t.shared.localityPolicies) > 0 }

// LocalizedEndpoints returns the assignments of the locality-aware
// clusters as the proxies of a variant key (VariantKey) see them, named
// LocalityEDSName(shared name, key); nil when the key is empty or no
// cluster is locality-aware.
func (t *Translator) LocalizedEndpoints(key string) []*endpoint.ClusterLoadAssignment {
	if lz := t.localizedFor(key); lz != nil {
		return lz.list
	}
	return nil
}

func (t *Translator) localizedFor(key string) *localized {
	if key == "" || len(t.shared.localityPolicies) == 0 {
		return nil
	}
	t.localities.mu.Lock()
	defer t.localities.mu.Unlock()
	if lz := t.localities.m[key]; lz != nil {
		return lz
	}
	lz := &localized{byCLA: map[string]*endpoint.ClusterLoadAssignment{}}
	var hs []uint64
	for _, cla := range t.shared.Endpoints {
		lp := t.shared.localityPolicies[cla.GetClusterName()]
		if lp == nil {
			continue
		}
		v := lp.localize(cla, key)
		lz.byCLA[cla.GetClusterName()] = v
		lz.list = append(lz.list, v)
		hs = append(hs, hashMessage(v))
	}
	lz.hash = combine(hs)
	if t.localities.m == nil {
		t.localities.m = map[string]*localized{}
	}
	t.localities.m[key] = lz
	return lz
}

// VariantKey is what p's locality-aware endpoints depend on: its locality
// and the labels that failoverPriority compares; "" when nothing does. A
// failoverPriority applies to proxies with neither (";"): a "key=value"
// entry ranks endpoints whatever the proxy.
func (t *Translator) VariantKey(p *Proxy) string {
	if len(t.shared.localityPolicies) == 0 {
		return ""
	}
	k := variantKey(p.Locality, p.Labels, t.shared.proxyLabelKeys)
	if k == "" && t.shared.byLabels {
		k = ";"
	}
	return k
}

// localizedView is an entry's clusters and endpoints for one proxy
// variant key.
type localizedView struct {
	clusters      []*cluster.Cluster
	clustersHash  uint64
	endpoints     []*endpoint.ClusterLoadAssignment
	endpointsHash uint64
}

// localize returns e's clusters and endpoints as a proxy at p's locality
// gets them: each locality-aware cluster points at its variant. Proxies
// without a locality, and snapshots without locality-aware clusters, get
// e's own.
func (t *Translator) localize(p *Proxy, e *entry) localizedView {
	own := localizedView{e.clusters, e.clustersHash, e.endpoints, e.endpointsHash}
	key := t.VariantKey(p)
	lz := t.localizedFor(key)
	if lz == nil {
		return own
	}
	e.localMu.Lock()
	defer e.localMu.Unlock()
	if v, ok := e.local[key]; ok {
		return v
	}
	v := own
	clusters, hs, changed := rewriteClusters(e.clusters, e.clusterHashes, func(c *cluster.Cluster) *cluster.Cluster {
		if lz.byCLA[c.GetEdsClusterConfig().GetServiceName()] == nil {
			return nil
		}
		cc := proto.Clone(c).(*cluster.Cluster)
		cc.EdsClusterConfig.ServiceName = LocalityEDSName(cc.EdsClusterConfig.ServiceName, key)
		return cc
	})
	if changed {
		v.clusters = clusters
		v.endpoints = make([]*endpoint.ClusterLoadAssignment, len(e.endpoints))
		for i, cla := range e.endpoints {
			if lv := lz.byCLA[cla.GetClusterName()]; lv != nil {
				v.endpoints[i] = lv
			} else {
				v.endpoints[i] = cla
			}
		}
		// Which clusters point at a variant can change while the clusters
		// themselves do not (localityLbSetting is not in them): the hash
		// covers each cluster as the proxy gets it.
		v.clustersHash = combine(hs)
		v.endpointsHash = combine([]uint64{e.endpointsHash, lz.hash})
	}
	if e.local == nil {
		e.local = map[string]localizedView{}
	}
	e.local[key] = v
	return v
}
