package xdstranslate

import (
	"hash/fnv"
	"sort"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/xdsmeta"
)

// Shared holds the resources that do not depend on the proxy: every
// outbound cluster and its endpoints, built once per snapshot. Proxies
// limited by a Sidecar get a filtered view. Read-only once built.
type Shared struct {
	// Clusters are the outbound clusters, sorted by name.
	Clusters []*cluster.Cluster
	// Endpoints are the ClusterLoadAssignments of the EDS clusters, sorted
	// by cluster name.
	Endpoints []*endpoint.ClusterLoadAssignment

	clusterHost  []string // host of Clusters[i]
	clusterHash  []uint64
	endpointHost []string
	endpointHash []uint64
	// localityPolicies holds, by assignment name, the clusters whose
	// endpoints depend on the client's locality (locality.go).
	localityPolicies map[string]*localityPolicy
	// proxyLabelKeys are the proxy labels failoverPriority compares;
	// byLabels is set when some cluster has a failoverPriority.
	proxyLabelKeys []string
	byLabels       bool
}

// BuildShared computes the outbound clusters and endpoints of snap.
func BuildShared(snap *model.Snapshot) *Shared {
	sh := &Shared{}
	for _, svc := range snap.SortedServices() {
		dr := destinationRuleFor(snap, svc.Hostname)
		subsets := drSubsetsOf(dr)
		for _, port := range svc.Ports {
			sh.addCluster(svc, buildCluster(svc, port, nil, dr, snap.TrustDomain), port, nil, resolvePolicy(dr, nil, port.Number))
			for _, ss := range subsets {
				if ss.GetName() == "" {
					continue
				}
				sh.addCluster(svc, buildCluster(svc, port, ss, dr, snap.TrustDomain), port, ss.GetLabels(), resolvePolicy(dr, ss, port.Number))
			}
		}
	}
	sh.proxyLabelKeys = proxyLabelKeys(sh.localityPolicies)
	// Names sort like Istio's: by the full name string.
	idx := make([]int, len(sh.Clusters))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return sh.Clusters[idx[a]].Name < sh.Clusters[idx[b]].Name })
	sh.Clusters, sh.clusterHost, sh.clusterHash = permute(sh.Clusters, idx), permute(sh.clusterHost, idx), permute(sh.clusterHash, idx)
	eidx := make([]int, len(sh.Endpoints))
	for i := range eidx {
		eidx[i] = i
	}
	sort.SliceStable(eidx, func(a, b int) bool {
		return sh.Endpoints[eidx[a]].ClusterName < sh.Endpoints[eidx[b]].ClusterName
	})
	sh.Endpoints, sh.endpointHost, sh.endpointHash = permute(sh.Endpoints, eidx), permute(sh.endpointHost, eidx), permute(sh.endpointHash, eidx)
	return sh
}

func permute[T any](s []T, idx []int) []T {
	out := make([]T, len(s))
	for i, j := range idx {
		out[i] = s[j]
	}
	return out
}

// addCluster adds c and, for an EDS cluster, its endpoints and the
// locality balancing of its policy p, if it has one.
func (sh *Shared) addCluster(svc *model.Service, c *cluster.Cluster, port model.Port, subsetLabels map[string]string, p policy) {
	sh.Clusters = append(sh.Clusters, c)
	sh.clusterHost = append(sh.clusterHost, svc.Hostname)
	sh.clusterHash = append(sh.clusterHash, hashMessage(c))
	if c.GetType() != cluster.Cluster_EDS {
		return
	}
	lp := localityPolicyFor(p)
	// failoverPriority ranks endpoints by their labels and network: only
	// then are they gathered.
	byLabels := lp != nil && len(lp.byLabels) > 0
	cla, infos := buildLoadAssignment(c.Name, svc, port, subsetLabels, byLabels)
	sh.Endpoints = append(sh.Endpoints, cla)
	sh.endpointHost = append(sh.endpointHost, svc.Hostname)
	sh.endpointHash = append(sh.endpointHash, hashMessage(cla))
	if lp == nil {
		return
	}
	if byLabels {
		lp.endpoints = infos
		sh.byLabels = true
	}
	if sh.localityPolicies == nil {
		sh.localityPolicies = map[string]*localityPolicy{}
	}
	sh.localityPolicies[c.GetEdsClusterConfig().GetServiceName()] = lp
}

// buildLoadAssignment groups a service's endpoints (those matching the
// subset labels) by locality. Every locality gets a weight of at least 1,
// which gRPC's xDS client requires. With withInfos it also returns each
// endpoint's labels and network, by locality entry and endpoint.
func buildLoadAssignment(name string, svc *model.Service, port model.Port, subsetLabels map[string]string, withInfos bool) (*endpoint.ClusterLoadAssignment, [][]endpointInfo) {
	cla := &endpoint.ClusterLoadAssignment{ClusterName: name}
	byLocality := map[string]*endpoint.LocalityLbEndpoints{}
	var infos map[string][]endpointInfo
	if withInfos {
		infos = map[string][]endpointInfo{}
	}
	var order []string
	for _, ep := range svc.Endpoints {
		if !model.LabelsMatch(subsetLabels, ep.Labels) {
			continue
		}
		loc := byLocality[ep.Locality]
		if loc == nil {
			loc = &endpoint.LocalityLbEndpoints{Locality: parseLocality(ep.Locality)}
			byLocality[ep.Locality] = loc
			order = append(order, ep.Locality)
		}
		w := ep.Weight
		if w == 0 {
			w = 1
		}
		le := &endpoint.LbEndpoint{
			HostIdentifier:      &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: socketAddress(ep.Address, ep.TargetPort(port))}},
			HealthStatus:        core.HealthStatus_HEALTHY,
			LoadBalancingWeight: wrapperspb.UInt32(w),
		}
		if ep.Sidecar {
			le.Metadata = tlsModeMetadata() // auto mTLS (mtls.go)
		}
		loc.LbEndpoints = append(loc.LbEndpoints, le)
		if withInfos {
			infos[ep.Locality] = append(infos[ep.Locality], endpointInfo{labels: ep.Labels, network: ep.Network})
		}
		total := loc.GetLoadBalancingWeight().GetValue() + w
		loc.LoadBalancingWeight = wrapperspb.UInt32(total)
	}
	sort.Strings(order)
	var out [][]endpointInfo
	for _, l := range order {
		cla.Endpoints = append(cla.Endpoints, byLocality[l])
		if withInfos {
			out = append(out, infos[l])
		}
	}
	return cla, out
}

func parseLocality(s string) *core.Locality {
	l := parseLocalityString(s)
	return &core.Locality{Region: l.region, Zone: l.zone, SubZone: l.subzone}
}

func inboundClusterName(port uint32) string { return xdsmeta.InboundClusterName(port) }

var hashOpts = proto.MarshalOptions{Deterministic: true}

// hashMessage is a content hash of one resource.
func hashMessage(m proto.Message) uint64 {
	b, err := hashOpts.Marshal(m)
	if err != nil {
		panic(err)
	}
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// combine folds per-resource hashes (in resource order) into one.
func combine(hs []uint64) uint64 {
	h := fnv.New64a()
	var b [8]byte
	for _, v := range hs {
		for i := range b {
			b[i] = byte(v >> (8 * i))
		}
		h.Write(b[:])
	}
	return h.Sum64()
}

func drSubsetsOf(dr *model.DestinationRule) []*networking.Subset {
	if dr == nil {
		return nil
	}
	return dr.Spec.GetSubsets()
}
